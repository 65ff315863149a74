//! Monitoring results: a monitoring directive's rules are matched against
//! the enterprise's access log as it grows; the hits (records logged while the rule was in
//! force) travel up aggregated, cumulative, with samples, and `directive status` at the
//! ministry shows them per enterprise and in total.

use std::io::Write;
use std::time::Duration;

use isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually};

const T: Duration = Duration::from_secs(60);
const E: &str = "enterprise/e4401";

fn line(at: &str, url: &str) -> String {
    format!(
        "{{\"at\": \"{at}\", \"src\": \"198.51.100.7\", \"src_port\": 50001, \"dst\": \"203.0.113.5\", \"dst_port\": 443, \"protocol\": \"tcp\", \"url\": \"{url}\"}}\n"
    )
}

fn append(path: &std::path::Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("log");
    for l in lines {
        f.write_all(l.as_bytes()).expect("append");
    }
    f.sync_all().expect("sync");
}

#[test]
fn hits_of_a_monitoring_rule_reach_the_ministry_per_enterprise_and_in_total() {
    let options = Options {
        clock_files: true,
        ..Options::default()
    };
    let net = TestNet::generate(&Topology::uniform(&["44"], 2, 0), &options);
    let node = net.node(E).clone();
    let log = node.dir.join("access.jsonl");
    // Logged before the rule came: not a hit.
    append(
        &log,
        &[line(
            "2026-12-07T08:00:00+08:00",
            "https://watched.example/old",
        )],
    );
    let text = std::fs::read_to_string(&node.config_path).expect("config");
    let (comment, rest) = text.split_once('\n').expect("header");
    std::fs::write(
        &node.config_path,
        format!("{comment}\naccess_log = \"access.jsonl\"\n{rest}"),
    )
    .expect("config");
    // The clocks are set before the nodes start: no record bears the real date.
    for n in net.net.nodes.clone() {
        let out = net.cli(
            n.id.as_str(),
            &["clock", "set", "2026-12-07T09:00:00+08:00"],
        );
        assert!(out.status.success());
    }
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();
    let id = net.issue_wait(&[
        "--kind",
        "monitoring",
        "--to",
        "province/44",
        "--block-domain",
        "watched.example",
    ]);

    append(
        &log,
        &[
            line("2026-12-07T09:10:00+08:00", "https://watched.example/a"),
            line("2026-12-07T09:11:00+08:00", "https://other.example/b"),
            line("2026-12-07T09:12:00+08:00", "https://cdn.watched.example/c"),
        ],
    );
    let hits_at = |total: u64| {
        eventually(T, &format!("{total} hits at the ministry"), || {
            let v = net.directive("ministry", &id)?;
            let t = v["targets"]
                .as_array()?
                .iter()
                .find(|t| t["node"] == E)?
                .clone();
            (t["hits"]["total"] == total && v["hits"] == total).then_some(t)
        })
    };
    let t = hits_at(2);
    let urls: Vec<&str> = t["hits"]["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|s| s["url"].as_str())
        .collect();
    assert_eq!(
        urls,
        ["https://watched.example/a", "https://cdn.watched.example/c"]
    );

    // Cumulative: one more hit makes three, and the list's total says so too.
    append(
        &log,
        &[line(
            "2026-12-07T09:20:00+08:00",
            "https://watched.example/d",
        )],
    );
    hits_at(3);
    let list = net
        .cli_json("ministry", &["directive", "list", "--json"])
        .expect("list");
    let listed = list["directives"]
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["id"] == id.as_str())
        .expect("listed")
        .clone();
    assert_eq!(listed["hits"], 3);
    // The enterprise without an access log reports none; the status is still executed.
    let v = net.directive("ministry", &id).expect("view");
    let other = v["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["node"] == "enterprise/e4402")
        .expect("e4402")
        .clone();
    assert!(other["hits"].is_null(), "{other}");
    assert!(
        v["targets"]
            .as_array()
            .expect("t")
            .iter()
            .all(|t| t["state"] == "executed"),
        "{v}"
    );
}

//! Directive kinds (R-6.1, R-7.1, O-3): monitoring rules observe instead of block, keyword
//! rules, blacklist deletions, and drills that travel the whole chain but are never applied.

use std::time::Duration;

use isms_e2e::TestNet;
use isms_e2e::isms_deploy::Topology;

const T: Duration = Duration::from_secs(30);

/// (action, kind, value) of each rule in an enterprise's rules file, sorted.
fn entries(net: &TestNet, enterprise: &str) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = net
        .rules(enterprise)
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (f("action"), f("kind"), f("value"))
        })
        .collect();
    v.sort();
    v
}

fn e(action: &str, kind: &str, value: &str) -> (String, String, String) {
    (action.into(), kind.into(), value.into())
}

#[test]
fn monitoring_keyword_and_deletion_rules_shape_the_active_set() {
    let net = TestNet::start(&Topology::uniform(&["44"], 1, 1));
    let block = net.issue(&[
        "--to",
        "all",
        "--domain",
        "a.example",
        "--domain",
        "b.example",
        "--keyword",
        "赌博",
    ]);
    let watch = net.issue(&[
        "--to",
        "all",
        "--kind",
        "monitoring",
        "--domain",
        "a.example",
        "--url",
        "https://c.example/x",
    ]);
    net.wait_all(&block, "executed", T);
    net.wait_all(&watch, "executed", T);
    assert_eq!(
        entries(&net, "enterprise/e4401"),
        vec![
            e("block", "domain", "a.example"),
            e("block", "domain", "b.example"),
            e("block", "keyword", "赌博"),
            e("monitor", "domain", "a.example"),
            e("monitor", "url", "https://c.example/x"),
        ]
    );

    // A blacklist deletion removes the blocking rule, wherever it came from; monitoring of
    // the same domain stays.
    let delete = net.issue(&["--to", "all", "--op", "delete", "--domain", "a.example"]);
    net.wait_all(&delete, "executed", T);
    for enterprise in ["enterprise/e4401", "enterprise/e0001"] {
        assert_eq!(
            entries(&net, enterprise),
            vec![
                e("block", "domain", "b.example"),
                e("block", "keyword", "赌博"),
                e("monitor", "domain", "a.example"),
                e("monitor", "url", "https://c.example/x"),
            ],
            "{enterprise}"
        );
    }

    // Bad keywords are refused before anything is sent.
    let out = net.cli(
        "ministry",
        &["directive", "issue", "--to", "all", "--keyword", " "],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid keyword"));
}

#[test]
fn a_drill_runs_end_to_end_and_is_never_applied() {
    let net = TestNet::start(&Topology::uniform(&["11", "44"], 1, 1));
    let drill = net.issue(&[
        "--to",
        "all",
        "--kind",
        "drill",
        "--domain",
        "drill.example",
    ]);
    let view = net.wait_all(&drill, "executed", T);
    assert!(
        view["targets"].as_array().is_some_and(|ts| ts
            .iter()
            .all(|t| t["detail"].as_str().is_some_and(|d| d.starts_with("drill")))),
        "{view}"
    );
    for enterprise in net.enterprises() {
        assert!(
            net.rules(&enterprise).is_empty(),
            "{enterprise} applied a drill"
        );
        let status = net.node_status(&enterprise).expect("status");
        assert_eq!(status["active_rules"], 0);
    }
    let real = net.issue(&["--to", "all", "--domain", "real.example"]);
    net.wait_all(&real, "executed", T);

    // Reported separately.
    let drills = net
        .cli_json(
            "ministry",
            &["directive", "list", "--kind", "drill", "--json"],
        )
        .expect("list");
    let ds = drills["directives"].as_array().expect("array");
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["id"], drill.as_str());
    assert_eq!(ds[0]["kind"], "drill");
    let disposals = net
        .cli_json(
            "ministry",
            &["directive", "list", "--kind", "disposal", "--json"],
        )
        .expect("list");
    assert_eq!(disposals["directives"].as_array().map(Vec::len), Some(1));
    let out = net.cli("ministry", &["directive", "list", "--kind", "drills"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown kind \"drills\""));
}

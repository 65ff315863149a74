//! Queries and data upward (R-9.2, R-5.2, R-5.3): an access-log query travels down, each
//! enterprise answers from the log it has, and the answers come back up with the statuses; a
//! data-correction demand waits for the enterprise's operator, on a 5-working-day clock.

use std::time::Duration;

use isms_e2e::isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually, states};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// Points an enterprise's config at an access log (next to its config), restarting it.
fn give_access_log(net: &TestNet, enterprise: &str, lines: Option<&str>) {
    let node = net.node(enterprise);
    if let Some(lines) = lines {
        std::fs::write(node.dir.join("access.jsonl"), lines).expect("write log");
    }
    let text = std::fs::read_to_string(&node.config_path).expect("config");
    let (comment, rest) = text.split_once('\n').expect("header line");
    std::fs::write(
        &node.config_path,
        format!("{comment}\naccess_log = \"access.jsonl\"\n{rest}"),
    )
    .expect("write config");
    net.stop(enterprise);
    net.spawn(enterprise);
    net.wait_linked();
}

fn target<'a>(view: &'a Value, node: &str) -> &'a Value {
    view["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["node"] == node))
        .unwrap_or_else(|| panic!("no target {node} in {view}"))
}

#[test]
fn an_access_log_query_is_answered_by_every_enterprise_and_the_answers_come_back() {
    let net = TestNet::start(&Topology::uniform(&["44"], 2, 1));
    give_access_log(
        &net,
        "enterprise/e4401",
        Some(concat!(
            r#"{"at": "2026-11-20T10:00:00+08:00", "src": "198.51.100.7", "src_port": 50001, "dst": "203.0.113.5", "dst_port": 443, "protocol": "tcp", "url": "https://bad.example/a"}"#,
            "\n",
            r#"{"at": "2026-11-20T10:05:00+08:00", "src": "198.51.100.9", "src_port": 50002, "dst": "203.0.113.5", "dst_port": 443, "protocol": "tcp", "url": "https://bad.example/b"}"#,
            "\n",
            r#"{"at": "2026-11-20T10:06:00+08:00", "src": "192.0.2.1", "src_port": 50003, "dst": "203.0.113.5", "dst_port": 443, "protocol": "tcp", "url": "https://bad.example/c"}"#,
            "\n",
            r#"{"at": "2026-11-21T10:00:00+08:00", "src": "198.51.100.7", "src_port": 50004, "dst": "203.0.113.5", "dst_port": 443, "protocol": "tcp", "url": "https://bad.example/d"}"#,
            "\n",
        )),
    );
    // Configured, but the log is missing: the answer says why.
    give_access_log(&net, "enterprise/e0001", None);

    let out = net.cli(
        "ministry",
        &[
            "directive",
            "query",
            "--to",
            "all",
            "--from",
            "2026-11-20T00:00:00+08:00",
            "--until",
            "2026-11-21T00:00:00+08:00",
            "--src",
            "198.51.100.0/24",
            "--port",
            "443",
            "--protocol",
            "tcp",
            "--url-contains",
            "bad.example",
            "--wait",
            "--json",
            "--timeout",
            "30s",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "one enterprise failed: exit 2");
    let view: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(view["kind"], "access_log_query");

    let e4401 = target(&view, "enterprise/e4401");
    assert_eq!(e4401["state"], "executed");
    assert_eq!(e4401["result"]["matched"], 2);
    let urls: Vec<&str> = e4401["result"]["records"]
        .as_array()
        .map(|rs| rs.iter().filter_map(|r| r["url"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(urls, vec!["https://bad.example/a", "https://bad.example/b"]);

    let e4402 = target(&view, "enterprise/e4402");
    assert_eq!(e4402["state"], "executed");
    assert_eq!(e4402["result"]["matched"], 0);
    assert!(
        e4402["result"]["source"]
            .as_str()
            .unwrap_or_default()
            .contains("no access log")
    );

    let e0001 = target(&view, "enterprise/e0001");
    assert_eq!(e0001["state"], "failed");
    assert!(
        e0001["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("unreadable")
    );

    // The province relayed the answers and keeps them too.
    let at_province = net
        .directive("province/44", view["id"].as_str().expect("id"))
        .expect("view");
    assert_eq!(
        target(&at_province, "enterprise/e4401")["result"]["matched"],
        2
    );

    // A malformed query is refused before anything is sent.
    let out = net.cli(
        "ministry",
        &[
            "directive",
            "query",
            "--to",
            "all",
            "--from",
            "2026-11-21T00:00:00+08:00",
            "--until",
            "2026-11-20T00:00:00+08:00",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid access-log query"));
}

#[test]
fn a_data_correction_waits_for_the_enterprise_on_a_five_working_day_clock() {
    let options = Options {
        clock_files: true,
        ..Options::default()
    };
    let net = TestNet::start_at(
        &Topology::uniform(&["44"], 1, 0),
        &options,
        "2026-11-20T10:00:00+08:00",
    );
    let out = net.cli(
        "ministry",
        &[
            "directive",
            "correct",
            "--to",
            "enterprise/e4401",
            "--subject",
            "record 42",
            "--reason",
            "wrong",
            "--detail",
            "IP address does not match the filing",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let deadline = eventually(T, "acknowledged, with its clock running", || {
        let v = net.directive("ministry", &id)?;
        let t = target(&v, "enterprise/e4401").clone();
        (t["state"] == "acknowledged" && t["deadline_ms"].as_i64()? != 0)
            .then(|| t["deadline_ms"].as_i64())
            .flatten()
    });
    // Friday 20 November 10:00 + 5 working days = Friday 27 November 10:00.
    let expected = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00+08:00")
        .expect("time")
        .timestamp_millis();
    assert_eq!(deadline, expected);

    let pending = net
        .cli_json("enterprise/e4401", &["directive", "corrections", "--json"])
        .expect("corrections");
    let items = pending["corrections"].as_array().expect("list");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["subject"], "record 42");
    assert_eq!(items[0]["reason_code"], "wrong");

    // A week passes: overdue at the issuer.
    let out = net.cli("ministry", &["clock", "advance", "7days 1m"]);
    assert!(out.status.success());
    eventually(T, "the correction to be overdue", || {
        let v = net.directive("ministry", &id)?;
        (target(&v, "enterprise/e4401")["overdue_at_ms"] == expected).then_some(())
    });

    let out = net.cli(
        "enterprise/e4401",
        &[
            "directive",
            "corrected",
            &id,
            "--note",
            "re-reported with the filed address",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = net.wait_all(&id, "executed", T);
    let t = target(&view, "enterprise/e4401");
    assert!(
        t["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("re-reported")
    );
    assert_eq!(t["overdue_at_ms"], expected, "the lateness is kept");
    assert_eq!(states(&view["targets"]).len(), 1);

    // Reported once only; and nothing to correct elsewhere.
    let out = net.cli("enterprise/e4401", &["directive", "corrected", &id]);
    assert_eq!(out.status.code(), Some(1));
    let out = net.cli(
        "ministry",
        &[
            "directive",
            "correct",
            "--to",
            "all",
            "--subject",
            "x",
            "--reason",
            "odd",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reason code"));
}

/// `count` records a minute apart from 2026-11-20T10:00+08:00, ports alternating 443 and 80.
fn store_lines(count: i64) -> (String, Vec<(i64, u32)>) {
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00+08:00")
        .expect("time")
        .timestamp_millis();
    let mut text = String::new();
    let mut kept = Vec::new();
    for i in 0..count {
        let (at, port) = (start + i * 60_000, if i % 2 == 0 { 443 } else { 80 });
        text.push_str(&format!(
            "{{\"at_ms\": {at}, \"src\": \"198.51.100.{}\", \"dst\": \"203.0.113.5\", \"dst_port\": {port}, \"protocol\": \"tcp\", \"url\": \"https://shop.example/{i}\"}}\n",
            i % 200
        ));
        kept.push((at, port));
    }
    (text, kept)
}

#[test]
fn a_query_command_answers_off_the_core_thread_and_a_crash_asks_it_again() {
    let net = TestNet::generate(&Topology::uniform(&["44"], 1, 0), &Options::default());
    const E: &str = "enterprise/e4401";
    let node = net.node(E);
    let (lines, kept) = store_lines(120);
    std::fs::write(node.dir.join("store.jsonl"), lines).expect("store");
    std::fs::write(node.dir.join("slow"), "").expect("flag");
    // The enterprise's own store, as a command: it returns every record it has (the node
    // keeps those that answer the query), after 30 s while the flag file is there.
    let script = format!(
        "cat >/dev/null; if [ -f {dir}/slow ]; then sleep 30; fi; cat {dir}/store.jsonl",
        dir = node.dir.display()
    );
    let text = std::fs::read_to_string(&node.config_path).expect("config");
    std::fs::write(
        &node.config_path,
        format!(
            "{text}\n[access_log_query]\ncommand = [\"sh\", \"-c\", {script:?}]\ntimeout = \"1m\"\n"
        ),
    )
    .expect("config");
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();

    // Half an hour of the store, port 443 (or any port), for E.
    let query = |extra: &[&str]| {
        let mut args = vec![
            "directive",
            "query",
            "--to",
            E,
            "--from",
            "2026-11-20T10:30:00+08:00",
            "--until",
            "2026-11-20T11:00:00+08:00",
        ];
        args.extend_from_slice(extra);
        let out = net.cli("ministry", &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let q = query(&["--port", "443"]);
    eventually(T, "the query acknowledged", || {
        let v = net.directive("ministry", &q)?;
        (target(&v, E)["state"] == "acknowledged").then_some(())
    });
    // The core is not held by the query: a takedown executes while it runs.
    let d = net.issue(&["--to", E, "--block-domain", "meanwhile.example"]);
    net.wait_all(&d, "executed", T);
    let v = net.directive("ministry", &q).expect("view");
    assert_eq!(target(&v, E)["state"], "acknowledged", "still running");

    // A crash while it runs: the restarted enterprise asks the command again, once.
    net.kill(E);
    std::fs::remove_file(node.dir.join("slow")).expect("flag");
    net.spawn(E);
    let v = net.wait_all(&q, "executed", T);
    let from = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:30:00+08:00")
        .expect("time")
        .timestamp_millis();
    let scan = kept
        .iter()
        .filter(|(at, port)| *at >= from && *at < from + 1_800_000 && *port == 443)
        .count();
    assert_eq!(scan, 15);
    assert_eq!(target(&v, E)["result"]["matched"], scan as u64);
    assert!(
        target(&v, E)["result"]["source"]
            .as_str()
            .unwrap_or_default()
            .contains("query command sh"),
        "{v}"
    );

    // A command that fails: `failed`, with what it said.
    std::fs::write(node.dir.join("store.jsonl"), "not json\n").expect("store");
    let bad = query(&[]);
    let v = net.wait_all(&bad, "failed", T);
    assert!(
        target(&v, E)["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("line 1"),
        "{v}"
    );
}

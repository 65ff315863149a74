//! Idempotent issuing: the ministry stores an issued directive and is killed
//! (SIGKILL) before it answers; the CLI, which chose the directive's ID before its first
//! call, retries with that ID once the node is back and is given the same directive, which
//! every target executes once. Issuing other content under a used ID is refused.

use std::time::Duration;

use isms_deploy::Topology;
use isms_e2e::{TestNet, eventually, states};

fn set_hold(net: &TestNet, on: bool) {
    let path = &net.node("ministry").config_path;
    let text = std::fs::read_to_string(path).expect("config");
    let (from, to) = if on {
        ("hold_issue_answers = false", "hold_issue_answers = true")
    } else {
        ("hold_issue_answers = true", "hold_issue_answers = false")
    };
    assert!(text.contains(from), "{text}");
    std::fs::write(path, text.replace(from, to)).expect("config");
}

#[test]
fn an_issue_whose_answer_a_crash_lost_is_retried_with_its_id_and_executed_once() {
    let net = TestNet::generate(&Topology::uniform(&["44"], 2, 1), &Default::default());
    set_hold(&net, true);
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();

    let cli = std::thread::scope(|scope| {
        let cli = scope.spawn(|| {
            net.cli(
                "ministry",
                &[
                    "directive",
                    "issue",
                    "--to",
                    "all",
                    "--block-domain",
                    "once.example",
                    "--wait",
                    "--json",
                    "--timeout",
                    "60s",
                ],
            )
        });
        eventually(
            Duration::from_secs(30),
            "the issue stored, unanswered",
            || {
                net.log("ministry")
                    .contains("issue stored, its answer held")
                    .then_some(())
            },
        );
        net.kill("ministry");
        set_hold(&net, false);
        net.spawn("ministry");
        cli.join().expect("CLI thread")
    });
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(cli.status.success(), "the CLI failed: {stderr}");
    assert!(stderr.contains("asking again for directive "), "{stderr}");
    let view: serde_json::Value = serde_json::from_slice(&cli.stdout).expect("JSON view");
    let id = view["id"].as_str().expect("id").to_string();
    let targets = states(&view["targets"]);
    assert_eq!(targets.len(), net.enterprises().len(), "{view}");
    assert!(targets.values().all(|s| s == "executed"), "{targets:?}");

    // One directive at the ministry, and the rule once at every enterprise.
    let list = net
        .cli_json("ministry", &["directive", "list", "--json"])
        .expect("list");
    let ids: Vec<&str> = list["directives"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, vec![id.as_str()], "{list}");
    for e in net.enterprises() {
        let held = net
            .rule_values(&e)
            .iter()
            .filter(|v| *v == "once.example")
            .count();
        assert_eq!(held, 1, "{e} holds the rule {held} times");
    }

    // Issuing again with the same ID and content is the same directive; other content
    // under it is refused and changes nothing.
    let issue_as = |domain: &str, id: &str| {
        let args = [
            "directive",
            "issue",
            "--to",
            "all",
            "--block-domain",
            domain,
            "--id",
            id,
        ];
        net.cli("ministry", &args)
    };
    let again = issue_as("once.example", &id);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), id);
    let other = issue_as("other.example", &id);
    assert!(!other.status.success());
    let why = String::from_utf8_lossy(&other.stderr);
    assert!(why.contains("issued with other content"), "{why}");
    let bad = issue_as("x.example", "nope");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
    for e in net.enterprises() {
        assert!(!net.rule_values(&e).iter().any(|v| v == "other.example"));
    }
}

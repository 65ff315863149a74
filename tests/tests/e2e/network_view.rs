//! The whole network in one view (O-1, R-10.1): heartbeats go up every interval; a node
//! silent for 3 intervals is stale, for 6 down, at its parent and at the ministry; the
//! enterprises of a province that is down are unknown, not down; each change is raised
//! once in the audit trail; a province sees its own subtree; availability is kept.

use std::collections::HashMap;
use std::time::Duration;

use isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually, ok};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn network() -> TestNet {
    let options = Options {
        health: isms_config::Health {
            interval: Duration::from_millis(200),
            ..Default::default()
        },
        ..Options::default()
    };
    TestNet::start_with(&Topology::uniform(&["11", "44"], 2, 1), &options)
}

/// Node → state in `node`'s view.
fn states(net: &TestNet, node: &str) -> Option<HashMap<String, String>> {
    let v = net.cli_json(node, &["network", "status", "--json"])?;
    Some(
        v["nodes"]
            .as_array()?
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().unwrap_or_default().to_string(),
                    n["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    )
}

fn wait_states(net: &TestNet, at: &str, want: &[(&str, &str)]) -> HashMap<String, String> {
    eventually(T, &format!("{want:?} at {at}"), || {
        let s = states(net, at)?;
        want.iter()
            .all(|(n, st)| s.get(*n).map(String::as_str) == Some(*st))
            .then_some(s)
    })
}

/// Waits until `at`'s audit trail holds exactly `want` for `subject` (recorded once the
/// view's ticker hands the change to the core).
fn wait_changes(net: &TestNet, at: &str, subject: &str, want: &[&str]) {
    eventually(T, &format!("{want:?} for {subject} at {at}"), || {
        (changes(net, at, subject) == want).then_some(())
    });
}

/// The liveness changes of `subject` in `at`'s audit trail, oldest first.
fn changes(net: &TestNet, at: &str, subject: &str) -> Vec<String> {
    let v = net
        .cli_json(
            at,
            &["audit", "list", "--action", "node.liveness", "--json"],
        )
        .expect("audit");
    let mut out: Vec<(u64, String)> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["subject"] == subject)
        .map(|e| {
            (
                e["seq"].as_u64().unwrap_or_default(),
                e["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, o)| o).collect()
}

#[test]
fn silence_is_stale_then_down_a_down_province_hides_its_enterprises_and_each_change_is_raised_once()
{
    let net = network();
    let all = [
        ("ministry", "up"),
        ("province/11", "up"),
        ("province/44", "up"),
        ("enterprise/e1101", "up"),
        ("enterprise/e1102", "up"),
        ("enterprise/e4401", "up"),
        ("enterprise/e4402", "up"),
        ("enterprise/e0001", "up"),
    ];
    let s = wait_states(&net, "ministry", &all);
    assert_eq!(s.len(), all.len(), "{s:?}");

    // A province sees its own subtree only.
    let p = wait_states(
        &net,
        "province/44",
        &[
            ("province/44", "up"),
            ("enterprise/e4401", "up"),
            ("enterprise/e4402", "up"),
        ],
    );
    assert_eq!(p.len(), 3, "{p:?}");

    // An enterprise stops: stale, then down, at its province and at the ministry.
    net.stop("enterprise/e4401");
    wait_states(&net, "ministry", &[("enterprise/e4401", "down")]);
    wait_states(&net, "province/44", &[("enterprise/e4401", "down")]);
    for at in ["province/44", "ministry"] {
        wait_changes(
            &net,
            at,
            "enterprise/e4401",
            &["not yet heard → up", "up → stale", "stale → down"],
        );
    }
    // One under the ministry itself, judged there.
    net.stop("enterprise/e0001");
    wait_states(&net, "ministry", &[("enterprise/e0001", "down")]);

    // A province stops: it is down, its enterprises unknown (not down), in one step, and
    // only the province's change is raised.
    net.stop("province/11");
    let s = wait_states(
        &net,
        "ministry",
        &[
            ("province/11", "down"),
            ("enterprise/e1101", "unknown"),
            ("enterprise/e1102", "unknown"),
        ],
    );
    assert_eq!(s["enterprise/e4402"], "up");
    wait_changes(
        &net,
        "ministry",
        "province/11",
        &["not yet heard → up", "up → stale", "stale → down"],
    );
    assert_eq!(
        changes(&net, "ministry", "enterprise/e1101"),
        ["not yet heard → up"]
    );
    let down = net
        .cli_json(
            "ministry",
            &["network", "status", "--state", "unknown", "--json"],
        )
        .expect("status");
    assert_eq!(down["nodes"].as_array().map(Vec::len), Some(2), "{down}");
    assert_eq!(down["counts"]["unknown"], 2, "{down}");

    // Back: each up again, each change once.
    for n in ["province/11", "enterprise/e4401", "enterprise/e0001"] {
        net.spawn(n);
    }
    wait_states(&net, "ministry", &all);
    wait_changes(
        &net,
        "ministry",
        "enterprise/e4401",
        &[
            "not yet heard → up",
            "up → stale",
            "stale → down",
            "down → up",
        ],
    );
    eventually(T, "province/11 back up in the audit trail", || {
        let last = changes(&net, "ministry", "province/11").pop();
        (last.as_deref() == Some("down → up")).then_some(())
    });

    // One node's history and availability.
    let v = eventually(T, "the history recorded", || {
        let v = net.cli_json(
            "ministry",
            &["network", "node", "enterprise/e4401", "--json"],
        )?;
        let history: Vec<&str> = v["history"]
            .as_array()?
            .iter()
            .map(|s| s["state"].as_str().unwrap_or_default())
            .collect();
        (history == ["up", "stale", "down", "up"]).then_some(v.clone())
    });
    let today = v["available_today_permille"].as_i64().expect("permille");
    assert!(
        (0..1000).contains(&today),
        "down for a while today: {today}"
    );
    assert_eq!(v["node"]["health"]["version"], env!("CARGO_PKG_VERSION"));
    let text = ok(net.cli("ministry", &["network", "status"]));
    assert!(text.contains("8 nodes: up 8"), "{text}");
}

#[test]
fn bad_questions_to_the_network_view_get_a_clear_error() {
    let net = network();
    for (args, why) in [
        (
            &["network", "status", "--state", "sideways"][..],
            "unknown state \"sideways\"",
        ),
        (
            &["network", "status", "--province", "x1"][..],
            "--province \"x1\"",
        ),
        (
            &["network", "node", "enterprise/nope"][..],
            "not below ministry",
        ),
    ] {
        let out = net.cli("ministry", args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let v: Value = net
        .cli_json(
            "ministry",
            &["network", "status", "--province", "44", "--json"],
        )
        .expect("status");
    let nodes: Vec<&str> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["node"].as_str().unwrap_or_default())
        .collect();
    assert!(
        nodes
            .iter()
            .all(|n| *n == "province/44" || n.starts_with("enterprise/e44")),
        "{nodes:?}"
    );
}

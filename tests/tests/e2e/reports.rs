//! What nodes report upward besides results: faults reach the ministry through their
//! province (directly from an enterprise under the ministry), survive restarts on the way,
//! are acknowledged and resolved above and the reporter sees it (R-10.2, O-2); upgrade
//! notices are late with fewer than 5 working days' notice, counted on the calendar, and
//! their window shows as maintenance; contacts go up and a late one is marked
//! bad input is refused with nothing stored.

use std::time::Duration;

use isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually, ok};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
const E: &str = "enterprise/e4401";
const P: &str = "province/44";

/// Heartbeats every 200 ms; no automatic disk fault, whatever the free space of the
/// machine running the tests (each test counts the faults it makes).
fn health() -> isms_config::Health {
    isms_config::Health {
        interval: Duration::from_millis(200),
        disk_free_min_percent: 0,
        ..Default::default()
    }
}

/// The network of these tests; with `clock_at`, on testing clocks reading it from the start.
fn network(clock_at: Option<&str>) -> TestNet {
    let options = Options {
        health: health(),
        clock_files: clock_at.is_some(),
        ..Options::default()
    };
    let topology = Topology::uniform(&["44"], 1, 1);
    match clock_at {
        Some(at) => TestNet::start_at(&topology, &options, at),
        None => TestNet::start_with(&topology, &options),
    }
}

/// The fault `id` at `node`, once it is there (and `state`, if given).
fn fault_at(net: &TestNet, node: &str, id: &str, state: Option<&str>) -> Value {
    eventually(T, &format!("fault {id} {state:?} at {node}"), || {
        let v = net.cli_json(node, &["fault", "list", "--json"])?;
        v["faults"]
            .as_array()?
            .iter()
            .find(|f| f["id"] == id && state.is_none_or(|s| f["state"] == s))
            .cloned()
    })
}

fn faults(net: &TestNet, node: &str) -> usize {
    net.cli_json(node, &["fault", "list", "--json"])
        .and_then(|v| v["faults"].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn refused(net: &TestNet, node: &str, args: &[&str], why: &str) {
    let out = net.cli(node, args);
    assert_eq!(out.status.code(), Some(1), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(why), "{args:?}: {err}");
}

#[test]
fn a_fault_goes_up_survives_restarts_and_its_resolution_comes_back_down() {
    let net = network(None);
    let id = ok(net.cli(
        E,
        &[
            "fault",
            "report",
            "--severity",
            "major",
            "--summary",
            "filtering cluster B down",
            "--detail",
            "both nodes of cluster B stopped answering at 10:02",
        ],
    ))
    .trim()
    .to_string();
    let f = fault_at(&net, "ministry", &id, Some("open"));
    assert_eq!(f["reporter"], E);
    assert_eq!(f["severity"], "major");
    fault_at(&net, P, &id, Some("open"));

    // Its own fault is decided above it.
    refused(
        &net,
        E,
        &["fault", "resolve", &id, "--note", "fixed it myself"],
        "the authority above it decides it",
    );
    // The province acknowledges, the ministry resolves: the reporter sees both.
    ok(net.cli(P, &["fault", "ack", &id, "--note", "engineer on the way"]));
    ok(net.cli(
        "ministry",
        &["fault", "resolve", &id, "--note", "cluster replaced"],
    ));
    let at_reporter = fault_at(&net, E, &id, Some("resolved"));
    let updates: Vec<(&str, &str)> = at_reporter["updates"]
        .as_array()
        .expect("updates")
        .iter()
        .map(|u| {
            (
                u["state"].as_str().unwrap_or(""),
                u["node"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(updates, [("acknowledged", P), ("resolved", "ministry")]);
    fault_at(&net, P, &id, Some("resolved"));
    refused(
        &net,
        "ministry",
        &["fault", "resolve", &id, "--note", "again"],
        "already resolved",
    );

    // Reported while its province is down, the reporter restarted: it arrives anyway.
    net.stop(P);
    let later = ok(net.cli(
        E,
        &[
            "fault",
            "report",
            "--severity",
            "critical",
            "--summary",
            "power lost in hall 2",
        ],
    ))
    .trim()
    .to_string();
    net.stop(E);
    net.spawn(E);
    net.spawn(P);
    fault_at(&net, "ministry", &later, Some("open"));

    // An enterprise under the ministry reports to it directly.
    let direct = ok(net.cli(
        "enterprise/e0001",
        &[
            "fault",
            "report",
            "--severity",
            "minor",
            "--summary",
            "one mirror slow",
        ],
    ))
    .trim()
    .to_string();
    fault_at(&net, "ministry", &direct, Some("open"));
    ok(net.cli(
        "ministry",
        &["fault", "resolve", &direct, "--note", "tuned"],
    ));
    fault_at(&net, "enterprise/e0001", &direct, Some("resolved"));
    let open = net
        .cli_json("ministry", &["fault", "list", "--open", "--json"])
        .expect("list");
    let open: Vec<&str> = open["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .map(|f| f["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(open, [later.as_str()]);
    let audit = ok(net.cli("ministry", &["audit", "list", "--action", "fault.resolve"]));
    assert!(audit.contains(&id) && audit.contains(&direct), "{audit}");

    // Bad input: a clear error, nothing stored.
    let before = faults(&net, E);
    for (args, why) in [
        (
            vec![
                "fault",
                "report",
                "--severity",
                "apocalyptic",
                "--summary",
                "s",
            ],
            "unknown severity",
        ),
        (
            vec!["fault", "report", "--severity", "minor", "--summary", " "],
            "summary is empty",
        ),
    ] {
        refused(&net, E, &args, why);
    }
    // 1 MB of detail (more than a command line holds): through the API.
    let status = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            net.operator(E)
                .await
                .report_fault(isms_proto::v1::ReportFaultRequest {
                    severity: "minor".into(),
                    summary: "s".into(),
                    detail: "x".repeat(1 << 20),
                })
                .await
                .expect_err("refused")
        });
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("at most 16384"), "{status:?}");
    assert_eq!(faults(&net, E), before);
}

#[test]
fn upgrades_are_late_on_the_calendar_and_their_window_is_maintenance_and_contacts_go_up() {
    // Tuesday 29 September 2026, before National Day (1–7 October; 10 October worked).
    let net = network(Some("2026-09-29T10:00:00+08:00"));
    let announce = |at: &str| {
        net.cli(
            E,
            &[
                "upgrade",
                "announce",
                "--at",
                at,
                "--duration",
                "4h",
                "--summary",
                "filter firmware 7.2",
            ],
        )
    };
    let late = announce("2026-10-10T10:00:00+08:00");
    assert!(late.status.success());
    assert!(
        String::from_utf8_lossy(&late.stderr).contains("late: 4 working days ahead"),
        "{late:?}"
    );
    let on_time = announce("2026-10-13T10:00:00+08:00");
    assert!(
        String::from_utf8_lossy(&on_time.stderr).contains("on time: 6 working days ahead"),
        "{on_time:?}"
    );
    refused(
        &net,
        E,
        &[
            "upgrade",
            "announce",
            "--at",
            "2026-09-28T10:00:00+08:00",
            "--duration",
            "1h",
            "--summary",
            "s",
        ],
        "in the past",
    );
    refused(
        &net,
        E,
        &[
            "upgrade",
            "announce",
            "--at",
            "next week",
            "--duration",
            "1h",
            "--summary",
            "s",
        ],
        "RFC 3339",
    );
    let upgrades = eventually(T, "both notices at the ministry", || {
        let v = net.cli_json("ministry", &["upgrade", "list", "--json"])?;
        let list = v["upgrades"].as_array()?.clone();
        (list.len() == 2).then_some(list)
    });
    let mut marks: Vec<(i64, bool)> = upgrades
        .iter()
        .map(|u| {
            (
                u["working_days_ahead"].as_i64().unwrap_or(-1),
                u["late"] == true,
            )
        })
        .collect();
    marks.sort();
    assert_eq!(marks, [(4, true), (6, false)]);
    let at_province = net
        .cli_json(P, &["upgrade", "list", "--json"])
        .expect("list");
    assert_eq!(at_province["upgrades"].as_array().map(Vec::len), Some(2));

    // Within the window its silence is maintenance, at its province and the ministry;
    // silent after the window, down.
    net.stop(E);
    for n in [P, "ministry"] {
        ok(net.cli(n, &["clock", "set", "2026-10-13T11:00:00+08:00"]));
    }
    let state = |at: &str| {
        net.cli_json(at, &["network", "status", "--json"])
            .and_then(|v| {
                v["nodes"]
                    .as_array()?
                    .iter()
                    .find(|n| n["node"] == E)
                    .map(|n| n["state"].as_str().unwrap_or("").to_string())
            })
    };
    for at in [P, "ministry"] {
        eventually(T, &format!("maintenance at {at}"), || {
            (state(at)? == "maintenance").then_some(())
        });
    }
    for n in [P, "ministry"] {
        ok(net.cli(n, &["clock", "set", "2026-10-13T15:00:00+08:00"]));
    }
    eventually(T, "down after the window", || {
        (state("ministry")? == "down").then_some(())
    });
    // Recorded once the ministry's ticker hands the change to its core.
    eventually(T, "maintenance then down in the ministry's history", || {
        let node = net.cli_json("ministry", &["network", "node", E, "--json"])?;
        let history: Vec<String> = node["history"]
            .as_array()?
            .iter()
            .map(|s| s["state"].as_str().unwrap_or("").to_string())
            .collect();
        history
            .windows(2)
            .any(|w| w == ["maintenance", "down"])
            .then_some(())
    });

    // Contacts: one on time, one late (changed on 29 September, reported 13 October).
    ok(net.cli(
        "enterprise/e0001",
        &[
            "contact",
            "set",
            "--department",
            "NOC",
            "--name",
            "Li Wei",
            "--phone",
            "+86 10 1234-5678",
            "--email",
            "noc@e0001.example",
            "--changed-on",
            "2026-09-29",
        ],
    ));
    ok(net.cli(P, &["clock", "set", "2026-10-13T15:00:00+08:00"]));
    let out = ok(net.cli(
        P,
        &[
            "contact",
            "set",
            "--department",
            "Security",
            "--name",
            "Wang Fang",
            "--phone",
            "020-8765-4321",
            "--email",
            "sec@gd.example",
            "--changed-on",
            "2026-09-29",
        ],
    ));
    assert!(out.contains(P), "{out}");
    let contacts = eventually(T, "both contacts at the ministry", || {
        let v = net.cli_json("ministry", &["contact", "list", "--json"])?;
        let list = v["contacts"].as_array()?.clone();
        (list.len() == 2).then_some(list)
    });
    for c in &contacts {
        let late = c["node"] == P;
        assert_eq!(c["late"], late, "{c}");
    }
    refused(
        &net,
        P,
        &[
            "contact",
            "set",
            "--department",
            "Security",
            "--name",
            "Wang Fang",
            "--phone",
            "020",
            "--email",
            "not-an-address",
            "--changed-on",
            "2026-09-29",
        ],
        "not an address",
    );
}

#[test]
fn a_node_raises_faults_itself_for_failing_enforcement_and_a_failed_store_once_each() {
    let options = Options {
        health: isms_config::Health {
            enforcement_fault_after: Duration::from_secs(1),
            // Any machine's disk is more than 1% used: the disk fault is raised too.
            disk_free_min_percent: 99,
            ..health()
        },
        ..Options::default()
    };
    let net = TestNet::generate(&Topology::uniform(&["44"], 1, 0), &options);
    // A directory where the rules file should be: the enforcement point fails.
    let rules = net.node(E).rules_path().expect("enterprise");
    std::fs::create_dir_all(&rules).expect("mkdir");
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();
    net.issue(&["--to", "all", "--block-domain", "x.example"]);
    let automatic = |node: &str| -> Vec<Value> {
        net.cli_json(node, &["fault", "list", "--json"])
            .and_then(|v| v["faults"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f["automatic"] == true)
            .collect()
    };
    let of = |list: &[Value], summary: &str| -> Vec<Value> {
        list.iter()
            .filter(|f| f["summary"] == summary && f["reporter"] == E)
            .cloned()
            .collect()
    };
    let raised = eventually(T, "an enforcement and a disk fault at the ministry", || {
        let list = automatic("ministry");
        let enforcement = of(&list, "enforcement points failing");
        (!enforcement.is_empty() && !of(&list, "disk nearly full").is_empty())
            .then_some(enforcement)
    });
    assert!(
        raised[0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not written"),
        "{}",
        raised[0]
    );
    // Still failing five heartbeats later, each of which checked again: still one of each.
    let heard =
        || net.cli_json(P, &["network", "node", E, "--json"])?["node"]["heard_at_ms"].as_i64();
    let mark = eventually(T, "the enterprise heard at its province", heard);
    eventually(T, "five more heartbeats from the enterprise", || {
        (heard()? >= mark + 5 * health().interval.as_millis() as i64).then_some(())
    });
    let at_e = automatic(E);
    assert_eq!(of(&at_e, "enforcement points failing").len(), 1, "{at_e:?}");
    assert_eq!(of(&at_e, "disk nearly full").len(), 1, "{at_e:?}");

    // A run that stopped on a store failure leaves word of it; the next start reports it.
    net.stop(E);
    let marker = net.node(E).dir.join("store").join("isms-failure.txt");
    std::fs::write(&marker, "the node stopped on a failure of its store").expect("marker");
    net.spawn(E);
    eventually(T, "the store failure at the ministry", || {
        automatic("ministry")
            .iter()
            .any(|f| f["summary"] == "the node stopped on a store failure")
            .then_some(())
    });
    assert!(!marker.exists(), "reported once, the word is removed");
}

//! Requirements as the regulation runs them at a province: confirm, return
//! with a reason, emergency pass-through, and the confirmation clocks on the
//! working-day calendar, driven by the testing clock instead of waiting.

use std::time::Duration;

use isms_e2e::isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually, states};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// Province 11 auto-confirms; province 44's operator decides by hand.
fn network(clocks: bool) -> TestNet {
    let options = Options {
        manual_confirm: vec!["44".into()],
        clock_files: clocks,
        ..Options::default()
    };
    TestNet::start_with(&Topology::uniform(&["11", "44"], 2, 0), &options)
}

fn hop(view: &Value, node: &str) -> Value {
    view["hops"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["node"] == node))
        .cloned()
        .unwrap_or_else(|| panic!("no relay {node} in {view}"))
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("RFC 3339")
        .timestamp_millis()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until province/44 holds `id` as received and the ministry sees that.
fn wait_received(net: &TestNet, id: &str) -> Value {
    eventually(T, "province/44 to hold the requirement", || {
        let v = net.directive("ministry", id)?;
        (hop(&v, "province/44")["state"] == "received").then_some(v)
    })
}

#[test]
fn a_province_confirms_a_requirement_and_it_is_forwarded_at_once() {
    let net = network(false);
    let id = net.issue(&["--to", "all", "--block-domain", "confirm.example"]);
    let view = wait_received(&net, &id);
    let s = states(&view["targets"]);
    assert_eq!(s["enterprise/e4401"], "queued", "waits at the province");
    eventually(T, "province/11's enterprises to execute", || {
        let s = net.target_states("ministry", &id)?;
        (s["enterprise/e1101"] == "executed" && s["enterprise/e1102"] == "executed").then_some(())
    });
    // Read again: province/11's decision may reach the ministry after province/44's
    // receipt, but it precedes its enterprises' reports on the same link.
    let view = net.directive("ministry", &id).expect("view");
    assert_eq!(hop(&view, "province/11")["detail"], "auto-confirmed");

    let pending = net
        .cli_json("province/44", &["directive", "pending", "--json"])
        .expect("pending");
    let items = pending["pending"].as_array().expect("list");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert!(
        items[0]["time_left_ms"].as_i64().unwrap_or(0) > 0,
        "{pending}"
    );

    ok(net.cli("province/44", &["directive", "confirm", &id]));
    let view = net.wait_all(&id, "executed", T);
    let p44 = hop(&view, "province/44");
    assert_eq!(p44["state"], "confirmed");
    assert_eq!(p44["detail"], "confirmed by admin");
    assert_eq!(net.rules("enterprise/e4401").len(), 1);
    let pending = net
        .cli_json("province/44", &["directive", "pending", "--json"])
        .expect("pending");
    assert_eq!(pending["pending"], serde_json::json!([]));

    // The same decision again is a retried call: the same answer, nothing done twice.
    let again = net.cli("province/44", &["directive", "confirm", &id]);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(net.rules("enterprise/e4401").len(), 1);
    // Another decision is refused, clearly.
    let out = net.cli(
        "province/44",
        &["directive", "return", &id, "--reason", "late"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not waiting for a decision"));
    // Province/11 confirmed it on receipt: it can no longer be returned there.
    let out = net.cli(
        "province/11",
        &["directive", "return", &id, "--reason", "late"],
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_province_returns_a_requirement_with_its_reason() {
    let net = network(false);
    let id = net.issue(&["--to", "province/44", "--block-ip", "198.51.100.0/24"]);
    wait_received(&net, &id);

    // The reason is mandatory.
    let out = net.cli("province/44", &["directive", "return", &id]);
    assert!(!out.status.success());
    let out = net.cli(
        "province/44",
        &["directive", "return", &id, "--reason", "  "],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a reason"));
    // A reason of a megabyte (more than a command line carries, so through the API) is
    // refused as such, and the requirement still waits.
    let refused = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let mut client = net.operator("province/44").await;
            client
                .return_directive(isms_proto::v1::DecisionRequest {
                    id: id.clone(),
                    reason: "x".repeat(1 << 20),
                })
                .await
                .expect_err("a megabyte of reason")
        });
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("1048576 bytes long; at most 4096"),
        "{refused:?}"
    );
    let view = net.directive("ministry", &id).expect("view");
    assert_eq!(hop(&view, "province/44")["state"], "received");

    let reason = "不属于本辖区管理 / outside this province's remit";
    ok(net.cli(
        "province/44",
        &["directive", "return", &id, "--reason", reason],
    ));
    let view = net.wait_all(&id, "returned", T);
    let p44 = hop(&view, "province/44");
    assert_eq!(p44["state"], "returned");
    assert_eq!(p44["detail"], reason);
    assert!(
        view["targets"]
            .as_array()
            .is_some_and(|ts| ts.iter().all(|t| t["detail"] == reason))
    );
    assert_eq!(
        net.rules("enterprise/e4401").len(),
        0,
        "nothing was forwarded"
    );

    let returned = net
        .cli_json(
            "ministry",
            &["directive", "list", "--state", "returned", "--json"],
        )
        .expect("list");
    assert_eq!(returned["directives"].as_array().map(Vec::len), Some(1));
    let out = net.cli("ministry", &["directive", "list", "--state", "bogus"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn an_emergency_passes_a_province_without_confirmation() {
    let net = network(false);
    let id = net.issue(&[
        "--to",
        "all",
        "--urgency",
        "emergency",
        "--block-domain",
        "urgent.example",
    ]);
    let view = net.wait_all(&id, "executed", T);
    let p44 = hop(&view, "province/44");
    assert_eq!(p44["state"], "forwarded");
    assert_eq!(
        p44["detail"],
        "emergency: passed without confirmation (R-6.2)"
    );
    assert_eq!(
        p44["deadline_ms"], 0,
        "no confirmation clock for an emergency"
    );
    // The province keeps the record that it passed.
    let at_province = net.directive("province/44", &id).expect("province view");
    assert_eq!(hop(&at_province, "province/44")["state"], "forwarded");
}

/// Sets the clocks of the ministry and of province/44.
fn set_clocks(net: &TestNet, at: &str) {
    for node in ["ministry", "province/44"] {
        ok(net.cli(node, &["clock", "set", at]));
    }
}

fn advance(net: &TestNet, by: &str) {
    for node in ["ministry", "province/44"] {
        ok(net.cli(node, &["clock", "advance", by]));
    }
}

fn relay_clock(net: &TestNet, id: &str) -> (i64, i64) {
    let v = net.directive("ministry", id).expect("view");
    let h = hop(&v, "province/44");
    (
        h["deadline_ms"].as_i64().unwrap_or(0),
        h["overdue_at_ms"].as_i64().unwrap_or(0),
    )
}

fn wait_overdue(net: &TestNet, id: &str) -> i64 {
    eventually(T, "the relay to be marked overdue", || {
        let (_, overdue) = relay_clock(net, id);
        (overdue != 0).then_some(overdue)
    })
}

/// Issues at the current (testing) time and returns the ID once province/44 holds it.
fn issue_general(net: &TestNet, urgency: &str) -> String {
    let id = net.issue(&[
        "--to",
        "province/44",
        "--urgency",
        urgency,
        "--block-ip",
        "192.0.2.9",
    ]);
    wait_received(net, &id);
    eventually(T, "the confirmation clock to start", || {
        (relay_clock(net, &id).0 != 0).then_some(())
    });
    id
}

#[test]
fn confirmation_clocks_run_on_the_working_day_calendar_and_raise_overdue_once() {
    let net = network(true);

    // Across the National Day holiday (1–7 October 2026).
    set_clocks(&net, "2026-09-30T10:00:00+08:00");
    let holiday = issue_general(&net, "general");
    assert_eq!(
        relay_clock(&net, &holiday).0,
        ms("2026-10-08T10:00:00+08:00")
    );
    // Onto an adjusted working Saturday (10 October 2026, 调休).
    set_clocks(&net, "2026-10-09T10:00:00+08:00");
    let saturday = issue_general(&net, "general");
    assert_eq!(
        relay_clock(&net, &saturday).0,
        ms("2026-10-10T10:00:00+08:00")
    );

    // Across a weekend: Friday 20 November 15:00 → Monday 23 November 15:00; an urgent
    // requirement has 2 hours, weekend or not.
    set_clocks(&net, "2026-11-20T15:00:00+08:00");
    let general = issue_general(&net, "general");
    let urgent = issue_general(&net, "urgent");
    assert_eq!(
        relay_clock(&net, &general).0,
        ms("2026-11-23T15:00:00+08:00")
    );
    assert_eq!(
        relay_clock(&net, &urgent).0,
        ms("2026-11-20T17:00:00+08:00")
    );
    // The province shows the time left on its own clock.
    let pending = net
        .cli_json("province/44", &["directive", "pending", "--json"])
        .expect("pending");
    assert_eq!(pending["pending"].as_array().map(Vec::len), Some(4));

    advance(&net, "2h 1m");
    assert_eq!(wait_overdue(&net, &urgent), ms("2026-11-20T17:00:00+08:00"));
    // Saturday and Sunday do not count: still in time on Sunday afternoon. (The September
    // and October requirements, long past due, ran out at the same tick.)
    // An urgent requirement issued now runs out at the first tick after the advance: once
    // the ministry has heard so, the province has checked every clock at the new time.
    let tick_seen = issue_general(&net, "urgent");
    advance(&net, "46h");
    wait_overdue(&net, &tick_seen);
    assert_eq!(
        relay_clock(&net, &general).1,
        0,
        "overdue before Monday 15:00"
    );
    advance(&net, "24h");
    assert_eq!(
        wait_overdue(&net, &general),
        ms("2026-11-23T15:00:00+08:00")
    );
    assert_eq!(
        wait_overdue(&net, &holiday),
        ms("2026-10-08T10:00:00+08:00")
    );

    let overdue = net
        .cli_json(
            "ministry",
            &["directive", "list", "--state", "overdue", "--json"],
        )
        .expect("list");
    assert_eq!(overdue["directives"].as_array().map(Vec::len), Some(5));

    // Confirmed late: it still completes, and the lateness is kept.
    ok(net.cli("province/44", &["directive", "confirm", &general]));
    let view = net.wait_all(&general, "executed", T);
    let p44 = hop(&view, "province/44");
    assert_eq!(p44["state"], "confirmed");
    assert_eq!(p44["overdue_at_ms"], ms("2026-11-23T15:00:00+08:00"));

    // Exactly once: more ticks raise nothing new.
    let ticks_seen = issue_general(&net, "urgent");
    advance(&net, "72h");
    wait_overdue(&net, &ticks_seen);
    let log = net.log("ministry");
    for id in [
        &holiday,
        &saturday,
        &general,
        &urgent,
        &tick_seen,
        &ticks_seen,
    ] {
        let raised = log
            .lines()
            .filter(|l| l.contains("clock ran out") && l.contains(id.as_str()))
            .count();
        assert_eq!(raised, 1, "overdue raised {raised} times for {id}");
    }
}

#[test]
fn watch_follows_a_directive_live_until_every_target_is_final() {
    let net = network(false);
    let id = net.issue(&["--to", "province/44", "--block-domain", "watched.example"]);
    wait_received(&net, &id);
    let node = net.node("ministry");
    let mut watcher = std::process::Command::new(isms_e2e::bin_dir().join("ministry-node"))
        .args([
            "directive",
            "watch",
            &id,
            "--json",
            "--timeout",
            "60s",
            "--config",
        ])
        .arg(&node.config_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    // Confirm only once the watcher has shown the state it started from.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        watcher.stdout.take().expect("stdout"),
    ));
    let first = lines.next().expect("a first change").expect("read");
    ok(net.cli("province/44", &["directive", "confirm", &id]));
    let mut changes: Vec<Value> = vec![serde_json::from_str(&first).expect("JSON")];
    for line in lines {
        changes.push(serde_json::from_str(&line.expect("read")).expect("one JSON object per line"));
    }
    let status = watcher.wait().expect("watch ends by itself");
    assert_eq!(status.code(), Some(0));
    let saw = |node: &str, state: &str| {
        changes
            .iter()
            .any(|c| c["node"] == node && c["state"] == state)
    };
    assert!(saw("province/44", "received"), "{changes:?}");
    assert!(saw("province/44", "confirmed"), "{changes:?}");
    assert!(saw("enterprise/e4401", "executed"), "{changes:?}");
    assert!(saw("enterprise/e4402", "executed"), "{changes:?}");
}

//! A directive's life after it is carried out: revocation removes its rules at every
//! enterprise that applied them (acknowledged per target like any directive), and effective
//! and expiry times switch rules on and off on time, across restarts.

use std::time::Duration;

use isms_e2e::isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually, states};

const T: Duration = Duration::from_secs(30);

#[test]
fn revoking_a_directive_removes_its_rules_at_every_enterprise() {
    let net = TestNet::start(&Topology::devnet());
    let a = net.issue(&[
        "--to",
        "all",
        "--block-domain",
        "a.example",
        "--block-ip",
        "192.0.2.1",
    ]);
    let b = net.issue(&["--to", "all", "--block-domain", "b.example"]);
    net.wait_all(&a, "executed", T);
    net.wait_all(&b, "executed", T);

    let out = net.cli("ministry", &["directive", "revoke", &a, "--wait", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revocation: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        revocation["counts"]["executed"], 7,
        "acknowledged per target"
    );
    // The revoked directive now reads `revoked` everywhere.
    net.wait_all(&a, "revoked", T);
    for e in net.enterprises() {
        assert_eq!(net.rule_values(&e), vec!["b.example"], "{e}");
        let status = net.node_status(&e).expect("status");
        assert_eq!(status["active_rules"], 1);
    }
    assert_eq!(
        states(&net.directive("ministry", &b).expect("b")["targets"])
            .values()
            .filter(|s| *s == "executed")
            .count(),
        7,
        "the other directive is untouched"
    );

    // Only what was issued here can be revoked here.
    let out = net.cli(
        "ministry",
        &[
            "directive",
            "revoke",
            "01a1fd92-0000-7000-8000-000000000000",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot revoke"));
    let out = net.cli("province/44", &["directive", "revoke", &b]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot revoke"));
}

#[test]
fn a_revocation_withdraws_a_requirement_still_waiting_at_a_province() {
    let options = Options {
        manual_confirm: vec!["44".into()],
        ..Options::default()
    };
    let net = TestNet::start_with(&Topology::uniform(&["11", "44"], 1, 0), &options);
    let x = net.issue(&["--to", "all", "--block-domain", "x.example"]);
    eventually(T, "province/11 executed, province/44 holding", || {
        let v = net.directive("ministry", &x)?;
        let mut s = states(&v["targets"]);
        s.extend(states(&v["hops"]));
        (s["enterprise/e1101"] == "executed" && s["province/44"] == "received").then_some(())
    });
    let out = net.cli("ministry", &["directive", "revoke", &x, "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = net.wait_all(&x, "revoked", T);
    let hops = states(&view["hops"]);
    assert_eq!(hops["province/44"], "revoked");
    assert_eq!(net.rules("enterprise/e1101").len(), 0);
    assert_eq!(net.rules("enterprise/e4401").len(), 0);
    // Nothing waits any more, and a late confirmation is refused.
    let pending = net
        .cli_json("province/44", &["directive", "pending", "--json"])
        .expect("pending");
    assert_eq!(pending["pending"], serde_json::json!([]));
    let out = net.cli("province/44", &["directive", "confirm", &x]);
    assert_eq!(out.status.code(), Some(1));
}

fn clock_all(net: &TestNet, args: &[&str]) {
    for n in net.net.nodes.clone() {
        let out = net.cli(n.id.as_str(), args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn effective_and_expiry_times_switch_rules_on_and_off_across_restarts() {
    let options = Options {
        clock_files: true,
        ..Options::default()
    };
    let net = TestNet::start_at(
        &Topology::uniform(&["44"], 2, 0),
        &options,
        "2026-11-20T09:00:00+08:00",
    );

    // Expiry before the effective time, or in the past, is refused.
    let out = net.cli(
        "ministry",
        &[
            "directive",
            "issue",
            "--to",
            "all",
            "--block-domain",
            "bad.example",
            "--effective-at",
            "2026-11-20T12:00:00+08:00",
            "--expires-at",
            "2026-11-20T11:00:00+08:00",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expiry time"));

    let id = net.issue(&[
        "--to",
        "all",
        "--block-domain",
        "window.example",
        "--effective-at",
        "2026-11-20T10:00:00+08:00",
        "--expires-at",
        "2026-11-20T11:00:00+08:00",
    ]);
    net.wait_all(&id, "executed", T);
    assert!(
        net.rule_values("enterprise/e4401").is_empty(),
        "not yet in force"
    );

    clock_all(&net, &["clock", "advance", "1h"]);
    eventually(T, "the rule to take effect", || {
        (net.rule_values("enterprise/e4401") == ["window.example"]
            && net.rule_values("enterprise/e4402") == ["window.example"])
        .then_some(())
    });

    // The enterprise is down when the rule lapses; it catches up when it returns.
    net.stop("enterprise/e4401");
    clock_all(&net, &["clock", "advance", "1h"]);
    eventually(T, "the rule to lapse at the running enterprise", || {
        net.rule_values("enterprise/e4402").is_empty().then_some(())
    });
    net.spawn("enterprise/e4401");
    eventually(T, "the rule to lapse at the restarted enterprise", || {
        net.rule_values("enterprise/e4401").is_empty().then_some(())
    });
    // The rules file is written inside the lapse's group, before the group commits, and
    // the status counts what the store holds: it follows within the commit.
    eventually(
        T,
        "the restarted enterprise to hold no active rules",
        || {
            let status = net.node_status("enterprise/e4401")?;
            (status["active_rules"] == 0).then_some(())
        },
    );
}

//! Four-eyes (O-6) end to end, with the default major rule: a directive to all, an
//! emergency, or a revocation of a major one waits at the ministry until a second operator
//! holding `approver` approves it. The issuer cannot approve their own; an approved one is
//! executed at every target; a rejected or expired one reaches no node; a restart while one
//! waits loses nothing; `--wait` says it waits for approval; approving again answers the
//! same; bad decisions are clear errors.

use std::process::Output;
use std::time::Duration;

use isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually, ok};

const T: Duration = Duration::from_secs(60);

fn refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
}

fn approval(net: &TestNet, id: &str) -> serde_json::Value {
    let v = net.directive("ministry", id).expect("status");
    v["approval"].clone()
}

/// No enterprise holds a rule with `value`.
fn reached_nobody(net: &TestNet, value: &str) {
    for e in net.enterprises() {
        assert!(
            !net.rule_values(&e).iter().any(|v| v == value),
            "{value} reached {e}"
        );
    }
}

/// Every enterprise holds `value` exactly once.
fn reached_everyone_once(net: &TestNet, value: &str) {
    for e in net.enterprises() {
        let n = net.rule_values(&e).iter().filter(|v| *v == value).count();
        assert_eq!(n, 1, "{value} at {e}");
    }
}

fn issue_as(net: &TestNet, role: &str, args: &[&str]) -> String {
    let mut full = vec!["directive", "issue"];
    full.extend_from_slice(args);
    let id = ok(net.cli_as("ministry", role, &full));
    assert_eq!(id.len(), 36, "{id}");
    id
}

#[test]
fn a_major_directive_leaves_only_with_a_second_operators_approval() {
    let options = Options {
        role_operators: true,
        four_eyes: true,
        clock_files: true,
        ..Options::default()
    };
    let net = TestNet::start_at(
        &Topology::uniform(&["44"], 2, 1),
        &options,
        "2026-12-07T09:00:00+08:00",
    );

    // Not major: it leaves at once.
    let minor = net.issue(&[
        "--to",
        "enterprise/e4401",
        "--block-domain",
        "minor.example",
    ]);
    assert!(approval(&net, &minor).is_null());
    net.wait_all(&minor, "executed", T);

    // Major: held, shown as waiting, sent nowhere.
    let major = net.issue(&["--to", "all", "--block-domain", "major.example"]);
    let a = approval(&net, &major);
    assert_eq!(a["state"], "awaiting_approval", "{a}");
    assert_eq!(a["major_because"], serde_json::json!(["to all"]));
    assert_eq!(a["requested_by"], "admin");
    let list = net
        .cli_json(
            "ministry",
            &[
                "directive",
                "list",
                "--state",
                "awaiting_approval",
                "--json",
            ],
        )
        .expect("list");
    let listed: Vec<&str> = list["directives"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(listed, [major.as_str()]);
    assert_eq!(
        net.node_status("ministry").expect("status")["awaiting_approval"],
        1
    );

    // The issuer holds `approver` and still cannot approve their own; an operator without
    // the role cannot either.
    refused(
        &net.cli("ministry", &["directive", "approve", &major]),
        "cannot approve it",
    );
    refused(
        &net.cli_as("ministry", "operator", &["directive", "approve", &major]),
        "approver",
    );
    reached_nobody(&net, "major.example");

    // A restart while it waits loses nothing.
    net.stop("ministry");
    net.spawn("ministry");
    net.wait_linked();
    assert_eq!(approval(&net, &major)["state"], "awaiting_approval");

    // A second operator approves: executed once at every target; approving again is a
    // retried call and answers the same.
    let out = ok(net.cli_as("ministry", "approver", &["directive", "approve", &major]));
    let sent = format!("approved: sent to {} targets", net.enterprises().len());
    assert!(out.contains(&sent), "{out}");
    net.wait_all(&major, "executed", T);
    ok(net.cli_as("ministry", "approver", &["directive", "approve", &major]));
    reached_everyone_once(&net, "major.example");
    let a = approval(&net, &major);
    assert_eq!(a["state"], "approved");
    assert_eq!(a["decided_by"], "approver");

    // Revoking a major directive is major too.
    let revoke = ok(net.cli("ministry", &["directive", "revoke", &major]));
    assert_eq!(approval(&net, &revoke)["state"], "awaiting_approval");
    assert_eq!(
        approval(&net, &revoke)["major_because"],
        serde_json::json!(["revokes a major directive"])
    );
    ok(net.cli_as("ministry", "approver", &["directive", "approve", &revoke]));
    net.wait_all(&major, "revoked", T);

    // Rejected: the reason is mandatory and bounded; once rejected it never leaves.
    let rejected = issue_as(
        &net,
        "operator",
        &[
            "--to",
            "all",
            "--urgency",
            "emergency",
            "--block-domain",
            "rejected.example",
        ],
    );
    assert_eq!(
        approval(&net, &rejected)["major_because"],
        serde_json::json!(["to all", "an emergency"])
    );
    refused(
        &net.cli_as(
            "ministry",
            "approver",
            &["directive", "reject", &rejected, "--reason", "  "],
        ),
        "needs a reason",
    );
    let huge = "x".repeat(100_000);
    refused(
        &net.cli_as(
            "ministry",
            "approver",
            &["directive", "reject", &rejected, "--reason", &huge],
        ),
        "at most 4096",
    );
    // A megabyte of reason (more than a command line carries) through the API.
    let refused_mb = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let mut client = net.operator("ministry").await;
            client
                .reject_directive(isms_proto::v1::DecisionRequest {
                    id: rejected.clone(),
                    reason: "x".repeat(1 << 20),
                })
                .await
                .expect_err("a megabyte of reason")
        });
    assert_eq!(
        refused_mb.code(),
        tonic::Code::InvalidArgument,
        "{refused_mb:?}"
    );
    assert_eq!(approval(&net, &rejected)["state"], "awaiting_approval");
    ok(net.cli_as(
        "ministry",
        "approver",
        &["directive", "reject", &rejected, "--reason", "wrong list"],
    ));
    let a = approval(&net, &rejected);
    assert_eq!(
        (a["state"].as_str(), a["reason"].as_str()),
        (Some("rejected"), Some("wrong list"))
    );
    refused(
        &net.cli_as("ministry", "approver", &["directive", "approve", &rejected]),
        "no longer awaiting approval: rejected by approver",
    );

    // Expired: the ministry's clock passes the default 24 hours; the tick expires it.
    let expired = issue_as(
        &net,
        "operator",
        &["--to", "all", "--block-domain", "expired.example"],
    );
    ok(net.cli("ministry", &["clock", "advance", "25h"]));
    eventually(T, "the request expired", || {
        (approval(&net, &expired)["state"] == "expired").then_some(())
    });
    refused(
        &net.cli_as("ministry", "approver", &["directive", "approve", &expired]),
        "no longer awaiting approval: expired",
    );
    let audit = ok(net.cli_as(
        "ministry",
        "auditor",
        &["audit", "list", "--action", "directive.expire", "--json"],
    ));
    assert!(audit.contains(&expired), "{audit}");

    // Bad decisions: an unknown ID, a malformed one.
    let unknown = uuid::Uuid::now_v7().to_string();
    refused(
        &net.cli_as("ministry", "approver", &["directive", "approve", &unknown]),
        "awaits approval here",
    );
    refused(
        &net.cli_as(
            "ministry",
            "approver",
            &["directive", "approve", "not-an-id"],
        ),
        "expected a UUID",
    );

    // `--wait` says it waits, and finishes once approved.
    let chosen = uuid::Uuid::now_v7().to_string();
    let waited = std::thread::scope(|scope| {
        let cli = scope.spawn(|| {
            net.cli(
                "ministry",
                &[
                    "directive",
                    "issue",
                    "--to",
                    "all",
                    "--block-domain",
                    "waited.example",
                    "--id",
                    &chosen,
                    "--wait",
                    "--timeout",
                    "60s",
                ],
            )
        });
        eventually(T, "the waiting directive stored", || {
            let v = net.directive("ministry", &chosen)?;
            (v["approval"]["state"] == "awaiting_approval").then_some(())
        });
        ok(net.cli_as("ministry", "approver", &["directive", "approve", &chosen]));
        cli.join().expect("CLI thread")
    });
    let stderr = String::from_utf8_lossy(&waited.stderr);
    assert!(waited.status.success(), "{stderr}");
    assert!(
        stderr.contains("waiting for approval by a second operator"),
        "{stderr}"
    );
    reached_everyone_once(&net, "waited.example");

    for value in ["rejected.example", "expired.example"] {
        reached_nobody(&net, value);
    }
    assert_eq!(
        net.node_status("ministry").expect("status")["awaiting_approval"],
        0
    );
}

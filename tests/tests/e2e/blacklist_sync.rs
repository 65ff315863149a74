//! The versioned blacklist with delta sync, end to end: every blacklist change is a
//! delta `from → to` with the checksum of the list after it; an enterprise that was down
//! while deltas were issued catches up in order; one whose stored rules were corrupted
//! finds the mismatch (on the next delta, or by `blacklist verify`), asks its parent for
//! the whole list, and ends at the issuer's version and checksum with the rules back in
//! force; the ministry shows who lags.

use std::time::Duration;

use isms_deploy::{Options, Topology};
use isms_domain::records;
use isms_e2e::{TestNet, eventually, ok};
use isms_proto::record::ActiveRules;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const E1: &str = "enterprise/e4401";
const E2: &str = "enterprise/e4402";

fn start() -> TestNet {
    let net = TestNet::start(&Topology::uniform(&["44"], 2, 0));
    net.wait_linked();
    net
}

/// `ministry-node blacklist lag --all --json`.
fn lag(net: &TestNet) -> Value {
    net.cli_json("ministry", &["blacklist", "lag", "--all", "--json"])
        .expect("blacklist lag")
}

/// The enterprise's list of the ministry, from `blacklist show --json`.
fn held_list(net: &TestNet, enterprise: &str) -> Option<Value> {
    let v = net.cli_json(enterprise, &["blacklist", "show", "--json"])?;
    v["blacklists"]
        .as_array()?
        .iter()
        .find(|l| l["issuer"] == "ministry")
        .cloned()
}

/// Waits until the enterprise holds the ministry's current version and checksum.
fn wait_current(net: &TestNet, enterprise: &str) -> Value {
    eventually(
        T,
        &format!("{enterprise} at the ministry's version"),
        || {
            let issuer = lag(net);
            let l = held_list(net, enterprise)?;
            (l["version"] == issuer["version"] && l["sha256"] == issuer["sha256"]).then_some(l)
        },
    )
}

fn blacklist(net: &TestNet, args: &[&str]) -> String {
    let mut full = vec!["--blacklist", "--to", "all"];
    full.extend_from_slice(args);
    net.issue_wait(&full)
}

/// Takes `value` out of the enterprise's stored blacklist rules, as a damaged disk or a
/// careless hand would (the node is stopped).
fn corrupt(net: &TestNet, enterprise: &str, value: &str) {
    let store = isms_store::Store::open(&net.node(enterprise).dir.join("store")).expect("store");
    let mut txn = store.txn();
    let mut changed = 0;
    for entry in store.scan_prefix(records::RULE_SET_PREFIX) {
        let (k, v) = entry.expect("record");
        let mut set: ActiveRules = records::decode(&k, &v).expect("rule set");
        let before = set.rules.len();
        set.rules.retain(|r| r.value.as_ref() != value.as_bytes());
        if set.rules.len() != before {
            txn.put(k, records::encode(&set));
            changed += 1;
        }
    }
    assert_eq!(changed, 1, "{value} is in one stored rule set");
    store.apply(txn.into_writes()).expect("apply");
    store.sync().expect("sync");
}

#[test]
fn an_enterprise_down_while_three_deltas_were_issued_catches_up_in_order() {
    let net = start();
    blacklist(&net, &["--block-domain", "one.example"]);
    let v1 = wait_current(&net, E2);
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["counts"]["domain"], 1);

    net.stop(E2);
    let second = net.issue(&[
        "--blacklist",
        "--to",
        "all",
        "--block-domain",
        "two.example",
        "--block-ip",
        "192.0.2.0/24",
    ]);
    let third = net.issue(&[
        "--blacklist",
        "--to",
        "all",
        "--block-domain",
        "three.example",
    ]);
    // The fourth takes one.example off the list again.
    let fourth = net.issue(&[
        "--blacklist",
        "--to",
        "all",
        "--op",
        "delete",
        "--block-domain",
        "one.example",
    ]);
    eventually(T, "the three deltas executed at e4401", || {
        [&second, &third, &fourth]
            .iter()
            .all(|id| {
                net.target_states("ministry", id)
                    .is_some_and(|s| s[E1] == "executed")
            })
            .then_some(())
    });
    let v = net.directive("ministry", &fourth).expect("status");
    assert_eq!(v["blacklist"]["from_version"], 3, "{v}");
    assert_eq!(v["blacklist"]["to_version"], 4, "{v}");
    let issuer = lag(&net);
    assert_eq!(issuer["version"], 4);
    assert_eq!(issuer["sha256"], v["blacklist"]["sha256"]);
    assert_eq!(issuer["rules"], 3, "{issuer}");
    let rows = issuer["rows"].as_array().expect("rows");
    let row = |node: &str| {
        rows.iter()
            .find(|r| r["node"] == node)
            .expect("row")
            .clone()
    };
    assert_eq!(row(E1)["state"], "current");
    assert_eq!(row(E2)["state"], "behind");
    assert_eq!(row(E2)["version"], 1);
    assert_eq!(issuer["lagging"], 1);
    // Without --all only the laggard is listed.
    let laggards = net
        .cli_json("ministry", &["blacklist", "lag", "--json"])
        .expect("lag");
    assert_eq!(laggards["rows"].as_array().map(Vec::len), Some(1));

    net.spawn(E2);
    let l = wait_current(&net, E2);
    assert_eq!(l["version"], 4);
    assert_eq!(l["counts"]["domain"], 2, "{l}");
    assert_eq!(l["counts"]["ip"], 1, "{l}");
    assert_eq!(l["held"].as_array().map(Vec::len), Some(0));
    // In order, delta after delta: nothing was missing, nothing asked for whole.
    let log = net.log(E2);
    assert!(!log.contains("asking the parent"), "{log}");
    let mut values = net.rule_values(E2);
    values.dedup();
    assert_eq!(values, ["192.0.2.0/24", "three.example", "two.example"]);
    eventually(T, "nobody lags", || {
        (lag(&net)["lagging"] == 0).then_some(())
    });

    let verify = ok(net.cli(E2, &["blacklist", "verify"]));
    assert!(verify.contains("intact"), "{verify}");
}

#[test]
fn a_corrupted_list_is_found_resynced_from_the_parent_and_back_in_force() {
    let net = start();
    blacklist(
        &net,
        &["--block-domain", "a.example", "--block-domain", "b.example"],
    );
    blacklist(&net, &["--block-domain", "c.example"]);
    wait_current(&net, E2);

    // Found on the next delta: its checksum is not what the stored rules give.
    net.stop(E2);
    corrupt(&net, E2, "b.example");
    net.spawn(E2);
    net.wait_linked();
    blacklist(&net, &["--block-domain", "d.example"]);
    let l = wait_current(&net, E2);
    assert_eq!(l["version"], 3);
    assert_eq!(l["counts"]["domain"], 4, "{l}");
    assert!(net.log(E2).contains("checksum mismatch at version 3"));
    eventually(T, "b.example enforced again", || {
        net.rule_values(E2)
            .contains(&"b.example".to_string())
            .then_some(())
    });

    // Found by `blacklist verify`, which asks for the whole list itself.
    net.stop(E2);
    corrupt(&net, E2, "c.example");
    net.spawn(E2);
    net.wait_linked();
    let out = net.cli(E2, &["blacklist", "verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("MISMATCH"), "{said}");
    eventually(T, "verify intact after the resync", || {
        let v = net.cli_json(E2, &["blacklist", "verify", "--json"])?;
        let l = v["blacklists"].as_array()?.first()?.clone();
        (l["intact"] == true && l["version"] == 3).then_some(())
    });
    wait_current(&net, E2);
    eventually(T, "c.example enforced again", || {
        net.rule_values(E2)
            .contains(&"c.example".to_string())
            .then_some(())
    });
    // The other enterprise never needed it.
    assert!(!net.log(E1).contains("asking the parent"));
    // Both resyncs are in the enterprise's audit trail with who asked for the verify.
    let audit = ok(net.cli(E2, &["audit", "list", "--action", "blacklist.verify"]));
    assert!(audit.contains("resync asked"), "{audit}");
}

#[test]
fn a_blacklist_change_is_refused_unless_it_is_a_disposal_to_all() {
    let net = start();
    let refused = |args: &[&str], why: &str| {
        let mut full = vec!["directive", "issue", "--blacklist"];
        full.extend_from_slice(args);
        let out = net.cli("ministry", &full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(why), "{args:?}: {err}");
    };
    refused(
        &["--to", "province/44", "--block-domain", "x.example"],
        "blacklist change goes to every enterprise",
    );
    refused(
        &[
            "--to",
            "all",
            "--kind",
            "monitoring",
            "--block-domain",
            "x.example",
        ],
        "only a disposal changes the blacklist",
    );
    // A blacklist directive is revoked from every enterprise at once.
    let id = blacklist(&net, &["--block-domain", "x.example"]);
    let out = net.cli(
        "ministry",
        &["directive", "revoke", &id, "--to", "enterprise/e4401"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked from every enterprise"));
    // The whole revocation is a delta too: the list is empty again at both.
    ok(net.cli("ministry", &["directive", "revoke", &id, "--wait"]));
    let l = wait_current(&net, E1);
    assert_eq!(l["version"], 2);
    assert_eq!(l["counts"], serde_json::json!({}));
    wait_current(&net, E2);
    let out = net.cli(E1, &["blacklist", "show"]);
    assert!(ok(out).contains("ministry"));
}

#[test]
fn a_delta_past_a_gap_waits_the_list_comes_whole_and_the_late_delta_completes_it() {
    // Province 44 confirms general requirements by hand; an emergency passes at once
    // so its delta reaches the enterprises before the one held for confirmation.
    let options = Options {
        manual_confirm: vec!["44".into()],
        ..Options::default()
    };
    let net = TestNet::start_with(&Topology::uniform(&["44"], 2, 0), &options);
    net.wait_linked();
    let held = net.issue(&[
        "--blacklist",
        "--to",
        "all",
        "--block-domain",
        "held.example",
    ]);
    let urgent = net.issue(&[
        "--blacklist",
        "--to",
        "all",
        "--urgency",
        "emergency",
        "--block-domain",
        "urgent.example",
    ]);
    net.wait_all(&urgent, "executed", T);
    // Version 2 came on top of nothing: the enterprise asked for the whole list, and the
    // province sent what it passed on (the emergency alone), not what it still holds.
    let l = eventually(T, "version 2 from the resync", || {
        let l = held_list(&net, E1)?;
        (l["version"] == 2 && l["resync_pending"] == false).then_some(l)
    });
    assert_eq!(l["counts"]["domain"], 1, "{l}");
    assert!(net.log(E1).contains("gap: holds version 0, got 1 → 2"));
    assert!(!net.rule_values(E1).contains(&"held.example".to_string()));
    let issuer = lag(&net);
    let row = issuer["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["node"] == E1)
        .expect("row")
        .clone();
    assert_eq!(row["state"], "differs", "{issuer}");

    // Confirmed: the late delta completes the list, which is now the issuer's.
    ok(net.cli("province/44", &["directive", "confirm", &held]));
    net.wait_all(&held, "executed", T);
    let l = wait_current(&net, E1);
    assert_eq!(l["version"], 2);
    assert_eq!(l["counts"]["domain"], 2, "{l}");
    wait_current(&net, E2);
    eventually(T, "nobody lags", || {
        (lag(&net)["lagging"] == 0).then_some(())
    });
}

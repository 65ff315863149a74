//! A node whose store is restored from an older copy: it lost envelopes it had
//! acknowledged, which its child no longer holds. The link goes on after them instead of
//! waiting for what cannot come, and the loss is audited and reported as a fault.

use std::time::Duration;

use isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, copy_dir, eventually, ok};

const T: Duration = Duration::from_secs(30);
const P: &str = "province/44";

fn faults_at(net: &TestNet, node: &str) -> Vec<serde_json::Value> {
    net.cli_json(node, &["fault", "list", "--json"])
        .and_then(|v| v["faults"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn a_store_restored_from_an_older_copy_takes_the_loss_and_the_link_goes_on() {
    let net = TestNet::start_with(&Topology::uniform(&["44"], 1, 0), &Options::default());
    let first = net.issue(&["--to", "all", "--block-domain", "first.example"]);
    net.wait_all(&first, "executed", T);

    // A backup of the ministry's store, then something new from the province that the
    // ministry acknowledges: a fault report.
    net.stop("ministry");
    let store = net.node("ministry").dir.join("store");
    let backup = net.node("ministry").dir.join("store.backup");
    copy_dir(&store, &backup);
    net.spawn("ministry");
    net.wait_linked();
    let id = ok(net.cli(
        P,
        &[
            "fault",
            "report",
            "--severity",
            "minor",
            "--summary",
            "after the backup",
        ],
    ))
    .trim()
    .to_string();
    eventually(T, "the fault at the ministry", || {
        faults_at(&net, "ministry")
            .iter()
            .any(|f| f["id"] == id)
            .then_some(())
    });

    // The ministry's store restored from the backup: what it acknowledged is gone.
    net.stop("ministry");
    std::fs::remove_dir_all(&store).expect("remove");
    copy_dir(&backup, &store);
    net.spawn("ministry");
    net.wait_linked();
    // The link goes on: a new directive reaches the enterprise.
    let after = net.issue(&["--to", "all", "--block-domain", "after.example"]);
    net.wait_all(&after, "executed", T);
    // The loss is in the audit trail and reported.
    let audit = ok(net.cli("ministry", &["audit", "list", "--action", "link.loss"]));
    assert!(audit.contains(P), "{audit}");
    let lost = faults_at(&net, "ministry");
    assert!(
        lost.iter()
            .any(|f| f["automatic"] == true
                && f["summary"].as_str().unwrap_or("").contains("lost here")),
        "{lost:?}"
    );
    assert!(
        !lost.iter().any(|f| f["id"] == id),
        "the fault itself was lost with the store"
    );
}

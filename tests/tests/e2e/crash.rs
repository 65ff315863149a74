//! Crashes in the middle of a burst: SIGKILL a province and an enterprise while 200
//! directives are being issued, restart them, and count that every directive completed and
//! every enterprise applied every rule exactly once (R-14.1: task data never lost).

use std::collections::BTreeMap;
use std::time::Duration;

use isms_e2e::isms_deploy::Topology;
use isms_e2e::{TestNet, eventually};

const BURST: usize = 200;

#[test]
fn sigkill_mid_burst_loses_nothing_and_applies_nothing_twice() {
    let net = TestNet::start(&Topology::devnet());
    let mut ids = Vec::with_capacity(BURST);
    for i in 0..BURST {
        if i == 60 {
            net.kill("province/31");
            net.kill("enterprise/e4401");
        }
        if i == 140 {
            net.spawn("province/31");
            net.spawn("enterprise/e4401");
        }
        let domain = format!("d{i:03}.burst.example");
        ids.push(net.issue(&["--to", "all", "--block-domain", &domain]));
    }

    let limit = (BURST + 10).to_string();
    let list = eventually(
        Duration::from_secs(120),
        "all 200 directives executed everywhere",
        || {
            let list = net.cli_json(
                "ministry",
                &["directive", "list", "--limit", &limit, "--json"],
            )?;
            let ds = list["directives"].as_array()?;
            let all = ds.len() == BURST && ds.iter().all(|d| d["counts"]["executed"] == 7);
            all.then_some(list)
        },
    );
    let total: u64 = list["directives"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .filter_map(|d| d["counts"]["executed"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(total, (BURST * 7) as u64, "the ministry's totals");

    for e in net.enterprises() {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for r in net.rules(&e) {
            *seen
                .entry(r["value"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
        assert_eq!(seen.len(), BURST, "{e} holds every rule");
        assert!(seen.values().all(|&n| n == 1), "{e} holds a rule twice");
        let status = net.node_status(&e).expect("status");
        assert_eq!(status["active_rules"], BURST, "{e}'s active set");
        assert_eq!(status["directives"], BURST, "{e}'s directive count");
        assert_eq!(
            status["rules_applied_total"], BURST,
            "{e} applied some rule more than once"
        );
    }
    // The counts a status reads are kept as directives commit, and across the crash: the
    // killed province counts what it held before, and what it got after.
    for node in ["ministry", "province/31"] {
        let status = net.node_status(node).expect("status");
        assert_eq!(status["directives"], BURST, "{node}'s directive count");
    }
    // Every directive ID issued is one the ministry tracks, once.
    let listed: std::collections::BTreeSet<&str> = list["directives"]
        .as_array()
        .map(|ds| ds.iter().filter_map(|d| d["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, ids.iter().map(String::as_str).collect());
}

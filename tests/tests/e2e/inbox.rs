//! A backlog arriving in one large batch goes through the receiver's inbox: acknowledged as
//! soon as it is stored, applied a chunk at a time. Killed while it stores or applies it, the
//! province still delivers every directive once.

use std::time::{Duration, Instant};

use isms_e2e::isms_deploy::Topology;
use isms_e2e::{TestNet, eventually};

/// More than a batch applied in the group that receives it (64), so the backlog is stored
/// as several inbox chunks.
const BACKLOG: usize = 200;

#[test]
fn a_backlog_acknowledged_from_the_inbox_survives_a_kill_and_is_applied_once() {
    let net = TestNet::start(&Topology::uniform(&["31"], 1, 0));
    let (province, enterprise) = ("province/31", "enterprise/e3101");
    net.stop(province);
    let mut ids = Vec::with_capacity(BACKLOG);
    for i in 0..BACKLOG {
        let domain = format!("d{i:03}.inbox.example");
        ids.push(net.issue(&["--to", enterprise, "--block-domain", &domain]));
    }
    let backlog = |net: &TestNet| -> Option<u64> {
        let status = net.node_status("ministry")?;
        status["peers"]
            .as_array()?
            .iter()
            .find(|p| p["peer"] == province)?["backlog"]
            .as_u64()
    };
    assert_eq!(
        backlog(&net),
        Some(BACKLOG as u64),
        "all queued for the province"
    );

    // What the province logged since it last started.
    let this_run = |net: &TestNet| -> String {
        let log = net.log(province);
        let start = log.rfind("node started").unwrap_or(0);
        log[start..].to_string()
    };
    // Polled every millisecond, not with `eventually`'s backoff: the kills below must land
    // within a few milliseconds of what they wait for.
    let kill_when = |what: &str, seen: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen(&this_run(&net)) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
        net.kill(province);
        net.spawn(province);
    };
    net.spawn(province);
    // Killed as the group that stores the backlog runs (it logs the line before it
    // commits): nothing was acknowledged, and the ministry sends it all again.
    kill_when("the backlog in the inbox", &|log| {
        log.contains("stored in the inbox")
    });
    // Killed once the second group applies from the inbox: the backlog is committed and
    // acknowledged, one chunk applied, the rest still in the inbox.
    kill_when("the second inbox chunk", &|log| {
        log.matches("directive received").count() > 64
    });
    eventually(
        Duration::from_secs(10),
        "the restarted province to find the chunks left",
        // Logged as the store opens, before "node started": the whole log is read.
        || {
            net.log(province)
                .contains("inbox chunks left from before")
                .then_some(())
        },
    );
    eventually(
        Duration::from_secs(60),
        "the province acknowledges the whole backlog",
        || (backlog(&net)? == 0).then_some(()),
    );

    for id in &ids {
        net.wait_all(id, "executed", Duration::from_secs(60));
    }
    let status = net.node_status(province).expect("province status");
    assert_eq!(
        status["directives"], BACKLOG,
        "the province stored each once"
    );
    let ministry_link = status["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peer"] == "ministry").cloned())
        .expect("link to the ministry");
    assert_eq!(ministry_link["inbox"], 0, "the inbox is empty once applied");

    let mut values = net.rule_values(enterprise);
    let before = values.len();
    values.dedup();
    assert_eq!(before, BACKLOG, "{enterprise} holds every rule once");
    assert_eq!(values.len(), BACKLOG);
    let status = net.node_status(enterprise).expect("enterprise status");
    assert_eq!(
        status["rules_applied_total"], BACKLOG,
        "no rule applied twice"
    );
}

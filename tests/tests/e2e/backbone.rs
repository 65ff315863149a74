//! The takedown order end to end on a 1+3+7 network: fan-out to every enterprise, nodes
//! down while an order is issued, and restarts that keep every state.

use std::collections::HashMap;
use std::time::Duration;

use isms_e2e::isms_deploy::Topology;
use isms_e2e::{TestNet, eventually};

const T: Duration = Duration::from_secs(30);

#[test]
fn a_directive_to_all_reaches_every_enterprise_once() {
    let net = TestNet::start(&Topology::devnet());
    let enterprises = net.enterprises();
    assert_eq!(enterprises.len(), 7);
    // Every thread of every node runs under the default `scheduling = "batch"`.
    for n in &net.net.nodes {
        let threads = isms_node::scheduling::process_threads(net.pid(n.id.as_str()))
            .unwrap_or_else(|e| panic!("{}: {e}", n.id));
        assert!(threads.len() > 1, "{}: {threads:?}", n.id);
        assert!(
            threads
                .iter()
                .all(|t| t.policy == isms_node::scheduling::SCHED_BATCH),
            "{} not all under SCHED_BATCH: {threads:?}",
            n.id
        );
    }

    let id = net.issue(&[
        "--to",
        "all",
        "--block-domain",
        "Bad.Example",
        "--block-url",
        "https://bad.example/path",
        "--block-ip",
        "203.0.113.0/24",
    ]);
    let view = net.wait_all(&id, "executed", T);
    assert_eq!(view["targets"].as_array().map(Vec::len), Some(7));
    assert_eq!(view["counts"]["executed"], 7);
    // Reports are coalesced on the way up (the enterprise reports `executed` with its
    // acknowledgment), but every phase keeps a time, in order.
    for t in view["targets"].as_array().into_iter().flatten() {
        let at = |f: &str| t[f].as_i64().unwrap_or(0);
        let phases = [
            at("queued_at_ms"),
            at("delivered_at_ms"),
            at("acknowledged_at_ms"),
            at("finished_at_ms"),
        ];
        assert!(phases.iter().all(|&p| p > 0), "{t}");
        assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{t}");
    }
    let hops = isms_e2e::states(&view["hops"]);
    assert_eq!(hops.len(), 3, "three relaying provinces: {hops:?}");
    // The generated provinces auto-confirm; that is recorded as such.
    assert!(hops.values().all(|s| s == "confirmed"), "{hops:?}");
    let details: Vec<&str> = view["hops"]
        .as_array()
        .map(|hs| hs.iter().filter_map(|h| h["detail"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        details.iter().all(|d| *d == "auto-confirmed"),
        "{details:?}"
    );

    for e in &enterprises {
        let rules = net.rules(e);
        let mut values: Vec<&str> = rules.iter().filter_map(|r| r["value"].as_str()).collect();
        values.sort();
        assert_eq!(
            values,
            vec!["203.0.113.0/24", "bad.example", "https://bad.example/path"],
            "{e}'s rules file"
        );
        assert!(rules.iter().all(|r| r["directive"] == id.as_str()));
        let status = net.node_status(e).expect("enterprise status");
        assert_eq!(
            status["rules_applied_total"], 3,
            "{e} applied each rule once"
        );
    }

    // The province sees what its own enterprises did, and only those.
    let at_province = net
        .target_states("province/44", &id)
        .expect("province view");
    assert_eq!(
        at_province,
        HashMap::from([
            ("enterprise/e4401".to_string(), "executed".to_string()),
            ("enterprise/e4402".to_string(), "executed".to_string()),
        ])
    );

    // A selection: one province and the ministry's direct enterprise.
    let id2 = net.issue(&[
        "--to",
        "province/31,enterprise/e0001",
        "--block-ip",
        "198.51.100.1",
    ]);
    let view2 = net.wait_all(&id2, "executed", T);
    let mut targets: Vec<String> = isms_e2e::states(&view2["targets"]).into_keys().collect();
    targets.sort();
    assert_eq!(
        targets,
        vec!["enterprise/e0001", "enterprise/e3101", "enterprise/e3102"]
    );
    assert_eq!(
        net.rules("enterprise/e1101").len(),
        3,
        "untargeted enterprise unchanged"
    );
    assert_eq!(net.rules("enterprise/e3101").len(), 4);
}

/// Waits until the given targets are `queued` and every other target `executed`.
fn wait_split(net: &TestNet, id: &str, queued: &[&str]) {
    eventually(
        T,
        "the reachable targets executed, the others queued",
        || {
            let states = net.target_states("ministry", id)?;
            let ok = states.len() == 7
                && states.iter().all(|(node, s)| {
                    if queued.contains(&node.as_str()) {
                        s == "queued"
                    } else {
                        s == "executed"
                    }
                });
            ok.then_some(())
        },
    );
}

#[test]
fn a_stopped_province_receives_the_order_when_it_returns() {
    let net = TestNet::start(&Topology::devnet());
    net.stop("province/44");
    let id = net.issue(&["--to", "all", "--block-domain", "late.example"]);
    wait_split(&net, &id, &["enterprise/e4401", "enterprise/e4402"]);
    let status = net.node_status("ministry").expect("ministry status");
    let p44 = status["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peer"] == "province/44"))
        .cloned()
        .expect("province/44 in status");
    assert_eq!(p44["up"], false);
    assert_eq!(p44["backlog"], 1, "one message waits for province/44");

    net.spawn("province/44");
    net.wait_all(&id, "executed", T);
    assert_eq!(net.rules("enterprise/e4401").len(), 1);
    eventually(T, "the ministry's backlog to drain", || {
        let s = net.node_status("ministry")?;
        let backlog: u64 = s["peers"]
            .as_array()?
            .iter()
            .filter_map(|p| p["backlog"].as_u64())
            .sum();
        (backlog == 0).then_some(())
    });
}

#[test]
fn a_stopped_enterprise_receives_the_order_when_it_returns() {
    let net = TestNet::start(&Topology::devnet());
    net.stop("enterprise/e3101");
    let id = net.issue(&["--to", "all", "--block-domain", "late.example"]);
    wait_split(&net, &id, &["enterprise/e3101"]);
    // The province holds it for the enterprise.
    let p31 = net.node_status("province/31").expect("province status");
    let backlog = p31["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peer"] == "enterprise/e3101"))
        .map(|p| p["backlog"].clone());
    assert_eq!(backlog, Some(serde_json::json!(1)));

    net.spawn("enterprise/e3101");
    net.wait_all(&id, "executed", T);
    assert_eq!(net.rules("enterprise/e3101").len(), 1);
}

#[test]
fn directive_states_survive_a_ministry_restart() {
    let net = TestNet::start(&Topology::devnet());
    let done = net.issue(&["--to", "all", "--block-domain", "one.example"]);
    net.wait_all(&done, "executed", T);
    net.stop("province/11");
    let pending = net.issue(&["--to", "all", "--block-domain", "two.example"]);
    wait_split(&net, &pending, &["enterprise/e1101", "enterprise/e1102"]);
    let before_done = net.directive("ministry", &done).expect("view");
    let before_pending = net.directive("ministry", &pending).expect("view");

    net.stop("ministry");
    net.spawn("ministry");
    eventually(T, "the ministry to answer", || net.node_status("ministry"));
    assert_eq!(net.directive("ministry", &done), Some(before_done));
    assert_eq!(net.directive("ministry", &pending), Some(before_pending));

    // The queued copy for province/11 survived the restart too.
    net.spawn("province/11");
    net.wait_all(&pending, "executed", T);
    // Numbering goes on after the restart, on links whose outbox was empty (the link
    // marks say the next number) and on province/11's (its last entry said it): a number
    // used again would be taken as a duplicate and never reach an enterprise.
    let after = net.issue(&["--to", "all", "--block-domain", "three.example"]);
    net.wait_all(&after, "executed", T);
    // Nor did a peer have to correct it (the node skips ahead, and says so, when a peer
    // acknowledges numbers it never sent).
    assert!(
        !net.log("ministry").contains("never sent"),
        "the ministry numbered a link again from an old mark:\n{}",
        net.log("ministry")
    );
    let list = net
        .cli_json("ministry", &["directive", "list", "--json"])
        .expect("list");
    assert_eq!(list["directives"].as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directive_summary_counts_what_its_view_shows() {
    use isms_proto::v1::{GetDirectiveRequest, ListDirectivesRequest};
    let net = TestNet::start(&Topology::devnet());
    net.stop("enterprise/e3101");
    let id = net.issue(&["--to", "all", "--block-domain", "summary.example"]);
    wait_split(&net, &id, &["enterprise/e3101"]);
    let mut client = net.operator("ministry").await;
    let request = || GetDirectiveRequest { id: id.clone() };

    let open = client
        .get_directive_summary(request())
        .await
        .expect("summary")
        .into_inner();
    assert_eq!((open.targets, open.finished), (7, 6));
    assert_eq!(open.finished_at_ms, 0, "a target is still open");
    assert_eq!(open.counts.get("executed"), Some(&6));
    assert_eq!(open.counts.get("queued"), Some(&1));

    net.spawn("enterprise/e3101");
    let view = net.wait_all(&id, "executed", T);
    let last = view["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["finished_at_ms"].as_i64())
        .max();
    let done = client
        .get_directive_summary(request())
        .await
        .expect("summary")
        .into_inner();
    assert_eq!((done.targets, done.finished), (7, 7));
    assert_eq!(done.counts.get("executed"), Some(&7));
    assert_eq!(Some(done.finished_at_ms), last);
    assert!(done.finished_at_ms >= done.issued_at_ms && done.issued_at_ms > 0);

    let listed = client
        .list_directives(ListDirectivesRequest {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .directives
        .into_iter()
        .find(|d| d.id == id);
    assert_eq!(listed, Some(done), "the list says the same");

    let unknown = client
        .get_directive_summary(GetDirectiveRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .expect_err("no such directive");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

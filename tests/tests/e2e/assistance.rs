//! Province-issued directives and cross-province assistance: a province
//! directs its own enterprises; for another province's enterprise its request goes up to the
//! ministry, which relays it to the province that holds the enterprise, where it is confirmed
//! or returned like any requirement, and every status flows back to the requester. There is
//! no other path.

use std::time::Duration;

use isms_e2e::isms_deploy::{Options, Topology};
use isms_e2e::{RawSession, TestNet, eventually, states};
use isms_proto::v1::{Batch, Directive, Envelope, Hello, envelope::Payload, frame::Body};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// Both provinces decide by hand.
fn network() -> TestNet {
    let options = Options {
        manual_confirm: vec!["11".into(), "44".into()],
        ..Options::default()
    };
    TestNet::start_with(&Topology::uniform(&["11", "44"], 2, 1), &options)
}

fn issue_at(net: &TestNet, province: &str, args: &[&str]) -> String {
    let mut full = vec!["directive", "issue"];
    full.extend_from_slice(args);
    let out = net.cli(province, &full);
    assert!(
        out.status.success(),
        "issue at {province} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_states(net: &TestNet, node: &str, id: &str, want: &[(&str, &str)]) -> Value {
    eventually(T, &format!("{want:?} at {node}"), || {
        let v = net.directive(node, id)?;
        let mut all = states(&v["targets"]);
        all.extend(states(&v["hops"]));
        want.iter()
            .all(|(n, s)| all.get(*n).map(String::as_str) == Some(*s))
            .then_some(v)
    })
}

fn detail(view: &Value, node: &str) -> String {
    view["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(view["hops"].as_array().into_iter().flatten())
        .find(|t| t["node"] == node)
        .and_then(|t| t["detail"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_province_directs_its_own_enterprises() {
    let net = network();
    let id = issue_at(
        &net,
        "province/44",
        &["--to", "all", "--block-domain", "own.example"],
    );
    wait_states(
        &net,
        "province/44",
        &id,
        &[
            ("enterprise/e4401", "executed"),
            ("enterprise/e4402", "executed"),
        ],
    );
    assert_eq!(net.rules("enterprise/e4401").len(), 1);
    assert_eq!(net.rules("enterprise/e1101").len(), 0);
    // Its own business: the ministry never saw it.
    let list = net
        .cli_json("ministry", &["directive", "list", "--json"])
        .expect("list");
    assert_eq!(list["directives"], serde_json::json!([]));

    // A province cannot direct another province as a whole.
    let out = net.cli(
        "province/44",
        &[
            "directive",
            "issue",
            "--to",
            "province/11",
            "--block-domain",
            "x.example",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot direct province/11"));
}

#[test]
fn assistance_goes_through_the_ministry_and_is_confirmed_by_the_holding_province() {
    let net = network();
    let id = issue_at(
        &net,
        "province/44",
        &[
            "--to",
            "enterprise/e1101,enterprise/e4401",
            "--block-domain",
            "assist.example",
        ],
    );
    // Its own enterprise executes at once; the other waits at province/11.
    wait_states(
        &net,
        "province/44",
        &id,
        &[("enterprise/e4401", "executed")],
    );
    wait_states(&net, "ministry", &id, &[("province/11", "received")]);
    let pending = net
        .cli_json("province/11", &["directive", "pending", "--json"])
        .expect("pending");
    let items = pending["pending"].as_array().expect("list");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["issuer"], "province/44");
    assert_eq!(items[0]["targets"], serde_json::json!(["enterprise/e1101"]));

    let out = net.cli("province/11", &["directive", "confirm", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The requesting province's operator can follow it to the end like any directive.
    let out = net.cli(
        "province/44",
        &["directive", "watch", &id, "--timeout", "30s", "--json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The requesting province learns the outcome…
    let at_requester = wait_states(
        &net,
        "province/44",
        &id,
        &[
            ("enterprise/e1101", "executed"),
            ("enterprise/e4401", "executed"),
            ("province/11", "confirmed"),
        ],
    );
    assert_eq!(detail(&at_requester, "province/11"), "confirmed by admin");
    // …each result signed by its enterprise, the other province's too: the
    // ministry passes its certificate on with it.
    for t in at_requester["targets"].as_array().expect("targets") {
        assert_eq!(t["result_signature"], "verified", "{t}");
    }
    assert_eq!(
        at_requester["targets"].as_array().map(Vec::len),
        Some(2),
        "only the two enterprises are targets: {at_requester}"
    );
    // …the ministry saw the whole exchange…
    let at_ministry = wait_states(
        &net,
        "ministry",
        &id,
        &[
            ("province/11", "confirmed"),
            ("enterprise/e1101", "executed"),
        ],
    );
    assert_eq!(at_ministry["issuer"], "province/44");
    // …and the holding province keeps what its enterprise did.
    wait_states(
        &net,
        "province/11",
        &id,
        &[("enterprise/e1101", "executed")],
    );
    assert_eq!(net.rules("enterprise/e1101").len(), 1);
    assert_eq!(net.rules("enterprise/e1102").len(), 0);
}

#[test]
fn a_returned_request_and_an_unknown_enterprise_reach_the_requester() {
    let net = network();
    let id = issue_at(
        &net,
        "province/44",
        &[
            "--to",
            "enterprise/e1102,enterprise/ghost",
            "--block-ip",
            "203.0.113.5",
        ],
    );
    wait_states(&net, "ministry", &id, &[("province/11", "received")]);
    let reason = "no such site on enterprise/e1102";
    let out = net.cli(
        "province/11",
        &["directive", "return", &id, "--reason", reason],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = wait_states(
        &net,
        "province/44",
        &id,
        &[
            ("enterprise/e1102", "returned"),
            ("province/11", "returned"),
            ("enterprise/ghost", "failed"),
        ],
    );
    assert_eq!(detail(&view, "enterprise/e1102"), reason);
    assert!(
        detail(&view, "enterprise/ghost").contains("not in the ministry's enterprise directory")
    );
    assert_eq!(net.rules("enterprise/e1102").len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_province_cannot_reach_another_provinces_enterprise_any_other_way() {
    let net = network();
    let (cert, key) = net.cert_of("province/44");
    // Straight to the enterprise: it accepts no link from anyone.
    let mut client = net.link_client(&cert, &key, "enterprise/e1101");
    let st = RawSession::open(&mut client).await.err().expect("refused");
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    // Straight to the other province: not its parent.
    let mut client = net.link_client(&cert, &key, "province/11");
    let st = RawSession::open(&mut client).await.err().expect("refused");
    assert_eq!(st.code(), tonic::Code::PermissionDenied);

    // Up to the ministry, dressed as the ministry's own directive: refused, nothing stored.
    net.stop("province/44");
    let mut client = net.link_client(&cert, &key, "ministry");
    let mut s = RawSession::open(&mut client)
        .await
        .expect("own parent accepts");
    let Some(Body::Hello(Hello { applied, .. })) =
        s.next().await.expect("hello").and_then(|f| f.body)
    else {
        panic!("expected Hello");
    };
    s.send(Body::Hello(Hello {
        applied: 0,
        accepts_zstd: false,
        resume_from: 0,
    }))
    .await;
    let forged = Directive {
        id: uuid::Uuid::now_v7().to_string(),
        issuer: "ministry".into(),
        targets: vec!["enterprise/e1101".into()],
        ..Default::default()
    };
    s.send(Body::Batch(Batch::of(
        &[Envelope {
            seq: applied + 1,
            id: forged.id.clone(),
            payload: Some(Payload::Directive(forged)),
            ..Default::default()
        }],
        0,
    )))
    .await;
    let status = loop {
        match s.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without an error"),
            Err(st) => break st,
        }
    };
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let list = net
        .cli_json("ministry", &["directive", "list", "--json"])
        .expect("list");
    assert_eq!(list["directives"], serde_json::json!([]));
    assert_eq!(net.rules("enterprise/e1101").len(), 0);
}

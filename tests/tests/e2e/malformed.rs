//! Bad input gets a clear error and changes nothing: malformed CLI input stores nothing, and
//! malformed frames from a peer close its link without touching the store.

use std::time::Duration;

use isms_config::LinkTuning;
use isms_e2e::isms_deploy::{Options, Topology};
use isms_e2e::{RawSession, TestNet, stray_report};
use isms_proto::v1::{Batch, Envelope, Hello, envelope::Payload, frame::Body};

#[test]
fn malformed_cli_input_is_refused_with_a_clear_error_and_stores_nothing() {
    let net = TestNet::start(&Topology::uniform(&["44"], 1, 0));
    let cases: &[(&[&str], &str)] = &[
        (
            &["--to", "all", "--block-domain", "bad..example"],
            "invalid domain",
        ),
        (
            &["--to", "all", "--block-domain", "例子..cn"],
            "not a valid internationalised name",
        ),
        (
            &["--to", "all", "--block-ip", "10.0.0.1/24"],
            "host bits set; the network is 10.0.0.0/24",
        ),
        (
            &["--to", "all", "--block-url", "ftp://x.example/"],
            "http or https",
        ),
        (&["--to", "all", "--block-url", "not a url"], "invalid URL"),
        (&["--to", "all", "--block-ip", "300.1.2.3"], "invalid IP"),
        (
            &["--to", "all", "--block-ip", "10.0.0.0/33"],
            "prefix length",
        ),
        (&["--to", "all"], "at least one rule"),
        (
            &["--to", "province/99", "--block-ip", "192.0.2.1"],
            "unknown target province/99",
        ),
        (
            &["--to", "enterprise/nope", "--block-ip", "192.0.2.1"],
            "unknown target enterprise/nope",
        ),
        (
            &["--to", "ministry", "--block-ip", "192.0.2.1"],
            "invalid target",
        ),
        (
            &["--to", "province/4x", "--block-ip", "192.0.2.1"],
            "invalid target",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["directive", "issue"];
        full.extend_from_slice(args);
        let out = net.cli("ministry", &full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: {stderr:?} lacks {expected:?}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let list = net
        .cli_json("ministry", &["directive", "list", "--json"])
        .expect("list");
    assert_eq!(list["directives"], serde_json::json!([]), "nothing stored");

    let out = net.cli("ministry", &["directive", "status", "0000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    // A configuration error names the field.
    let bad = net.node("ministry").dir.join("bad.toml");
    let text = std::fs::read_to_string(&net.node("ministry").config_path)
        .expect("config")
        .replace("window = 8192", "window = 0");
    std::fs::write(&bad, text).expect("write");
    let out = std::process::Command::new(isms_e2e::bin_dir().join("ministry-node"))
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`link.window`"));
}

/// Opens a session to the ministry as province/44 and exchanges Hellos. Returns the
/// sequence number the ministry expects next from province/44.
async fn session_as_province(net: &TestNet, hello: bool) -> (RawSession, u64) {
    let (cert, key) = net.cert_of("province/44");
    let mut client = net.link_client(&cert, &key, "ministry");
    let mut s = RawSession::open(&mut client).await.expect("open");
    let first = s.next().await.expect("hello").expect("frame");
    let Some(Body::Hello(Hello { applied, .. })) = first.body else {
        panic!("expected Hello, got {first:?}");
    };
    if hello {
        // Claiming less than province/44 acknowledged before: the ministry logs the loss
        // and does not resend what it already deleted.
        s.send(Body::Hello(Hello {
            applied: 0,
            accepts_zstd: false,
            resume_from: 0,
        }))
        .await;
    }
    (s, applied + 1)
}

async fn refusal(s: &mut RawSession) -> tonic::Status {
    loop {
        match s.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without an error"),
            Err(status) => return status,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_close_the_link_and_leave_the_store_untouched() {
    let options = Options {
        link: LinkTuning {
            max_frame_bytes: 1 << 20,
            ..LinkTuning::default()
        },
        ..Options::default()
    };
    let net = TestNet::start_with(&Topology::uniform(&["11", "44"], 1, 0), &options);
    let before = net.issue(&["--to", "all", "--block-domain", "before.example"]);
    net.wait_all(&before, "executed", Duration::from_secs(30));
    net.stop("province/44");

    // A batch before the Hello.
    let (mut s, next) = session_as_province(&net, false).await;
    assert!(next > 1, "the real province/44 has reported before");
    s.send(Body::Batch(Batch::of(
        &[stray_report(next, "province/44")],
        0,
    )))
    .await;
    let st = refusal(&mut s).await;
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}");

    // A sequence gap.
    let (mut s, next) = session_as_province(&net, true).await;
    s.send(Body::Batch(Batch::of(
        &[stray_report(next + 4, "province/44")],
        0,
    )))
    .await;
    let st = refusal(&mut s).await;
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    assert!(st.message().contains("sequence gap"), "{st:?}");

    // An envelope without a payload, behind a valid one: the whole batch is refused.
    let (mut s, next) = session_as_province(&net, true).await;
    let empty = Envelope {
        seq: next + 1,
        id: "x".into(),
        ..Default::default()
    };
    s.send(Body::Batch(Batch::of(
        &[stray_report(next, "province/44"), empty],
        0,
    )))
    .await;
    let st = refusal(&mut s).await;
    assert!(st.message().contains("no payload"), "{st:?}");

    // Bytes that are no envelope.
    let (mut s, _) = session_as_province(&net, true).await;
    let truncated = Batch {
        envelopes: vec![vec![0x52, 0x05, 0x01].into()],
        applied: 0,
    };
    s.send(Body::Batch(truncated)).await;
    let st = refusal(&mut s).await;
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}");
    assert!(st.message().contains("undecodable envelope"), "{st:?}");

    // A report on another province's enterprise.
    let (mut s, next) = session_as_province(&net, true).await;
    s.send(Body::Batch(Batch::of(
        &[stray_report(next, "enterprise/e1101")],
        0,
    )))
    .await;
    let st = refusal(&mut s).await;
    assert_eq!(st.code(), tonic::Code::PermissionDenied, "{st:?}");

    // A province asking its parent for a blacklist: only an enterprise asks, of its own
    // parent.
    let (mut s, next) = session_as_province(&net, true).await;
    let ask = Envelope {
        seq: next,
        id: "resync".into(),
        payload: Some(Payload::BlacklistResync(isms_proto::v1::BlacklistResync {
            issuer: "ministry".into(),
            have_version: 0,
            reason: "test".into(),
        })),
        ..Default::default()
    };
    s.send(Body::Batch(Batch::of(&[ask], 0))).await;
    let st = refusal(&mut s).await;
    assert!(st.message().contains("blacklist resync"), "{st:?}");

    // The certificate of another province's enterprise, and one far too large to be a
    // node certificate (for signed results, R-12.1).
    for (node, bytes, why) in [
        ("enterprise/e1101", 600, "may not send the certificate"),
        ("enterprise/e4401", 20_000, "not a node certificate"),
    ] {
        let (mut s, next) = session_as_province(&net, true).await;
        let cert = Envelope {
            seq: next,
            id: "certificate".into(),
            payload: Some(Payload::NodeCertificate(isms_proto::v1::NodeCertificate {
                node: node.into(),
                certificate: vec![0x30; bytes],
            })),
            ..Default::default()
        };
        s.send(Body::Batch(Batch::of(&[cert], 0))).await;
        let st = refusal(&mut s).await;
        assert!(st.message().contains(why), "{st:?}");
    }

    // A fault reported for another province's enterprise, and one without a summary.
    let fault = |reporter: &str, summary: &str| isms_proto::v1::Fault {
        id: uuid::Uuid::now_v7().to_string(),
        reporter: reporter.into(),
        severity: isms_proto::v1::FaultSeverity::Major as i32,
        summary: summary.into(),
        ..Default::default()
    };
    for (f, why) in [
        (fault("enterprise/e1101", "not ours"), "may not report for"),
        (fault("province/44", ""), "summary is empty"),
    ] {
        let (mut s, next) = session_as_province(&net, true).await;
        let envelope = Envelope {
            seq: next,
            id: "fault".into(),
            payload: Some(Payload::Fault(f)),
            ..Default::default()
        };
        s.send(Body::Batch(Batch::of(&[envelope], 0))).await;
        let st = refusal(&mut s).await;
        assert!(st.message().contains(why), "{st:?}");
    }

    // A heartbeat that speaks for another province's enterprise: not taken.
    let (s, _) = session_as_province(&net, true).await;
    s.send(Body::Heartbeat(isms_proto::v1::Heartbeat {
        own: Some(isms_proto::v1::Health::default()),
        below: vec![isms_proto::v1::NodeHealth {
            node: "enterprise/e1101".into(),
            liveness: isms_proto::v1::Liveness::Down as i32,
            ..Default::default()
        }],
        full: true,
        sent_at_ms: 0,
    }))
    .await;
    isms_e2e::eventually(Duration::from_secs(10), "the heartbeat handled", || {
        net.log("ministry")
            .contains("heartbeat spoke for nodes outside its subtree")
            .then_some(())
    });
    let view = net
        .cli_json("ministry", &["network", "status", "--json"])
        .expect("status");
    let e1101 = view["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"] == "enterprise/e1101")
        .cloned()
        .unwrap_or_default();
    assert_ne!(e1101["state"], "down", "{view}");
    drop(s);

    // A frame over the configured limit.
    let (mut s, next) = session_as_province(&net, true).await;
    let mut big = stray_report(next, "province/44");
    if let Some(Payload::Status(r)) = &mut big.payload {
        r.updates[0].detail = "x".repeat(2 << 20);
    }
    s.send(Body::Batch(Batch::of(&[big], 0))).await;
    assert!(s.next().await.is_err(), "an oversized frame was accepted");

    // The ministry kept nothing of it: the real province's next message is still taken as
    // new (a wrongly advanced mark would drop it as a duplicate and the directive below
    // would never complete), and the earlier directive's record is unchanged.
    net.spawn("province/44");
    net.wait_linked();
    let after = net.issue(&["--to", "all", "--block-domain", "after.example"]);
    net.wait_all(&after, "executed", Duration::from_secs(30));
    let view = net.directive("ministry", &before).expect("view");
    assert_eq!(view["counts"]["executed"], 2);
    assert!(net.log("ministry").contains("refused envelopes"));
}

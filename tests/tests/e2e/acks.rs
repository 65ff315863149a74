//! Link acknowledgments: an acknowledgment rides on the next batch going the other way, is
//! applied with the envelopes it came with, and goes alone only after `link.ack_delay`.
//! The test plays province/44 towards the real ministry.

use std::time::Duration;

use isms_config::LinkTuning;
use isms_e2e::isms_deploy::{Options, Topology};
use isms_e2e::{RawSession, TestNet, eventually, states, stray_report};
use isms_proto::v1::{Ack, Batch, Frame, Hello, envelope::Payload, frame::Body};

async fn next_frame(s: &mut RawSession) -> Body {
    match s.next().await {
        Ok(Some(Frame { body: Some(body) })) => body,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledgments_ride_on_batches_and_go_alone_only_after_the_delay() {
    let options = Options {
        link: LinkTuning {
            ack_delay: Duration::from_secs(3),
            ..LinkTuning::default()
        },
        ..Options::default()
    };
    let net = TestNet::start_with(&Topology::uniform(&["44"], 1, 0), &options);
    let first = net.issue(&["--to", "all", "--block-domain", "first.example"]);
    net.wait_all(&first, "executed", Duration::from_secs(30));
    net.stop("province/44");

    let (cert, key) = net.cert_of("province/44");
    let mut client = net.link_client(&cert, &key, "ministry");
    let mut s = RawSession::open(&mut client).await.expect("open");
    let Body::Hello(Hello { applied: next, .. }) = next_frame(&mut s).await else {
        panic!("expected Hello");
    };
    let next = next + 1;
    // Everything the ministry sent was acknowledged by the real province already.
    s.send(Body::Hello(Hello {
        applied: 0,
        accepts_zstd: false,
        resume_from: 0,
    }))
    .await;

    // A report the ministry has nothing to answer: the acknowledgment is owed. A directive
    // issued within the delay goes out carrying it, with no Ack frame before it.
    s.send(Body::Batch(Batch::of(
        &[stray_report(next, "province/44")],
        0,
    )))
    .await;
    // Once the ministry has applied it (it says so as it ignores the report), the
    // acknowledgment is owed.
    eventually(Duration::from_secs(15), "the report applied", || {
        net.log("ministry")
            .contains("status for an unknown directive ignored")
            .then_some(())
    });
    let second = net.issue(&["--to", "province/44", "--block-domain", "second.example"]);
    let Body::Batch(batch) = next_frame(&mut s).await else {
        panic!("expected the directive's batch first");
    };
    assert_eq!(
        batch.applied, next,
        "the batch carries the owed acknowledgment"
    );
    let envelopes = batch.decode_envelopes().expect("envelopes decode");
    let directive_seq = match envelopes.as_slice() {
        [env] if matches!(&env.payload, Some(Payload::Directive(d)) if d.id == second) => env.seq,
        other => panic!("expected the directive, got {other:?}"),
    };

    // Our acknowledgment of the directive rides on our next report: the ministry records the
    // province holds it (only the carried acknowledgment can say so).
    s.send(Body::Batch(Batch::of(
        &[stray_report(next + 1, "province/44")],
        directive_seq,
    )))
    .await;
    eventually(Duration::from_secs(15), "province/44 delivered", || {
        let view = net.directive("ministry", &second)?;
        (states(&view["hops"]).get("province/44")? == "delivered").then_some(())
    });

    // Nothing goes back this time: the acknowledgment goes alone, once the delay is over.
    let Body::Ack(Ack { applied }) = next_frame(&mut s).await else {
        panic!("expected a lone Ack");
    };
    assert_eq!(applied, next + 1);
}

//! Identity on every link: a certificate from another CA, an identity the
//! parent does not know, a sideways link, a client without a certificate, and an enterprise
//! trying to send a directive are all refused, logged, and leave no trace in the store.

use std::time::Duration;

use isms_deploy::pki::DevCa;
use isms_domain::identity::Identity;
use isms_e2e::isms_deploy::Topology;
use isms_e2e::{RawSession, TestNet, eventually};
use isms_proto::v1::{Batch, Directive, Envelope, Hello, envelope::Payload, frame::Body};

fn small() -> Topology {
    Topology::uniform(&["44"], 2, 0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_another_ca_is_refused_and_logged() {
    let net = TestNet::start(&small());
    let foreign = DevCa::generate("isms.local", "someone else's CA").expect("ca");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = foreign
        .issue(&Identity::Node("enterprise/e4401".parse().expect("id")))
        .expect("issue")
        .write(dir.path(), "impostor")
        .expect("write");
    let mut client = net.link_client(&cert, &key, "province/44");
    let refused = match RawSession::open(&mut client).await {
        Err(_) => true,
        Ok(mut s) => s.next().await.is_err(),
    };
    assert!(refused, "a foreign-CA certificate was accepted");
    eventually(
        Duration::from_secs(10),
        "the refusal in the province's log",
        || {
            net.log("province/44")
                .contains("TLS handshake refused")
                .then_some(())
        },
    );
    assert_eq!(
        net.node_status("province/44").expect("status")["directives"],
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn identities_the_parent_does_not_know_are_refused() {
    let net = TestNet::start(&Topology::uniform(&["11", "44"], 1, 0));
    // Signed by the right CA, but not a child of province/44.
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = net
        .net
        .ca
        .issue(&Identity::Node("enterprise/e9999".parse().expect("id")))
        .expect("issue")
        .write(dir.path(), "stranger")
        .expect("write");
    let mut client = net.link_client(&cert, &key, "province/44");
    let status = RawSession::open(&mut client).await.err().expect("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // A real enterprise of another province, linking sideways.
    let (cert, key) = net.cert_of("enterprise/e1101");
    let mut client = net.link_client(&cert, &key, "province/44");
    let status = RawSession::open(&mut client).await.err().expect("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    // …or to another enterprise, which has no children at all.
    let mut client = net.link_client(&cert, &key, "enterprise/e4401");
    let status = RawSession::open(&mut client).await.err().expect("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(net.log("province/44").contains("refused link"));

    // An operator certificate of another node cannot use this node's operator API.
    let other = &net.node("province/44").dir;
    let out = net.cli(
        "ministry",
        &[
            "status",
            "--operator-cert",
            other.join("operator.pem").to_str().expect("utf8"),
            "--operator-key",
            other.join("operator.key").to_str().expect("utf8"),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an operator of ministry"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_a_certificate_fails_at_its_first_rpc() {
    let net = TestNet::start(&small());
    isms_transport::tls::install_crypto_provider();
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in isms_transport::tls::load_certs(&net.net.root.join("ca.pem")).expect("ca") {
            r.add(c).expect("add");
        }
        r
    };
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let channel =
        isms_transport::tls::channel(&net.node("province/44").listen().to_string(), config)
            .expect("channel");
    let mut client = isms_proto::v1::operator_client::OperatorClient::new(channel);
    let r = client
        .node_status(isms_proto::v1::NodeStatusRequest {})
        .await;
    assert!(r.is_err(), "an anonymous client was answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enterprise_cannot_send_a_directive_up_down_or_sideways() {
    let net = TestNet::start(&small());
    // Take the real enterprise out, and speak for it.
    net.stop("enterprise/e4401");
    let (cert, key) = net.cert_of("enterprise/e4401");
    let mut client = net.link_client(&cert, &key, "province/44");
    let mut session = RawSession::open(&mut client)
        .await
        .expect("own parent accepts");
    let hello = session.next().await.expect("hello").expect("frame");
    // The real enterprise may have sent up its certificate already: the next number.
    let Some(Body::Hello(Hello { applied, .. })) = hello.body else {
        panic!("expected Hello, got {hello:?}");
    };
    session
        .send(Body::Hello(Hello {
            applied: 0,
            accepts_zstd: false,
            resume_from: 0,
        }))
        .await;
    let directive = Directive {
        id: uuid::Uuid::now_v7().to_string(),
        issuer: "enterprise/e4401".into(),
        targets: vec!["enterprise/e4402".into()],
        ..Default::default()
    };
    session
        .send(Body::Batch(Batch::of(
            &[Envelope {
                seq: applied + 1,
                id: directive.id.clone(),
                payload: Some(Payload::Directive(directive)),
                ..Default::default()
            }],
            0,
        )))
        .await;
    let status = loop {
        match session.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without an error"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("directives only flow down"));
    let province = net.node_status("province/44").expect("status");
    assert_eq!(province["directives"], 0, "nothing stored");
    assert_eq!(net.rules("enterprise/e4402").len(), 0);

    // The real enterprise comes back and works normally.
    net.spawn("enterprise/e4401");
    net.wait_linked();
    let id = net.issue(&["--to", "all", "--block-domain", "after.example"]);
    net.wait_all(&id, "executed", Duration::from_secs(30));
}

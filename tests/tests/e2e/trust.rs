//! Trust on the wire: directives are signed by their issuer end to
//! end. A province that tampers with what it relays (a testing switch of the real
//! province binary) cannot make an enterprise apply it: altered, unsigned or forged, the
//! enterprise applies nothing, reports `failed: signature …`, the ministry shows it and the
//! enterprise's audit trail has it; untampered directives in the same run execute.
//! Results come back signed by each enterprise: the ministry shows them verified, and one
//! a province altered on the way up as unverifiable.

use std::time::Duration;

use isms_deploy::{Options, Topology};
use isms_e2e::{RawSession, TestNet, eventually, ok};
use isms_proto::v1::{Batch, Envelope, Hello, NodeCertificate, envelope::Payload, frame::Body};

const T: Duration = Duration::from_secs(60);
const P: &str = "province/44";

/// Restarts province/44 tampering `how` (`alter-rule`, `drop-signature`, `forge`,
/// `alter-result`).
fn tampering(net: &TestNet, how: &str) {
    net.stop(P);
    set_tamper(net, P, how);
    net.spawn(P);
    net.wait_linked();
}

/// Writes `testing.tamper = how` into `province`'s configuration.
fn set_tamper(net: &TestNet, province: &str, how: &str) {
    let path = &net.node(province).config_path;
    let text = std::fs::read_to_string(path).expect("config");
    let mut config: toml::Table = text.parse().expect("toml");
    let testing = config
        .entry("testing")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    testing
        .as_table_mut()
        .expect("table")
        .insert("tamper".into(), toml::Value::String(how.into()));
    std::fs::write(path, toml::to_string(&config).expect("toml")).expect("write");
}

#[test]
fn a_tampering_province_cannot_make_an_enterprise_apply_what_the_ministry_did_not_sign() {
    let options = Options::default();
    let net = TestNet::generate(&Topology::uniform(&["44"], 2, 0), &options);
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();
    let enterprises = ["enterprise/e4401", "enterprise/e4402"];
    // What the ministry makes of each enterprise's signed `failed`: it signed the rules it
    // was given, which the ministry did not issue when they were tampered with.
    let other_rules = "unverifiable: signed for rules other than those issued";
    for (how, why, result_signature) in [
        ("alter-rule", "the directive was altered", other_rules),
        ("drop-signature", "no signature", "verified"),
        (
            "forge",
            "signed by province/44, not by ministry",
            other_rules,
        ),
    ] {
        tampering(&net, how);
        let bad = net.issue(&[
            "--to",
            "province/44",
            "--block-domain",
            &format!("tamper-{how}.example"),
        ]);
        let good = net.issue(&[
            "--to",
            "province/44",
            "--block-domain",
            &format!("fine-{how}.example"),
        ]);
        let v = net.wait_all(&good, "executed", T);
        for t in v["targets"].as_array().expect("targets") {
            assert_eq!(t["result_signature"], "verified", "{how}: {t}");
        }
        let v = net.wait_all(&bad, "failed", T);
        for t in v["targets"].as_array().expect("targets") {
            let detail = t["detail"].as_str().unwrap_or_default();
            assert!(detail.starts_with("signature: "), "{how}: {t}");
            assert!(detail.contains(why), "{how}: {detail}");
            assert_eq!(t["result_signature"], result_signature, "{how}: {t}");
        }
        for e in enterprises {
            let values = net.rule_values(e);
            assert!(
                values.contains(&format!("fine-{how}.example")),
                "{how}: {values:?}"
            );
            assert!(
                !values
                    .iter()
                    .any(|v| v.contains("tamper") || v.contains("altered") || v.contains("forged")),
                "{how}: {e} applied a tampered rule: {values:?}"
            );
            let audit = ok(net.cli(e, &["audit", "list", "--action", "directive.refused"]));
            assert!(
                audit.contains(&bad),
                "{how}: {e}'s audit trail lacks {bad}: {audit}"
            );
        }
    }

    // A relay that turns the enterprises' `executed` into `failed` on the way up: the
    // ministry shows what it was told, and that the enterprises did not sign it.
    tampering(&net, "alter-result");
    let altered = net.issue(&[
        "--to",
        "province/44",
        "--block-domain",
        "tamper-result.example",
    ]);
    let v = net.wait_all(&altered, "failed", T);
    for t in v["targets"].as_array().expect("targets") {
        assert_eq!(
            t["result_signature"],
            "unverifiable: the signature does not verify: the result was altered",
            "{t}"
        );
    }
    for e in enterprises {
        assert!(
            net.rule_values(e)
                .contains(&"tamper-result.example".to_string()),
            "{e} executed it"
        );
    }
    let text = ok(net.cli("ministry", &["directive", "status", &altered]));
    assert!(
        text.contains("signed results: 0 verified, 2 unverifiable, 0 unsigned"),
        "{text}"
    );

    // An enterprise's certificate for its signed results must chain to the CA and name
    // it: one naming another node is refused and audited where it arrives, not kept.
    net.stop("enterprise/e4402");
    let (cert, key) = net.cert_of("enterprise/e4402");
    let (province_cert, _) = net.cert_of(P);
    let not_its_own = isms_transport::tls::load_certs(&province_cert).expect("pem")[0].to_vec();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let mut client = net.link_client(&cert, &key, P);
            let mut s = RawSession::open(&mut client).await.expect("open");
            let first = s.next().await.expect("hello").expect("frame");
            let Some(Body::Hello(Hello { applied, .. })) = first.body else {
                panic!("expected Hello, got {first:?}");
            };
            s.send(Body::Hello(Hello {
                applied: 0,
                accepts_zstd: false,
                resume_from: 0,
            }))
            .await;
            let envelope = Envelope {
                seq: applied + 1,
                id: uuid::Uuid::now_v7().to_string(),
                payload: Some(Payload::NodeCertificate(NodeCertificate {
                    node: "enterprise/e4402".into(),
                    certificate: not_its_own,
                })),
                ..Default::default()
            };
            s.send(Body::Batch(Batch::of(&[envelope], 0))).await;
            // Applied (acknowledged), since the link is not at fault for what it carried.
            loop {
                let frame = s.next().await.expect("answer").expect("frame");
                match frame.body {
                    Some(Body::Ack(a)) if a.applied > applied => break,
                    Some(Body::Batch(b)) if b.applied > applied => break,
                    _ => {}
                }
            }
        });
    eventually(T, "the certificate refused and audited", || {
        let audit = ok(net.cli(P, &["audit", "list", "--action", "certificate.refused"]));
        audit.contains("it names province/44").then_some(())
    });
}

#[test]
fn another_provinces_request_without_the_holding_provinces_countersignature_is_refused() {
    let net = TestNet::generate(&Topology::uniform(&["11", "44"], 1, 0), &Options::default());
    set_tamper(&net, "province/11", "drop-countersignature");
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();
    let issue_at_44 = |value: &str| {
        let out = net.cli(
            P,
            &[
                "directive",
                "issue",
                "--to",
                "enterprise/e1101,enterprise/e4401",
                "--block-domain",
                value,
            ],
        );
        ok(out).trim().to_string()
    };
    // Countersigned by province/11 on its way: executed, and the requester checks
    // the other province's enterprise's signed result with the certificate the ministry
    // passed on.
    let fine = issue_at_44("fine-assist.example");
    // province/11 passes this one on without its countersignature.
    let bad = issue_at_44("tamper-assist.example");
    let view = |id: &str, state: &str| {
        eventually(T, &format!("{id} {state} at e1101"), || {
            let v = net.directive(P, id)?;
            v["targets"]
                .as_array()?
                .iter()
                .find(|t| t["node"] == "enterprise/e1101" && t["state"] == state)
                .cloned()
        })
    };
    let t = view(&fine, "executed");
    assert_eq!(t["result_signature"], "verified", "{t}");
    let t = view(&bad, "failed");
    let detail = t["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(
            "province/44 is outside its jurisdiction here and province/11 did not countersign"
        ),
        "{t}"
    );
    // Its refusal is its own word.
    assert_eq!(t["result_signature"], "verified", "{t}");
    let values = net.rule_values("enterprise/e1101");
    assert!(
        values.contains(&"fine-assist.example".to_string()),
        "{values:?}"
    );
    assert!(!values.iter().any(|v| v.contains("tamper")), "{values:?}");
    // The requester's own enterprise took both: its own province's order needs no other.
    let own = net.rule_values("enterprise/e4401");
    assert!(
        own.contains(&"tamper-assist.example".to_string()),
        "{own:?}"
    );
}

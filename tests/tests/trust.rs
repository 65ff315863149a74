//! Trust on the wire: directives are signed by their issuer end to
//! end. A province that tampers with what it relays (a testing switch of the real
//! province binary) cannot make an enterprise apply it: altered, unsigned or forged, the
//! enterprise applies nothing, reports `failed: signature …`, the ministry shows it and the
//! enterprise's audit trail has it; untampered directives in the same run execute.

use std::time::Duration;

use isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, ok};

const T: Duration = Duration::from_secs(60);
const P: &str = "province/44";

/// Restarts province/44 tampering `how` (`alter-rule`, `drop-signature`, `forge`).
fn tampering(net: &TestNet, how: &str) {
    net.stop(P);
    let path = &net.node(P).config_path;
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
    net.spawn(P);
    net.wait_linked();
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
    for (how, why) in [
        ("alter-rule", "the directive was altered"),
        ("drop-signature", "no signature"),
        ("forge", "signed by province/44, not by ministry"),
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
        net.wait_all(&good, "executed", T);
        let v = net.wait_all(&bad, "failed", T);
        for t in v["targets"].as_array().expect("targets") {
            let detail = t["detail"].as_str().unwrap_or_default();
            assert!(detail.starts_with("signature: "), "{how}: {t}");
            assert!(detail.contains(why), "{how}: {detail}");
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
}

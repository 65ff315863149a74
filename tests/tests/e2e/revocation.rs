//! Certificates revoked at runtime: `isms-devnet revoke` writes the development
//! CA's revocation list to every node; without a restart, a revoked enterprise's open link
//! is closed within seconds and its new handshakes are refused, a revoked operator's CLI is
//! refused at the handshake, and taking the revocation back lets both in again. A list
//! that does not parse keeps the one in force; an expired one is used and reported.

use std::process::{Command, Output};
use std::time::Duration;

use isms_deploy::Topology;
use isms_deploy::pki::DevCa;
use isms_e2e::{TestNet, eventually, ok};

const P: &str = "province/44";
const E: &str = "enterprise/e4402";
/// What the issue allows from a reload to the link closed, and some slack for polling.
const CLOSED_WITHIN: Duration = Duration::from_secs(12);
const T: Duration = Duration::from_secs(60);

/// The generated network's directory (the CA, its key, `revoked.txt`).
fn root(net: &TestNet) -> std::path::PathBuf {
    net.node("ministry")
        .dir
        .parent()
        .expect("root")
        .to_path_buf()
}

fn devnet(net: &TestNet, args: &[&str]) -> Output {
    Command::new(isms_e2e::bin_dir().join("isms-devnet"))
        .arg("revoke")
        .arg("--dir")
        .arg(root(net))
        .args(args)
        .output()
        .expect("run isms-devnet")
}

/// Whether province/44 has its child `E`'s link up.
fn child_up(net: &TestNet) -> Option<bool> {
    let s = net.node_status(P)?;
    s["peers"]
        .as_array()?
        .iter()
        .find(|p| p["peer"] == E)
        .and_then(|p| p["up"].as_bool())
}

#[test]
fn a_revoked_enterprise_and_operator_are_shut_out_without_a_restart_and_let_back_in() {
    let net = TestNet::start(&Topology::uniform(&["44"], 2, 0));
    net.wait_linked();
    let province_pid = net.pid(P);

    let said = ok(devnet(&net, &["--node", E]));
    assert!(said.contains("revoked"), "{said}");
    eventually(
        CLOSED_WITHIN,
        "the revoked enterprise's link closed",
        || (child_up(&net) == Some(false)).then_some(()),
    );
    // It keeps dialing; every handshake is refused, so the link stays down.
    eventually(T, "a new handshake refused", || {
        net.log(P).contains("TLS handshake refused").then_some(())
    });
    let id = net.issue(&["--to", P, "--block-domain", "during.example"]);
    eventually(T, "e4401 executed", || {
        (net.target_states("ministry", &id)?["enterprise/e4401"] == "executed").then_some(())
    });
    assert_eq!(child_up(&net), Some(false));
    assert_ne!(
        net.target_states("ministry", &id).expect("states")[E],
        "executed"
    );

    // The province's own operator, revoked: its CLI is refused at the handshake.
    ok(devnet(&net, &["--operator", P]));
    eventually(T, "the operator refused", || {
        let out = net.cli(P, &["status"]);
        (!out.status.success()).then_some(())
    });

    // Taken back: the link comes up by itself and what waited is delivered.
    ok(devnet(&net, &["--node", E, "--undo"]));
    ok(devnet(&net, &["--operator", P, "--undo"]));
    eventually(T, "the operator back", || {
        net.cli(P, &["status"]).status.success().then_some(())
    });
    net.wait_all(&id, "executed", T);
    assert_eq!(child_up(&net), Some(true));
    assert_eq!(net.pid(P), province_pid, "no restart");

    // A list that does not parse keeps the one in force.
    let crl = net.node(P).dir.join("crl.pem");
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n",
    )
    .expect("write");
    eventually(T, "the bad list refused", || {
        net.log(P)
            .contains("revocation lists not reloaded")
            .then_some(())
    });
    assert!(net.cli(P, &["status"]).status.success());

    // An expired list is used and reported.
    let root = root(&net);
    let ca = DevCa::load(&root.join("ca.pem"), &root.join("ca.key"), "").expect("ca");
    let expired = ca.crl_pem(&[], 1, (2020, 1, 1)).expect("crl");
    std::fs::write(&crl, expired).expect("write");
    eventually(T, "the expired list reported", || {
        net.log(P).contains("revocation list expired").then_some(())
    });
    assert!(net.cli(P, &["status"]).status.success());
}

#[test]
fn a_directive_signed_by_a_key_revoked_before_it_is_applied_is_refused() {
    // Province 44 holds general requirements for its operator: the ministry's order
    // waits there while the ministry's certificate is revoked.
    let options = isms_deploy::Options {
        manual_confirm: vec!["44".into()],
        ..isms_deploy::Options::default()
    };
    let net = TestNet::start_with(&Topology::uniform(&["44"], 1, 0), &options);
    net.wait_linked();
    let id = net.issue(&["--to", P, "--block-domain", "held.example"]);
    eventually(T, "held at the province", || {
        let pending = net.cli_json(P, &["directive", "pending", "--json"])?;
        pending["pending"]
            .as_array()?
            .iter()
            .any(|p| p["id"] == id.as_str())
            .then_some(())
    });
    ok(devnet(&net, &["--node", "ministry"]));
    let e = "enterprise/e4401";
    eventually(T, "the enterprise took the new list", || {
        net.log(e)
            .contains("revocation lists reloaded")
            .then_some(())
    });
    ok(net.cli(P, &["directive", "confirm", &id]));
    let v = eventually(T, "refused at the enterprise", || {
        let v = net.directive(P, &id)?;
        let t = v["targets"]
            .as_array()?
            .iter()
            .find(|t| t["node"] == e)?
            .clone();
        (t["state"] == "failed").then_some(t)
    });
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("revoked"), "{detail}");
    assert!(!net.rule_values(e).contains(&"held.example".to_string()));
    let audit = ok(net.cli(e, &["audit", "list", "--action", "directive.refused"]));
    assert!(audit.contains(&id), "{audit}");
}

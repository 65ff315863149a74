//! Enforcement in a real resolver: an enterprise's `rpz` point feeds a real
//! unbound, started here on loopback with its own remote-control keys, serving the test
//! names from an `auth-zone` (for-upstream, so RPZ applies to them). A ministry order to
//! block `bad.example` is `executed` only once unbound answers it NXDOMAIN; `good.example`
//! still resolves; after a revocation, and after an expiry on the injected clock, it
//! resolves again (the expiry while the link to the parent is down). With unbound stopped
//! the target is `failed: rpz: reload …`; started again, it becomes `executed` without a new
//! directive. A zone emptied behind the enterprise's back is restored by its next start.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use isms_deploy::{Options, Topology, resolver};
use isms_e2e::{TestNet, eventually, need, ok};

const T: Duration = Duration::from_secs(60);
const E: &str = "enterprise/e4401";

/// The resolver this test runs in the foreground, stopped by its PID.
struct Unbound {
    setup: resolver::Unbound,
    port: u16,
    child: Option<Child>,
}

impl Unbound {
    fn start(&mut self) {
        let child = Command::new("unbound")
            .args(["-d", "-c"])
            .arg(&self.setup.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unbound");
        self.child = Some(child);
        eventually(T, "unbound answering", || {
            (dig(self.port, "good.example").0 == "NOERROR").then_some(())
        });
    }

    /// Stops it by its PID (SIGTERM) and waits for it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `dig @127.0.0.1 -p PORT NAME`: the status and the addresses answered.
fn dig(port: u16, name: &str) -> (String, Vec<String>) {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            name,
            "A",
            "+tries=1",
            "+time=2",
        ])
        .output()
        .expect("dig");
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let addrs = text
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains("\tA\t"))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    (status, addrs)
}

#[test]
fn an_order_is_executed_once_the_resolver_blocks_it_and_undone_by_revocation_and_expiry() {
    need("unbound");
    need("unbound-control");
    need("dig");
    let options = Options {
        clock_files: true,
        ..Options::default()
    };
    let net = TestNet::generate(&Topology::uniform(&["44"], 1, 0), &options);
    let node = net.node(E).clone();
    let setup = resolver::configure(
        &node.dir.join("unbound"),
        &node.dir.join("rpz.isms.zone"),
        false,
    )
    .expect("unbound configured");
    setup.attach(&node.config_path).expect("config");
    let mut unbound = Unbound {
        port: setup.port,
        setup,
        child: None,
    };
    unbound.start();
    // The clocks are set before the nodes start: no record bears the real date.
    for n in net.net.nodes.clone() {
        ok(net.cli(
            n.id.as_str(),
            &["clock", "set", "2026-12-07T09:00:00+08:00"],
        ));
    }
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();
    let port = unbound.port;
    assert_eq!(
        dig(port, "bad.example"),
        ("NOERROR".into(), vec!["192.0.2.1".into()])
    );

    // Executed means the resolver blocks it; the neighbour still resolves.
    let id = net.issue_wait(&["--to", E, "--block-domain", "bad.example"]);
    assert_eq!(dig(port, "bad.example").0, "NXDOMAIN");
    assert_eq!(dig(port, "www.bad.example").0, "NXDOMAIN", "subdomains too");
    assert_eq!(
        dig(port, "good.example"),
        ("NOERROR".into(), vec!["192.0.2.2".into()])
    );

    // Revoked: it resolves again.
    ok(net.cli("ministry", &["directive", "revoke", &id, "--wait"]));
    assert_eq!(
        dig(port, "bad.example"),
        ("NOERROR".into(), vec!["192.0.2.1".into()])
    );

    // Expired on the injected clock: it resolves again.
    net.issue_wait(&[
        "--to",
        E,
        "--block-domain",
        "later.example",
        "--expires-at",
        "2026-12-07T10:00:00+08:00",
    ]);
    assert_eq!(dig(port, "later.example").0, "NXDOMAIN");
    // ... also while the link to the parent is down.
    net.stop("province/44");
    ok(net.cli(E, &["clock", "advance", "2h"]));
    eventually(T, "the expired name resolving again", || {
        (dig(port, "later.example").0 == "NOERROR").then_some(())
    });
    net.spawn("province/44");
    net.wait_linked();

    // The resolver down: the target fails with the reload's error; back up, the retry
    // makes it executed without a new directive.
    unbound.stop();
    let out = net.cli(
        "ministry",
        &[
            "directive",
            "issue",
            "--to",
            E,
            "--block-domain",
            "worse.example",
            "--wait",
            "--json",
            "--timeout",
            "30s",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let detail = view["targets"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(detail.contains("rpz: reload"), "{detail}");
    let worse = view["id"].as_str().expect("id").to_string();
    // The enterprise's status says what is not in force, and why.
    let status = net.node_status(E).expect("status");
    assert_eq!(status["enforcement_pending"], 1, "{status}");
    assert!(
        status["enforcement_error"]
            .as_str()
            .is_some_and(|e| e.contains("rpz: reload")),
        "{status}"
    );
    unbound.start();
    net.wait_all(&worse, "executed", T);
    let status = net.node_status(E).expect("status");
    assert_eq!(
        (&status["enforcement_pending"], &status["enforcement_error"]),
        (&serde_json::json!(0), &serde_json::json!("")),
        "{status}"
    );
    assert_eq!(dig(port, "worse.example").0, "NXDOMAIN");
    assert_eq!(dig(port, "good.example").0, "NOERROR");

    // Someone empties the policy zone while the enterprise is stopped: its start converges
    // the resolver back to the stored rule set.
    net.stop(E);
    std::fs::write(
        &unbound.setup.zone_file,
        "rpz.isms. IN SOA localhost. hostmaster.localhost. 99 3600 600 86400 60\n\
         rpz.isms. IN NS localhost.\n",
    )
    .expect("zone");
    let reload = Command::new("unbound-control")
        .arg("-c")
        .arg(&unbound.setup.conf)
        .args(["auth_zone_reload", resolver::RPZ_ZONE])
        .output()
        .expect("reload");
    assert!(reload.status.success(), "{reload:?}");
    eventually(T, "the emptied zone in force", || {
        (dig(port, "worse.example").0 == "NOERROR").then_some(())
    });
    net.spawn(E);
    eventually(T, "the start converging the resolver", || {
        (dig(port, "worse.example").0 == "NXDOMAIN").then_some(())
    });
}

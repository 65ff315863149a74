//! Enforcement at the edge: an enterprise's `nftables` point keeps blocked CIDRs in
//! an interval set of a network namespace this test creates (`unshare -n`), where the
//! operator's drop rule uses it. After a ministry order to block `10.66.0.0/24` is
//! `executed`, the set lists it, and a TCP connection from the namespace to a listener in
//! that CIDR fails while one outside it succeeds; after a revocation it succeeds again.
//! Without CAP_NET_ADMIN (no namespace, no nft) the test fails, saying why.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use isms_deploy::Topology;
use isms_e2e::{TestNet, need};

const E: &str = "enterprise/e4401";

/// A network namespace held open by a sleeping process; stopped by its PID.
struct Namespace {
    holder: Child,
}

impl Namespace {
    fn new() -> Namespace {
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let ns = Namespace { holder };
        // `unshare` execs `sleep` in the new namespace: it is up once the two differ.
        isms_e2e::eventually(Duration::from_secs(10), "the namespace", || {
            let mine = std::fs::read_link("/proc/self/ns/net").ok()?;
            let theirs = std::fs::read_link(format!("/proc/{}/ns/net", ns.pid())).ok()?;
            (mine != theirs).then_some(())
        });
        ns
    }

    fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// Runs `argv` inside the namespace; its output, or a panic saying why not.
    fn run(&self, argv: &[&str]) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-n"])
            .args(argv)
            .output()
            .expect("nsenter");
        assert!(
            out.status.success(),
            "{argv:?} in the namespace: {} (needs CAP_NET_ADMIN)",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Whether a TCP connection from inside the namespace to a listener on `addr` (also
    /// inside) is made within a second.
    fn connects(&self, addr: &str) -> bool {
        let netns = std::fs::File::open(format!("/proc/{}/ns/net", self.pid())).expect("ns");
        let addr: std::net::IpAddr = addr.parse().expect("addr");
        std::thread::spawn(move || {
            // Only this thread enters the namespace.
            nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let listener = TcpListener::bind(SocketAddr::new(addr, 0)).expect("listen");
            let to = listener.local_addr().expect("addr");
            TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok()
        })
        .join()
        .expect("thread")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.holder.id()).expect("pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.holder.wait();
    }
}

#[test]
fn a_blocked_cidr_is_in_the_set_and_dropped_and_released_by_revocation() {
    for p in ["unshare", "nsenter", "nft", "ip"] {
        need(p);
    }
    let ns = Namespace::new();
    ns.run(&["ip", "link", "set", "lo", "up"]);
    ns.run(&["ip", "addr", "add", "10.66.0.1/32", "dev", "lo"]);
    ns.run(&["ip", "addr", "add", "10.77.0.1/32", "dev", "lo"]);
    let net = TestNet::generate(&Topology::uniform(&["44"], 1, 0), &Default::default());
    let node = net.node(E).clone();
    // The operator's part: the table with its sets, and the rule that drops what they hold.
    let setup = node.dir.join("edge.nft");
    std::fs::write(
        &setup,
        "table inet isms {\n  set blocked_v4 { type ipv4_addr; flags interval; auto-merge; }\n  \
         set blocked_v6 { type ipv6_addr; flags interval; auto-merge; }\n  \
         chain out { type filter hook output priority 0; policy accept;\n    \
         ip daddr @blocked_v4 drop\n    ip6 daddr @blocked_v6 drop\n  }\n}\n",
    )
    .expect("setup");
    ns.run(&["nft", "-f", setup.to_str().expect("utf8")]);
    assert!(ns.connects("10.66.0.1") && ns.connects("10.77.0.1"));
    // The node runs outside; its `nft` runs inside the namespace.
    let wrapper = node.dir.join("nft-in-namespace");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec nsenter -t {} -n nft \"$@\"\n", ns.pid()),
    )
    .expect("wrapper");
    Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .expect("chmod");
    let mut config = std::fs::read_to_string(&node.config_path).expect("config");
    config.push_str(&format!(
        "\n[[enforcement]]\npoint = \"nftables\"\nnft = \"{}\"\n\n\
         [[enforcement]]\npoint = \"file\"\npath = \"rules.json\"\n",
        wrapper.display()
    ));
    std::fs::write(&node.config_path, config).expect("config");
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();

    let id = net.issue_wait(&["--to", E, "--block-ip", "10.66.0.0/24"]);
    let set = ns.run(&["nft", "list", "set", "inet", "isms", "blocked_v4"]);
    assert!(set.contains("10.66.0.0/24"), "{set}");
    assert!(!ns.connects("10.66.0.1"), "a blocked address is dropped");
    assert!(ns.connects("10.77.0.1"), "one outside the CIDR is not");

    let out = net.cli("ministry", &["directive", "revoke", &id, "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set = ns.run(&["nft", "list", "set", "inet", "isms", "blocked_v4"]);
    assert!(!set.contains("10.66.0.0/24"), "{set}");
    assert!(ns.connects("10.66.0.1"), "released by the revocation");
}

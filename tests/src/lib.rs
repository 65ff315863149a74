//! Harness for the end-to-end tests: generates a network in a temp dir, spawns the real
//! binaries (built beside the test executable), drives them through their CLI, waits by
//! bounded polling, and stops nodes with SIGTERM (SIGKILL only where a crash is the point).
//! When a test fails, every node's log is printed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use isms_deploy::{Network, NodeLayout, Options, Topology};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

pub use isms_deploy;

pub mod browser;

/// A helper process (chromedriver, Prometheus, a node started by hand) stopped by its PID
/// with SIGTERM when the test ends, however it ends.
pub struct StopOnDrop(pub Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(0));
        let _ = kill(pid, Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// Where the node binaries are: `target/<profile>/`, the parent of the test executable's
/// `deps/` directory. `cargo build --workspace --bins` puts them there.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory")
        .to_path_buf();
    for b in ["ministry-node", "province-node", "enterprise-node"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run `cargo build --workspace --bins` before the tests (the README's test command does)",
            dir.join(b).display()
        );
    }
    dir
}

/// Polls `f` until it returns `Some`, for at most `timeout`; panics naming `what`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A running test network.
pub struct TestNet {
    pub net: Network,
    bins: PathBuf,
    procs: Mutex<HashMap<String, Child>>,
    _dir: tempfile::TempDir,
}

impl TestNet {
    /// Generates and starts `topology` and waits until every link is up.
    pub fn start(topology: &Topology) -> TestNet {
        TestNet::start_with(topology, &Options::default())
    }

    pub fn start_with(topology: &Topology, options: &Options) -> TestNet {
        let net = TestNet::generate(topology, options);
        net.spawn_all_and_link();
        net
    }

    /// Like `start_with`, every node's testing clock reading `at` (RFC 3339) from its first
    /// record on: a test that sets the clock only after the start has records stamped with
    /// the real date before it, and so depends on the day it runs.
    pub fn start_at(topology: &Topology, options: &Options, at: &str) -> TestNet {
        assert!(options.clock_files, "start_at needs Options::clock_files");
        let net = TestNet::generate(topology, options);
        for n in &net.net.nodes {
            std::fs::write(n.dir.join("clock"), format!("{at}\n")).expect("write clock file");
        }
        net.spawn_all_and_link();
        net
    }

    fn spawn_all_and_link(&self) {
        for n in self.net.nodes.clone() {
            self.spawn(n.id.as_str());
        }
        self.wait_linked();
    }

    /// Generates the network without starting it.
    pub fn generate(topology: &Topology, options: &Options) -> TestNet {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = isms_deploy::generate(dir.path(), topology, options).expect("generate network");
        TestNet {
            net,
            bins: bin_dir(),
            procs: Mutex::new(HashMap::new()),
            _dir: dir,
        }
    }

    pub fn node(&self, id: &str) -> &NodeLayout {
        self.net
            .node(id)
            .unwrap_or_else(|| panic!("no node {id} in the topology"))
    }

    /// Starts the node's binary; its output is appended to its log.
    pub fn spawn(&self, id: &str) {
        let node = self.node(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())
            .expect("open log");
        let child = Command::new(self.bins.join(node.binary))
            .arg("serve")
            .arg("--config")
            .arg(&node.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn node");
        let old = self
            .procs
            .lock()
            .expect("procs lock")
            .insert(id.to_string(), child);
        assert!(old.is_none(), "{id} was already running");
    }

    /// The process ID of a running node.
    pub fn pid(&self, id: &str) -> u32 {
        self.procs
            .lock()
            .expect("procs lock")
            .get(id)
            .unwrap_or_else(|| panic!("{id} is not running"))
            .id()
    }

    fn take(&self, id: &str) -> Child {
        self.procs
            .lock()
            .expect("procs lock")
            .remove(id)
            .unwrap_or_else(|| panic!("{id} is not running"))
    }

    /// SIGTERM, then waits for a clean exit (status 0).
    pub fn stop(&self, id: &str) {
        let mut child = self.take(id);
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let status = eventually(Duration::from_secs(20), &format!("{id} to exit"), || {
            child.try_wait().expect("wait")
        });
        assert!(status.success(), "{id} exited with {status} after SIGTERM");
    }

    /// SIGKILL: a crash.
    pub fn kill(&self, id: &str) {
        let mut child = self.take(id);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Polls every parent until all its children are linked.
    pub fn wait_linked(&self) {
        for n in &self.net.nodes {
            if n.config.children.is_empty() || !self.is_running(n.id.as_str()) {
                continue;
            }
            let id = n.id.as_str();
            eventually(
                Duration::from_secs(30),
                &format!("{id}'s children to link"),
                || {
                    let s = self.node_status(id)?;
                    let peers = s["peers"].as_array()?;
                    let all_up = peers.iter().filter(|p| p["role"] == "child").all(|p| {
                        let child = p["peer"].as_str().unwrap_or_default();
                        p["up"] == true || !self.is_running(child)
                    });
                    all_up.then_some(())
                },
            );
        }
    }

    pub fn is_running(&self, id: &str) -> bool {
        self.procs.lock().expect("procs lock").contains_key(id)
    }

    /// Whether the node's process has ended (by itself, or by a signal the test sent), and
    /// how: its exit status.
    pub fn exited(&self, id: &str) -> Option<std::process::ExitStatus> {
        let mut procs = self.procs.lock().expect("procs lock");
        let status = procs.get_mut(id)?.try_wait().ok().flatten()?;
        procs.remove(id);
        Some(status)
    }

    /// Runs `<binary of node> <args…>`, adding `--config` of that node.
    pub fn cli(&self, id: &str, args: &[&str]) -> Output {
        let node = self.node(id);
        Command::new(self.bins.join(node.binary))
            .args(args)
            .arg("--config")
            .arg(&node.config_path)
            .stdin(Stdio::null())
            .output()
            .expect("run CLI")
    }

    /// Issues at the ministry and follows it (`--wait`) until every target is final; the
    /// directive's ID. The command must succeed.
    pub fn issue_wait(&self, args: &[&str]) -> String {
        let mut full = vec!["directive", "issue", "--wait"];
        full.extend_from_slice(args);
        let out = ok(self.cli("ministry", &full));
        out.lines().next().expect("the ID").trim().to_string()
    }

    /// Runs a CLI command at node `id` as its operator `role` (a network generated with
    /// `Options::role_operators`: certificates under `<node>/operators/<role>.*`).
    pub fn cli_as(&self, id: &str, role: &str, args: &[&str]) -> Output {
        let ops = self.node(id).dir.join("operators");
        let cert = ops.join(format!("{role}.pem"));
        let key = ops.join(format!("{role}.key"));
        let mut full: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        full.extend([
            std::ffi::OsStr::new("--operator-cert"),
            cert.as_os_str(),
            std::ffi::OsStr::new("--operator-key"),
            key.as_os_str(),
        ]);
        let node = self.node(id);
        Command::new(self.bins.join(node.binary))
            .args(full)
            .arg("--config")
            .arg(&node.config_path)
            .stdin(Stdio::null())
            .output()
            .expect("run CLI")
    }

    /// Runs a CLI command that prints JSON; `None` if it failed.
    pub fn cli_json(&self, id: &str, args: &[&str]) -> Option<Value> {
        let out = self.cli(id, args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn node_status(&self, id: &str) -> Option<Value> {
        self.cli_json(id, &["status", "--json"])
    }

    /// Issues at the ministry and returns the directive ID.
    pub fn issue(&self, args: &[&str]) -> String {
        let mut full = vec!["directive", "issue"];
        full.extend_from_slice(args);
        let out = self.cli("ministry", &full);
        assert!(
            out.status.success(),
            "issue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(id.len(), 36, "expected a directive ID, got {id:?}");
        id
    }

    /// `directive status ID --json` at `node`.
    pub fn directive(&self, node: &str, id: &str) -> Option<Value> {
        self.cli_json(node, &["directive", "status", id, "--json"])
    }

    /// Target node → state of a directive at `node`.
    pub fn target_states(&self, node: &str, id: &str) -> Option<HashMap<String, String>> {
        let v = self.directive(node, id)?;
        Some(states(&v["targets"]))
    }

    /// Waits until every target of the directive is `state` at the ministry.
    pub fn wait_all(&self, id: &str, state: &str, timeout: Duration) -> Value {
        eventually(timeout, &format!("every target of {id} {state}"), || {
            let v = self.directive("ministry", id)?;
            let targets = v["targets"].as_array()?;
            (!targets.is_empty() && targets.iter().all(|t| t["state"] == state)).then_some(v)
        })
    }

    /// Entries of an enterprise's rules file.
    pub fn rules(&self, enterprise: &str) -> Vec<Value> {
        let path = self.node(enterprise).rules_path().expect("enterprise");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return vec![];
        };
        let v: Value = serde_json::from_str(&text).expect("rules file is JSON");
        v["rules"].as_array().cloned().unwrap_or_default()
    }

    /// The values of an enterprise's rules, sorted (duplicates kept).
    pub fn rule_values(&self, enterprise: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .rules(enterprise)
            .iter()
            .filter_map(|r| r["value"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    }

    pub fn enterprises(&self) -> Vec<String> {
        self.net
            .nodes
            .iter()
            .filter(|n| n.binary == "enterprise-node")
            .map(|n| n.id.to_string())
            .collect()
    }

    pub fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.node(id).log_path()).unwrap_or_default()
    }
}

/// `[{node, state}]` → map.
/// A command's standard output, trimmed, after checking it succeeded (else a panic with
/// what it printed).
/// Copies a directory tree (a node's store, say: a backup, or a restore).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Fails loudly where a real peer the test needs is not installed: CI installs it
/// (`.ci/run`), and a test that cannot get its component must not pass.
pub fn need(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is not installed: `apt-get install unbound dnsutils nftables iproute2 \
         util-linux` (what .ci/run does)"
    );
}

pub fn states(targets: &Value) -> HashMap<String, String> {
    targets
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["node"].as_str().unwrap_or_default().to_string(),
                        t["state"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let procs: Vec<(String, Child)> = self
            .procs
            .lock()
            .map(|mut p| p.drain().collect())
            .unwrap_or_default();
        for (_, child) in &procs {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        for (id, mut child) in procs {
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().ok().flatten().is_none() {
                eprintln!("{id} ignored SIGTERM; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for n in &self.net.nodes {
                let log = self.log(n.id.as_str());
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("----- {} log (last {} lines) -----", n.id, tail.len());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl TestNet {
    /// A raw link client to `to`, presenting `cert`/`key`: for tests that speak the protocol
    /// as a (possibly misbehaving) peer would.
    pub fn link_client(
        &self,
        cert: &Path,
        key: &Path,
        to: &str,
    ) -> isms_proto::v1::link_client::LinkClient<tonic::transport::Channel> {
        isms_proto::v1::link_client::LinkClient::new(self.channel(cert, key, to))
            .max_encoding_message_size(256 << 20)
    }

    /// An mTLS channel to `to`'s port, presenting `cert`/`key` (any service on it: link,
    /// operator, health, reflection).
    pub fn channel(&self, cert: &Path, key: &Path, to: &str) -> tonic::transport::Channel {
        isms_transport::tls::install_crypto_provider();
        let target = self.node(to);
        let paths = isms_transport::tls::TlsPaths {
            ca: &self.net.root.join("ca.pem"),
            cert,
            key,
        };
        let config = isms_transport::tls::client_config(
            &paths,
            isms_domain::identity::Identity::Node(target.id.clone()),
            &target.config.trust_domain,
        )
        .expect("client TLS config");
        isms_transport::tls::channel(&target.listen().to_string(), config).expect("channel")
    }

    /// The certificate and key files of a node.
    pub fn cert_of(&self, id: &str) -> (PathBuf, PathBuf) {
        let dir = &self.node(id).dir;
        (dir.join("node.pem"), dir.join("node.key"))
    }
}

/// One raw link session: frames go out through `tx`, answers come from `rx`.
pub struct RawSession {
    pub tx: tokio::sync::mpsc::Sender<isms_proto::v1::Frame>,
    pub rx: tonic::Streaming<isms_proto::v1::Frame>,
}

impl RawSession {
    /// Opens a session; `Err` if the server refused the stream itself.
    pub async fn open(
        client: &mut isms_proto::v1::link_client::LinkClient<tonic::transport::Channel>,
    ) -> Result<RawSession, tonic::Status> {
        let (tx, out) = tokio::sync::mpsc::channel(16);
        let response = client
            .open(tokio_stream::wrappers::ReceiverStream::new(out))
            .await?;
        Ok(RawSession {
            tx,
            rx: response.into_inner(),
        })
    }

    pub async fn send(&self, body: isms_proto::v1::frame::Body) {
        self.tx
            .send(isms_proto::v1::Frame { body: Some(body) })
            .await
            .expect("session open");
    }

    /// The next frame, or the error status that ended the stream.
    pub async fn next(&mut self) -> Result<Option<isms_proto::v1::Frame>, tonic::Status> {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("an answer within 10s")
    }
}

impl TestNet {
    /// An operator API client of `id`, as its generated operator.
    pub async fn operator(
        &self,
        id: &str,
    ) -> isms_proto::v1::operator_client::OperatorClient<tonic::transport::Channel> {
        let args = isms_cli::ClientArgs {
            config: self.node(id).config_path.clone(),
            operator_cert: None,
            operator_key: None,
        };
        isms_cli::connect(&args).await.expect("operator client")
    }
}

/// A report by `node` on a directive nobody issued (a fresh ID), as envelope `seq` of a raw
/// session: the receiver applies it (its sequence number moves on) and otherwise ignores it.
pub fn stray_report(seq: u64, node: &str) -> isms_proto::v1::Envelope {
    use isms_proto::v1::{Envelope, StatusReport, TargetStatus, envelope::Payload};
    Envelope {
        seq,
        id: uuid::Uuid::now_v7().to_string(),
        payload: Some(Payload::Status(StatusReport {
            directive_id: uuid::Uuid::now_v7().to_string(),
            updates: vec![TargetStatus {
                node: node.into(),
                state: 5,
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

//! The peer the network is measured against (`isms-bench --peer nats`): NATS as a broker
//! would carry the same orders, one `nats-server` hub for the ministry and a leaf server per
//! province (Debian's `nats-server`), and one subscriber connection per enterprise to its
//! province's leaf, as each simulated enterprise holds one link. The publisher sends each
//! directive once to the hub; every subscriber decodes it, checks its shape and rules as a
//! simulated enterprise does, and publishes an acknowledgment back up. The scenarios and
//! figure names are the network's (latency, throughput), so `isms-bench compare` sets the
//! two side by side.
//!
//! What it is not: durable. Core NATS keeps nothing; a subscriber acknowledges on receipt,
//! and nothing is written to a disk anywhere. Nor encrypted: the servers and clients speak
//! plain TCP on loopback, where every hop of the network is mTLS.
//!
//! Must not: start the project's nodes, or write anything but its temporary directory.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use prost::Message;
use tokio::sync::Notify;

use super::*;

const DIRECTIVES: &str = "isms.directive";
const ACKS: &str = "isms.ack";

/// The servers, stopped when dropped.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let _ = child.wait();
        }
    }
}

/// Acknowledgments counted per directive, and who waits for a directive's last.
#[derive(Default)]
struct Acks {
    counts: Mutex<HashMap<String, (usize, Option<Instant>)>>,
    changed: Notify,
}

impl Acks {
    fn count(&self, id: &str) -> (usize, Option<Instant>) {
        self.counts
            .lock()
            .ok()
            .and_then(|c| c.get(id).copied())
            .unwrap_or((0, None))
    }

    /// Waits until `want` acknowledgments of `id` arrived; the time of the last.
    async fn wait(&self, id: &str, want: usize, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let (n, last) = self.count(id);
            if n >= want {
                anyhow::ensure!(
                    n == want,
                    "{id}: {n} acknowledgments for {want} subscribers"
                );
                return last.context("a count without a time");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "{id}: {n} of {want} acknowledgments in {timeout:?}"
            );
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

/// `nats-server --version`'s answer, or why there is none.
fn nats_version() -> String {
    Command::new("nats-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("nats-server: {e}"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start(dir: &std::path::Path, name: &str, conf: String) -> anyhow::Result<Child> {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf)?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    Command::new("nats-server")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("nats-server (Debian package `nats-server`; .ci/run installs it)")
}

/// Connects, retrying while the server starts. `capacity`: messages a subscription holds
/// before the client drops them (core NATS drops for a slow consumer, it does not wait).
async fn connect(url: &str, capacity: usize) -> anyhow::Result<async_nats::Client> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match async_nats::ConnectOptions::new()
            .subscription_capacity(capacity)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => {
                return Err(anyhow::anyhow!("{url}: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A subscriber: takes each directive as a simulated enterprise takes it, then answers.
async fn subscriber(client: async_nats::Client, rules: Arc<std::sync::atomic::AtomicU64>) {
    let Ok(mut directives) = client.subscribe(DIRECTIVES).await else {
        return;
    };
    while let Some(msg) = directives.next().await {
        let Ok(d) = isms_proto::v1::Directive::decode(msg.payload.clone()) else {
            continue;
        };
        if isms_core::check_directive_shape(&d).is_err() {
            continue;
        }
        if let Ok(n) = isms_domain::directive::count_distinct_rules(&d.rules) {
            rules.fetch_add(n as u64, Ordering::Relaxed);
        }
        let _ = client.publish(ACKS, d.id.into_bytes().into()).await;
    }
}

fn directive(tag: &str) -> isms_proto::v1::Directive {
    let r = request("all", tag, 1);
    isms_proto::v1::Directive {
        id: r.id,
        issuer: "ministry".into(),
        kind: r.kind,
        urgency: r.urgency,
        rules: r.rules,
        targets: vec!["all".into()],
        ..Default::default()
    }
}

pub(super) async fn run(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("isms-bench-nats")
        .tempdir()?;
    let (hub_port, leaf_port) = (free_port()?, free_port()?);
    let mut servers = Servers(Vec::new());
    servers.0.push(start(
        dir.path(),
        "hub",
        format!(
            "listen: \"127.0.0.1:{hub_port}\"\nleafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}\n"
        ),
    )?);
    let mut leaves = Vec::new();
    for p in 0..args.provinces {
        let port = free_port()?;
        servers.0.push(start(
            dir.path(),
            &format!("leaf-{p}"),
            format!(
                "listen: \"127.0.0.1:{port}\"\nleafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{leaf_port}\" }} ] }}\n"
            ),
        )?);
        leaves.push(format!("nats://127.0.0.1:{port}"));
    }
    let n = args.provinces * args.per_province;
    println!(
        "NATS: a hub and {} leaf servers, {n} subscribers (one connection each)",
        args.provinces
    );
    // Every acknowledgment of a throughput run may wait at once: 4,991 × 60.
    let hub = connect(
        &format!("nats://127.0.0.1:{hub_port}"),
        (n * args.throughput_count * 2).max(1 << 16),
    )
    .await?;
    let acks = Arc::new(Acks::default());
    let mut ack_sub = hub.subscribe(ACKS).await?;
    let counter = acks.clone();
    tokio::spawn(async move {
        while let Some(msg) = ack_sub.next().await {
            let id = String::from_utf8_lossy(&msg.payload).into_owned();
            if let Ok(mut counts) = counter.counts.lock() {
                let entry = counts.entry(id).or_insert((0, None));
                entry.0 += 1;
                entry.1 = Some(Instant::now());
            }
            counter.changed.notify_waiters();
        }
    });
    hub.flush().await?;
    let rules = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let linked = Instant::now();
    for leaf in &leaves {
        for _ in 0..args.per_province {
            let client = connect(leaf, 1024).await?;
            tokio::spawn(subscriber(client, rules.clone()));
        }
    }
    // Interest reaches the hub through the leaves in its own time: probe until every
    // subscriber answers.
    let mut probes = 0;
    loop {
        let d = directive(&format!("probe{probes}"));
        hub.publish(DIRECTIVES, d.encode_to_vec().into()).await?;
        hub.flush().await?;
        probes += 1;
        match acks.wait(&d.id, n, Duration::from_secs(5)).await {
            Ok(_) => break,
            Err(e) if probes >= 24 => return Err(e.context("subscribers never all reached")),
            Err(_) => {}
        }
    }
    println!(
        "  all {n} subscribers answering after {:.1}s",
        linked.elapsed().as_secs_f64()
    );
    let mut figures = Figures { rows: Vec::new() };
    let scenarios = if args.only.is_empty() {
        vec![Scenario::Latency, Scenario::Throughput]
    } else {
        args.only.clone()
    };
    let timeout = Duration::from_secs(120);
    for scenario in &scenarios {
        match scenario {
            Scenario::Latency => {
                let mut samples = Vec::new();
                for run in 0..args.runs {
                    for i in 0..args.latency_count {
                        let d = directive(&format!("l{run}-{i}"));
                        let sent = Instant::now();
                        hub.publish(DIRECTIVES, d.encode_to_vec().into()).await?;
                        hub.flush().await?;
                        let last = acks.wait(&d.id, n, timeout).await?;
                        samples.push(last.duration_since(sent).as_secs_f64() * 1000.0);
                    }
                }
                figures.add(&format!("full-ack latency, N = {n}"), "ms", samples);
            }
            Scenario::Throughput => {
                let mut samples = Vec::new();
                for run in 0..args.runs {
                    let batch: Vec<_> = (0..args.throughput_count)
                        .map(|i| directive(&format!("t{run}-{i}")))
                        .collect();
                    let first = Instant::now();
                    for d in &batch {
                        hub.publish(DIRECTIVES, d.encode_to_vec().into()).await?;
                    }
                    hub.flush().await?;
                    let mut last = first;
                    for d in &batch {
                        last = last.max(acks.wait(&d.id, n, timeout).await?);
                    }
                    let rate = batch.len() as f64 / last.duration_since(first).as_secs_f64();
                    println!("  run {run}: {rate:.2} directives/s");
                    samples.push(rate);
                }
                figures.add(
                    &format!("sustained throughput, N = {n}"),
                    "directives/s",
                    samples,
                );
            }
            other => println!("{other:?}: not measured against NATS (no such scenario there)"),
        }
    }
    println!(
        "subscribers validated {} rules",
        rules.load(Ordering::Relaxed)
    );
    print_table(args, n, &figures);
    if let Some(path) = &args.json {
        let run = results::Run {
            machine: machine(),
            commit: results::commit(),
            binaries: format!(
                "{} (hub + {} leaves, not durable)",
                nats_version(),
                args.provinces
            ),
            at: chrono::Utc::now().to_rfc3339(),
            enterprises: n,
            figures: figures.rows,
        };
        std::fs::write(path, serde_json::to_string_pretty(&run)?)?;
    }
    drop(servers);
    Ok(())
}

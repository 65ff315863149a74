//! `isms-bench`: the national-scale benchmark. Starts a real ministry and real province
//! processes (mTLS, sled, fsync'd group commit), one real `enterprise-node`, and simulates
//! the other enterprises in-process over the real link protocol; then measures full-ack
//! latency, sustained throughput, a 50,000-rule push, backlog drain, memory and disk.
//! Figures are printed as a Markdown table and written as JSON. See BENCHMARKS.md.

mod client;
mod nats_peer;
mod net;
mod network;
mod report;
mod results;
mod sim;

use client::*;
use report::*;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use isms_domain::identity::NodeId;
use isms_proto::v1::operator_client::OperatorClient;
use isms_proto::v1::{
    DirectiveKind, GetDirectiveRequest, IssueRequest, NodeStatusRequest, Rule, RuleKind,
    TargetState, Urgency,
};
use tonic::transport::Channel;

use crate::net::BenchNet;
use crate::sim::Sim;

// The simulated enterprises' one store takes every write of 4,990 enterprises, and sled
// clones a leaf per insert: glibc malloc and its page faults were a quarter of the load
// generator's commit thread (bench/HISTORY.md). The nodes keep the system allocator, which
// holds less memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "isms-bench",
    about = "National-scale fan-out benchmark of the ISMS directive network"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// Provinces (real province-node processes), at most 31.
    #[arg(long, default_value_t = 31)]
    provinces: usize,
    /// Enterprises per province; the first province's first enterprise is a real
    /// enterprise-node process, the rest are simulated.
    #[arg(long, default_value_t = 161)]
    per_province: usize,
    /// Repetitions of each scenario; figures are median and p99 over them.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Directives per latency run, issued one at a time.
    #[arg(long, default_value_t = 20)]
    latency_count: usize,
    /// Directives per throughput run, issued back to back.
    #[arg(long, default_value_t = 60)]
    throughput_count: usize,
    /// Issue requests in flight at once in the throughput run: an operator's client
    /// pipelines its requests, as a broker's publisher does; each is still durable at the
    /// ministry before its reply.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Rules in the bulk directive.
    #[arg(long, default_value_t = 50_000)]
    bulk_rules: usize,
    /// Messages queued for an offline province in the backlog scenario.
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// Which scenarios to run (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Where the network lives (default: a temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where the node binaries are (default: next to this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// `link.group_linger` of the ministry and the provinces (default: the node's own).
    #[arg(long, value_parser = humantime::parse_duration)]
    group_linger: Option<std::time::Duration>,
    /// Scheduling policy of the nodes and of this program's simulated enterprises, as the
    /// nodes' `scheduling` setting: `batch` (their default) or `inherit`.
    #[arg(long, default_value = "batch")]
    scheduling: isms_config::Scheduling,
    /// What carries the orders: `network` (the project's nodes) or `nats` (a NATS hub and a
    /// leaf server per province, not durable: the peer side by side in BENCHMARKS.md).
    #[arg(long, value_enum, default_value_t = Peer::Network)]
    peer: Peer,
    /// Write the figures here too, as JSON with every sample, the machine, the commit and
    /// the time (what `compare` reads).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// Each figure of two runs' files side by side, with the ratio and whether the
    /// difference is beyond the spread of the samples.
    Compare { a: PathBuf, b: PathBuf },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Peer {
    Network,
    Nats,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Scenario {
    Latency,
    Throughput,
    Bulk,
    Backlog,
    Network,
}

fn main() {
    let args = Args::parse();
    if let Some(BenchCommand::Compare { a, b }) = &args.command {
        match (results::Run::read(a), results::Run::read(b)) {
            (Ok(a), Ok(b)) => print!("{}", results::compare(&a, &b)),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("isms-bench: {e:#}");
                std::process::exit(1);
            }
        }
        return;
    }
    // As enterprise-node does at start: the simulated enterprises are enterprises too.
    if let Err(e) = isms_node::scheduling::apply(args.scheduling) {
        eprintln!("isms-bench: scheduling: {e}; keeping the inherited policy");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("isms-bench: {e}");
            std::process::exit(1);
        }
    };
    let result = match args.peer {
        Peer::Network => rt.block_on(run(args)),
        Peer::Nats => rt.block_on(nats_peer::run(&args)),
    };
    if let Err(e) = result {
        eprintln!("isms-bench: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    isms_transport::tls::install_crypto_provider();
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("program has no directory")?
            .to_path_buf(),
    };
    let bin_dir_used = bin_dir.clone();
    let temp;
    let root = match &args.dir {
        Some(d) => {
            if d.exists() {
                std::fs::remove_dir_all(d)?;
            }
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("isms-bench").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let scenarios = if args.only.is_empty() {
        vec![
            Scenario::Latency,
            Scenario::Throughput,
            Scenario::Bulk,
            Scenario::Backlog,
            Scenario::Network,
        ]
    } else {
        args.only.clone()
    };

    let started = Instant::now();
    println!(
        "generating {} provinces x {} enterprises under {}",
        args.provinces,
        args.per_province,
        root.display()
    );
    let mut link = isms_config::LinkTuning::default();
    if let Some(linger) = args.group_linger {
        link.group_linger = linger;
    }
    let mut bench = BenchNet::generate(
        &root,
        bin_dir,
        args.provinces,
        args.per_province,
        link,
        args.scheduling,
    )?;
    let provinces: Vec<String> = net::PROVINCE_CODES[..args.provinces]
        .iter()
        .map(|c| format!("province/{c}"))
        .collect();
    let real_enterprise = format!("enterprise/e{}x0001", net::PROVINCE_CODES[0]);
    let simulated: Vec<NodeId> = bench
        .net
        .nodes
        .iter()
        .map(|n| n.id.clone())
        .filter(|id| id.tier() == isms_domain::identity::Tier::Enterprise)
        .filter(|id| id.as_str() != real_enterprise)
        .collect();
    let total_enterprises = simulated.len() + 1;
    println!(
        "  generated in {:.1}s; starting ministry, {} provinces, 1 enterprise-node, {} simulated enterprises",
        started.elapsed().as_secs_f64(),
        provinces.len(),
        simulated.len()
    );
    bench.spawn("ministry")?;
    for p in &provinces {
        bench.spawn(p)?;
    }
    bench.spawn(&real_enterprise)?;
    let sim = Sim::new(&bench.net, &simulated, &root.join("simulated-enterprises"))?;
    sim.start();
    let linked_since = Instant::now();
    while sim.linked() < simulated.len() {
        if linked_since.elapsed() > Duration::from_secs(180) {
            bail!(
                "only {} of {} simulated enterprises linked",
                sim.linked(),
                simulated.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut parents = vec!["ministry".to_string()];
    parents.extend(provinces.iter().cloned());
    bench
        .wait_linked(&parents, Duration::from_secs(120))
        .await?;
    println!(
        "  all {} enterprises linked in {:.1}s",
        total_enterprises,
        linked_since.elapsed().as_secs_f64()
    );
    // Let the start-up settle before reading the idle footprint.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let real_pid = bench.pid(&real_enterprise).context("enterprise-node pid")?;
    let idle_rss = net::memory(real_pid).map_or(0, |(rss, _)| rss);

    let mut client = bench.operator("ministry").await?;
    let heartbeat = bench
        .net
        .node("ministry")
        .map_or(Duration::from_secs(10), |n| n.config.health.interval);
    let mut figures = Figures { rows: Vec::new() };
    let tag = uuid::Uuid::now_v7().simple().to_string()[..8].to_string();

    for scenario in &scenarios {
        match scenario {
            Scenario::Latency => {
                println!(
                    "latency: {} x {} directives, one at a time, to all {total_enterprises} enterprises",
                    args.runs, args.latency_count
                );
                let mut samples = Vec::new();
                let cpu_before = cpu_split(&bench, &provinces, &real_enterprise);
                for run in 0..args.runs {
                    for i in 0..args.latency_count {
                        let id = issue(&mut client, &format!("l{run}-{i}.{tag}"), 1).await?;
                        let done =
                            wait_done(&mut client, &id, total_enterprises, FAST_POLL).await?;
                        samples.push(done.latency_ms() as f64);
                    }
                }
                let cpu_after = cpu_split(&bench, &provinces, &real_enterprise);
                print_cpu(cpu_before, cpu_after, args.runs * args.latency_count);
                figures.add(
                    &format!("full-ack latency, N = {total_enterprises}"),
                    "ms",
                    samples,
                );
            }
            Scenario::Throughput => {
                println!(
                    "throughput: {} x {} directives back to back, {} issue requests in flight",
                    args.runs, args.throughput_count, args.in_flight
                );
                let mut samples = Vec::new();
                let cpu_before = cpu_split(&bench, &provinces, &real_enterprise);
                for run in 0..args.runs {
                    let run_before = cpu_split(&bench, &provinces, &real_enterprise);
                    let requests = (0..args.throughput_count)
                        .map(|i| request("all", &format!("t{run}-{i}.{tag}"), 1));
                    let ids = issue_pipelined(&client, requests, args.in_flight).await?;
                    let (mut first, mut last) = (i64::MAX, 0);
                    // The last one first, polled slowly: reads of 4,991 targets cost the
                    // ministry CPU; the figure comes from the ministry's own timestamps.
                    for id in ids.iter().rev() {
                        let done = wait_done(&mut client, id, total_enterprises, SLOW_POLL).await?;
                        first = first.min(done.issued_ms);
                        last = last.max(done.finished_ms);
                    }
                    let secs = (last - first) as f64 / 1000.0;
                    let rate = args.throughput_count as f64 / secs;
                    // Per run: the stores grow from one run to the next (bench/HISTORY.md).
                    println!("  run {run}: {rate:.2} directives/s");
                    print_cpu(
                        run_before,
                        cpu_split(&bench, &provinces, &real_enterprise),
                        args.throughput_count,
                    );
                    samples.push(rate);
                }
                let cpu_after = cpu_split(&bench, &provinces, &real_enterprise);
                print_cpu(cpu_before, cpu_after, args.runs * args.throughput_count);
                figures.add(
                    &format!("sustained throughput, N = {total_enterprises}"),
                    "directives/s",
                    samples,
                );
            }
            Scenario::Bulk => {
                println!(
                    "bulk: {} x one blacklist delta of {} block-domain rules to all",
                    args.runs, args.bulk_rules
                );
                let mut samples = Vec::new();
                for run in 0..args.runs {
                    let run_before = cpu_split(&bench, &provinces, &real_enterprise);
                    let id =
                        issue_blacklist(&mut client, &format!("b{run}.{tag}"), args.bulk_rules)
                            .await?;
                    let done = wait_done(&mut client, &id, total_enterprises, SLOW_POLL).await?;
                    println!("  run {run}: {:.1} s", done.latency_ms() as f64 / 1000.0);
                    print_cpu(
                        run_before,
                        cpu_split(&bench, &provinces, &real_enterprise),
                        1,
                    );
                    samples.push(done.latency_ms() as f64 / 1000.0);
                }
                figures.add(
                    &format!("bulk {} rules to N = {total_enterprises}", args.bulk_rules),
                    "s",
                    samples,
                );
            }
            Scenario::Backlog => {
                let province = provinces.last().context("no province")?.clone();
                let targets: Vec<String> = simulated
                    .iter()
                    .filter(|e| {
                        bench
                            .net
                            .node(e.as_str())
                            .and_then(|n| n.config.parent.as_ref())
                            .is_some_and(|p| p.id.as_str() == province)
                    })
                    .map(|e| e.to_string())
                    .collect();
                anyhow::ensure!(
                    !targets.is_empty(),
                    "{province} has no simulated enterprise"
                );
                println!(
                    "backlog: {} x {province} offline while {} directives queue for it",
                    args.runs, args.backlog
                );
                let mut rates = Vec::new();
                let mut delivered_rates = Vec::new();
                let mut per_message = Vec::new();
                for run in 0..args.runs {
                    bench.stop(&province)?;
                    let store = root
                        .join(isms_deploy::slug(&"ministry".parse()?))
                        .join("store");
                    let before = net::disk_bytes(&store);
                    let received_before = sim.counters.received.load(Ordering::SeqCst);
                    let requests = (0..args.backlog).map(|i| {
                        request(&targets[i % targets.len()], &format!("{i}.q{run}.{tag}"), 1)
                    });
                    issue_pipelined(&client, requests, 64).await?;
                    let backlog = backlog_of(&mut client, &province).await?;
                    anyhow::ensure!(
                        backlog >= args.backlog as u64,
                        "expected {} queued for {province}, found {backlog}",
                        args.backlog
                    );
                    per_message.push(
                        (net::disk_bytes(&store).saturating_sub(before)) as f64
                            / args.backlog as f64,
                    );
                    println!("  run {run}: {backlog} queued; starting {province}");
                    let cpu_before = [
                        bench.pid("ministry").map_or(0, net::cpu_ms),
                        net::cpu_ms(std::process::id()),
                    ];
                    let t0 = Instant::now();
                    bench.spawn(&province)?;
                    let mut first_sent = None;
                    loop {
                        let left = backlog_of(&mut client, &province).await?;
                        if left == 0 {
                            break;
                        }
                        if left < backlog && first_sent.is_none() {
                            first_sent = Some(t0.elapsed().as_secs_f64());
                        }
                        if t0.elapsed() > Duration::from_secs(600) {
                            bail!("{province}'s backlog did not drain in 600s");
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let secs = t0.elapsed().as_secs_f64();
                    rates.push(args.backlog as f64 / secs);
                    // Where the drain's CPU goes, per message: the province's since its start.
                    let per_message = |ms: u64| ms as f64 * 1000.0 / args.backlog as f64;
                    println!(
                        "  run {run}: CPU per message while draining: ministry {:.1} µs, {province} {:.1} µs, simulated enterprises {:.1} µs",
                        per_message(
                            bench
                                .pid("ministry")
                                .map_or(0, net::cpu_ms)
                                .saturating_sub(cpu_before[0])
                        ),
                        per_message(bench.pid(&province).map_or(0, net::cpu_ms)),
                        per_message(net::cpu_ms(std::process::id()).saturating_sub(cpu_before[1])),
                    );
                    println!(
                        "  run {run}: {} messages drained in {secs:.2}s from the process start \
                         (the first acknowledged after {:.2}s)",
                        args.backlog,
                        first_sent.unwrap_or(secs)
                    );
                    // Every queued directive reaches its enterprise exactly once. The
                    // province holds them durably once the link has drained; this is the
                    // rate at which it passes them on.
                    let want = received_before + args.backlog as u64;
                    while sim.counters.received.load(Ordering::SeqCst) < want {
                        if t0.elapsed() > Duration::from_secs(1200) {
                            bail!("queued directives did not all reach their enterprises");
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let secs = t0.elapsed().as_secs_f64();
                    delivered_rates.push(args.backlog as f64 / secs);
                    println!(
                        "  run {run}: all {} at their enterprises {secs:.2}s after the start",
                        args.backlog
                    );
                    anyhow::ensure!(
                        sim.counters.received.load(Ordering::SeqCst) == want,
                        "more directives received than issued"
                    );
                }
                figures.add("backlog drain", "messages/s", rates);
                figures.add(
                    "backlog delivered to enterprises",
                    "messages/s",
                    delivered_rates,
                );
                figures.add("ministry disk per queued directive", "bytes", per_message);
            }
            Scenario::Network => {
                let province = provinces.first().context("no province")?.clone();
                println!(
                    "network: the ministry's view of {} nodes, heartbeats every {}",
                    total_enterprises + provinces.len() + 1,
                    humantime::format_duration(heartbeat)
                );
                let rows = network::run(
                    &mut bench,
                    &mut client,
                    &province,
                    total_enterprises + provinces.len() + 1,
                    Duration::from_secs(60),
                )
                .await?;
                for (name, unit, value) in rows {
                    figures.add(&name, unit, vec![value]);
                }
            }
        }
    }

    let (_, ministry_peak) = bench
        .pid("ministry")
        .and_then(net::memory)
        .unwrap_or_default();
    let province_peak = provinces
        .iter()
        .filter_map(|p| bench.pid(p).and_then(net::memory))
        .map(|(_, hwm)| hwm)
        .max()
        .unwrap_or_default();
    let (_, enterprise_peak) = net::memory(real_pid).unwrap_or_default();
    let (_, generator_peak) = net::memory(std::process::id()).unwrap_or_default();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    figures.add("peak RSS ministry-node", "MiB", vec![mib(ministry_peak)]);
    figures.add(
        "peak RSS province-node (largest)",
        "MiB",
        vec![mib(province_peak)],
    );
    figures.add("RSS enterprise-node idle", "MiB", vec![mib(idle_rss)]);
    figures.add(
        "peak RSS enterprise-node under load",
        "MiB",
        vec![mib(enterprise_peak)],
    );
    figures.add(
        "peak RSS load generator (simulated enterprises)",
        "MiB",
        vec![mib(generator_peak)],
    );
    let c = &sim.counters;
    println!(
        "simulated enterprises: {} directives received, {} duplicates, {} executed, {} rules validated, {} refused batches, {} commits, {} frames with envelopes",
        c.received.load(Ordering::SeqCst),
        c.duplicates.load(Ordering::SeqCst),
        c.executed.load(Ordering::SeqCst),
        c.rules.load(Ordering::SeqCst),
        c.refused.load(Ordering::SeqCst),
        c.commits.load(Ordering::SeqCst),
        c.frames.load(Ordering::SeqCst),
    );
    anyhow::ensure!(
        c.duplicates.load(Ordering::SeqCst) == 0,
        "a simulated enterprise received a directive twice"
    );
    print_table(&args, total_enterprises, &figures);
    if let Some(path) = &args.json {
        let run = results::Run {
            machine: machine(),
            commit: results::commit(),
            binaries: results::binaries(&bin_dir_used),
            at: chrono::Utc::now().to_rfc3339(),
            enterprises: total_enterprises,
            figures: figures.rows,
        };
        std::fs::write(path, serde_json::to_string_pretty(&run)?)?;
    }
    drop(client);
    bench.stop_all();
    Ok(())
}

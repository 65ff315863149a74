//! `isms-bench`: the national-scale benchmark. Starts a real ministry and real province
//! processes (mTLS, sled, fsync'd group commit), one real `enterprise-node`, and simulates
//! the other enterprises in-process over the real link protocol; then measures full-ack
//! latency, sustained throughput, a 50,000-rule push, backlog drain, memory and disk.
//! Figures are printed as a Markdown table and written as JSON. See BENCHMARKS.md.

mod net;
mod sim;

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
struct Args {
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
    /// Write the figures as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Scenario {
    Latency,
    Throughput,
    Bulk,
    Backlog,
}

fn main() {
    let args = Args::parse();
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
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("isms-bench: {e:#}");
        std::process::exit(1);
    }
}

/// Median and p99 of a sample (nearest rank).
fn quantiles(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

struct Figures {
    rows: Vec<(String, String, f64, f64, usize)>,
}

impl Figures {
    fn add(&mut self, name: &str, unit: &str, samples: Vec<f64>) {
        let n = samples.len();
        let (p50, p99) = quantiles(samples);
        println!("  {name}: median {p50:.2} {unit}, p99 {p99:.2} {unit} ({n} samples)");
        self.rows.push((name.into(), unit.into(), p50, p99, n));
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
                    "bulk: {} x one directive of {} block-domain rules to all",
                    args.runs, args.bulk_rules
                );
                let mut samples = Vec::new();
                for run in 0..args.runs {
                    let run_before = cpu_split(&bench, &provinces, &real_enterprise);
                    let id = issue(&mut client, &format!("b{run}.{tag}"), args.bulk_rules).await?;
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
        let rows: Vec<serde_json::Value> = figures
            .rows
            .iter()
            .map(|(name, unit, p50, p99, n)| {
                serde_json::json!({"figure": name, "unit": unit, "median": p50, "p99": p99, "samples": n})
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
    }
    drop(client);
    bench.stop_all();
    Ok(())
}

fn print_table(args: &Args, n: usize, figures: &Figures) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\n{} provinces x {} enterprises = {n}; {} runs; {cores} cores, {cpu}\n",
        args.provinces, args.per_province, args.runs
    );
    println!("| figure | median | p99 | samples |");
    println!("|---|---:|---:|---:|");
    for (name, unit, p50, p99, samples) in &figures.rows {
        println!("| {name} | {p50:.2} {unit} | {p99:.2} {unit} | {samples} |");
    }
}

/// Prints CPU time per directive by process group, between two [`cpu_split`]s.
fn print_cpu(before: [u64; 4], after: [u64; 4], directives: usize) {
    let per = |i: usize| (after[i] - before[i]) as f64 / directives.max(1) as f64;
    println!(
        "  CPU per directive: ministry {:.0} ms, provinces {:.0} ms, enterprise-node {:.0} ms, simulated enterprises {:.0} ms",
        per(0),
        per(1),
        per(2),
        per(3)
    );
}

/// CPU ms used so far by the ministry, all provinces, the real enterprise and this process.
fn cpu_split(bench: &BenchNet, provinces: &[String], enterprise: &str) -> [u64; 4] {
    let of = |id: &str| bench.pid(id).map_or(0, net::cpu_ms);
    [
        of("ministry"),
        provinces.iter().map(|p| of(p)).sum(),
        of(enterprise),
        net::cpu_ms(std::process::id()),
    ]
}

/// A disposal directive to `to` blocking `rules` domains named after `tag`.
fn request(to: &str, tag: &str, rules: usize) -> IssueRequest {
    IssueRequest {
        id: uuid::Uuid::now_v7().to_string(),
        to: vec![to.into()],
        kind: DirectiveKind::Disposal as i32,
        urgency: Urgency::General as i32,
        rules: (0..rules)
            .map(|i| Rule {
                kind: RuleKind::BlockDomain as i32,
                value: format!("r{i}.{tag}.bench.example").into(),
                op: 0,
            })
            .collect(),
        ..Default::default()
    }
}

async fn issue(
    client: &mut OperatorClient<Channel>,
    tag: &str,
    rules: usize,
) -> anyhow::Result<String> {
    let request = request("all", tag, rules);
    Ok(client.issue_directive(request).await?.into_inner().id)
}

/// Issues `requests` with `in_flight` of them outstanding at a time, as a pipelining
/// client does; returns their IDs in the order issued.
async fn issue_pipelined(
    client: &OperatorClient<Channel>,
    requests: impl Iterator<Item = IssueRequest>,
    in_flight: usize,
) -> anyhow::Result<Vec<String>> {
    use futures::StreamExt;
    let results = futures::stream::iter(requests)
        .map(|request| {
            let mut client = client.clone();
            async move { client.issue_directive(request).await }
        })
        .buffered(in_flight.max(1))
        .collect::<Vec<_>>()
        .await;
    results
        .into_iter()
        .map(|r| Ok(r?.into_inner().id))
        .collect()
}

async fn backlog_of(client: &mut OperatorClient<Channel>, peer: &str) -> anyhow::Result<u64> {
    let status = client.node_status(NodeStatusRequest {}).await?.into_inner();
    status
        .peers
        .iter()
        .find(|p| p.peer == peer)
        .map(|p| p.backlog)
        .with_context(|| format!("{peer} not among the ministry's peers"))
}

/// Poll intervals: even a summary is the ministry reading 4,991 target records, so it is
/// not free; latency is measured on the ministry's clock, not by the poll.
const FAST_POLL: Duration = Duration::from_millis(25);
const SLOW_POLL: Duration = Duration::from_millis(250);

/// A fully executed directive, on the ministry's clock: when it accepted the directive and
/// when the last target's `executed` arrived.
struct Done {
    issued_ms: i64,
    finished_ms: i64,
}

impl Done {
    fn latency_ms(&self) -> i64 {
        self.finished_ms - self.issued_ms
    }
}

/// Waits until the ministry holds `executed` for all `n` targets.
async fn wait_done(
    client: &mut OperatorClient<Channel>,
    id: &str,
    n: usize,
    poll: Duration,
) -> anyhow::Result<Done> {
    let started = Instant::now();
    // Counts are keyed by the names the node gives states.
    let count = |s: &isms_proto::v1::DirectiveSummary, state: TargetState| {
        let name = isms_domain::directive::state_name(state);
        s.counts.get(name).copied().unwrap_or(0) as usize
    };
    loop {
        // The summary, not the view: building, sending and reading 4,991 rows 40 times a
        // second was a quarter of the ministry's CPU in the latency scenario.
        let summary = client
            .get_directive_summary(GetDirectiveRequest { id: id.into() })
            .await?
            .into_inner();
        let executed = count(&summary, TargetState::Executed);
        if executed == n && summary.targets as usize == n {
            return Ok(Done {
                issued_ms: summary.issued_at_ms,
                finished_ms: summary.finished_at_ms,
            });
        }
        if count(&summary, TargetState::Failed) + count(&summary, TargetState::Returned) > 0 {
            let view = client
                .get_directive(GetDirectiveRequest { id: id.into() })
                .await?
                .into_inner();
            if let Some(bad) = view.targets.iter().find(|t| {
                t.state == TargetState::Failed as i32 || t.state == TargetState::Returned as i32
            }) {
                bail!("{id}: {} {}: {}", bad.node, bad.state, bad.detail);
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("{id}: only {executed} of {n} executed after 600s");
        }
        tokio::time::sleep(poll).await;
    }
}

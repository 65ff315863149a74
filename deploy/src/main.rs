//! `isms-devnet`: starts a complete local network (1 ministry, provinces 11, 31 and 44 with
//! two enterprises each, one enterprise under the ministry) on loopback in the background,
//! and stops it again. Everything lives under one directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use isms_deploy::{Network, NodeLayout, Options, Topology};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Parser)]
#[command(
    name = "isms-devnet",
    about = "Run a local ISMS network for development"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate certificates and configs, start every node in the background, wait until
    /// every link is up.
    Up {
        /// Where everything goes (configs, certs, stores, logs, pid files).
        #[arg(long, default_value = "devnet")]
        dir: PathBuf,
        /// Where the node binaries are; default: next to this program.
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The working-day calendar to copy into the network.
        #[arg(long, default_value = "calendar")]
        calendar: PathBuf,
        /// Provinces (codes, comma list) whose operators confirm requirements by hand;
        /// the others auto-confirm.
        #[arg(long, value_delimiter = ',')]
        manual_confirm: Vec<String>,
    },
    /// Stop every node of the network with SIGTERM and wait for them to exit.
    Down {
        #[arg(long, default_value = "devnet")]
        dir: PathBuf,
    },
    /// Revoke a certificate of the network, or take a revocation back (`--undo`): the
    /// development CA's revocation list is written to every node, and running nodes reload
    /// it (refusing the certificate at the handshake and closing its connections).
    Revoke {
        #[arg(long, default_value = "devnet")]
        dir: PathBuf,
        /// A node's certificate, by node ID (`enterprise/e4401`).
        #[arg(long, group = "which")]
        node: Option<String>,
        /// A node's operator certificate (its `admin`), by node ID.
        #[arg(long, group = "which")]
        operator: Option<String>,
        /// Any certificate file of the network.
        #[arg(long, group = "which")]
        cert: Option<PathBuf>,
        /// Take the revocation back.
        #[arg(long)]
        undo: bool,
    },
    /// Issue directives to `all` one at a time on a running network and report the time
    /// from issue to every target `executed` (median, p90, p99).
    Bench {
        #[arg(long, default_value = "devnet")]
        dir: PathBuf,
        /// How many directives.
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
}

fn main() {
    let result = match Args::parse().command {
        Cmd::Up {
            dir,
            bin_dir,
            calendar,
            manual_confirm,
        } => {
            let options = Options {
                calendar,
                manual_confirm,
                role_operators: true,
                four_eyes: true,
                metrics: true,
                console: true,
                ..Options::default()
            };
            up(&dir, bin_dir, &options)
        }
        Cmd::Down { dir } => down(&dir),
        Cmd::Bench { dir, count } => bench(&dir, count),
        Cmd::Revoke {
            dir,
            node,
            operator,
            cert,
            undo,
        } => revoke(&dir, node, operator, cert, undo),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn revoke(
    dir: &Path,
    node: Option<String>,
    operator: Option<String>,
    cert: Option<PathBuf>,
    undo: bool,
) -> anyhow::Result<()> {
    let in_node = |id: &str, file: &str| -> anyhow::Result<PathBuf> {
        let id: isms_domain::identity::NodeId = id
            .parse()
            .map_err(|e| anyhow::anyhow!("--node/--operator {id:?}: {e}"))?;
        Ok(dir.join(isms_deploy::slug(&id)).join(file))
    };
    let cert = match (node, operator, cert) {
        (Some(id), _, _) => in_node(&id, "node.pem")?,
        (_, Some(id), _) => in_node(&id, "operator.pem")?,
        (_, _, Some(path)) => path,
        _ => bail!("name the certificate: --node ID, --operator ID or --cert FILE"),
    };
    println!("{}", isms_deploy::revoke::revoke(dir, &cert, undo)?);
    Ok(())
}

fn read_pid(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok().map(Pid::from_raw)
}

fn alive(pid: Pid) -> bool {
    kill(pid, None).is_ok()
}

/// Pid files below `dir`, one per node directory.
fn pid_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path().join("pid"))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn up(dir: &Path, bin_dir: Option<PathBuf>, options: &Options) -> anyhow::Result<()> {
    if pid_files(dir)
        .iter()
        .any(|p| read_pid(p).is_some_and(alive))
    {
        bail!(
            "a network is already running under {}; stop it first with `isms-devnet down --dir {}`",
            dir.display(),
            dir.display()
        );
    }
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("program has no directory")?
            .to_path_buf(),
    };
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let net = isms_deploy::generate(dir, &Topology::devnet(), options)?;
    let resolver = start_resolver(&net)?;
    for node in &net.nodes {
        start(node, &bin_dir)?;
    }
    wait_until_linked(&net)?;
    print_summary(&net, &bin_dir);
    match resolver {
        Some(u) => {
            println!();
            println!(
                "{RESOLVER_FOR} enforces its blocked domains in a local unbound (127.0.0.1:{}). \
                 Block a name there and ask the resolver:",
                u.port
            );
            let ministry = net
                .node("ministry")
                .map(|n| n.config_path.display().to_string());
            println!(
                "  {}/ministry-node directive issue --config {} --to {RESOLVER_FOR} --block-domain bad.example --wait",
                bin_dir.display(),
                ministry.unwrap_or_default()
            );
            println!(
                "  dig @127.0.0.1 -p {} bad.example      # NXDOMAIN once executed",
                u.port
            );
            println!(
                "  dig @127.0.0.1 -p {} good.example     # still 192.0.2.2",
                u.port
            );
        }
        None => {
            println!();
            println!(
                "unbound is not installed, so every enterprise enforces through its rules file \
                 only. `apt-get install unbound dnsutils` and `./deploy/devnet up` again gives \
                 {RESOLVER_FOR} a real resolver to block names in."
            );
        }
    }
    Ok(())
}

/// The enterprise given a local resolver when unbound is installed.
const RESOLVER_FOR: &str = "enterprise/e1101";

/// Configures and starts (daemonized, its PID in `<dir>/unbound-e1101/pid`, so `down`
/// stops it) an unbound for one enterprise, and adds it to that enterprise's config as an
/// `rpz` point. None when unbound is not installed.
fn start_resolver(
    net: &isms_deploy::Network,
) -> anyhow::Result<Option<isms_deploy::resolver::Unbound>> {
    use isms_deploy::resolver;
    if !resolver::installed() {
        return Ok(None);
    }
    let node = net.node(RESOLVER_FOR).context("the devnet has no e1101")?;
    let u = resolver::configure(
        &net.root.join("unbound-e1101"),
        &node.dir.join("rpz.isms.zone"),
        true,
    )?;
    u.attach(&node.config_path)?;
    let status = Command::new("unbound")
        .arg("-c")
        .arg(&u.conf)
        .status()
        .context("starting unbound")?;
    if !status.success() {
        bail!(
            "unbound did not start: see {}",
            u.dir.join("unbound.log").display()
        );
    }
    Ok(Some(u))
}

fn start(node: &NodeLayout, bin_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let bin = bin_dir.join(node.binary);
    if !bin.is_file() {
        bail!(
            "{} not found; build it first with `cargo build --release --workspace --bins`",
            bin.display()
        );
    }
    let log = std::fs::File::create(node.log_path())?;
    let child = Command::new(&bin)
        .arg("serve")
        .arg("--config")
        .arg(&node.config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in this terminal later does not stop the network.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    std::fs::write(node.pid_path(), format!("{}\n", child.id()))?;
    Ok(())
}

/// Polls the ministry and each province until all their children are linked.
fn wait_until_linked(net: &Network) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let parents: Vec<&NodeLayout> = net
        .nodes
        .iter()
        .filter(|n| !n.config.children.is_empty())
        .collect();
    for parent in parents {
        loop {
            let up = rt.block_on(async {
                let args = isms_cli::ClientArgs {
                    config: parent.config_path.clone(),
                    operator_cert: None,
                    operator_key: None,
                };
                let mut client = isms_cli::connect(&args).await.ok()?;
                let status = client
                    .node_status(isms_proto::v1::NodeStatusRequest {})
                    .await
                    .ok()?
                    .into_inner();
                Some(
                    status
                        .peers
                        .iter()
                        .filter(|p| p.role == "child")
                        .all(|p| p.up),
                )
            });
            if up == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not see all its children linked within 60s; see the logs under {}",
                    parent.id,
                    net.root.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn print_summary(net: &Network, bin_dir: &Path) {
    let cwd = std::env::current_dir().unwrap_or_default();
    let rel = |p: &Path| {
        p.strip_prefix(&cwd)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf())
    };
    println!("Local ISMS network running under {}", net.root.display());
    for n in &net.nodes {
        let pid = read_pid(&n.pid_path()).map_or(0, Pid::as_raw);
        let metrics = n
            .config
            .metrics
            .as_ref()
            .map(|m| format!("  metrics http://{}/metrics", m.listen))
            .unwrap_or_default();
        let console = n
            .config
            .console
            .as_ref()
            .map(|c| format!("  console http://{}", c.listen))
            .unwrap_or_default();
        println!(
            "  {:<24} {:<16} pid {:<7} log {}{metrics}{console}",
            n.id.as_str(),
            n.listen(),
            pid,
            rel(&n.log_path()).display()
        );
    }
    let ministry = net.node("ministry").map(|n| rel(&n.config_path));
    let bin = rel(bin_dir);
    if let Some(cfg) = ministry {
        println!();
        let ops = cfg.with_file_name("operators");
        let cert = |role: &str| {
            let p = ops.join(role);
            format!(
                "--operator-cert {}.pem --operator-key {}.key",
                p.display(),
                p.display()
            )
        };
        let node = format!("{}/ministry-node", bin.display());
        let config = format!("--config {}", cfg.display());
        println!(
            "Each node has one operator per role (its roster.toml): admin (every role; the one its \
             config.toml names), and viewer, operator, approver, auditor under operators/."
        );
        println!();
        println!("Issue a takedown order to one enterprise and follow it:");
        println!(
            "  {node} directive issue {config} --to enterprise/e1101 --block-domain bad.example --wait"
        );
        println!(
            "An order to every enterprise is major (four-eyes, O-6): it waits for a second operator."
        );
        println!("  {node} directive issue {config} --to all --block-domain worse.example --wait");
        println!("and, in another shell, the approver approves it (ID printed by the issue):");
        println!(
            "  {node} directive approve {config} {} ID",
            cert("approver")
        );
        println!("  {node} directive list {config} --state awaiting_approval");
        println!("A viewer may look but not issue; an auditor reads and checks the audit trail:");
        println!("  {node} directive list {config} {}", cert("viewer"));
        println!("  {node} audit verify {config} {}", cert("auditor"));
        println!(
            "The web console, signed in as admin (a one-time link; `metrics` above for Prometheus):"
        );
        println!("  {node} console open {config}");
        println!("Stop the network:");
        println!("  ./deploy/devnet down");
    }
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let pids: Vec<(PathBuf, Pid)> = pid_files(dir)
        .into_iter()
        .filter_map(|p| read_pid(&p).map(|pid| (p, pid)))
        .collect();
    if pids.is_empty() {
        println!("no network under {}", dir.display());
        return Ok(());
    }
    for (_, pid) in &pids {
        // Already gone is fine.
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for (path, pid) in &pids {
        while alive(*pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(*pid) {
            eprintln!("{} did not stop in time; sending SIGKILL", pid);
            let _ = kill(*pid, Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(path);
    }
    println!(
        "stopped {} processes (nodes and a resolver) under {}",
        pids.len(),
        dir.display()
    );
    Ok(())
}

/// Full-acknowledgment latency, one directive at a time, measured at the operator's client:
/// from sending `IssueDirective` until a read shows every target `executed`.
fn bench(dir: &Path, count: usize) -> anyhow::Result<()> {
    use isms_proto::v1::{
        DirectiveKind, GetDirectiveRequest, IssueRequest, Rule, RuleKind, TargetState, Urgency,
    };
    anyhow::ensure!(count > 0, "--count must be at least 1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let args = isms_cli::ClientArgs {
        config: dir.join("ministry").join("config.toml"),
        operator_cert: None,
        operator_key: None,
    };
    let mut samples = rt.block_on(async {
        let mut client = isms_cli::connect(&args).await?;
        let mut samples = Vec::with_capacity(count);
        let run = uuid::Uuid::now_v7().simple().to_string();
        for i in 0..count {
            let request = IssueRequest {
                id: uuid::Uuid::now_v7().to_string(),
                to: vec!["all".into()],
                kind: DirectiveKind::Disposal as i32,
                urgency: Urgency::General as i32,
                rules: vec![Rule {
                    kind: RuleKind::BlockDomain as i32,
                    value: format!("b{i}.r{}.bench.example", &run[..8]).into(),
                    op: 0,
                }],
                ..Default::default()
            };
            let started = Instant::now();
            let id = client.issue_directive(request).await?.into_inner().id;
            loop {
                let view = client
                    .get_directive(GetDirectiveRequest { id: id.clone() })
                    .await?
                    .into_inner();
                let done = view
                    .targets
                    .iter()
                    .all(|t| t.state == TargetState::Executed as i32);
                if done {
                    break;
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "directive {id} not executed everywhere within 30s"
                );
            }
            samples.push(started.elapsed());
        }
        anyhow::Ok(samples)
    })?;
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() - 1) as f64 * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    println!(
        "{count} directives to all targets, one at a time: issue -> all executed\n  min {:.2} ms  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        at(0.0),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

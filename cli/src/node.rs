//! The node's own commands: `serve`, `status` (links, backlogs, active rules) and, for
//! testing, `clock set|advance|show`.

use super::*;
use isms_domain::identity::Tier;

/// `NAME clock …`: writes the clock file the node reads its time from.
#[derive(Debug, clap::Subcommand)]
pub enum ClockCommand {
    /// Set the clock to an RFC 3339 time, e.g. 2026-11-20T15:00:00+08:00.
    Set {
        #[arg(long)]
        config: PathBuf,
        time: String,
    },
    /// Move the clock forward, e.g. `26h`, `3days`.
    Advance {
        #[arg(long)]
        config: PathBuf,
        #[arg(value_parser = humantime::parse_duration)]
        by: Duration,
    },
    /// Print the node's current time.
    Show {
        #[arg(long)]
        config: PathBuf,
    },
}

impl ClockCommand {
    /// Writes the clock file named in the config and prints the time it now holds.
    pub fn run(self) -> anyhow::Result<i32> {
        use isms_domain::clock::{Clock, FileClock, SystemClock};
        let config_path = match &self {
            ClockCommand::Set { config, .. }
            | ClockCommand::Advance { config, .. }
            | ClockCommand::Show { config } => config.clone(),
        };
        let config = Config::load(&config_path)?;
        let file = config.testing.clock_file.context(
            "config field `testing.clock_file` is not set: this node follows the system clock",
        )?;
        let now = FileClock::read(&file)
            .map_err(anyhow::Error::msg)?
            .unwrap_or_else(|| SystemClock.now_ms());
        let new = match self {
            ClockCommand::Set { time, .. } => chrono::DateTime::parse_from_rfc3339(&time)
                .with_context(|| format!("{time:?} is not an RFC 3339 time"))?
                .timestamp_millis(),
            ClockCommand::Advance { by, .. } => {
                now + i64::try_from(by.as_millis()).context("duration too long")?
            }
            ClockCommand::Show { .. } => now,
        };
        FileClock::write(&file, new).map_err(anyhow::Error::msg)?;
        let shown = FileClock::read(&file).map_err(anyhow::Error::msg)?;
        println!(
            "{}",
            std::fs::read_to_string(&file)
                .map_or_else(|_| format!("{shown:?}"), |t| t.trim().to_string())
        );
        Ok(exit::OK)
    }
}

/// `status`: the node's links and backlogs.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeStatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[arg(long)]
    pub json: bool,
}

/// `status`: links (up/down, since when), backlog and oldest message age, and inbox, per peer.
pub async fn node_status(args: NodeStatusArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let s = client
        .node_status(NodeStatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if args.json {
        let peers: Vec<_> = s
            .peers
            .iter()
            .map(|p| {
                json!({
                    "peer": p.peer, "role": p.role, "up": p.up, "since_ms": p.since_ms,
                    "backlog": p.backlog, "oldest_age_ms": p.oldest_age_ms,
                    "inbox": p.inbox,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "node": s.node_id, "started_at_ms": s.started_at_ms,
                "directives": s.directives, "active_rules": s.active_rules,
                "rules_applied_total": s.rules_applied_total, "peers": peers,
                "awaiting_approval": s.awaiting_approval,
                "rules_version": s.rules_version,
                "enforcement_pending": s.enforcement_pending,
                "enforcement_error": s.enforcement_error,
            })
        );
    } else {
        println!(
            "{}: {} directives, {} active rules, {} awaiting approval",
            s.node_id, s.directives, s.active_rules, s.awaiting_approval
        );
        if s.rules_version > 0 {
            let error = if s.enforcement_error.is_empty() {
                String::new()
            } else {
                format!("; last error: {}", s.enforcement_error)
            };
            println!(
                "  rule set version {}, {} directives not yet in force at every point{error}",
                s.rules_version, s.enforcement_pending
            );
        }
        let now = isms_domain::clock::Clock::now_ms(&isms_domain::clock::SystemClock);
        for p in &s.peers {
            let since = if p.since_ms == 0 {
                "never".to_string()
            } else {
                format!(
                    "{} ago",
                    humantime::format_duration(Duration::from_secs(
                        u64::try_from((now - p.since_ms) / 1000).unwrap_or(0)
                    ))
                )
            };
            println!(
                "  {:<24} {:<6} {:<4} since {:<12} backlog {:>6}  oldest {} ms  inbox {}",
                p.peer,
                p.role,
                if p.up { "up" } else { "down" },
                since,
                p.backlog,
                p.oldest_age_ms,
                p.inbox
            );
        }
    }
    Ok(exit::OK)
}

/// Subcommands every binary has.
#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Run the node until SIGTERM or SIGINT.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show this node's links (up/down, since when), backlogs and counts.
    Status(NodeStatusArgs),
    /// Testing only: move the node's clock (needs `[testing] clock_file` in the config).
    #[command(subcommand)]
    Clock(ClockCommand),
    /// The audit trail: list it, verify its hash chain (role `auditor`).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The web console (`[console] listen`): `console open` prints a one-time sign-in link.
    #[command(subcommand)]
    Console(ConsoleCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum ConsoleCommand {
    /// Print a one-time link that signs you in to this node's web console as the operator
    /// of your certificate; it lapses after two minutes.
    Open(ClientArgs),
}

async fn open_console(a: ClientArgs) -> anyhow::Result<i32> {
    let mut client = connect(&a).await?;
    let reply = client
        .open_console(isms_proto::v1::OpenConsoleRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!("{}", reply.url);
    Ok(exit::OK)
}

impl NodeCommand {
    /// Runs the command for `binary` of `tier`; returns the exit code.
    pub fn run(self, binary: &str, tier: Tier) -> i32 {
        match self {
            NodeCommand::Serve { config } => isms_node::node::serve(binary, tier, &config),
            NodeCommand::Status(a) => run_command(node_status(a)),
            NodeCommand::Clock(c) => run_command(async move { c.run() }),
            NodeCommand::Audit(c) => c.run(),
            NodeCommand::Console(ConsoleCommand::Open(a)) => run_command(open_console(a)),
        }
    }
}

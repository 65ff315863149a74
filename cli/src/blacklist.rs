//! The versioned blacklist's commands: at an enterprise `blacklist show` (the lists
//! it holds: version, checksum, rules per kind) and `blacklist verify` (recomputed from the
//! stored rules; a mismatch asks the parent for the whole list); at an issuer `blacklist
//! lag` (its version, and the enterprises whose version is not it).

use super::*;
use isms_domain::blacklist::{hex, short};
use isms_proto::v1::{BlacklistHeld, BlacklistLagRequest, GetBlacklistRequest};

/// `enterprise-node blacklist …`
#[derive(Debug, clap::Subcommand)]
pub enum HeldBlacklistCommand {
    /// The blacklists this enterprise holds, per issuer: version, checksum, rules per kind.
    Show(BlacklistShowArgs),
    /// Recompute each list's checksum from the stored rules and compare; a mismatch asks
    /// the parent for the whole list (exit 2).
    Verify(BlacklistShowArgs),
}

/// `ministry-node blacklist …`, `province-node blacklist …`
#[derive(Debug, clap::Subcommand)]
pub enum IssuedBlacklistCommand {
    /// This node's blacklist version, and the enterprises whose version in force is not it.
    Lag(BlacklistLagArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BlacklistShowArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BlacklistLagArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Every enterprise, not only those that lag.
    #[arg(long)]
    pub all: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl HeldBlacklistCommand {
    pub fn run(self) -> i32 {
        match self {
            HeldBlacklistCommand::Show(a) => run_command(show(a, false)),
            HeldBlacklistCommand::Verify(a) => run_command(show(a, true)),
        }
    }
}

impl IssuedBlacklistCommand {
    pub fn run(self) -> i32 {
        match self {
            IssuedBlacklistCommand::Lag(a) => run_command(lag(a)),
        }
    }
}

fn held_json(l: &BlacklistHeld, verify: bool) -> serde_json::Value {
    let mut v = json!({
        "issuer": l.issuer,
        "version": l.version,
        "sha256": hex(&l.sha256),
        "counts": l.counts,
        "resync_pending": l.resync_pending,
        "held": l.held,
    });
    if verify {
        v["recomputed"] = json!(hex(&l.recomputed));
        v["intact"] = json!(l.intact);
        v["detail"] = json!(l.detail);
    }
    v
}

async fn show(args: BlacklistShowArgs, verify: bool) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let lists = if verify {
        client.verify_blacklist(GetBlacklistRequest {}).await
    } else {
        client.get_blacklist(GetBlacklistRequest {}).await
    }
    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
    .into_inner()
    .blacklists;
    let broken = verify && lists.iter().any(|l| !l.intact);
    if args.json {
        let rows: Vec<_> = lists.iter().map(|l| held_json(l, verify)).collect();
        println!("{}", json!({ "blacklists": rows }));
    } else if lists.is_empty() {
        println!("no blacklist held yet");
    } else {
        println!(
            "{:<16} {:>8} {:<14} {:<40} state",
            "issuer", "version", "sha256", "rules"
        );
        for l in &lists {
            let counts = l
                .counts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut state = Vec::new();
            if verify {
                state.push(if l.intact {
                    "intact".to_string()
                } else {
                    format!("MISMATCH: {}", l.detail)
                });
            }
            if l.resync_pending {
                state.push("resync asked".into());
            }
            if !l.held.is_empty() {
                state.push(format!("held beyond a gap: {:?}", l.held));
            }
            println!(
                "{:<16} {:>8} {:<14} {:<40} {}",
                l.issuer,
                l.version,
                short(&l.sha256),
                if counts.is_empty() {
                    "-".into()
                } else {
                    counts
                },
                state.join("; ")
            );
        }
    }
    Ok(if broken { exit::SOME_FAILED } else { exit::OK })
}

async fn lag(args: BlacklistLagArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let reply = client
        .blacklist_lag(BlacklistLagRequest { all: args.all })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if args.json {
        let rows: Vec<_> = reply
            .rows
            .iter()
            .map(|r| {
                json!({
                    "node": r.node,
                    "version": r.version,
                    "sha256": hex(&r.sha256),
                    "state": r.state,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "version": reply.version,
                "sha256": hex(&reply.sha256),
                "rules": reply.rules,
                "enterprises": reply.enterprises,
                "lagging": reply.lagging,
                "rows": rows,
            })
        );
        return Ok(exit::OK);
    }
    println!(
        "blacklist version {} ({} rules, sha256 {}): {} of {} enterprises lag",
        reply.version,
        reply.rules,
        short(&reply.sha256),
        reply.lagging,
        reply.enterprises
    );
    if !reply.rows.is_empty() {
        println!(
            "{:<28} {:>8} {:<14} state",
            "enterprise", "version", "sha256"
        );
        for r in &reply.rows {
            println!(
                "{:<28} {:>8} {:<14} {}",
                r.node,
                r.version,
                if r.sha256.is_empty() {
                    "-".into()
                } else {
                    short(&r.sha256)
                },
                r.state
            );
        }
    }
    Ok(exit::OK)
}

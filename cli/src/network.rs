//! The central view's commands (O-1): `network status` (the tree below this node with
//! counts per state, the worst first) and `network node ID` (one node's health and its
//! availability history). At a province they show its own subtree.

use super::*;
use isms_domain::liveness::{liveness_name, severity};
use isms_proto::v1::{
    Health, Liveness, NetworkNodeReply, NetworkNodeRequest, NetworkStatusRequest, NodeHealth,
};
use std::collections::BTreeMap;

#[derive(Debug, clap::Subcommand)]
pub enum NetworkCommand {
    /// Every node below this one as its heartbeats say: counts per state, each child with
    /// its own counts, and every node not up (worst first).
    Status(NetworkStatusArgs),
    /// One node's health, availability today and this month, and its history.
    Node(NetworkNodeArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct NetworkStatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only nodes in this state: up, stale, down, unknown, maintenance.
    #[arg(long)]
    pub state: Option<String>,
    /// Only this province's subtree (`44` or `province/44`).
    #[arg(long)]
    pub province: Option<String>,
    /// Print one JSON object instead of the tree.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct NetworkNodeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The node: `province/44`, `enterprise/e4401`, …
    pub node: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl NetworkCommand {
    pub fn run(self) -> i32 {
        match self {
            NetworkCommand::Status(a) => run_command(status_of_network(a)),
            NetworkCommand::Node(a) => run_command(node_of_network(a)),
        }
    }
}

fn liveness(n: &NodeHealth) -> Liveness {
    Liveness::try_from(n.liveness).unwrap_or(Liveness::Unspecified)
}

fn health_json(h: &Health) -> serde_json::Value {
    json!({
        "version": h.version,
        "started_at_ms": h.started_at_ms,
        "links": h.links.iter().map(|l| json!({
            "peer": l.peer, "up": l.up, "backlog": l.backlog, "oldest_age_ms": l.oldest_age_ms,
        })).collect::<Vec<_>>(),
        "links_total": h.links_total,
        "links_up": h.links_up,
        "store_bytes": h.store_bytes,
        "disk_free_bytes": h.disk_free_bytes,
        "disk_total_bytes": h.disk_total_bytes,
        "rules_version": h.rules_version,
        "rules_sha256": isms_domain::blacklist::hex(&h.rules_sha256),
        "enforcement_pending": h.enforcement_pending,
        "enforcement_error": h.enforcement_error,
        "enforcement_failing_since_ms": h.enforcement_failing_since_ms,
        "clock_offset_ms": h.clock_offset_ms,
        "interval_ms": h.interval_ms,
    })
}

fn node_json(n: &NodeHealth) -> serde_json::Value {
    json!({
        "node": n.node,
        "parent": n.parent,
        "state": liveness_name(liveness(n)),
        "since_ms": n.since_ms,
        "heard_at_ms": n.heard_at_ms,
        "health": n.health.as_ref().map(health_json),
    })
}

/// Counts per state, worst first, as `down 1, up 160`.
fn tally<'a>(
    nodes: impl Iterator<Item = &'a NodeHealth>,
) -> (BTreeMap<(u8, &'static str), u64>, String) {
    let mut counts: BTreeMap<(u8, &'static str), u64> = BTreeMap::new();
    for n in nodes {
        let l = liveness(n);
        *counts.entry((severity(l), liveness_name(l))).or_default() += 1;
    }
    let text = counts
        .iter()
        .map(|((_, name), n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    (counts, text)
}

async fn status_of_network(args: NetworkStatusArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let reply = client
        .network_status(NetworkStatusRequest {
            state: args.state.clone().unwrap_or_default(),
            province: args.province.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let nodes = reply.nodes;
    if args.json {
        let (counts, _) = tally(nodes.iter());
        let counts: serde_json::Map<String, serde_json::Value> = counts
            .into_iter()
            .map(|((_, name), n)| (name.to_string(), json!(n)))
            .collect();
        println!(
            "{}",
            json!({
                "now_ms": reply.now_ms,
                "interval_ms": reply.interval_ms,
                "counts": counts,
                "nodes": nodes.iter().map(node_json).collect::<Vec<_>>(),
            })
        );
        return Ok(exit::OK);
    }
    let (_, all) = tally(nodes.iter());
    println!("{} nodes: {all}", nodes.len());
    // Each node that has nodes under it, worst first, with their counts.
    let mut parents: Vec<&NodeHealth> = nodes
        .iter()
        .filter(|p| nodes.iter().any(|n| n.parent == p.node))
        .collect();
    parents.sort_by_key(|p| (severity(liveness(p)), p.node.clone()));
    for p in parents {
        let (_, under) = tally(nodes.iter().filter(|n| n.parent == p.node));
        println!(
            "  {:<24} {:<12} since {}  below: {under}",
            p.node,
            liveness_name(liveness(p)),
            format_ms(p.since_ms)
        );
    }
    // Then every node that is not up (or all of them, when a state was asked for).
    let mut listed: Vec<&NodeHealth> = nodes
        .iter()
        .filter(|n| args.state.is_some() || liveness(n) != Liveness::Up)
        .collect();
    listed.sort_by_key(|n| (severity(liveness(n)), n.node.clone()));
    if !listed.is_empty() {
        println!();
    }
    for n in listed {
        let heard = if n.heard_at_ms > 0 {
            format!(
                "  last heard {} ago",
                format_span(reply.now_ms - n.heard_at_ms)
            )
        } else {
            String::new()
        };
        println!(
            "  {:<24} {:<12} since {}{heard}  (under {})",
            n.node,
            liveness_name(liveness(n)),
            format_ms(n.since_ms),
            if n.parent.is_empty() { "-" } else { &n.parent }
        );
    }
    Ok(exit::OK)
}

fn node_reply_json(r: &NetworkNodeReply) -> serde_json::Value {
    json!({
        "node": r.node.as_ref().map(node_json),
        "available_today_permille": r.available_today_permille,
        "available_month_permille": r.available_month_permille,
        "maintenance_month_ms": r.maintenance_month_ms,
        "history": r.history.iter().map(|s| json!({
            "state": liveness_name(Liveness::try_from(s.liveness).unwrap_or_default()),
            "start_ms": s.start_ms,
        })).collect::<Vec<_>>(),
    })
}

fn permille(p: i32) -> String {
    if p < 0 {
        "no history yet".into()
    } else {
        format!("{}.{}%", p / 10, p % 10)
    }
}

async fn node_of_network(args: NetworkNodeArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let r = client
        .network_node(NetworkNodeRequest {
            node: args.node.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if args.json {
        println!("{}", node_reply_json(&r));
        return Ok(exit::OK);
    }
    let n = r.node.clone().unwrap_or_default();
    println!(
        "{}  {} since {}",
        n.node,
        liveness_name(liveness(&n)),
        format_ms(n.since_ms)
    );
    if !n.parent.is_empty() {
        println!("  under {}", n.parent);
    }
    if n.heard_at_ms > 0 {
        println!("  last heard {}", format_ms(n.heard_at_ms));
    }
    if let Some(h) = &n.health {
        println!(
            "  version {}, started {}, clock offset {} ms",
            h.version,
            format_ms(h.started_at_ms),
            h.clock_offset_ms
        );
        println!(
            "  store {} MiB, disk free {} of {} MiB",
            h.store_bytes >> 20,
            h.disk_free_bytes >> 20,
            h.disk_total_bytes >> 20
        );
        println!("  links up: {} of {}", h.links_up, h.links_total);
        for l in &h.links {
            println!(
                "  link {:<24} {}  backlog {} (oldest {} ms)",
                l.peer,
                if l.up { "up  " } else { "DOWN" },
                l.backlog,
                l.oldest_age_ms
            );
        }
        if h.rules_version > 0 || !h.rules_sha256.is_empty() {
            println!(
                "  rule set version {} (sha256 {}), {} not yet in force{}",
                h.rules_version,
                isms_domain::blacklist::short(&h.rules_sha256),
                h.enforcement_pending,
                if h.enforcement_error.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", FAILING since {}: {}",
                        format_ms(h.enforcement_failing_since_ms),
                        h.enforcement_error
                    )
                }
            );
        }
    }
    println!(
        "  available today {}, this month {} (maintenance {})",
        permille(r.available_today_permille),
        permille(r.available_month_permille),
        format_span(r.maintenance_month_ms)
    );
    for s in r.history.iter().rev().take(20) {
        println!(
            "    {}  {}",
            format_ms(s.start_ms),
            liveness_name(Liveness::try_from(s.liveness).unwrap_or_default())
        );
    }
    Ok(exit::OK)
}

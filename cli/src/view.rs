//! Looking at directives: `directive status`, `watch` and `list`, as tables or JSON.

use super::*;
use isms_domain::four_eyes::approval_state_name;
use isms_proto::v1::{Approval, ApprovalState};

/// `directive status` and `directive list`, at every node that holds directives.
#[derive(Debug, clap::Subcommand)]
pub enum DirectiveQuery {
    /// Show one directive's state per target.
    Status(StatusArgs),
    /// Follow one directive live: a line per change, until every target is final.
    Watch(WatchArgs),
    /// List directives, newest first.
    List(ListArgs),
}

impl DirectiveQuery {
    pub fn run(self) -> i32 {
        match self {
            DirectiveQuery::Status(a) => run_command(status(a)),
            DirectiveQuery::Watch(a) => run_command(watch(a)),
            DirectiveQuery::List(a) => run_command(list(a)),
        }
    }
}

/// `directive status ID`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The directive ID.
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

/// `directive watch ID`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The directive ID.
    pub id: String,
    /// Stop after this long even if targets are still open, e.g. `10m`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// One JSON object per change instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `directive list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Most directives to show, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only directives with a target or relay in this state (`received`, `returned`, …),
    /// or `overdue` for those whose clock ran out.
    #[arg(long)]
    pub state: Option<String>,
    /// Only directives of this kind (`disposal`, `monitoring`, `drill`, `revocation`, …).
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn get(
    client: &mut OperatorClient<Channel>,
    id: &str,
) -> anyhow::Result<DirectiveView> {
    let r = client
        .get_directive(GetDirectiveRequest { id: id.to_string() })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(r.into_inner())
}

/// Polls the directive's summary until every target is final or `timeout` passes, with a
/// progress bar on stderr; then reads the whole view once.
pub(super) async fn follow(
    client: &mut OperatorClient<Channel>,
    id: &str,
    timeout: Duration,
    progress: bool,
) -> anyhow::Result<(DirectiveView, bool)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = POLL_FIRST;
    let mut told = false;
    let bar = if progress {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} final  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let summary = client
            .get_directive_summary(GetDirectiveRequest { id: id.to_string() })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        let approval = summary.approval.as_ref().map(|a| a.state());
        if approval == Some(ApprovalState::Awaiting) {
            let expires = summary.approval.as_ref().map_or(0, |a| a.expires_at_ms);
            let because = summary
                .approval
                .as_ref()
                .map_or_else(String::new, |a| a.major_because.join(", "));
            if progress && !told {
                // Once, in plain text: a progress bar is not drawn where stderr is no
                // terminal.
                bar.suspend(|| {
                    eprintln!(
                        "directive {id} is major ({because}): waiting for approval by a second \
                         operator (expires {})",
                        format_ms(expires)
                    );
                });
                told = true;
            }
            bar.set_message("waiting for approval");
            bar.tick();
            if tokio::time::Instant::now() >= deadline {
                bar.finish_and_clear();
                return Ok((get(client, id).await?, false));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
            continue;
        }
        if matches!(
            approval,
            Some(ApprovalState::Rejected | ApprovalState::Expired)
        ) {
            bar.finish_and_clear();
            return Ok((get(client, id).await?, false));
        }
        bar.set_length(u64::from(summary.targets));
        bar.set_position(u64::from(summary.finished));
        bar.set_message(
            summary
                .counts
                .iter()
                .collect::<std::collections::BTreeMap<_, _>>()
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("  "),
        );
        let done = summary.finished == summary.targets;
        if done || tokio::time::Instant::now() >= deadline {
            bar.finish_and_clear();
            let view = get(client, id).await?;
            // A target may have finished between the two reads; the view decides.
            let done = view
                .targets
                .iter()
                .all(|t| is_final(TargetState::try_from(t.state).unwrap_or_default()));
            return Ok((view, done));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// How often `--wait` asks: quickly at first, then at most every second, since each call
/// is a record in the node's audit trail.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(1);

pub(super) fn target_json(t: &TargetView) -> serde_json::Value {
    let result = t.result.as_ref().map(|r| {
        json!({
            "matched": r.matched,
            "truncated": r.truncated,
            "source": r.source,
            "records": r.records.iter().map(|x| json!({
                "at_ms": x.at_ms, "src": x.src, "src_port": x.src_port, "dst": x.dst,
                "dst_port": x.dst_port, "protocol": x.protocol, "url": x.url,
            })).collect::<Vec<_>>(),
        })
    });
    let hits = t.hits.as_ref().map(|h| {
        json!({
            "total": h.total,
            "last_at_ms": h.last_at_ms,
            "samples": h.samples.iter().map(|x| json!({
                "at_ms": x.at_ms, "src": x.src, "dst": x.dst, "url": x.url,
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "result": result,
        "hits": hits,
        "deadline_ms": t.deadline_ms,
        "overdue_at_ms": t.overdue_at_ms,
        "node": t.node,
        "state": state_name(TargetState::try_from(t.state).unwrap_or_default()),
        "updated_at_ms": t.updated_at_ms,
        "detail": t.detail,
        "queued_at_ms": t.queued_at_ms,
        "delivered_at_ms": t.delivered_at_ms,
        "acknowledged_at_ms": t.acknowledged_at_ms,
        "finished_at_ms": t.finished_at_ms,
        "result_signature": t.result_signature,
    })
}

/// The JSON shape of a directive's status: `{"id", "targets": [...], "hops": [...], "counts"}`.
pub fn view_json(view: &DirectiveView) -> serde_json::Value {
    let d = view.directive.clone().unwrap_or_default();
    json!({
        "id": d.id,
        "issuer": d.issuer,
        "operator": d.operator,
        "urgency": urgency_name(d.urgency),
        "issued_at_ms": d.issued_at_ms,
        "kind": directive::kind_name(d.kind),
        "revokes": d.revokes,
        "effective_at_ms": d.effective_at_ms,
        "expires_at_ms": d.expires_at_ms,
        "blacklist": d.blacklist.as_ref().map(|b| json!({
            "from_version": b.from_version,
            "to_version": b.to_version,
            "sha256": isms_domain::blacklist::hex(&b.sha256),
        })),
        "correction": d.correction.as_ref().map(|c| json!({
            "subject": c.subject, "reason_code": c.reason_code, "detail": c.detail,
        })),
        "query": d.query.as_ref().map(|q| json!({ "from_ms": q.from_ms, "until_ms": q.until_ms })),
        "rules": d.rules.iter().map(|r| json!({
            "kind": directive::rule_kind_name(r.kind),
            "op": if r.op == RuleOp::Delete as i32 { "delete" } else { "add" },
            "value": directive::rule_text(r),
        })).collect::<Vec<_>>(),
        "targets": view.targets.iter().map(target_json).collect::<Vec<_>>(),
        "hops": view.hops.iter().map(target_json).collect::<Vec<_>>(),
        "counts": counts(&view.targets),
        "hits": view.targets.iter().filter_map(|t| t.hits.as_ref()).map(|h| h.total).sum::<u64>(),
        "approval": view.approval.as_ref().map(approval_json),
    })
}

/// A major directive's four-eyes record (O-6) as JSON.
pub(super) fn approval_json(a: &Approval) -> serde_json::Value {
    json!({
        "state": approval_state_name(a.state()),
        "major_because": a.major_because,
        "requested_by": a.requested_by,
        "requested_at_ms": a.requested_at_ms,
        "expires_at_ms": a.expires_at_ms,
        "decided_by": a.decided_by,
        "decided_at_ms": a.decided_at_ms,
        "reason": a.reason,
    })
}

/// A major directive's four-eyes record in one line.
pub(super) fn approval_line(a: &Approval) -> String {
    let because = a.major_because.join(", ");
    match a.state() {
        ApprovalState::Awaiting => format!(
            "AWAITING APPROVAL (major: {because}); requested by {}, expires {}",
            a.requested_by,
            format_ms(a.expires_at_ms)
        ),
        ApprovalState::Approved => format!(
            "approved by {} at {} (major: {because}; issued by {})",
            a.decided_by,
            format_ms(a.decided_at_ms),
            a.requested_by
        ),
        ApprovalState::Rejected => format!(
            "REJECTED by {} at {}: {}; never sent",
            a.decided_by,
            format_ms(a.decided_at_ms),
            a.reason
        ),
        ApprovalState::Expired => format!(
            "EXPIRED unapproved at {}; never sent",
            format_ms(a.expires_at_ms)
        ),
        ApprovalState::Unspecified => "approval state unknown".to_string(),
    }
}

pub(super) fn print_view(view: &DirectiveView) {
    let state_of = |t: &TargetView| TargetState::try_from(t.state).unwrap_or_default();
    let clock = |t: &TargetView| {
        if t.overdue_at_ms != 0 {
            format!("  OVERDUE since {}", format_ms(t.overdue_at_ms))
        } else if t.deadline_ms != 0
            && directive::state_rank(state_of(t)) < directive::state_rank(TargetState::Confirmed)
        {
            format!("  due {}", format_ms(t.deadline_ms))
        } else {
            String::new()
        }
    };
    let detail = |t: &TargetView| {
        if t.detail.is_empty() {
            String::new()
        } else {
            format!("  {}", t.detail)
        }
    };
    if let Some(b) = view.directive.as_ref().and_then(|d| d.blacklist.as_ref()) {
        println!(
            "  blacklist version {} → {} (sha256 {})",
            b.from_version,
            b.to_version,
            isms_domain::blacklist::short(&b.sha256)
        );
    }
    for t in &view.hops {
        let name = state_name(state_of(t));
        println!(
            "  {:<28} {name:<13} (relay){}{}",
            t.node,
            detail(t),
            clock(t)
        );
    }
    for t in &view.targets {
        let name = state_name(state_of(t));
        println!("  {:<28} {name:<13}{}{}", t.node, detail(t), clock(t));
        // Only what needs a look: a verified result is counted below.
        if !t.result_signature.is_empty() && t.result_signature != "verified" {
            println!("      result signature: {}", t.result_signature);
        }
        if let Some(h) = &t.hits {
            println!(
                "      monitoring hits: {} (last {})",
                h.total,
                format_ms(h.last_at_ms)
            );
        }
        if let Some(r) = &t.result {
            for x in &r.records {
                println!(
                    "      {}  {}:{} -> {}:{} {} {}",
                    format_ms(x.at_ms),
                    x.src,
                    x.src_port,
                    x.dst,
                    x.dst_port,
                    x.protocol,
                    x.url
                );
            }
            if r.truncated {
                println!(
                    "      … {} more (raise --limit)",
                    r.matched - r.records.len() as u64
                );
            }
        }
    }
    let hits: u64 = view
        .targets
        .iter()
        .filter_map(|t| t.hits.as_ref())
        .map(|h| h.total)
        .sum();
    if view.targets.iter().any(|t| t.hits.is_some()) {
        println!("  monitoring hits in total: {hits}");
    }
    let signatures = |f: fn(&str) -> bool| {
        view.targets
            .iter()
            .filter(|t| f(&t.result_signature))
            .count()
    };
    let verified = signatures(|s| s.starts_with("verified"));
    let unverifiable = signatures(|s| s.starts_with("unverifiable"));
    let unsigned = signatures(|s| s.starts_with("unsigned"));
    if verified + unverifiable + unsigned > 0 {
        println!(
            "  signed results: {verified} verified, {unverifiable} unverifiable, {unsigned} unsigned"
        );
    }
    let c = counts(&view.targets);
    let summary: Vec<String> = STATE_NAMES
        .iter()
        .filter_map(|s| c.get(*s).map(|n| format!("{s}: {n}")))
        .collect();
    println!("  {}", summary.join("  "));
}

/// `directive status ID`.
pub async fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let view = get(&mut client, &args.id).await?;
    if args.json {
        println!("{}", view_json(&view));
    } else {
        let d = view.directive.clone().unwrap_or_default();
        println!(
            "directive {}  issued by {} ({})  {} rules",
            d.id,
            d.issuer,
            d.operator,
            d.rules.len()
        );
        if let Some(a) = &view.approval {
            println!("  {}", approval_line(a));
        }
        print_view(&view);
    }
    Ok(exit::OK)
}

/// `directive watch`: prints every change of a target's or relay's state (and clock) as it
/// happens; exits like `issue --wait`.
pub async fn watch(args: WatchArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut seen: std::collections::HashMap<String, (i32, String, i64)> = Default::default();
    let mut approval_seen = None;
    let mut pause = POLL_FIRST;
    loop {
        let view = get(&mut client, &args.id).await?;
        if let Some(a) = &view.approval
            && approval_seen != Some(a.state)
        {
            approval_seen = Some(a.state);
            pause = POLL_FIRST;
            if args.json {
                println!("{}", json!({ "approval": approval_json(a) }));
            } else {
                println!("{}", approval_line(a));
            }
        }
        let awaiting = view
            .approval
            .as_ref()
            .is_some_and(|a| a.state() == ApprovalState::Awaiting);
        for t in view.hops.iter().chain(view.targets.iter()) {
            let now = (t.state, t.detail.clone(), t.overdue_at_ms);
            if seen.get(&t.node) == Some(&now) {
                continue;
            }
            seen.insert(t.node.clone(), now);
            pause = POLL_FIRST;
            let state = state_name(TargetState::try_from(t.state).unwrap_or_default());
            if args.json {
                println!("{}", target_json(t));
            } else {
                let overdue = if t.overdue_at_ms != 0 {
                    "  OVERDUE"
                } else {
                    ""
                };
                let detail = if t.detail.is_empty() {
                    String::new()
                } else {
                    format!("  {}", t.detail)
                };
                println!(
                    "{}  {:<28} {state}{detail}{overdue}",
                    format_ms(t.updated_at_ms),
                    t.node
                );
            }
        }
        let done = !awaiting
            && view
                .targets
                .iter()
                .all(|t| is_final(TargetState::try_from(t.state).unwrap_or_default()));
        if done || tokio::time::Instant::now() >= deadline {
            return Ok(outcome(&view, done));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// `directive list`.
pub async fn list(args: ListArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let list = client
        .list_directives(ListDirectivesRequest {
            limit: args.limit,
            state: args.state.clone().unwrap_or_default(),
            kind: args.kind.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if args.json {
        let items: Vec<_> = list
            .directives
            .iter()
            .map(|d| {
                json!({
                    "id": d.id, "issuer": d.issuer, "issued_at_ms": d.issued_at_ms,
                    "kind": directive::kind_name(d.kind),
                    "rules": d.rules, "targets": d.targets, "counts": d.counts,
                    "overdue": d.overdue,
                    "approval": d.approval.as_ref().map(approval_json),
                    "hits": d.hits,
                })
            })
            .collect();
        println!("{}", json!({ "directives": items }));
    } else {
        for d in &list.directives {
            let mut counts: Vec<_> = d.counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            counts.sort();
            let overdue = if d.overdue > 0 {
                format!("  OVERDUE: {}", d.overdue)
            } else {
                String::new()
            };
            let approval = match &d.approval {
                Some(a) if a.state() != ApprovalState::Approved => {
                    format!("  {}", approval_line(a))
                }
                _ => String::new(),
            };
            println!(
                "{}  {:<12} {:<16} {:>5} rules {:>5} targets  {}{overdue}{approval}",
                d.id,
                d.issuer,
                directive::kind_name(d.kind),
                d.rules,
                d.targets,
                counts.join("  ")
            );
        }
    }
    Ok(exit::OK)
}

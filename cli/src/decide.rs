//! Decisions waiting for an operator: a province's `pending`, `confirm` and `return`
//! an enterprise's data-correction demands and `corrected`.

use super::*;

/// A province's decisions on requirements from the ministry.
#[derive(Debug, clap::Subcommand)]
pub enum DecisionCommand {
    /// Confirm a received requirement: it is forwarded to this province's enterprises at once.
    Confirm(DecideArgs),
    /// Return a received requirement to its issuer, with the reason.
    Return(ReasonArgs),
    /// Requirements waiting for a decision, with the time left on each clock.
    Pending(PendingArgs),
}

impl DecisionCommand {
    pub fn run(self) -> i32 {
        match self {
            DecisionCommand::Confirm(a) => run_command(confirm(a)),
            DecisionCommand::Return(a) => run_command(return_directive(a)),
            DecisionCommand::Pending(a) => run_command(pending(a)),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct DecideArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The directive ID.
    pub id: String,
}

/// A decision that needs its reason: a return or a rejection (O-6).
#[derive(Debug, Clone, clap::Args)]
pub struct ReasonArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The directive ID.
    pub id: String,
    /// Why (mandatory; kept with the decision; a return sends it to the issuer).
    #[arg(long, required = true)]
    pub reason: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PendingArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[arg(long)]
    pub json: bool,
}

/// Which decision a call makes: its RPC on the operator API.
#[derive(Debug, Clone, Copy)]
enum DecisionCall {
    Confirm,
    Return,
    Approve,
    Reject,
}

/// Sends a decision on directive `id`, again while its outcome is unknown: the node
/// answers a decision made again as it was made the same way, and does it once.
async fn decide(
    client_args: &ClientArgs,
    call: DecisionCall,
    id: &str,
    reason: &str,
) -> anyhow::Result<isms_proto::v1::DecisionReply> {
    let id = uuid::Uuid::parse_str(id.trim())
        .map_err(|_| directive::InputError::Id(id.to_string()))?
        .to_string();
    let client = connect(client_args).await?;
    let request = isms_proto::v1::DecisionRequest {
        id: id.clone(),
        reason: reason.to_string(),
    };
    let send = || {
        let mut client = client.clone();
        let request = request.clone();
        async move {
            match call {
                DecisionCall::Confirm => client.confirm_directive(request).await,
                DecisionCall::Return => client.return_directive(request).await,
                DecisionCall::Approve => client.approve_directive(request).await,
                DecisionCall::Reject => client.reject_directive(request).await,
            }
        }
    };
    let what = format!("the decision on directive {id}");
    let how = format!("`directive show {id}` tells whether it was made; deciding again is safe");
    with_retry(&what, &how, send).await
}

pub(super) async fn confirm(args: DecideArgs) -> anyhow::Result<i32> {
    let r = decide(&args.client, DecisionCall::Confirm, &args.id, "").await?;
    println!("{} confirmed: forwarded to {} enterprises", r.id, r.targets);
    Ok(exit::OK)
}

pub(super) async fn return_directive(args: ReasonArgs) -> anyhow::Result<i32> {
    directive::operator_note(&args.reason, "reason", true)?;
    let r = decide(&args.client, DecisionCall::Return, &args.id, &args.reason).await?;
    println!("{} returned for {} enterprises", r.id, r.targets);
    Ok(exit::OK)
}

/// Four-eyes (O-6): a second operator's decision on a major directive issued here.
#[derive(Debug, clap::Subcommand)]
pub enum ApprovalCommand {
    /// Approve a major directive another operator issued here: it leaves at once.
    Approve(DecideArgs),
    /// Reject a major directive awaiting approval: it never leaves this node.
    Reject(ReasonArgs),
}

impl ApprovalCommand {
    pub fn run(self) -> i32 {
        match self {
            ApprovalCommand::Approve(a) => run_command(approve(a)),
            ApprovalCommand::Reject(a) => run_command(reject(a)),
        }
    }
}

async fn approve(args: DecideArgs) -> anyhow::Result<i32> {
    let r = decide(&args.client, DecisionCall::Approve, &args.id, "").await?;
    println!("{} approved: sent to {} targets", r.id, r.targets);
    Ok(exit::OK)
}

async fn reject(args: ReasonArgs) -> anyhow::Result<i32> {
    let reason = directive::operator_note(&args.reason, "reason", false)?;
    if reason.is_empty() {
        anyhow::bail!("{}", directive::InputError::NoRejectReason);
    }
    let r = decide(&args.client, DecisionCall::Reject, &args.id, &reason).await?;
    println!("{} rejected: it never leaves this node", r.id);
    Ok(exit::OK)
}

pub(super) async fn pending(args: PendingArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let list = client
        .list_pending(isms_proto::v1::ListPendingRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if args.json {
        let items: Vec<_> = list
            .directives
            .iter()
            .map(|p| {
                let d = p.directive.clone().unwrap_or_default();
                json!({
                    "id": d.id, "issuer": d.issuer, "urgency": urgency_name(d.urgency),
                    "received_at_ms": p.received_at_ms, "deadline_ms": p.deadline_ms,
                    "time_left_ms": p.time_left_ms, "clock_error": p.clock_error,
                    "targets": d.targets, "rules": d.rules.len(),
                })
            })
            .collect();
        println!("{}", json!({ "pending": items }));
        return Ok(exit::OK);
    }
    if list.directives.is_empty() {
        println!("nothing waits for a decision");
    }
    for p in &list.directives {
        let d = p.directive.clone().unwrap_or_default();
        let left = if p.deadline_ms == 0 {
            format!("no clock: {}", p.clock_error)
        } else if p.time_left_ms >= 0 {
            format!(
                "{} left (due {})",
                format_span(p.time_left_ms),
                format_ms(p.deadline_ms)
            )
        } else {
            format!(
                "OVERDUE by {} (was due {})",
                format_span(p.time_left_ms),
                format_ms(p.deadline_ms)
            )
        };
        println!(
            "{}  from {:<10} {:<9} {:>3} targets {:>5} rules  received {}  {left}",
            d.id,
            d.issuer,
            urgency_name(d.urgency),
            d.targets.len(),
            d.rules.len(),
            format_ms(p.received_at_ms)
        );
    }
    Ok(exit::OK)
}

/// An enterprise's operator on data-correction demands.
#[derive(Debug, clap::Subcommand)]
pub enum CorrectionCommand {
    /// Data-correction demands not yet reported done.
    Corrections(PendingArgs),
    /// Report that the data a demand names is corrected and re-reported.
    Corrected(CorrectedArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CorrectedArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The demand's directive ID.
    pub id: String,
    /// What was done.
    #[arg(long, default_value = "")]
    pub note: String,
}

impl CorrectionCommand {
    pub fn run(self) -> i32 {
        match self {
            CorrectionCommand::Corrections(a) => run_command(corrections(a)),
            CorrectionCommand::Corrected(a) => run_command(corrected(a)),
        }
    }
}

pub(super) async fn corrections(args: PendingArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let list = client
        .list_pending(isms_proto::v1::ListPendingRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let items: Vec<_> = list
        .directives
        .iter()
        .map(|p| {
            let d = p.directive.clone().unwrap_or_default();
            let c = d.correction.clone().unwrap_or_default();
            (d, c, p.received_at_ms)
        })
        .collect();
    if args.json {
        let json_items: Vec<_> = items
            .iter()
            .map(|(d, c, at)| {
                json!({
                    "id": d.id, "issuer": d.issuer, "subject": c.subject,
                    "reason_code": c.reason_code, "detail": c.detail, "received_at_ms": at,
                })
            })
            .collect();
        println!("{}", json!({ "corrections": json_items }));
        return Ok(exit::OK);
    }
    if items.is_empty() {
        println!("no data-correction demand waits");
    }
    for (d, c, at) in items {
        println!(
            "{}  from {:<12} {:<12} {}  received {}  {}",
            d.id,
            d.issuer,
            c.reason_code,
            c.subject,
            format_ms(at),
            c.detail
        );
    }
    Ok(exit::OK)
}

pub(super) async fn corrected(args: CorrectedArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let r = client
        .report_corrected(isms_proto::v1::DecisionRequest {
            id: args.id,
            reason: args.note,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!("{} reported corrected", r.id);
    Ok(exit::OK)
}

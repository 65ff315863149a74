//! Decisions waiting for an operator: a province's `pending`, `confirm` and `return`
//! an enterprise's data-correction demands and `corrected`.

use super::*;

/// A province's decisions on requirements from the ministry.
#[derive(Debug, clap::Subcommand)]
pub enum DecisionCommand {
    /// Confirm a received requirement: it is forwarded to this province's enterprises at once.
    Confirm(DecideArgs),
    /// Return a received requirement to its issuer, with the reason.
    Return(ReturnArgs),
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

#[derive(Debug, Clone, clap::Args)]
pub struct ReturnArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The directive ID.
    pub id: String,
    /// Why it is returned (mandatory, R-8.2).
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

pub(super) async fn confirm(args: DecideArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let r = client
        .confirm_directive(isms_proto::v1::DecisionRequest {
            id: args.id,
            reason: String::new(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!("{} confirmed: forwarded to {} enterprises", r.id, r.targets);
    Ok(exit::OK)
}

pub(super) async fn return_directive(args: ReturnArgs) -> anyhow::Result<i32> {
    if args.reason.trim().is_empty() {
        anyhow::bail!("{}", directive::InputError::NoReason);
    }
    let mut client = connect(&args.client).await?;
    let r = client
        .return_directive(isms_proto::v1::DecisionRequest {
            id: args.id,
            reason: args.reason,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!("{} returned for {} enterprises", r.id, r.targets);
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

//! The audit trail's commands (role `auditor`; ): `audit list`, filtered, as
//! a table or JSON, and `audit verify`, which checks the hash chain in the node's store and
//! names the first bad record.

use super::*;
use isms_proto::v1::{ListAuditRequest, VerifyAuditRequest};

/// `NAME audit …`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// The audit trail, oldest first: who did what, when, with what outcome.
    List(AuditListArgs),
    /// Check the hash chain of the node's audit trail; exit 2 and name the first bad record
    /// if it was altered, removed or moved.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuditListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only records at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Only records before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// Only this operator's records.
    #[arg(long)]
    pub operator: Option<String>,
    /// Only this action (`refused`, `directive.issue`, `roster.reload`, …).
    #[arg(long)]
    pub action: Option<String>,
    /// At most this many records, the newest that match.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    pub json: bool,
}

impl AuditCommand {
    pub fn run(self) -> i32 {
        match self {
            AuditCommand::List(a) => run_command(audit_list(a)),
            AuditCommand::Verify(a) => run_command(audit_verify(a)),
        }
    }
}

async fn audit_list(args: AuditListArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let list = client
        .list_audit(ListAuditRequest {
            since_ms: args.since.unwrap_or(0),
            until_ms: args.until.unwrap_or(0),
            operator: args.operator.unwrap_or_default(),
            action: args.action.unwrap_or_default(),
            limit: args.limit,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if args.json {
        let entries: Vec<_> = list
            .entries
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq, "at_ms": e.at_ms, "operator": e.operator, "action": e.action,
                    "subject": e.subject, "outcome": e.outcome, "prev_hash": e.prev_hash,
                })
            })
            .collect();
        println!("{}", json!({ "entries": entries, "omitted": list.omitted }));
        return Ok(exit::OK);
    }
    for e in &list.entries {
        println!(
            "{:>6}  {}  {:<12} {:<20} {}  {}",
            e.seq,
            format_ms(e.at_ms),
            e.operator,
            e.action,
            e.subject,
            e.outcome
        );
    }
    if list.omitted > 0 {
        eprintln!(
            "{} older records matched; narrow the query or raise --limit",
            list.omitted
        );
    }
    Ok(exit::OK)
}

async fn audit_verify(args: AuditVerifyArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let v = client
        .verify_audit(VerifyAuditRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if args.json {
        println!(
            "{}",
            json!({ "intact": v.intact, "records": v.records, "first_bad": v.first_bad, "why": v.why })
        );
    } else if v.intact {
        println!("audit trail intact: {} records chained", v.records);
    } else {
        println!("audit trail broken at record {}: {}", v.first_bad, v.why);
    }
    Ok(if v.intact {
        exit::OK
    } else {
        exit::SOME_FAILED
    })
}

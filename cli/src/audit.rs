//! The audit trail's commands (role `auditor`; ): `audit list`, filtered, as
//! a table or JSON; `audit export`, the whole chain as JSON lines; and `audit verify`, which
//! checks the hash chain in the node's store, or in an exported file without the node, and
//! names the first bad record.

use super::*;
use std::io::{BufRead, Write};

use isms_domain::audit_chain;
use isms_domain::records;
use isms_proto::record::AuditRecord;
use isms_proto::v1::{AuditEntry, ListAuditRequest, VerifyAuditRequest};

/// `NAME audit …`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// The audit trail, oldest first: who did what, when, with what outcome.
    List(AuditListArgs),
    /// Write the whole audit trail to a file, one JSON object a line, with its chain.
    Export(AuditExportArgs),
    /// Check the hash chain of the node's audit trail (or of an exported file, `--file`);
    /// exit 2 and name the first bad record if one was altered, removed or moved.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuditExportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The file to write (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
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
    /// Check this exported file instead of the node's store (no node is called).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    pub json: bool,
}

impl AuditCommand {
    pub fn run(self) -> i32 {
        match self {
            AuditCommand::List(a) => run_command(audit_list(a)),
            AuditCommand::Export(a) => run_command(audit_export(a)),
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
            from_seq: 0,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if args.json {
        let entries: Vec<_> = list.entries.iter().map(entry_json).collect();
        println!("{}", json!({ "entries": entries, "omitted": list.omitted }));
        return Ok(exit::OK);
    }
    for e in &list.entries {
        println!(
            "{:>6}  {}  {:<12} {:<20} {}  {}  {}",
            e.seq,
            format_ms(e.at_ms),
            e.operator,
            e.action,
            e.subject,
            e.outcome,
            if e.peer.is_empty() { "-" } else { &e.peer }
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

/// Records asked for per page of an export.
const EXPORT_PAGE: u32 = 5_000;

fn entry_json(e: &AuditEntry) -> serde_json::Value {
    json!({
        "seq": e.seq, "at_ms": e.at_ms, "operator": e.operator, "action": e.action,
        "subject": e.subject, "outcome": e.outcome, "prev_hash": e.prev_hash,
        "peer": e.peer, "args_digest": e.args_digest,
    })
}

async fn audit_export(args: AuditExportArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut next = 1;
    let mut written = 0u64;
    loop {
        let page = client
            .list_audit(ListAuditRequest {
                from_seq: next,
                limit: EXPORT_PAGE,
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        let Some(last) = page.entries.last().map(|e| e.seq) else {
            break;
        };
        for e in &page.entries {
            writeln!(out, "{}", entry_json(e))?;
        }
        written += page.entries.len() as u64;
        next = last + 1;
        // Each page's call is itself audited, after it: a short page is the end, or the
        // export would chase its own records.
        if page.entries.len() < EXPORT_PAGE as usize {
            break;
        }
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    eprintln!("{written} audit records written to {}", args.out.display());
    Ok(exit::OK)
}

/// The stored bytes of each record of an exported file, as the chain hashed them, with
/// the line each came from.
fn exported_records(path: &std::path::Path) -> anyhow::Result<Vec<audit_chain::Found>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut found = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line?;
        let record = (|| -> Result<Vec<u8>, String> {
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            let text = |k: &str| v[k].as_str().map(str::to_string).ok_or(format!("no {k}"));
            let bytes = |k: &str| -> Result<Vec<u8>, String> {
                // Files exported before calls were digested have neither field.
                let hex = v[k].as_str().unwrap_or_default();
                (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|b| u8::from_str_radix(b, 16).ok())
                    })
                    .collect::<Option<Vec<u8>>>()
                    .ok_or(format!("{k} is not hex"))
            };
            text("prev_hash")?;
            let rec = AuditRecord {
                seq: v["seq"].as_u64().ok_or("no seq")?,
                at_ms: v["at_ms"].as_i64().ok_or("no at_ms")?,
                operator: text("operator")?,
                action: text("action")?,
                subject: text("subject")?,
                outcome: text("outcome")?,
                prev_hash: bytes("prev_hash")?,
                peer: v["peer"].as_str().unwrap_or_default().to_string(),
                args_digest: bytes("args_digest")?,
            };
            Ok(records::encode(&rec))
        })()
        .map(|bytes| (line_no, bytes))
        .map_err(|why| format!("line {line_no} is not an audit record: {why}"));
        found.push(record);
    }
    Ok(found)
}

async fn audit_verify(args: AuditVerifyArgs) -> anyhow::Result<i32> {
    let v = match &args.file {
        Some(path) => match audit_chain::verify(exported_records(path)?) {
            Ok(records) => isms_proto::v1::AuditVerdict {
                intact: true,
                records,
                ..Default::default()
            },
            Err(b) => isms_proto::v1::AuditVerdict {
                intact: false,
                records: b.seq.saturating_sub(1),
                first_bad: b.seq,
                why: b.why,
            },
        },
        None => {
            let mut client = connect(&args.client).await?;
            client
                .verify_audit(VerifyAuditRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
        }
    };
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

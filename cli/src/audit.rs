//! The audit trail's commands (role `auditor`; ): `audit list`, filtered, as
//! a table or JSON; `audit export`, the whole chain as JSON lines (then the node may prune
//! what it exported once older than the retention); `audit heads`, the signed chain heads a
//! node keeps (its own and its children's); and `audit verify`, which checks the hash chain
//! in the node's store, or in an exported file without the node (against signed heads kept
//! by the parent, `--heads`), and names the first bad record.

use super::*;
use audit_chain::to_hex as hex;
use std::io::{BufRead, Write};

use isms_domain::audit_chain;
use isms_domain::audit_chain::{Anchor, Start};
use isms_domain::identity::NodeId;
use isms_domain::records;
use isms_proto::record::AuditRecord;
use isms_proto::v1::{
    AuditEntry, AuditExportedRequest, AuditHead, ListAuditHeadsRequest, ListAuditRequest,
    VerifyAuditRequest,
};

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
    /// The signed audit-chain heads this node keeps: its own, and at a parent its
    /// children's (proof that a child's trail was not rewritten since).
    Heads(AuditHeadsArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuditHeadsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only this node's heads (`province/44`, or this node's own ID).
    #[arg(long)]
    pub node: Option<String>,
    /// Print one JSON object instead of a table (what `audit verify --heads` reads).
    #[arg(long)]
    pub json: bool,
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
    /// With `--file`: the node's signed heads, as `audit heads --node N --json` printed them
    /// at its parent; the file must reach each with the record it names.
    #[arg(long, requires = "file")]
    pub heads: Option<PathBuf>,
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
            AuditCommand::Heads(a) => run_command(audit_heads(a)),
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
    let mut last_written = None;
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
        if written == 0 && page.entries[0].seq > 1 {
            writeln!(
                out,
                "{}",
                json!({ PRUNED_THROUGH: page.entries[0].seq - 1 })
            )?;
        }
        for e in &page.entries {
            writeln!(out, "{}", entry_json(e))?;
        }
        last_written = page.entries.last().cloned();
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
    // Durable: the node may now prune what it exported once older than its retention.
    if let Some(last) = last_written {
        let hash = hex(&audit_chain::hash(&records::encode(&record_of(&last)?)));
        let marked = client
            .audit_exported(AuditExportedRequest {
                through_seq: last.seq,
                hash,
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        eprintln!(
            "the node counts its trail exported through record {}; records before {} were \
             pruned",
            marked.exported_through,
            marked.pruned_through + 1
        );
    }
    Ok(exit::OK)
}

fn unhex(k: &str, hex: &str) -> Result<Vec<u8>, String> {
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or(format!("{k} is not hex"))
}

/// The record an entry shows, as the node stored it.
fn record_of(e: &AuditEntry) -> anyhow::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: e.seq,
        at_ms: e.at_ms,
        operator: e.operator.clone(),
        action: e.action.clone(),
        subject: e.subject.clone(),
        outcome: e.outcome.clone(),
        prev_hash: unhex("prev_hash", &e.prev_hash).map_err(anyhow::Error::msg)?,
        peer: e.peer.clone(),
        args_digest: unhex("args_digest", &e.args_digest).map_err(anyhow::Error::msg)?,
    })
}

async fn audit_heads(args: AuditHeadsArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let list = client
        .list_audit_heads(ListAuditHeadsRequest {
            node: args.node.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if args.json {
        let heads: Vec<_> = list.heads.iter().map(head_json).collect();
        println!("{}", json!({ "heads": heads }));
        return Ok(exit::OK);
    }
    if list.heads.is_empty() {
        println!("no signed heads kept here yet");
    }
    for h in &list.heads {
        println!(
            "{:<24} record {:>8}  {}  signed {}",
            h.node,
            h.seq,
            hex(&h.hash),
            format_ms(h.at_ms)
        );
    }
    Ok(exit::OK)
}

fn head_json(h: &AuditHead) -> serde_json::Value {
    json!({
        "node": h.node, "seq": h.seq, "hash": hex(&h.hash), "at_ms": h.at_ms,
        "certificate": hex(&h.certificate), "signature": hex(&h.signature),
    })
}

/// The heads of `audit heads --json`, each signature checked: the anchors a file is held to.
fn anchors_from(path: &std::path::Path, trust_domain: &str) -> anyhow::Result<Vec<Anchor>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the JSON of `audit heads --json`", path.display()))?;
    let items = v["heads"]
        .as_array()
        .with_context(|| format!("{}: no \"heads\" list", path.display()))?;
    let mut nodes = std::collections::BTreeSet::new();
    let mut anchors = Vec::new();
    for (i, h) in items.iter().enumerate() {
        let head = (|| -> Result<AuditHead, String> {
            let text = |k: &str| v_str(h, k);
            Ok(AuditHead {
                node: text("node")?,
                seq: h["seq"].as_u64().ok_or("no seq")?,
                hash: unhex("hash", &text("hash")?)?,
                at_ms: h["at_ms"].as_i64().ok_or("no at_ms")?,
                certificate: unhex("certificate", &text("certificate")?)?,
                signature: unhex("signature", &text("signature")?)?,
            })
        })()
        .map_err(|why| anyhow::anyhow!("{}: head {}: {why}", path.display(), i + 1))?;
        let node: NodeId = head
            .node
            .parse()
            .map_err(|_| anyhow::anyhow!("head {}: {:?} is not a node ID", i + 1, head.node))?;
        audit_chain::verify_head(&head, &Identity::Node(node.clone()), trust_domain)
            .map_err(|e| anyhow::anyhow!("head {} (record {}): {e}", i + 1, head.seq))?;
        nodes.insert(node);
        anchors.extend(Anchor::of(&head));
    }
    if nodes.len() > 1 {
        anyhow::bail!(
            "{} holds the heads of {} nodes: pass one node's (`audit heads --node N --json`)",
            path.display(),
            nodes.len()
        );
    }
    Ok(anchors)
}

fn v_str(v: &serde_json::Value, k: &str) -> Result<String, String> {
    v[k].as_str().map(str::to_string).ok_or(format!("no {k}"))
}

/// The stored bytes of each record of an exported file, as the chain hashed them, with
/// the line each came from.
/// A first line `{"pruned_through": N}` says the trail was pruned through record N before
/// the export: its records are numbered from N + 1 (returned with them).
fn exported_records(path: &std::path::Path) -> anyhow::Result<(u64, Vec<audit_chain::Found>)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut found = Vec::new();
    let mut lines = std::io::BufReader::new(file).lines().peekable();
    let mut pruned_through = 0;
    if let Some(Ok(first)) = lines.peek()
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(first)
        && let Some(n) = v.get(PRUNED_THROUGH).and_then(serde_json::Value::as_u64)
    {
        pruned_through = n;
        lines.next();
    }
    for (i, line) in lines.enumerate() {
        let line_no = pruned_through + i as u64 + 1;
        let line = line?;
        let record = (|| -> Result<Vec<u8>, String> {
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            let text = |k: &str| v[k].as_str().map(str::to_string).ok_or(format!("no {k}"));
            // Files exported before calls were digested have neither `peer` nor
            // `args_digest`.
            let bytes = |k: &str| unhex(k, v[k].as_str().unwrap_or_default());
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
    Ok((pruned_through, found))
}

/// The key of an export's first line when the trail was pruned before it.
const PRUNED_THROUGH: &str = "pruned_through";

/// Checks an exported file: from its first record (an export of a pruned trail starts
/// after its first line `{"pruned_through": N}`, linked to the last one pruned), against
/// the signed heads if given.
fn verify_file(
    path: &std::path::Path,
    args: &AuditVerifyArgs,
) -> anyhow::Result<Result<u64, audit_chain::ChainBreak>> {
    let anchors = match &args.heads {
        Some(heads) => {
            let config = Config::load(&args.client.config)?;
            anchors_from(heads, &config.trust_domain)?
        }
        None => Vec::new(),
    };
    let (pruned_through, found) = exported_records(path)?;
    // After a prune the first record's link to the last one pruned is taken as it is:
    // only the signed heads (`--heads`) vouch for what came before.
    let pruned_hash = match found.first() {
        Some(Ok((seq, bytes))) if pruned_through > 0 => {
            records::decode::<AuditRecord>(&records::audit(*seq), bytes)
                .ok()
                .and_then(|r| r.prev_hash.as_slice().try_into().ok())
        }
        _ => None,
    };
    let start = Start {
        pruned_through,
        pruned_hash,
    };
    Ok(audit_chain::verify_anchored(found, start, &anchors))
}

async fn audit_verify(args: AuditVerifyArgs) -> anyhow::Result<i32> {
    let v = match &args.file {
        Some(path) => match verify_file(path, &args)? {
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

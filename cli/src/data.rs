//! Enterprises' data: `data submit --file F` at an enterprise (its basic and
//! active-resource data as JSON, a new version that travels up), `data status` and `data
//! anomalies` at every tier (what each enterprise reported, and what its province's
//! validation found).

use super::*;
use isms_proto::v1::{DataStatus, ListDataRequest, SubmitDataRequest};

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Submit this enterprise's data (JSON or CSV, as `isms_data::submission` says): a new
    /// version, sent up to its province for validation.
    Submit(DataSubmitArgs),
    /// The data held here, per enterprise: version, counts, anomalies, correction demand.
    Status(JsonArgs),
    /// Only the enterprises whose latest data has anomalies.
    Anomalies(JsonArgs),
    /// Order an enterprise below this node to correct and re-report its data,
    /// naming its latest version and, unless `--detail` says otherwise, what its
    /// validation found; within 5 working days.
    Correct(DataCorrectArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DataCorrectArgs {
    /// The enterprise, e.g. enterprise/e4401.
    #[arg(long)]
    pub enterprise: String,
    /// `missing`, `wrong` or `inconsistent`.
    #[arg(long, default_value = "wrong")]
    pub reason: String,
    /// What is wrong, in words; default: the anomalies held for its latest version.
    #[arg(long)]
    pub detail: Option<String>,
    #[command(flatten)]
    pub follow: FollowArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DataSubmitArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The data, as JSON or CSV (the shapes are in `isms_data::submission`).
    #[arg(long)]
    pub file: PathBuf,
}

impl DataCommand {
    pub fn run(self) -> i32 {
        match self {
            DataCommand::Submit(a) => run_command(submit(a)),
            DataCommand::Status(a) => run_command(list(a, false)),
            DataCommand::Anomalies(a) => run_command(list(a, true)),
            DataCommand::Correct(a) => run_command(order_correction(a)),
        }
    }
}

async fn submit(a: DataSubmitArgs) -> anyhow::Result<i32> {
    // Refused before it is read whole: a 1 GB file is not data.
    let size = std::fs::metadata(&a.file)
        .with_context(|| format!("{}", a.file.display()))?
        .len();
    if size > isms_data::submission::MAX_SUBMISSION_BYTES as u64 {
        anyhow::bail!(
            "{}: {size} bytes; at most {} are taken",
            a.file.display(),
            isms_data::submission::MAX_SUBMISSION_BYTES
        );
    }
    let bytes = std::fs::read(&a.file).with_context(|| format!("{}", a.file.display()))?;
    let report = isms_data::parse(&bytes).with_context(|| format!("{}", a.file.display()))?;
    let mut client = connect(&a.client).await?;
    let reply = client
        .submit_data(SubmitDataRequest {
            report: Some(report),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!("{}", reply.version);
    Ok(exit::OK)
}

/// Most characters of findings put in a demand's detail.
const MOST_DETAIL: usize = 1000;

/// `data correct`: a data-correction directive to one enterprise about its latest data.
async fn order_correction(a: DataCorrectArgs) -> anyhow::Result<i32> {
    let mut client = connect(&a.client).await?;
    let held = client
        .list_data(ListDataRequest {
            anomalies_only: false,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .enterprises;
    let status = held
        .iter()
        .find(|s| s.enterprise == a.enterprise)
        .with_context(|| format!("no data of {} is held here", a.enterprise))?;
    let detail = a.detail.clone().unwrap_or_else(|| {
        let found: Vec<String> = status
            .anomalies
            .iter()
            .map(|an| format!("{}: {}: {}", an.rule, an.subject, an.detail))
            .collect();
        let text = if found.is_empty() {
            "ordered by the authority (R-5.3)".to_string()
        } else {
            found.join("; ")
        };
        text.chars().take(MOST_DETAIL).collect()
    });
    drop(client);
    crate::issue::correct(CorrectArgs {
        client: a.client,
        to: vec![a.enterprise.clone()],
        subject: format!("data version {}", status.version),
        reason: a.reason,
        detail,
        urgency: UrgencyArg::General,
        follow: a.follow,
    })
    .await
}

fn status_json(s: &DataStatus) -> serde_json::Value {
    json!({
        "enterprise": s.enterprise, "version": s.version,
        "submitted_at_ms": s.submitted_at_ms, "validated_at_ms": s.validated_at_ms,
        "houses": s.houses, "customers": s.customers, "domains": s.domains,
        "anomalies": s.anomalies.iter().map(|a| json!({
            "rule": a.rule, "subject": a.subject, "detail": a.detail,
        })).collect::<Vec<_>>(),
        "correction_id": s.correction_id, "correction_open": s.correction_open,
        "correction_version": s.correction_version,
    })
}

async fn list(a: JsonArgs, anomalies_only: bool) -> anyhow::Result<i32> {
    let mut client = connect(&a.client).await?;
    let list = client
        .list_data(ListDataRequest { anomalies_only })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .enterprises;
    if a.json {
        println!(
            "{}",
            json!({ "enterprises": list.iter().map(status_json).collect::<Vec<_>>() })
        );
        return Ok(exit::OK);
    }
    if list.is_empty() {
        println!("no data held");
    }
    for s in &list {
        println!(
            "{:<24} version {:<4} {} houses, {} customers, {} domains  submitted {}{}",
            s.enterprise,
            s.version,
            s.houses,
            s.customers,
            s.domains,
            format_ms(s.submitted_at_ms),
            if s.correction_open {
                format!("  correction {} open", s.correction_id)
            } else {
                String::new()
            }
        );
        for an in &s.anomalies {
            println!("    {:<15} {}: {}", an.rule, an.subject, an.detail);
        }
    }
    Ok(exit::OK)
}

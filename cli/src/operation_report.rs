//! `report monthly --month 2026-11`, `report annual --year 2026` and, at a province,
//! `report assistance --year 2026` (O-5, O-3, R-17.1): the node computes the report over
//! what it holds; this renders it as Markdown, HTML with SVG charts, JSON or CSV.

use super::*;
use isms_proto::v1::OperationReportRequest;
use isms_report::Report;

#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// The monthly operation report (O-5) of a month that has ended.
    Monthly(MonthlyArgs),
    /// The annual operation report (O-5) of a year that has ended.
    Annual(YearArgs),
    /// A province's annual account of the assistance it gave other provinces.
    Assistance(YearArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct MonthlyArgs {
    /// The month, e.g. 2026-11.
    #[arg(long)]
    pub month: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct YearArgs {
    /// The year, e.g. 2026.
    #[arg(long)]
    pub year: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Markdown,
    Html,
    Json,
    Csv,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ReportCommand {
    pub fn run(self) -> i32 {
        let (kind, period, output) = match self {
            ReportCommand::Monthly(a) => ("monthly", a.month, a.output),
            ReportCommand::Annual(a) => ("annual", a.year, a.output),
            ReportCommand::Assistance(a) => ("assistance", a.year, a.output),
        };
        run_command(report(kind, period, output))
    }
}

async fn report(kind: &str, period: String, o: OutputArgs) -> anyhow::Result<i32> {
    let mut client = connect(&o.client).await?;
    let reply = client
        .operation_report(OperationReportRequest {
            kind: kind.to_string(),
            period,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let report: Report = serde_json::from_slice(&reply.report_json)
        .context("the node's report does not read as a report of this version")?;
    let text = match o.format {
        Format::Markdown => isms_report::markdown(&report),
        Format::Html => isms_report::html(&report)?,
        Format::Json => serde_json::to_string_pretty(&report)?,
        Format::Csv => isms_report::csv(&report)?,
    };
    match &o.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("{}", path.display()))?;
        }
        None => print!("{text}"),
    }
    Ok(exit::OK)
}

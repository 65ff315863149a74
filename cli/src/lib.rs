//! The commands of the three binaries. `serve` runs the node (`isms_node::node::serve`); every
//! other command is an operator's: it reads the node's configuration, connects to the node's
//! operator API over mTLS with an operator certificate, and prints a table or JSON.
//! `issue` holds the commands that issue, `view` those that look, `decide` those that answer
//! what waits for an operator, `node` the node's own (`serve`, `status`, `clock`); shared
//! here: connecting, exit codes.
//!
//! Must not reach into a node's store or state: everything goes through the operator API,
//! so a command can do nothing its certificate's operator may not.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use isms_proto::v1::operator_client::OperatorClient;
use isms_proto::v1::{
    DirectiveKind, DirectiveView, GetDirectiveRequest, IssueRequest, ListDirectivesRequest,
    NodeStatusRequest, Rule, RuleKind, RuleOp, TargetState, TargetView, Urgency,
};
use serde_json::json;
use tonic::transport::Channel;

use isms_config::Config;
use isms_domain::directive::{self, STATE_NAMES, is_final, state_name};
use isms_domain::identity::Identity;
use isms_operator::views::counts;
use isms_transport::tls;

mod audit;
mod blacklist;
mod data;
mod decide;
mod docs;
mod issue;
mod network;
mod node;
mod operation_report;
mod reports;
mod view;

pub use audit::{AuditCommand, AuditExportArgs, AuditListArgs, AuditVerifyArgs};
pub use blacklist::{
    BlacklistLagArgs, BlacklistShowArgs, HeldBlacklistCommand, IssuedBlacklistCommand,
};
pub use data::{DataCommand, DataCorrectArgs, DataSubmitArgs};
pub use decide::{
    ApprovalCommand, CorrectedArgs, CorrectionCommand, DecideArgs, DecisionCommand, PendingArgs,
    ReasonArgs,
};
pub use docs::DocsCommand;
pub use issue::{
    CorrectArgs, FollowArgs, IssueArgs, KindArg, OpArg, QueryArgs, RevokeArgs, UrgencyArg, correct,
    issue, issue_request, query, revoke,
};
pub use network::{NetworkCommand, NetworkNodeArgs, NetworkStatusArgs};
pub use node::{ClockCommand, NodeCommand, NodeStatusArgs, node_status};
pub use operation_report::{Format, MonthlyArgs, OutputArgs, ReportCommand, YearArgs};
pub use reports::{ContactCommand, FaultCommand, ReportingCommand, UpgradeCommand};
pub use view::{DirectiveQuery, ListArgs, StatusArgs, WatchArgs, list, status, view_json, watch};

/// A listing's arguments: the node, and JSON instead of a table.
#[derive(Debug, Clone, clap::Args)]
pub struct JsonArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Exit codes of `directive issue --wait`, so scripts can tell outcomes apart.
pub mod exit {
    /// Every target executed.
    pub const OK: i32 = 0;
    /// The command could not run (bad input, node unreachable).
    pub const ERROR: i32 = 1;
    /// Every target is final but some failed.
    pub const SOME_FAILED: i32 = 2;
    /// `--timeout` passed before every target was final (or before a major directive was
    /// approved).
    pub const TIMED_OUT: i32 = 3;
    /// A major directive was rejected, or its approval request expired: it never left the
    /// node (O-6).
    pub const NOT_SENT: i32 = 4;
}

/// A Unix-ms time in China Standard Time.
fn format_ms(ms: i64) -> String {
    use chrono::TimeZone;
    isms_domain::calendar::china()
        .timestamp_millis_opt(ms)
        .single()
        .map_or_else(
            || ms.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S%:z").to_string(),
        )
}

fn format_span(ms: i64) -> String {
    humantime::format_duration(Duration::from_secs(
        u64::try_from(ms.abs() / 1000).unwrap_or(0),
    ))
    .to_string()
}

fn urgency_name(u: i32) -> &'static str {
    match Urgency::try_from(u) {
        Ok(Urgency::Urgent) => "urgent",
        Ok(Urgency::Emergency) => "emergency",
        _ => "general",
    }
}

/// How the CLI reaches its node.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The node's configuration file (for its address, CA and the operator certificate).
    #[arg(long)]
    pub config: PathBuf,
    /// Operator certificate (PEM); default: `operator_client.cert` of the config.
    #[arg(long)]
    pub operator_cert: Option<PathBuf>,
    /// Operator private key (PEM); default: `operator_client.key` of the config.
    #[arg(long)]
    pub operator_key: Option<PathBuf>,
}

fn parse_time(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e}), e.g. 2026-11-23T09:00:00+08:00"))
}

/// Connects to the node named by the configuration as one of its operators.
pub async fn connect(args: &ClientArgs) -> anyhow::Result<OperatorClient<Channel>> {
    tls::install_crypto_provider();
    let config = Config::load(&args.config)?;
    let from_config = config.operator_client.as_ref();
    let cert = args
        .operator_cert
        .clone()
        .or_else(|| from_config.map(|o| o.cert.clone()))
        .context("no operator certificate: pass --operator-cert or set operator_client.cert")?;
    let key = args
        .operator_key
        .clone()
        .or_else(|| from_config.map(|o| o.key.clone()))
        .context("no operator key: pass --operator-key or set operator_client.key")?;
    let paths = tls::TlsPaths {
        ca: &config.tls.ca,
        cert: &cert,
        key: &key,
    };
    let client = tls::client_config(
        &paths,
        Identity::Node(config.node_id.clone()),
        &config.trust_domain,
    )?;
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let channel = tls::channel(&addr.to_string(), client)?;
    Ok(OperatorClient::new(channel).max_decoding_message_size(config.link.max_frame_bytes))
}

/// The exit code of a followed directive: whether it finished, and whether every target
/// executed.
fn outcome(view: &DirectiveView, done: bool) -> i32 {
    let never_sent = view.approval.as_ref().is_some_and(|a| {
        matches!(
            a.state(),
            isms_proto::v1::ApprovalState::Rejected | isms_proto::v1::ApprovalState::Expired
        )
    });
    if never_sent {
        return exit::NOT_SENT;
    }
    if !done {
        return exit::TIMED_OUT;
    }
    let failed = view
        .targets
        .iter()
        .any(|t| t.state == TargetState::Failed as i32);
    if failed { exit::SOME_FAILED } else { exit::OK }
}

/// Attempts of a call whose outcome is unknown, and the first pause between them (it
/// doubles, up to `RETRY_MAX`): about 20 s in all, time for a node to restart.
const RETRIES: u32 = 8;
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(4);

/// Whether a call that failed with `code` may have taken effect all the same: the node may
/// have stored it and lost only its answer.
fn outcome_unknown(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
    )
}

/// Makes a call the node treats as the same when repeated (an issue or decision naming its
/// directive), again while its outcome is unknown, bounded, with backoff. If it gives up,
/// the error says the outcome of `what` is unknown and, in `how_to_tell`, which command
/// tells it.
async fn with_retry<T, F, Fut>(what: &str, how_to_tell: &str, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut pause = RETRY_FIRST;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if outcome_unknown(s.code()) && attempt < RETRIES => {
                eprintln!(
                    "no answer from the node ({}); asking again for {what} (it is done once)",
                    s.message()
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
                attempt += 1;
            }
            Err(s) if outcome_unknown(s.code()) => anyhow::bail!(
                "the outcome of {what} is unknown: the node did not answer ({why}) after \
                 {RETRIES} attempts. {how_to_tell}",
                why = s.message()
            ),
            Err(s) => anyhow::bail!("{}", s.message()),
        }
    }
}

/// Runs a CLI command future on a fresh runtime and turns its outcome into an exit code,
/// printing errors as one clear line.
pub fn run_command<F>(f: F) -> i32
where
    F: std::future::Future<Output = anyhow::Result<i32>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    match rt.block_on(f) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::ERROR
        }
    }
}

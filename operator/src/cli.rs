//! Operator commands of the three binaries: they read the node's configuration, connect to
//! its operator API over mTLS with an operator certificate, and print tables or JSON.

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

use crate::service::counts;
use isms_config::Config;
use isms_domain::directive::{self, STATE_NAMES, is_final, state_name};
use isms_domain::identity::Identity;
use isms_transport::tls;

/// Exit codes of `directive issue --wait`, so scripts can tell outcomes apart.
pub mod exit {
    /// Every target executed.
    pub const OK: i32 = 0;
    /// The command could not run (bad input, node unreachable).
    pub const ERROR: i32 = 1;
    /// Every target is final but some failed.
    pub const SOME_FAILED: i32 = 2;
    /// `--timeout` passed before every target was final.
    pub const TIMED_OUT: i32 = 3;
}

/// `NAME clock …`: writes the clock file the node reads its time from.
#[derive(Debug, clap::Subcommand)]
pub enum ClockCommand {
    /// Set the clock to an RFC 3339 time, e.g. 2026-11-20T15:00:00+08:00.
    Set {
        #[arg(long)]
        config: PathBuf,
        time: String,
    },
    /// Move the clock forward, e.g. `26h`, `3days`.
    Advance {
        #[arg(long)]
        config: PathBuf,
        #[arg(value_parser = humantime::parse_duration)]
        by: Duration,
    },
    /// Print the node's current time.
    Show {
        #[arg(long)]
        config: PathBuf,
    },
}

impl ClockCommand {
    /// Writes the clock file named in the config and prints the time it now holds.
    pub fn run(self) -> anyhow::Result<i32> {
        use isms_domain::clock::{Clock, FileClock, SystemClock};
        let config_path = match &self {
            ClockCommand::Set { config, .. }
            | ClockCommand::Advance { config, .. }
            | ClockCommand::Show { config } => config.clone(),
        };
        let config = Config::load(&config_path)?;
        let file = config.testing.clock_file.context(
            "config field `testing.clock_file` is not set: this node follows the system clock",
        )?;
        let now = FileClock::read(&file)
            .map_err(anyhow::Error::msg)?
            .unwrap_or_else(|| SystemClock.now_ms());
        let new = match self {
            ClockCommand::Set { time, .. } => chrono::DateTime::parse_from_rfc3339(&time)
                .with_context(|| format!("{time:?} is not an RFC 3339 time"))?
                .timestamp_millis(),
            ClockCommand::Advance { by, .. } => {
                now + i64::try_from(by.as_millis()).context("duration too long")?
            }
            ClockCommand::Show { .. } => now,
        };
        FileClock::write(&file, new).map_err(anyhow::Error::msg)?;
        let shown = FileClock::read(&file).map_err(anyhow::Error::msg)?;
        println!(
            "{}",
            std::fs::read_to_string(&file)
                .map_or_else(|_| format!("{shown:?}"), |t| t.trim().to_string())
        );
        Ok(exit::OK)
    }
}

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

async fn confirm(args: DecideArgs) -> anyhow::Result<i32> {
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

async fn return_directive(args: ReturnArgs) -> anyhow::Result<i32> {
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

async fn pending(args: PendingArgs) -> anyhow::Result<i32> {
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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Disposal,
    Monitoring,
    Drill,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OpArg {
    Add,
    Delete,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum UrgencyArg {
    General,
    Urgent,
    Emergency,
}

/// `directive issue`.
#[derive(Debug, Clone, clap::Args)]
pub struct IssueArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Targets: a comma list of `all`, `province/NN`, `enterprise/ID`.
    #[arg(long, required = true, value_delimiter = ',')]
    pub to: Vec<String>,
    /// Block a domain (repeatable).
    #[arg(long = "block-domain", visible_alias = "domain", value_name = "DOMAIN")]
    pub block_domain: Vec<String>,
    /// Block a URL (repeatable).
    #[arg(long = "block-url", visible_alias = "url", value_name = "URL")]
    pub block_url: Vec<String>,
    /// Block an IP address or CIDR prefix (repeatable).
    #[arg(long = "block-ip", visible_alias = "ip", value_name = "IP")]
    pub block_ip: Vec<String>,
    /// Block (or, with `--kind monitoring`, watch for) a keyword (repeatable).
    #[arg(
        long = "block-keyword",
        visible_alias = "keyword",
        value_name = "KEYWORD"
    )]
    pub block_keyword: Vec<String>,
    /// `disposal` blocks what the rules match; `monitoring` observes and reports it;
    /// `drill` exercises the whole chain and is never applied (O-3).
    #[arg(long, value_enum, default_value = "disposal")]
    pub kind: KindArg,
    /// `add` the rules to the active set, or `delete` them from it (blacklist changes).
    #[arg(long, value_enum, default_value = "add")]
    pub op: OpArg,
    #[arg(long, value_enum, default_value = "general")]
    pub urgency: UrgencyArg,
    /// When the rules take effect (RFC 3339, e.g. 2026-11-23T09:00:00+08:00); default: at once.
    #[arg(long, value_parser = parse_time)]
    pub effective_at: Option<i64>,
    /// When the rules lapse (RFC 3339); default: never.
    #[arg(long, value_parser = parse_time)]
    pub expires_at: Option<i64>,
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// How `issue` and `revoke` report.
#[derive(Debug, Clone, clap::Args)]
pub struct FollowArgs {
    /// Follow the directive until every target is final or `--timeout` passes.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits, e.g. `30s`, `5m`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `directive revoke ID`: withdraw a directive issued here; its rules are removed at every
/// enterprise that applied them.
#[derive(Debug, Clone, clap::Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The directive to withdraw.
    pub id: String,
    /// Only these targets (`all`, `province/NN`, `enterprise/ID`); default: every target of
    /// the directive.
    #[arg(long, value_delimiter = ',')]
    pub to: Vec<String>,
    #[command(flatten)]
    pub follow: FollowArgs,
}

fn parse_time(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e}), e.g. 2026-11-23T09:00:00+08:00"))
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

/// `status`: the node's links and backlogs.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeStatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[arg(long)]
    pub json: bool,
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

/// Builds the request from the command line, refusing bad input before anything is sent.
pub fn issue_request(args: &IssueArgs) -> anyhow::Result<IssueRequest> {
    let mut rules = Vec::new();
    for (kind, values) in [
        (RuleKind::BlockDomain, &args.block_domain),
        (RuleKind::BlockUrl, &args.block_url),
        (RuleKind::BlockIp, &args.block_ip),
        (RuleKind::Keyword, &args.block_keyword),
    ] {
        for v in values {
            rules.push(Rule {
                kind: kind as i32,
                value: v.clone().into(),
                op: match args.op {
                    OpArg::Add => RuleOp::Add,
                    OpArg::Delete => RuleOp::Delete,
                } as i32,
            });
        }
    }
    let kind = match args.kind {
        KindArg::Disposal => DirectiveKind::Disposal,
        KindArg::Monitoring => DirectiveKind::Monitoring,
        KindArg::Drill => DirectiveKind::Drill,
    };
    let rules = if kind == DirectiveKind::Drill && rules.is_empty() {
        rules
    } else {
        directive::normalise_rules(&rules)?
    };
    directive::parse_targets(&args.to)?;
    Ok(IssueRequest {
        rules,
        effective_at_ms: args.effective_at.unwrap_or(0),
        expires_at_ms: args.expires_at.unwrap_or(0),
        ..new_request(&args.to, kind, urgency_of(args.urgency))
    })
}

/// A request with a fresh UUIDv7 as the directive ID, so a retried call is idempotent.
fn new_request(to: &[String], kind: DirectiveKind, urgency: Urgency) -> IssueRequest {
    IssueRequest {
        id: uuid::Uuid::now_v7().to_string(),
        to: to.to_vec(),
        kind: kind as i32,
        urgency: urgency as i32,
        ..IssueRequest::default()
    }
}

/// `directive query`: ask enterprises for access-log records; each answers within
/// 2 hours, and the answers come back with their statuses.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Targets: a comma list of `all`, `province/NN`, `enterprise/ID`.
    #[arg(long, required = true, value_delimiter = ',')]
    pub to: Vec<String>,
    /// Start of the time range (RFC 3339, inclusive).
    #[arg(long, value_parser = parse_time)]
    pub from: i64,
    /// End of the time range (RFC 3339, exclusive).
    #[arg(long, value_parser = parse_time)]
    pub until: i64,
    /// Source address or prefix (repeatable).
    #[arg(long)]
    pub src: Vec<String>,
    /// Destination address or prefix (repeatable).
    #[arg(long)]
    pub dst: Vec<String>,
    /// Destination port (repeatable).
    #[arg(long)]
    pub port: Vec<u32>,
    /// Protocol, e.g. `tcp`.
    #[arg(long)]
    pub protocol: Option<String>,
    /// Part of the URL.
    #[arg(long)]
    pub url_contains: Option<String>,
    /// Most records each enterprise returns.
    #[arg(long, default_value_t = isms_domain::access_log::DEFAULT_LIMIT)]
    pub limit: u32,
    #[arg(long, value_enum, default_value = "general")]
    pub urgency: UrgencyArg,
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// `directive correct`: order enterprises to correct and re-report data,
/// within 5 working days.
#[derive(Debug, Clone, clap::Args)]
pub struct CorrectArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Targets: a comma list of `all`, `province/NN`, `enterprise/ID`.
    #[arg(long, required = true, value_delimiter = ',')]
    pub to: Vec<String>,
    /// The data concerned, e.g. a record ID or a domain.
    #[arg(long)]
    pub subject: String,
    /// `missing`, `wrong` or `inconsistent`.
    #[arg(long)]
    pub reason: String,
    /// What is wrong, in words.
    #[arg(long, default_value = "")]
    pub detail: String,
    #[arg(long, value_enum, default_value = "general")]
    pub urgency: UrgencyArg,
    #[command(flatten)]
    pub follow: FollowArgs,
}

fn urgency_of(u: UrgencyArg) -> Urgency {
    match u {
        UrgencyArg::General => Urgency::General,
        UrgencyArg::Urgent => Urgency::Urgent,
        UrgencyArg::Emergency => Urgency::Emergency,
    }
}

/// `directive query`: returns the process exit code.
pub async fn query(args: QueryArgs) -> anyhow::Result<i32> {
    directive::parse_targets(&args.to)?;
    let q = isms_domain::access_log::validate_query(&isms_proto::v1::AccessLogQuery {
        from_ms: args.from,
        until_ms: args.until,
        src: args.src.clone(),
        dst: args.dst.clone(),
        ports: args.port.clone(),
        protocol: args.protocol.clone().unwrap_or_default(),
        url_contains: args.url_contains.clone().unwrap_or_default(),
        limit: args.limit,
    })?;
    let request = IssueRequest {
        query: Some(q),
        ..new_request(
            &args.to,
            DirectiveKind::AccessLogQuery,
            urgency_of(args.urgency),
        )
    };
    issue_and_follow(&args.client, request, &args.follow).await
}

/// `directive correct`: returns the process exit code.
pub async fn correct(args: CorrectArgs) -> anyhow::Result<i32> {
    directive::parse_targets(&args.to)?;
    let c = isms_domain::access_log::validate_correction(&isms_proto::v1::DataCorrection {
        subject: args.subject.clone(),
        reason_code: args.reason.clone(),
        detail: args.detail.clone(),
    })?;
    let request = IssueRequest {
        correction: Some(c),
        ..new_request(
            &args.to,
            DirectiveKind::DataCorrection,
            urgency_of(args.urgency),
        )
    };
    issue_and_follow(&args.client, request, &args.follow).await
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

async fn corrections(args: PendingArgs) -> anyhow::Result<i32> {
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

async fn corrected(args: CorrectedArgs) -> anyhow::Result<i32> {
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

/// `directive issue`: returns the process exit code.
pub async fn issue(args: IssueArgs) -> anyhow::Result<i32> {
    let request = issue_request(&args)?;
    issue_and_follow(&args.client, request, &args.follow).await
}

/// `directive revoke`: returns the process exit code.
pub async fn revoke(args: RevokeArgs) -> anyhow::Result<i32> {
    let revokes = uuid::Uuid::parse_str(&args.id)
        .map_err(|_| directive::InputError::Id(args.id.clone()))?
        .to_string();
    if !args.to.is_empty() {
        directive::parse_targets(&args.to)?;
    }
    let request = IssueRequest {
        revokes,
        ..new_request(&args.to, DirectiveKind::Revocation, Urgency::General)
    };
    issue_and_follow(&args.client, request, &args.follow).await
}

async fn issue_and_follow(
    client_args: &ClientArgs,
    request: IssueRequest,
    args: &FollowArgs,
) -> anyhow::Result<i32> {
    let mut client = connect(client_args).await?;
    // The ID is ours, so a retry after a lost reply cannot issue the directive twice.
    let reply = issue_with_retry(&mut client, request).await?;
    if !args.wait {
        if args.json {
            let view = get(&mut client, &reply.id).await?;
            println!("{}", view_json(&view));
        } else {
            println!("{}", reply.id);
        }
        return Ok(exit::OK);
    }
    if !args.json {
        eprintln!("directive {} issued to {} targets", reply.id, reply.targets);
    }
    let (view, done) = follow(&mut client, &reply.id, args.timeout, !args.json).await?;
    if args.json {
        println!("{}", view_json(&view));
    } else {
        println!("{}", reply.id);
        print_view(&view);
    }
    Ok(outcome(&view, done))
}

async fn issue_with_retry(
    client: &mut OperatorClient<Channel>,
    request: IssueRequest,
) -> anyhow::Result<isms_proto::v1::IssueReply> {
    let mut attempt = 0;
    loop {
        match client.issue_directive(request.clone()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if s.code() == tonic::Code::Unavailable && attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(s) => anyhow::bail!("{}", s.message()),
        }
    }
}

fn outcome(view: &DirectiveView, done: bool) -> i32 {
    if !done {
        return exit::TIMED_OUT;
    }
    let failed = view
        .targets
        .iter()
        .any(|t| t.state == TargetState::Failed as i32);
    if failed { exit::SOME_FAILED } else { exit::OK }
}

async fn get(client: &mut OperatorClient<Channel>, id: &str) -> anyhow::Result<DirectiveView> {
    let r = client
        .get_directive(GetDirectiveRequest { id: id.to_string() })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(r.into_inner())
}

/// Polls the directive's summary until every target is final or `timeout` passes, with a
/// progress bar on stderr; then reads the whole view once.
async fn follow(
    client: &mut OperatorClient<Channel>,
    id: &str,
    timeout: Duration,
    progress: bool,
) -> anyhow::Result<(DirectiveView, bool)> {
    let deadline = tokio::time::Instant::now() + timeout;
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn target_json(t: &TargetView) -> serde_json::Value {
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
    json!({
        "result": result,
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
        "rules": d.rules.iter().map(|r| json!({
            "kind": directive::rule_kind_name(r.kind),
            "op": if r.op == RuleOp::Delete as i32 { "delete" } else { "add" },
            "value": directive::rule_text(r),
        })).collect::<Vec<_>>(),
        "targets": view.targets.iter().map(target_json).collect::<Vec<_>>(),
        "hops": view.hops.iter().map(target_json).collect::<Vec<_>>(),
        "counts": counts(&view.targets),
    })
}

fn print_view(view: &DirectiveView) {
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
    loop {
        let view = get(&mut client, &args.id).await?;
        for t in view.hops.iter().chain(view.targets.iter()) {
            let now = (t.state, t.detail.clone(), t.overdue_at_ms);
            if seen.get(&t.node) == Some(&now) {
                continue;
            }
            seen.insert(t.node.clone(), now);
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
        let done = view
            .targets
            .iter()
            .all(|t| is_final(TargetState::try_from(t.state).unwrap_or_default()));
        if done || tokio::time::Instant::now() >= deadline {
            return Ok(outcome(&view, done));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
            println!(
                "{}  {:<12} {:<16} {:>5} rules {:>5} targets  {}{overdue}",
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

/// `status`: links (up/down, since when), backlog and oldest message age, and inbox, per peer.
pub async fn node_status(args: NodeStatusArgs) -> anyhow::Result<i32> {
    let mut client = connect(&args.client).await?;
    let s = client
        .node_status(NodeStatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if args.json {
        let peers: Vec<_> = s
            .peers
            .iter()
            .map(|p| {
                json!({
                    "peer": p.peer, "role": p.role, "up": p.up, "since_ms": p.since_ms,
                    "backlog": p.backlog, "oldest_age_ms": p.oldest_age_ms,
                    "inbox": p.inbox,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "node": s.node_id, "started_at_ms": s.started_at_ms,
                "directives": s.directives, "active_rules": s.active_rules,
                "rules_applied_total": s.rules_applied_total, "peers": peers,
            })
        );
    } else {
        println!(
            "{}: {} directives, {} active rules",
            s.node_id, s.directives, s.active_rules
        );
        let now = isms_domain::clock::Clock::now_ms(&isms_domain::clock::SystemClock);
        for p in &s.peers {
            let since = if p.since_ms == 0 {
                "never".to_string()
            } else {
                format!(
                    "{} ago",
                    humantime::format_duration(Duration::from_secs(
                        u64::try_from((now - p.since_ms) / 1000).unwrap_or(0)
                    ))
                )
            };
            println!(
                "  {:<24} {:<6} {:<4} since {:<12} backlog {:>6}  oldest {} ms  inbox {}",
                p.peer,
                p.role,
                if p.up { "up" } else { "down" },
                since,
                p.backlog,
                p.oldest_age_ms,
                p.inbox
            );
        }
    }
    Ok(exit::OK)
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

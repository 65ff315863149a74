//! Issuing: `directive issue`, `revoke`, `query` and `correct`, their arguments, and following
//! an issued directive with `--wait` until every target is final.

use super::view::{follow, get, print_view};
use super::*;

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
    /// A blacklist change: the rules join (or, with `--op delete`, leave) this
    /// node's versioned blacklist, which every enterprise of its jurisdiction holds
    /// (`--to all`).
    #[arg(long)]
    pub blacklist: bool,
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
    /// The ID of the directive this command issues (for `revoke`, of the revocation), a
    /// UUID; default: a fresh UUIDv7. Giving the ID of an earlier
    /// call whose outcome is unknown is safe: the node answers with the directive that call
    /// made, and refuses other content under that ID.
    #[arg(long = "id", value_name = "UUID")]
    pub directive_id: Option<String>,
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
    let rules = directive::issue_rules(kind, &rules)?;
    directive::parse_targets(&args.to)?;
    Ok(IssueRequest {
        rules,
        effective_at_ms: args.effective_at.unwrap_or(0),
        expires_at_ms: args.expires_at.unwrap_or(0),
        blacklist: args.blacklist,
        ..new_request(&args.to, kind, urgency_of(args.urgency))
    })
}

/// A request with a fresh UUIDv7 as the directive ID, so a retried call is idempotent.
pub(super) fn new_request(to: &[String], kind: DirectiveKind, urgency: Urgency) -> IssueRequest {
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

pub(super) fn urgency_of(u: UrgencyArg) -> Urgency {
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

pub(super) async fn issue_and_follow(
    client_args: &ClientArgs,
    mut request: IssueRequest,
    args: &FollowArgs,
) -> anyhow::Result<i32> {
    if let Some(id) = &args.directive_id {
        request.id = uuid::Uuid::parse_str(id)
            .map_err(|_| directive::InputError::Id(id.clone()))?
            .to_string();
    }
    let mut client = connect(client_args).await?;
    // The ID is ours, chosen before the first call, so a retry after a lost reply cannot
    // issue the directive twice.
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

/// Issues `request`, retrying with the same ID while the outcome is unknown (the node
/// treats a retry as the same directive). If it gives up, the error names the ID and the
/// command that tells what became of it.
pub(super) async fn issue_with_retry(
    client: &mut OperatorClient<Channel>,
    request: IssueRequest,
) -> anyhow::Result<isms_proto::v1::IssueReply> {
    let id = request.id.clone();
    let call = || {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.issue_directive(request).await }
    };
    with_retry(
        &format!("directive {id}"),
        &format!(
            "`directive status {id}` tells whether it was issued; issuing again with `--id {id}` \
             is safe"
        ),
        call,
    )
    .await
}

//! A node's TOML configuration: every field typed, documented with its default, and
//! validated once at start with an error that names the field.
//!
//! Owns the file's shape and its checks; an enterprise's enforcement points (`enforcement`),
//! the four-eyes and audit-retention settings (`accountability`), the network view
//! (`health`), access logs, the data export and the operators' tools (`tools`) are modules
//! of their own; this file is the one `Config` struct and its validation. Must not act on
//! it: each crate takes the part that concerns it from a loaded `Config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use isms_domain::identity::{NodeId, NodeMap, Tier};

mod access_logs;
mod accountability;
mod data_export;
mod enforcement;
mod health;
mod tools;

pub use access_logs::{AccessLogs, QueryCommand};
pub use accountability::{AuditRetention, FourEyes, MIN_AUDIT_RETENTION_DAYS};
pub use data_export::DataExport;
pub use enforcement::{Enforcement, RULE_KIND_NAMES};
pub use health::Health;
pub use tools::{Console, Metrics};

/// Configuration of one node (`NAME serve --config FILE`). Relative paths are resolved
/// against the directory of the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's ID: `ministry`, `province/NN` or `enterprise/ID`. Required; must match
    /// the URI SAN of `tls.cert`.
    pub node_id: NodeId,
    /// SPIFFE trust domain of the network's certificates. Default `isms.local`.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Address of this node's gRPC server: links from children and the operator API.
    /// Required.
    pub listen: SocketAddr,
    /// Directory of this node's store. Required; created if missing.
    pub data_dir: PathBuf,
    /// This node's certificate, key and the network's CA. Required.
    pub tls: TlsFiles,
    /// The parent this node dials. Required for provinces and enterprises; absent at the
    /// ministry.
    #[serde(default)]
    pub parent: Option<Parent>,
    /// The children allowed to link to this node; any other identity is refused.
    /// Default: none.
    #[serde(default)]
    pub children: Vec<Child>,
    /// Enterprise only, required there: the JSON file the active rule set is written to
    /// (atomically) for the filtering system.
    #[serde(default)]
    pub rules_file: Option<PathBuf>,
    /// Enterprise only: the access log (JSON lines) access-log queries are answered from
    /// . Default: none; queries are answered with no records, saying so.
    #[serde(default)]
    pub access_log: Option<PathBuf>,
    /// Enterprise: keep the access logs as Parquet partitions fed from
    /// `access_log`, which queries are then answered from (`[access_logs]`). Default: none;
    /// queries read the `access_log` file itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_logs: Option<AccessLogs>,
    /// Enterprise, with `[access_logs]`: a Unix socket senders write records to as JSON
    /// lines (the feed's shape); each batch is stored before the node answers `ok N`.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_socket: Option<PathBuf>,
    /// Serve Prometheus metrics (`[metrics] listen`, O-1). Default: none (not served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Serve the web console (`[console] listen`). Default: none (not served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<Console>,
    /// Enterprise: read the data its own systems export (JSON or CSV) on a schedule and
    /// submit each version that differs from the last (`[data_export]`, R-5.1). Default:
    /// none; data is submitted with `data submit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_export: Option<DataExport>,
    /// Enterprise: answer access-log queries with this command against the enterprise's
    /// own store instead of the Parquet partitions (`[access_log_query]`, R-9.2). Default:
    /// none; queries read `[access_logs]`, or the `access_log` feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_query: Option<QueryCommand>,
    /// Ministry and province, required there: the directory of the working-day calendar
    /// (`YYYY.toml` per year) the regulation's clocks run on. Enterprise, optional: its
    /// upgrade notices and contact changes are marked late or on time with it (R-11.2,
    /// ); without it, its province marks them.
    #[serde(default)]
    pub calendar_dir: Option<PathBuf>,
    /// Province only: directive kinds confirmed automatically on receipt, recorded as
    /// auto-confirmed. Default: none; every requirement waits for an operator's
    /// `directive confirm` or `directive return`.
    #[serde(default)]
    pub auto_confirm: Vec<KindName>,
    /// The kernel scheduling policy of the node's threads: `batch` (`SCHED_BATCH`, at the
    /// nice value the node was started with) or `inherit` (keep the policy it was started
    /// with). Default `batch`: a woken thread then does not preempt the running one, and
    /// finds a burst's frames together.
    #[serde(default)]
    pub scheduling: Scheduling,
    /// Link tuning. Defaults suit a national network.
    #[serde(default)]
    pub link: LinkTuning,
    /// Logs and traces.
    #[serde(default)]
    pub telemetry: Telemetry,
    /// The roster: which operator of this node holds which roles (`[operators]`, each name
    /// to a list of `viewer`, `operator`, `approver`, `auditor`, `admin`; ). Reloaded
    /// on SIGHUP and when the file changes; a roster that does not load keeps the one in
    /// force. Default: none, and then every operator call is refused.
    #[serde(default)]
    pub roster: Option<PathBuf>,
    /// Certificate the CLI subcommands present to this node's operator API. Default: none
    /// (then `--operator-cert` and `--operator-key` must be given).
    #[serde(default)]
    pub operator_client: Option<TlsIdentityFiles>,
    /// Enterprise: where its rules in force take effect (`[[enforcement]]`), each point for
    /// the rule kinds it lists. Default: none, and then the rules file (`rules_file`) holds
    /// every kind, as a file for other systems to read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enforcement: Vec<Enforcement>,
    /// Which directives need a second operator's approval before they leave (O-6).
    #[serde(default)]
    pub four_eyes: FourEyes,
    /// The audit trail's retention.
    #[serde(default)]
    pub audit: AuditRetention,
    /// Heartbeats and the network view (O-1, R-10.1).
    #[serde(default)]
    pub health: Health,
    /// Province: the rules its enterprises' data is validated by: `required`
    /// (fields that must not be empty), `overlap`, `filing`, `active_within_ranges`.
    /// Default: every check, the operator's name and licence, houses and their ranges
    /// required.
    #[serde(default)]
    pub data_validation: isms_data::Rules,
    /// Facilities for testing; never set in production.
    #[serde(default)]
    pub testing: Testing,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Testing {
    /// When set, the node's clock stands still at the RFC 3339 time written in this file
    /// (by `NAME clock set` / `NAME clock advance`) instead of following the system clock,
    /// so the regulation's time limits can be tested without waiting. Default: unset.
    pub clock_file: Option<PathBuf>,
    /// When set, the node stores each issued directive and then never answers the call:
    /// the moment a crash loses an answer, held open so a test can kill the node there.
    /// Default: false.
    pub hold_issue_answers: bool,
    /// Testing only, a province: it tampers with each directive it relays that has a rule
    /// whose value starts with `tamper-` (or with its enterprises' results, for
    /// `alter-result`), as a compromised relay would (the trust tests).
    /// Default: unset.
    pub tamper: Option<Tamper>,
}

/// How a testing province tampers with a directive it relays (`testing.tamper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tamper {
    /// Changes the first rule's value, keeping the issuer's signature.
    AlterRule,
    /// Removes the issuer's signature.
    DropSignature,
    /// Removes its own countersignature from another province's assistance request.
    DropCountersignature,
    /// Signs the altered directive with its own key, as if it were the issuer.
    Forge,
    /// Relays the directive untouched, then turns its enterprises' `executed` into
    /// `failed`, keeping each enterprise's signature.
    AlterResult,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM file of the CA certificate(s) trusted for peers and operators.
    pub ca: PathBuf,
    /// PEM certificate chain of this node.
    pub cert: PathBuf,
    /// PEM private key of this node.
    pub key: PathBuf,
    /// PEM file of certificate revocation lists (one or more), reloaded when it changes:
    /// a revoked node's or operator's certificate is refused at the handshake, its open
    /// connections are closed, and its signatures are not taken. Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsIdentityFiles {
    /// PEM certificate of the operator.
    pub cert: PathBuf,
    /// PEM private key of the operator.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parent {
    /// The parent's node ID; its certificate must prove it.
    pub id: NodeId,
    /// `host:port` of the parent's server.
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Child {
    /// The child's node ID.
    pub id: NodeId,
    /// Ministry only, for a province child: the enterprises in its jurisdiction (the
    /// ministry's enterprise directory, R-3.1). Default: none.
    #[serde(default)]
    pub enterprises: Vec<NodeId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkTuning {
    /// Most unacknowledged envelopes in flight per link. Default 8192.
    pub window: u32,
    /// Most envelopes per batch frame. Default 512.
    pub batch: u32,
    /// First reconnect delay; doubles up to `reconnect_max`, with jitter. Default 100ms.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay. Default 5s.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Largest frame accepted, bytes. Default 64 MiB (a 50,000-rule blacklist fits).
    pub max_frame_bytes: usize,
    /// How long an acknowledgment may wait for a batch going the other way to carry it,
    /// before it is sent on its own. Default 1s; 0 sends every acknowledgment at once.
    /// It only lets the sender drop what it holds and is on no directive's path, and a
    /// lone one costs a province nearly as much as a directive copy.
    #[serde(with = "humantime_serde")]
    pub ack_delay: Duration,
    /// Ministry and province: how long a group commit that has only a few events waits,
    /// from its first, for more to share its fsync. Default 5ms; 0 commits at once; at
    /// most 100ms. Reports come back from thousands of enterprises a few at a time, and
    /// each group costs a relay a commit and its parent a status frame and a group of its
    /// own. An enterprise, with one link, never waits.
    #[serde(with = "humantime_serde")]
    pub group_linger: Duration,
}

impl Default for LinkTuning {
    fn default() -> Self {
        LinkTuning {
            window: 8192,
            batch: 512,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            max_frame_bytes: 64 << 20,
            ack_delay: Duration::from_millis(1000),
            group_linger: Duration::from_millis(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// OTLP/gRPC endpoint for traces, e.g. `http://127.0.0.1:4317`. Default: no export.
    pub otlp_endpoint: Option<String>,
    /// `tracing` filter directive. Default `info`.
    pub log_filter: String,
    /// Log line format. Default `text`.
    pub log_format: LogFormat,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            otlp_endpoint: None,
            log_filter: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

/// A directive kind as configuration names it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum KindName {
    Disposal,
    Monitoring,
    AccessLogQuery,
    DataCorrection,
    Drill,
}

impl KindName {
    pub const ALL: [KindName; 5] = [
        KindName::Disposal,
        KindName::Monitoring,
        KindName::AccessLogQuery,
        KindName::DataCorrection,
        KindName::Drill,
    ];

    pub fn kind(self) -> isms_proto::v1::DirectiveKind {
        use isms_proto::v1::DirectiveKind;
        match self {
            KindName::Disposal => DirectiveKind::Disposal,
            KindName::Monitoring => DirectiveKind::Monitoring,
            KindName::AccessLogQuery => DirectiveKind::AccessLogQuery,
            KindName::DataCorrection => DirectiveKind::DataCorrection,
            KindName::Drill => DirectiveKind::Drill,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

fn default_trust_domain() -> String {
    "isms.local".into()
}

/// A configuration that cannot be used, naming the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config field `{field}`: {problem}")]
    Invalid { field: String, problem: String },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// Reads, resolves and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses, resolves (against `path`'s directory) and validates a configuration's text.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate()?;
        Ok(config)
    }

    /// Makes relative paths relative to `base` (the configuration file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.tls.ca);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        if let Some(c) = &mut self.tls.crl {
            fix(c);
        }
        if let Some(r) = &mut self.rules_file {
            fix(r);
        }
        if let Some(c) = &mut self.calendar_dir {
            fix(c);
        }
        if let Some(a) = &mut self.access_logs {
            fix(&mut a.dir);
        }
        if let Some(a) = &mut self.access_log {
            fix(a);
        }
        if let Some(s) = &mut self.access_log_socket {
            fix(s);
        }
        if let Some(d) = &mut self.data_export {
            fix(&mut d.file);
        }
        if let Some(r) = &mut self.roster {
            fix(r);
        }
        if let Some(op) = &mut self.operator_client {
            fix(&mut op.cert);
            fix(&mut op.key);
        }
        if let Some(c) = &mut self.testing.clock_file {
            fix(c);
        }
        for point in &mut self.enforcement {
            match point {
                Enforcement::File { path, .. } => fix(path),
                Enforcement::Rpz { zone_file, .. } => fix(zone_file),
                Enforcement::Nftables { .. } | Enforcement::Hook { .. } => {}
            }
        }
    }

    pub fn tier(&self) -> Tier {
        self.node_id.tier()
    }

    /// Checks everything that can be checked before the node starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tier = self.tier();
        if self.trust_domain.is_empty()
            || !self
                .trust_domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        {
            return Err(invalid(
                "trust_domain",
                "must be a DNS-like name (letters, digits, '.', '-')",
            ));
        }
        for (field, path) in [
            ("tls.ca", &self.tls.ca),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
        ] {
            if !path.is_file() {
                return Err(invalid(field, format!("{} is not a file", path.display())));
            }
        }
        match (tier, &self.parent) {
            (Tier::Ministry, Some(_)) => {
                return Err(invalid("parent", "the ministry has no parent"));
            }
            (Tier::Province | Tier::Enterprise, None) => {
                return Err(invalid("parent", format!("a {tier} node needs a parent")));
            }
            (Tier::Province, Some(p)) if p.id.tier() != Tier::Ministry => {
                return Err(invalid("parent.id", "a province's parent is the ministry"));
            }
            (Tier::Enterprise, Some(p)) if p.id.tier() == Tier::Enterprise => {
                return Err(invalid(
                    "parent.id",
                    "an enterprise's parent is its province or the ministry (R-4.1)",
                ));
            }
            _ => {}
        }
        if let Some(p) = &self.parent
            && !p.address.contains(':')
        {
            return Err(invalid("parent.address", "expected host:port"));
        }
        enforcement::check(&self.enforcement, tier)?;
        accountability::check(&self.four_eyes, &self.audit)?;
        health::check(&self.health)?;
        if let Some(a) = &self.access_logs {
            if tier != Tier::Enterprise {
                return Err(invalid(
                    "access_logs",
                    "only an enterprise keeps access logs",
                ));
            }
            access_logs::check(a)?;
        }
        if self.access_log_socket.is_some() && self.access_logs.is_none() {
            return Err(invalid(
                "access_log_socket",
                "needs `[access_logs]`, where what it takes is kept",
            ));
        }
        if let Some(d) = &self.data_export {
            if tier != Tier::Enterprise {
                return Err(invalid(
                    "data_export",
                    "only an enterprise submits its data (R-5.1)",
                ));
            }
            data_export::check(d)?;
        }
        if let Some(q) = &self.access_log_query {
            if tier != Tier::Enterprise {
                return Err(invalid(
                    "access_log_query",
                    "only an enterprise answers access-log queries",
                ));
            }
            access_logs::check_command(q)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, child) in self.children.iter().enumerate() {
            let field = format!("children[{i}].id");
            let ok = matches!(
                (tier, child.id.tier()),
                (Tier::Ministry, Tier::Province | Tier::Enterprise)
                    | (Tier::Province, Tier::Enterprise)
            );
            if !ok {
                return Err(invalid(
                    field,
                    format!("a {tier} node cannot have {} as a child", child.id),
                ));
            }
            if !seen.insert(child.id.clone()) {
                return Err(invalid(field, format!("{} is listed twice", child.id)));
            }
            if !child.enterprises.is_empty()
                && (tier != Tier::Ministry || child.id.tier() != Tier::Province)
            {
                return Err(invalid(
                    format!("children[{i}].enterprises"),
                    "only the ministry lists the enterprises of a province",
                ));
            }
            for (j, e) in child.enterprises.iter().enumerate() {
                if e.tier() != Tier::Enterprise {
                    return Err(invalid(
                        format!("children[{i}].enterprises[{j}]"),
                        format!("{e} is not an enterprise"),
                    ));
                }
                if !seen.insert(e.clone()) {
                    return Err(invalid(
                        format!("children[{i}].enterprises[{j}]"),
                        format!("{e} is listed twice"),
                    ));
                }
            }
        }
        match (tier, &self.rules_file) {
            (Tier::Enterprise, None) => {
                return Err(invalid("rules_file", "an enterprise needs a rules file"));
            }
            (Tier::Ministry | Tier::Province, Some(_)) => {
                return Err(invalid("rules_file", "only an enterprise has a rules file"));
            }
            _ => {}
        }
        match (tier, &self.calendar_dir) {
            (Tier::Ministry | Tier::Province, None) => {
                return Err(invalid(
                    "calendar_dir",
                    format!("a {tier} node runs the regulation's clocks and needs a calendar"),
                ));
            }
            (_, Some(dir)) if !dir.is_dir() => {
                return Err(invalid(
                    "calendar_dir",
                    format!("{} is not a directory", dir.display()),
                ));
            }
            _ => {}
        }
        if self.access_log.is_some() && tier != Tier::Enterprise {
            return Err(invalid(
                "access_log",
                "only an enterprise keeps an access log",
            ));
        }
        if !self.auto_confirm.is_empty() && tier != Tier::Province {
            return Err(invalid(
                "auto_confirm",
                "only a province confirms requirements",
            ));
        }
        if self.link.window == 0 {
            return Err(invalid("link.window", "must be at least 1"));
        }
        if self.link.batch == 0 {
            return Err(invalid("link.batch", "must be at least 1"));
        }
        if self.link.reconnect_min.is_zero() || self.link.reconnect_min > self.link.reconnect_max {
            return Err(invalid(
                "link.reconnect_min",
                "must be non-zero and at most link.reconnect_max",
            ));
        }
        if self.link.ack_delay > Duration::from_secs(10) {
            // The peer's window stalls while it waits; longer than a Hello timeout is a typo.
            return Err(invalid("link.ack_delay", "must be at most 10s"));
        }
        if self.link.group_linger > Duration::from_millis(100) {
            // Every hop waits it on a directive's path; more than this is a typo.
            return Err(invalid("link.group_linger", "must be at most 100ms"));
        }
        if self.link.max_frame_bytes < 64 << 10 {
            return Err(invalid("link.max_frame_bytes", "must be at least 64 KiB"));
        }
        if let Some(ep) = &self.telemetry.otlp_endpoint
            && url::Url::parse(ep).is_err()
        {
            return Err(invalid(
                "telemetry.otlp_endpoint",
                "expected a URL such as http://127.0.0.1:4317",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_filter).is_err() {
            return Err(invalid(
                "telemetry.log_filter",
                "not a valid tracing filter directive",
            ));
        }
        Ok(())
    }

    /// Every enterprise this node can reach through its children, with the child that leads
    /// to it (the ministry's directory; a province's own jurisdiction).
    pub fn directory(&self) -> NodeMap<NodeId> {
        let mut out = NodeMap::default();
        for child in &self.children {
            match child.id.tier() {
                Tier::Enterprise => {
                    out.insert(child.id.clone(), child.id.clone());
                }
                _ => {
                    for e in &child.enterprises {
                        out.insert(e.clone(), child.id.clone());
                    }
                }
            }
        }
        out
    }
}

/// `scheduling` in a node's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduling {
    /// `SCHED_BATCH` at the nice value the node was started with: a woken thread does not
    /// preempt the running one.
    #[default]
    Batch,
    /// Keep the policy the node was started with (e.g. by a service manager's
    /// `CPUSchedulingPolicy=`).
    Inherit,
}

impl std::str::FromStr for Scheduling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "batch" => Ok(Scheduling::Batch),
            "inherit" => Ok(Scheduling::Inherit),
            other => Err(format!("unknown scheduling {other:?}: batch or inherit")),
        }
    }
}

#[cfg(test)]
mod tests;

//! Where an enterprise keeps its access logs (`[access_logs]`, R-9.1): the directory of the
//! Parquet partitions, fed from the `access_log` file the node tails, and how long and how
//! much is kept; or the command that queries the store the enterprise already has
//! (`[access_log_query]`, R-9.2). Must not act on it: the node ingests and the store or the
//! command answers.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, invalid};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogs {
    /// The directory of the partitions (`dt=…/hour=…/*.parquet`). Default `access-logs`
    /// beside the configuration file.
    pub dir: PathBuf,
    /// Hours older than this are dropped. Default 180 days (six months).
    pub retention_days: u32,
    /// The oldest hours are dropped while the store is larger. 0: no cap. Default 0.
    pub max_bytes: u64,
}

impl Default for AccessLogs {
    fn default() -> Self {
        AccessLogs {
            dir: "access-logs".into(),
            retention_days: 180,
            max_bytes: 0,
        }
    }
}

pub(crate) fn check(a: &AccessLogs) -> Result<(), ConfigError> {
    if a.retention_days == 0 {
        return Err(invalid(
            "access_logs.retention_days",
            "must be at least 1 (a query needs the logs it asks for)",
        ));
    }
    if a.dir.as_os_str().is_empty() {
        return Err(invalid("access_logs.dir", "must name a directory"));
    }
    Ok(())
}

/// The query adapter for an enterprise whose access logs live in a store of its own
/// (ClickHouse, a data lake): `command` is given each query as JSON on its standard input
/// (`from_ms`, `until_ms`, `src`, `dst`, `ports`, `protocol`, `url_contains`, `limit`)
/// and prints the matching records as JSON lines in the feed's shape; the node keeps those
/// that answer the query, up to its limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueryCommand {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Killed after this long and the query answered `failed`. Default 10min; at most 1h
    /// (the answer is due within 2 hours).
    #[serde(with = "humantime_serde", default = "ten_minutes")]
    pub timeout: Duration,
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

pub(crate) fn check_command(q: &QueryCommand) -> Result<(), ConfigError> {
    if q.command.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(invalid("access_log_query.command", "must name a program"));
    }
    if q.timeout.is_zero() || q.timeout > Duration::from_secs(3600) {
        return Err(invalid(
            "access_log_query.timeout",
            "must be more than 0 and at most 1h (the answer is due within 2 hours)",
        ));
    }
    Ok(())
}

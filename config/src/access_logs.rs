//! Where an enterprise keeps its access logs (`[access_logs]`, R-9.1): the directory of the
//! Parquet partitions, fed from the `access_log` file the node tails, and how long and how
//! much is kept. Must not act on it: the node ingests and the store answers.

use std::path::PathBuf;

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

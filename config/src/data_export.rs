//! An enterprise's scheduled data reading (`[data_export]`, R-5.1): the file its own
//! systems export its basic and active-resource data to (JSON or CSV), and how often the
//! node reads it. Must not act on it: the node reads and submits.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, invalid};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataExport {
    /// The exported file (relative paths are beside the configuration file), JSON or CSV.
    /// Each reading that differs from the data last submitted is submitted as a new
    /// version, so an exporter writes a new file whole and renames it into place.
    pub file: PathBuf,
    /// How often the file is read; also once at start. Default 1h; from 1s to 7 days.
    #[serde(with = "humantime_serde", default = "hourly")]
    pub every: Duration,
}

fn hourly() -> Duration {
    Duration::from_secs(3600)
}

pub(crate) fn check(d: &DataExport) -> Result<(), ConfigError> {
    if d.file.as_os_str().is_empty() {
        return Err(invalid("data_export.file", "must name a file"));
    }
    if d.every < Duration::from_secs(1) || d.every > Duration::from_secs(7 * 86_400) {
        return Err(invalid(
            "data_export.every",
            "must be from 1s to 7 days (`1h`, `1d`)",
        ));
    }
    Ok(())
}

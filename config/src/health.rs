//! The network view's settings (`[health]`, O-1, R-10.1): how often heartbeats go up, how
//! long availability history is kept, and when a node raises a fault on its own. Must not
//! act on them: the node and the core do.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, invalid};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// How often this node sends its parent a heartbeat, and how a parent judges its
    /// children: silent for 3 intervals is stale, for 6 down. Every node of a network
    /// should have the same. Default 10s; from 50ms to 10min.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Days of availability history kept. Default 400 (a year's report, and some).
    pub retention_days: u32,
    /// An enforcement point failing for longer than this raises a fault.
    /// Default 10min.
    #[serde(with = "humantime_serde")]
    pub enforcement_fault_after: Duration,
    /// Free disk under this share of the store's file system raises a fault. Default 5
    /// (%); 0: never.
    pub disk_free_min_percent: u8,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            interval: Duration::from_secs(10),
            retention_days: 400,
            enforcement_fault_after: Duration::from_secs(600),
            disk_free_min_percent: 5,
        }
    }
}

pub(crate) fn check(h: &Health) -> Result<(), ConfigError> {
    if h.interval < Duration::from_millis(50) || h.interval > Duration::from_secs(600) {
        return Err(invalid(
            "health.interval",
            "must be from 50ms to 10min (silence is judged in intervals)",
        ));
    }
    if h.retention_days == 0 {
        return Err(invalid(
            "health.retention_days",
            "must be at least 1 (availability per day needs the day)",
        ));
    }
    if h.disk_free_min_percent >= 100 {
        return Err(invalid(
            "health.disk_free_min_percent",
            "must be under 100 (a fault would be raised always)",
        ));
    }
    Ok(())
}

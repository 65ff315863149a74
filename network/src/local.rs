//! This node's own health, as its heartbeats carry it: its program's version,
//! uptime, its links (counted; listed with their backlog when to its parent, down or
//! behind), the store's size and the free disk, and at an
//! enterprise the rule set's version and checksum and the enforcement points' state.
//!
//! Must not: write anything; the checksum of the rule set is recomputed only when its
//! version moves.

use std::path::PathBuf;
use std::sync::Mutex;

use isms_core::Shared;
use isms_core::error::NodeError;
use isms_domain::identity::Tier;
use isms_proto::v1::{Health, LinkHealth};

/// Builds this node's `Health`, keeping what is costly to recompute.
#[derive(Debug)]
pub struct Collector {
    version: String,
    data_dir: PathBuf,
    interval_ms: i64,
    /// The rule set's version and checksum last computed, and since when the enforcement
    /// points fail (0: they do not).
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    rules: Option<(u64, Vec<u8>)>,
    failing_since_ms: i64,
    /// The last health collected, and when.
    last: Option<(i64, Health)>,
}

impl Collector {
    pub fn new(version: &str, data_dir: PathBuf, interval_ms: i64) -> Collector {
        Collector {
            version: version.to_string(),
            data_dir,
            interval_ms,
            cache: Mutex::default(),
        }
    }

    /// The last health collected if it is younger than one interval, else a new one: what
    /// an operator's view and the automatic faults read, so they add no reads of the store
    /// on a busy node.
    pub fn recent(&self, shared: &Shared) -> Result<Health, NodeError> {
        let now = shared.now_ms();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last
            .clone();
        match cached {
            Some((at, h)) if (0..self.interval_ms).contains(&(now - at)) => Ok(h),
            _ => self.collect(shared),
        }
    }

    /// This node's health now (each heartbeat's).
    pub fn collect(&self, shared: &Shared) -> Result<Health, NodeError> {
        let peers = isms_core::peer_statuses(shared)?;
        let links_total = u32::try_from(peers.len()).unwrap_or(u32::MAX);
        let links_up = u32::try_from(peers.iter().filter(|p| p.up).count()).unwrap_or(u32::MAX);
        // The parent's link, and a child's only when it needs a look.
        let links = peers
            .into_iter()
            .filter(|p| p.role == "parent" || !p.up || p.backlog > 0)
            .map(|p| LinkHealth {
                peer: p.peer,
                up: p.up,
                backlog: p.backlog,
                oldest_age_ms: p.oldest_age_ms,
            })
            .collect();
        let mut health = Health {
            version: self.version.clone(),
            started_at_ms: shared.started_at_ms,
            links,
            links_total,
            links_up,
            store_bytes: shared.store.size_on_disk(),
            disk_free_bytes: fs4::available_space(&self.data_dir).unwrap_or(0),
            disk_total_bytes: fs4::total_space(&self.data_dir).unwrap_or(0),
            interval_ms: self.interval_ms,
            ..Health::default()
        };
        if shared.node_id.tier() == Tier::Enterprise {
            let state = isms_core::enforcement_state(&shared.store)?;
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let sha = match &cache.rules {
                Some((v, sha)) if *v == state.rules_version => sha.clone(),
                _ => {
                    let sha = isms_core::rules_checksum(&shared.store)?.to_vec();
                    cache.rules = Some((state.rules_version, sha.clone()));
                    sha
                }
            };
            cache.failing_since_ms = match (state.error.is_empty(), cache.failing_since_ms) {
                (true, _) => 0,
                (false, 0) => shared.now_ms(),
                (false, since) => since,
            };
            health.rules_version = state.rules_version;
            health.rules_sha256 = sha;
            health.enforcement_pending = state.pending;
            health.enforcement_error = state.error;
            health.enforcement_failing_since_ms = cache.failing_since_ms;
        }
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).last =
            Some((shared.now_ms(), health.clone()));
        Ok(health)
    }
}

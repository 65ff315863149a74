//! Heartbeats on a link: what this node sends its parent each interval (its own
//! health and what changed below it since the session's last heartbeat), and what it makes
//! of one from a child.
//!
//! Must not: block a link session on anything slower than reading the store.

use std::sync::Arc;

use isms_core::Shared;
use isms_proto::v1::{Heartbeat, NodeHealth};

use crate::{Collector, MAX_BELOW_PER_HEARTBEAT, NetworkView};

/// What the link sessions of a node share for heartbeats.
#[derive(Debug)]
pub struct Heartbeats {
    pub view: Arc<NetworkView>,
    collector: Collector,
    shared: Arc<Shared>,
}

impl Heartbeats {
    pub fn new(view: Arc<NetworkView>, collector: Collector, shared: Arc<Shared>) -> Heartbeats {
        Heartbeats {
            view,
            collector,
            shared,
        }
    }

    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.view.interval_ms()).unwrap_or(1))
    }

    /// The next heartbeat of a session that has sent what changed below this node up to
    /// `since` (0: nothing yet, so all of it), and the `since` of the one after.
    pub fn next(&self, since: u64) -> (Heartbeat, u64) {
        let own = match self.collector.collect(&self.shared) {
            Ok(h) => Some(h),
            Err(e) => {
                // Still a heartbeat: silence would say the node is down, which it is not.
                tracing::warn!(error = %e, "health not read; heartbeat without it");
                None
            }
        };
        let (below, next) = self.view.changes_since(since, MAX_BELOW_PER_HEARTBEAT);
        let beat = Heartbeat {
            own,
            below,
            full: since == 0,
            sent_at_ms: self.shared.now_ms(),
        };
        (beat, next)
    }

    /// This node as its own view shows it: up, with its health as of at most one interval
    /// ago.
    pub fn own(&self) -> NodeHealth {
        let now = self.shared.now_ms();
        NodeHealth {
            node: self.shared.node_id.to_string(),
            liveness: isms_proto::v1::Liveness::Up as i32,
            since_ms: self.shared.started_at_ms,
            health: self.collector.recent(&self.shared).ok(),
            heard_at_ms: now,
            parent: String::new(),
        }
    }

    /// A heartbeat from `child`. What it says of nodes below it is taken only for its own
    /// subtree: a province cannot speak for another's enterprises.
    pub fn heard(&self, child: &str, mut beat: Heartbeat) {
        let before = beat.below.len();
        beat.below.retain(|n| {
            self.shared
                .directory
                .get(n.node.as_str())
                .is_some_and(|route| route.as_str() == child)
        });
        if beat.below.len() != before {
            tracing::warn!(
                %child,
                dropped = before - beat.below.len(),
                "heartbeat spoke for nodes outside its subtree; not taken"
            );
        }
        self.view.heard(child, beat, self.shared.now_ms());
    }
}

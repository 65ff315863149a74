//! Recording what the network view concluded (O-1, R-10.1): each change of a node's
//! liveness once, with its availability history and the audit trail, in one group; and
//! reading them back for the view at start and for operators.
//!
//! Must not: judge liveness (the network view does), or keep history past its retention.

use super::*;
use isms_domain::liveness::liveness_name;
use isms_proto::record::NodeLiveness;
use isms_proto::v1::{AvailabilitySpan, Liveness};

/// A node's liveness changing, as this node saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessChange {
    pub node: String,
    /// The node it links to.
    pub parent: String,
    pub from: Liveness,
    pub to: Liveness,
    pub at_ms: i64,
}

/// How often the availability history is pruned.
const PRUNE_EVERY_MS: i64 = 3_600_000;

impl Core {
    pub(super) fn record_liveness(&mut self, g: &mut Group<'_>, changes: Vec<LivenessChange>) {
        for c in changes {
            let record = NodeLiveness {
                liveness: c.to as i32,
                since_ms: c.at_ms,
                parent: c.parent.clone(),
            };
            g.txn.put(records::liveness(&c.node), encode(&record));
            let span = AvailabilitySpan {
                liveness: c.to as i32,
                start_ms: c.at_ms,
            };
            g.txn
                .put(records::availability(&c.node, c.at_ms), encode(&span));
            let outcome = format!("{} → {}", liveness_name(c.from), liveness_name(c.to));
            match c.to {
                Liveness::Up | Liveness::Maintenance => {
                    tracing::info!(node = %c.node, %outcome, "node liveness")
                }
                _ => tracing::warn!(node = %c.node, %outcome, "node liveness"),
            }
            audit(g, &Caller::node(), "node.liveness", &c.node, &outcome);
        }
    }

    /// Drops availability spans that ended before the retention, at most hourly: a span
    /// still in force at the cut is kept, so the history always says where it started.
    pub(super) fn prune_availability(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        if g.now - self.availability_pruned_at < PRUNE_EVERY_MS {
            return Ok(());
        }
        self.availability_pruned_at = g.now;
        let cut = g.now - self.availability_retention_ms;
        let mut previous: Option<(Vec<u8>, Vec<u8>)> = None; // (node prefix, key)
        for entry in self.shared.store.scan_prefix(records::AVAILABILITY_PREFIX) {
            let (k, v) = entry?;
            let span: AvailabilitySpan = decode(&k, &v)?;
            let node_prefix = k[..k.len().saturating_sub(8)].to_vec();
            if let Some((prev_node, prev_key)) = previous.take()
                && prev_node == node_prefix
                && span.start_ms <= cut
            {
                // The one before ended when this one started, before the cut.
                g.txn.delete(prev_key);
            }
            previous = Some((node_prefix, k.to_vec()));
        }
        Ok(())
    }
}

/// Every node's liveness as this node last recorded it.
pub fn stored_liveness(store: &Store) -> Result<Vec<(String, NodeLiveness)>, NodeError> {
    let mut out = Vec::new();
    for entry in store.scan_prefix(records::LIVENESS_PREFIX) {
        let (k, v) = entry?;
        let node = String::from_utf8_lossy(&k[records::LIVENESS_PREFIX.len()..]).into_owned();
        out.push((node, decode(&k, &v)?));
    }
    Ok(out)
}

/// A node's availability history as this node recorded it, oldest first.
pub fn availability_history(store: &Store, node: &str) -> Result<Vec<AvailabilitySpan>, NodeError> {
    store
        .scan_prefix(&records::availability_of(node))
        .map(|entry| {
            let (k, v) = entry?;
            Ok(decode(&k, &v)?)
        })
        .collect()
}

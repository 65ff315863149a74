//! Monitoring at an enterprise: what its monitoring directives' rules match
//! in its access log. The tick reads the lines appended since the last read (at most every
//! few seconds: the reports are aggregated, not one per hit), counts the records each
//! directive's rules hit, and sends the directive's cumulative hits up with a few samples.
//!
//! Must not: block anything (monitoring observes), or count a record twice: the log's
//! offset moves in the same batch as the counts.

use std::time::{Duration, Instant};

use super::*;
use isms_proto::v1::{AccessLogRecord, MonitoringHits};

/// How often the access log is read for monitoring, at most.
const MONITOR_EVERY: Duration = Duration::from_secs(5);
/// Matching records kept as samples per directive.
const SAMPLES: usize = 5;

impl Core {
    /// Reads the access log's new lines and reports each monitoring directive's new hits.
    pub(super) fn check_monitoring(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        let Some(path) = self.access_log.clone() else {
            return Ok(());
        };
        if self.monitor_next.is_some_and(|next| Instant::now() < next) {
            return Ok(());
        }
        self.monitor_next = Some(Instant::now() + MONITOR_EVERY);
        let offset = match g.txn.get(records::MONITOR_OFFSET)? {
            Some(v) => records::decode_u64(records::MONITOR_OFFSET, &v)?,
            None => 0,
        };
        let (read, new_offset) = match isms_domain::access_log::read_since(&path, offset) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "access log not read for monitoring");
                return Ok(());
            }
        };
        if new_offset == offset {
            return Ok(());
        }
        // Hits count only while a rule is in force: the offset moves on either way.
        g.txn.put(
            records::MONITOR_OFFSET.to_vec(),
            records::encode_u64(new_offset),
        );
        let rules: Vec<isms_enforce::Rule> =
            enterprise::rules_in_force(g.txn.scan_prefix(records::RULE_SET_PREFIX)?, g.now)?
                .into_iter()
                .filter(|r| !r.blocks())
                .collect();
        let mut found: BTreeMap<String, (u64, i64, Vec<AccessLogRecord>)> = BTreeMap::new();
        for record in read {
            // A record counts for a rule in force when it was logged.
            let hit: BTreeSet<&str> = rules
                .iter()
                .filter(|r| record.at_ms >= r.effective_at_ms.max(r.applied_at_ms))
                .filter(|r| isms_domain::access_log::hits(&r.kind, &r.value, &record))
                .map(|r| r.directive.as_str())
                .collect();
            for d in hit {
                let (n, last, samples) = found.entry(d.to_string()).or_default();
                *n += 1;
                *last = (*last).max(record.at_ms);
                if samples.len() < SAMPLES {
                    samples.push(record.clone());
                }
            }
        }
        let me = self.shared.node_id.to_string();
        for (directive_id, (n, last, samples)) in found {
            let key = records::monitor_hits(&directive_id, &me);
            let mut hits: MonitoringHits = g.read(&key)?.unwrap_or_default();
            hits.total += n;
            hits.last_at_ms = hits.last_at_ms.max(last);
            let room = SAMPLES.saturating_sub(hits.samples.len());
            hits.samples.extend(samples.into_iter().take(room));
            g.txn.put(key, encode(&hits));
            // The target's state as it stands: in force, failed to take effect (and
            // retried), or not yet known (then no more than acknowledged is claimed).
            let state = match g.txn.get(&records::enforce_pending(&directive_id))? {
                None => TargetState::Executed,
                Some(v) if enterprise::read_pending(&v).1 => TargetState::Failed,
                Some(_) => TargetState::Acknowledged,
            };
            let trace = self.stored_trace(g, &directive_id)?;
            let update = TargetStatus {
                node: me.clone(),
                state: state as i32,
                at_ms: g.now,
                detail: String::new(),
                overdue_at_ms: 0,
                result: None,
                hits: Some(hits.clone()),
                blacklist: None,
                signed: None,
            };
            self.report(g, &directive_id, &update, &trace);
            tracing::info!(directive = %directive_id, new = n, total = hits.total, "monitoring hits");
        }
        Ok(())
    }
}

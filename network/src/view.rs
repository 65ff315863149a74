//! What a node knows of the nodes below it (O-1, R-10.1): each child's latest heartbeat and
//! what its silence means (stale after 3 intervals, down after 6, maintenance within an
//! announced upgrade window), and, through a province's heartbeats, that province's view
//! of its own enterprises. Changes of state are collected for the core to record once
//! (`take_changes`); changes worth telling the parent are numbered so each heartbeat
//! carries only what is new (`changes_since`).
//!
//! Must not: write the store (the core records the changes), or call a node down that
//! only its province's silence hides (it is `unknown`).

use std::collections::HashMap;
use std::sync::Mutex;

use isms_proto::v1::{Health, Heartbeat, Liveness, NodeHealth};

use crate::Change;

/// A window in which a node said it would be silent (an upgrade notice, R-11.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub node: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    health: NodeHealth,
    /// Heard from directly (a child), not through a province.
    direct: bool,
    /// Numbered when it changed in a way the parent should hear.
    version: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    version: u64,
    changes: Vec<Change>,
    windows: Vec<Window>,
}

/// The view, shared by the link sessions (heartbeats in and out), the ticker and the
/// operator API.
#[derive(Debug)]
pub struct NetworkView {
    interval_ms: i64,
    inner: Mutex<Inner>,
}

/// What a node last recorded of another (`nl/<node>`), to start from after a restart.
#[derive(Debug, Clone)]
pub struct Known {
    pub node: String,
    pub parent: String,
    pub liveness: Liveness,
    pub since_ms: i64,
}

impl NetworkView {
    /// `children` are this node's own; `known` what it recorded before a restart. A child
    /// is given a grace of one silence period from `now_ms` before it is judged.
    pub fn new(
        me: &str,
        children: &[String],
        interval_ms: i64,
        known: Vec<Known>,
        now_ms: i64,
    ) -> NetworkView {
        let mut inner = Inner::default();
        for k in known {
            let direct = children.contains(&k.node);
            let version = inner.next_version();
            inner.entries.insert(
                k.node.clone(),
                Entry {
                    health: NodeHealth {
                        node: k.node,
                        liveness: k.liveness as i32,
                        since_ms: k.since_ms,
                        health: None,
                        heard_at_ms: if direct { now_ms } else { 0 },
                        parent: k.parent,
                    },
                    direct,
                    version,
                },
            );
        }
        for child in children {
            inner.entries.entry(child.clone()).or_insert_with(|| Entry {
                health: NodeHealth {
                    node: child.clone(),
                    liveness: Liveness::Unspecified as i32,
                    since_ms: 0,
                    health: None,
                    heard_at_ms: now_ms,
                    parent: me.to_string(),
                },
                direct: true,
                version: 0,
            });
        }
        NetworkView {
            interval_ms: interval_ms.max(1),
            inner: Mutex::new(inner),
        }
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere leaves the view as it was: still the best knowledge there is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A heartbeat from `child`, arrived at `now_ms`.
    pub fn heard(&self, child: &str, mut beat: Heartbeat, now_ms: i64) {
        let mut inner = self.lock();
        let Some(mut entry) = inner.entries.remove(child) else {
            return; // not a child of this node: the link refused it already
        };
        if entry.direct {
            let mut own = beat.own.take().unwrap_or_default();
            own.clock_offset_ms = beat.sent_at_ms - now_ms;
            let was = liveness_of(&entry.health);
            let significant = entry
                .health
                .health
                .as_ref()
                .is_none_or(|old| significant(old, &own));
            entry.health.health = Some(own);
            entry.health.heard_at_ms = now_ms;
            inner.change(&mut entry.health, Liveness::Up, now_ms);
            if significant || was != Liveness::Up {
                entry.version = inner.next_version();
            }
        }
        let direct = entry.direct;
        inner.entries.insert(child.to_string(), entry);
        if direct {
            for below in beat.below {
                inner.heard_below(child, below, now_ms);
            }
        }
    }

    /// Judges each child's silence at `now_ms`.
    pub fn tick(&self, now_ms: i64) {
        let stale_after = 3 * self.interval_ms;
        let down_after = 6 * self.interval_ms;
        let mut inner = self.lock();
        // A clock stepped back (NTP, an operator) leaves heartbeats heard "in the future":
        // silence is measured from now on, not from then.
        for e in inner.entries.values_mut() {
            if e.direct && e.health.heard_at_ms > now_ms {
                e.health.heard_at_ms = now_ms;
            }
        }
        let judged: Vec<(String, Liveness)> = inner
            .entries
            .values()
            .filter(|e| e.direct)
            .filter_map(|e| {
                let silent = now_ms - e.health.heard_at_ms;
                let now = if silent < stale_after {
                    liveness_of(&e.health)
                } else if inner.in_window(&e.health.node, now_ms) {
                    Liveness::Maintenance
                } else if silent < down_after {
                    Liveness::Stale
                } else {
                    Liveness::Down
                };
                (now != liveness_of(&e.health)).then(|| (e.health.node.clone(), now))
            })
            .collect();
        for (node, to) in judged {
            if let Some(mut entry) = inner.entries.remove(&node) {
                inner.change(&mut entry.health, to, now_ms);
                entry.version = inner.next_version();
                inner.entries.insert(node, entry);
            }
        }
    }

    /// The changes of state since the last call, for the core to record.
    pub fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut self.lock().changes)
    }

    /// The upgrade windows in force, replaced whole.
    pub fn set_windows(&self, windows: Vec<Window>) {
        self.lock().windows = windows;
    }

    /// Nodes changed since `version` (all with 0), at most `limit`, and the version the
    /// last of them had: the next call's `version`.
    pub fn changes_since(&self, version: u64, limit: usize) -> (Vec<NodeHealth>, u64) {
        let inner = self.lock();
        let mut changed: Vec<&Entry> = inner
            .entries
            .values()
            .filter(|e| e.version > version)
            .collect();
        changed.sort_by_key(|e| e.version);
        changed.truncate(limit);
        let last = changed.last().map_or(version, |e| e.version);
        (changed.iter().map(|e| e.health.clone()).collect(), last)
    }

    /// Every node known, as an operator should see it: a node under a province that is not
    /// up is `unknown`.
    pub fn snapshot(&self) -> Vec<NodeHealth> {
        let inner = self.lock();
        let mut out: Vec<NodeHealth> = inner
            .entries
            .values()
            .map(|e| {
                let mut h = e.health.clone();
                if !e.direct
                    && inner
                        .entries
                        .get(&h.parent)
                        .is_some_and(|p| liveness_of(&p.health) != Liveness::Up)
                {
                    h.liveness = Liveness::Unknown as i32;
                }
                h
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }
}

impl Inner {
    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn change(&mut self, h: &mut NodeHealth, to: Liveness, at_ms: i64) {
        let from = liveness_of(h);
        if from == to {
            return;
        }
        h.liveness = to as i32;
        h.since_ms = at_ms;
        self.changes.push(Change {
            node: h.node.clone(),
            parent: h.parent.clone(),
            from,
            to,
            at_ms,
        });
    }

    /// A node below `child`, as `child` reports it.
    fn heard_below(&mut self, child: &str, mut reported: NodeHealth, now_ms: i64) {
        if reported.node == child {
            return;
        }
        let to = liveness_of(&reported);
        let entry = self.entries.remove(&reported.node);
        let mut entry = match entry {
            Some(e) if e.direct => {
                self.entries.insert(reported.node.clone(), e);
                return; // a child of ours is judged by its own heartbeats
            }
            Some(e) => e,
            None => Entry {
                health: NodeHealth {
                    node: reported.node.clone(),
                    parent: child.to_string(),
                    ..Default::default()
                },
                direct: false,
                version: 0,
            },
        };
        reported.parent = child.to_string();
        let at = if reported.since_ms > 0 {
            reported.since_ms
        } else {
            now_ms
        };
        self.change(&mut entry.health, to, at);
        entry.health.health = reported.health.take();
        entry.health.heard_at_ms = reported.heard_at_ms;
        entry.health.parent = reported.parent;
        entry.version = self.next_version();
        self.entries.insert(reported.node, entry);
    }

    fn in_window(&self, node: &str, now_ms: i64) -> bool {
        self.windows
            .iter()
            .any(|w| w.node == node && w.start_ms <= now_ms && now_ms < w.end_ms)
    }
}

pub fn liveness_of(h: &NodeHealth) -> Liveness {
    Liveness::try_from(h.liveness).unwrap_or(Liveness::Unspecified)
}

/// Whether `new` differs from `old` in what the parent should hear: not the clock's
/// jitter, the backlog's every move or the disk's every byte.
fn significant(old: &Health, new: &Health) -> bool {
    let coarse = |bytes: u64| bytes >> 26; // 64 MiB steps
    let backlog = |n: u64| 64 - n.leading_zeros(); // powers of two
    let age = |ms: i64| (ms.max(0) as u64 / 60_000).min(60); // minutes, up to an hour
    old.version != new.version
        || old.started_at_ms != new.started_at_ms
        || old.rules_version != new.rules_version
        || old.rules_sha256 != new.rules_sha256
        || old.enforcement_error != new.enforcement_error
        || (old.enforcement_pending == 0) != (new.enforcement_pending == 0)
        || coarse(old.store_bytes) != coarse(new.store_bytes)
        || coarse(old.disk_free_bytes) != coarse(new.disk_free_bytes)
        || (old.clock_offset_ms - new.clock_offset_ms).abs() > 1_000
        || old.links_up != new.links_up
        || old.links_total != new.links_total
        || old.links.len() != new.links.len()
        || old.links.iter().zip(&new.links).any(|(a, b)| {
            a.peer != b.peer
                || a.up != b.up
                || backlog(a.backlog) != backlog(b.backlog)
                || age(a.oldest_age_ms) != age(b.oldest_age_ms)
        })
}

#[cfg(test)]
mod tests;

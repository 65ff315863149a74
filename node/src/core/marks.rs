//! Link marks: each link's `applied` mark and next outbox number (`records::encode_marks`),
//! made durable by the group that moved them.
//!
//! A province's group applies reports from dozens of its enterprises at once, and one
//! `a/<peer>` record each cost a write per enterprise per directive. A group that moves
//! the marks of several links writes them as one delta record (`A/<n>`) instead, and every
//! [`FOLD_EVERY`] deltas a group folds them back into the per-link records and deletes
//! them. Both marks only ever grow, so at start each link takes the largest value any
//! record holds, whatever order they were written in.

use super::*;
use isms_proto::record::{MarksDelta, PeerMarks};

/// Deltas kept before a group folds them into per-link records: each fold rewrites every
/// link the deltas name, so this trades its cost against start-up reading the deltas.
const FOLD_EVERY: usize = 64;

/// A link's marks as stored: applied, and the floor for its next outbox number (absent in
/// a store written before the number was kept with the mark).
pub(super) type Marks = (u64, Option<u64>);

#[derive(Default)]
pub(super) struct MarksLog {
    /// Number of the next delta record.
    next: u64,
    /// Keys of the delta records in the store.
    deltas: Vec<Vec<u8>>,
    /// Links whose newest marks may be only in a delta.
    unfolded: BTreeSet<NodeId>,
}

impl MarksLog {
    /// Reads every link's marks: its own record, raised by any delta that names it.
    pub(super) fn load(
        store: &Store,
        peers: &BTreeMap<NodeId, Arc<PeerState>>,
    ) -> Result<(Self, HashMap<NodeId, Marks>), NodeError> {
        let mut marks = HashMap::new();
        for id in peers.keys() {
            let key = records::marks(id);
            let stored = match store.get(&key)? {
                Some(v) => records::decode_marks(&key, &v)?,
                None => (0, None),
            };
            marks.insert(id.clone(), stored);
        }
        let mut log = MarksLog::default();
        for item in store.scan_prefix(records::MARKS_DELTA_PREFIX) {
            let (key, value) = item?;
            let n = records::marks_delta_number(&key)
                .ok_or_else(|| records::CorruptRecord::new(&key, "no delta number"))?;
            let delta: MarksDelta = decode(&key, &value)?;
            for p in delta.peers {
                // A peer no longer configured has no link to resume.
                let Some((id, m)) = p
                    .peer
                    .parse::<NodeId>()
                    .ok()
                    .and_then(|id| marks.get_mut(&id).map(|m| (id, m)))
                else {
                    continue;
                };
                m.0 = m.0.max(p.applied);
                m.1 = Some(m.1.unwrap_or(0).max(p.next_seq));
                log.unfolded.insert(id);
            }
            log.next = log.next.max(n + 1);
            log.deltas.push(key);
        }
        Ok((log, marks))
    }

    /// Writes the marks of the links in `moved`, whose current values `now` gives
    /// (applied, next outbox number).
    pub(super) fn write(
        &mut self,
        txn: &mut Txn<'_>,
        moved: BTreeSet<NodeId>,
        now: impl Fn(&NodeId) -> (u64, u64),
    ) {
        let own_record = |txn: &mut Txn<'_>, peer: &NodeId| {
            let (applied, next) = now(peer);
            txn.put(records::marks(peer), records::encode_marks(applied, next));
        };
        if moved.len() < 2 {
            // One link: its own record costs no more than a delta.
            for peer in &moved {
                own_record(txn, peer);
            }
            return;
        }
        if self.deltas.len() >= FOLD_EVERY {
            let mut fold = std::mem::take(&mut self.unfolded);
            fold.extend(moved);
            for peer in &fold {
                own_record(txn, peer);
            }
            for key in self.deltas.drain(..) {
                txn.delete(key);
            }
            return;
        }
        let delta = MarksDelta {
            peers: moved
                .iter()
                .map(|peer| {
                    let (applied, next_seq) = now(peer);
                    PeerMarks {
                        peer: peer.to_string(),
                        applied,
                        next_seq,
                    }
                })
                .collect(),
        };
        let key = records::marks_delta(self.next);
        self.next += 1;
        txn.put(key.clone(), encode(&delta));
        self.deltas.push(key);
        self.unfolded.extend(moved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> NodeId {
        name.parse().expect("node id")
    }

    fn peers(names: &[&str]) -> BTreeMap<NodeId, Arc<PeerState>> {
        names
            .iter()
            .map(|n| (id(n), Arc::new(PeerState::new(id(n), Role::Child))))
            .collect()
    }

    /// One group moving `moved` to the values in `values`.
    fn group(
        store: &Store,
        log: &mut MarksLog,
        values: &HashMap<NodeId, (u64, u64)>,
        moved: &[&str],
    ) {
        let mut txn = store.txn();
        log.write(&mut txn, moved.iter().map(|n| id(n)).collect(), |p| {
            values[p]
        });
        store.apply(txn.into_writes()).expect("apply");
    }

    #[test]
    fn marks_moved_together_survive_a_restart_through_deltas_and_folds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let names = ["enterprise/a", "enterprise/b", "enterprise/c"];
        let peers = peers(&names);
        let (mut log, start) = MarksLog::load(&store, &peers).expect("load");
        assert!(start.values().all(|m| *m == (0, None)));

        let mut values: HashMap<NodeId, (u64, u64)> =
            names.iter().map(|n| (id(n), (0, 1))).collect();
        for round in 1..=FOLD_EVERY as u64 + 10 {
            values.insert(id("enterprise/a"), (round, round + 1));
            values.insert(id("enterprise/b"), (round, 1));
            group(&store, &mut log, &values, &["enterprise/a", "enterprise/b"]);
            // A lone link's own record, written after deltas that name it with less.
            values.insert(id("enterprise/a"), (round, round + 2));
            group(&store, &mut log, &values, &["enterprise/a"]);

            let (_, read) = MarksLog::load(&store, &peers).expect("reload");
            assert_eq!(read[&id("enterprise/a")], (round, Some(round + 2)));
            assert_eq!(read[&id("enterprise/b")], (round, Some(1)));
            assert_eq!(read[&id("enterprise/c")], (0, None));
        }
        let deltas = store.scan_prefix(records::MARKS_DELTA_PREFIX).count();
        assert!(deltas < FOLD_EVERY, "{deltas} deltas: never folded");
        assert!(deltas > 0, "every group wrote per-link records");
    }

    #[test]
    fn a_corrupt_delta_is_an_error_naming_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let mut txn = store.txn();
        txn.put(records::marks_delta(3), vec![1, 0xff, 0xff]);
        store.apply(txn.into_writes()).expect("apply");
        let Err(e) = MarksLog::load(&store, &peers(&["enterprise/a"])) else {
            panic!("a corrupt delta loaded");
        };
        assert!(e.to_string().contains("corrupt record"), "{e}");
    }
}

//! Fan-out records and outbox runs: the copies of one directive that one group queues for
//! several peers, stored as one record (`f/<uuid>`), and the other entries one group queues
//! for one peer, stored as one record too (`g/<uuid>`), instead of an outbox entry each.
//!
//! A province confirming a national directive queues 161 copies; as outbox entries they
//! cost 161 writes to queue and 161 more to delete, each a sled leaf rewrite. As one
//! record they cost one of each. Likewise an enterprise executing five directives from one
//! frame queues five reports for its province, and a ministry issuing 64 directives to one
//! province in one group queues 64 copies for it: one run record each. Every copy keeps
//! its own sequence number in its peer's outbox, so the link protocol does not see the
//! difference: link writers and acknowledgments find a copy through its peer's index
//! (`PeerState::fanned`, sequence number to record key), and the group that sees a
//! record's last copy acknowledged deletes it. At start the index is rebuilt from the
//! records with every copy taken as unacknowledged; the peer's `Hello` then acknowledges
//! what it already holds, as for any outbox entry.

use super::*;
use isms_proto::record::{FanCopy, FanOut, OutboxRun};

/// The fan-out records in the store, with how many of each one's copies are not yet
/// acknowledged.
#[derive(Default)]
pub(super) struct Fans {
    pending: HashMap<Arc<[u8]>, usize>,
    /// Records left with no copy for a configured peer (peers removed from the config
    /// since); the first group deletes them.
    stale: Vec<Arc<[u8]>>,
}

impl Fans {
    /// Reads the records left by an earlier run and indexes their copies by peer.
    pub(super) fn load(store: &Store, peers: &NodeMap<Arc<PeerState>>) -> Result<Self, NodeError> {
        let mut fans = Fans::default();
        let peer = |name: &str| name.parse::<NodeId>().ok().and_then(|p| peers.get(&p));
        for item in store.scan_prefix(records::FANOUT_PREFIX) {
            let (key, value) = item?;
            let record: FanOut = decode(&key, &value)?;
            let copies = record
                .copies
                .iter()
                .filter_map(|c| peer(&c.peer).map(|p| (p, c.seq)));
            fans.index(key.into(), copies);
        }
        for item in store.scan_prefix(records::OUTBOX_RUN_PREFIX) {
            let (key, value) = item?;
            let run: OutboxRun = decode(&key, &value)?;
            let copies = peer(&run.peer)
                .into_iter()
                .flat_map(|p| run.entries.iter().map(move |e| (p, e.seq)));
            fans.index(key.into(), copies);
        }
        Ok(fans)
    }

    /// Indexes a record's copies by peer; a record with none to wait for is deleted by the
    /// next group.
    fn index<'p>(
        &mut self,
        key: Arc<[u8]>,
        copies: impl Iterator<Item = (&'p Arc<PeerState>, u64)>,
    ) {
        let mut indexed = 0;
        for (peer, seq) in copies {
            peer.fanned().insert(seq, key.clone());
            indexed += 1;
        }
        if indexed == 0 {
            self.stale.push(key);
        } else {
            self.pending.insert(key, indexed);
        }
    }

    /// Writes what the group queued: the copies of one directive for several peers as one
    /// fan-out record, the other entries for one peer as one run, a lone entry as itself.
    pub(super) fn write(&mut self, g: &mut Group<'_>, peers: &NodeMap<Arc<PeerState>>) {
        for (directive_id, copies) in std::mem::take(&mut g.copies) {
            let first = copies[0].1.clone();
            // Copies made with another trace (two events of the group queuing the same
            // directive) keep their own entries, so each still carries its own trace.
            let (fanned, lone): (Vec<_>, Vec<_>) = copies.into_iter().partition(|(_, e)| {
                e.trace_context == first.trace_context && e.message_id == first.message_id
            });
            let lone = if fanned.len() < 2 {
                fanned.into_iter().chain(lone).collect()
            } else {
                self.record(g, peers, directive_id, &first, fanned);
                lone
            };
            for (peer, entry) in lone {
                g.runs.entry(peer).or_default().push(entry);
            }
        }
        for (peer, mut entries) in std::mem::take(&mut g.runs) {
            if let [entry] = entries.as_slice() {
                g.txn
                    .put(records::outbox(&peer, entry.seq), encode(&**entry));
                continue;
            }
            entries.sort_by_key(|e| e.seq);
            let key: Arc<[u8]> = records::outbox_run(&uuid::Uuid::now_v7()).into();
            let run = OutboxRun {
                peer: peer.to_string(),
                entries: entries.iter().map(|e| OutboxEntry::clone(e)).collect(),
            };
            let copies = peers
                .get(&peer)
                .into_iter()
                .flat_map(|p| entries.iter().map(move |e| (p, e.seq)));
            self.index(key.clone(), copies);
            g.txn.put(key.to_vec(), encode(&run));
        }
        for key in self.stale.drain(..) {
            g.txn.delete(key.to_vec());
        }
    }

    fn record(
        &mut self,
        g: &mut Group<'_>,
        peers: &NodeMap<Arc<PeerState>>,
        directive_id: String,
        first: &OutboxEntry,
        fanned: Vec<(NodeId, Arc<OutboxEntry>)>,
    ) {
        let key: Arc<[u8]> = records::fanout(&uuid::Uuid::now_v7()).into();
        let mut record = FanOut {
            enqueued_at_ms: first.enqueued_at_ms,
            message_id: first.message_id.clone(),
            trace_context: first.trace_context.clone(),
            directive_id,
            copies: Vec::with_capacity(fanned.len()),
        };
        for (peer, entry) in &fanned {
            let targets = match &entry.body {
                Some(outbox_entry::Body::Directive(r)) => r.targets.as_slice(),
                _ => &[],
            };
            let targets = if targets == [peer.as_str()] {
                Vec::new()
            } else {
                targets.to_vec()
            };
            record.copies.push(FanCopy {
                peer: peer.to_string(),
                seq: entry.seq,
                targets,
            });
        }
        // Indexed as `load` indexes them: a copy for a peer with no link is never acknowledged.
        let copies = fanned
            .iter()
            .filter_map(|(peer, entry)| peers.get(peer).map(|p| (p, entry.seq)));
        self.index(key.clone(), copies);
        g.txn.put(key.to_vec(), encode(&record));
    }

    /// `peer` acknowledged everything up to `up_to`: takes its copies up to there out of
    /// its index, deletes each record whose last copy that was, and returns the sequence
    /// numbers taken (their entries have no outbox record to delete).
    pub(super) fn acked(
        &mut self,
        g: &mut Group<'_>,
        peer: &PeerState,
        up_to: u64,
    ) -> BTreeSet<u64> {
        let copies = {
            let mut fanned = peer.fanned();
            let later = fanned.split_off(&(up_to + 1));
            std::mem::replace(&mut *fanned, later)
        };
        for key in copies.values() {
            if let Some(left) = self.pending.get_mut(key) {
                *left -= 1;
                if *left == 0 {
                    self.pending.remove(key);
                    g.txn.delete(key.to_vec());
                }
            }
        }
        copies.into_keys().collect()
    }
}

/// `peer`'s outbox entries with sequence numbers in `from..to` as the store holds them, in
/// order: its own entries and its copies in fan-out records. An entry acknowledged (so
/// deleted) while this reads is missing from the result.
pub fn stored_outbox(
    store: &Store,
    peer: &PeerState,
    from: u64,
    to: u64,
) -> Result<Vec<OutboxEntry>, NodeError> {
    if from >= to {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    for item in store.range(
        &records::outbox(&peer.id, from),
        &records::outbox(&peer.id, to),
    ) {
        let (key, value) = item?;
        entries.push(decode::<OutboxEntry>(&key, &value)?);
    }
    let copies: Vec<(u64, Arc<[u8]>)> = peer
        .fanned()
        .range(from..to)
        .map(|(seq, key)| (*seq, key.clone()))
        .collect();
    if copies.is_empty() {
        return Ok(entries);
    }
    let mut read: HashMap<Arc<[u8]>, Option<Packed>> = HashMap::new();
    for (seq, key) in copies {
        if !read.contains_key(&key) {
            let record = match store.get(&key)? {
                Some(value) if key.starts_with(records::OUTBOX_RUN_PREFIX) => {
                    Some(Packed::Run(decode(&key, &value)?))
                }
                Some(value) => Some(Packed::Fan(decode(&key, &value)?)),
                None => None,
            };
            read.insert(key.clone(), record);
        }
        let entry = match read.get(&key) {
            Some(Some(Packed::Fan(record))) => copy_entry(record, &peer.id, seq),
            Some(Some(Packed::Run(run))) => run_entry(run, seq),
            _ => None,
        };
        entries.extend(entry);
    }
    entries.sort_by_key(|e| e.seq);
    Ok(entries)
}

/// A record holding several outbox entries.
enum Packed {
    Fan(FanOut),
    Run(OutboxRun),
}

/// Entry `seq` of a run (its entries are sorted by sequence number).
fn run_entry(run: &OutboxRun, seq: u64) -> Option<OutboxEntry> {
    let i = run.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
    Some(run.entries[i].clone())
}

/// `peer`'s copy `seq` in `record`, as the outbox entry it stands for.
fn copy_entry(record: &FanOut, peer: &NodeId, seq: u64) -> Option<OutboxEntry> {
    let copy = record
        .copies
        .iter()
        .find(|c| c.seq == seq && c.peer == peer.as_str())?;
    let targets = if copy.targets.is_empty() {
        vec![peer.to_string()]
    } else {
        copy.targets.clone()
    };
    Some(OutboxEntry {
        enqueued_at_ms: record.enqueued_at_ms,
        seq,
        message_id: record.message_id.clone(),
        trace_context: record.trace_context.clone(),
        body: Some(outbox_entry::Body::Directive(DirectiveRef {
            id: record.directive_id.clone(),
            targets,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> NodeId {
        name.parse().expect("node id")
    }

    fn peers(names: &[&str]) -> NodeMap<Arc<PeerState>> {
        names
            .iter()
            .map(|n| (id(n), Arc::new(PeerState::new(id(n), Role::Child))))
            .collect()
    }

    fn group(store: &Store) -> Group<'_> {
        Group::new(store.txn(), 7)
    }

    fn queue(
        g: &mut Group<'_>,
        peer: &str,
        seq: u64,
        directive: &str,
        targets: &[&str],
        trace: &str,
    ) {
        let entry = OutboxEntry {
            enqueued_at_ms: g.now,
            seq,
            message_id: directive.to_string(),
            trace_context: HashMap::from([("traceparent".to_string(), trace.to_string())]),
            body: Some(outbox_entry::Body::Directive(DirectiveRef {
                id: directive.to_string(),
                targets: targets.iter().map(|t| t.to_string()).collect(),
            })),
        };
        g.copies
            .entry(directive.to_string())
            .or_default()
            .push((id(peer), Arc::new(entry)));
    }

    fn commit(store: &Store, g: Group<'_>) {
        store.apply(g.txn.into_writes()).expect("apply");
    }

    fn count(store: &Store, prefix: &[u8]) -> usize {
        store.scan_prefix(prefix).count()
    }

    /// (seq, directive, targets, trace) of what `peer`'s outbox holds in the store.
    fn outbox(
        store: &Store,
        peers: &NodeMap<Arc<PeerState>>,
        peer: &str,
    ) -> Vec<(u64, String, Vec<String>, String)> {
        stored_outbox(store, &peers[&id(peer)], 1, 100)
            .expect("read")
            .into_iter()
            .map(|e| {
                assert_eq!(e.enqueued_at_ms, 7);
                let Some(outbox_entry::Body::Directive(r)) = e.body else {
                    panic!("not a directive copy: {e:?}");
                };
                (
                    e.seq,
                    r.id,
                    r.targets,
                    e.trace_context["traceparent"].clone(),
                )
            })
            .collect()
    }

    fn status(g: &mut Group<'_>, peer: &str, seq: u64) {
        let entry = OutboxEntry {
            enqueued_at_ms: g.now,
            seq,
            message_id: format!("m{seq}"),
            trace_context: HashMap::new(),
            body: Some(outbox_entry::Body::Status(isms_proto::v1::StatusReport {
                directive_id: format!("d{seq}"),
                ..Default::default()
            })),
        };
        g.runs.entry(id(peer)).or_default().push(Arc::new(entry));
    }

    /// (seq, message ID) of what `peer`'s outbox holds in the store.
    fn ids(store: &Store, peers: &NodeMap<Arc<PeerState>>, peer: &str) -> Vec<(u64, String)> {
        stored_outbox(store, &peers[&id(peer)], 1, 100)
            .expect("read")
            .into_iter()
            .map(|e| (e.seq, e.message_id))
            .collect()
    }

    #[test]
    fn a_groups_entries_for_one_peer_share_one_run_until_the_last_is_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let names = ["province/11", "enterprise/a"];
        let before = peers(&names);
        let mut fans = Fans::default();
        let mut g = group(&store);
        for seq in 1..=3 {
            status(&mut g, "province/11", seq);
        }
        // A lone directive copy joins the peer's run; a lone report stays an entry; a run
        // for a peer with no link is not kept.
        queue(&mut g, "province/11", 4, "m4", &["province/11"], "t1");
        status(&mut g, "enterprise/a", 1);
        status(&mut g, "province/99", 1);
        status(&mut g, "province/99", 2);
        fans.write(&mut g, &before);
        commit(&store, g);
        assert_eq!(count(&store, records::OUTBOX_RUN_PREFIX), 1);
        assert_eq!(count(&store, b"o/"), 1);
        let s = |v: &str| v.to_string();
        let expect: Vec<(u64, String)> = (1..=4).map(|i| (i, format!("m{i}"))).collect();
        assert_eq!(ids(&store, &before, "province/11"), expect);
        assert_eq!(ids(&store, &before, "enterprise/a"), vec![(1, s("m1"))]);
        let third = stored_outbox(&store, &before[&id("province/11")], 3, 4).expect("read");
        assert_eq!(third.len(), 1);
        assert!(matches!(
            &third[0].body,
            Some(outbox_entry::Body::Status(r)) if r.directive_id == "d3"
        ));

        // A restart finds every entry again from the run.
        let after = peers(&names);
        let mut fans = Fans::load(&store, &after).expect("load");
        assert_eq!(ids(&store, &after, "province/11"), expect);

        let p = &after[&id("province/11")];
        let mut g = group(&store);
        assert_eq!(fans.acked(&mut g, p, 2), BTreeSet::from([1, 2]));
        commit(&store, g);
        assert_eq!(count(&store, records::OUTBOX_RUN_PREFIX), 1);
        assert_eq!(ids(&store, &after, "province/11"), expect[2..].to_vec());

        let mut g = group(&store);
        assert_eq!(fans.acked(&mut g, p, 4), BTreeSet::from([3, 4]));
        commit(&store, g);
        assert_eq!(count(&store, records::OUTBOX_RUN_PREFIX), 0);
        assert_eq!(ids(&store, &after, "province/11"), Vec::new());
    }

    #[test]
    fn a_corrupt_run_is_an_error_naming_its_key_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let names = ["province/11"];
        let before = peers(&names);
        let mut fans = Fans::default();
        let mut g = group(&store);
        for seq in 1..=2 {
            status(&mut g, "province/11", seq);
        }
        fans.write(&mut g, &before);
        commit(&store, g);
        let (key, value) = store
            .scan_prefix(records::OUTBOX_RUN_PREFIX)
            .next()
            .expect("a run")
            .expect("read");
        // Cut short: the format byte is right, the entries do not decode.
        let mut txn = store.txn();
        txn.put(key.clone(), value[..value.len() / 2].to_vec());
        store.apply(txn.into_writes()).expect("apply");

        let named = |e: NodeError| {
            let NodeError::Corrupt(c) = e else {
                panic!("not a corrupt-record error: {e}");
            };
            assert_eq!(c.key, records::CorruptRecord::new(&key, "").key);
        };
        named(stored_outbox(&store, &before[&id("province/11")], 1, 3).expect_err("read"));
        named(Fans::load(&store, &peers(&names)).err().expect("load"));
    }

    #[test]
    fn copies_share_one_record_until_the_last_is_acknowledged_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let names = ["enterprise/a", "enterprise/b", "province/11"];
        let before = peers(&names);
        let mut fans = Fans::default();
        let mut g = group(&store);
        queue(&mut g, "enterprise/a", 1, "d1", &["enterprise/a"], "t1");
        queue(&mut g, "enterprise/b", 1, "d1", &["enterprise/b"], "t1");
        queue(
            &mut g,
            "province/11",
            1,
            "d1",
            &["enterprise/x", "enterprise/y"],
            "t1",
        );
        // A copy made under another trace, and another directive's lone copy: entries.
        queue(&mut g, "enterprise/b", 2, "d1", &["enterprise/b"], "t2");
        queue(&mut g, "enterprise/a", 2, "d2", &["enterprise/a"], "t1");
        fans.write(&mut g, &before);
        commit(&store, g);
        assert_eq!(count(&store, records::FANOUT_PREFIX), 1);
        assert_eq!(count(&store, b"o/"), 2);

        let s = |v: &str| v.to_string();
        let expect_a = vec![
            (1, s("d1"), vec![s("enterprise/a")], s("t1")),
            (2, s("d2"), vec![s("enterprise/a")], s("t1")),
        ];
        let expect_b = vec![
            (1, s("d1"), vec![s("enterprise/b")], s("t1")),
            (2, s("d1"), vec![s("enterprise/b")], s("t2")),
        ];
        let expect_p = vec![(
            1,
            s("d1"),
            vec![s("enterprise/x"), s("enterprise/y")],
            s("t1"),
        )];
        assert_eq!(outbox(&store, &before, "enterprise/a"), expect_a);
        assert_eq!(outbox(&store, &before, "enterprise/b"), expect_b);
        assert_eq!(outbox(&store, &before, "province/11"), expect_p);

        // A restart finds every copy again from the record.
        let after = peers(&names);
        let mut fans = Fans::load(&store, &after).expect("load");
        assert_eq!(outbox(&store, &after, "enterprise/a"), expect_a);
        assert_eq!(outbox(&store, &after, "enterprise/b"), expect_b);
        assert_eq!(outbox(&store, &after, "province/11"), expect_p);

        // Two of three copies acknowledged: the record stays for the third.
        let mut g = group(&store);
        let a = &after[&id("enterprise/a")];
        assert_eq!(fans.acked(&mut g, a, 2), BTreeSet::from([1]));
        let b = &after[&id("enterprise/b")];
        assert_eq!(fans.acked(&mut g, b, 1), BTreeSet::from([1]));
        assert_eq!(
            fans.acked(&mut g, b, 1),
            BTreeSet::new(),
            "acknowledged twice"
        );
        commit(&store, g);
        assert_eq!(count(&store, records::FANOUT_PREFIX), 1);
        assert_eq!(outbox(&store, &after, "enterprise/a")[0].0, 2);
        assert_eq!(outbox(&store, &after, "province/11"), expect_p);

        let mut g = group(&store);
        let p = &after[&id("province/11")];
        assert_eq!(fans.acked(&mut g, p, 1), BTreeSet::from([1]));
        commit(&store, g);
        assert_eq!(count(&store, records::FANOUT_PREFIX), 0);
        assert_eq!(outbox(&store, &after, "province/11"), Vec::new());
    }

    #[test]
    fn a_record_left_with_no_configured_peer_is_deleted_by_the_first_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let gone = peers(&["enterprise/a", "enterprise/b"]);
        let mut g = group(&store);
        queue(&mut g, "enterprise/a", 1, "d1", &["enterprise/a"], "t1");
        queue(&mut g, "enterprise/b", 1, "d1", &["enterprise/b"], "t1");
        Fans::default().write(&mut g, &gone);
        commit(&store, g);
        assert_eq!(count(&store, records::FANOUT_PREFIX), 1);

        let now = peers(&["enterprise/c"]);
        let mut fans = Fans::load(&store, &now).expect("load");
        let mut g = group(&store);
        fans.write(&mut g, &now);
        commit(&store, g);
        assert_eq!(count(&store, records::FANOUT_PREFIX), 0);
    }
}

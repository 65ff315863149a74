//! Delivered runs: a province's acknowledgment "everything up to N" applied at the issuer as
//! one record (`DeliveredRun`, `records::delivered_run`) instead of a target write and a
//! clock entry per directive it covers.
//!
//! A province's target record keeps the place of its copy in the province's outbox
//! (`TargetRecord.outbox_seq`, written with `queued` in the same block). While the record
//! still says `queued`, the run that covers that place says the rest: `delivered` at the
//! run's time, and the confirmation deadline it started. Readers resolve it here
//! (`resolve_stored` for views over the store, `Core::target` inside the core); the first
//! write of the record for another reason (the province's decision, the clock running out,
//! the run retiring) stores what was derived. A run's clocks are index entries ordered by
//! deadline (`records::delivered_clock`), one per distinct deadline; the last one, never
//! earlier than `RETIRE_AFTER_MS` after the run, retires it.
//!
//! Must not: decide a clock is met or write a target for any other reason than the above;
//! `clocks` and `status` own those.

use isms_proto::record::{DeliveredCopy, DeliveredRun};

use super::*;

/// How long a run with no clock (an emergency's, which needs no confirmation) stays before
/// it retires: its provinces have reported where they are long before.
const RETIRE_AFTER_MS: i64 = 10 * 60 * 1000;

/// The runs not yet retired, by peer and the number that ends them.
#[derive(Default)]
pub(super) struct DeliveredRuns {
    by_peer: HashMap<String, BTreeMap<u64, Arc<DeliveredRun>>>,
}

impl DeliveredRuns {
    pub(super) fn load(store: &Store) -> Result<Self, NodeError> {
        let mut runs = DeliveredRuns::default();
        for item in store.scan_prefix(records::DELIVERED_RUN_PREFIX) {
            let (key, value) = item?;
            runs.insert(Arc::new(decode(&key, &value)?));
        }
        Ok(runs)
    }

    fn insert(&mut self, run: Arc<DeliveredRun>) {
        self.by_peer
            .entry(run.peer.clone())
            .or_default()
            .insert(run.up_to, run);
    }

    fn get(&self, peer: &str, up_to: u64) -> Option<Arc<DeliveredRun>> {
        self.by_peer.get(peer)?.get(&up_to).cloned()
    }

    fn remove(&mut self, peer: &str, up_to: u64) {
        if let Some(runs) = self.by_peer.get_mut(peer) {
            runs.remove(&up_to);
        }
    }

    /// The run covering `peer`'s copy `seq`, and that copy.
    fn copy(&self, peer: &str, seq: u64) -> Option<(&DeliveredRun, &DeliveredCopy)> {
        let (_, run) = self.by_peer.get(peer)?.range(seq..).next()?;
        copy_in(run, seq).map(|c| (&**run, c))
    }

    /// `rec` of target `node` as its run says, if it is still `queued` with a copy a run
    /// covers.
    pub(super) fn resolve(&self, node: &str, rec: &mut TargetRecord) {
        if !waits_for_run(rec) {
            return;
        }
        if let Some((run, copy)) = self.copy(node, rec.outbox_seq) {
            apply(run, copy, rec);
        }
    }
}

fn waits_for_run(rec: &TargetRecord) -> bool {
    rec.state == TargetState::Queued as i32 && rec.outbox_seq != 0
}

/// Whether `rec` is still `queued` for the copy `copy` stands for (or for a copy queued
/// before records kept their place: `outbox_seq` 0).
fn covered(rec: &TargetRecord, copy: &DeliveredCopy) -> bool {
    rec.state == TargetState::Queued as i32 && (rec.outbox_seq == copy.seq || rec.outbox_seq == 0)
}

fn copy_in(run: &DeliveredRun, seq: u64) -> Option<&DeliveredCopy> {
    if seq < run.from_seq || seq > run.up_to {
        return None;
    }
    let i = run.copies.binary_search_by_key(&seq, |c| c.seq).ok()?;
    Some(&run.copies[i])
}

/// What a run says of its copy, onto a record still `queued`.
fn apply(run: &DeliveredRun, copy: &DeliveredCopy, rec: &mut TargetRecord) {
    rec.state = TargetState::Delivered as i32;
    rec.updated_at_ms = rec.updated_at_ms.max(run.at_ms);
    if rec.delivered_at_ms == 0 {
        rec.delivered_at_ms = run.at_ms;
    }
    if rec.deadline_ms == 0 {
        rec.deadline_ms = copy.deadline_ms;
    }
}

/// `rec` of province `node` as read from the store by a view: resolved through the store's
/// run records (one range read), as the core resolves it through its own.
pub fn resolve_stored(store: &Store, node: &str, rec: &mut TargetRecord) -> Result<(), NodeError> {
    if !waits_for_run(rec) {
        return Ok(());
    }
    let from = records::delivered_run(node, rec.outbox_seq);
    let to = records::delivered_run(node, u64::MAX);
    if let Some(item) = store.range(&from, &to).next() {
        let (key, value) = item?;
        let run: DeliveredRun = decode(&key, &value)?;
        if let Some(copy) = copy_in(&run, rec.outbox_seq) {
            apply(&run, copy, rec);
        }
    }
    Ok(())
}

impl Core {
    /// Whether `peer`'s acknowledgments are applied as delivered runs: a province this node
    /// sends directives to (the ministry's children), not a parent relaying a request.
    pub(super) fn delivered_by_run(&self, peer: &NodeId) -> bool {
        peer.tier() == Tier::Province && self.parent.as_ref() != Some(peer)
    }

    /// Province `peer` holds its outbox up to `up_to`: the directive copies among `entries`
    /// are delivered, as one run record and its clock entries.
    pub(super) fn delivered_run(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        from_seq: u64,
        up_to: u64,
        entries: &[Arc<OutboxEntry>],
    ) -> Result<(), NodeError> {
        let mut copies = Vec::new();
        for entry in entries {
            let Some(outbox_entry::Body::Directive(r)) = &entry.body else {
                continue;
            };
            let Some(meta) = self.stored_meta(g, &r.id)? else {
                continue;
            };
            let deadline_ms = if Urgency::try_from(meta.urgency) == Ok(Urgency::Emergency) {
                0 // an emergency needs no confirmation
            } else {
                match self.confirm_deadline(meta.urgency, g.now) {
                    Ok(deadline) => deadline,
                    Err(e) => {
                        // Said on the record, as a clock the calendar cannot give is not
                        // guessed: the one write such a copy costs.
                        tracing::error!(directive = %r.id, %peer, error = %e,
                            "cannot start the confirmation clock");
                        let why = format!("no confirmation clock: {e}");
                        let key = self.target_key(&r.id, peer.as_str());
                        g.targets.update(&g.txn, key, peer.as_str(), |rec| {
                            (rec.state != 0).then(|| rec.detail = why)
                        })?;
                        0
                    }
                }
            };
            copies.push(DeliveredCopy {
                seq: entry.seq,
                directive_id: r.id.clone(),
                deadline_ms,
            });
        }
        if copies.is_empty() {
            return Ok(());
        }
        let run = DeliveredRun {
            peer: peer.to_string(),
            from_seq,
            up_to,
            at_ms: g.now,
            copies,
        };
        for deadline in clock_deadlines(&run) {
            g.txn.put(
                records::delivered_clock(deadline, &run.peer, up_to),
                Vec::new(),
            );
        }
        g.txn
            .put(records::delivered_run(&run.peer, up_to), encode(&run));
        self.delivered_runs.insert(Arc::new(run));
        Ok(())
    }

    /// Runs the delivered runs' clocks that are due: a copy whose province has not decided
    /// by its deadline is overdue, once; a run's last clock retires it, storing on each
    /// record still `queued` what the run said of it.
    pub(super) fn check_delivered_clocks(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        for (key, _) in self.due(records::DELIVERED_CLOCK_PREFIX, g.now)? {
            g.txn.delete(key.clone());
            let Some((deadline, peer, up_to)) = records::delivered_clock_subject(&key) else {
                continue;
            };
            let Some(run) = self.delivered_runs.get(&peer, up_to) else {
                continue;
            };
            for copy in run.copies.iter().filter(|c| c.deadline_ms == deadline) {
                let key = self.target_key(&copy.directive_id, &peer);
                let Some(mut rec) = g.targets.get(&g.txn, key, &peer)? else {
                    continue;
                };
                if covered(&rec, copy) {
                    apply(&run, copy, &mut rec);
                } else if rec.deadline_ms == 0 {
                    // Decided before its acknowledgment was applied: the clock is still this.
                    rec.deadline_ms = copy.deadline_ms;
                }
                self.clock_ran_out(g, &copy.directive_id, &peer, rec)?;
            }
            if clock_deadlines(&run).last() == Some(&deadline) {
                self.retire_run(g, &run)?;
            }
        }
        Ok(())
    }

    fn retire_run(&mut self, g: &mut Group<'_>, run: &DeliveredRun) -> Result<(), NodeError> {
        for copy in &run.copies {
            let key = self.target_key(&copy.directive_id, &run.peer);
            g.targets.update(&g.txn, key, &run.peer, |rec| {
                if !covered(rec, copy) {
                    return None;
                }
                apply(run, copy, rec);
                Some(())
            })?;
        }
        g.txn.delete(records::delivered_run(&run.peer, run.up_to));
        self.delivered_runs.remove(&run.peer, run.up_to);
        Ok(())
    }
}

/// The deadlines a run's clock entries are at, in order; the last retires it.
fn clock_deadlines(run: &DeliveredRun) -> Vec<i64> {
    let mut deadlines: Vec<i64> = run
        .copies
        .iter()
        .map(|c| c.deadline_ms)
        .filter(|d| *d != 0)
        .collect();
    deadlines.push(run.at_ms + RETIRE_AFTER_MS);
    deadlines.sort_unstable();
    deadlines.dedup();
    deadlines
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_000_000;

    fn run(peer: &str, from_seq: u64, copies: &[(u64, i64)]) -> DeliveredRun {
        DeliveredRun {
            peer: peer.to_string(),
            from_seq,
            up_to: copies.last().map_or(from_seq, |c| c.0),
            at_ms: AT,
            copies: copies
                .iter()
                .map(|&(seq, deadline_ms)| DeliveredCopy {
                    seq,
                    directive_id: format!("d{seq}"),
                    deadline_ms,
                })
                .collect(),
        }
    }

    fn queued(seq: u64) -> TargetRecord {
        TargetRecord {
            state: TargetState::Queued as i32,
            queued_at_ms: 5,
            updated_at_ms: 5,
            outbox_seq: seq,
            ..TargetRecord::default()
        }
    }

    #[test]
    fn a_run_retires_at_its_last_deadline_or_a_floor_after_it() {
        let later = AT + 2 * RETIRE_AFTER_MS;
        assert_eq!(
            clock_deadlines(&run("province/11", 1, &[(1, later), (2, 0), (3, later)])),
            vec![AT + RETIRE_AFTER_MS, later]
        );
        // Only emergencies: no clock but the one that retires it.
        assert_eq!(
            clock_deadlines(&run("province/11", 1, &[(1, 0), (2, 0)])),
            vec![AT + RETIRE_AFTER_MS]
        );
    }

    #[test]
    fn a_queued_record_reads_as_delivered_only_inside_its_run() {
        let mut runs = DeliveredRuns::default();
        runs.insert(Arc::new(run("province/11", 4, &[(5, 77), (7, 0)])));
        let mut rec = queued(5);
        runs.resolve("province/11", &mut rec);
        assert_eq!(rec.state, TargetState::Delivered as i32);
        assert_eq!((rec.delivered_at_ms, rec.deadline_ms), (AT, 77));
        // Another province's copy with the same number, a number past the run, a number
        // the run covers that was no directive, and a record that moved on: unchanged.
        for (peer, rec) in [
            ("province/12", queued(5)),
            ("province/11", queued(8)),
            ("province/11", queued(6)),
            (
                "province/11",
                TargetRecord {
                    state: TargetState::Confirmed as i32,
                    ..queued(5)
                },
            ),
        ] {
            let mut resolved = rec.clone();
            runs.resolve(peer, &mut resolved);
            assert_eq!(resolved, rec, "{peer}");
        }
    }

    #[test]
    fn views_resolve_through_the_stored_runs_as_the_core_does() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let mut txn = store.txn();
        for r in [
            run("province/11", 1, &[(1, 10), (3, 30)]),
            run("province/11", 4, &[(6, 60)]),
            run("province/110", 1, &[(2, 20)]),
        ] {
            txn.put(records::delivered_run(&r.peer, r.up_to), encode(&r));
        }
        store.apply(txn.into_writes()).expect("apply");
        let loaded = DeliveredRuns::load(&store).expect("load");
        for (peer, seq, deadline) in [
            ("province/11", 3, Some(30)),
            ("province/11", 6, Some(60)),
            ("province/11", 2, None),
            ("province/11", 7, None),
            ("province/110", 2, Some(20)),
            ("province/110", 1, None),
        ] {
            let mut from_store = queued(seq);
            resolve_stored(&store, peer, &mut from_store).expect("resolve");
            let mut in_core = queued(seq);
            loaded.resolve(peer, &mut in_core);
            assert_eq!(from_store, in_core, "{peer} {seq}");
            let want = deadline.map_or(TargetState::Queued, |_| TargetState::Delivered);
            assert_eq!(from_store.state, want as i32, "{peer} {seq}");
            assert_eq!(
                from_store.deadline_ms,
                deadline.unwrap_or(0),
                "{peer} {seq}"
            );
        }
    }

    #[test]
    fn clock_keys_name_their_run_and_bad_ones_name_nothing() {
        let key = records::delivered_clock(1234, "province/11", 99);
        assert_eq!(
            records::delivered_clock_subject(&key),
            Some((1234, "province/11".to_string(), 99))
        );
        assert!(key.starts_with(records::DELIVERED_CLOCK_PREFIX));
        for bad in [
            b"dk/".to_vec(),
            b"dk/12345678".to_vec(),
            key[..key.len() - 1].to_vec(),
            b"k/whatever".to_vec(),
        ] {
            assert_eq!(records::delivered_clock_subject(&bad), None, "{bad:?}");
        }
    }
}

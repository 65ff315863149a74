//! The audit trail: one record per operator action, written in the same
//! group as the action itself, as a hash chain: record `seq` carries the SHA-256 of the
//! stored bytes of record `seq - 1`, so a record altered, removed or moved breaks the chain
//! at that record, and `verify_chain` names it.
//!
//! Must not be written by anyone but the core (the chain has one writer, like the store),
//! nor rewritten: records are appended; pruning by retention is the only removal to come.

use super::*;
use isms_domain::audit_chain;

/// The chain's head: the last record's sequence number and the hash of its stored bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct AuditChain {
    pub(super) seq: u64,
    pub(super) head: [u8; 32],
}

/// Appends an action to the audit trail, in this group's batch.
pub(super) fn audit(g: &mut Group<'_>, who: &Caller, action: &str, subject: &str, outcome: &str) {
    let seq = g.audit.seq + 1;
    let rec = AuditRecord {
        at_ms: g.now,
        operator: who.operator.clone(),
        action: action.to_string(),
        subject: subject.to_string(),
        outcome: outcome.to_string(),
        seq,
        prev_hash: if seq == 1 {
            Vec::new()
        } else {
            g.audit.head.to_vec()
        },
        peer: who.peer.clone(),
        args_digest: who.args_digest.clone(),
    };
    let bytes = encode(&rec);
    g.audit = AuditChain {
        seq,
        head: audit_chain::hash(&bytes),
    };
    g.txn.put(records::audit(seq), bytes);
}

/// The head of the chain in `store`, read at start: its last record. The first start on a
/// store chains the records of an older layout (keyed by time, unchained) in their time
/// order, and marks the store as chained, in one batch; later starts read one record.
pub(super) fn load_chain(store: &Store) -> Result<AuditChain, NodeError> {
    if store.get(records::AUDIT_CHAINED)?.is_some() {
        let Some(last) = store.scan_prefix(records::AUDIT_PREFIX).next_back() else {
            // Every record pruned (none for longer than the retention): the chain goes on
            // from the last one pruned.
            let state: isms_proto::record::AuditState = match store.get(records::AUDIT_STATE)? {
                Some(v) => decode(records::AUDIT_STATE, &v)?,
                None => Default::default(),
            };
            return Ok(AuditChain {
                seq: state.pruned_through,
                head: state.pruned_hash.as_slice().try_into().unwrap_or([0; 32]),
            });
        };
        let (k, v) = last?;
        let seq = records::audit_seq(&k).ok_or_else(|| {
            records::CorruptRecord::new(&k, "an audit record outside the chain's key layout")
        })?;
        return Ok(AuditChain {
            seq,
            head: audit_chain::hash(&v),
        });
    }
    let mut old = Vec::new();
    let mut chain = AuditChain::default();
    for entry in store.scan_prefix(records::AUDIT_PREFIX) {
        let (k, v) = entry?;
        match records::audit_seq(&k) {
            Some(seq) => {
                chain = AuditChain {
                    seq,
                    head: audit_chain::hash(&v),
                }
            }
            None => old.push((k, v)),
        }
    }
    if old.is_empty() {
        let mut txn = store.txn();
        txn.put(records::AUDIT_CHAINED.to_vec(), vec![1]);
        store.apply(txn.into_writes())?;
        store.sync()?;
        return Ok(chain);
    }
    if chain.seq != 0 {
        return Err(records::CorruptRecord::new(
            records::AUDIT_PREFIX,
            "audit records of both layouts: a chain and unchained records",
        )
        .into());
    }
    let mut g = Group::new(store.txn(), 0);
    for (k, v) in old {
        let rec: AuditRecord = decode(&k, &v)?;
        g.txn.delete(k);
        g.now = rec.at_ms;
        let who = Caller {
            operator: rec.operator.clone(),
            ..Default::default()
        };
        audit(&mut g, &who, &rec.action, &rec.subject, &rec.outcome);
    }
    let chained = g.audit;
    g.txn.put(records::AUDIT_CHAINED.to_vec(), vec![1]);
    store.apply(g.txn.into_writes())?;
    store.sync()?;
    tracing::info!(
        records = chained.seq,
        "audit records of an older store chained"
    );
    Ok(chained)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(store: &Store, n: u64) -> AuditChain {
        let mut g = Group::new(store.txn(), 1_000);
        for i in 0..n {
            audit(
                &mut g,
                &Caller::named("alice"),
                "directive.issue",
                &format!("d{i}"),
                "ok",
            );
        }
        let chain = g.audit;
        store.apply(g.txn.into_writes()).expect("apply");
        chain
    }

    fn raw(store: &Store, seq: u64) -> Vec<u8> {
        store
            .get(&records::audit(seq))
            .expect("get")
            .expect("record")
    }

    fn put(store: &Store, key: Vec<u8>, value: Option<Vec<u8>>) {
        let mut txn = store.txn();
        match value {
            Some(v) => txn.put(key, v),
            None => txn.delete(key),
        }
        store.apply(txn.into_writes()).expect("apply");
    }

    #[test]
    fn an_untouched_chain_verifies_and_its_head_is_found_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(verify_chain(&store, "n"), Ok(0));
        let chain = chain_of(&store, 5);
        assert_eq!(chain.seq, 5);
        assert_eq!(verify_chain(&store, "n"), Ok(5));
        assert_eq!(load_chain(&store).expect("load"), chain);
        // Appending after a restart continues the same chain.
        let mut g = Group::new(store.txn(), 2_000);
        g.audit = load_chain(&store).expect("load");
        audit(
            &mut g,
            &Caller::named("bob"),
            "directive.confirm",
            "d9",
            "ok",
        );
        store.apply(g.txn.into_writes()).expect("apply");
        assert_eq!(verify_chain(&store, "n"), Ok(6));
    }

    #[test]
    fn an_altered_byte_a_removed_record_and_swapped_records_are_each_named() {
        for case in ["altered", "reworded", "removed", "swapped", "garbage"] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("open");
            chain_of(&store, 6);
            match case {
                "altered" => {
                    let mut v = raw(&store, 3);
                    let last = v.len() - 1;
                    v[last] ^= 1; // one byte of its link to record 2
                    put(&store, records::audit(3), Some(v));
                }
                "reworded" => {
                    // Its subject, "d2", becomes "d7": still a valid record.
                    let mut v = raw(&store, 3);
                    let at = v.windows(2).position(|w| w == b"d2").expect("subject");
                    v[at + 1] = b'7';
                    put(&store, records::audit(3), Some(v));
                }
                "removed" => put(&store, records::audit(4), None),
                "swapped" => {
                    let (a, b) = (raw(&store, 2), raw(&store, 5));
                    put(&store, records::audit(2), Some(b));
                    put(&store, records::audit(5), Some(a));
                }
                _ => put(&store, records::audit(6), Some(vec![1, 0xff, 0xff])),
            }
            let broken = verify_chain(&store, "n").expect_err(case);
            let (seq, word) = match case {
                "altered" | "reworded" => (3, "altered"),
                "removed" => (4, "missing"),
                "swapped" => (2, "out of place"),
                _ => (6, "does not decode"),
            };
            assert_eq!(broken.seq, seq, "{case}: {broken}");
            assert!(broken.why.contains(word), "{case}: {broken}");
        }
    }

    #[test]
    fn records_of_an_older_store_are_chained_once_in_time_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut txn = store.txn();
        for (at, subject) in [(30_i64, "third"), (10, "first"), (20, "second")] {
            let mut k = records::AUDIT_PREFIX.to_vec();
            k.extend_from_slice(&at.to_be_bytes());
            k.extend_from_slice(uuid::Uuid::now_v7().as_bytes());
            let rec = AuditRecord {
                at_ms: at,
                operator: "alice".into(),
                action: "directive.issue".into(),
                subject: subject.into(),
                outcome: "ok".into(),
                ..Default::default()
            };
            txn.put(k, encode(&rec));
        }
        store.apply(txn.into_writes()).expect("apply");
        let chain = load_chain(&store).expect("chained");
        assert_eq!(chain.seq, 3);
        assert_eq!(verify_chain(&store, "n"), Ok(3));
        let subjects: Vec<String> = (1..=3)
            .map(|s| {
                decode::<AuditRecord>(&records::audit(s), &raw(&store, s))
                    .expect("rec")
                    .subject
            })
            .collect();
        assert_eq!(subjects, ["first", "second", "third"]);
        assert_eq!(load_chain(&store).expect("again"), chain);
    }
}

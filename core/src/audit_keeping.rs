//! Keeping the audit trail beyond appending to it: this node signs its
//! chain's head daily with its node key and sends it up, where the parent keeps it with
//! its children's heads; an export of the chain is recorded, and records older than the
//! retention are pruned, from the front, only up to what was exported. The state of all
//! this is one record (`records::AUDIT_STATE`).
//!
//! Must not prune a record that was not exported, or one younger than the retention; nor
//! take a child's head signed by anyone but that child.

use super::*;
use isms_domain::audit_chain::{self, Anchor, ChainBreak, HeadSigner, Start};
use isms_domain::identity::Identity;
use isms_proto::record::AuditState;
use isms_proto::v1::AuditHead;

/// What this node needs to sign its heads and check its children's.
#[derive(Debug, Clone, Default)]
pub struct AuditKeeping {
    /// The node key; none: heads are not signed (a core run without a node's files).
    pub signer: Option<Arc<HeadSigner>>,
    /// The node's certificate (DER), sent with each head to check its signature.
    pub certificate: Vec<u8>,
    pub trust_domain: String,
    /// Records younger than this are never pruned (`audit.retention_days`).
    pub retention_ms: i64,
}

/// How often the head is signed.
const ANCHOR_EVERY_MS: i64 = 24 * 3_600_000;
/// Most records one tick prunes, so a first prune of a long chain does not make one huge
/// batch; the next ticks go on.
const PRUNE_PER_TICK: usize = 1_000;

pub(super) fn audit_state(g: &Group<'_>) -> Result<AuditState, NodeError> {
    Ok(g.read(records::AUDIT_STATE)?.unwrap_or_default())
}

impl Core {
    /// Signs the chain's head if a day has passed since the last signed one (or none was,
    /// and there are records), keeps it, and queues it to the parent.
    pub(super) fn anchor_audit(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        let Some(signer) = self.keeping.signer.clone() else {
            return Ok(());
        };
        let mut state = audit_state(g)?;
        let due = match &state.anchored {
            None => g.audit.seq > 0,
            Some(h) => h.seq < g.audit.seq && g.now - h.at_ms >= ANCHOR_EVERY_MS,
        };
        if !due {
            return Ok(());
        }
        let mut head = AuditHead {
            node: self.shared.node_id.to_string(),
            seq: g.audit.seq,
            hash: g.audit.head.to_vec(),
            at_ms: g.now,
            certificate: self.keeping.certificate.clone(),
            signature: Vec::new(),
        };
        if let Err(e) = signer.sign(&mut head) {
            tracing::error!(error = %e, "audit head not signed");
            return Ok(());
        }
        g.txn
            .put(records::audit_head(&head.node, head.seq), encode(&head));
        state.anchored = Some(head.clone());
        g.txn.put(records::AUDIT_STATE.to_vec(), encode(&state));
        if let Some(parent) = self.parent.clone() {
            let id = uuid::Uuid::now_v7().to_string();
            self.enqueue(
                g,
                &parent,
                id,
                HashMap::new(),
                outbox_entry::Body::AuditHead(head.clone()),
            );
        }
        tracing::info!(seq = head.seq, "audit head signed");
        Ok(())
    }

    /// A child's signed head: kept if the child signed it, recorded as refused otherwise;
    /// a head behind one kept before (the child's history cut or rewritten) is kept and
    /// recorded loudly.
    pub(super) fn receive_audit_head(
        &mut self,
        g: &mut Group<'_>,
        from: &NodeId,
        head: AuditHead,
    ) -> Result<(), NodeError> {
        let signer = Identity::Node(from.clone());
        if let Err(e) = audit_chain::verify_head(&head, &signer, &self.keeping.trust_domain) {
            tracing::error!(child = %from, error = %e, "audit head refused");
            audit(
                g,
                &Caller::node(),
                "audit.head",
                from.as_str(),
                &format!("refused head {}: {e}", head.seq),
            );
            return Ok(());
        }
        let newest_kept = self
            .shared
            .store
            .scan_prefix(&records::audit_heads_of(from.as_str()))
            .next_back()
            .transpose()?
            .map(|(k, v)| decode::<AuditHead>(&k, &v))
            .transpose()?;
        if let Some(kept) = newest_kept {
            let behind = head.seq < kept.seq || (head.seq == kept.seq && head.hash != kept.hash);
            if behind {
                tracing::error!(child = %from, kept = kept.seq, now = head.seq, "audit head behind the one kept");
                audit(
                    g,
                    &Caller::node(),
                    "audit.head",
                    from.as_str(),
                    &format!(
                        "REWOUND: head {} signed after head {} was kept; the child's trail \
                         was cut or rewritten",
                        head.seq, kept.seq
                    ),
                );
                // A loss detected below: reported upward as a fault.
                self.report_fault(
                    g,
                    &Caller::node(),
                    "critical",
                    format!("audit trail of {from} rewound"),
                    format!(
                        "head {} signed after head {} was kept: the trail was cut or rewritten",
                        head.seq, kept.seq
                    ),
                    Some("data-loss".into()),
                )?;
            }
        }
        g.txn
            .put(records::audit_head(from.as_str(), head.seq), encode(&head));
        Ok(())
    }

    /// An auditor exported the chain through `through_seq`, whose record hashed to `hash`.
    pub(super) fn audit_exported(
        &mut self,
        g: &mut Group<'_>,
        caller: &Caller,
        through_seq: u64,
        hash: &str,
    ) -> Result<(u64, u64), NodeError> {
        let mut state = audit_state(g)?;
        if through_seq > state.pruned_through {
            let key = records::audit(through_seq);
            let bytes = g
                .txn
                .get(&key)?
                .ok_or_else(|| NodeError::NotFound(format!("audit record {through_seq}")))?;
            let ours = audit_chain::to_hex(&audit_chain::hash(&bytes));
            if !ours.eq_ignore_ascii_case(hash.trim()) {
                return Err(NodeError::State(format!(
                    "the export's record {through_seq} is not this node's: nothing marked \
                     exported"
                )));
            }
        }
        if through_seq > state.exported_through {
            state.exported_through = through_seq;
            g.txn.put(records::AUDIT_STATE.to_vec(), encode(&state));
        }
        audit(
            g,
            caller,
            "audit.exported",
            &through_seq.to_string(),
            &format!("exported through record {}", state.exported_through),
        );
        Ok((state.exported_through, state.pruned_through))
    }

    /// Prunes, from the front, records both exported and older than the retention.
    pub(super) fn prune_audit(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        let mut state = audit_state(g)?;
        if state.exported_through <= state.pruned_through {
            return Ok(());
        }
        let cutoff = g.now.saturating_sub(self.keeping.retention_ms);
        let from = records::audit(state.pruned_through + 1);
        let end = records::audit(state.exported_through + 1);
        let mut pruned = 0;
        for entry in self.shared.store.range(&from, &end).take(PRUNE_PER_TICK) {
            let (k, v) = entry?;
            let rec: AuditRecord = decode(&k, &v)?;
            if rec.at_ms >= cutoff {
                break;
            }
            g.txn.delete(k.to_vec());
            state.pruned_through = rec.seq;
            state.pruned_hash = audit_chain::hash(&v).to_vec();
            pruned += 1;
        }
        if pruned > 0 {
            g.txn.put(records::AUDIT_STATE.to_vec(), encode(&state));
            tracing::info!(
                pruned,
                through = state.pruned_through,
                "audit records pruned"
            );
        }
        Ok(())
    }
}

/// Where the kept chain in `store` starts, and the heads this node signed.
pub(super) fn start_and_anchors(
    store: &Store,
    node: &str,
) -> Result<(Start, Vec<Anchor>), NodeError> {
    let state: AuditState = match store.get(records::AUDIT_STATE)? {
        Some(v) => decode(records::AUDIT_STATE, &v)?,
        None => AuditState::default(),
    };
    let start = Start {
        pruned_through: state.pruned_through,
        pruned_hash: state.pruned_hash.as_slice().try_into().ok(),
    };
    let mut anchors = Vec::new();
    for entry in store.scan_prefix(&records::audit_heads_of(node)) {
        let (k, v) = entry?;
        let head: AuditHead = decode(&k, &v)?;
        anchors.extend(Anchor::of(&head));
    }
    Ok((start, anchors))
}

/// Checks the audit chain in `store` from where it starts, against the heads this node
/// signed; names the first bad record.
pub fn verify_chain(store: &Store, node: &str) -> Result<u64, ChainBreak> {
    let (start, anchors) = start_and_anchors(store, node).map_err(|e| ChainBreak {
        seq: 0,
        why: format!("the chain's state is unreadable: {e}"),
    })?;
    let from = records::audit(start.pruned_through + 1);
    let end = records::audit(u64::MAX);
    audit_chain::verify_anchored(
        store.range(&from, &end).map(|entry| {
            let (k, v) = entry.map_err(|e| format!("unreadable: {e}"))?;
            let seq = records::audit_seq(&k)
                .ok_or_else(|| "a record outside the chain's key layout".to_string())?;
            Ok((seq, v.to_vec()))
        }),
        start,
        &anchors,
    )
}

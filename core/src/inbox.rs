//! The inbox: a large batch from a peer is made durable as received and acknowledged at
//! once, then applied a chunk per group, so a link's backlog drains at the rate the store
//! takes bytes rather than the rate the node can act on messages.
//!
//! Receiving and applying stay exactly-once (DESIGN.md "Links"): a chunk is written in the
//! same batch as the `applied` mark that acknowledges it, and applied in the same batch that
//! deletes it. While a peer's inbox holds anything, everything else from that peer goes
//! behind it, so per-link order holds.

use super::*;

/// Most envelopes a batch may carry and still be applied in the group that receives it.
/// Larger batches (a backlog draining, a burst) go through the inbox.
pub(super) const INLINE_MAX: usize = 64;

/// Envelopes per inbox record, and about how many a group applies from the inboxes: this
/// bounds how long a group spends on them while other events wait.
const CHUNK: usize = 64;

/// Peers' inboxes as the core knows them: the first sequence number of each stored chunk,
/// oldest first. Everything from the front chunk up to the peer's `applied` mark is in it.
#[derive(Default)]
pub(super) struct Inboxes {
    chunks: BTreeMap<NodeId, VecDeque<u64>>,
    /// The peer whose chunk the next group applies, so peers take turns.
    turn: Option<NodeId>,
    pub(super) stats: InboxStats,
}

/// What went through the inboxes since start, logged when the core stops.
#[derive(Default)]
pub(super) struct InboxStats {
    pub(super) chunks_written: u64,
    pub(super) chunks_applied: u64,
    pub(super) envelopes: u64,
}

impl Inboxes {
    /// Reads the chunks left in the store by an earlier run.
    pub(super) fn load(store: &Store, peers: &NodeMap<Arc<PeerState>>) -> Result<Self, NodeError> {
        let mut chunks = BTreeMap::new();
        for id in peers.keys() {
            let mut firsts = VecDeque::new();
            for entry in store.scan_prefix(&records::inbox_prefix(id)) {
                let (key, _) = entry?;
                let first = records::inbox_seq(&key)
                    .ok_or_else(|| records::CorruptRecord::new(&key, "no sequence number"))?;
                firsts.push_back(first);
            }
            if !firsts.is_empty() {
                tracing::info!(peer = %id, chunks = firsts.len(), "inbox chunks left from before; applying them");
                chunks.insert(id.clone(), firsts);
            }
        }
        Ok(Inboxes {
            chunks,
            turn: None,
            stats: InboxStats::default(),
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub(super) fn holds(&self, peer: &NodeId) -> bool {
        self.chunks.contains_key(peer)
    }

    /// Messages from `peer` received and not yet applied, given its `applied` mark.
    pub(super) fn len(&self, peer: &NodeId, applied: u64) -> u64 {
        self.chunks
            .get(peer)
            .and_then(|c| c.front())
            .map_or(0, |first| (applied + 1).saturating_sub(*first))
    }

    /// The peer whose front chunk is next, in turn.
    fn next_peer(&mut self) -> Option<NodeId> {
        let after = self.turn.take();
        let next = after
            .as_ref()
            .and_then(|t| {
                self.chunks
                    .range::<NodeId, _>((std::ops::Bound::Excluded(t), std::ops::Bound::Unbounded))
                    .next()
            })
            .or_else(|| self.chunks.iter().next())
            .map(|(id, _)| id.clone());
        self.turn.clone_from(&next);
        next
    }
}

impl Core {
    /// Whether envelopes from `peer` go through its inbox rather than straight in.
    pub(super) fn to_inbox(&self, peer: &NodeId, envelopes: &[Envelope]) -> bool {
        envelopes.len() > INLINE_MAX || self.inboxes.holds(peer)
    }

    /// Stores the envelopes not yet received from `peer` (checked already) as inbox chunks,
    /// with the `applied` mark that acknowledges them.
    pub(super) fn spill(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        envelopes: Vec<Envelope>,
    ) -> Result<(), NodeError> {
        let applied = self.applied[peer];
        let fresh: Vec<Envelope> = envelopes.into_iter().filter(|e| e.seq > applied).collect();
        let Some(last) = fresh.last().map(|e| e.seq) else {
            return Ok(());
        };
        let firsts = self.inboxes.chunks.entry(peer.clone()).or_default();
        for chunk in fresh.chunks(CHUNK) {
            let first = chunk[0].seq;
            g.txn.put(
                records::inbox(peer, first),
                encode(&isms_proto::v1::Batch::of(chunk, 0)),
            );
            firsts.push_back(first);
            self.inboxes.stats.chunks_written += 1;
        }
        self.inboxes.stats.envelopes += fresh.len() as u64;
        tracing::info!(%peer, envelopes = fresh.len(), "stored in the inbox, to apply a chunk at a time");
        self.applied.insert(peer.clone(), last);
        g.marks.insert(peer.clone());
        Ok(())
    }

    /// Applies inbox chunks, each the oldest of a peer's, peers in turn, until about
    /// `CHUNK` envelopes are applied or the inboxes are empty; deletes them in this group.
    pub(super) fn apply_inbox(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        let mut applied = 0;
        while applied < CHUNK && !self.inboxes.is_empty() {
            applied += self.apply_inbox_chunk(g)?;
        }
        Ok(())
    }

    /// Applies one inbox chunk, the next peer's oldest, and deletes it; returns its size.
    fn apply_inbox_chunk(&mut self, g: &mut Group<'_>) -> Result<usize, NodeError> {
        let Some(peer) = self.inboxes.next_peer() else {
            return Ok(0);
        };
        let Some(first) = self
            .inboxes
            .chunks
            .get_mut(&peer)
            .and_then(VecDeque::pop_front)
        else {
            return Ok(0);
        };
        if self
            .inboxes
            .chunks
            .get(&peer)
            .is_some_and(VecDeque::is_empty)
        {
            self.inboxes.chunks.remove(&peer);
        }
        // Its inbox is shorter now.
        g.touched.insert(peer.clone());
        let key = records::inbox(&peer, first);
        // The chunk was written by this node and checked before; if it is gone or does not
        // decode, the store is damaged and the node stops rather than skip messages.
        let value = g
            .txn
            .get(&key)?
            .ok_or_else(|| records::CorruptRecord::new(&key, "missing"))?;
        let batch: isms_proto::v1::Batch = decode(&key, &value)?;
        let envelopes = batch
            .decode_envelopes()
            .map_err(|e| records::CorruptRecord::new(&key, e.to_string()))?;
        let n = envelopes.len();
        // Applying a checked envelope fails only when the store does (the receive paths
        // record, not return, what they cannot act on), so an error here stops the node,
        // and the chunk is applied again after the restart.
        for env in envelopes {
            self.apply_envelope(g, &peer, env)?;
        }
        g.txn.delete(key);
        self.inboxes.stats.chunks_applied += 1;
        Ok(n)
    }
}

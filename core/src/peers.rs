//! What the core shares with the link sessions and the operator API: each peer's link state
//! and the newest outbox entries in memory (`PeerState`, `OutboxTail`), and the node-wide
//! `Shared` state. The core writes them after each commit; sessions read them.

use super::*;

/// How a peer relates to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Parent,
    Child,
}

/// Whether a link is up, and since when.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkStatus {
    pub up: bool,
    pub since_ms: i64,
    /// Bumped by every new session, so a superseded session does not mark the link down.
    pub session: u64,
}

/// What the rest of the node may know about one peer's link, published after each commit.
#[derive(Debug)]
pub struct PeerState {
    pub id: NodeId,
    pub role: Role,
    /// Highest outbox sequence number that is durable, so safe to send.
    pub durable_out: watch::Sender<u64>,
    /// Highest sequence number from the peer that is durably applied.
    pub durable_applied: AtomicU64,
    /// Highest sequence number the peer acknowledged.
    pub acked: AtomicU64,
    /// Messages from the peer received durably and not yet applied (the inbox).
    pub inbox: AtomicU64,
    pub link: Mutex<LinkStatus>,
    /// The newest durable outbox entries, so link writers and acknowledgments need not
    /// read back from the store what the core just wrote.
    pub tail: Mutex<OutboxTail>,
    /// Where this peer's directive copies held in fan-out records are: sequence number to
    /// record key (`fanout`). Copies not yet acknowledged only.
    pub fanned: Mutex<BTreeMap<u64, Arc<[u8]>>>,
    /// Bytes of frames received from and sent to this peer since start (encoded, before
    /// TLS): what a link carries.
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
}

impl PeerState {
    pub fn new(id: NodeId, role: Role) -> Self {
        PeerState {
            id,
            role,
            durable_out: watch::Sender::new(0),
            durable_applied: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            inbox: AtomicU64::new(0),
            link: Mutex::new(LinkStatus::default()),
            tail: Mutex::new(OutboxTail::default()),
            fanned: Mutex::new(BTreeMap::new()),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
        }
    }

    /// Counts a frame sent to this peer.
    pub fn sent(&self, frame: &isms_proto::Pieces) {
        self.bytes_sent
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
    }

    pub fn tail(&self) -> std::sync::MutexGuard<'_, OutboxTail> {
        // The tail is consistent after every call that changes it; a writer that panicked
        // while reading leaves nothing half done.
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fanned(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<[u8]>>> {
        // Every change to the index is one insert or one split: never half done.
        self.fanned.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A contiguous run of a peer's newest durable outbox entries, in sequence order. Bounded
/// by count and bytes: older entries are dropped from the front and read from the store
/// when needed (a peer offline for long, or one far behind).
#[derive(Debug, Default)]
pub struct OutboxTail {
    /// Sequence number of the first entry held; when empty, of the next one to come.
    pub(super) start: u64,
    entries: VecDeque<(Arc<OutboxEntry>, usize)>,
    bytes: usize,
}

impl OutboxTail {
    const MAX_ENTRIES: usize = 8192;
    const MAX_BYTES: usize = 16 << 20;

    /// The first sequence number held (or, when empty, the next to come).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The entry with sequence number `seq`, if held.
    pub fn get(&self, seq: u64) -> Option<&Arc<OutboxEntry>> {
        let i = usize::try_from(seq.checked_sub(self.start)?).ok()?;
        self.entries.get(i).map(|(e, _)| e)
    }

    /// Appends a durable entry of `size` encoded bytes. One that does not follow the last
    /// one held (the sequence skipped ahead) starts the run anew.
    pub(super) fn push(&mut self, entry: Arc<OutboxEntry>, size: usize) {
        if entry.seq != self.start + self.entries.len() as u64 {
            self.entries.clear();
            self.bytes = 0;
            self.start = entry.seq;
        }
        self.entries.push_back((entry, size));
        self.bytes += size;
        while self.entries.len() > Self::MAX_ENTRIES || self.bytes > Self::MAX_BYTES {
            self.pop_front();
        }
    }

    /// Forgets entries up to and including `seq` (acknowledged by the peer).
    pub(super) fn drop_through(&mut self, seq: u64) {
        while self.entries.front().is_some_and(|(e, _)| e.seq <= seq) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
            self.start += 1;
        }
    }
}

/// State shared by the core, the link sessions and the operator API.
#[derive(Debug)]
pub struct Shared {
    pub node_id: NodeId,
    pub store: Arc<Store>,
    pub peers: NodeMap<Arc<PeerState>>,
    /// Enterprises this node can reach, with the child that leads to each.
    pub directory: NodeMap<NodeId>,
    pub clock: Arc<dyn Clock>,
    pub started_at_ms: i64,
    /// Set when the core stopped on a store failure: the node must exit.
    pub failed: AtomicBool,
    /// Directives stored here, counted once at start and then by the core as it commits,
    /// so a status read does not scan them all.
    pub directives: AtomicU64,
}

/// Each peer's link as an operator (and a heartbeat) shows it, in ID order.
pub fn peer_statuses(shared: &Shared) -> Result<Vec<isms_proto::v1::PeerStatus>, NodeError> {
    let now = shared.now_ms();
    let mut sorted: Vec<&Arc<PeerState>> = shared.peers.values().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut peers = Vec::with_capacity(sorted.len());
    for peer in sorted {
        let link = *peer.link.lock().unwrap_or_else(|p| p.into_inner());
        let durable = *peer.durable_out.borrow();
        let acked = peer.acked.load(Ordering::SeqCst);
        let backlog = durable.saturating_sub(acked);
        let oldest_age_ms = if backlog == 0 {
            0
        } else {
            match fanout::stored_outbox(&shared.store, peer, acked + 1, acked + 2)?.first() {
                Some(e) => (now - e.enqueued_at_ms).max(0),
                None => 0,
            }
        };
        peers.push(isms_proto::v1::PeerStatus {
            peer: peer.id.to_string(),
            role: match peer.role {
                Role::Parent => "parent",
                Role::Child => "child",
            }
            .into(),
            up: link.up,
            since_ms: link.since_ms,
            backlog,
            oldest_age_ms,
            inbox: peer.inbox.load(Ordering::SeqCst),
            bytes_received: peer.bytes_received.load(Ordering::Relaxed),
            bytes_sent: peer.bytes_sent.load(Ordering::Relaxed),
        });
    }
    Ok(peers)
}

impl Shared {
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn peer(&self, id: &NodeId) -> Option<&Arc<PeerState>> {
        self.peers.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Arc<OutboxEntry> {
        Arc::new(OutboxEntry {
            seq,
            ..Default::default()
        })
    }

    fn held(tail: &OutboxTail) -> Vec<u64> {
        tail.entries.iter().map(|(e, _)| e.seq).collect()
    }

    #[test]
    fn outbox_tail_holds_a_contiguous_bounded_run() {
        let mut tail = OutboxTail {
            start: 5,
            ..Default::default()
        };
        assert!(tail.get(5).is_none());
        for seq in 5..=8 {
            tail.push(entry(seq), 10);
        }
        assert_eq!(tail.start(), 5);
        assert_eq!(tail.get(7).map(|e| e.seq), Some(7));
        assert!(tail.get(4).is_none() && tail.get(9).is_none());

        // Acknowledged entries go; an acknowledgment of what is not held changes nothing.
        tail.drop_through(6);
        assert_eq!((tail.start(), held(&tail)), (7, vec![7, 8]));
        tail.drop_through(3);
        assert_eq!(held(&tail), vec![7, 8]);
        tail.drop_through(8);
        assert_eq!((tail.start(), held(&tail), tail.bytes), (9, vec![], 0));

        // A sequence that skipped ahead starts the run anew.
        tail.push(entry(20), 10);
        assert_eq!((tail.start(), held(&tail)), (20, vec![20]));

        // Over the byte bound, the oldest entries are dropped and read from the store.
        tail.push(entry(21), OutboxTail::MAX_BYTES);
        assert_eq!((tail.start(), held(&tail)), (21, vec![21]));
        let mut tail = OutboxTail::default();
        for seq in 0..=OutboxTail::MAX_ENTRIES as u64 {
            tail.push(entry(seq), 1);
        }
        assert_eq!(tail.start(), 1);
        assert_eq!(tail.entries.len(), OutboxTail::MAX_ENTRIES);
    }
}

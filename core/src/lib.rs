//! The node's state machine: one thread owns every write to the store.
//!
//! Link sessions and the operator API send it [`Event`]s. It takes every event waiting in
//! its queue as one group (a small group waits `link.group_linger` for more), applies the
//! group's writes as one atomic batch, syncs the store once (group commit), and only then
//! replies, acknowledges to peers, and lets link writers see the new outbox entries. So
//! nothing is acknowledged or sent before it is durable, and a crash at any point leaves
//! either the whole group or none of it.
//!
//! Per link and direction (DESIGN.md "Links"): an outbox entry is written in the same batch
//! as the state change that caused it, with the next sequence number; an inbound envelope is
//! applied, or stored in the peer's inbox to apply later (`inbox`), in the same batch as the
//! new `applied` mark; a directive reaching a node twice (by its ID) is applied once; target
//! states only move forward, so a repeated status is harmless.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use isms_proto::record::{
    ActiveRule, ActiveRules, AuditRecord, DirectiveMeta, DirectiveRef, OutboxEntry, QueuedTargets,
    StoredDirective, TargetRecord, outbox_entry,
};
use isms_proto::v1::{
    DecisionReply, Directive, DirectiveKind, Envelope, IssueReply, IssueRequest, Rule, RuleOp,
    StatusReport, TargetState, TargetStatus, Urgency, envelope::Payload,
};
use isms_store::{Store, Txn};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::error::NodeError;
use isms_domain::calendar::{Calendar, CalendarError};
use isms_domain::clock::Clock;
use isms_domain::directive::{self, InputError, state_rank};
use isms_domain::identity::{NodeId, NodeMap, NodeSet, Tier};
use isms_domain::records::{self, decode, encode};

pub mod error;
pub mod trace;

mod clocks;
use clocks::clock_satisfied;
mod enterprise;
mod fanout;
mod inbox;
mod province;
mod recent;
use recent::Recent;
mod targets;

pub use enterprise::{RuleFile, RuleFileEntry, active_rules};
pub use fanout::stored_outbox;
pub use targets::{stored_query_results, stored_target, stored_targets};

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
        }
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
    start: u64,
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
    fn push(&mut self, entry: Arc<OutboxEntry>, size: usize) {
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
    fn drop_through(&mut self, seq: u64) {
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

impl Shared {
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn peer(&self, id: &NodeId) -> Option<&Arc<PeerState>> {
        self.peers.get(id)
    }
}

/// Work for the core.
#[derive(Debug)]
pub enum Event {
    /// Envelopes received from a peer, with the acknowledgment they carried (0: none); the
    /// reply is the highest sequence now durably applied from it.
    Inbound {
        peer: NodeId,
        envelopes: Vec<Envelope>,
        ack: u64,
        reply: oneshot::Sender<Result<u64, NodeError>>,
    },
    /// The peer holds everything up to `up_to` durably.
    Acked { peer: NodeId, up_to: u64 },
    /// An operator issues a directive here.
    Issue {
        /// Boxed: a request can carry a whole blacklist.
        request: Box<IssueRequest>,
        operator: String,
        reply: oneshot::Sender<Result<IssueReply, NodeError>>,
    },
    /// Province: an operator confirms or returns a received requirement.
    Decide {
        id: String,
        operator: String,
        decision: Decision,
        reply: oneshot::Sender<Result<DecisionReply, NodeError>>,
    },
    /// Time passed: check the running clocks.
    Tick,
}

/// An operator's decision on a directive waiting at this node.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Province: forward a received requirement.
    Confirm,
    /// Province: send it back; the reason is mandatory.
    Return(String),
    /// Enterprise: the data a correction demand names is corrected and re-reported
    /// the note says what was done.
    Corrected(String),
}

/// Sends events to the core.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    tx: mpsc::Sender<Event>,
}

impl CoreHandle {
    /// Events sent and not yet taken into a group.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub async fn send(&self, event: Event) -> Result<(), NodeError> {
        self.tx
            .send(event)
            .await
            .map_err(|_| NodeError::ShuttingDown)
    }

    /// Sends the event `make` builds around a reply channel, and waits for the reply.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Event,
    ) -> Result<T, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| NodeError::ShuttingDown)?
    }

    pub async fn inbound(
        &self,
        peer: NodeId,
        envelopes: Vec<Envelope>,
        ack: u64,
    ) -> Result<u64, NodeError> {
        self.ask(|reply| Event::Inbound {
            peer,
            envelopes,
            ack,
            reply,
        })
        .await
    }

    pub async fn acked(&self, peer: NodeId, up_to: u64) -> Result<(), NodeError> {
        self.send(Event::Acked { peer, up_to }).await
    }

    pub async fn decide(
        &self,
        id: String,
        operator: String,
        decision: Decision,
    ) -> Result<DecisionReply, NodeError> {
        self.ask(|reply| Event::Decide {
            id,
            operator,
            decision,
            reply,
        })
        .await
    }

    /// Asks the core to check its clocks, unless it is busy (then it will see a later tick).
    pub fn tick(&self) {
        let _ = self.tx.try_send(Event::Tick);
    }

    pub async fn issue(
        &self,
        request: IssueRequest,
        operator: String,
    ) -> Result<IssueReply, NodeError> {
        self.ask(|reply| Event::Issue {
            request: Box::new(request),
            operator,
            reply,
        })
        .await
    }
}

/// Most events committed together; bounds the latency one group adds.
const MAX_GROUP: usize = 4096;

/// A group with fewer events than this waits up to `CoreOptions::linger` for more.
const LINGER_BELOW: usize = 256;

/// Stops the node if the core's thread unwinds.
struct StopOnPanic {
    shared: Arc<Shared>,
    fatal: CancellationToken,
}

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.failed.store(true, Ordering::SeqCst);
            self.fatal.cancel();
        }
    }
}

/// Adds the events already queued to a group, up to `MAX_GROUP`.
fn take_ready(rx: &mut mpsc::Receiver<Event>, events: &mut Vec<Event>) {
    while events.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(e) => events.push(e),
            Err(_) => break,
        }
    }
}

/// What the core needs besides the shared state.
#[derive(Debug, Default)]
pub struct CoreOptions {
    /// The parent statuses go up to; none at the ministry.
    pub parent: Option<NodeId>,
    /// Enterprise: where the active rule set is written.
    pub rules_file: Option<PathBuf>,
    /// The working-day calendar the regulation's clocks run on.
    pub calendar: Option<Arc<Calendar>>,
    /// Province: kinds confirmed on receipt without an operator.
    pub auto_confirm: Vec<DirectiveKind>,
    /// Enterprise: the access log queries are answered from.
    pub access_log: Option<PathBuf>,
    /// How long a small group waits, from its first event, for more to share its commit
    /// (`link.group_linger`). Zero commits at once.
    pub linger: std::time::Duration,
}

pub struct Core {
    shared: Arc<Shared>,
    tier: Tier,
    parent: Option<NodeId>,
    calendar: Option<Arc<Calendar>>,
    auto_confirm: Vec<DirectiveKind>,
    access_log: Option<PathBuf>,
    next_seq: NodeMap<u64>,
    applied: NodeMap<u64>,
    acked: NodeMap<u64>,
    inboxes: inbox::Inboxes,
    fans: fanout::Fans,
    rules_file: Option<PathBuf>,
    fatal: CancellationToken,
    linger: std::time::Duration,
    /// The runtime a lingering group waits on; none outside one (then no linger).
    runtime: Option<tokio::runtime::Handle>,
    /// Decoded target blocks and directive metadata, lent to each group and kept across
    /// groups (see `Group`).
    caches: Option<(targets::Targets, Recent<String, Arc<DirectiveMeta>>)>,
}

/// Directives whose metadata stays decoded; it never changes once written.
const CACHED_METAS: usize = 4096;

enum Reply {
    Inbound(
        oneshot::Sender<Result<u64, NodeError>>,
        Result<u64, NodeError>,
    ),
    Issue(
        oneshot::Sender<Result<IssueReply, NodeError>>,
        Result<IssueReply, NodeError>,
    ),
    Decide(
        oneshot::Sender<Result<DecisionReply, NodeError>>,
        Result<DecisionReply, NodeError>,
    ),
}

/// Status updates headed up for one directive, coalesced within a group.
#[derive(Default)]
struct Upward {
    updates: BTreeMap<String, TargetStatus>,
    trace: HashMap<String, String>,
}

struct Group<'s> {
    txn: Txn<'s>,
    now: i64,
    replies: Vec<Reply>,
    upward: BTreeMap<String, Upward>,
    /// Directives executed once the rules file is written, before this group commits.
    rules_changed: Vec<String>,
    /// The rules file must be rewritten (a directive took effect or lapsed).
    rules_dirty: bool,
    /// Outbox entries written by this group, for the peers' tails once it is durable.
    outbox: Vec<(NodeId, Arc<OutboxEntry>, usize)>,
    /// Directive copies queued by this group, by directive, written at its end (`fanout`).
    copies: BTreeMap<String, Vec<(NodeId, Arc<OutboxEntry>)>>,
    /// Other entries queued by this group, by peer, written at its end (`fanout`): several
    /// for one peer become one outbox run.
    runs: BTreeMap<NodeId, Vec<Arc<OutboxEntry>>>,
    /// Directives this group stored (each new: both callers check first).
    new_directives: u64,
    /// Peers whose link marks this group must write (see `records::encode_marks`).
    marks: NodeSet,
    /// Peers whose link state (applied, acknowledged, queued, inbox) this group may have
    /// changed: the ones `publish` must tell. Those in `marks` and `outbox` join at the
    /// group's end.
    touched: NodeSet,
    /// Target-state blocks, as decoded before and as changed by this group, written at its
    /// end: the node's cache, lent to the group.
    targets: targets::Targets,
    /// Directive metadata, never changed once written: the node's cache, lent to the group.
    metas: Recent<String, Arc<DirectiveMeta>>,
}

impl<'s> Group<'s> {
    fn new(txn: Txn<'s>, now: i64) -> Self {
        Self::with_caches(
            txn,
            now,
            targets::Targets::default(),
            Recent::new(CACHED_METAS),
        )
    }

    fn with_caches(
        txn: Txn<'s>,
        now: i64,
        targets: targets::Targets,
        metas: Recent<String, Arc<DirectiveMeta>>,
    ) -> Self {
        Group {
            txn,
            now,
            replies: Vec::new(),
            upward: BTreeMap::new(),
            rules_changed: Vec::new(),
            rules_dirty: false,
            outbox: Vec::new(),
            copies: BTreeMap::new(),
            runs: BTreeMap::new(),
            new_directives: 0,
            marks: NodeSet::default(),
            touched: NodeSet::default(),
            targets,
            metas,
        }
    }

    /// The record under `key` as this group sees it.
    fn read<M: prost::Message + Default>(&self, key: &[u8]) -> Result<Option<M>, NodeError> {
        Ok(match self.txn.get(key)? {
            Some(v) => Some(decode(key, &v)?),
            None => None,
        })
    }
}

impl Core {
    /// Loads the link counters from the store and starts the core on its own thread.
    /// `fatal` is cancelled if the store fails, so the node stops instead of lying.
    pub fn start(
        shared: Arc<Shared>,
        options: CoreOptions,
        fatal: CancellationToken,
    ) -> Result<(CoreHandle, std::thread::JoinHandle<()>), NodeError> {
        let store = shared.store.clone();
        targets::migrate(&store, &shared.directory)?;
        if shared.node_id.tier() == Tier::Enterprise {
            enterprise::migrate_rules(&store)?;
        }
        let mut core = Core {
            tier: shared.node_id.tier(),
            shared: shared.clone(),
            parent: options.parent,
            calendar: options.calendar,
            auto_confirm: options.auto_confirm,
            access_log: options.access_log,
            next_seq: NodeMap::default(),
            applied: NodeMap::default(),
            acked: NodeMap::default(),
            inboxes: inbox::Inboxes::load(&store, &shared.peers)?,
            fans: fanout::Fans::load(&store, &shared.peers)?,
            rules_file: options.rules_file,
            fatal,
            // An enterprise has one link: there is nothing to gather, only time to lose.
            linger: if shared.node_id.tier() == Tier::Enterprise {
                std::time::Duration::ZERO
            } else {
                options.linger
            },
            runtime: tokio::runtime::Handle::try_current().ok(),
            caches: None,
        };
        for (id, peer) in &shared.peers {
            let (applied, marked_next) = match store.get(&records::marks(id))? {
                Some(v) => records::decode_marks(&records::marks(id), &v)?,
                None => (0, None),
            };
            let legacy_next = match store.get(&records::next_seq(id))? {
                Some(v) => Some(records::decode_u64(&records::next_seq(id), &v)?),
                None => None,
            };
            let mut outbox = store.scan_prefix(&records::outbox_prefix(id));
            let first_entry = outbox
                .next()
                .transpose()?
                .and_then(|(k, _)| records::outbox_seq(&k));
            let last_entry = match outbox.next_back().transpose()? {
                Some((k, _)) => records::outbox_seq(&k),
                None => first_entry, // the outbox holds one entry
            };
            // Copies in fan-out records are in the outbox too.
            let (first_copy, last_copy) = {
                let fanned = peer.fanned();
                (
                    fanned.keys().next().copied(),
                    fanned.keys().next_back().copied(),
                )
            };
            let first_unacked = [first_entry, first_copy].into_iter().flatten().min();
            let last_queued = [last_entry, last_copy].into_iter().flatten().max();
            // The outbox's last entry says the next number while it holds any; the marks
            // say it once it is empty (records::encode_marks).
            let next = [marked_next, legacy_next, last_queued.map(|s| s + 1)]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(1);
            let acked = first_unacked.map_or(next - 1, |s| s - 1);
            core.next_seq.insert(id.clone(), next);
            core.applied.insert(id.clone(), applied);
            core.acked.insert(id.clone(), acked);
            peer.durable_out.send_replace(next - 1);
            peer.tail().start = next;
            peer.durable_applied.store(applied, Ordering::SeqCst);
            peer.acked.store(acked, Ordering::SeqCst);
        }
        let mut directives = 0u64;
        for entry in store.scan_prefix(records::DIRECTIVE_PREFIX) {
            entry?;
            directives += 1;
        }
        shared.directives.store(directives, Ordering::SeqCst);
        if core.tier == Tier::Enterprise {
            core.rewrite_rules_file()?;
        }
        let (tx, rx) = mpsc::channel(8192);
        let thread = std::thread::Builder::new()
            .name("isms-core".into())
            .spawn(move || core.run(rx))
            .map_err(|e| {
                NodeError::Store(isms_store::StoreError::Io {
                    path: PathBuf::from("<core thread>"),
                    source: e,
                })
            })?;
        Ok((CoreHandle { tx }, thread))
    }

    fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        // A panic here must stop the node, not leave it up with no one to write.
        let _stop = StopOnPanic {
            shared: self.shared.clone(),
            fatal: self.fatal.clone(),
        };
        // How well events group is what the node's cost turns on; the log says it at exit.
        let (mut groups, mut events_seen) = (0u64, 0u64);
        loop {
            let mut events: Vec<Event> = Vec::new();
            // With chunks in an inbox to apply, a group runs even when no event waits.
            if self.inboxes.is_empty() {
                match rx.blocking_recv() {
                    Some(e) => events.push(e),
                    None => break,
                }
                let first = std::time::Instant::now();
                take_ready(&mut rx, &mut events);
                self.linger(&mut rx, &mut events, first);
            } else if rx.is_closed() && rx.is_empty() {
                break;
            } else {
                take_ready(&mut rx, &mut events);
            }
            groups += 1;
            events_seen += events.len() as u64;
            if let Err(e) = self.process_group(events) {
                tracing::error!(error = %e, "store failure: stopping the node rather than acknowledge what may not be durable");
                self.shared.failed.store(true, Ordering::SeqCst);
                self.fatal.cancel();
                break;
            }
        }
        tracing::info!(
            groups,
            events = events_seen,
            syncs = self.shared.store.sync_count(),
            inbox_chunks_written = self.inboxes.stats.chunks_written,
            inbox_chunks_applied = self.inboxes.stats.chunks_applied,
            inbox_envelopes = self.inboxes.stats.envelopes,
            "core stopped"
        );
        // Dropping `rx` fails every queued sender with ShuttingDown.
    }

    /// Waits, up to the linger from the group's first event, for more events to share its
    /// commit. The costs that come per group (the fsync, block and fan-out record
    /// rewrites, a status frame to the parent and the parent's own group for it) are most
    /// of a relay's work when reports arrive a few at a time, and a node on a busy machine
    /// loses nothing by letting others run for a few milliseconds (BENCHMARKS.md).
    fn linger(
        &self,
        rx: &mut mpsc::Receiver<Event>,
        events: &mut Vec<Event>,
        first: std::time::Instant,
    ) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        // A stopping node commits at once: its drain has a deadline, and the runtime this
        // wait's timer lives on is gone after it.
        if self.linger.is_zero() || self.fatal.is_cancelled() {
            return;
        }
        let deadline = tokio::time::Instant::from_std(first + self.linger);
        while events.len() < LINGER_BELOW {
            // The timer is made inside: it needs the runtime's context.
            let next = runtime.block_on(async {
                tokio::select! {
                    r = tokio::time::timeout_at(deadline, rx.recv()) => r.ok().flatten(),
                    () = self.fatal.cancelled() => None,
                }
            });
            match next {
                Some(e) => {
                    events.push(e);
                    take_ready(rx, events);
                }
                // The linger is over, the queue closed, or the node is stopping.
                None => break,
            }
        }
    }

    fn process_group(&mut self, events: Vec<Event>) -> Result<(), NodeError> {
        let store = self.shared.store.clone();
        // A group that fails stops the node, so the caches it took need not come back.
        let mut g = match self.caches.take() {
            Some((targets, metas)) => {
                Group::with_caches(store.txn(), self.shared.now_ms(), targets, metas)
            }
            None => Group::new(store.txn(), self.shared.now_ms()),
        };
        for event in events {
            self.handle(&mut g, event)?;
        }
        if !self.inboxes.is_empty() {
            self.apply_inbox(&mut g)?;
        }
        if g.rules_dirty || !g.rules_changed.is_empty() {
            self.execute_rules(&mut g)?;
        }
        self.flush_upward(&mut g)?;
        self.fans.write(&mut g, &self.shared.peers);
        g.targets.write(&mut g.txn);
        g.metas.age();
        for peer in std::mem::take(&mut g.marks) {
            let applied = self.applied.get(&peer).copied().unwrap_or(0);
            let next = self.next_seq.get(&peer).copied().unwrap_or(1);
            g.txn
                .put(records::marks(&peer), records::encode_marks(applied, next));
            g.touched.insert(peer);
        }
        let Group {
            txn,
            replies,
            outbox,
            new_directives,
            targets,
            metas,
            mut touched,
            ..
        } = g;
        let writes = txn.into_writes();
        if !writes.is_empty() {
            store.apply(writes)?;
            store.sync()?;
        }
        // Only now do the caches match the store again.
        self.caches = Some((targets, metas));
        self.shared
            .directives
            .fetch_add(new_directives, Ordering::SeqCst);
        for (peer, entry, size) in outbox {
            if let Some(p) = self.shared.peer(&peer) {
                p.tail().push(entry, size);
            }
            touched.insert(peer);
        }
        self.publish(&touched);
        for reply in replies {
            // A caller that went away no longer needs the answer.
            match reply {
                Reply::Inbound(tx, r) => drop(tx.send(r)),
                Reply::Issue(tx, r) => drop(tx.send(r)),
                Reply::Decide(tx, r) => drop(tx.send(r)),
            }
        }
        Ok(())
    }

    /// Tells link writers and sessions what is now durable, for the peers the group
    /// touched: the others' state is as last published (at start, or by an earlier group),
    /// and telling all 162 of a province's peers after every group was a tenth of its core
    /// thread one directive at a time (BENCHMARKS.md).
    /// What was applied is published before the writers wake, so the reports a group made
    /// go out carrying the acknowledgment of what they answer.
    fn publish(&self, touched: &NodeSet) {
        for id in touched {
            let Some(peer) = self.shared.peer(id) else {
                continue;
            };
            let applied = self.applied.get(id).copied().unwrap_or(0);
            peer.durable_applied.store(applied, Ordering::SeqCst);
            peer.acked
                .store(self.acked.get(id).copied().unwrap_or(0), Ordering::SeqCst);
            peer.inbox
                .store(self.inboxes.len(id, applied), Ordering::SeqCst);
            let out = self.next_seq.get(id).copied().unwrap_or(1) - 1;
            peer.durable_out.send_if_modified(|v| {
                let changed = *v != out;
                *v = out;
                changed
            });
        }
    }

    /// Handles one event. Everything that can be refused is checked before the first write,
    /// so a refused event leaves no trace in the group.
    fn handle(&mut self, g: &mut Group<'_>, event: Event) -> Result<(), NodeError> {
        match event {
            Event::Inbound {
                peer,
                envelopes,
                ack,
                reply,
            } => {
                g.touched.insert(peer.clone());
                if ack != 0 {
                    self.apply_ack(g, &peer, ack)?;
                }
                let result = match self.check_inbound(&peer, &envelopes) {
                    Ok(()) if self.to_inbox(&peer, &envelopes) => self
                        .spill(g, &peer, envelopes)
                        .map(|()| self.applied[&peer]),
                    Ok(()) => self
                        .apply_inbound(g, &peer, envelopes)
                        .map(|()| self.applied[&peer]),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "refused envelopes");
                        Err(e)
                    }
                };
                // Store errors must stop the node; the others only refuse this input.
                let result = match result {
                    Err(NodeError::Store(e)) => return Err(NodeError::Store(e)),
                    r => r,
                };
                g.replies.push(Reply::Inbound(reply, result));
            }
            Event::Acked { peer, up_to } => {
                g.touched.insert(peer.clone());
                self.apply_ack(g, &peer, up_to)?;
            }
            Event::Issue {
                request,
                operator,
                reply,
            } => {
                let result = self.issue(g, *request, &operator);
                let result = match result {
                    Err(NodeError::Store(e)) => return Err(NodeError::Store(e)),
                    r => r,
                };
                g.replies.push(Reply::Issue(reply, result));
            }
            Event::Decide {
                id,
                operator,
                decision,
                reply,
            } => {
                let result = match self.decide(g, &id, &operator, decision) {
                    Err(NodeError::Store(e)) => return Err(NodeError::Store(e)),
                    r => r,
                };
                g.replies.push(Reply::Decide(reply, result));
            }
            Event::Tick => {
                self.check_clocks(g)?;
                if self.tier == Tier::Enterprise {
                    self.check_schedule(g)?;
                }
            }
        }
        Ok(())
    }

    fn check_inbound(&self, peer_id: &NodeId, envelopes: &[Envelope]) -> Result<(), NodeError> {
        let peer = self
            .shared
            .peer(peer_id)
            .ok_or_else(|| NodeError::Forbidden(format!("{peer_id} is not a peer of this node")))?;
        let mut expect = self.applied[peer_id] + 1;
        for env in envelopes {
            if env.seq < expect {
                continue; // already applied: acknowledged again, not applied again
            }
            if env.seq != expect {
                return Err(NodeError::Protocol(format!(
                    "sequence gap from {peer_id}: expected {expect}, got {}",
                    env.seq
                )));
            }
            expect += 1;
            if env.id.is_empty() {
                return Err(NodeError::Protocol(format!(
                    "envelope {} from {peer_id} has no message ID",
                    env.seq
                )));
            }
            match (&env.payload, peer.role) {
                (Some(Payload::Directive(d)), Role::Parent) => check_directive_shape(d)?,
                // A province's own request for assistance from another province is
                // the one directive that travels up, and only to the ministry.
                (Some(Payload::Directive(d)), Role::Child)
                    if self.tier == Tier::Ministry
                        && peer_id.tier() == Tier::Province
                        && d.issuer == peer_id.as_str() =>
                {
                    check_directive_shape(d)?;
                }
                (Some(Payload::Directive(_)), Role::Child) => {
                    return Err(NodeError::Forbidden(format!(
                        "{peer_id} is a child of {}: directives only flow down from a parent",
                        self.shared.node_id
                    )));
                }
                (Some(Payload::Status(s)), Role::Child) => self.check_status_scope(peer_id, s)?,
                // Statuses come down only for what this node issued (assistance, R-6.4).
                (Some(Payload::Status(s)), Role::Parent) => {
                    let issued_here = self
                        .committed_meta(&s.directive_id)?
                        .is_some_and(|m| m.issuer == self.shared.node_id.as_str());
                    if !issued_here {
                        return Err(NodeError::Protocol(format!(
                            "{peer_id} is the parent: status reports only flow up, except for \
                             directives this node issued"
                        )));
                    }
                }
                (None, _) => {
                    return Err(NodeError::Protocol(format!(
                        "envelope {} from {peer_id} has no payload",
                        env.seq
                    )));
                }
            }
        }
        Ok(())
    }

    /// A child may report only on itself and, for a province, its own enterprises.
    fn check_status_scope(&self, child: &NodeId, report: &StatusReport) -> Result<(), NodeError> {
        for u in &report.updates {
            let allowed = u.node == child.as_str()
                || (child.tier() == Tier::Province
                    && self
                        .shared
                        .directory
                        .get(u.node.as_str())
                        .is_some_and(|route| route == child));
            if !allowed {
                return Err(NodeError::Forbidden(format!(
                    "{child} may not report on {}",
                    u.node
                )));
            }
            if TargetState::try_from(u.state).is_err() || u.state == 0 {
                return Err(NodeError::Protocol(format!("unknown state {}", u.state)));
            }
        }
        Ok(())
    }

    fn apply_inbound(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        envelopes: Vec<Envelope>,
    ) -> Result<(), NodeError> {
        let mut applied = self.applied[peer];
        for env in envelopes {
            if env.seq <= applied {
                continue;
            }
            applied = env.seq;
            self.apply_envelope(g, peer, env)?;
        }
        if applied != self.applied[peer] {
            self.applied.insert(peer.clone(), applied);
            g.marks.insert(peer.clone());
        }
        Ok(())
    }

    /// Applies one envelope from `peer`, checked by `check_inbound` before.
    fn apply_envelope(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        env: Envelope,
    ) -> Result<(), NodeError> {
        match env.payload {
            Some(Payload::Directive(d)) => self.receive_directive(g, peer, d, env.trace_context),
            Some(Payload::Status(s)) => self.receive_status(g, peer, s, &env.trace_context),
            None => Ok(()), // refused by check_inbound
        }
    }

    fn receive_directive(
        &mut self,
        g: &mut Group<'_>,
        from: &NodeId,
        d: Directive,
        trace: HashMap<String, String>,
    ) -> Result<(), NodeError> {
        let span = tracing::info_span!("directive.receive", directive = %d.id, from = %from, node = %self.shared.node_id);
        trace::set_parent(&span, &trace);
        let _entered = span.enter();
        let key = records::directive(&d.id);
        if g.txn.contains(&key)? {
            tracing::debug!(directive = %d.id, "duplicate directive: already applied");
            return Ok(());
        }
        let trace = trace::inject(&span);
        store_directive(g, &d, Some(from), &trace);
        match self.tier {
            Tier::Enterprise => self.accept_at_enterprise(g, &d, &trace)?,
            Tier::Province => self.relay_at_province(g, &d, &trace)?,
            Tier::Ministry => self.relay_assistance(g, from, &d, &trace)?,
        }
        tracing::info!(directive = %d.id, rules = d.rules.len(), "directive received");
        Ok(())
    }

    fn stored_trace(
        &self,
        g: &mut Group<'_>,
        id: &str,
    ) -> Result<HashMap<String, String>, NodeError> {
        Ok(self
            .stored_meta(g, id)?
            .map(|m| m.trace_context.clone())
            .unwrap_or_default())
    }

    /// The key of the block holding `node`'s state of directive `directive_id`.
    fn target_key(&self, directive_id: &str, node: &str) -> Vec<u8> {
        records::target_block(
            directive_id,
            targets::via(&self.shared.directory, node),
            node,
        )
    }

    /// `node`'s state of directive `directive_id`, as this group sees it.
    fn target(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
    ) -> Result<Option<TargetRecord>, NodeError> {
        let key = self.target_key(directive_id, node);
        g.targets.get(&g.txn, key, node)
    }

    fn put_target(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        rec: TargetRecord,
    ) -> Result<(), NodeError> {
        let key = self.target_key(directive_id, node);
        g.targets.put(&g.txn, key, node, rec)
    }

    /// The directive's metadata as this group sees it, kept decoded across groups (a
    /// province acknowledged by 161 enterprises asks for it 161 times, over many groups).
    fn stored_meta(
        &self,
        g: &mut Group<'_>,
        id: &str,
    ) -> Result<Option<Arc<DirectiveMeta>>, NodeError> {
        if let Some(meta) = g.metas.get(id) {
            return Ok(Some(Arc::clone(meta)));
        }
        let Some(meta) = g.read::<DirectiveMeta>(&records::directive_meta(id))? else {
            return Ok(None);
        };
        let meta = Arc::new(meta);
        g.metas.insert(id.to_string(), meta.clone());
        Ok(Some(meta))
    }

    /// The directive's metadata as committed (for checks made before a group's writes).
    fn committed_meta(&self, id: &str) -> Result<Option<DirectiveMeta>, NodeError> {
        let key = records::directive_meta(id);
        Ok(match self.shared.store.get(&key)? {
            Some(v) => Some(decode(&key, &v)?),
            None => None,
        })
    }

    fn stored_directive(
        &self,
        g: &Group<'_>,
        id: &str,
    ) -> Result<Option<StoredDirective>, NodeError> {
        g.read(&records::directive(id))
    }

    fn receive_status(
        &mut self,
        g: &mut Group<'_>,
        from: &NodeId,
        report: StatusReport,
        trace: &HashMap<String, String>,
    ) -> Result<(), NodeError> {
        let Some(meta) = self.stored_meta(g, &report.directive_id)? else {
            tracing::warn!(directive = %report.directive_id, %from, "status for an unknown directive ignored");
            return Ok(());
        };
        // A province gets a status report per enterprise and directive; their span was 5% of
        // its core thread (BENCHMARKS.md) and, nothing being logged inside, serves only a
        // trace that is exported.
        let span = if trace::exporting() {
            tracing::info_span!("directive.status", directive = %report.directive_id, from = %from, node = %self.shared.node_id)
        } else {
            tracing::Span::none()
        };
        trace::set_parent(&span, trace);
        let _entered = span.enter();
        let trace = trace::inject(&span);
        let relay = meta.issuer != self.shared.node_id.as_str();
        for u in report.updates {
            let state = TargetState::try_from(u.state).unwrap_or(TargetState::Unspecified);
            self.set_target(g, &report.directive_id, &u.node, state, &u.detail)?;
            if u.overdue_at_ms != 0 {
                self.set_overdue(g, &report.directive_id, &u.node, u.overdue_at_ms)?;
            }
            if let Some(result) = &u.result {
                self.set_result(g, &report.directive_id, &u.node, result)?;
            }
            if !relay && state == TargetState::Acknowledged {
                self.start_answer_clock(g, &meta, &report.directive_id, &u.node)?;
            }
            if relay {
                self.report(g, &report.directive_id, &u, &trace);
            }
        }
        Ok(())
    }

    /// Moves a target forward (never back) in this node's view.
    fn set_target(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        state: TargetState,
        detail: &str,
    ) -> Result<(), NodeError> {
        let key = self.target_key(directive_id, node);
        let now = g.now;
        let stopped_clock = g.targets.update(&g.txn, key, node, |rec| {
            let current = TargetState::try_from(rec.state).unwrap_or(TargetState::Unspecified);
            if state_rank(state) <= state_rank(current) && rec.state != 0 {
                return None;
            }
            // A relay that decided, or an enterprise that finished, stops its clock; a late
            // one keeps the lateness (overdue_at_ms) on record.
            let stopped =
                (clock_satisfied(node, state) && rec.deadline_ms != 0 && rec.overdue_at_ms == 0)
                    .then_some(rec.deadline_ms);
            advance(rec, state, detail, now);
            Some(stopped)
        })?;
        if let Some(Some(deadline_ms)) = stopped_clock {
            g.txn
                .delete(records::clock(deadline_ms, directive_id, node));
        }
        Ok(())
    }

    /// Records that enterprise `targets` of a directive are queued here now, in the
    /// directive's one `QueuedTargets` record.
    fn queue_targets(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        targets: Vec<String>,
    ) -> Result<(), NodeError> {
        if targets.is_empty() {
            return Ok(());
        }
        let key = records::queued(directive_id);
        let mut rec = g.read(&key)?.unwrap_or(QueuedTargets {
            at_ms: g.now,
            targets: Vec::new(),
        });
        rec.targets.extend(targets);
        g.txn.put(key, encode(&rec));
        Ok(())
    }

    /// Queues a status update towards the directive's issuer, coalesced per directive
    /// within the group.
    fn report_up(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        state: TargetState,
        detail: &str,
        trace: &HashMap<String, String>,
    ) {
        let update = TargetStatus {
            node: node.to_string(),
            state: state as i32,
            at_ms: g.now,
            detail: detail.to_string(),
            overdue_at_ms: 0,
            result: None,
        };
        self.report(g, directive_id, &update, trace);
    }

    fn report(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        update: &TargetStatus,
        trace: &HashMap<String, String>,
    ) {
        let up = g.upward.entry(directive_id.to_string()).or_default();
        if up.trace.is_empty() {
            up.trace = trace.clone();
        }
        let entry = up.updates.entry(update.node.clone()).or_default();
        let current = TargetState::try_from(entry.state).unwrap_or(TargetState::Unspecified);
        let state = TargetState::try_from(update.state).unwrap_or(TargetState::Unspecified);
        let overdue = entry.overdue_at_ms.max(update.overdue_at_ms);
        let result = entry.result.take().or_else(|| update.result.clone());
        if entry.state == 0 || state_rank(state) > state_rank(current) {
            *entry = update.clone();
            entry.at_ms = g.now;
        }
        entry.overdue_at_ms = overdue;
        if entry.result.is_none() {
            entry.result = result;
        }
    }

    /// Statuses go back the way their directive came: to the peer it was received from
    /// (the parent, or for an assistance request at the ministry, the requesting province).
    fn flush_upward(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        let upward = std::mem::take(&mut g.upward);
        for (directive_id, up) in upward {
            let Some(meta) = self.stored_meta(g, &directive_id)? else {
                continue;
            };
            let Some(to) = meta
                .received_from
                .parse::<NodeId>()
                .ok()
                .filter(|p| self.shared.peer(p).is_some())
            else {
                continue; // issued here: this node is where statuses end
            };
            let report = StatusReport {
                directive_id,
                updates: up.updates.into_values().collect(),
            };
            self.enqueue(
                g,
                &to,
                uuid::Uuid::now_v7().to_string(),
                up.trace,
                outbox_entry::Body::Status(report),
            );
        }
        Ok(())
    }

    /// Keeps an enterprise's answer to an access-log query with its target.
    fn set_result(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        result: &isms_proto::v1::QueryResult,
    ) -> Result<(), NodeError> {
        g.txn
            .put(records::query_result(directive_id, node), encode(result));
        Ok(())
    }

    fn enqueue_directive(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        d: &Directive,
        targets: Vec<String>,
        trace: HashMap<String, String>,
    ) {
        self.enqueue(
            g,
            peer,
            d.id.clone(),
            trace,
            outbox_entry::Body::Directive(DirectiveRef {
                id: d.id.clone(),
                targets,
            }),
        );
    }

    /// Appends to `peer`'s outbox with the next sequence number, in the group's batch.
    fn enqueue(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        message_id: String,
        trace: HashMap<String, String>,
        body: outbox_entry::Body,
    ) {
        let next = self.next_seq.entry(peer.clone()).or_insert(1);
        let seq = *next;
        *next += 1;
        let entry = OutboxEntry {
            enqueued_at_ms: g.now,
            seq,
            message_id,
            trace_context: trace,
            body: Some(body),
        };
        // No mark for the new next number: this entry, the outbox's last, says it.
        if let Some(outbox_entry::Body::Directive(r)) = &entry.body {
            // Written at the group's end, where the directive's copies for several peers
            // become one fan-out record.
            let (id, entry) = (r.id.clone(), Arc::new(entry));
            g.outbox.push((
                peer.clone(),
                entry.clone(),
                prost::Message::encoded_len(&*entry),
            ));
            g.copies.entry(id).or_default().push((peer.clone(), entry));
            return;
        }
        let (size, entry) = (prost::Message::encoded_len(&entry), Arc::new(entry));
        g.outbox.push((peer.clone(), entry.clone(), size));
        g.runs.entry(peer.clone()).or_default().push(entry);
    }

    /// The peer holds everything up to `up_to`: drop those entries, and record `delivered`
    /// for the directives among them.
    fn apply_ack(&mut self, g: &mut Group<'_>, peer: &NodeId, up_to: u64) -> Result<(), NodeError> {
        let (Some(&acked), Some(peer_state)) =
            (self.acked.get(peer), self.shared.peer(peer).cloned())
        else {
            return Ok(());
        };
        if up_to <= acked {
            return Ok(());
        }
        let next = self.next_seq[peer];
        let up_to = if up_to >= next {
            // The peer applied more than this store ever sent: this store was restored from
            // an older copy. Skip past it so new messages are not taken as duplicates.
            tracing::error!(%peer, claimed = up_to, next, "peer acknowledged sequence numbers never sent; store restored from backup? skipping ahead");
            self.next_seq.insert(peer.clone(), up_to + 1);
            g.marks.insert(peer.clone());
            next - 1
        } else {
            up_to
        };
        // The newest entries are in the peer's tail; older ones only in the store.
        let (tail_start, held) = {
            let tail = peer_state.tail();
            let held: Vec<Arc<OutboxEntry>> = (tail.start().max(acked + 1)..=up_to)
                .map_while(|seq| tail.get(seq).cloned())
                .collect();
            (tail.start(), held)
        };
        let mut entries: Vec<Arc<OutboxEntry>> = stored_outbox(
            g.txn.store(),
            &peer_state,
            acked + 1,
            tail_start.min(up_to + 1),
        )?
        .into_iter()
        .map(Arc::new)
        .collect();
        entries.extend(held);
        let copies = self.fans.acked(g, &peer_state, up_to);
        for entry in entries {
            if let Some(outbox_entry::Body::Directive(r)) = &entry.body {
                self.delivered(g, peer, &r.id, &entry.trace_context)?;
            }
            if !copies.contains(&entry.seq) {
                g.txn.delete(records::outbox(peer, entry.seq));
            }
        }
        peer_state.tail().drop_through(up_to);
        self.acked.insert(peer.clone(), up_to.max(acked));
        if up_to + 1 >= self.next_seq[peer] {
            // The outbox is empty now: only the marks will say the next number.
            g.marks.insert(peer.clone());
        }
        Ok(())
    }

    fn delivered(
        &self,
        g: &mut Group<'_>,
        peer: &NodeId,
        directive_id: &str,
        trace: &HashMap<String, String>,
    ) -> Result<(), NodeError> {
        // The parent only relays an assistance request; it is never a target.
        if self.parent.as_ref() == Some(peer) {
            return Ok(());
        }
        self.set_target(g, directive_id, peer.as_str(), TargetState::Delivered, "")?;
        if peer.tier() == Tier::Province {
            self.start_confirm_clock(g, peer, directive_id)?;
        }
        if peer.tier() == Tier::Enterprise {
            let relayed = self
                .stored_meta(g, directive_id)?
                .is_some_and(|m| m.issuer != self.shared.node_id.as_str());
            if relayed {
                self.report_up(
                    g,
                    directive_id,
                    peer.as_str(),
                    TargetState::Delivered,
                    "",
                    trace,
                );
            }
        }
        Ok(())
    }

    /// An operator's directive: validated, resolved to targets, stored with one outbox entry
    /// per next hop, and audited, all in this group's batch.
    fn issue(
        &mut self,
        g: &mut Group<'_>,
        req: IssueRequest,
        operator: &str,
    ) -> Result<IssueReply, NodeError> {
        let id = if req.id.is_empty() {
            uuid::Uuid::now_v7()
        } else {
            uuid::Uuid::parse_str(&req.id).map_err(|_| InputError::Id(req.id.clone()))?
        }
        .to_string();
        let kind = match DirectiveKind::try_from(req.kind) {
            Ok(DirectiveKind::Unspecified) | Err(_) => DirectiveKind::Disposal,
            Ok(k) => k,
        };
        let (rules, to, revokes) = if kind == DirectiveKind::Revocation {
            // Only what this node issued can be withdrawn here, by default from every
            // target it went to.
            let revokes = uuid::Uuid::parse_str(&req.revokes)
                .map_err(|_| InputError::Id(req.revokes.clone()))?
                .to_string();
            let original = self
                .stored_directive(g, &revokes)?
                .and_then(|s| s.directive)
                .filter(|d| d.issuer == self.shared.node_id.as_str())
                .ok_or_else(|| InputError::NotRevocable(revokes.clone()))?;
            let to = if req.to.is_empty() {
                original.targets
            } else {
                req.to.clone()
            };
            (Vec::new(), to, revokes)
        } else if (kind == DirectiveKind::Drill && req.rules.is_empty())
            || matches!(
                kind,
                DirectiveKind::AccessLogQuery | DirectiveKind::DataCorrection
            )
        {
            (Vec::new(), req.to.clone(), String::new())
        } else {
            (
                directive::normalise_rules(&req.rules)?,
                req.to.clone(),
                String::new(),
            )
        };
        if req.expires_at_ms != 0 && req.expires_at_ms <= req.effective_at_ms.max(g.now) {
            return Err(InputError::Expiry.into());
        }
        let query = match (kind, &req.query) {
            (DirectiveKind::AccessLogQuery, Some(q)) => {
                Some(isms_domain::access_log::validate_query(q)?)
            }
            (DirectiveKind::AccessLogQuery, None) => {
                return Err(InputError::Query("no query given".into()).into());
            }
            _ => None,
        };
        let correction = match (kind, &req.correction) {
            (DirectiveKind::DataCorrection, Some(c)) => {
                Some(isms_domain::access_log::validate_correction(c)?)
            }
            (DirectiveKind::DataCorrection, None) => {
                return Err(InputError::Correction("nothing named to correct".into()).into());
            }
            _ => None,
        };
        let selections = directive::parse_targets(&to)?;
        let (mut targets, foreign) = self.resolve_issue_targets(selections)?;
        targets.extend(foreign.iter().cloned());
        let urgency = match Urgency::try_from(req.urgency) {
            Ok(Urgency::Unspecified) | Err(_) => Urgency::General,
            Ok(u) => u,
        };
        if let Some(existing) = self.stored_directive(g, &id)? {
            // The same ID issued again (a retried CLI call): the first one stands.
            let n = existing.directive.map_or(0, |d| d.targets.len());
            return Ok(IssueReply {
                id,
                targets: u32::try_from(n).unwrap_or(u32::MAX),
            });
        }
        let span = tracing::info_span!("directive.issue", directive = %id, node = %self.shared.node_id, operator = %operator);
        let _entered = span.enter();
        let trace = trace::inject(&span);
        let d = Directive {
            id: id.clone(),
            issuer: self.shared.node_id.to_string(),
            operator: operator.to_string(),
            kind: kind as i32,
            urgency: urgency as i32,
            targets: targets.iter().map(ToString::to_string).collect(),
            rules,
            issued_at_ms: g.now,
            revokes,
            effective_at_ms: req.effective_at_ms.max(0),
            expires_at_ms: req.expires_at_ms.max(0),
            query,
            correction,
        };
        store_directive(g, &d, None, &trace);
        let mut routes: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
        for (enterprise, route) in &self.shared.directory {
            if targets.contains(enterprise) {
                routes
                    .entry(route.clone())
                    .or_default()
                    .push(enterprise.to_string());
            }
        }
        if !foreign.is_empty() {
            // Enterprises of other provinces: a request for assistance, through the
            // ministry. A province reaches them no other way.
            let parent = self
                .parent
                .clone()
                .ok_or_else(|| NodeError::Forbidden("no parent to ask for assistance".into()))?;
            let foreign: Vec<String> = foreign.iter().map(ToString::to_string).collect();
            self.queue_targets(g, &id, foreign.clone())?;
            self.enqueue_directive(g, &parent, &d, foreign, trace.clone());
        }
        let queued = routes.values().flatten().cloned().collect();
        self.queue_targets(g, &id, queued)?;
        for (route, route_targets) in routes {
            if route.tier() == Tier::Province {
                self.set_target(g, &id, route.as_str(), TargetState::Queued, "")?;
            }
            self.enqueue_directive(g, &route, &d, route_targets, trace.clone());
        }
        let rule_kinds: BTreeSet<&str> = d
            .rules
            .iter()
            .map(|r| directive::rule_kind_name(r.kind))
            .collect();
        let outcome = if kind == DirectiveKind::Revocation {
            format!("revokes {}, {} targets", d.revokes, d.targets.len())
        } else {
            format!(
                "{} {} rules ({}), {} targets, to {}",
                directive::kind_name(d.kind),
                d.rules.len(),
                rule_kinds.into_iter().collect::<Vec<_>>().join(","),
                d.targets.len(),
                to.join(",")
            )
        };
        let action = match kind {
            DirectiveKind::Revocation => "directive.revoke",
            _ => "directive.issue",
        };
        audit(g, operator, action, &id, &outcome);
        tracing::info!(directive = %id, targets = d.targets.len(), rules = d.rules.len(), "directive issued");
        Ok(IssueReply {
            id,
            targets: u32::try_from(d.targets.len()).unwrap_or(u32::MAX),
        })
    }

    /// Resolves `--to` for an issue here: the enterprises this node reaches itself, and, at a
    /// province, the enterprises of other provinces to ask the ministry's help for.
    fn resolve_issue_targets(
        &self,
        selections: Vec<directive::TargetSelection>,
    ) -> Result<(BTreeSet<NodeId>, BTreeSet<NodeId>), NodeError> {
        use directive::TargetSelection;
        if self.tier != Tier::Province {
            let own = directive::resolve_targets(&selections, &self.shared.directory)?;
            return Ok((own, BTreeSet::new()));
        }
        let mut own = Vec::new();
        let mut foreign = BTreeSet::new();
        for sel in selections {
            match sel {
                TargetSelection::All => own.push(TargetSelection::All),
                TargetSelection::Province(p) if p == self.shared.node_id => {
                    own.push(TargetSelection::All);
                }
                TargetSelection::Province(p) => {
                    return Err(InputError::OtherProvince(p.to_string()).into());
                }
                TargetSelection::Enterprise(e) if self.shared.directory.contains_key(&e) => {
                    own.push(TargetSelection::Enterprise(e));
                }
                TargetSelection::Enterprise(e) => {
                    foreign.insert(e);
                }
            }
        }
        let own = if own.is_empty() {
            BTreeSet::new()
        } else {
            directive::resolve_targets(&own, &self.shared.directory)?
        };
        Ok((own, foreign))
    }
}

/// Moves `rec` to `state` now, stamping each phase it reached or passed.
fn advance(rec: &mut TargetRecord, state: TargetState, detail: &str, now: i64) {
    rec.state = state as i32;
    rec.updated_at_ms = now;
    if rec.detail != detail {
        rec.detail = detail.to_string();
    }
    let stamp = |t: &mut i64| {
        if *t == 0 {
            *t = now;
        }
    };
    // For a relaying province, "acknowledged" is when it decided (confirmed, or passed
    // an emergency on) and "finished" when it returned the requirement.
    // Reports are coalesced per group on the way up, so a target can jump past a phase
    // (an enterprise reports `executed` with its acknowledgment); the phase it passed
    // happened no later than now.
    match state {
        TargetState::Queued => stamp(&mut rec.queued_at_ms),
        TargetState::Delivered | TargetState::Received => stamp(&mut rec.delivered_at_ms),
        TargetState::Acknowledged | TargetState::Confirmed | TargetState::Forwarded => {
            stamp(&mut rec.delivered_at_ms);
            stamp(&mut rec.acknowledged_at_ms);
        }
        TargetState::Executed | TargetState::Failed => {
            stamp(&mut rec.delivered_at_ms);
            stamp(&mut rec.acknowledged_at_ms);
            stamp(&mut rec.finished_at_ms);
        }
        TargetState::Returned | TargetState::Revoked => stamp(&mut rec.finished_at_ms),
        TargetState::Unspecified => {}
    }
}

/// Stores a directive and its metadata; `from` is the peer it came from (none if issued
/// here).
fn store_directive(
    g: &mut Group<'_>,
    d: &Directive,
    from: Option<&NodeId>,
    trace: &HashMap<String, String>,
) {
    let received_from = from.map(ToString::to_string).unwrap_or_default();
    let meta = DirectiveMeta {
        issuer: d.issuer.clone(),
        received_from: received_from.clone(),
        urgency: d.urgency,
        kind: d.kind,
        trace_context: trace.clone(),
    };
    g.txn.put(records::directive_meta(&d.id), encode(&meta));
    g.metas.insert(d.id.clone(), Arc::new(meta));
    let stored = StoredDirective {
        directive: Some(d.clone()),
        received_from,
        received_at_ms: g.now,
        trace_context: trace.clone(),
    };
    g.txn.put(records::directive(&d.id), encode(&stored));
    g.new_directives += 1;
}

/// Records an operator action in the audit trail.
fn audit(g: &mut Group<'_>, operator: &str, action: &str, subject: &str, outcome: &str) {
    let rec = AuditRecord {
        at_ms: g.now,
        operator: operator.to_string(),
        action: action.to_string(),
        subject: subject.to_string(),
        outcome: outcome.to_string(),
    };
    g.txn
        .put(records::audit(g.now, &uuid::Uuid::now_v7()), encode(&rec));
}

/// Cheap structural checks of a directive from a parent; rule contents are checked where
/// they are applied, and a bad rule fails the directive rather than the link.
pub fn check_directive_shape(d: &Directive) -> Result<(), NodeError> {
    if uuid::Uuid::parse_str(&d.id).is_err() {
        return Err(NodeError::Protocol(format!(
            "directive ID {:?} is not a UUID",
            d.id
        )));
    }
    if d.issuer.parse::<NodeId>().is_err() {
        return Err(NodeError::Protocol(format!(
            "directive issuer {:?} is not a node ID",
            d.issuer
        )));
    }
    if d.targets.is_empty() {
        return Err(NodeError::Protocol(format!(
            "directive {} has no targets",
            d.id
        )));
    }
    Ok(())
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

//! Links: the one long-lived bidirectional stream between a child and its parent, carrying
//! store-and-forward traffic both ways (DESIGN.md "Links").
//!
//! A session starts with a `Hello` each way (the highest sequence number durably applied
//! from the other side); each side then sends its outbox from there, windowed and batched,
//! and acknowledges cumulatively what it has durably applied. Only one session per peer is
//! live: a newer connection from the same child replaces the older one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use isms_proto::Pieces;
use isms_proto::record::{OutboxEntry, StoredDirective, outbox_entry};
use isms_proto::v1::{Ack, Directive, Envelope, Frame, Hello, envelope::Payload, frame};
use prost::Message;
use prost::bytes::Bytes;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::tls;
use crate::wire::{self, FrameStream, OpenLink, Outbound};
use isms_config::LinkTuning;
use isms_core::error::NodeError;
use isms_core::{CoreHandle, PeerState, Role, Shared};
use isms_domain::identity::{Identity, NodeId};
use isms_domain::records::{self, decode};

/// What every session of this node needs.
#[derive(Debug, Clone)]
pub struct LinkContext {
    pub shared: Arc<Shared>,
    pub core: CoreHandle,
    pub tuning: LinkTuning,
    pub trust_domain: String,
    pub shutdown: CancellationToken,
    sessions: Arc<std::sync::Mutex<HashMap<NodeId, CancellationToken>>>,
    /// Directives recently sent, encoded once (without targets) for every session: a
    /// province sends each directive to all its enterprises, and a blacklist can hold
    /// 50,000 rules.
    recent: Arc<std::sync::Mutex<Recent>>,
    /// Room for large batches sent and not yet acknowledged, over all links, in KiB: a
    /// province sending a 50,000-rule blacklist to 161 enterprises sends a few copies at a
    /// time instead of 161 at once (half of `link.max_frame_bytes`, so any batch fits).
    /// Copies share the rules by reference now (`wire`), so this paces the receivers and
    /// the encryption more than it saves the sender memory.
    large_in_flight: Arc<tokio::sync::Semaphore>,
}

/// A directive without targets, encoded: every copy sent is built from it.
#[derive(Debug, Clone)]
struct Cached {
    id: String,
    body: Bytes,
}

/// A batch at least this large waits for room in `large_in_flight`.
const LARGE_BATCH: usize = 1 << 20;

/// The encoded directives the link writers keep between them, oldest dropped first. Bounded
/// by count and by size: with many directives in flight, writers at different points of
/// their outboxes must still find theirs here, and 50,000-rule blacklists are large.
#[derive(Debug, Default)]
struct Recent {
    by_id: HashMap<String, Cached>,
    order: VecDeque<String>,
    bytes: usize,
}

const RECENT_DIRECTIVES: usize = 4096;
const RECENT_BYTES: usize = 64 << 20;

impl Recent {
    fn get(&self, id: &str) -> Option<Cached> {
        self.by_id.get(id).cloned()
    }

    fn insert(&mut self, cached: Cached) {
        let id = cached.id.clone();
        self.bytes += cached.body.len();
        if let Some(old) = self.by_id.insert(id.clone(), cached) {
            // Two writers read the same directive at once: keep one.
            self.bytes -= old.body.len();
            return;
        }
        self.order.push_back(id);
        while self.order.len() > RECENT_DIRECTIVES
            || (self.bytes > RECENT_BYTES && self.order.len() > 1)
        {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(c) = self.by_id.remove(&oldest) {
                self.bytes -= c.body.len();
            }
        }
    }
}

impl LinkContext {
    pub fn new(
        shared: Arc<Shared>,
        core: CoreHandle,
        tuning: LinkTuning,
        trust_domain: String,
        shutdown: CancellationToken,
    ) -> Self {
        LinkContext {
            shared,
            core,
            trust_domain,
            shutdown,
            sessions: Arc::default(),
            recent: Arc::default(),
            large_in_flight: Arc::new(tokio::sync::Semaphore::new(
                tuning.max_frame_bytes / 2 / 1024,
            )),
            tuning,
        }
    }

    /// Registers a new session for `peer`, ending the one it replaces.
    fn begin_session(&self, peer: &PeerState) -> (CancellationToken, u64) {
        let token = self.shutdown.child_token();
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(old) = sessions.insert(peer.id.clone(), token.clone()) {
            old.cancel();
        }
        let mut link = peer.link.lock().unwrap_or_else(|p| p.into_inner());
        link.session += 1;
        link.up = true;
        link.since_ms = self.shared.now_ms();
        (token, link.session)
    }

    fn end_session(&self, peer: &PeerState, session: u64) {
        let mut link = peer.link.lock().unwrap_or_else(|p| p.into_inner());
        if link.session == session {
            link.up = false;
            link.since_ms = self.shared.now_ms();
        }
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("stream closed by peer")]
    Closed,
    #[error("replaced by a newer session or shutting down")]
    Cancelled,
    #[error("transport: {0}")]
    Transport(#[from] Status),
    #[error("no Hello within 10s")]
    HelloTimeout,
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Runs one session until the stream ends or it is cancelled.
async fn run_session(
    ctx: LinkContext,
    peer: Arc<PeerState>,
    mut inbound: FrameStream,
    out: Outbound,
) -> SessionEnd {
    let (cancel, session) = ctx.begin_session(&peer);
    let hello_applied = peer
        .durable_applied
        .load(std::sync::atomic::Ordering::SeqCst);
    let hello = Pieces::encode(&Frame {
        body: Some(frame::Body::Hello(Hello {
            applied: hello_applied,
        })),
    });
    let result = async {
        if out.send(Ok(hello)).await.is_err() {
            return SessionEnd::Closed;
        }
        let first = tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            f = tokio::time::timeout(Duration::from_secs(10), inbound.next()) => f,
        };
        let peer_applied = match first {
            Err(_) => return SessionEnd::HelloTimeout,
            Ok(None) => return SessionEnd::Closed,
            Ok(Some(Err(status))) => return SessionEnd::Transport(status),
            Ok(Some(Ok(Frame {
                body: Some(frame::Body::Hello(h)),
            }))) => h.applied,
            Ok(Some(Ok(_))) => {
                let e = NodeError::Protocol("the first frame must be Hello".into());
                let _ = out.send(Err(e.into())).await;
                return SessionEnd::Node(NodeError::Protocol("no Hello".into()));
            }
        };
        tracing::info!(peer = %peer.id, peer_applied, "link up");
        let acked_before = peer.acked.load(std::sync::atomic::Ordering::SeqCst);
        if peer_applied < acked_before {
            // The peer acknowledged more than it now remembers: its store was restored from
            // an older copy. What it acknowledged is gone from our outbox; say so loudly.
            tracing::error!(peer = %peer.id, peer_applied, acked_before,
                "peer lost messages it had acknowledged (restored from backup?); they cannot be resent");
        }
        let peer_applied = peer_applied.max(acked_before);
        if let Err(e) = ctx.core.acked(peer.id.clone(), peer_applied).await {
            return SessionEnd::Node(e);
        }
        let (acked_tx, acked_rx) = watch::channel(peer_applied);
        let (owed_tx, owed_rx) = watch::channel(hello_applied);
        let writer = tokio::spawn(write_loop(
            ctx.clone(),
            peer.clone(),
            peer_applied + 1,
            acked_rx,
            owed_rx,
            out.clone(),
            cancel.clone(),
        ));
        let watches = Watches {
            acked: acked_tx,
            owed: owed_tx,
        };
        let end = read_loop(&ctx, &peer, &mut inbound, &out, &watches, &cancel).await;
        cancel.cancel();
        let _ = writer.await;
        end
    }
    .await;
    ctx.end_session(&peer, session);
    tracing::info!(peer = %peer.id, reason = %result, "link down");
    result
}

/// What the reader tells the writer of the same session.
struct Watches {
    /// Highest sequence number the peer acknowledged: the writer's window moves on.
    acked: watch::Sender<u64>,
    /// Highest sequence number applied from the peer: an acknowledgment is owed.
    owed: watch::Sender<u64>,
}

fn raise(w: &watch::Sender<u64>, to: u64) {
    w.send_if_modified(|v| {
        let newer = to > *v;
        if newer {
            *v = to;
        }
        newer
    });
}

async fn read_loop(
    ctx: &LinkContext,
    peer: &PeerState,
    inbound: &mut FrameStream,
    out: &Outbound,
    watches: &Watches,
    cancel: &CancellationToken,
) -> SessionEnd {
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            f = inbound.next() => f,
        };
        let body = match frame {
            None => return SessionEnd::Closed,
            // The peer went away (its connection dropped, or it is shutting down): a normal
            // end, logged as the link going down; there is no one left to tell why.
            Some(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return SessionEnd::Transport(status);
            }
            Some(Err(status)) => return bad_frame(peer, out, status).await,
            Some(Ok(Frame { body })) => body,
        };
        match body {
            Some(frame::Body::Batch(batch)) => {
                // A frame with an undecodable envelope is refused whole, as tonic refuses
                // an undecodable frame: nothing of it, its acknowledgment included, is used.
                let envelopes = match batch.decode_envelopes() {
                    Ok(envelopes) => envelopes,
                    Err(e) => {
                        let status = Status::invalid_argument(format!("undecodable envelope: {e}"));
                        return bad_frame(peer, out, status).await;
                    }
                };
                let acked = batch.applied;
                raise(&watches.acked, acked);
                if envelopes.is_empty() {
                    if acked != 0
                        && let Err(e) = ctx.core.acked(peer.id.clone(), acked).await
                    {
                        return SessionEnd::Node(e);
                    }
                    continue;
                }
                // The acknowledgment the batch carries is applied in the same group as the
                // envelopes, so a report that answers a directive moves it on once.
                match ctx.core.inbound(peer.id.clone(), envelopes, acked).await {
                    Ok(applied) => raise(&watches.owed, applied),
                    Err(e) => {
                        tracing::warn!(peer = %peer.id, error = %e, "refusing batch; closing link");
                        let status = Status::from(clone_error(&e));
                        let _ = out.send(Err(status)).await;
                        return SessionEnd::Node(e);
                    }
                }
            }
            Some(frame::Body::Ack(Ack { applied })) => {
                raise(&watches.acked, applied);
                if let Err(e) = ctx.core.acked(peer.id.clone(), applied).await {
                    return SessionEnd::Node(e);
                }
            }
            Some(frame::Body::Hello(_)) | None => {
                let e = NodeError::Protocol("unexpected frame after Hello".into());
                let _ = out.send(Err(Status::from(clone_error(&e)))).await;
                return SessionEnd::Node(e);
            }
        }
    }
}

/// An undecodable or oversized frame: tells the peer why, and ends the session.
async fn bad_frame(peer: &PeerState, out: &Outbound, status: Status) -> SessionEnd {
    tracing::warn!(peer = %peer.id, error = %status.message(), "bad frame; closing link");
    let _ = out.send(Err(status.clone())).await;
    SessionEnd::Transport(status)
}

fn clone_error(e: &NodeError) -> NodeError {
    match e {
        NodeError::Forbidden(m) => NodeError::Forbidden(m.clone()),
        NodeError::Protocol(m) => NodeError::Protocol(m.clone()),
        NodeError::ShuttingDown => NodeError::ShuttingDown,
        other => NodeError::Protocol(other.to_string()),
    }
}

/// The acknowledgment a link writer owes the other side: carried by the next batch that
/// goes out, else sent alone once `delay` has passed since it was first owed, or at once
/// when `eager` sequence numbers are owed (so the other side's window never stalls).
#[derive(Debug)]
pub struct OwedAck {
    sent: u64,
    due: Option<tokio::time::Instant>,
    delay: Duration,
    eager: u64,
}

impl OwedAck {
    /// `sent`: what the other side already knows (our Hello); `window`: the link's window.
    pub fn new(sent: u64, delay: Duration, window: u64) -> Self {
        OwedAck {
            sent,
            due: None,
            delay,
            eager: (window / 4).max(1),
        }
    }

    /// For a batch going out now, with `applied` durably applied: what it carries (0: none).
    pub fn carry(&mut self, applied: u64) -> u64 {
        if applied <= self.sent {
            return 0;
        }
        self.sent = applied;
        self.due = None;
        applied
    }

    /// With no batch going out: whether `applied` must be sent alone now. If not, the
    /// timer is armed for when it must.
    pub fn alone_now(&mut self, applied: u64) -> bool {
        if applied <= self.sent {
            return false;
        }
        let now = tokio::time::Instant::now();
        let due = *self.due.get_or_insert(now + self.delay);
        if applied - self.sent >= self.eager || due <= now {
            self.sent = applied;
            self.due = None;
            return true;
        }
        false
    }

    /// Whether `applied` is more than the other side knows.
    pub fn owed(&self, applied: u64) -> bool {
        applied > self.sent
    }

    /// Ready when an owed acknowledgment must go alone; never if none is owed.
    pub async fn timer(&self) {
        match self.due {
            Some(due) => tokio::time::sleep_until(due).await,
            None => std::future::pending().await,
        }
    }
}

/// Sends durable outbox entries from `next`, at most `window` beyond the peer's last
/// acknowledgment, in batches bounded by count and bytes, and the acknowledgments owed to
/// the peer: carried by a batch when one goes out, else on their own after `ack_delay`
/// (at once when a quarter of the window is owed, so the peer's sending never stalls).
async fn write_loop(
    ctx: LinkContext,
    peer: Arc<PeerState>,
    mut next: u64,
    mut acked: watch::Receiver<u64>,
    mut owed: watch::Receiver<u64>,
    out: Outbound,
    cancel: CancellationToken,
) {
    let mut durable = peer.durable_out.subscribe();
    let window = u64::from(ctx.tuning.window);
    let batch_max = u64::from(ctx.tuning.batch);
    let byte_budget = ctx.tuning.max_frame_bytes / 2;
    let mut ack = OwedAck::new(*owed.borrow_and_update(), ctx.tuning.ack_delay, window);
    // Room taken for large batches, by the last sequence number each carried.
    let mut held: VecDeque<(u64, tokio::sync::OwnedSemaphorePermit)> = VecDeque::new();
    // The core publishes what it applied before it wakes this writer for the reports that
    // answer it, so the batch carrying them also carries their acknowledgment.
    let applied_now = |owed: &watch::Receiver<u64>| {
        (*owed.borrow()).max(
            peer.durable_applied
                .load(std::sync::atomic::Ordering::SeqCst),
        )
    };
    loop {
        let top = *durable.borrow_and_update();
        let acked_now = *acked.borrow_and_update();
        next = next.max(acked_now + 1);
        while held.front().is_some_and(|(seq, _)| *seq <= acked_now) {
            held.pop_front();
        }
        let limit = top.min(acked_now + window).min(next + batch_max - 1);
        if worth_sending(next, limit, top, acked_now, window, batch_max) {
            let batch = read_batch(&ctx, &peer, next, limit, byte_budget);
            if let Ok((entries, bytes)) = &batch
                && *bytes >= LARGE_BATCH
            {
                let kib = u32::try_from(bytes.div_ceil(1024))
                    .unwrap_or(u32::MAX)
                    .min(u32::try_from(byte_budget / 1024).unwrap_or(u32::MAX));
                let room = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = ctx.large_in_flight.clone().acquire_many_owned(kib) => r,
                };
                // The semaphore is never closed.
                let Ok(room) = room else { return };
                held.push_back((entries.last().map_or(next, |(e, _)| e.seq), room));
            }
            let envelopes = batch.and_then(|(entries, _)| {
                let last = entries.last().map(|(e, _)| e.seq);
                let built = entries
                    .into_iter()
                    .map(envelope)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((last, built))
            });
            match envelopes {
                Ok((Some(last), envelopes)) => {
                    next = last + 1;
                    let frame = isms_proto::batch_frame(envelopes, ack.carry(applied_now(&owed)));
                    if out.send(Ok(frame)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(_) => {
                    tracing::error!(peer = %peer.id, next, "outbox entry missing; closing link");
                    cancel.cancel();
                    return;
                }
                Err(e) => {
                    tracing::error!(peer = %peer.id, error = %e, "reading outbox failed; closing link");
                    cancel.cancel();
                    return;
                }
            }
        }
        owed.mark_unchanged();
        let applied = applied_now(&owed);
        if ack.alone_now(applied) {
            if out.send(Ok(ack_frame(applied))).await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                // Leaving: what is owed is still worth saying, if there is room to say it.
                let applied = applied_now(&owed);
                if ack.owed(applied) {
                    let _ = out.try_send(Ok(ack_frame(applied)));
                }
                return;
            }
            r = durable.changed() => if r.is_err() { return },
            r = acked.changed() => if r.is_err() { return },
            r = owed.changed() => if r.is_err() { return },
            () = ack.timer() => {}
        }
    }
}

/// Whether entries `next..=limit` go out now. While the window holds back more than it lets
/// out, the writer waits until a full batch fits (or half the window, when that is
/// smaller): sent on every small acknowledgment, a backlog would go out in many small
/// frames, each costing the receiver a round of its core.
fn worth_sending(next: u64, limit: u64, top: u64, acked: u64, window: u64, batch_max: u64) -> bool {
    if next > limit {
        return false;
    }
    let held_back = top > acked + window;
    let enough = batch_max.min(window.div_ceil(2));
    !held_back || limit + 1 - next >= enough
}

/// Reads outbox entries `from..=to`, stopping early at `byte_budget`; returns them with the
/// size of the envelopes they make.
/// The newest entries come from the peer's tail in memory, older ones from the store.
fn read_batch(
    ctx: &LinkContext,
    peer: &PeerState,
    from: u64,
    to: u64,
    byte_budget: usize,
) -> Result<(Vec<Unbuilt>, usize), NodeError> {
    let held: Vec<Arc<OutboxEntry>> = {
        let tail = peer.tail();
        (from..=to)
            .map_while(|seq| tail.get(seq).cloned())
            .collect()
    };
    let read: Vec<OutboxEntry> = if held.is_empty() {
        let stored = isms_core::stored_outbox(&ctx.shared.store, peer, from, to + 1)?;
        (from..)
            .zip(stored)
            // A hole: the entry was deleted under us, which only an acknowledgment does.
            .map_while(|(expect, entry)| (entry.seq == expect).then_some(entry))
            .collect()
    } else {
        held.into_iter().map(Arc::unwrap_or_clone).collect()
    };
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    for entry in read {
        let directive = match &entry.body {
            Some(outbox_entry::Body::Directive(r)) => {
                let cached = recent_directive(ctx, &r.id)?;
                bytes += cached.body.len() + r.encoded_len();
                Some(cached.body)
            }
            _ => {
                bytes += entry.encoded_len();
                None
            }
        };
        entries.push((entry, directive));
        if bytes >= byte_budget {
            break;
        }
    }
    Ok((entries, bytes))
}

/// An outbox entry read, with the encoding of the directive it refers to, if any.
type Unbuilt = (OutboxEntry, Option<Bytes>);

/// The stored directive `id`, from the writers' shared cache or decoded from the store.
fn recent_directive(ctx: &LinkContext, id: &str) -> Result<Cached, NodeError> {
    let lock = || ctx.recent.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = lock().get(id) {
        return Ok(c);
    }
    let key = records::directive(id);
    let value = ctx
        .shared
        .store
        .get(&key)?
        .ok_or_else(|| NodeError::NotFound(format!("directive {id}")))?;
    let stored: StoredDirective = decode(&key, &value)?;
    // Kept without its targets: each copy sent carries only its own.
    let directive = Directive {
        targets: Vec::new(),
        ..stored.directive.unwrap_or_default()
    };
    let cached = Cached {
        id: id.to_string(),
        body: Bytes::from(directive.encode_to_vec()),
    };
    lock().insert(cached.clone());
    Ok(cached)
}

/// An acknowledgment on its own.
fn ack_frame(applied: u64) -> Pieces {
    Pieces::encode(&Frame {
        body: Some(frame::Body::Ack(Ack { applied })),
    })
}

/// The encoded envelope an outbox entry makes: a directive copy carries only its own
/// targets, after the directive's shared encoding (by reference).
fn envelope((entry, directive): Unbuilt) -> Result<Pieces, NodeError> {
    let mut envelope = Envelope {
        seq: entry.seq,
        id: entry.message_id,
        trace_context: entry.trace_context,
        payload: None,
    };
    match (entry.body, directive) {
        (Some(outbox_entry::Body::Status(s)), _) => {
            envelope.payload = Some(Payload::Status(s));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::Directive(r)), Some(body)) => {
            Ok(isms_proto::directive_envelope(&envelope, &body, &r.targets))
        }
        _ => Err(NodeError::Protocol(format!(
            "outbox entry {} is empty or names no directive",
            envelope.seq
        ))),
    }
}

/// The parent's side: accepts links from configured children only.
#[derive(Debug, Clone)]
pub struct LinkService {
    ctx: LinkContext,
}

impl LinkService {
    pub fn new(ctx: LinkContext) -> Self {
        LinkService { ctx }
    }
}

impl OpenLink for LinkService {
    /// Opens a session for the child `request` comes from (configured children only), its
    /// frames read from `inbound`; returns the frames it sends back.
    fn open(
        &self,
        request: &tonic::Request<()>,
        inbound: FrameStream,
    ) -> Result<mpsc::Receiver<Result<Pieces, Status>>, Status> {
        let identity = tls::peer_identity(request, &self.ctx.trust_domain);
        let remote = request.remote_addr();
        let peer = match &identity {
            Some(Identity::Node(id)) => self
                .ctx
                .shared
                .peer(id)
                .filter(|p| p.role == Role::Child)
                .cloned(),
            _ => None,
        };
        let Some(peer) = peer else {
            let who = identity.map_or_else(|| "no identity".to_string(), |i| i.to_string());
            tracing::warn!(identity = %who, ?remote, "refused link: not a child of this node");
            return Err(Status::permission_denied(format!(
                "{who} is not a child of {}",
                self.ctx.shared.node_id
            )));
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run_session(self.ctx.clone(), peer, inbound, tx));
        Ok(rx)
    }
}

/// The child's side: keeps one session to the parent up, reconnecting with capped
/// exponential backoff and jitter.
pub async fn dial_parent(
    ctx: LinkContext,
    parent: Arc<PeerState>,
    address: String,
    client: rustls::ClientConfig,
) {
    let mut delay = ctx.tuning.reconnect_min;
    loop {
        if ctx.shutdown.is_cancelled() {
            return;
        }
        let started = tokio::time::Instant::now();
        match tls::channel(&address, client.clone()) {
            Ok(channel) => {
                let (tx, rx) = mpsc::channel::<Result<Pieces, Status>>(64);
                // The request stream ends at the first error the session wants to signal.
                let opened = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    r = wire::open(channel, rx, ctx.tuning.max_frame_bytes) => r,
                };
                match opened {
                    Ok(inbound) => {
                        let inbound: FrameStream = Box::pin(inbound);
                        run_session(ctx.clone(), parent.clone(), inbound, tx).await;
                    }
                    Err(status) => {
                        tracing::warn!(parent = %parent.id, %address, code = ?status.code(), message = status.message(), "link refused");
                    }
                }
            }
            Err(e) => tracing::error!(parent = %parent.id, error = %e, "bad parent address"),
        }
        if started.elapsed() > ctx.tuning.reconnect_max {
            delay = ctx.tuning.reconnect_min;
        }
        let jitter = rand::rng().random_range(0.5..1.0);
        let wait = delay.mul_f64(jitter);
        tracing::debug!(parent = %parent.id, ?wait, "reconnecting");
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        delay = (delay * 2).min(ctx.tuning.reconnect_max);
    }
}

#[cfg(test)]
mod tests;

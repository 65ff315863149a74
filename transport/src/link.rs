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

mod reader;
mod writer;

pub use reader::OwedAck;
use reader::read_loop;
use writer::write_loop;

/// What every session of this node needs.
#[derive(Debug, Clone)]
pub struct LinkContext {
    pub shared: Arc<Shared>,
    pub core: CoreHandle,
    pub tuning: LinkTuning,
    pub trust_domain: String,
    pub shutdown: CancellationToken,
    /// Heartbeats sent to the parent and taken from children (`isms_network`).
    pub heartbeats: Arc<isms_network::Heartbeats>,
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

/// A directive without targets, encoded: every copy sent is built from it. A large one is
/// also kept compressed, compressed once here for every link that accepts it.
/// A small signed one is also kept lean: its certificates named by their SHA-256, for an
/// enterprise that already holds them (`writer::CertificatesSent`).
#[derive(Debug, Clone)]
struct Cached {
    id: String,
    body: Bytes,
    zstd: Option<Bytes>,
    lean: Option<(Bytes, Vec<[u8; 32]>)>,
}

impl Cached {
    fn size(&self) -> usize {
        self.body.len()
            + self.zstd.as_ref().map_or(0, Bytes::len)
            + self.lean.as_ref().map_or(0, |(b, _)| b.len())
    }
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
        self.bytes += cached.size();
        if let Some(old) = self.by_id.insert(id.clone(), cached) {
            // Two writers read the same directive at once: keep one.
            self.bytes -= old.size();
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
                self.bytes -= c.size();
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
        heartbeats: Arc<isms_network::Heartbeats>,
    ) -> Self {
        LinkContext {
            shared,
            core,
            trust_domain,
            shutdown,
            heartbeats,
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
    let resume_from = peer.acked.load(std::sync::atomic::Ordering::SeqCst) + 1;
    let hello = Pieces::encode(&Frame {
        body: Some(frame::Body::Hello(Hello {
            applied: hello_applied,
            accepts_zstd: true,
            resume_from,
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
        let (peer_applied, compress) = match first {
            Err(_) => return SessionEnd::HelloTimeout,
            Ok(None) => return SessionEnd::Closed,
            Ok(Some(Err(status))) => return SessionEnd::Transport(status),
            Ok(Some(Ok(Frame {
                body: Some(frame::Body::Hello(h)),
            }))) => {
                // What the peer acknowledged before and no longer holds: this side lost it.
                if h.resume_from > hello_applied + 1
                    && let Err(e) = ctx.core.lost(peer.id.clone(), h.resume_from - 1).await
                {
                    return SessionEnd::Node(e);
                }
                (h.applied, h.accepts_zstd)
            }
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
            // A loss detected: reported upward as a fault.
            let action = isms_core::ReportAction::Fault {
                severity: "critical".into(),
                summary: format!("{} lost messages it had acknowledged", peer.id),
                detail: format!(
                    "it acknowledged {acked_before} and now says {peer_applied}: its store was \
                     restored from an older copy; what lies between cannot be resent"
                ),
                automatic: Some("data-loss".into()),
            };
            if let Err(e) = ctx.core.report(action, isms_core::Caller::node()).await {
                tracing::error!(error = %e, "the loss could not be reported as a fault");
            }
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
            writer::PeerHello {
                resume_from: peer_applied + 1,
                accepts_zstd: compress,
            },
            acked_rx,
            owed_rx,
            out.clone(),
            cancel.clone(),
        ));
        let watches = Watches {
            acked: acked_tx,
            owed: owed_tx,
        };
        let beating = (peer.role == Role::Parent).then(|| {
            tokio::spawn(send_heartbeats(
                ctx.heartbeats.clone(),
                peer.clone(),
                out.clone(),
                cancel.clone(),
            ))
        });
        let end = read_loop(&ctx, &peer, &mut inbound, &out, &watches, &cancel).await;
        cancel.cancel();
        let _ = writer.await;
        if let Some(beating) = beating {
            let _ = beating.await;
        }
        end
    }
    .await;
    ctx.end_session(&peer, session);
    tracing::info!(peer = %peer.id, reason = %result, "link down");
    result
}

/// The child's side: a heartbeat to the parent every interval for as long as the session
/// lasts, the first with everything below this node, then what changed.
async fn send_heartbeats(
    beats: Arc<isms_network::Heartbeats>,
    parent: Arc<PeerState>,
    out: Outbound,
    cancel: CancellationToken,
) {
    let mut since = 0;
    let mut every = tokio::time::interval(beats.interval());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        let (beat, next) = beats.next(since);
        let frame = Pieces::encode(&Frame {
            body: Some(frame::Body::Heartbeat(beat)),
        });
        parent.sent(&frame);
        if out.send(Ok(frame)).await.is_err() {
            return;
        }
        since = next;
    }
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

//! Simulated enterprises: thousands of enterprise links in one process, each with its own
//! certificate and TLS connection to its province, speaking the real link protocol and
//! doing what `enterprise-node` does for every message: check sequence and shape, store
//! the receipt, the rules and the `executed` report durably in one fsync'd group commit
//! before acknowledging, and resend unacknowledged reports after a reconnect.
//!
//! Where it differs from `enterprise-node` (stated in BENCHMARKS.md): all simulated
//! enterprises share one store and one commit thread, so one fsync covers many of them
//! (one machine cannot give each its own disk); a directive's body is written to that
//! store once, not once per simulated enterprise; each group commit writes its receipts
//! and applied marks as one log record and its reports as another, not as records per
//! enterprise; and the rules are counted per enterprise, with no rule sets or rules file.
//! Each sends its province a heartbeat every `health.interval` as `enterprise-node` does,
//! with a health of the same shape (its link, backlog and rule-set version; no store or
//! disk figures of its own). A real `enterprise-node` runs in the same network and pays
//! those costs in full.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use isms_domain::clock::{Clock, SystemClock};
use isms_domain::identity::{Identity, NodeId};
use isms_proto::Pieces;
use isms_proto::v1::{
    Ack, Batch, DirectiveKind, Envelope, Frame, Hello, StatusReport, TargetState, TargetStatus,
    envelope::Payload, frame,
};
use isms_store::Store;
use isms_transport::link::OwedAck;
use isms_transport::tls;
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;

/// One simulated enterprise.
pub struct Enterprise {
    pub id: NodeId,
    /// Its province's link address.
    pub parent_address: String,
    parent_id: String,
    client: rustls::ClientConfig,
    /// Highest sequence number from the province durably applied.
    applied: AtomicU64,
    /// Highest own sequence number durably in the outbox.
    durable_out: watch::Sender<u64>,
    /// Reports not yet acknowledged by the province, by sequence number.
    outbox: Mutex<BTreeMap<u64, Envelope>>,
    pub linked: AtomicBool,
}

/// Counters over every simulated enterprise.
#[derive(Default)]
pub struct Counters {
    /// Directives received and stored (each once per enterprise).
    pub received: AtomicU64,
    /// Directives that arrived again after being stored (must stay 0).
    pub duplicates: AtomicU64,
    /// Rules validated and recorded.
    pub rules: AtomicU64,
    /// `executed` reports made durable.
    pub executed: AtomicU64,
    /// Batches refused (bad sequence or shape).
    pub refused: AtomicU64,
    /// Group commits (each one fsync).
    pub commits: AtomicU64,
    /// Frames received that carried envelopes: with `received`, how well the provinces
    /// batch what they send each enterprise.
    pub frames: AtomicU64,
}

enum Event {
    Inbound {
        ent: usize,
        envelopes: Vec<Envelope>,
        /// Per envelope: how many distinct rules it carries, or why they are invalid.
        rules: Vec<Result<u64, String>>,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    Acked {
        ent: usize,
        up_to: u64,
    },
}

/// The simulated enterprises and their shared commit thread.
pub struct Sim {
    pub enterprises: Vec<Arc<Enterprise>>,
    pub counters: Arc<Counters>,
    tx: mpsc::Sender<Event>,
    window: u64,
    batch: usize,
    max_frame: usize,
    ack_delay: Duration,
    /// How often each sends its province a heartbeat (`health.interval`).
    heartbeat: Duration,
    started_at_ms: i64,
    /// Room for large batches decoded and waiting for their commit, in KiB: without it,
    /// thousands of 50,000-rule copies wait at once and the load generator runs out of memory.
    large_waiting: Arc<tokio::sync::Semaphore>,
}

/// A batch at least this large waits for room in `Sim::large_waiting`.
mod committer;

use committer::{Committer, EntState, ReceiptBits};

const LARGE_BATCH: usize = 1 << 20;
/// How much of large batches may wait for the commit thread at once.
const LARGE_WAITING: usize = 512 << 20;

impl Sim {
    /// Loads each enterprise's certificate from its generated directory and starts the
    /// commit thread over a store in `data_dir`.
    pub fn new(
        net: &isms_deploy::Network,
        ids: &[NodeId],
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Arc<Sim>> {
        let store = Store::open(data_dir)?;
        let mut enterprises = Vec::with_capacity(ids.len());
        let mut link = None;
        let mut heartbeat = None;
        for id in ids {
            let node = net
                .node(id.as_str())
                .ok_or_else(|| anyhow::anyhow!("{id} is not in the network"))?;
            let parent = node
                .config
                .parent
                .clone()
                .ok_or_else(|| anyhow::anyhow!("{id} has no parent"))?;
            let paths = tls::TlsPaths {
                ca: &node.dir.join(&node.config.tls.ca),
                cert: &node.dir.join(&node.config.tls.cert),
                key: &node.dir.join(&node.config.tls.key),
            };
            let client = tls::client_config(
                &paths,
                Identity::Node(parent.id.clone()),
                &node.config.trust_domain,
            )?;
            link.get_or_insert_with(|| node.config.link.clone());
            heartbeat.get_or_insert(node.config.health.interval);
            enterprises.push(Arc::new(Enterprise {
                id: id.clone(),
                parent_address: parent.address.clone(),
                parent_id: parent.id.to_string(),
                client,
                applied: AtomicU64::new(0),
                durable_out: watch::channel(0).0,
                outbox: Mutex::new(BTreeMap::new()),
                linked: AtomicBool::new(false),
            }));
        }
        let link = link.unwrap_or_default();
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(65_536);
        let committer = Committer {
            store: Arc::new(store),
            enterprises: enterprises.clone(),
            counters: counters.clone(),
            state: ids.iter().map(|_| EntState::default()).collect(),
            directives: HashMap::new(),
            directive_ids: Vec::new(),
            receipts: ReceiptBits::default(),
            reports_hint: 0,
            next_group: 0,
            unacked_runs: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("sim-commit".into())
            .spawn(move || committer.run(rx))?;
        Ok(Arc::new(Sim {
            enterprises,
            counters,
            tx,
            window: u64::from(link.window),
            batch: link.batch as usize,
            max_frame: link.max_frame_bytes,
            ack_delay: link.ack_delay,
            heartbeat: heartbeat.unwrap_or(Duration::from_secs(10)),
            started_at_ms: SystemClock.now_ms(),
            large_waiting: Arc::new(tokio::sync::Semaphore::new(LARGE_WAITING / 1024)),
        }))
    }

    /// Starts every enterprise's link task on the current runtime.
    pub fn start(self: &Arc<Self>) {
        for i in 0..self.enterprises.len() {
            let sim = self.clone();
            tokio::spawn(async move { sim.keep_linked(i).await });
        }
    }

    pub fn linked(&self) -> usize {
        self.enterprises
            .iter()
            .filter(|e| e.linked.load(Ordering::Relaxed))
            .count()
    }

    async fn keep_linked(self: Arc<Self>, i: usize) {
        let mut delay = Duration::from_millis(100);
        loop {
            let ent = &self.enterprises[i];
            if let Err(e) = self.session(i).await {
                verbose(&format!("{}: link ended: {e}", ent.id));
            }
            ent.linked.store(false, Ordering::Relaxed);
            let jitter = rand::random_range(0.5..1.0);
            tokio::time::sleep(delay.mul_f64(jitter)).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn session(&self, i: usize) -> anyhow::Result<()> {
        let ent = &self.enterprises[i];
        let channel = tls::channel(&ent.parent_address, ent.client.clone())?;
        let (out, rx) = mpsc::channel(64);
        let hello_applied = ent.applied.load(Ordering::SeqCst);
        out.send(body(frame::Body::Hello(Hello {
            applied: hello_applied,
            accepts_zstd: true,
            resume_from: 0,
        })))
        .await?;
        // The link's own transport, as enterprise-node's.
        let mut inbound = isms_transport::wire::open(channel, rx, self.max_frame).await?;
        let peer_applied = match inbound.next().await {
            Some(Ok(Frame {
                body: Some(frame::Body::Hello(h)),
            })) => h.applied,
            other => anyhow::bail!("expected Hello, got {other:?}"),
        };
        ent.linked.store(true, Ordering::Relaxed);
        let (acked_tx, acked_rx) = watch::channel(peer_applied);
        let (owed_tx, owed_rx) = watch::channel(hello_applied);
        let writer = tokio::spawn(write_loop(
            ent.clone(),
            peer_applied + 1,
            acked_rx,
            owed_rx,
            out.clone(),
            Tuning {
                window: self.window,
                batch: self.batch,
                ack_delay: self.ack_delay,
            },
        ));
        let beating = tokio::spawn(send_heartbeats(
            ent.clone(),
            out.clone(),
            self.heartbeat,
            self.started_at_ms,
        ));
        let result = async {
            while let Some(frame) = inbound.next().await {
                // As enterprise-node: an acknowledgment comes alone or carried by a batch.
                let (envelopes, acked, bytes) = match frame?.body {
                    Some(frame::Body::Batch(batch)) => (
                        batch.decode_envelopes()?,
                        batch.applied,
                        batch.envelopes.iter().map(|e| e.len()).sum::<usize>(),
                    ),
                    Some(frame::Body::Ack(Ack { applied })) => (Vec::new(), applied, 0),
                    other => anyhow::bail!("unexpected frame {other:?}"),
                };
                if acked != 0 {
                    raise(&acked_tx, acked);
                    self.tx
                        .send(Event::Acked {
                            ent: i,
                            up_to: acked,
                        })
                        .await?;
                }
                if !envelopes.is_empty() {
                    self.counters.frames.fetch_add(1, Ordering::Relaxed);
                    let _room = if bytes >= LARGE_BATCH {
                        let kib = (bytes.div_ceil(1024)).min(LARGE_WAITING / 1024);
                        Some(
                            self.large_waiting
                                .clone()
                                .acquire_many_owned(u32::try_from(kib)?)
                                .await?,
                        )
                    } else {
                        None
                    };
                    // Every rule is checked here, on the link's task, as each enterprise-node
                    // checks its own on its own core; the commit thread only stores.
                    let rules = envelopes.iter().map(check_rules).collect();
                    let (reply, answer) = oneshot::channel();
                    self.tx
                        .send(Event::Inbound {
                            ent: i,
                            envelopes,
                            rules,
                            reply,
                        })
                        .await?;
                    let applied = answer.await?.map_err(anyhow::Error::msg)?;
                    raise(&owed_tx, applied);
                }
            }
            anyhow::Ok(())
        }
        .await;
        writer.abort();
        beating.abort();
        result
    }
}

/// A heartbeat every `every`, first at a random point of the interval so thousands of
/// enterprises do not beat in step, with a health of `enterprise-node`'s shape.
async fn send_heartbeats(
    ent: Arc<Enterprise>,
    out: mpsc::Sender<Result<Pieces, Status>>,
    every: Duration,
    started_at_ms: i64,
) {
    let first = tokio::time::Instant::now() + every.mul_f64(rand::random_range(0.0..1.0));
    let mut tick = tokio::time::interval_at(first, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = SystemClock.now_ms();
        let (backlog, oldest) = {
            let outbox = ent.outbox.lock().unwrap_or_else(|p| p.into_inner());
            (outbox.len() as u64, 0)
        };
        let applied = ent.applied.load(Ordering::Relaxed);
        let beat = isms_proto::v1::Heartbeat {
            own: Some(isms_proto::v1::Health {
                version: env!("CARGO_PKG_VERSION").into(),
                started_at_ms,
                links: vec![isms_proto::v1::LinkHealth {
                    peer: ent.parent_id.clone(),
                    up: true,
                    backlog,
                    oldest_age_ms: oldest,
                }],
                links_total: 1,
                links_up: 1,
                rules_version: applied,
                rules_sha256: vec![0; 32],
                interval_ms: i64::try_from(every.as_millis()).unwrap_or(i64::MAX),
                ..Default::default()
            }),
            below: Vec::new(),
            full: false,
            sent_at_ms: now,
        };
        if out.send(body(frame::Body::Heartbeat(beat))).await.is_err() {
            return;
        }
    }
}

/// How many distinct rules a directive applies, validated as enterprise-node does.
fn check_rules(env: &Envelope) -> Result<u64, String> {
    match &env.payload {
        Some(Payload::Directive(d))
            if matches!(
                DirectiveKind::try_from(d.kind),
                Ok(DirectiveKind::Disposal | DirectiveKind::Monitoring)
            ) =>
        {
            isms_domain::directive::count_distinct_rules(&d.rules)
                .map(|n| n as u64)
                .map_err(|e| e.to_string())
        }
        _ => Ok(0),
    }
}

/// A frame to send, encoded.
fn body(b: frame::Body) -> Result<Pieces, Status> {
    Ok(Pieces::encode(&Frame { body: Some(b) }))
}

/// Errors of individual links are expected while a province restarts; they go to stderr
/// only when asked for.
fn verbose(line: &str) {
    if std::env::var_os("ISMS_BENCH_VERBOSE").is_some() {
        eprintln!("{line}");
    }
}

fn raise(w: &watch::Sender<u64>, to: u64) {
    w.send_if_modified(|v| {
        let newer = to > *v;
        *v = (*v).max(to);
        newer
    });
}

struct Tuning {
    window: u64,
    batch: usize,
    ack_delay: Duration,
}

/// Sends durable, unacknowledged reports, at most `window` beyond the last acknowledgment,
/// and acknowledgments as enterprise-node does: carried by a report batch, else alone
/// after `ack_delay` (at once when a quarter of the window is owed).
async fn write_loop(
    ent: Arc<Enterprise>,
    mut next: u64,
    mut acked: watch::Receiver<u64>,
    mut owed: watch::Receiver<u64>,
    out: mpsc::Sender<Result<Pieces, Status>>,
    tuning: Tuning,
) {
    let mut durable = ent.durable_out.subscribe();
    let mut ack = OwedAck::new(*owed.borrow_and_update(), tuning.ack_delay, tuning.window);
    let applied_now =
        |owed: &watch::Receiver<u64>| (*owed.borrow()).max(ent.applied.load(Ordering::SeqCst));
    loop {
        let top = *durable.borrow_and_update();
        let acked_now = *acked.borrow_and_update();
        next = next.max(acked_now + 1);
        let limit = top.min(acked_now + tuning.window);
        if next <= limit {
            let envelopes: Vec<Envelope> = {
                let outbox = ent.outbox.lock().unwrap_or_else(|p| p.into_inner());
                outbox
                    .range(next..=limit)
                    .take(tuning.batch)
                    .map(|(_, e)| e.clone())
                    .collect()
            };
            if let Some(last) = envelopes.last() {
                next = last.seq + 1;
                let batch = Batch::of(&envelopes, ack.carry(applied_now(&owed)));
                if out.send(body(frame::Body::Batch(batch))).await.is_err() {
                    return;
                }
                continue;
            }
        }
        owed.mark_unchanged();
        let applied = applied_now(&owed);
        if ack.alone_now(applied) {
            if out
                .send(body(frame::Body::Ack(Ack { applied })))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        tokio::select! {
            r = durable.changed() => if r.is_err() { return },
            r = acked.changed() => if r.is_err() { return },
            r = owed.changed() => if r.is_err() { return },
            () = ack.timer() => {}
        }
    }
}

type Reply = oneshot::Sender<Result<u64, String>>;

#[cfg(test)]
mod tests;

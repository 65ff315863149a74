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
//! A real `enterprise-node` runs in the same network and pays those costs in full.

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
    /// Room for large batches decoded and waiting for their commit, in KiB: without it,
    /// thousands of 50,000-rule copies wait at once and the load generator runs out of memory.
    large_waiting: Arc<tokio::sync::Semaphore>,
}

/// A batch at least this large waits for room in `Sim::large_waiting`.
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
            enterprises.push(Arc::new(Enterprise {
                id: id.clone(),
                parent_address: parent.address.clone(),
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
        result
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

#[derive(Default)]
struct EntState {
    applied: u64,
    next_seq: u64,
    acked: u64,
    /// Report runs stored and not yet acknowledged, oldest first: (group, last sequence
    /// number); one run per group, as enterprise-node stores a group's reports as one run.
    runs: std::collections::VecDeque<(u64, u64)>,
}

/// The one writer: groups whatever arrived, one atomic batch and one fsync per group, and
/// only then answers (acks) and publishes reports.
struct Committer {
    store: Arc<Store>,
    enterprises: Vec<Arc<Enterprise>>,
    counters: Arc<Counters>,
    state: Vec<EntState>,
    /// Directives whose body is in the store, numbered in the order they first came.
    directives: HashMap<String, u32>,
    directive_ids: Vec<String>,
    /// The receipts in the store: the duplicate check, kept in memory because the store
    /// holds receipts by group, not by key.
    receipts: ReceiptBits,
    /// The size of the last group's reports record, to allocate the next one at once
    /// rather than grow it by copies.
    reports_hint: usize,
    next_group: u64,
    /// Per group whose reports record is still stored: the report runs in it not yet
    /// acknowledged. At 0 the record is deleted.
    unacked_runs: HashMap<u64, usize>,
}

/// Per directive number, a bit per enterprise that stored a receipt of it. Bits rather than
/// a hash set of (enterprise, directive) pairs: a set of millions of pairs cost the commit
/// thread 9% in hashing and rehashing.
#[derive(Default)]
struct ReceiptBits(Vec<DirectiveBits>);

/// One directive's bits, from the lowest word any of its enterprises set: a one-target
/// directive (the backlog scenario queues 100,000) holds one word, not one per 64
/// enterprises before its target.
#[derive(Default)]
struct DirectiveBits {
    first_word: usize,
    words: Vec<u64>,
}

impl ReceiptBits {
    /// Marks enterprise `ent`'s receipt of directive `number`; false if it had one.
    fn insert(&mut self, ent: usize, number: u32) -> bool {
        let number = number as usize;
        if self.0.len() <= number {
            self.0.resize_with(number + 1, DirectiveBits::default);
        }
        let bits = &mut self.0[number];
        let (word, bit) = (ent / 64, 1u64 << (ent % 64));
        if bits.words.is_empty() {
            bits.first_word = word;
        } else if word < bits.first_word {
            let before = bits.first_word - word;
            bits.words.splice(0..0, std::iter::repeat_n(0, before));
            bits.first_word = word;
        }
        let at = word - bits.first_word;
        if bits.words.len() <= at {
            bits.words.resize(at + 1, 0);
        }
        let new = bits.words[at] & bit == 0;
        bits.words[at] |= bit;
        new
    }
}

/// What one group commit stores, besides directive bodies: its log record (every receipt
/// and applied mark it made, kept) and its reports record (every report it made, deleted
/// once the province has acknowledged them all).
struct GroupLog {
    /// This group's number, in its records' keys.
    group: u64,
    /// When the group began, the time of its reports.
    now: i64,
    /// Per directive number, the enterprises that stored a receipt for it.
    receipts: BTreeMap<u32, Vec<u32>>,
    applied: Vec<(u32, u64)>,
    /// The group's reports, each a length-delimited `Envelope` (field 1 of [`ReportsRecord`]).
    reports: Vec<u8>,
    runs: usize,
}

/// The log record of a group commit (`g/<group>`): what a restart would read to rebuild
/// the receipts and each enterprise's applied mark.
#[derive(Clone, PartialEq, prost::Message)]
struct GroupRecord {
    #[prost(message, repeated, tag = "1")]
    receipts: Vec<Receipts>,
    /// Enterprise numbers and their applied marks, pairwise; the last mark of an
    /// enterprise is the one in force.
    #[prost(uint32, repeated, tag = "2")]
    applied_enterprises: Vec<u32>,
    #[prost(uint64, repeated, tag = "3")]
    applied_marks: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Receipts {
    #[prost(string, tag = "1")]
    directive_id: String,
    #[prost(uint32, repeated, tag = "2")]
    enterprises: Vec<u32>,
}

/// The reports record of a group commit (`o/<group>`): what a restart would resend. Written
/// a report at a time by [`append_report`] without copying the reports into one.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, PartialEq, prost::Message)]
struct ReportsRecord {
    #[prost(message, repeated, tag = "1")]
    reports: Vec<Envelope>,
}

type Reply = oneshot::Sender<Result<u64, String>>;

/// What a group decided, applied after its commit.
#[derive(Default)]
struct Outcome {
    replies: Vec<(usize, Reply, Result<u64, String>)>,
    reports: Vec<(usize, Envelope)>,
}

impl Committer {
    fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        loop {
            let mut events = Vec::new();
            match rx.blocking_recv() {
                Some(e) => events.push(e),
                None => return,
            }
            while events.len() < 4096 {
                match rx.try_recv() {
                    Ok(e) => events.push(e),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.group(events) {
                eprintln!("simulated enterprises: store failed: {e}");
                std::process::exit(1);
            }
        }
    }

    fn group(&mut self, events: Vec<Event>) -> anyhow::Result<()> {
        let now = SystemClock.now_ms();
        let store = self.store.clone();
        let mut txn = store.txn();
        let mut outcome = Outcome::default();
        let group = self.next_group;
        let mut log = GroupLog {
            group,
            now,
            receipts: BTreeMap::new(),
            applied: Vec::new(),
            reports: Vec::with_capacity(self.reports_hint),
            runs: 0,
        };
        for event in events {
            match event {
                Event::Inbound {
                    ent,
                    envelopes,
                    rules,
                    reply,
                } => {
                    let r = self.inbound(&mut txn, &mut log, ent, envelopes, rules, &mut outcome);
                    if r.is_err() {
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    outcome.replies.push((ent, reply, r));
                }
                Event::Acked { ent, up_to } => {
                    let st = &mut self.state[ent];
                    let up_to = up_to.min(st.next_seq);
                    while let Some(&(run_group, last)) = st.runs.front() {
                        if last > up_to {
                            break;
                        }
                        st.runs.pop_front();
                        if run_group == group {
                            // Acknowledged before its own commit: not counted in yet.
                            log.runs -= 1;
                            continue;
                        }
                        if let Some(n) = self.unacked_runs.get_mut(&run_group) {
                            *n -= 1;
                            if *n == 0 {
                                self.unacked_runs.remove(&run_group);
                                txn.delete(group_key(b"o/", run_group));
                            }
                        }
                    }
                    if up_to > st.acked {
                        let mut outbox = self.enterprises[ent]
                            .outbox
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        *outbox = outbox.split_off(&(up_to + 1));
                        st.acked = up_to;
                    }
                }
            }
        }
        if !log.applied.is_empty() {
            let record = GroupRecord {
                receipts: std::mem::take(&mut log.receipts)
                    .into_iter()
                    .map(|(d, enterprises)| Receipts {
                        directive_id: self.directive_ids[d as usize].clone(),
                        enterprises,
                    })
                    .collect(),
                applied_enterprises: log.applied.iter().map(|&(e, _)| e).collect(),
                applied_marks: log.applied.iter().map(|&(_, m)| m).collect(),
            };
            txn.put(group_key(b"g/", group), record.encode_to_vec());
        }
        self.reports_hint = log.reports.len();
        if log.runs > 0 {
            txn.put(group_key(b"o/", group), std::mem::take(&mut log.reports));
            self.unacked_runs.insert(group, log.runs);
        }
        self.next_group += 1;
        let writes = txn.into_writes();
        if !writes.is_empty() {
            store.apply(writes)?;
            store.sync()?;
            self.counters.commits.fetch_add(1, Ordering::Relaxed);
        }
        // As enterprise-node: what was applied is published before the reports go out, so
        // they carry its acknowledgment.
        for (ent, _, r) in &outcome.replies {
            if let Ok(applied) = r {
                self.enterprises[*ent]
                    .applied
                    .store(*applied, Ordering::SeqCst);
            }
        }
        for (ent, env) in outcome.reports {
            let e = &self.enterprises[ent];
            let seq = env.seq;
            e.outbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(seq, env);
            e.durable_out.send_replace(seq);
        }
        for (_, reply, r) in outcome.replies {
            let _ = reply.send(r);
        }
        Ok(())
    }

    fn inbound(
        &mut self,
        txn: &mut isms_store::Txn<'_>,
        log: &mut GroupLog,
        ent: usize,
        envelopes: Vec<Envelope>,
        rules: Vec<Result<u64, String>>,
        outcome: &mut Outcome,
    ) -> Result<u64, String> {
        let me = self.enterprises[ent].id.as_str().to_string();
        // Everything that can be refused is checked before the first write.
        let mut expect = self.state[ent].applied + 1;
        for (env, rules) in envelopes.iter().zip(&rules) {
            if env.seq < expect {
                continue;
            }
            if let Err(e) = rules {
                return Err(e.clone());
            }
            if env.seq != expect {
                return Err(format!("sequence gap: expected {expect}, got {}", env.seq));
            }
            expect += 1;
            match &env.payload {
                Some(Payload::Directive(d)) => {
                    isms_core::check_directive_shape(d).map_err(|e| e.to_string())?;
                    if !d.targets.contains(&me) {
                        return Err(format!("directive {} is not for {me}", d.id));
                    }
                }
                _ => return Err("only directives come down to an enterprise".into()),
            }
        }
        let mut reports = Vec::new();
        for (env, rules) in envelopes.into_iter().zip(rules) {
            if env.seq <= self.state[ent].applied {
                continue;
            }
            self.state[ent].applied = env.seq;
            let Some(Payload::Directive(d)) = env.payload else {
                continue;
            };
            let rules = rules?;
            let number = match self.directives.get(&d.id) {
                Some(&n) => n,
                None => {
                    let n = self.directive_ids.len() as u32;
                    txn.put(format!("d/{}", d.id).into_bytes(), d.encode_to_vec());
                    self.directives.insert(d.id.clone(), n);
                    self.directive_ids.push(d.id.clone());
                    n
                }
            };
            if !self.receipts.insert(ent, number) {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.counters.rules.fetch_add(rules, Ordering::Relaxed);
            // As enterprise-node: receipt, rules and `executed` in one commit, one report.
            log.receipts.entry(number).or_default().push(ent as u32);
            reports.push(self.report(ent, &d.id, TargetState::Executed, log.now));
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            self.counters.executed.fetch_add(1, Ordering::Relaxed);
        }
        // As enterprise-node: a group's reports for the province are one outbox run.
        if let Some(last) = reports.last() {
            for report in &reports {
                append_report(&mut log.reports, report);
            }
            self.state[ent].runs.push_back((log.group, last.seq));
            log.runs += 1;
        }
        outcome
            .reports
            .extend(reports.into_iter().map(|r| (ent, r)));
        let applied = self.state[ent].applied;
        log.applied.push((ent as u32, applied));
        Ok(applied)
    }

    /// The enterprise's next report, numbered in its outbox (stored by the caller).
    fn report(&mut self, ent: usize, directive_id: &str, state: TargetState, now: i64) -> Envelope {
        let st = &mut self.state[ent];
        st.next_seq += 1;
        let seq = st.next_seq;
        Envelope {
            seq,
            id: uuid::Uuid::now_v7().to_string(),
            trace_context: Default::default(),
            payload: Some(Payload::Status(StatusReport {
                directive_id: directive_id.to_string(),
                updates: vec![TargetStatus {
                    node: self.enterprises[ent].id.as_str().to_string(),
                    state: state as i32,
                    at_ms: now,
                    detail: String::new(),
                    overdue_at_ms: 0,
                    result: None,
                }],
            })),
        }
    }
}

/// Appends `report` to an encoded [`ReportsRecord`].
fn append_report(record: &mut Vec<u8>, report: &Envelope) {
    prost::encoding::message::encode(1, report, record);
}

// The simulated enterprises share one store. Their receipts, applied marks and reports
// were first records per enterprise (keyed by directive, then enterprise): about three new
// keys per enterprise and directive in one sled tree of millions, whose leaf copies and
// splits kept the commit thread at a quarter of the machine's CPU in the throughput
// scenario. 4,990 real enterprises pay for their few records on their own machines; here
// a group's records are two values, numbered by group.
fn group_key(prefix: &[u8], group: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&group.to_be_bytes());
    k
}

#[cfg(test)]
mod tests;

//! The simulated enterprises' store: one commit thread that makes every receipt, applied
//! mark and report durable in one fsync'd group commit before any of them is acknowledged,
//! kept as two records per group (a receipt log, and reports deleted once acknowledged).

use super::*;

#[derive(Default)]
pub(super) struct EntState {
    pub(super) applied: u64,
    pub(super) next_seq: u64,
    pub(super) acked: u64,
    /// Report runs stored and not yet acknowledged, oldest first: (group, last sequence
    /// number); one run per group, as enterprise-node stores a group's reports as one run.
    pub(super) runs: std::collections::VecDeque<(u64, u64)>,
}

/// The one writer: groups whatever arrived, one atomic batch and one fsync per group, and
/// only then answers (acks) and publishes reports.
pub(super) struct Committer {
    pub(super) store: Arc<Store>,
    pub(super) enterprises: Vec<Arc<Enterprise>>,
    pub(super) counters: Arc<Counters>,
    pub(super) state: Vec<EntState>,
    /// Directives whose body is in the store, numbered in the order they first came.
    pub(super) directives: HashMap<String, u32>,
    pub(super) directive_ids: Vec<String>,
    /// The receipts in the store: the duplicate check, kept in memory because the store
    /// holds receipts by group, not by key.
    pub(super) receipts: ReceiptBits,
    /// The size of the last group's reports record, to allocate the next one at once
    /// rather than grow it by copies.
    pub(super) reports_hint: usize,
    pub(super) next_group: u64,
    /// Per group whose reports record is still stored: the report runs in it not yet
    /// acknowledged. At 0 the record is deleted.
    pub(super) unacked_runs: HashMap<u64, usize>,
}

/// Per directive number, a bit per enterprise that stored a receipt of it. Bits rather than
/// a hash set of (enterprise, directive) pairs: a set of millions of pairs cost the commit
/// thread 9% in hashing and rehashing.
#[derive(Default)]
pub(super) struct ReceiptBits(pub(super) Vec<DirectiveBits>);

/// One directive's bits, from the lowest word any of its enterprises set: a one-target
/// directive (the backlog scenario queues 100,000) holds one word, not one per 64
/// enterprises before its target.
#[derive(Default)]
pub(super) struct DirectiveBits {
    pub(super) first_word: usize,
    pub(super) words: Vec<u64>,
}

impl ReceiptBits {
    /// Marks enterprise `ent`'s receipt of directive `number`; false if it had one.
    pub(super) fn insert(&mut self, ent: usize, number: u32) -> bool {
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
pub(super) struct GroupLog {
    /// This group's number, in its records' keys.
    pub(super) group: u64,
    /// When the group began, the time of its reports.
    pub(super) now: i64,
    /// Per directive number, the enterprises that stored a receipt for it.
    pub(super) receipts: BTreeMap<u32, Vec<u32>>,
    pub(super) applied: Vec<(u32, u64)>,
    /// The group's reports, each a length-delimited `Envelope` (field 1 of [`ReportsRecord`]).
    pub(super) reports: Vec<u8>,
    pub(super) runs: usize,
}

/// The log record of a group commit (`g/<group>`): what a restart would read to rebuild
/// the receipts and each enterprise's applied mark.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct GroupRecord {
    #[prost(message, repeated, tag = "1")]
    pub(super) receipts: Vec<Receipts>,
    /// Enterprise numbers and their applied marks, pairwise; the last mark of an
    /// enterprise is the one in force.
    #[prost(uint32, repeated, tag = "2")]
    pub(super) applied_enterprises: Vec<u32>,
    #[prost(uint64, repeated, tag = "3")]
    pub(super) applied_marks: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Receipts {
    #[prost(string, tag = "1")]
    pub(super) directive_id: String,
    #[prost(uint32, repeated, tag = "2")]
    pub(super) enterprises: Vec<u32>,
}

/// The reports record of a group commit (`o/<group>`): what a restart would resend. Written
/// a report at a time by [`append_report`] without copying the reports into one.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ReportsRecord {
    #[prost(message, repeated, tag = "1")]
    pub(super) reports: Vec<Envelope>,
}

/// What a group decided, applied after its commit.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) replies: Vec<(usize, Reply, Result<u64, String>)>,
    pub(super) reports: Vec<(usize, Envelope)>,
}

impl Committer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Event>) {
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

    pub(super) fn group(&mut self, events: Vec<Event>) -> anyhow::Result<()> {
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

    pub(super) fn inbound(
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
    pub(super) fn report(
        &mut self,
        ent: usize,
        directive_id: &str,
        state: TargetState,
        now: i64,
    ) -> Envelope {
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
                    hits: None,
                    blacklist: None,
                    signed: None,
                }],
            })),
        }
    }
}

/// Appends `report` to an encoded [`ReportsRecord`].
pub(super) fn append_report(record: &mut Vec<u8>, report: &Envelope) {
    prost::encoding::message::encode(1, report, record);
}

// The simulated enterprises share one store. Their receipts, applied marks and reports
// were first records per enterprise (keyed by directive, then enterprise): about three new
// keys per enterprise and directive in one sled tree of millions, whose leaf copies and
// splits kept the commit thread at a quarter of the machine's CPU in the throughput
// scenario. 4,990 real enterprises pay for their few records on their own machines; here
// a group's records are two values, numbered by group.
pub(super) fn group_key(prefix: &[u8], group: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&group.to_be_bytes());
    k
}

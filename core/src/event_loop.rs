//! The event loop and group commit: take every queued event as one group (a small group
//! lingers for more), handle each against one transaction, apply the group as one atomic
//! batch, sync once, and only then reply, acknowledge and publish the new outbox marks.

use super::*;

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
            querier: None,
            query_adapter: options.query_adapter,
            next_seq: NodeMap::default(),
            applied: NodeMap::default(),
            acked: NodeMap::default(),
            inboxes: inbox::Inboxes::load(&store, &shared.peers)?,
            fans: fanout::Fans::load(&store, &shared.peers)?,
            delivered_runs: delivered::DeliveredRuns::load(&store)?,
            points: options.points,
            enforcer: None,
            monitor_next: None,
            fatal,
            // An enterprise has one link: there is nothing to gather, only time to lose.
            linger: if shared.node_id.tier() == Tier::Enterprise {
                std::time::Duration::ZERO
            } else {
                options.linger
            },
            hold_issue_answers: options.hold_issue_answers,
            four_eyes: options.four_eyes.clone(),
            keeping: options.keeping.clone(),
            audit: audit::load_chain(&store)?,
            runtime: tokio::runtime::Handle::try_current().ok(),
            caches: None,
            own_blacklist: None,
            trust: options.trust.clone(),
            tamper: options.tamper,
            availability_retention_ms: options.availability_retention_ms,
            availability_pruned_at: 0,
            data_rules: options.data_rules.clone(),
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
        let (tx, rx) = mpsc::channel(8192);
        if let Some(points) = core.points.take() {
            // Weak: the core stops when every handle is gone, and the enforcer lives as long
            // as the core (which owns it), so a strong one would keep both waiting.
            let to_core = tx.downgrade();
            let enforcer = isms_enforce::Enforcer::spawn(points, move |version, outcome| {
                // A core that stopped no longer needs to hear it.
                if let Some(tx) = to_core.upgrade() {
                    let _ = tx.blocking_send(Event::Enforced { version, outcome });
                }
            })
            .map_err(|e| thread_not_started("enforcer", e))?;
            core.enforcer = Some(enforcer);
            core.converge_at_start()?;
        }
        if core.tier == Tier::Enterprise {
            let adapter = core
                .query_adapter
                .take()
                .unwrap_or_else(|| QueryAdapter::Feed(core.access_log.clone()));
            let to_core = tx.downgrade();
            let querier = querier::Querier::spawn(adapter, move |directive, answer| {
                if let Some(tx) = to_core.upgrade() {
                    let _ = tx.blocking_send(Event::QueryAnswered { directive, answer });
                }
            })
            .map_err(|e| thread_not_started("querier", e))?;
            core.querier = Some(querier);
            core.ask_pending_queries()?;
        }
        let thread = std::thread::Builder::new()
            .name("isms-core".into())
            .spawn(move || core.run(rx))
            .map_err(|e| thread_not_started("core", e))?;
        Ok((CoreHandle { tx }, thread))
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Event>) {
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
    /// loses nothing by letting others run for a few milliseconds (bench/HISTORY.md).
    pub(super) fn linger(
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

    pub(super) fn process_group(&mut self, events: Vec<Event>) -> Result<(), NodeError> {
        let store = self.shared.store.clone();
        // A group that fails stops the node, so the caches it took need not come back.
        let mut g = match self.caches.take() {
            Some((targets, metas)) => {
                Group::with_caches(store.txn(), self.shared.now_ms(), targets, metas)
            }
            None => Group::new(store.txn(), self.shared.now_ms()),
        };
        g.audit = self.audit;
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
            audit: chain,
            ..
        } = g;
        let writes = txn.into_writes();
        if !writes.is_empty() {
            store.apply(writes)?;
            store.sync()?;
        }
        // Only now do the caches and the chain's head match the store again.
        self.caches = Some((targets, metas));
        self.audit = chain;
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
        if self.hold_issue_answers {
            for reply in &replies {
                if let Reply::Issue(_, Ok(r)) = reply {
                    tracing::warn!(directive = %r.id, "testing: issue stored, its answer held until the node is killed");
                    loop {
                        std::thread::park();
                    }
                }
            }
        }
        for reply in replies {
            // A caller that went away no longer needs the answer.
            match reply {
                Reply::Inbound(tx, r) => drop(tx.send(r)),
                Reply::Issue(tx, r) => drop(tx.send(r)),
                Reply::Decide(tx, r) => drop(tx.send(r)),
                Reply::Audited(tx) => drop(tx.send(Ok(()))),
                Reply::Reported(tx, r) => drop(tx.send(r)),
                Reply::Exported(tx, r) => drop(tx.send(r)),
                Reply::Verified(tx, r) => drop(tx.send(r)),
            }
        }
        Ok(())
    }

    /// Tells link writers and sessions what is now durable, for the peers the group
    /// touched: the others' state is as last published (at start, or by an earlier group),
    /// and telling all 162 of a province's peers after every group was a tenth of its core
    /// thread one directive at a time (bench/HISTORY.md).
    /// What was applied is published before the writers wake, so the reports a group made
    /// go out carrying the acknowledgment of what they answer.
    pub(super) fn publish(&self, touched: &NodeSet) {
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
    pub(super) fn handle(&mut self, g: &mut Group<'_>, event: Event) -> Result<(), NodeError> {
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
            Event::Lost {
                peer,
                through,
                reply,
            } => {
                self.take_loss(g, &peer, through)?;
                g.replies.push(Reply::Audited(reply));
            }
            Event::Acked { peer, up_to } => {
                g.touched.insert(peer.clone());
                self.apply_ack(g, &peer, up_to)?;
            }
            Event::Issue {
                request,
                caller,
                reply,
            } => {
                let id = request.id.clone();
                let result = match self.issue(g, *request, &caller) {
                    Err(NodeError::Store(e)) => return Err(NodeError::Store(e)),
                    r => r,
                };
                if let Err(e) = &result {
                    // A refused call is an operator action too; a done one was
                    // recorded with what it did.
                    audit(g, &caller, "directive.issue", &id, &format!("error: {e}"));
                }
                g.replies.push(Reply::Issue(reply, result));
            }
            Event::Decide {
                id,
                caller,
                decision,
                reply,
            } => {
                let action = decision.action();
                let result = match self.decide(g, &id, &caller, decision) {
                    Err(NodeError::Store(e)) => return Err(NodeError::Store(e)),
                    r => r,
                };
                if let Err(e) = &result {
                    audit(g, &caller, action, &id, &format!("error: {e}"));
                }
                g.replies.push(Reply::Decide(reply, result));
            }
            Event::Enforced { version, outcome } => self.enforced(g, version, outcome)?,
            Event::QueryAnswered { directive, answer } => {
                self.query_answered(g, &directive, answer)?
            }
            Event::AuditExported {
                caller,
                through_seq,
                hash,
                reply,
            } => {
                let result = match self.audit_exported(g, &caller, through_seq, &hash) {
                    Err(NodeError::Store(e)) => return Err(NodeError::Store(e)),
                    r => r,
                };
                if let Err(e) = &result {
                    audit(
                        g,
                        &caller,
                        "audit.exported",
                        &through_seq.to_string(),
                        &format!("error: {e}"),
                    );
                }
                g.replies.push(Reply::Exported(reply, result));
            }
            Event::VerifyBlacklist { caller, reply } => {
                let result = self.verify_blacklists(g);
                let outcome = match &result {
                    Ok(lists) => {
                        let bad: Vec<&str> = lists
                            .iter()
                            .filter(|l| !l.intact)
                            .map(|l| l.issuer.as_str())
                            .collect();
                        if bad.is_empty() {
                            format!("{} lists intact", lists.len())
                        } else {
                            format!("mismatch: {}; resync asked", bad.join(", "))
                        }
                    }
                    Err(e) => format!("error: {e}"),
                };
                audit(g, &caller, "blacklist.verify", "", &outcome);
                let result = match result {
                    Err(NodeError::Store(e)) => return Err(NodeError::Store(e)),
                    r => r,
                };
                g.replies.push(Reply::Verified(reply, result));
            }
            Event::Audit {
                caller,
                action,
                subject,
                outcome,
                reply,
            } => {
                audit(g, &caller, &action, &subject, &outcome);
                g.replies.push(Reply::Audited(reply));
            }
            Event::Report {
                action,
                caller,
                reply,
            } => {
                let name = action.action();
                let result = match self.report_action(g, &caller, action) {
                    Err(NodeError::Store(e)) => return Err(NodeError::Store(e)),
                    r => r,
                };
                if let Err(e) = &result {
                    audit(g, &caller, name, "", &format!("error: {e}"));
                }
                g.replies.push(Reply::Reported(reply, result));
            }
            Event::Liveness { changes, reply } => {
                self.record_liveness(g, changes);
                g.replies.push(Reply::Audited(reply));
            }
            Event::Tick => {
                self.check_clocks(g)?;
                self.prune_availability(g)?;
                self.check_approvals(g)?;
                self.prune_audit(g)?;
                // Last: the head signed covers what this tick recorded.
                self.anchor_audit(g)?;
                if self.tier == Tier::Enterprise {
                    self.announce_certificate(g)?;
                    self.check_schedule(g)?;
                    self.check_monitoring(g)?;
                }
            }
        }
        Ok(())
    }
}

/// A thread the core needs could not be started (the system is out of threads or memory):
/// reported as the store's I/O failing, which stops the node.
fn thread_not_started(thread: &str, source: std::io::Error) -> NodeError {
    NodeError::Store(isms_store::StoreError::Io {
        path: PathBuf::from(format!("<{thread} thread>")),
        source,
    })
}

//! Delivery: queueing directives and messages into the peers' outboxes, and a peer's
//! acknowledgment moving targets to `delivered` and dropping what it acknowledged.

use super::*;

impl Core {
    /// Records that enterprise `targets` of a directive are queued here now, in the
    /// directive's one `QueuedTargets` record.
    pub(super) fn queue_targets(
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

    pub(super) fn enqueue_directive(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        d: &Directive,
        targets: Vec<String>,
        trace: HashMap<String, String>,
    ) -> Result<(), NodeError> {
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
        if self.delivered_by_run(peer) {
            // The province's record, `queued` in this group, keeps the copy's place: its
            // acknowledgment run says it was delivered (`delivered`).
            let seq = self.next_seq[peer] - 1;
            let key = self.target_key(&d.id, peer.as_str());
            g.targets.update(&g.txn, key, peer.as_str(), |rec| {
                (rec.state == TargetState::Queued as i32).then(|| rec.outbox_seq = seq)
            })?;
        }
        Ok(())
    }

    /// Appends to `peer`'s outbox with the next sequence number, in the group's batch.
    pub(super) fn enqueue(
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
    pub(super) fn apply_ack(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        up_to: u64,
    ) -> Result<(), NodeError> {
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
        // A province's acknowledgment is one record, whatever it covers (`delivered`).
        let by_run = self.delivered_by_run(peer);
        if by_run {
            self.delivered_run(g, peer, acked + 1, up_to, &entries)?;
        }
        for entry in entries {
            if let Some(outbox_entry::Body::Directive(r)) = &entry.body
                && !by_run
            {
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

    pub(super) fn delivered(
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
}

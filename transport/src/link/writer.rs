//! A session's writing half: outbox entries read from the peer's tail in memory (or the
//! store when far behind), windowed and batched into frames, a directive's encoding shared
//! by every session that sends it.

use super::*;

/// Sends durable outbox entries from `next`, at most `window` beyond the peer's last
/// acknowledgment, in batches bounded by count and bytes, and the acknowledgments owed to
/// the peer: carried by a batch when one goes out, else on their own after `ack_delay`
/// (at once when a quarter of the window is owed, so the peer's sending never stalls).
/// What the peer's Hello said: where to resume sending, and whether it takes large
/// directives compressed.
pub(super) struct PeerHello {
    pub(super) resume_from: u64,
    pub(super) accepts_zstd: bool,
}

pub(super) async fn write_loop(
    ctx: LinkContext,
    peer: Arc<PeerState>,
    hello: PeerHello,
    mut acked: watch::Receiver<u64>,
    mut owed: watch::Receiver<u64>,
    out: Outbound,
    cancel: CancellationToken,
) {
    let PeerHello {
        resume_from: mut next,
        accepts_zstd: compress,
    } = hello;
    // Only an enterprise keeps the certificates it checked; a province relays copies whole.
    let mut certificates =
        (peer.id.tier() == isms_domain::identity::Tier::Enterprise).then(CertificatesSent::default);
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
                    .map(|unbuilt| {
                        let lean = match (&mut certificates, &unbuilt.1) {
                            (Some(sent), Some(cached)) => {
                                sent.lean(cached, unbuilt.0.seq, acked_now)
                            }
                            _ => false,
                        };
                        envelope(unbuilt, compress, lean)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((last, built))
            });
            match envelopes {
                Ok((Some(last), envelopes)) => {
                    next = last + 1;
                    let frame = isms_proto::batch_frame(envelopes, ack.carry(applied_now(&owed)));
                    peer.sent(&frame);
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
            let frame = ack_frame(applied);
            peer.sent(&frame);
            if out.send(Ok(frame)).await.is_err() {
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
pub(super) fn worth_sending(
    next: u64,
    limit: u64,
    top: u64,
    acked: u64,
    window: u64,
    batch_max: u64,
) -> bool {
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
pub(super) fn read_batch(
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
                bytes += cached.zstd.as_ref().unwrap_or(&cached.body).len() + r.encoded_len();
                Some(cached)
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
pub(super) type Unbuilt = (OutboxEntry, Option<Cached>);

/// Signers' certificates this session sent an enterprise whole, by the sequence number of
/// the first copy that carried each. Once the enterprise acknowledged that copy it holds
/// the certificate (kept in the same commit), and later copies name it by its SHA-256:
/// a national directive then carries 4,991 fingerprints, not 4,991 certificates. A new
/// session starts empty, so a restart costs one whole copy per certificate, never a copy
/// the enterprise cannot check.
#[derive(Debug, Default)]
pub(super) struct CertificatesSent {
    first_whole: HashMap<[u8; 32], u64>,
}

impl CertificatesSent {
    /// Whether copy `seq` of `cached` may go lean, given what the peer acknowledged; if
    /// not, it goes whole and is remembered.
    pub(super) fn lean(&mut self, cached: &Cached, seq: u64, acked: u64) -> bool {
        let Some((_, named)) = &cached.lean else {
            return false;
        };
        let held = named
            .iter()
            .all(|f| self.first_whole.get(f).is_some_and(|s| *s <= acked));
        if !held {
            for f in named {
                self.first_whole.entry(*f).or_insert(seq);
            }
        }
        held
    }
}

/// The stored directive `id`, from the writers' shared cache or decoded from the store.
pub(super) fn recent_directive(ctx: &LinkContext, id: &str) -> Result<Cached, NodeError> {
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
    let body = Bytes::from(directive.encode_to_vec());
    let zstd = if body.len() >= isms_proto::COMPRESS_FROM {
        Some(
            isms_proto::compress_directive(&body)
                .map_err(|e| NodeError::Protocol(format!("directive {id} not compressed: {e}")))?,
        )
    } else {
        None
    };
    // Only a small directive is worth a lean copy: in a large one the certificates are
    // nothing beside its rules.
    let lean = if zstd.is_none() {
        isms_domain::signature::lean(&directive)
            .map(|(lean, named)| (Bytes::from(lean.encode_to_vec()), named))
    } else {
        None
    };
    let cached = Cached {
        id: id.to_string(),
        body,
        zstd,
        lean,
    };
    lock().insert(cached.clone());
    Ok(cached)
}

/// An acknowledgment on its own.
pub(super) fn ack_frame(applied: u64) -> Pieces {
    Pieces::encode(&Frame {
        body: Some(frame::Body::Ack(Ack { applied })),
    })
}

/// The encoded envelope an outbox entry makes: a directive copy carries only its own
/// targets, after the directive's shared encoding (by reference), compressed to a peer that
/// takes it (`compress`) when the directive is large.
pub(super) fn envelope(
    (entry, directive): Unbuilt,
    compress: bool,
    lean: bool,
) -> Result<Pieces, NodeError> {
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
        (Some(outbox_entry::Body::AuditHead(h)), _) => {
            envelope.payload = Some(Payload::AuditHead(h));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::BlacklistResync(r)), _) => {
            envelope.payload = Some(Payload::BlacklistResync(r));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::BlacklistChunk(c)), _) => {
            envelope.payload = Some(Payload::BlacklistChunk(c));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::NodeCertificate(c)), _) => {
            envelope.payload = Some(Payload::NodeCertificate(c));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::Fault(f)), _) => {
            envelope.payload = Some(Payload::Fault(f));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::FaultUpdate(u)), _) => {
            envelope.payload = Some(Payload::FaultUpdate(u));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::UpgradeNotice(n)), _) => {
            envelope.payload = Some(Payload::UpgradeNotice(n));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::Contact(c)), _) => {
            envelope.payload = Some(Payload::Contact(c));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::DataReport(r)), _) => {
            envelope.payload = Some(Payload::DataReport(r));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::DataStatus(s)), _) => {
            envelope.payload = Some(Payload::DataStatus(s));
            Ok(Pieces::encode(&envelope))
        }
        (Some(outbox_entry::Body::Directive(r)), Some(cached)) => Ok(match &cached.zstd {
            Some(z) if compress => isms_proto::compressed_directive_envelope(
                &envelope,
                z,
                cached.body.len(),
                &r.targets,
            ),
            _ => match &cached.lean {
                Some((body, _)) if lean => {
                    isms_proto::directive_envelope(&envelope, body, &r.targets)
                }
                _ => isms_proto::directive_envelope(&envelope, &cached.body, &r.targets),
            },
        }),
        _ => Err(NodeError::Protocol(format!(
            "outbox entry {} is empty or names no directive",
            envelope.seq
        ))),
    }
}

//! A session's reading half: frames from the peer checked and handed to the core as events,
//! acknowledgments applied, and the acknowledgment this side owes (`OwedAck`) kept until it
//! rides on an outgoing batch or goes alone.

use super::*;

pub(super) async fn read_loop(
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
            Some(Ok(frame)) => {
                peer.bytes_received.fetch_add(
                    prost::Message::encoded_len(&frame) as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                frame.body
            }
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
            Some(frame::Body::Heartbeat(beat)) if peer.role == Role::Child => {
                ctx.heartbeats.heard(peer.id.as_str(), beat);
            }
            Some(frame::Body::Heartbeat(_)) => {
                let e = NodeError::Protocol("heartbeats go up only: a parent sent one".into());
                let _ = out.send(Err(Status::from(clone_error(&e)))).await;
                return SessionEnd::Node(e);
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
pub(super) async fn bad_frame(peer: &PeerState, out: &Outbound, status: Status) -> SessionEnd {
    tracing::warn!(peer = %peer.id, error = %status.message(), "bad frame; closing link");
    let _ = out.send(Err(status.clone())).await;
    SessionEnd::Transport(status)
}

pub(super) fn clone_error(e: &NodeError) -> NodeError {
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

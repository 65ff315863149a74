//! How the rest of the node talks to the core: the `Event`s it takes and the `CoreHandle`
//! that sends them and waits for the answer given once the event's group is durable.

use super::*;

/// Who asked the core for something: an operator's name, the address the call came from,
/// and the SHA-256 of the request message, as the audit trail keeps them; or the
/// node itself, for what it decides alone (an overdue clock, an expired request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub operator: String,
    pub peer: String,
    pub args_digest: Vec<u8>,
}

impl Caller {
    /// An operator known by name only (a call from no network address: tests, tools).
    pub fn named(operator: &str) -> Caller {
        Caller {
            operator: operator.to_string(),
            ..Default::default()
        }
    }

    /// The node itself.
    pub fn node() -> Caller {
        Caller {
            operator: "node".into(),
            ..Default::default()
        }
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
        caller: Caller,
        reply: oneshot::Sender<Result<IssueReply, NodeError>>,
    },
    /// Province: an operator confirms or returns a received requirement.
    Decide {
        id: String,
        caller: Caller,
        decision: Decision,
        reply: oneshot::Sender<Result<DecisionReply, NodeError>>,
    },
    /// An auditor exported the chain through `through_seq` (whose record hashed to `hash`,
    /// hex): the records up to it may be pruned once older than the retention. The reply:
    /// how far the chain is now exported, and pruned.
    AuditExported {
        caller: Caller,
        through_seq: u64,
        hash: String,
        reply: oneshot::Sender<Result<(u64, u64), NodeError>>,
    },
    /// Enterprise: the enforcement points were converged to rule-set `version` (the
    /// outcome: every point confirmed, or which failed and why).
    Enforced {
        version: u64,
        outcome: Result<(), String>,
    },
    /// Enterprise: the querier's answer to an access-log query, or why there is
    /// none.
    QueryAnswered {
        directive: String,
        answer: Result<isms_proto::v1::QueryResult, String>,
    },
    /// Enterprise: recompute each blacklist from the stored rules; a mismatch asks the
    /// parent for the whole list.
    VerifyBlacklist {
        caller: Caller,
        reply: oneshot::Sender<Result<Vec<isms_proto::v1::BlacklistHeld>, NodeError>>,
    },
    /// The network view saw nodes' liveness change: recorded once, with the availability
    /// history and the audit trail; the reply comes once they are durable.
    Liveness {
        changes: Vec<LivenessChange>,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// A fault, a decision on one, an upgrade notice or a contact, by an operator or the
    /// node itself: stored, audited and sent on.
    Report {
        action: ReportAction,
        caller: Caller,
        reply: oneshot::Sender<Result<isms_proto::v1::ReportFaultReply, NodeError>>,
    },
    /// The peer no longer holds envelopes up to `through` that this node had acknowledged
    /// and lost (its store restored from an older copy): taken as applied, and reported.
    Lost {
        peer: NodeId,
        through: u64,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// Time passed: check the running clocks.
    Tick,
    /// An operator action the core does not perform itself (a refused call), recorded in
    /// the audit trail; the reply comes once the record is durable.
    Audit {
        caller: Caller,
        action: String,
        subject: String,
        outcome: String,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
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
    /// Four-eyes (O-6): a second operator approves a major directive issued here.
    Approve,
    /// ... or rejects it; the reason is mandatory.
    Reject(String),
}

impl Decision {
    /// Its name in the audit trail.
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Confirm => "directive.confirm",
            Decision::Return(_) => "directive.return",
            Decision::Corrected(_) => "correction.report",
            Decision::Approve => "directive.approve",
            Decision::Reject(_) => "directive.reject",
        }
    }
}

/// Sends events to the core.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    pub(super) tx: mpsc::Sender<Event>,
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

    /// Takes the loss of what `peer` no longer holds, through `through` (see `Event::Lost`).
    pub async fn lost(&self, peer: NodeId, through: u64) -> Result<(), NodeError> {
        self.ask(|reply| Event::Lost {
            peer,
            through,
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
        caller: Caller,
        decision: Decision,
    ) -> Result<DecisionReply, NodeError> {
        self.ask(|reply| Event::Decide {
            id,
            caller,
            decision,
            reply,
        })
        .await
    }

    /// Enterprise: verifies its blacklists.
    pub async fn verify_blacklist(
        &self,
        caller: Caller,
    ) -> Result<Vec<isms_proto::v1::BlacklistHeld>, NodeError> {
        self.ask(|reply| Event::VerifyBlacklist { caller, reply })
            .await
    }

    /// Asks the core to check its clocks, unless it is busy (then it will see a later tick).
    pub fn tick(&self) {
        let _ = self.tx.try_send(Event::Tick);
    }

    /// Reports or decides (`ReportAction`) and waits until it is durable.
    pub async fn report(
        &self,
        action: ReportAction,
        caller: Caller,
    ) -> Result<isms_proto::v1::ReportFaultReply, NodeError> {
        self.ask(|reply| Event::Report {
            action,
            caller,
            reply,
        })
        .await
    }

    /// Records changes of nodes' liveness and waits until they are durable.
    pub async fn liveness(&self, changes: Vec<LivenessChange>) -> Result<(), NodeError> {
        self.ask(|reply| Event::Liveness { changes, reply }).await
    }

    /// Records an operator action in the audit trail and waits until it is durable.
    pub async fn audit(
        &self,
        caller: Caller,
        action: String,
        subject: String,
        outcome: String,
    ) -> Result<(), NodeError> {
        self.ask(|reply| Event::Audit {
            caller,
            action,
            subject,
            outcome,
            reply,
        })
        .await
    }

    pub async fn audit_exported(
        &self,
        caller: Caller,
        through_seq: u64,
        hash: String,
    ) -> Result<(u64, u64), NodeError> {
        self.ask(|reply| Event::AuditExported {
            caller,
            through_seq,
            hash,
            reply,
        })
        .await
    }

    pub async fn issue(
        &self,
        request: IssueRequest,
        caller: Caller,
    ) -> Result<IssueReply, NodeError> {
        self.ask(|reply| Event::Issue {
            request: Box::new(request),
            caller,
            reply,
        })
        .await
    }
}

//! Four-eyes at the issuing node (O-6): a major directive is stored with an approval
//! record and no outbox entry; it leaves only in the batch that records a second operator's
//! approval. A rejection or the request's expiry ends it there, so it never reaches a node.
//! The open requests are indexed by expiry (`records::approval_expiry`); the tick expires
//! them, once.
//!
//! Must not: check roles (the operator crate's permission table did before the event was
//! sent), or send anything for a directive that is not approved.

use super::*;
use isms_domain::four_eyes::{MajorRule, approval_state_name};
use isms_proto::v1::{Approval, ApprovalState};

/// The configured four-eyes policy (`[four_eyes]`).
#[derive(Debug, Clone)]
pub struct FourEyesPolicy {
    pub major: MajorRule,
    /// How long an approval request stays open.
    pub expires_after_ms: i64,
}

/// Who may no longer be asked: the node itself, when it expires a request.
const NODE: &str = "node";

impl Core {
    /// Why `d` (issued with `to`) is major here; empty when it is not, or when this node
    /// runs without four-eyes.
    pub(super) fn major_because(
        &self,
        g: &Group<'_>,
        d: &Directive,
        to: &[String],
    ) -> Result<Vec<String>, NodeError> {
        let Some(policy) = &self.four_eyes else {
            return Ok(Vec::new());
        };
        let revokes_major = !d.revokes.is_empty()
            && g.read::<Approval>(&records::approval(&d.revokes))?
                .is_some();
        Ok(policy.major.reasons(d, to, revokes_major))
    }

    /// Holds a directive just stored until a second operator decides (O-6).
    pub(super) fn hold_for_approval(
        &self,
        g: &mut Group<'_>,
        d: &Directive,
        operator: &str,
        major_because: Vec<String>,
    ) {
        let expires_after = self
            .four_eyes
            .as_ref()
            .map_or(24 * 3_600_000, |p| p.expires_after_ms);
        let approval = Approval {
            state: ApprovalState::Awaiting as i32,
            major_because,
            requested_by: operator.to_string(),
            requested_at_ms: g.now,
            expires_at_ms: g.now.saturating_add(expires_after),
            ..Default::default()
        };
        g.txn.put(
            records::approval_expiry(approval.expires_at_ms, &d.id),
            Vec::new(),
        );
        g.txn.put(records::approval(&d.id), encode(&approval));
        tracing::info!(directive = %d.id, operator, "major directive held for approval");
    }

    /// A revocation may withdraw only what left this node: not a directive still awaiting
    /// approval (reject it instead), nor one rejected or expired (nothing was sent).
    pub(super) fn check_revocable(&self, g: &Group<'_>, id: &str) -> Result<(), NodeError> {
        match g.read::<Approval>(&records::approval(id))? {
            Some(a) if a.state != ApprovalState::Approved as i32 => Err(NodeError::State(format!(
                "directive {id} was never sent (it is {}); {}",
                approval_state_name(a.state()),
                if a.state == ApprovalState::Awaiting as i32 {
                    "reject it instead"
                } else {
                    "there is nothing to revoke"
                }
            ))),
            _ => Ok(()),
        }
    }

    /// An approver approves (`approve`) or rejects (with `reason`) a major directive.
    /// Deciding again as already decided answers as the first time did (a retried call);
    /// any other decision on a decided request is refused, naming who decided.
    pub(super) fn decide_approval(
        &mut self,
        g: &mut Group<'_>,
        id: &str,
        caller: &Caller,
        approve: bool,
        reason: &str,
    ) -> Result<DecisionReply, NodeError> {
        let operator = caller.operator.as_str();
        let reason = directive::operator_note(reason, "reason", false)?;
        if !approve && reason.is_empty() {
            return Err(InputError::NoRejectReason.into());
        }
        let key = records::approval(id);
        let mut approval: Approval = g.read(&key)?.ok_or_else(|| {
            NodeError::NotFound(format!("no directive {id} awaits approval here"))
        })?;
        let stored = self
            .stored_directive(g, id)?
            .ok_or_else(|| NodeError::NotFound(format!("directive {id}")))?;
        let d = stored.directive.clone().unwrap_or_default();
        let reply = DecisionReply {
            id: id.to_string(),
            targets: u32::try_from(d.targets.len()).unwrap_or(u32::MAX),
        };
        let wanted = if approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Rejected
        };
        if approval.state == ApprovalState::Awaiting as i32 && g.now >= approval.expires_at_ms {
            self.expire(g, id, &mut approval);
        }
        if approval.state != ApprovalState::Awaiting as i32 {
            if approval.state == wanted as i32 && approval.decided_by == operator {
                return Ok(reply);
            }
            return Err(NodeError::State(format!(
                "directive {id} is no longer awaiting approval: {} by {}",
                approval_state_name(approval.state()),
                approval.decided_by
            )));
        }
        if approve && approval.requested_by == operator {
            return Err(NodeError::Forbidden(format!(
                "{operator} issued directive {id} and cannot approve it: a second operator \
                 must (O-6)"
            )));
        }
        g.txn
            .delete(records::approval_expiry(approval.expires_at_ms, id));
        approval.state = wanted as i32;
        approval.decided_by = operator.to_string();
        approval.decided_at_ms = g.now;
        approval.reason = reason.clone();
        g.txn.put(key, encode(&approval));
        if approve {
            let span =
                tracing::info_span!("directive.approve", directive = %id, operator = %operator);
            trace::set_parent(&span, &stored.trace_context);
            let _entered = span.enter();
            self.dispatch(g, &d, trace::inject(&span))?;
            audit(
                g,
                caller,
                "directive.approve",
                id,
                &format!(
                    "approved the directive {} issued; sent to {} targets",
                    approval.requested_by,
                    d.targets.len()
                ),
            );
        } else {
            audit(
                g,
                caller,
                "directive.reject",
                id,
                &format!("rejected: {reason}"),
            );
        }
        tracing::info!(directive = %id, operator, approved = approve, "approval decided");
        Ok(reply)
    }

    /// Expires every approval request whose time ran out, once: its index entry goes in
    /// the same batch.
    pub(super) fn check_approvals(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        for (key, _) in self.due(records::APPROVAL_EXPIRY_PREFIX, g.now)? {
            if g.txn.get(&key)?.is_none() {
                continue; // decided earlier in this group
            }
            let Some(id) = records::approval_expiry_subject(&key) else {
                g.txn.delete(key);
                continue;
            };
            let Some(mut approval) = g.read::<Approval>(&records::approval(&id))? else {
                g.txn.delete(key);
                continue;
            };
            self.expire(g, &id, &mut approval);
        }
        Ok(())
    }

    /// Marks an open request expired and audits it (a decision of the node, R-13.1).
    fn expire(&self, g: &mut Group<'_>, id: &str, approval: &mut Approval) {
        g.txn
            .delete(records::approval_expiry(approval.expires_at_ms, id));
        approval.state = ApprovalState::Expired as i32;
        approval.decided_by = NODE.to_string();
        approval.decided_at_ms = g.now;
        g.txn.put(records::approval(id), encode(approval));
        audit(
            g,
            &Caller::node(),
            "directive.expire",
            id,
            &format!(
                "approval request of {} expired unapproved; never sent",
                approval.requested_by
            ),
        );
        tracing::warn!(directive = %id, "approval request expired");
    }
}

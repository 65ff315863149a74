//! The province's part of the state machine: holding requirements for a decision,
//! confirm and return, emergencies and revocations passing through, and at the
//! ministry, relaying requests for assistance between provinces.

use super::*;

impl Core {
    /// Province: a requirement waits for the operator's decision, unless its kind
    /// is auto-confirmed here or it is an emergency, which passes at once.
    pub(super) fn relay_at_province(
        &mut self,
        g: &mut Group<'_>,
        d: &Directive,
        trace: &HashMap<String, String>,
    ) -> Result<(), NodeError> {
        let me = self.shared.node_id.to_string();
        let kind = DirectiveKind::try_from(d.kind).unwrap_or(DirectiveKind::Unspecified);
        if kind == DirectiveKind::Revocation {
            // Withdrawing a requirement needs no confirmation; one still waiting here is
            // withdrawn here and can no longer be confirmed.
            self.revoke_held(g, &d.revokes, &d.id)?;
            self.forward_to_enterprises(g, d, trace)?;
            let detail = "revocation: passed without confirmation";
            return self.record_decision(g, d, TargetState::Forwarded, detail, trace);
        }
        if Urgency::try_from(d.urgency) == Ok(Urgency::Emergency) {
            let detail = "emergency: passed without confirmation (R-6.2)";
            tracing::info!(directive = %d.id, "{detail}");
            audit(g, &Caller::node(), "directive.pass", &d.id, detail);
            self.forward_to_enterprises(g, d, trace)?;
            return self.record_decision(g, d, TargetState::Forwarded, detail, trace);
        }
        if self.auto_confirm.contains(&kind) {
            let kind = directive::kind_name(d.kind);
            audit(
                g,
                &Caller::node(),
                "directive.confirm",
                &d.id,
                &format!("auto-confirmed: {kind}s are confirmed on receipt here"),
            );
            self.forward_to_enterprises(g, d, trace)?;
            return self.record_decision(g, d, TargetState::Confirmed, "auto-confirmed", trace);
        }
        let (deadline, detail) = match self.confirm_deadline(d.urgency, g.now) {
            Ok(deadline) => (deadline, "waiting for confirmation".to_string()),
            Err(e) => {
                tracing::error!(directive = %d.id, error = %e, "no confirmation clock");
                (0, format!("waiting for confirmation; no clock: {e}"))
            }
        };
        self.set_target(g, &d.id, &me, TargetState::Received, &detail)?;
        self.set_deadline(g, &d.id, &me, deadline, false)?;
        self.report_up(g, &d.id, &me, TargetState::Received, &detail, trace);
        tracing::info!(directive = %d.id, deadline, "requirement waits for confirmation");
        Ok(())
    }

    /// Province: withdraws requirement `x` if it still waits here for a decision.
    pub(super) fn revoke_held(
        &self,
        g: &mut Group<'_>,
        x: &str,
        by: &str,
    ) -> Result<(), NodeError> {
        let me = self.shared.node_id.to_string();
        let held = self
            .target(g, x, &me)?
            .is_some_and(|r| r.state == TargetState::Received as i32);
        if !held {
            return Ok(());
        }
        let Some(original) = self.stored_directive(g, x)?.and_then(|s| s.directive) else {
            return Ok(());
        };
        let trace = self.stored_trace(g, x)?;
        let detail = format!("revoked by {by} before a decision");
        for t in &original.targets {
            self.report_up(g, x, t, TargetState::Revoked, &detail, &trace);
        }
        self.record_decision(g, &original, TargetState::Revoked, &detail, &trace)?;
        tracing::info!(directive = %x, revocation = %by, "held requirement revoked");
        Ok(())
    }

    /// The confirmation limit of: 2 hours for an urgent requirement, 1 working day
    /// otherwise, from `from_ms`.
    pub(super) fn confirm_deadline(
        &self,
        urgency: i32,
        from_ms: i64,
    ) -> Result<i64, CalendarError> {
        if Urgency::try_from(urgency) == Ok(Urgency::Urgent) {
            return Ok(from_ms + 2 * 3600 * 1000);
        }
        match &self.calendar {
            Some(c) => c.add_working_days(from_ms, 1),
            None => Err(CalendarError::MissingYear(0)),
        }
    }

    /// Province: queues a copy for each target in this jurisdiction; a target outside it is
    /// reported failed.
    pub(super) fn forward_to_enterprises(
        &mut self,
        g: &mut Group<'_>,
        d: &Directive,
        trace: &HashMap<String, String>,
    ) -> Result<usize, NodeError> {
        let me = self.shared.node_id.to_string();
        let mut forwarded = Vec::new();
        for target in &d.targets {
            let child = target
                .parse::<NodeId>()
                .ok()
                .filter(|t| self.shared.peer(t).is_some_and(|p| p.role == Role::Child));
            match child {
                Some(child) => {
                    self.enqueue_directive(g, &child, d, vec![target.clone()], trace.clone())?;
                    forwarded.push(target.clone());
                }
                None => {
                    let why = format!("{target} is not in the jurisdiction of {me}");
                    tracing::warn!(directive = %d.id, %why);
                    self.report_up(g, &d.id, target, TargetState::Failed, &why, trace);
                }
            }
        }
        let n = forwarded.len();
        self.queue_targets(g, &d.id, forwarded)?;
        Ok(n)
    }

    /// Records this province's decision locally and reports it to the issuer.
    pub(super) fn record_decision(
        &self,
        g: &mut Group<'_>,
        d: &Directive,
        state: TargetState,
        detail: &str,
        trace: &HashMap<String, String>,
    ) -> Result<(), NodeError> {
        let me = self.shared.node_id.to_string();
        self.set_target(g, &d.id, &me, state, detail)?;
        self.report_up(g, &d.id, &me, state, detail, trace);
        Ok(())
    }

    /// Province: an operator confirms (forward at once, R-8.3) or returns with a reason
    /// a requirement waiting here.
    pub(super) fn decide(
        &mut self,
        g: &mut Group<'_>,
        id: &str,
        caller: &Caller,
        decision: Decision,
    ) -> Result<DecisionReply, NodeError> {
        let operator = caller.operator.as_str();
        match &decision {
            Decision::Corrected(note) => return self.corrected(g, id, caller, note),
            Decision::Approve => return self.decide_approval(g, id, caller, true, ""),
            Decision::Reject(reason) => {
                return self.decide_approval(g, id, caller, false, reason);
            }
            Decision::Confirm | Decision::Return(_) => {}
        }
        if self.tier != Tier::Province {
            return Err(NodeError::Forbidden(
                "only a province confirms or returns requirements".into(),
            ));
        }
        if let Decision::Return(reason) = &decision {
            directive::operator_note(reason, "reason", true)?;
        }
        let stored = self
            .stored_directive(g, id)?
            .ok_or_else(|| NodeError::NotFound(format!("directive {id}")))?;
        let d = stored.directive.clone().unwrap_or_default();
        let me = self.shared.node_id.to_string();
        let current = self
            .target(g, id, &me)?
            .map_or(TargetState::Unspecified, |r| {
                TargetState::try_from(r.state).unwrap_or(TargetState::Unspecified)
            });
        // A decision made again as it was made is a retried call whose answer was lost: it
        // gets the same answer, and nothing is done twice.
        let again = matches!(
            (&decision, current),
            (Decision::Confirm, TargetState::Confirmed)
                | (Decision::Return(_), TargetState::Returned)
        );
        if again {
            return Ok(DecisionReply {
                id: id.to_string(),
                targets: u32::try_from(d.targets.len()).unwrap_or(u32::MAX),
            });
        }
        if current != TargetState::Received {
            return Err(NodeError::State(format!(
                "directive {id} is not waiting for a decision here (it is {})",
                directive::state_name(current)
            )));
        }
        let span = tracing::info_span!("directive.decide", directive = %id, node = %me, operator = %operator);
        trace::set_parent(&span, &stored.trace_context);
        let _entered = span.enter();
        let trace = trace::inject(&span);
        let (targets, action, outcome) = match decision {
            Decision::Confirm => {
                let n = self.forward_to_enterprises(g, &d, &trace)?;
                let detail = format!("confirmed by {operator}");
                self.record_decision(g, &d, TargetState::Confirmed, &detail, &trace)?;
                (
                    n,
                    "directive.confirm",
                    format!("forwarded to {n} enterprises"),
                )
            }
            Decision::Corrected(_) | Decision::Approve | Decision::Reject(_) => {
                // Handled before this match.
                return Err(NodeError::State(
                    "not a decision on a received requirement".into(),
                ));
            }
            Decision::Return(reason) => {
                let reason = reason.trim().to_string();
                for t in &d.targets {
                    self.report_up(g, id, t, TargetState::Returned, &reason, &trace);
                }
                self.record_decision(g, &d, TargetState::Returned, &reason, &trace)?;
                (
                    d.targets.len(),
                    "directive.return",
                    format!("returned: {reason}"),
                )
            }
        };
        audit(g, caller, action, id, &outcome);
        tracing::info!(directive = %id, %outcome, "decision recorded");
        Ok(DecisionReply {
            id: id.to_string(),
            targets: u32::try_from(targets).unwrap_or(u32::MAX),
        })
    }

    /// Ministry: a province asks for action by enterprises outside its jurisdiction.
    /// The ministry keeps the enterprise directory, relays the request to the province that
    /// holds each enterprise (which confirms or returns it like any requirement), keeps the
    /// record, and sends every status back to the requesting province.
    pub(super) fn relay_assistance(
        &mut self,
        g: &mut Group<'_>,
        from: &NodeId,
        d: &Directive,
        trace: &HashMap<String, String>,
    ) -> Result<(), NodeError> {
        let mut routes: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
        for target in &d.targets {
            let route = self.shared.directory.get(target.as_str()).cloned();
            match route {
                Some(r) if &r != from => routes.entry(r).or_default().push(target.clone()),
                Some(_) => {
                    let why = format!("{target} is in the jurisdiction of {from} itself");
                    self.report_up(g, &d.id, target, TargetState::Failed, &why, trace);
                }
                None => {
                    let why = format!("{target} is not in the ministry's enterprise directory");
                    self.report_up(g, &d.id, target, TargetState::Failed, &why, trace);
                }
            }
        }
        let queued = routes.values().flatten().cloned().collect();
        self.queue_targets(g, &d.id, queued)?;
        for (route, targets) in routes {
            if route.tier() == Tier::Province {
                self.set_target(g, &d.id, route.as_str(), TargetState::Queued, "")?;
            }
            tracing::info!(directive = %d.id, requester = %from, to = %route,
                targets = targets.len(), "relaying a request for assistance (R-6.4)");
            self.enqueue_directive(g, &route, d, targets, trace.clone())?;
        }
        Ok(())
    }
}

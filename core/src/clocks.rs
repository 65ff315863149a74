//! The regulation's clocks at the issuer: deadlines on targets, the deadline index, and the
//! tick that marks a target overdue exactly once.

use super::*;

impl Core {
    /// Records a clock's deadline on a target; `run` also indexes it so a tick can mark the
    /// target overdue when it runs out (only the issuer runs clocks).
    pub(super) fn set_deadline(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        deadline_ms: i64,
        run: bool,
    ) -> Result<(), NodeError> {
        let Some(mut rec) = self.target(g, directive_id, node)? else {
            return Ok(());
        };
        if rec.deadline_ms != 0 || deadline_ms == 0 {
            return Ok(());
        }
        rec.deadline_ms = deadline_ms;
        self.put_target(g, directive_id, node, rec)?;
        if run {
            g.txn
                .put(records::clock(deadline_ms, directive_id, node), Vec::new());
        }
        Ok(())
    }

    /// Committed entries of a time-ordered index (`prefix` + big-endian ms) due by `now_ms`.
    pub(super) fn due(
        &self,
        prefix: &[u8],
        now_ms: i64,
    ) -> Result<Vec<isms_store::Entry>, NodeError> {
        let mut end = prefix.to_vec();
        end.extend_from_slice(&(now_ms + 1).max(0).to_be_bytes());
        Ok(self
            .shared
            .store
            .range(prefix, &end)
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Marks every target whose clock ran out `overdue`, once: the clock's index entry goes
    /// in the same batch.
    pub(super) fn check_clocks(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        for (key, _) in self.due(records::CLOCK_PREFIX, g.now)? {
            if g.txn.get(&key)?.is_none() {
                continue; // stopped earlier in this group
            }
            g.txn.delete(key.clone());
            let Some((directive_id, node)) = records::clock_subject(&key) else {
                continue;
            };
            let Some(rec) = self.target(g, &directive_id, &node)? else {
                continue;
            };
            self.clock_ran_out(g, &directive_id, &node, rec)?;
        }
        self.check_delivered_clocks(g)
    }

    /// `node`'s clock on a directive ran out at `rec.deadline_ms`: overdue, once, unless it
    /// was met.
    pub(super) fn clock_ran_out(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        mut rec: TargetRecord,
    ) -> Result<(), NodeError> {
        let state = TargetState::try_from(rec.state).unwrap_or(TargetState::Unspecified);
        if clock_satisfied(node, state) || rec.overdue_at_ms != 0 {
            return Ok(());
        }
        rec.overdue_at_ms = rec.deadline_ms;
        self.put_target(g, directive_id, node, rec.clone())?;
        tracing::warn!(directive = %directive_id, %node, deadline_ms = rec.deadline_ms,
            "clock ran out: overdue");
        audit(
            g,
            &Caller::node(),
            "directive.overdue",
            directive_id,
            &format!(
                "{node}'s clock ran out; it is {}",
                directive::state_name(state)
            ),
        );
        // A relayed request's issuer learns it from here.
        if let Some(meta) = self.stored_meta(g, directive_id)?
            && meta.issuer != self.shared.node_id.as_str()
        {
            let update = TargetStatus {
                node: node.to_string(),
                state: rec.state,
                at_ms: g.now,
                detail: rec.detail.clone(),
                overdue_at_ms: rec.overdue_at_ms,
                result: None,
                hits: None,
                blacklist: None,
                signed: None,
            };
            self.report(g, directive_id, &update, &meta.trace_context);
        }
        Ok(())
    }

    /// The issuer starts an enterprise's clock when it has the directive: an access-log
    /// query is answered within 2 hours, data corrected within 5 working days
    ///
    pub(super) fn start_answer_clock(
        &self,
        g: &mut Group<'_>,
        meta: &DirectiveMeta,
        directive_id: &str,
        node: &str,
    ) -> Result<(), NodeError> {
        let deadline = match DirectiveKind::try_from(meta.kind) {
            Ok(DirectiveKind::AccessLogQuery) => Ok(g.now + 2 * 3600 * 1000),
            Ok(DirectiveKind::DataCorrection) => match &self.calendar {
                Some(c) => c.add_working_days(g.now, 5),
                None => Err(CalendarError::MissingYear(0)),
            },
            _ => return Ok(()),
        };
        match deadline {
            Ok(deadline) => self.set_deadline(g, directive_id, node, deadline, true),
            Err(e) => {
                tracing::error!(directive = %directive_id, %node, error = %e, "cannot start the clock");
                Ok(())
            }
        }
    }

    /// Records that a clock ran out on `node`, once.
    pub(super) fn set_overdue(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        at_ms: i64,
    ) -> Result<(), NodeError> {
        let Some(mut rec) = self.target(g, directive_id, node)? else {
            return Ok(());
        };
        if rec.overdue_at_ms == 0 {
            rec.overdue_at_ms = at_ms;
            self.put_target(g, directive_id, node, rec)?;
        }
        Ok(())
    }
}

/// Whether a target's clock is satisfied: a province has decided, an enterprise finished.
pub(super) fn clock_satisfied(node: &str, state: TargetState) -> bool {
    if isms_domain::identity::is_province(node) {
        state_rank(state) >= state_rank(TargetState::Confirmed)
    } else {
        directive::is_final(state)
    }
}

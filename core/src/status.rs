//! Status reports: a target's state moving forward, and the changes a group made sent
//! upward, coalesced per directive, toward whoever issued it.

use super::*;

impl Core {
    pub(super) fn receive_status(
        &mut self,
        g: &mut Group<'_>,
        from: &NodeId,
        report: StatusReport,
        trace: &HashMap<String, String>,
    ) -> Result<(), NodeError> {
        let Some(meta) = self.stored_meta(g, &report.directive_id)? else {
            tracing::warn!(directive = %report.directive_id, %from, "status for an unknown directive ignored");
            return Ok(());
        };
        // A province gets a status report per enterprise and directive; their span was 5% of
        // its core thread (bench/HISTORY.md) and, nothing being logged inside, serves only a
        // trace that is exported.
        let span = if trace::exporting() {
            tracing::info_span!("directive.status", directive = %report.directive_id, from = %from, node = %self.shared.node_id)
        } else {
            tracing::Span::none()
        };
        trace::set_parent(&span, trace);
        let _entered = span.enter();
        let trace = trace::inject(&span);
        let relay = meta.issuer != self.shared.node_id.as_str();
        if !relay {
            self.keep_signed_results(g, &report.directive_id, &report.updates);
        }
        for mut u in report.updates {
            if relay && self.tamper.is_some() {
                self.tamper_with_result(g, &report.directive_id, &mut u)?;
            }
            let state = TargetState::try_from(u.state).unwrap_or(TargetState::Unspecified);
            self.set_target(g, &report.directive_id, &u.node, state, &u.detail)?;
            if u.overdue_at_ms != 0 {
                self.set_overdue(g, &report.directive_id, &u.node, u.overdue_at_ms)?;
            }
            if let Some(result) = &u.result {
                self.set_result(g, &report.directive_id, &u.node, result)?;
            }
            if let Some(hits) = &u.hits {
                self.set_hits(g, &report.directive_id, &u.node, hits)?;
            }
            if let Some(reported) = u.blacklist.as_ref().filter(|_| !relay) {
                self.set_reported_blacklist(g, &u.node, reported)?;
            }
            if !relay && state == TargetState::Acknowledged {
                self.start_answer_clock(g, &meta, &report.directive_id, &u.node)?;
            }
            if relay {
                self.report(g, &report.directive_id, &u, &trace);
            }
        }
        Ok(())
    }

    /// Moves a target forward (never back) in this node's view.
    pub(super) fn set_target(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        state: TargetState,
        detail: &str,
    ) -> Result<(), NodeError> {
        let key = self.target_key(directive_id, node);
        let now = g.now;
        let stopped_clock = g.targets.update(&g.txn, key, node, |rec| {
            let current = TargetState::try_from(rec.state).unwrap_or(TargetState::Unspecified);
            if !directive::supersedes(state, current) && rec.state != 0 {
                return None;
            }
            // A relay that decided, or an enterprise that finished, stops its clock; a late
            // one keeps the lateness (overdue_at_ms) on record.
            let stopped =
                (clock_satisfied(node, state) && rec.deadline_ms != 0 && rec.overdue_at_ms == 0)
                    .then_some(rec.deadline_ms);
            // Delivered by its province's acknowledgment run: kept with the new state.
            self.delivered_runs.resolve(node, rec);
            advance(rec, state, detail, now);
            Some(stopped)
        })?;
        if let Some(Some(deadline_ms)) = stopped_clock {
            g.txn
                .delete(records::clock(deadline_ms, directive_id, node));
        }
        Ok(())
    }

    /// Queues a status update towards the directive's issuer, coalesced per directive
    /// within the group.
    pub(super) fn report_up(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        state: TargetState,
        detail: &str,
        trace: &HashMap<String, String>,
    ) {
        let update = TargetStatus {
            node: node.to_string(),
            state: state as i32,
            at_ms: g.now,
            detail: detail.to_string(),
            overdue_at_ms: 0,
            result: None,
            hits: None,
            blacklist: None,
            signed: None,
        };
        self.report(g, directive_id, &update, trace);
    }

    pub(super) fn report(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        update: &TargetStatus,
        trace: &HashMap<String, String>,
    ) {
        let up = g.upward.entry(directive_id.to_string()).or_default();
        if up.trace.is_empty() {
            up.trace = trace.clone();
        }
        let entry = up.updates.entry(update.node.clone()).or_default();
        let current = TargetState::try_from(entry.state).unwrap_or(TargetState::Unspecified);
        let state = TargetState::try_from(update.state).unwrap_or(TargetState::Unspecified);
        let overdue = entry.overdue_at_ms.max(update.overdue_at_ms);
        let result = entry.result.take().or_else(|| update.result.clone());
        // An enterprise's signature goes with the state it signed; an earlier one is kept
        // until a later signed state replaces it.
        let signed = entry.signed.take().or_else(|| update.signed.clone());
        // Hits are cumulative: the larger total wins, whatever the state.
        let hits = match (entry.hits.take(), &update.hits) {
            (Some(a), Some(b)) if b.total > a.total => Some(b.clone()),
            (Some(a), _) => Some(a),
            (None, b) => b.clone(),
        };
        // So is the blacklist version: the higher one wins.
        let blacklist = match (entry.blacklist.take(), &update.blacklist) {
            (Some(a), Some(b)) if b.version > a.version => Some(b.clone()),
            (Some(a), _) => Some(a),
            (None, b) => b.clone(),
        };
        if entry.state == 0 || directive::supersedes(state, current) {
            *entry = update.clone();
            entry.at_ms = g.now;
        }
        entry.overdue_at_ms = overdue;
        if entry.result.is_none() {
            entry.result = result;
        }
        if entry.signed.is_none() {
            entry.signed = signed;
        }
        entry.hits = hits;
        entry.blacklist = blacklist;
    }

    /// Statuses go back the way their directive came: to the peer it was received from
    /// (the parent, or for an assistance request at the ministry, the requesting province).
    pub(super) fn flush_upward(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        let upward = std::mem::take(&mut g.upward);
        for (directive_id, up) in upward {
            let to = match self.stored_meta(g, &directive_id)? {
                Some(meta) => meta.received_from.parse::<NodeId>().ok(),
                // An enterprise's blacklist version made by a directive it got only within
                // a resync: up, as all its reports go.
                None if self.tier == Tier::Enterprise => self.parent.clone(),
                None => None,
            };
            let Some(to) = to.filter(|p| self.shared.peer(p).is_some()) else {
                continue; // issued here: this node is where statuses end
            };
            let mut report = StatusReport {
                directive_id,
                updates: up.updates.into_values().collect(),
            };
            match self.tier {
                Tier::Enterprise => self.sign_results(g, &mut report)?,
                // Statuses leave the ministry only for a requesting province.
                Tier::Ministry => self.attach_result_certificates(g, &mut report)?,
                Tier::Province => {}
            }
            self.enqueue(
                g,
                &to,
                uuid::Uuid::now_v7().to_string(),
                up.trace,
                outbox_entry::Body::Status(report),
            );
        }
        Ok(())
    }

    /// Keeps an enterprise's answer to an access-log query with its target.
    pub(super) fn set_result(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        result: &isms_proto::v1::QueryResult,
    ) -> Result<(), NodeError> {
        g.txn
            .put(records::query_result(directive_id, node), encode(result));
        Ok(())
    }

    /// Keeps a monitoring directive's hits at `node`: cumulative, so a report with a
    /// smaller total than the one kept (a resend, reordered) changes nothing.
    pub(super) fn set_hits(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        hits: &isms_proto::v1::MonitoringHits,
    ) -> Result<(), NodeError> {
        let key = records::monitor_hits(directive_id, node);
        let kept: Option<isms_proto::v1::MonitoringHits> = g.read(&key)?;
        if kept.is_none_or(|k| hits.total > k.total) {
            g.txn.put(key, encode(hits));
        }
        Ok(())
    }
}

/// Moves `rec` to `state` now, stamping each phase it reached or passed.
pub(super) fn advance(rec: &mut TargetRecord, state: TargetState, detail: &str, now: i64) {
    rec.state = state as i32;
    rec.updated_at_ms = now;
    if rec.detail != detail {
        rec.detail = detail.to_string();
    }
    let stamp = |t: &mut i64| {
        if *t == 0 {
            *t = now;
        }
    };
    // For a relaying province, "acknowledged" is when it decided (confirmed, or passed
    // an emergency on) and "finished" when it returned the requirement.
    // Reports are coalesced per group on the way up, so a target can jump past a phase
    // (an enterprise reports `executed` with its acknowledgment); the phase it passed
    // happened no later than now.
    match state {
        TargetState::Queued => stamp(&mut rec.queued_at_ms),
        TargetState::Delivered | TargetState::Received => stamp(&mut rec.delivered_at_ms),
        TargetState::Acknowledged | TargetState::Confirmed | TargetState::Forwarded => {
            stamp(&mut rec.delivered_at_ms);
            stamp(&mut rec.acknowledged_at_ms);
        }
        TargetState::Executed | TargetState::Failed => {
            stamp(&mut rec.delivered_at_ms);
            stamp(&mut rec.acknowledged_at_ms);
            stamp(&mut rec.finished_at_ms);
        }
        TargetState::Returned | TargetState::Revoked => stamp(&mut rec.finished_at_ms),
        TargetState::Unspecified => {}
    }
}

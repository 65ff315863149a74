//! What arrives from a peer: the checks made before anything is written (sequence, sender,
//! jurisdiction, shape), and applying an envelope or a received directive.

use super::*;

impl Core {
    pub(super) fn check_inbound(
        &self,
        peer_id: &NodeId,
        envelopes: &[Envelope],
    ) -> Result<(), NodeError> {
        let peer = self
            .shared
            .peer(peer_id)
            .ok_or_else(|| NodeError::Forbidden(format!("{peer_id} is not a peer of this node")))?;
        let mut expect = self.applied[peer_id] + 1;
        for env in envelopes {
            if env.seq < expect {
                continue; // already applied: acknowledged again, not applied again
            }
            if env.seq != expect {
                return Err(NodeError::Protocol(format!(
                    "sequence gap from {peer_id}: expected {expect}, got {}",
                    env.seq
                )));
            }
            expect += 1;
            if env.id.is_empty() {
                return Err(NodeError::Protocol(format!(
                    "envelope {} from {peer_id} has no message ID",
                    env.seq
                )));
            }
            match (&env.payload, peer.role) {
                (Some(Payload::Directive(d)), Role::Parent) => check_directive_shape(d)?,
                // A province's own request for assistance from another province is
                // the one directive that travels up, and only to the ministry.
                (Some(Payload::Directive(d)), Role::Child)
                    if self.tier == Tier::Ministry
                        && peer_id.tier() == Tier::Province
                        && d.issuer == peer_id.as_str() =>
                {
                    check_directive_shape(d)?;
                }
                (Some(Payload::Directive(_)), Role::Child) => {
                    return Err(NodeError::Forbidden(format!(
                        "{peer_id} is a child of {}: directives only flow down from a parent",
                        self.shared.node_id
                    )));
                }
                (Some(Payload::Status(s)), Role::Child) => self.check_status_scope(peer_id, s)?,
                // A child's own signed audit head; nothing of the kind comes down.
                (Some(Payload::AuditHead(h)), Role::Child) if h.node == peer_id.as_str() => {}
                (Some(Payload::AuditHead(h)), _) => {
                    return Err(NodeError::Protocol(format!(
                        "{peer_id} sent the audit head of {:?}: a node sends only its own, \
                         to its parent",
                        h.node
                    )));
                }
                // Statuses come down only for what this node issued (assistance, R-6.4).
                (Some(Payload::Status(s)), Role::Parent) => {
                    let issued_here = self
                        .committed_meta(&s.directive_id)?
                        .is_some_and(|m| m.issuer == self.shared.node_id.as_str());
                    if !issued_here {
                        return Err(NodeError::Protocol(format!(
                            "{peer_id} is the parent: status reports only flow up, except for \
                             directives this node issued"
                        )));
                    }
                }
                (None, _) => {
                    return Err(NodeError::Protocol(format!(
                        "envelope {} from {peer_id} has no payload",
                        env.seq
                    )));
                }
                // An enterprise asks its parent for a whole blacklist; the parent answers it.
                (Some(Payload::BlacklistResync(ask)), Role::Child)
                    if peer_id.tier() == Tier::Enterprise =>
                {
                    blacklist::check_resync(ask)?;
                }
                (Some(Payload::BlacklistChunk(chunk)), Role::Parent)
                    if self.tier == Tier::Enterprise =>
                {
                    blacklist::check_chunk(chunk)?;
                }
                (Some(Payload::BlacklistResync(_) | Payload::BlacklistChunk(_)), _) => {
                    return Err(NodeError::Protocol(format!(
                        "envelope {} from {peer_id}: a blacklist resync is asked by an \
                         enterprise of its parent, and answered down",
                        env.seq
                    )));
                }
                // Reports go up, each about the child or its subtree; decisions on faults
                // come down to where the fault was reported, and go up.
                (
                    Some(
                        p @ (Payload::Fault(_)
                        | Payload::FaultUpdate(_)
                        | Payload::UpgradeNotice(_)
                        | Payload::Contact(_)),
                    ),
                    Role::Child,
                ) => self.check_report(peer_id, p)?,
                (Some(Payload::DataReport(r)), Role::Child)
                    if self.speaks_for(peer_id, &r.enterprise)
                        && r.enterprise
                            .parse::<NodeId>()
                            .is_ok_and(|e| e.tier() == Tier::Enterprise) => {}
                (Some(Payload::DataStatus(s)), Role::Child)
                    if peer_id.tier() == Tier::Province
                        && self.speaks_for(peer_id, &s.enterprise)
                        && s.enterprise != peer_id.as_str() => {}
                (Some(Payload::DataReport(_) | Payload::DataStatus(_)), _) => {
                    return Err(NodeError::Forbidden(format!(
                        "{peer_id} may not send that data: an enterprise's goes up from it, and \
                         its validation from its province"
                    )));
                }
                (Some(Payload::FaultUpdate(u)), Role::Parent) => {
                    self.check_decision_from_parent(u)?;
                }
                (
                    Some(Payload::Fault(_) | Payload::UpgradeNotice(_) | Payload::Contact(_)),
                    Role::Parent,
                ) => {
                    return Err(NodeError::Protocol(format!(
                        "{peer_id} is the parent: faults, upgrade notices and contacts only go up"
                    )));
                }
                // Certificates for signed results go up only.
                (Some(Payload::NodeCertificate(c)), Role::Child) => {
                    self.check_node_certificate(peer_id, c)?;
                }
                (Some(Payload::NodeCertificate(c)), Role::Parent) => {
                    return Err(NodeError::Protocol(format!(
                        "{peer_id} is the parent: the certificate of {:?} may only come up",
                        c.node
                    )));
                }
                // The link decompresses a directive as it arrives (`Batch::decode_envelopes`).
                (Some(Payload::CompressedDirective(_)), _) => {
                    return Err(NodeError::Protocol(format!(
                        "envelope {} from {peer_id} holds a directive still compressed",
                        env.seq
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether `child` may speak for `node`: itself, or for a province, one of its own
    /// enterprises.
    pub(super) fn speaks_for(&self, child: &NodeId, node: &str) -> bool {
        node == child.as_str()
            || (child.tier() == Tier::Province
                && self
                    .shared
                    .directory
                    .get(node)
                    .is_some_and(|route| route == child))
    }

    /// A child may report only on itself and, for a province, its own enterprises.
    pub(super) fn check_status_scope(
        &self,
        child: &NodeId,
        report: &StatusReport,
    ) -> Result<(), NodeError> {
        for u in &report.updates {
            if !self.speaks_for(child, &u.node) {
                return Err(NodeError::Forbidden(format!(
                    "{child} may not report on {}",
                    u.node
                )));
            }
            if TargetState::try_from(u.state).is_err() || u.state == 0 {
                return Err(NodeError::Protocol(format!("unknown state {}", u.state)));
            }
        }
        Ok(())
    }

    /// What `peer` sent through `through` was acknowledged by this node and lost with its
    /// store: the sequence goes on after it, and the loss is audited and reported.
    pub(super) fn take_loss(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        through: u64,
    ) -> Result<(), NodeError> {
        let applied = self.applied.get(peer).copied().unwrap_or(0);
        if through <= applied || self.shared.peer(peer).is_none() {
            return Ok(());
        }
        let lost = through - applied;
        tracing::error!(%peer, applied, through, "messages acknowledged here were lost (store restored from an older copy?); going on after them");
        self.applied.insert(peer.clone(), through);
        g.marks.insert(peer.clone());
        let outcome = format!("envelopes {} to {through} lost", applied + 1);
        audit(g, &Caller::node(), "link.loss", peer.as_str(), &outcome);
        self.report_fault(
            g,
            &Caller::node(),
            "critical",
            format!("{lost} messages from {peer} lost here"),
            format!(
                "acknowledged {} to {through} and lost them: the store was restored from an \
                 older copy; {peer} no longer holds them",
                applied + 1
            ),
            Some("data-loss".into()),
        )?;
        Ok(())
    }

    pub(super) fn apply_inbound(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        envelopes: Vec<Envelope>,
    ) -> Result<(), NodeError> {
        let mut applied = self.applied[peer];
        for env in envelopes {
            if env.seq <= applied {
                continue;
            }
            applied = env.seq;
            self.apply_envelope(g, peer, env)?;
        }
        if applied != self.applied[peer] {
            self.applied.insert(peer.clone(), applied);
            g.marks.insert(peer.clone());
        }
        Ok(())
    }

    /// Applies one envelope from `peer`, checked by `check_inbound` before.
    pub(super) fn apply_envelope(
        &mut self,
        g: &mut Group<'_>,
        peer: &NodeId,
        env: Envelope,
    ) -> Result<(), NodeError> {
        match env.payload {
            Some(Payload::Directive(d)) => self.receive_directive(g, peer, d, env.trace_context),
            Some(Payload::Status(s)) => self.receive_status(g, peer, s, &env.trace_context),
            Some(Payload::AuditHead(h)) => self.receive_audit_head(g, peer, h),
            Some(Payload::BlacklistResync(ask)) => self.answer_resync(g, peer, ask),
            Some(Payload::BlacklistChunk(chunk)) => self.resync_part_arrived(g, chunk),
            Some(Payload::NodeCertificate(c)) => self.receive_node_certificate(g, peer, c),
            Some(Payload::Fault(f)) => self.receive_fault(g, f),
            Some(Payload::FaultUpdate(u)) => self.receive_fault_update(g, peer, u),
            Some(Payload::UpgradeNotice(n)) => self.receive_upgrade(g, n),
            Some(Payload::Contact(c)) => self.receive_contact(g, c),
            Some(Payload::DataReport(r)) => self.receive_data(g, peer, r),
            Some(Payload::DataStatus(s)) => self.receive_data_status(g, s),
            // Refused by check_inbound.
            Some(Payload::CompressedDirective(_)) => Ok(()),
            None => Ok(()), // refused by check_inbound
        }
    }

    pub(super) fn receive_directive(
        &mut self,
        g: &mut Group<'_>,
        from: &NodeId,
        d: Directive,
        trace: HashMap<String, String>,
    ) -> Result<(), NodeError> {
        let span = tracing::info_span!("directive.receive", directive = %d.id, from = %from, node = %self.shared.node_id);
        trace::set_parent(&span, &trace);
        let _entered = span.enter();
        let key = records::directive(&d.id);
        if g.txn.contains(&key)? {
            tracing::debug!(directive = %d.id, "duplicate directive: already applied");
            return Ok(());
        }
        let trace = trace::inject(&span);
        let mut d = d;
        match self.tier {
            Tier::Enterprise => {
                // Nothing is applied that its issuer did not sign.
                // A whole certificate is kept whatever the directive turns out to be: the
                // link counts it delivered, and a lean copy naming it is checked as fully.
                Self::keep_certificates(g, &d);
                self.fill_certificates(g, &mut d)?;
                if let Err(why) = self.check_signed(&d, g.now) {
                    store_directive(g, &d, Some(from), &trace);
                    self.refuse_unsigned(g, &d, &why, &trace);
                    return Ok(());
                }
            }
            Tier::Province => {
                self.countersign(&mut d)?;
                if let Some(how) = self.tamper {
                    self.tamper_with(&mut d, how)?;
                }
            }
            Tier::Ministry => {}
        }
        store_directive(g, &d, Some(from), &trace);
        Self::index_blacklist(g, &d);
        match self.tier {
            Tier::Enterprise => self.accept_at_enterprise(g, &d, &trace)?,
            Tier::Province => self.relay_at_province(g, &d, &trace)?,
            Tier::Ministry => self.relay_assistance(g, from, &d, &trace)?,
        }
        tracing::info!(directive = %d.id, rules = d.rules.len(), "directive received");
        Ok(())
    }

    pub(super) fn stored_trace(
        &self,
        g: &mut Group<'_>,
        id: &str,
    ) -> Result<HashMap<String, String>, NodeError> {
        Ok(self
            .stored_meta(g, id)?
            .map(|m| m.trace_context.clone())
            .unwrap_or_default())
    }
}

/// Cheap structural checks of a directive from a parent; rule contents are checked where
/// they are applied, and a bad rule fails the directive rather than the link.
pub fn check_directive_shape(d: &Directive) -> Result<(), NodeError> {
    if uuid::Uuid::parse_str(&d.id).is_err() {
        return Err(NodeError::Protocol(format!(
            "directive ID {:?} is not a UUID",
            d.id
        )));
    }
    if d.issuer.parse::<NodeId>().is_err() {
        return Err(NodeError::Protocol(format!(
            "directive issuer {:?} is not a node ID",
            d.issuer
        )));
    }
    if d.targets.is_empty() {
        return Err(NodeError::Protocol(format!(
            "directive {} has no targets",
            d.id
        )));
    }
    Ok(())
}

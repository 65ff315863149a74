//! What nodes report upward besides directives' results (R-10.2, O-2, R-14.2, R-11.2,
//! faults, reported by an operator or raised by the node itself, travel up to the
//! ministry and are kept by every node on the way; an authority above the reporter
//! acknowledges and resolves them, and its decision travels down to the reporter and up
//! to the ministry. Upgrade notices and contacts travel up the same way, each marked late
//! on the calendar of the node that keeps it. Every report, decision and arrival is audited.
//!
//! Must not: let a node decide its own fault while an authority is above it, or take a
//! report from a child about a node outside its subtree.

use super::*;
use isms_domain::reports::{
    self, check_contact, check_fault, check_fault_update, check_upgrade, fault_state_name,
    severity_name,
};
use isms_proto::v1::{
    Contact, Fault, FaultState, FaultUpdate, FaultView, ReportFaultReply, UpgradeNotice,
};

/// What an operator (or the node itself) reports or decides.
#[derive(Debug, Clone)]
pub enum ReportAction {
    /// A fault of this node. `automatic`: raised by the node for this kind of condition
    /// (`enforcement`, `disk`, `data-loss`, `store`), at most one open at a time.
    Fault {
        severity: String,
        summary: String,
        detail: String,
        automatic: Option<String>,
    },
    /// An authority's decision on a fault reported below it.
    DecideFault {
        id: String,
        state: FaultState,
        note: String,
    },
    /// A planned upgrade of this node.
    Upgrade {
        at_ms: i64,
        duration_ms: i64,
        summary: String,
    },
    /// This node's responsible department and contact.
    Contact(Contact),
    /// Enterprise: a new version of its data.
    Data(Box<isms_proto::v1::ResourceReport>),
}

impl ReportAction {
    pub fn action(&self) -> &'static str {
        match self {
            ReportAction::Fault { .. } => "fault.report",
            ReportAction::DecideFault {
                state: FaultState::Resolved,
                ..
            } => "fault.resolve",
            ReportAction::DecideFault { .. } => "fault.acknowledge",
            ReportAction::Upgrade { .. } => "upgrade.announce",
            ReportAction::Contact(_) => "contact.set",
            ReportAction::Data(_) => "data.submit",
        }
    }
}

impl Core {
    pub(super) fn report_action(
        &mut self,
        g: &mut Group<'_>,
        caller: &Caller,
        action: ReportAction,
    ) -> Result<ReportFaultReply, NodeError> {
        match action {
            ReportAction::Fault {
                severity,
                summary,
                detail,
                automatic,
            } => self.report_fault(g, caller, &severity, summary, detail, automatic),
            ReportAction::DecideFault { id, state, note } => {
                self.decide_fault(g, caller, &id, state, note)
            }
            ReportAction::Upgrade {
                at_ms,
                duration_ms,
                summary,
            } => self.announce_upgrade(g, caller, at_ms, duration_ms, summary),
            ReportAction::Contact(c) => self.set_contact(g, caller, c),
            ReportAction::Data(report) => {
                let reply = self.submit_data(g, caller, *report)?;
                Ok(ReportFaultReply {
                    id: reply.version.to_string(),
                    note: String::new(),
                })
            }
        }
    }

    /// Queues `body` to the parent, if this node has one.
    pub(super) fn send_up(&mut self, g: &mut Group<'_>, body: outbox_entry::Body) {
        if let Some(parent) = self.parent.clone() {
            let id = uuid::Uuid::now_v7().to_string();
            self.enqueue(g, &parent, id, HashMap::new(), body);
        }
    }

    pub(super) fn report_fault(
        &mut self,
        g: &mut Group<'_>,
        caller: &Caller,
        severity: &str,
        summary: String,
        detail: String,
        automatic: Option<String>,
    ) -> Result<ReportFaultReply, NodeError> {
        if let Some(kind) = &automatic
            && let Some(open) = g.txn.get(&records::automatic_fault(kind))?
        {
            let id = String::from_utf8_lossy(&open).into_owned();
            return Ok(ReportFaultReply {
                id,
                note: "already open".into(),
            });
        }
        let fault = Fault {
            id: uuid::Uuid::now_v7().to_string(),
            reporter: self.shared.node_id.to_string(),
            severity: reports::parse_severity(severity)? as i32,
            summary: summary.trim().to_string(),
            detail,
            at_ms: g.now,
            automatic: automatic.is_some(),
            by: caller.operator.clone(),
        };
        check_fault(&fault)?;
        if let Some(kind) = &automatic {
            g.txn.put(
                records::automatic_fault(kind),
                fault.id.clone().into_bytes(),
            );
        }
        let view = FaultView {
            fault: Some(fault.clone()),
            state: FaultState::Open as i32,
            updates: Vec::new(),
        };
        g.txn.put(records::fault(&fault.id), encode(&view));
        let outcome = format!("{}: {}", severity, fault.summary);
        audit(g, caller, "fault.report", &fault.id, &outcome);
        tracing::warn!(fault = %fault.id, %outcome, "fault reported");
        let id = fault.id.clone();
        self.send_up(g, outbox_entry::Body::Fault(fault));
        Ok(ReportFaultReply {
            id,
            note: String::new(),
        })
    }

    /// A fault from below: kept and passed up.
    pub(super) fn receive_fault(
        &mut self,
        g: &mut Group<'_>,
        fault: Fault,
    ) -> Result<(), NodeError> {
        let key = records::fault(&fault.id);
        let mut view: FaultView = g.read(&key)?.unwrap_or_default();
        if view.fault.is_some() {
            return Ok(()); // already here
        }
        let outcome = format!(
            "from {}, {}: {}",
            fault.reporter,
            severity_name(fault.severity()),
            fault.summary
        );
        view.fault = Some(fault.clone());
        if view.state == 0 {
            view.state = FaultState::Open as i32;
        }
        g.txn.put(key, encode(&view));
        audit(g, &Caller::node(), "fault.received", &fault.id, &outcome);
        self.send_up(g, outbox_entry::Body::Fault(fault));
        Ok(())
    }

    fn decide_fault(
        &mut self,
        g: &mut Group<'_>,
        caller: &Caller,
        id: &str,
        state: FaultState,
        note: String,
    ) -> Result<ReportFaultReply, NodeError> {
        let key = records::fault(id);
        let Some(view) = g.read::<FaultView>(&key)? else {
            return Err(NodeError::NotFound(format!("fault {id}")));
        };
        let fault = view.fault.clone().unwrap_or_default();
        let me = self.shared.node_id.to_string();
        if fault.reporter == me && self.parent.is_some() {
            return Err(NodeError::Forbidden(format!(
                "fault {id} is this node's own: the authority above it decides it (R-10.2)"
            )));
        }
        let note = directive::operator_note(&note, "note", state == FaultState::Resolved)?;
        if view.state >= state as i32 {
            return Err(NodeError::State(format!(
                "fault {id} is already {}",
                fault_state_name(view.state())
            )));
        }
        let update = FaultUpdate {
            fault_id: id.to_string(),
            reporter: fault.reporter.clone(),
            state: state as i32,
            note,
            node: me,
            by: caller.operator.clone(),
            at_ms: g.now,
        };
        check_fault_update(&update)?;
        let outcome = update_outcome(&update);
        self.apply_fault_update(g, update.clone())?;
        let action = if state == FaultState::Resolved {
            "fault.resolve"
        } else {
            "fault.acknowledge"
        };
        audit(g, caller, action, id, &outcome);
        // Down to the reporter, up to the ministry.
        if let Some(next) = self.toward(&fault.reporter) {
            let mid = uuid::Uuid::now_v7().to_string();
            self.enqueue(
                g,
                &next,
                mid,
                HashMap::new(),
                outbox_entry::Body::FaultUpdate(update.clone()),
            );
        }
        self.send_up(g, outbox_entry::Body::FaultUpdate(update));
        Ok(ReportFaultReply {
            id: id.to_string(),
            note: fault_state_name(state).into(),
        })
    }

    /// The child a message for `node` goes to next, if `node` is below this node.
    fn toward(&self, node: &str) -> Option<NodeId> {
        self.shared.directory.get(node).cloned().or_else(|| {
            node.parse::<NodeId>()
                .ok()
                .filter(|n| self.shared.peer(n).is_some_and(|p| p.role == Role::Child))
        })
    }

    /// A decision from above (going down to the reporter) or below (going up).
    pub(super) fn receive_fault_update(
        &mut self,
        g: &mut Group<'_>,
        from: &NodeId,
        update: FaultUpdate,
    ) -> Result<(), NodeError> {
        let outcome = update_outcome(&update);
        audit(
            g,
            &Caller::node(),
            "fault.update",
            &update.fault_id,
            &outcome,
        );
        self.apply_fault_update(g, update.clone())?;
        let from_parent = self.parent.as_ref() == Some(from);
        if from_parent {
            if update.reporter != self.shared.node_id.as_str()
                && let Some(next) = self.toward(&update.reporter)
            {
                let mid = uuid::Uuid::now_v7().to_string();
                self.enqueue(
                    g,
                    &next,
                    mid,
                    HashMap::new(),
                    outbox_entry::Body::FaultUpdate(update),
                );
            }
        } else {
            self.send_up(g, outbox_entry::Body::FaultUpdate(update));
        }
        Ok(())
    }

    fn apply_fault_update(&mut self, g: &mut Group<'_>, u: FaultUpdate) -> Result<(), NodeError> {
        let key = records::fault(&u.fault_id);
        let mut view: FaultView = g.read(&key)?.unwrap_or_default();
        if view
            .updates
            .iter()
            .any(|x| x.node == u.node && x.state == u.state)
        {
            return Ok(()); // already applied
        }
        view.state = view.state.max(u.state);
        view.updates.push(u.clone());
        g.txn.put(key, encode(&view));
        // The reporter may raise an automatic fault of that kind again once resolved.
        if view.state == FaultState::Resolved as i32 && u.reporter == self.shared.node_id.as_str() {
            for kind in AUTOMATIC_KINDS {
                let k = records::automatic_fault(kind);
                if g.txn.get(&k)?.as_deref() == Some(u.fault_id.as_bytes()) {
                    g.txn.delete(k);
                }
            }
        }
        Ok(())
    }

    fn announce_upgrade(
        &mut self,
        g: &mut Group<'_>,
        caller: &Caller,
        at_ms: i64,
        duration_ms: i64,
        summary: String,
    ) -> Result<ReportFaultReply, NodeError> {
        if at_ms <= g.now {
            return Err(NodeError::Input(directive::InputError::Invalid(
                "the upgrade's start is in the past: announce what is planned (R-11.2)".into(),
            )));
        }
        let mut notice = UpgradeNotice {
            id: uuid::Uuid::now_v7().to_string(),
            node: self.shared.node_id.to_string(),
            at_ms,
            duration_ms,
            summary: summary.trim().to_string(),
            announced_at_ms: g.now,
            late: false,
            working_days_ahead: 0,
            by: caller.operator.clone(),
        };
        check_upgrade(&notice)?;
        self.judge_upgrade(&mut notice)?;
        g.txn
            .put(records::upgrade(&notice.node, &notice.id), encode(&notice));
        let note = upgrade_note(&notice);
        audit(g, caller, "upgrade.announce", &notice.id, &note);
        let id = notice.id.clone();
        self.send_up(g, outbox_entry::Body::UpgradeNotice(notice));
        Ok(ReportFaultReply { id, note })
    }

    /// Marks a notice late on this node's calendar, if it has one (else as received).
    fn judge_upgrade(&self, notice: &mut UpgradeNotice) -> Result<(), NodeError> {
        if let Some(cal) = &self.calendar {
            let (late, ahead) =
                reports::upgrade_lateness(cal, notice.announced_at_ms, notice.at_ms)?;
            notice.late = late;
            notice.working_days_ahead = ahead;
        }
        Ok(())
    }

    pub(super) fn receive_upgrade(
        &mut self,
        g: &mut Group<'_>,
        mut notice: UpgradeNotice,
    ) -> Result<(), NodeError> {
        let key = records::upgrade(&notice.node, &notice.id);
        if g.txn.contains(&key)? {
            return Ok(());
        }
        self.judge_upgrade(&mut notice)?;
        g.txn.put(key, encode(&notice));
        let note = format!("from {}: {}", notice.node, upgrade_note(&notice));
        audit(g, &Caller::node(), "upgrade.received", &notice.id, &note);
        self.send_up(g, outbox_entry::Body::UpgradeNotice(notice));
        Ok(())
    }

    fn set_contact(
        &mut self,
        g: &mut Group<'_>,
        caller: &Caller,
        mut c: Contact,
    ) -> Result<ReportFaultReply, NodeError> {
        c.node = self.shared.node_id.to_string();
        c.reported_at_ms = g.now;
        c.by = caller.operator.clone();
        check_contact(&c)?;
        self.judge_contact(&mut c)?;
        g.txn.put(records::contact(&c.node), encode(&c));
        let note = if c.late {
            "late: reported more than 5 working days after the change (R-15.1)".to_string()
        } else {
            String::new()
        };
        audit(
            g,
            caller,
            "contact.set",
            &c.node,
            &format!("{} {}", c.department, note),
        );
        self.send_up(g, outbox_entry::Body::Contact(c.clone()));
        Ok(ReportFaultReply { id: c.node, note })
    }

    fn judge_contact(&self, c: &mut Contact) -> Result<(), NodeError> {
        if let Some(cal) = &self.calendar {
            let changed = reports::changed_on(&c.changed_on)?;
            c.late = reports::contact_lateness(cal, changed, c.reported_at_ms)?;
        }
        Ok(())
    }

    pub(super) fn receive_contact(
        &mut self,
        g: &mut Group<'_>,
        mut c: Contact,
    ) -> Result<(), NodeError> {
        let key = records::contact(&c.node);
        let kept: Option<Contact> = g.read(&key)?;
        if kept.is_some_and(|k| k.reported_at_ms >= c.reported_at_ms) {
            return Ok(());
        }
        self.judge_contact(&mut c)?;
        g.txn.put(key, encode(&c));
        let note = format!("{}{}", c.department, if c.late { " (late)" } else { "" });
        audit(g, &Caller::node(), "contact.received", &c.node, &note);
        self.send_up(g, outbox_entry::Body::Contact(c));
        Ok(())
    }

    /// Whether `child` may send `payload` up: a report about itself or, for a province,
    /// its own enterprises.
    pub(super) fn check_report(&self, child: &NodeId, payload: &Payload) -> Result<(), NodeError> {
        let (about, decided_by) = match payload {
            Payload::Fault(f) => {
                check_fault(f)?;
                (f.reporter.as_str(), None)
            }
            Payload::FaultUpdate(u) => {
                check_fault_update(u)?;
                (u.reporter.as_str(), Some(u.node.as_str()))
            }
            Payload::UpgradeNotice(n) => {
                check_upgrade(n)?;
                (n.node.as_str(), None)
            }
            Payload::Contact(c) => {
                check_contact(c)?;
                (c.node.as_str(), None)
            }
            _ => return Ok(()),
        };
        let allowed = self.speaks_for(child, about)
            && decided_by.is_none_or(|d| d != about && self.speaks_for(child, d));
        if !allowed {
            return Err(NodeError::Forbidden(format!(
                "{child} may not report for {about}"
            )));
        }
        Ok(())
    }

    /// Whether a decision from the parent concerns a fault reported here or below.
    pub(super) fn check_decision_from_parent(&self, u: &FaultUpdate) -> Result<(), NodeError> {
        check_fault_update(u)?;
        if u.reporter != self.shared.node_id.as_str() && self.toward(&u.reporter).is_none() {
            return Err(NodeError::Forbidden(format!(
                "a decision on a fault of {} is not for {}",
                u.reporter, self.shared.node_id
            )));
        }
        Ok(())
    }
}

/// The kinds of condition a node raises a fault for on its own.
pub const AUTOMATIC_KINDS: [&str; 4] = ["enforcement", "disk", "data-loss", "store"];

fn update_outcome(u: &FaultUpdate) -> String {
    format!(
        "{} by {} at {}{}",
        fault_state_name(u.state()),
        u.by,
        u.node,
        if u.note.is_empty() {
            String::new()
        } else {
            format!(": {}", u.note)
        }
    )
}

fn upgrade_note(n: &UpgradeNotice) -> String {
    if n.late {
        format!(
            "late: {} working days ahead, {} needed (R-11.2)",
            n.working_days_ahead,
            reports::NOTICE_WORKING_DAYS
        )
    } else if n.working_days_ahead > 0 {
        format!("on time: {} working days ahead", n.working_days_ahead)
    } else {
        String::new()
    }
}

/// Faults this node keeps, newest first; `open_only`: not yet resolved.
pub fn stored_faults(store: &Store, open_only: bool) -> Result<Vec<FaultView>, NodeError> {
    let mut out = Vec::new();
    for entry in store.scan_prefix(records::FAULT_PREFIX).rev() {
        let (k, v) = entry?;
        let view: FaultView = decode(&k, &v)?;
        if !open_only || view.state != FaultState::Resolved as i32 {
            out.push(view);
        }
    }
    Ok(out)
}

/// Upgrade notices this node keeps (its own and those from below), by node.
pub fn stored_upgrades(store: &Store) -> Result<Vec<UpgradeNotice>, NodeError> {
    store
        .scan_prefix(records::UPGRADE_PREFIX)
        .map(|entry| {
            let (k, v) = entry?;
            Ok(decode(&k, &v)?)
        })
        .collect()
}

/// Contacts this node keeps (its own and those from below), by node.
pub fn stored_contacts(store: &Store) -> Result<Vec<Contact>, NodeError> {
    store
        .scan_prefix(records::CONTACT_PREFIX)
        .map(|entry| {
            let (k, v) = entry?;
            Ok(decode(&k, &v)?)
        })
        .collect()
}

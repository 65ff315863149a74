//! Views of what the core committed, read straight from the store: a directive with its
//! targets and relays, its summary, the node's status, what waits for an operator, the
//! audit trail. Read-only: nothing here writes.

use isms_domain::audit_chain::to_hex as hex;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::Ordering;

use isms_core::Shared;
use isms_core::error::NodeError;
use isms_domain::directive::{is_final, state_name};
use isms_domain::four_eyes::{APPROVAL_STATE_NAMES, approval_state_name};
use isms_domain::identity::{Tier, is_province};
use isms_domain::records::{self, decode};
use isms_proto::record::{ActiveRules, AuditRecord, QueuedTargets, StoredDirective, TargetRecord};
use isms_proto::v1::{
    Approval, ApprovalState, AuditEntry, AuditHead, AuditHeadList, AuditList, Directive,
    DirectiveSummary, DirectiveView, ListAuditRequest, NodeStatusReply, PendingDirective,
    PendingList, TargetState, TargetView,
};
use isms_proto::v1::{DirectiveList, ListDirectivesRequest};
use tonic::Status;

/// Reads a directive and its per-target states.
pub fn directive_view(shared: &Shared, id: &str) -> Result<DirectiveView, NodeError> {
    let Rows {
        stored,
        queued,
        records,
    } = stored_rows(shared, id)?;
    let mut view = DirectiveView {
        directive: stored.directive,
        targets: Vec::new(),
        hops: Vec::new(),
        approval: approval(shared, id)?,
    };
    let mut waiting: BTreeSet<&str> = queued.targets.iter().map(String::as_str).collect();
    let mut results = isms_core::stored_query_results(&shared.store, id)?;
    let mut hits = isms_core::stored_monitor_hits(&shared.store, id)?;
    for (node, rec) in records {
        let queued_at_ms = match (rec.queued_at_ms, waiting.remove(node.as_str())) {
            (0, true) => queued.at_ms,
            (t, _) => t,
        };
        let t = TargetView {
            node: node.clone(),
            state: rec.state,
            updated_at_ms: rec.updated_at_ms,
            detail: rec.detail,
            queued_at_ms,
            delivered_at_ms: rec.delivered_at_ms,
            acknowledged_at_ms: rec.acknowledged_at_ms,
            finished_at_ms: rec.finished_at_ms,
            deadline_ms: rec.deadline_ms,
            overdue_at_ms: rec.overdue_at_ms,
            result: results.remove(&node),
            hits: hits.remove(&node),
            result_signature: String::new(),
        };
        if is_province(&node) {
            view.hops.push(t);
        } else {
            view.targets.push(t);
        }
    }
    view.targets
        .extend(waiting.into_iter().map(|node| TargetView {
            node: node.to_string(),
            state: TargetState::Queued as i32,
            updated_at_ms: queued.at_ms,
            queued_at_ms: queued.at_ms,
            ..Default::default()
        }));
    view.targets.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(view)
}

/// Issuer: each enterprise's result in `view` with what its signature says:
/// `verified`, `unverifiable: <why>`, or `unsigned` for a result no signature of the
/// enterprise's backs. Not at a relay, which keeps no signed results.
pub fn with_result_signatures(
    shared: &Shared,
    view: &mut DirectiveView,
    trust: &isms_domain::signature::Trust,
) -> Result<(), NodeError> {
    let Some(d) = view.directive.as_ref() else {
        return Ok(());
    };
    if d.issuer != shared.node_id.as_str() {
        return Ok(());
    }
    let mut verdicts = isms_core::result_verdicts(&shared.store, trust, &d.id, &d.rules)?;
    let is_result = |s: i32| s == TargetState::Executed as i32 || s == TargetState::Failed as i32;
    for t in &mut view.targets {
        t.result_signature = match verdicts.remove(&t.node) {
            Some((signed, verdict)) if signed.state == t.state => verdict,
            Some((signed, _)) if is_result(t.state) => format!(
                "unsigned: {} signed {}, not {}",
                t.node,
                state_name(TargetState::try_from(signed.state).unwrap_or_default()),
                state_name(TargetState::try_from(t.state).unwrap_or_default()),
            ),
            Some((signed, verdict)) => format!(
                "{verdict} (signed {})",
                state_name(TargetState::try_from(signed.state).unwrap_or_default())
            ),
            None if is_result(t.state) => "unsigned".to_string(),
            None => String::new(),
        };
    }
    Ok(())
}

/// `directive list`: the newest directives first, filtered by state (or approval state,
/// or `overdue`) and kind, each with its counts.
pub fn list_directives(
    shared: &Shared,
    request: &ListDirectivesRequest,
) -> Result<DirectiveList, Status> {
    let limit = match request.limit {
        0 => 50,
        n => n as usize,
    };
    let wanted = request.state.trim().to_string();
    let kind = request.kind.trim().to_string();
    if !kind.is_empty() && !isms_domain::directive::KIND_NAMES.contains(&kind.as_str()) {
        return Err(Status::invalid_argument(format!(
            "unknown kind {kind:?}: expected one of {}",
            isms_domain::directive::KIND_NAMES.join(", ")
        )));
    }
    let approval_state = APPROVAL_STATE_NAMES.contains(&wanted.as_str());
    if !wanted.is_empty()
        && wanted != "overdue"
        && !approval_state
        && !isms_domain::directive::STATE_NAMES.contains(&wanted.as_str())
    {
        return Err(Status::invalid_argument(format!(
            "unknown state {wanted:?}: expected overdue, one of {}, or one of {}",
            isms_domain::directive::STATE_NAMES.join(", "),
            APPROVAL_STATE_NAMES.join(", ")
        )));
    }
    let mut directives = Vec::new();
    // UUIDv7 IDs sort by time: newest first.
    for entry in shared.store.scan_prefix(records::DIRECTIVE_PREFIX).rev() {
        if directives.len() >= limit {
            break;
        }
        let (k, v) = entry.map_err(NodeError::from)?;
        let stored: StoredDirective = decode(&k, &v).map_err(NodeError::from)?;
        let d = stored.directive.unwrap_or_default();
        if !kind.is_empty() && isms_domain::directive::kind_name(d.kind) != kind {
            continue;
        }
        let view = directive_view(shared, &d.id)?;
        let all = || view.targets.iter().chain(view.hops.iter());
        let tally = Tally::of_view(&view.targets, &view.hops);
        let matches = match wanted.as_str() {
            "" => true,
            "overdue" => tally.overdue > 0,
            name if approval_state => view
                .approval
                .as_ref()
                .is_some_and(|a| approval_state_name(a.state()) == name),
            name => all()
                .any(|t| state_name(TargetState::try_from(t.state).unwrap_or_default()) == name),
        };
        if matches {
            let mut summary = tally.summary(&d);
            with_approval(&mut summary, &d, view.approval.clone());
            summary.hits = view
                .targets
                .iter()
                .filter_map(|t| t.hits.as_ref())
                .map(|h| h.total)
                .sum();
            directives.push(summary);
        }
    }
    Ok(DirectiveList { directives })
}

/// A directive as this node stores it.
struct Rows {
    stored: StoredDirective,
    /// The enterprises queued here; those not heard of since have no record of their own.
    queued: QueuedTargets,
    /// The records of its targets and relays.
    records: Vec<(String, TargetRecord)>,
}

fn stored_rows(shared: &Shared, id: &str) -> Result<Rows, NodeError> {
    let key = records::directive(id);
    let stored: StoredDirective = match shared.store.get(&key)? {
        Some(v) => decode(&key, &v)?,
        None => return Err(NodeError::NotFound(format!("directive {id}"))),
    };
    let queued_key = records::queued(id);
    let queued: QueuedTargets = match shared.store.get(&queued_key)? {
        Some(v) => decode(&queued_key, &v)?,
        None => QueuedTargets::default(),
    };
    let records = isms_core::stored_targets(&shared.store, id)?;
    Ok(Rows {
        stored,
        queued,
        records,
    })
}

/// [`directive_view`]'s counts, without building its rows.
pub fn directive_summary(shared: &Shared, id: &str) -> Result<DirectiveSummary, NodeError> {
    let Rows {
        stored,
        queued,
        records,
    } = stored_rows(shared, id)?;
    let mut waiting: HashSet<&str> = queued.targets.iter().map(String::as_str).collect();
    let mut tally = Tally::default();
    for (node, rec) in &records {
        waiting.remove(node.as_str());
        tally.add(
            is_province(node),
            rec.state,
            rec.finished_at_ms,
            rec.overdue_at_ms,
        );
    }
    for _ in waiting {
        tally.add(false, TargetState::Queued as i32, 0, 0);
    }
    let d = stored.directive.unwrap_or_default();
    let mut summary = tally.summary(&d);
    with_approval(&mut summary, &d, approval(shared, id)?);
    summary.hits = hits_total(shared, id)?;
    Ok(summary)
}

/// A monitoring directive's hits over all its enterprises.
pub(crate) fn hits_total(shared: &Shared, id: &str) -> Result<u64, NodeError> {
    Ok(isms_core::stored_monitor_hits(&shared.store, id)?
        .values()
        .map(|h| h.total)
        .sum())
}

/// The counts of a [`DirectiveSummary`], target by target.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) counts: BTreeMap<String, u32>,
    pub(crate) targets: u32,
    pub(crate) finished: u32,
    pub(crate) finished_at_ms: i64,
    pub(crate) overdue: u32,
}

impl Tally {
    /// Of a directive's view: its targets, and its relays (`hops`) for `overdue`.
    pub(crate) fn of_view(targets: &[TargetView], hops: &[TargetView]) -> Tally {
        let mut tally = Tally::default();
        for t in targets {
            tally.add(false, t.state, t.finished_at_ms, t.overdue_at_ms);
        }
        for t in hops {
            tally.add(true, t.state, t.finished_at_ms, t.overdue_at_ms);
        }
        tally
    }

    /// One enterprise target, or a relay (`hop`: counted only when its clock ran out).
    pub(crate) fn add(&mut self, hop: bool, state: i32, finished_at_ms: i64, overdue_at_ms: i64) {
        if overdue_at_ms != 0 {
            self.overdue += 1;
        }
        if hop {
            return;
        }
        let state = TargetState::try_from(state).unwrap_or(TargetState::Unspecified);
        *self
            .counts
            .entry(state_name(state).to_string())
            .or_insert(0) += 1;
        self.targets += 1;
        if is_final(state) {
            self.finished += 1;
            self.finished_at_ms = self.finished_at_ms.max(finished_at_ms);
        }
    }

    pub(crate) fn summary(self, d: &Directive) -> DirectiveSummary {
        DirectiveSummary {
            id: d.id.clone(),
            issuer: d.issuer.clone(),
            kind: d.kind,
            urgency: d.urgency,
            issued_at_ms: d.issued_at_ms,
            rules: u32::try_from(d.rules.len()).unwrap_or(u32::MAX),
            targets: self.targets,
            counts: self.counts.into_iter().collect(),
            overdue: self.overdue,
            finished: self.finished,
            finished_at_ms: if self.finished == self.targets {
                self.finished_at_ms
            } else {
                0
            },
            approval: None,
            hits: 0,
        }
    }
}

/// Targets per state name.
pub fn counts(targets: &[TargetView]) -> BTreeMap<String, u32> {
    Tally::of_view(targets, &[]).counts
}

/// What waits for this node's operator, oldest first: at a province, requirements to
/// confirm or return; at an enterprise, data-correction demands to carry out.
pub fn pending(shared: &Shared) -> Result<PendingList, NodeError> {
    let now = shared.now_ms();
    let me = shared.node_id.to_string();
    let mut directives = Vec::new();
    if shared.node_id.tier() == Tier::Enterprise {
        for entry in shared.store.scan_prefix(records::CORRECTION_PREFIX) {
            let (k, _) = entry?;
            let id = String::from_utf8_lossy(&k[records::CORRECTION_PREFIX.len()..]).into_owned();
            let key = records::directive(&id);
            let Some(v) = shared.store.get(&key)? else {
                continue;
            };
            let stored: StoredDirective = decode(&key, &v)?;
            directives.push(PendingDirective {
                received_at_ms: stored.received_at_ms,
                directive: stored.directive,
                ..PendingDirective::default()
            });
        }
        return Ok(PendingList { directives });
    }
    for entry in shared.store.scan_prefix(records::DIRECTIVE_PREFIX) {
        let (k, v) = entry?;
        let stored: StoredDirective = decode(&k, &v)?;
        let d = stored.directive.unwrap_or_default();
        // This node's own state: a node is never in its own directory, so no via.
        let Some(rec) = isms_core::stored_target(&shared.store, &d.id, "", &me)? else {
            continue;
        };
        if rec.state != TargetState::Received as i32 {
            continue;
        }
        directives.push(PendingDirective {
            received_at_ms: stored.received_at_ms,
            deadline_ms: rec.deadline_ms,
            time_left_ms: if rec.deadline_ms == 0 {
                0
            } else {
                rec.deadline_ms - now
            },
            clock_error: if rec.deadline_ms == 0 {
                rec.detail
            } else {
                String::new()
            },
            directive: Some(d),
        });
    }
    Ok(PendingList { directives })
}

/// Links, backlogs and counts of this node.
pub fn node_status(shared: &Shared) -> Result<NodeStatusReply, NodeError> {
    let peers = isms_core::peer_statuses(shared)?;
    let directives = shared.directives.load(Ordering::SeqCst);
    // Only an enterprise holds rules, and no more than it enforces.
    let mut active_rules = 0u64;
    if shared.node_id.tier() == Tier::Enterprise {
        for entry in shared.store.scan_prefix(records::RULE_SET_PREFIX) {
            let (k, v) = entry?;
            let set: ActiveRules = records::decode(&k, &v)?;
            active_rules += set.rules.len() as u64;
        }
    }
    let rules_applied_total = match shared.store.get(records::RULES_APPLIED_COUNTER)? {
        Some(v) => records::decode_u64(records::RULES_APPLIED_COUNTER, &v)?,
        None => 0,
    };
    // The expiry index holds exactly the requests still open (`records::approval_expiry`).
    let awaiting_approval = shared
        .store
        .scan_prefix(records::APPROVAL_EXPIRY_PREFIX)
        .count() as u64;
    let enforcement = isms_core::enforcement_state(&shared.store)?;
    Ok(NodeStatusReply {
        rules_version: enforcement.rules_version,
        enforcement_pending: enforcement.pending,
        enforcement_error: enforcement.error,
        awaiting_approval,
        rules_applied_total,
        node_id: shared.node_id.to_string(),
        peers,
        directives,
        active_rules,
        started_at_ms: shared.started_at_ms,
    })
}

/// Adds a major directive's approval to its summary. One that has not left (awaiting, or
/// never to leave) has no target records yet; its targets are those it names.
pub(crate) fn with_approval(summary: &mut DirectiveSummary, d: &Directive, a: Option<Approval>) {
    if a.as_ref()
        .is_some_and(|a| a.state() != ApprovalState::Approved)
    {
        summary.targets = u32::try_from(d.targets.len()).unwrap_or(u32::MAX);
    }
    summary.approval = a;
}

/// A major directive's four-eyes record (O-6), if it has one: a request whose time ran out
/// shows as expired even before the node's tick records it.
pub fn approval(shared: &Shared, id: &str) -> Result<Option<Approval>, NodeError> {
    let key = records::approval(id);
    let Some(v) = shared.store.get(&key)? else {
        return Ok(None);
    };
    let mut a: Approval = decode(&key, &v)?;
    if a.state == ApprovalState::Awaiting as i32 && shared.now_ms() >= a.expires_at_ms {
        a.state = ApprovalState::Expired as i32;
    }
    Ok(Some(a))
}

/// The signed audit heads this node keeps (its own and its children's), of `node` only if
/// given, oldest first per node.
pub fn audit_heads(shared: &Shared, node: &str) -> Result<AuditHeadList, NodeError> {
    let prefix = if node.is_empty() {
        records::AUDIT_HEAD_PREFIX.to_vec()
    } else {
        records::audit_heads_of(node)
    };
    let mut heads = Vec::new();
    for entry in shared.store.scan_prefix(&prefix) {
        let (k, v) = entry?;
        heads.push(decode::<AuditHead>(&k, &v)?);
    }
    Ok(AuditHeadList { heads })
}

/// Records a list holds when the caller sets no limit.
const AUDIT_LIST_DEFAULT: usize = 10_000;

/// The audit records matching `q`, oldest first: the newest `limit` of them.
pub fn audit_list(shared: &Shared, q: &ListAuditRequest) -> Result<AuditList, NodeError> {
    let limit = match q.limit {
        0 => AUDIT_LIST_DEFAULT,
        n => n as usize,
    };
    let mut kept = std::collections::VecDeque::new();
    let mut omitted = 0;
    let from = records::audit(q.from_seq.max(1));
    let end = records::audit(u64::MAX);
    for entry in shared.store.range(&from, &end) {
        let (k, v) = entry?;
        let r: AuditRecord = decode(&k, &v)?;
        let matches = (q.since_ms == 0 || r.at_ms >= q.since_ms)
            && (q.until_ms == 0 || r.at_ms < q.until_ms)
            && (q.operator.is_empty() || r.operator == q.operator)
            && (q.action.is_empty() || r.action == q.action);
        if !matches {
            continue;
        }
        if kept.len() == limit {
            if q.from_seq > 0 {
                // A page: the oldest `limit`; the next page starts after them.
                omitted += 1;
                continue;
            }
            kept.pop_front();
            omitted += 1;
        }
        kept.push_back(AuditEntry {
            seq: r.seq,
            at_ms: r.at_ms,
            operator: r.operator,
            action: r.action,
            subject: r.subject,
            outcome: r.outcome,
            prev_hash: hex(&r.prev_hash),
            peer: r.peer,
            args_digest: hex(&r.args_digest),
        });
    }
    Ok(AuditList {
        entries: kept.into(),
        omitted,
    })
}

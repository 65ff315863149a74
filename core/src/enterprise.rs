//! The enterprise's part of the state machine: acknowledging on receipt, the active rule
//! set and its enforcement points (`isms-enforce`: `executed` once the rules are in force
//! everywhere, a failure retried), revocation, scheduled effect and expiry, access-log
//! answers and data corrections.

use super::*;
use prost::bytes::Bytes;

impl Core {
    /// Enterprise: acknowledge on receipt and add the rules to the active set; the rules
    /// file is written after the commit, and `executed` follows.
    pub(super) fn accept_at_enterprise(
        &mut self,
        g: &mut Group<'_>,
        d: &Directive,
        trace: &HashMap<String, String>,
    ) -> Result<(), NodeError> {
        let me = self.shared.node_id.to_string();
        self.report_up(g, &d.id, &me, TargetState::Acknowledged, "", trace);
        let kind = DirectiveKind::try_from(d.kind).unwrap_or(DirectiveKind::Unspecified);
        if let Some(by) = g.txn.get(&records::revoked(&d.id))? {
            // Revoked before it got here: never applied.
            let detail = format!(
                "revoked by {} before it arrived",
                String::from_utf8_lossy(&by)
            );
            self.report_up(g, &d.id, &me, TargetState::Revoked, &detail, trace);
            return self.blacklist_arrived(g, d);
        }
        if kind == DirectiveKind::Revocation {
            self.revoke_at_enterprise(g, d)?;
            return self.blacklist_arrived(g, d);
        }
        if kind == DirectiveKind::AccessLogQuery {
            // Answered by the querier, off this thread; pending until then.
            g.txn.put(records::query_pending(&d.id), Vec::new());
            if let Some(querier) = &self.querier {
                querier.ask(&d.id, d.query.clone().unwrap_or_default());
            }
            return Ok(());
        }
        if kind == DirectiveKind::DataCorrection {
            // Waits for this enterprise's operator to correct the data.
            g.txn.put(records::correction(&d.id), Vec::new());
            tracing::info!(directive = %d.id, "data-correction demand received");
            return Ok(());
        }
        if kind == DirectiveKind::Drill {
            // Exercises the whole chain (O-3); never touches a rule set.
            let detail = "drill: carried end to end, not applied (O-3)";
            tracing::info!(directive = %d.id, "{detail}");
            self.report_up(g, &d.id, &me, TargetState::Executed, detail, trace);
            return Ok(());
        }
        let rules = match directive::normalise_rules(&d.rules) {
            Ok(r) => r,
            Err(e) => {
                self.report_up(g, &d.id, &me, TargetState::Failed, &e.to_string(), trace);
                return Ok(());
            }
        };
        if matches!(kind, DirectiveKind::Disposal | DirectiveKind::Monitoring) {
            let (adds, deletes): (Vec<Rule>, Vec<Rule>) = rules
                .into_iter()
                .partition(|r| r.op != RuleOp::Delete as i32);
            // A delete removes the matching rules of the same issuer and action, from its
            // blacklist or from its other directives as the delete is one or the other.
            if !deletes.is_empty() {
                let doomed: HashSet<(i32, Bytes)> =
                    deletes.into_iter().map(|r| (r.kind, r.value)).collect();
                for (k, v) in g.txn.scan_prefix(records::RULE_SET_PREFIX)? {
                    let mut set: ActiveRules = decode(&k, &v)?;
                    if set.kind != d.kind
                        || set.issuer != d.issuer
                        || (set.blacklist_version != 0) != d.blacklist.is_some()
                    {
                        continue;
                    }
                    let before = set.rules.len();
                    set.rules
                        .retain(|r| !doomed.contains(&(r.kind, r.value.clone())));
                    if set.rules.is_empty() {
                        g.txn.delete(k);
                    } else if set.rules.len() != before {
                        g.txn.put(k, encode(&set));
                    }
                }
            }
            let added = adds.len() as u64;
            for (i, set) in rule_sets(d, g.now, adds).into_iter().enumerate() {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                g.txn.put(records::rule_set(&d.id, index), encode(&set));
            }
            let counter = match g.txn.get(records::RULES_APPLIED_COUNTER)? {
                Some(v) => records::decode_u64(records::RULES_APPLIED_COUNTER, &v)?,
                None => 0,
            };
            g.txn.put(
                records::RULES_APPLIED_COUNTER.to_vec(),
                records::encode_u64(counter + added),
            );
            // The rule set changes by itself when the directive takes effect or lapses; the
            // schedule survives restarts.
            if d.effective_at_ms > g.now {
                g.txn
                    .put(records::schedule(d.effective_at_ms, &d.id), Vec::new());
            }
            if d.expires_at_ms > 0 {
                g.txn
                    .put(records::schedule(d.expires_at_ms, &d.id), Vec::new());
            }
        }
        g.rules_changed.push(d.id.clone());
        self.blacklist_arrived(g, d)
    }

    /// Enterprise: removes the revoked directive's rules; the revocation is executed once
    /// the rules file no longer has them, and the revoked directive is reported `revoked`.
    pub(super) fn revoke_at_enterprise(
        &mut self,
        g: &mut Group<'_>,
        d: &Directive,
    ) -> Result<(), NodeError> {
        let me = self.shared.node_id.to_string();
        let x = d.revokes.as_str();
        g.txn.put(records::revoked(x), d.id.as_bytes().to_vec());
        let mut removed = 0usize;
        for (k, v) in g.txn.scan_prefix(&records::rule_set_prefix(x))? {
            let set: ActiveRules = decode(&k, &v)?;
            removed += set.rules.len();
            g.txn.delete(k);
        }
        if self.stored_meta(g, x)?.is_some() {
            let x_trace = self.stored_trace(g, x)?;
            let detail = format!("revoked by {}: {removed} rules removed", d.id);
            self.report_up(g, x, &me, TargetState::Revoked, &detail, &x_trace);
        }
        tracing::info!(directive = %x, revocation = %d.id, removed, "directive revoked");
        g.rules_changed.push(d.id.clone());
        Ok(())
    }

    /// Enterprise: directives that took effect or lapsed by now change the rules file; a
    /// lapsed directive's rules leave the active set for good.
    pub(super) fn check_schedule(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        for (key, _) in self.due(records::SCHEDULE_PREFIX, g.now)? {
            g.txn.delete(key.clone());
            let Some(id) = key
                .get(records::SCHEDULE_PREFIX.len() + 8..)
                .and_then(|b| std::str::from_utf8(b).ok())
            else {
                continue;
            };
            let lapsed = self
                .stored_directive(g, id)?
                .and_then(|s| s.directive)
                .is_some_and(|d| d.expires_at_ms != 0 && d.expires_at_ms <= g.now);
            if lapsed {
                for (k, v) in g.txn.scan_prefix(&records::rule_set_prefix(id))? {
                    // A blacklist's rule stays on its list (its version and checksum say
                    // what was ordered) and is out of force by its time (`rules_in_force`).
                    let set: ActiveRules = decode(&k, &v)?;
                    if set.blacklist_version == 0 {
                        g.txn.delete(k);
                    }
                }
                tracing::info!(directive = %id, "directive lapsed: its rules are inactive");
            } else {
                tracing::info!(directive = %id, "directive took effect");
            }
            g.rules_dirty = true;
        }
        Ok(())
    }

    /// Enterprise: the operator reports a data-correction demand done.
    pub(super) fn corrected(
        &mut self,
        g: &mut Group<'_>,
        id: &str,
        caller: &Caller,
        note: &str,
    ) -> Result<DecisionReply, NodeError> {
        if self.tier != Tier::Enterprise {
            return Err(NodeError::Forbidden(
                "only an enterprise reports data corrected".into(),
            ));
        }
        directive::operator_note(note, "note", false)?;
        let key = records::correction(id);
        if !g.txn.contains(&key)? {
            return Err(NodeError::State(format!(
                "directive {id} is not a data-correction demand waiting here"
            )));
        }
        g.txn.delete(key);
        let me = self.shared.node_id.to_string();
        let trace = self.stored_trace(g, id)?;
        let detail = if note.trim().is_empty() {
            format!("corrected by {}", caller.operator)
        } else {
            format!("corrected by {}: {}", caller.operator, note.trim())
        };
        self.report_up(g, id, &me, TargetState::Executed, &detail, &trace);
        audit(g, caller, "correction.report", id, &detail);
        Ok(DecisionReply {
            id: id.to_string(),
            targets: 1,
        })
    }

    /// Hands the rule set as this group leaves it to the enforcement points (the enforcer
    /// thread), and marks the group's directives pending at this version
    /// (`records::enforce_pending`): each is reported `executed` once every point confirmed
    /// a version at least as new, or `failed` with the point's own error, once,
    /// while the enforcer retries; a later success reports it `executed`.
    pub(super) fn execute_rules(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        let version = match g.txn.get(records::RULES_VERSION)? {
            Some(v) => records::decode_u64(records::RULES_VERSION, &v)?,
            None => 0,
        } + 1;
        g.txn.put(
            records::RULES_VERSION.to_vec(),
            records::encode_u64(version),
        );
        let rules = rules_in_force(g.txn.scan_prefix(records::RULE_SET_PREFIX)?, g.now)?;
        let directives = std::mem::take(&mut g.rules_changed);
        let Some(enforcer) = &self.enforcer else {
            // No points (a core run without a node's files): in force as stored.
            let me = self.shared.node_id.to_string();
            for id in directives {
                let trace = self.stored_trace(g, &id)?;
                self.report_up(g, &id, &me, TargetState::Executed, "", &trace);
            }
            return Ok(());
        };
        for id in &directives {
            g.txn
                .put(records::enforce_pending(id), pending_value(version, false));
        }
        // Handed over before the commit: a crash before it leaves the points ahead of the
        // store until the parent resends and the start converges them again.
        enforcer.converge(version, g.now, rules);
        Ok(())
    }

    /// The enforcer's outcome for rule-set `version`: the directives pending at it or
    /// before are reported `executed`, or `failed` once.
    pub(super) fn enforced(
        &mut self,
        g: &mut Group<'_>,
        version: u64,
        outcome: Result<(), String>,
    ) -> Result<(), NodeError> {
        let me = self.shared.node_id.to_string();
        match &outcome {
            Ok(()) => g.txn.delete(records::ENFORCE_ERROR.to_vec()),
            Err(why) => g
                .txn
                .put(records::ENFORCE_ERROR.to_vec(), why.as_bytes().to_vec()),
        }
        for (k, v) in g.txn.scan_prefix(records::ENFORCE_PENDING_PREFIX)? {
            let (at, reported_failed) = read_pending(&v);
            if at > version {
                continue; // a newer set is on its way to the points
            }
            let Ok(id) = String::from_utf8(k[records::ENFORCE_PENDING_PREFIX.len()..].to_vec())
            else {
                g.txn.delete(k);
                continue;
            };
            let trace = self.stored_trace(g, &id)?;
            let span = tracing::info_span!("directive.execute", directive = %id, node = %me);
            trace::set_parent(&span, &trace);
            let _entered = span.enter();
            let trace = trace::inject(&span);
            match &outcome {
                Ok(()) => {
                    tracing::info!(directive = %id, version, "directive executed: in force");
                    g.txn.delete(k);
                    self.report_up(g, &id, &me, TargetState::Executed, "", &trace);
                }
                Err(why) if !reported_failed => {
                    tracing::error!(directive = %id, error = %why, "directive not in force; retried");
                    g.txn.put(k, pending_value(at, true));
                    let detail = format!("not in force: {why}; retried");
                    self.report_up(g, &id, &me, TargetState::Failed, &detail, &trace);
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// The querier's answer to an access-log query: reported `executed` with the records,
    /// or `failed` with why, once (a second answer, after a restart asked again, is
    /// dropped).
    pub(super) fn query_answered(
        &mut self,
        g: &mut Group<'_>,
        directive_id: &str,
        answer: Result<isms_proto::v1::QueryResult, String>,
    ) -> Result<(), NodeError> {
        let key = records::query_pending(directive_id);
        if g.txn.get(&key)?.is_none() {
            return Ok(());
        }
        g.txn.delete(key);
        let me = self.shared.node_id.to_string();
        let (state, detail, result) = match answer {
            Ok(result) => {
                tracing::info!(directive = %directive_id, matched = result.matched, "access-log query answered");
                let detail = format!("{} records matched", result.matched);
                (TargetState::Executed, detail, Some(result))
            }
            Err(why) => {
                tracing::warn!(directive = %directive_id, error = %why, "access-log query not answered");
                (TargetState::Failed, why, None)
            }
        };
        let update = TargetStatus {
            node: me,
            state: state as i32,
            at_ms: g.now,
            detail,
            overdue_at_ms: 0,
            result,
            hits: None,
            blacklist: None,
            signed: None,
        };
        let trace = self.stored_trace(g, directive_id)?;
        self.report(g, directive_id, &update, &trace);
        Ok(())
    }

    /// At start: the queries received and not answered before a stop are asked again.
    pub(super) fn ask_pending_queries(&self) -> Result<(), NodeError> {
        let Some(querier) = &self.querier else {
            return Ok(());
        };
        for entry in self.shared.store.scan_prefix(records::QUERY_PENDING_PREFIX) {
            let (k, _) = entry?;
            let id =
                String::from_utf8_lossy(&k[records::QUERY_PENDING_PREFIX.len()..]).into_owned();
            let key = records::directive(&id);
            let Some(v) = self.shared.store.get(&key)? else {
                continue;
            };
            let stored: isms_proto::record::StoredDirective = decode(&key, &v)?;
            let q = stored.directive.and_then(|d| d.query).unwrap_or_default();
            querier.ask(&id, q);
        }
        Ok(())
    }

    /// At start: the store is the truth, and a crash between converging the points and
    /// committing the group may have left them ahead of it (or behind, for a revocation):
    /// the points are converged to the stored set, and what was pending is reported by
    /// the outcome.
    pub(super) fn converge_at_start(&mut self) -> Result<(), NodeError> {
        let now = self.shared.now_ms();
        let rules = active_rules(&self.shared.store, now)?;
        let version = match self.shared.store.get(records::RULES_VERSION)? {
            Some(v) => records::decode_u64(records::RULES_VERSION, &v)?,
            None => 0,
        };
        if let Some(enforcer) = &self.enforcer {
            enforcer.converge(version, now, rules);
        }
        Ok(())
    }
}

/// A pending directive's record: the rule-set version it joined, and whether it was
/// already reported `failed`.
fn pending_value(version: u64, reported_failed: bool) -> Vec<u8> {
    let mut v = version.to_be_bytes().to_vec();
    v.push(u8::from(reported_failed));
    v
}

pub(super) fn read_pending(v: &[u8]) -> (u64, bool) {
    let version = v
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes);
    (version, v.get(8) == Some(&1))
}

/// Reads the rules in force at `now_ms` from the store.
/// Enterprise: where its enforcement points stand, as the core recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnforcementState {
    /// The rule set's version, one more for every group that changed it.
    pub rules_version: u64,
    /// Directives whose rules are not yet in force at every point.
    pub pending: u64,
    /// The points' last error; empty once they all took the set.
    pub error: String,
}

pub fn enforcement_state(store: &Store) -> Result<EnforcementState, NodeError> {
    let rules_version = match store.get(records::RULES_VERSION)? {
        Some(v) => records::decode_u64(records::RULES_VERSION, &v)?,
        None => 0,
    };
    Ok(EnforcementState {
        rules_version,
        pending: store.scan_prefix(records::ENFORCE_PENDING_PREFIX).count() as u64,
        error: store
            .get(records::ENFORCE_ERROR)?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default(),
    })
}

/// The SHA-256 of the rules stored (in force or waiting), in canonical form
/// (`isms_domain::blacklist::checksum`): what a heartbeat says of the rule set.
pub fn rules_checksum(store: &Store) -> Result<[u8; 32], NodeError> {
    let mut sets = Vec::new();
    for entry in store.scan_prefix(records::RULE_SET_PREFIX) {
        let (k, v) = entry?;
        sets.push(records::decode::<ActiveRules>(&k, &v)?);
    }
    Ok(isms_domain::blacklist::checksum(sets.iter().flat_map(
        |s| s.rules.iter().map(|r| (r.kind, r.value.as_ref())),
    )))
}

pub fn active_rules(store: &Store, now_ms: i64) -> Result<Vec<isms_enforce::Rule>, NodeError> {
    let entries = store
        .scan_prefix(records::RULE_SET_PREFIX)
        .collect::<Result<Vec<_>, _>>()?;
    rules_in_force(entries, now_ms)
}

/// Rules per `ActiveRules` record: about 4 KiB of typical names, so a record stays whole in
/// sled's leaf (longer values go to pieces, see `isms-store`), and a delete rewrites few.
const RULES_PER_SET: usize = 128;

/// `d`'s rules added to the active set, as the records that keep them.
fn rule_sets(d: &Directive, applied_at_ms: i64, rules: Vec<Rule>) -> Vec<ActiveRules> {
    let header = ActiveRules {
        directive_id: d.id.clone(),
        issuer: d.issuer.clone(),
        kind: d.kind,
        applied_at_ms,
        effective_at_ms: d.effective_at_ms,
        expires_at_ms: d.expires_at_ms,
        rules: Vec::new(),
        blacklist_version: d.blacklist.as_ref().map_or(0, |b| b.to_version),
    };
    split_into_sets(&header, rules)
}

/// `rules` in records of up to [`RULES_PER_SET`], each with `header`'s fields.
pub(super) fn split_into_sets(header: &ActiveRules, rules: Vec<Rule>) -> Vec<ActiveRules> {
    let mut rules = rules.into_iter().peekable();
    let mut sets = Vec::new();
    while rules.peek().is_some() {
        sets.push(ActiveRules {
            rules: rules.by_ref().take(RULES_PER_SET).collect(),
            ..header.clone()
        });
    }
    sets
}

/// Folds the active set of a store written before rule sets (one record per rule) into
/// rule sets, in one commit, before the first group; returns how many rules moved.
pub(super) fn migrate_rules(store: &Store) -> Result<u64, NodeError> {
    let mut txn = store.txn();
    let mut moved = 0u64;
    // Keys sort by directive, then index: a directive's rules come together. Its fields
    // are the same on each of its records (applied in one group).
    let mut directives: Vec<(ActiveRules, Vec<Rule>)> = Vec::new();
    for entry in store.scan_prefix(records::LEGACY_RULE_PREFIX) {
        let (k, v) = entry?;
        let old: ActiveRule = decode(&k, &v)?;
        txn.delete(k);
        moved += 1;
        let rule = old.rule.unwrap_or_default();
        match directives.last_mut() {
            Some((header, rules)) if header.directive_id == old.directive_id => rules.push(rule),
            _ => {
                let header = ActiveRules {
                    directive_id: old.directive_id,
                    issuer: old.issuer,
                    kind: old.kind,
                    applied_at_ms: old.applied_at_ms,
                    effective_at_ms: old.effective_at_ms,
                    expires_at_ms: old.expires_at_ms,
                    rules: Vec::new(),
                    blacklist_version: 0,
                };
                directives.push((header, vec![rule]));
            }
        }
    }
    for (header, rules) in directives {
        for (i, set) in split_into_sets(&header, rules).into_iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            txn.put(records::rule_set(&header.directive_id, index), encode(&set));
        }
    }
    if moved > 0 {
        store.apply(txn.into_writes())?;
        store.sync()?;
        tracing::info!(rules = moved, "active rules folded into rule sets");
    }
    Ok(moved)
}

/// The rules in force at `now_ms` among stored active-rule records.
pub(super) fn rules_in_force(
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    now_ms: i64,
) -> Result<Vec<isms_enforce::Rule>, NodeError> {
    let mut out = Vec::new();
    for (k, v) in entries {
        let set: ActiveRules = decode(&k, &v)?;
        let in_force =
            set.effective_at_ms <= now_ms && (set.expires_at_ms == 0 || now_ms < set.expires_at_ms);
        if !in_force {
            continue;
        }
        let action = match DirectiveKind::try_from(set.kind) {
            Ok(DirectiveKind::Monitoring) => "monitor",
            _ => "block",
        };
        out.extend(set.rules.iter().map(|rule| isms_enforce::Rule {
            directive: set.directive_id.clone(),
            action: action.to_string(),
            kind: directive::rule_kind_name(rule.kind).to_string(),
            value: directive::rule_text(rule).into_owned(),
            issuer: set.issuer.clone(),
            applied_at_ms: set.applied_at_ms,
            effective_at_ms: set.effective_at_ms,
            expires_at_ms: set.expires_at_ms,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

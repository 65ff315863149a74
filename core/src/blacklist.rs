//! The versioned blacklist as the nodes keep it.
//!
//! The issuer gives each blacklist directive (and each revocation of one) a delta
//! `from → to` and the checksum of its list after it, when the directive leaves it. Every
//! node it passes indexes the versions (`bi/`). An enterprise advances its version only on
//! top of the one a delta names and only when the rules it stored give the delta's
//! checksum; a gap or a mismatch asks the parent for the whole list, which answers with the
//! list as it passed it on to that enterprise, in chunks. The enterprise reports each
//! version it reaches up to the issuer, which shows who lags.
//!
//! Must not: enforce anything (the rules are enforced per directive, `enterprise`), or
//! guess: a version is claimed only when the stored rules give its checksum.

use super::*;
use isms_domain::blacklist::{self, Blacklist};

mod checks;
mod views;
pub(crate) use checks::{check_chunk, check_resync};
use isms_proto::record::{BlacklistIndexEntry, BlacklistState, HeldDelta};
use isms_proto::v1::{
    BlacklistChunk, BlacklistDelta, BlacklistEntry, BlacklistHeld, BlacklistResync,
    BlacklistSource, BlacklistVersion,
};
use views::held_row;
pub use views::{blacklist_lag, stored_blacklists};

/// Entries per part of a resync answer: about 200 KiB of typical names.
const ENTRIES_PER_CHUNK: usize = 8192;

/// A resync asked for and unanswered this long may be asked for again.
const RESYNC_PATIENCE_MS: i64 = 10 * 60 * 1000;

impl Core {
    /// Issuer: the next version of its blacklist, made by `d`, on the directive and in the
    /// index. Once per directive: at dispatch (at issue, or once approved).
    pub(super) fn version_blacklist(
        &mut self,
        g: &mut Group<'_>,
        d: &mut Directive,
    ) -> Result<(), NodeError> {
        let me = self.shared.node_id.to_string();
        let (version, mut list) = match self.own_blacklist.take() {
            Some(cached) => cached,
            None => self.fold_index(g, &me)?,
        };
        list.apply(d);
        let sha256 = list.checksum().to_vec();
        let to_version = version + 1;
        d.blacklist = Some(BlacklistDelta {
            from_version: version,
            to_version,
            sha256: sha256.clone(),
        });
        g.txn.put(
            records::blacklist_index(&me, to_version),
            encode(&BlacklistIndexEntry {
                directive_id: d.id.clone(),
                sha256,
            }),
        );
        // The stored directive carries its delta from now on (its copies are read from it).
        if let Some(mut stored) = self.stored_directive(g, &d.id)? {
            stored.directive = Some(d.clone());
            g.txn.put(records::directive(&d.id), encode(&stored));
        }
        tracing::info!(directive = %d.id, version = to_version, rules = list.len(), "blacklist version made");
        self.own_blacklist = Some((to_version, list));
        Ok(())
    }

    /// Any node: a blacklist directive passing here is indexed by its version.
    pub(super) fn index_blacklist(g: &mut Group<'_>, d: &Directive) {
        if let Some(delta) = &d.blacklist {
            g.txn.put(
                records::blacklist_index(&d.issuer, delta.to_version),
                encode(&BlacklistIndexEntry {
                    directive_id: d.id.clone(),
                    sha256: delta.sha256.clone(),
                }),
            );
        }
    }

    /// The issuer's blacklist directives this node's index has, in version order.
    fn indexed_directives(
        &self,
        g: &Group<'_>,
        issuer: &str,
    ) -> Result<Vec<(u64, Directive)>, NodeError> {
        let mut out = Vec::new();
        for (k, v) in g.txn.scan_prefix(&records::blacklist_index_of(issuer))? {
            let entry: BlacklistIndexEntry = decode(&k, &v)?;
            if let Some(d) = self
                .stored_directive(g, &entry.directive_id)?
                .and_then(|s| s.directive)
            {
                out.push((records::blacklist_index_version(&k).unwrap_or(0), d));
            }
        }
        Ok(out)
    }

    /// The issuer's list as this node's index has it, folded in version order; and the
    /// last version folded.
    fn fold_index(&self, g: &Group<'_>, issuer: &str) -> Result<(u64, Blacklist), NodeError> {
        Ok(fold(
            self.indexed_directives(g, issuer)?
                .iter()
                .map(|(v, d)| (v, d)),
        ))
    }

    /// Enterprise: a blacklist directive (or revocation of one) was applied; its delta moves
    /// the issuer's list here forward if it follows on, or waits for the gap before it.
    pub(super) fn blacklist_arrived(
        &mut self,
        g: &mut Group<'_>,
        d: &Directive,
    ) -> Result<(), NodeError> {
        let Some(delta) = &d.blacklist else {
            return Ok(());
        };
        let issuer = d.issuer.as_str();
        let mut state: BlacklistState = g
            .read(&records::blacklist_state(issuer))?
            .unwrap_or_default();
        if delta.to_version <= state.version {
            // A late delta (its province held it while a later one passed): the list here
            // came from a resync without it, and may now be the issuer's.
            self.adopt_issuers_checksum(g, issuer, state)?;
            return Ok(());
        }
        if delta.from_version != state.version {
            g.txn.put(
                records::held_delta(issuer, delta.from_version),
                encode(&HeldDelta {
                    directive_id: d.id.clone(),
                    to_version: delta.to_version,
                    sha256: delta.sha256.clone(),
                }),
            );
            let why = format!(
                "gap: holds version {}, got {} → {}",
                state.version, delta.from_version, delta.to_version
            );
            self.ask_resync(g, issuer, &mut state, &why);
            g.txn.put(records::blacklist_state(issuer), encode(&state));
            return Ok(());
        }
        let next = HeldDelta {
            directive_id: d.id.clone(),
            to_version: delta.to_version,
            sha256: delta.sha256.clone(),
        };
        self.advance_blacklist(g, issuer, state, Some(next))
    }

    /// Enterprise: moves the issuer's list from its version through `next` and the held
    /// deltas that follow on, and claims the last version if the stored rules give its
    /// checksum; otherwise asks for the whole list.
    fn advance_blacklist(
        &mut self,
        g: &mut Group<'_>,
        issuer: &str,
        mut state: BlacklistState,
        next: Option<HeldDelta>,
    ) -> Result<(), NodeError> {
        // Held deltas the list already passed are dropped; one that spans its version
        // (held from an older one) continues from it.
        for (k, v) in g.txn.scan_prefix(&records::held_delta_of(issuer))? {
            let held: HeldDelta = decode(&k, &v)?;
            let from = records::blacklist_index_version(&k).unwrap_or(0);
            if held.to_version <= state.version {
                g.txn.delete(k);
            } else if from < state.version {
                g.txn.delete(k);
                g.txn
                    .put(records::held_delta(issuer, state.version), encode(&held));
            }
        }
        let mut last = next;
        let mut at = last.as_ref().map_or(state.version, |h| h.to_version);
        while let Some(held) = g.read::<HeldDelta>(&records::held_delta(issuer, at))? {
            g.txn.delete(records::held_delta(issuer, at));
            at = held.to_version;
            last = Some(held);
        }
        let Some(last) = last else {
            g.txn.put(records::blacklist_state(issuer), encode(&state));
            return Ok(());
        };
        let computed = self
            .stored_blacklist(g, issuer, last.to_version)?
            .checksum();
        if computed.as_slice() == last.sha256.as_slice() {
            state.version = last.to_version;
            state.sha256 = last.sha256;
            tracing::info!(%issuer, version = state.version, "blacklist version in force");
            self.report_blacklist(g, &last.directive_id, &state);
        } else {
            let why = format!(
                "checksum mismatch at version {}: the stored rules give {}, the issuer {}",
                last.to_version,
                blacklist::short(&computed),
                blacklist::short(&last.sha256)
            );
            tracing::error!(%issuer, "{why}");
            // Held again, so that the whole list's answer continues from it.
            g.txn.put(
                records::held_delta(issuer, state.version),
                encode(&HeldDelta {
                    to_version: last.to_version,
                    ..last
                }),
            );
            self.ask_resync(g, issuer, &mut state, &why);
        }
        g.txn.put(records::blacklist_state(issuer), encode(&state));
        Ok(())
    }

    /// Enterprise: a list resynced from a parent that had not passed on every delta
    /// carries the parent's checksum; once the stored rules give the issuer's checksum of
    /// that version, it is the issuer's.
    fn adopt_issuers_checksum(
        &mut self,
        g: &mut Group<'_>,
        issuer: &str,
        mut state: BlacklistState,
    ) -> Result<(), NodeError> {
        let Some(entry) =
            g.read::<BlacklistIndexEntry>(&records::blacklist_index(issuer, state.version))?
        else {
            return Ok(());
        };
        if entry.sha256 == state.sha256 {
            return Ok(());
        }
        let computed = self.stored_blacklist(g, issuer, state.version)?.checksum();
        if computed.as_slice() == entry.sha256.as_slice() {
            state.sha256 = entry.sha256;
            tracing::info!(%issuer, version = state.version, "blacklist now the issuer's");
            self.report_blacklist(g, &entry.directive_id, &state);
            g.txn.put(records::blacklist_state(issuer), encode(&state));
        }
        Ok(())
    }

    /// Enterprise: the issuer's list as its stored rules give it, through `version`.
    fn stored_blacklist(
        &self,
        g: &mut Group<'_>,
        issuer: &str,
        version: u64,
    ) -> Result<Blacklist, NodeError> {
        list_of_rule_sets(
            g.txn
                .scan_prefix(records::RULE_SET_PREFIX)?
                .into_iter()
                .map(Ok::<_, NodeError>),
            issuer,
            version,
        )
    }

    /// Enterprise: asks the parent for the issuer's whole list, unless an earlier ask is
    /// still unanswered.
    fn ask_resync(
        &mut self,
        g: &mut Group<'_>,
        issuer: &str,
        state: &mut BlacklistState,
        why: &str,
    ) {
        if state.resync_pending && g.now - state.resync_asked_at_ms < RESYNC_PATIENCE_MS {
            tracing::info!(%issuer, reason = %why, "blacklist resync already asked for");
            return;
        }
        let Some(parent) = self.parent.clone() else {
            return;
        };
        tracing::warn!(%issuer, reason = %why, "blacklist: asking the parent for the whole list");
        state.resync_pending = true;
        state.resync_asked_at_ms = g.now;
        self.enqueue(
            g,
            &parent,
            uuid::Uuid::now_v7().to_string(),
            HashMap::new(),
            outbox_entry::Body::BlacklistResync(BlacklistResync {
                issuer: issuer.to_string(),
                have_version: state.version,
                reason: why.to_string(),
            }),
        );
    }

    /// The enterprise's new version, on its way to the issuer with the directive that made
    /// it (the issuer keeps the last one per enterprise, `blacklist lag`).
    fn report_blacklist(&self, g: &mut Group<'_>, directive_id: &str, state: &BlacklistState) {
        let update = TargetStatus {
            node: self.shared.node_id.to_string(),
            // Never moves a target back: a state already passed is ignored, the version kept.
            state: TargetState::Acknowledged as i32,
            at_ms: g.now,
            detail: String::new(),
            overdue_at_ms: 0,
            result: None,
            hits: None,
            blacklist: Some(BlacklistVersion {
                version: state.version,
                sha256: state.sha256.clone(),
            }),
            signed: None,
        };
        self.report(g, directive_id, &update, &HashMap::new());
    }

    /// Parent: a child enterprise asks for the issuer's whole list: it gets the list as this
    /// node passed it on to it (what a province still holds for confirmation, or returned,
    /// is not in it), in parts.
    pub(super) fn answer_resync(
        &mut self,
        g: &mut Group<'_>,
        child: &NodeId,
        ask: BlacklistResync,
    ) -> Result<(), NodeError> {
        let me = self.shared.node_id.to_string();
        let indexed = self.indexed_directives(g, &ask.issuer)?;
        // Only what was passed on to the child: all it was a target of, at the issuer; at a
        // province, not what it holds for confirmation or returned.
        let mut passed = Vec::new();
        for (version, d) in &indexed {
            if !d.targets.iter().any(|t| t == child.as_str()) {
                continue;
            }
            let state = if d.issuer == me {
                TargetState::Queued
            } else {
                self.target(g, &d.id, child.as_str())?
                    .map_or(TargetState::Unspecified, |r| {
                        TargetState::try_from(r.state).unwrap_or(TargetState::Unspecified)
                    })
            };
            if !matches!(
                state,
                TargetState::Received | TargetState::Returned | TargetState::Unspecified
            ) {
                passed.push((*version, d));
            }
        }
        let (version, list) = fold(passed.iter().map(|(v, d)| (v, *d)));
        let sha256 = list.checksum().to_vec();
        let sources: BTreeMap<&str, BlacklistSource> = indexed
            .iter()
            .map(|(version, d)| {
                let source = BlacklistSource {
                    directive_id: d.id.clone(),
                    version: *version,
                    effective_at_ms: d.effective_at_ms,
                    expires_at_ms: d.expires_at_ms,
                };
                (d.id.as_str(), source)
            })
            .collect();
        let entries: Vec<_> = list.entries().collect();
        let count = entries.len().div_ceil(ENTRIES_PER_CHUNK).max(1);
        let answer = uuid::Uuid::now_v7().to_string();
        let mut parts = entries.chunks(ENTRIES_PER_CHUNK).peekable();
        for index in 0..count {
            let part = parts.next().unwrap_or(&[]);
            let mut chunk = BlacklistChunk {
                issuer: ask.issuer.clone(),
                answer: answer.clone(),
                version,
                sha256: sha256.clone(),
                index: u32::try_from(index).unwrap_or(u32::MAX),
                count: u32::try_from(count).unwrap_or(u32::MAX),
                entries: Vec::with_capacity(part.len()),
                sources: Vec::new(),
            };
            let mut source_index: BTreeMap<&str, u32> = BTreeMap::new();
            for ((kind, value), from) in part {
                let mut refs = Vec::with_capacity(from.len());
                for id in from.iter() {
                    let next = u32::try_from(source_index.len()).unwrap_or(u32::MAX);
                    let i = *source_index.entry(id.as_str()).or_insert_with(|| {
                        chunk
                            .sources
                            .push(sources.get(id.as_str()).cloned().unwrap_or_else(|| {
                                BlacklistSource {
                                    directive_id: id.clone(),
                                    ..Default::default()
                                }
                            }));
                        next
                    });
                    refs.push(i);
                }
                chunk.entries.push(BlacklistEntry {
                    kind: *kind,
                    value: value.clone(),
                    sources: refs,
                });
            }
            self.enqueue(
                g,
                child,
                uuid::Uuid::now_v7().to_string(),
                HashMap::new(),
                outbox_entry::Body::BlacklistChunk(chunk),
            );
        }
        tracing::info!(%child, issuer = %ask.issuer, version, rules = list.len(), parts = count, reason = %ask.reason, "blacklist resync answered");
        Ok(())
    }

    /// Enterprise: a part of the whole list arrived; with every part of its answer here,
    /// the issuer's blacklist rules are replaced by it in this group.
    pub(super) fn resync_part_arrived(
        &mut self,
        g: &mut Group<'_>,
        chunk: BlacklistChunk,
    ) -> Result<(), NodeError> {
        let issuer = chunk.issuer.clone();
        let (answer, count) = (chunk.answer.clone(), chunk.count);
        g.txn.put(
            records::resync_chunk(&issuer, &answer, chunk.index),
            encode(&chunk),
        );
        let mut parts = Vec::new();
        for (k, v) in g.txn.scan_prefix(&records::resync_chunks_of(&issuer))? {
            let part: BlacklistChunk = decode(&k, &v)?;
            if part.answer == answer {
                parts.push(part);
            }
        }
        if parts.len() < count as usize {
            return Ok(());
        }
        if parts
            .iter()
            .any(|p| p.version != chunk.version || p.sha256 != chunk.sha256 || p.count != count)
        {
            // Parts of one answer that disagree: nothing of it is taken; asked again later.
            tracing::error!(%issuer, %answer, "blacklist resync parts disagree: not taken");
            for (k, _) in g.txn.scan_prefix(&records::resync_chunks_of(&issuer))? {
                g.txn.delete(k);
            }
            return Ok(());
        }
        for (k, _) in g.txn.scan_prefix(&records::resync_chunks_of(&issuer))? {
            g.txn.delete(k);
        }
        let version = chunk.version;
        // The issuer's blacklist rules through the answer's version are the answer's.
        for (k, v) in g.txn.scan_prefix(records::RULE_SET_PREFIX)? {
            let set: ActiveRules = decode(&k, &v)?;
            if set.issuer == issuer
                && set.blacklist_version != 0
                && set.blacklist_version <= version
            {
                g.txn.delete(k);
            }
        }
        let mut by_source: BTreeMap<String, (BlacklistSource, Vec<Rule>)> = BTreeMap::new();
        for part in &parts {
            for entry in &part.entries {
                for &i in &entry.sources {
                    let Some(source) = part.sources.get(i as usize) else {
                        continue;
                    };
                    by_source
                        .entry(source.directive_id.clone())
                        .or_insert_with(|| (source.clone(), Vec::new()))
                        .1
                        .push(Rule {
                            kind: entry.kind,
                            value: entry.value.clone().into(),
                            op: RuleOp::Add as i32,
                        });
                }
            }
        }
        for (id, (source, rules)) in by_source {
            let header = ActiveRules {
                directive_id: id.clone(),
                issuer: issuer.clone(),
                kind: DirectiveKind::Disposal as i32,
                applied_at_ms: g.now,
                effective_at_ms: source.effective_at_ms,
                expires_at_ms: source.expires_at_ms,
                rules: Vec::new(),
                blacklist_version: source.version.max(1),
            };
            for (i, set) in enterprise::split_into_sets(&header, rules)
                .into_iter()
                .enumerate()
            {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                g.txn.put(records::rule_set(&id, index), encode(&set));
            }
        }
        g.rules_dirty = true;
        let mut state: BlacklistState = g
            .read(&records::blacklist_state(&issuer))?
            .unwrap_or_default();
        state.resync_pending = false;
        let computed = self.stored_blacklist(g, &issuer, version)?.checksum();
        if computed.as_slice() != chunk.sha256.as_slice() {
            // Not what the parent said it sent: nothing is claimed; asked again later.
            tracing::error!(%issuer, version, "blacklist resync does not give its own checksum");
            g.txn.put(records::blacklist_state(&issuer), encode(&state));
            return Ok(());
        }
        state.version = version;
        state.sha256 = chunk.sha256.clone();
        tracing::info!(%issuer, version, "blacklist resynced from the parent");
        if let Some(entry) =
            g.read::<BlacklistIndexEntry>(&records::blacklist_index(&issuer, version))?
        {
            self.report_blacklist(g, &entry.directive_id, &state);
        }
        // Deltas held beyond the answer continue from it.
        self.advance_blacklist(g, &issuer, state, None)
    }

    /// Issuer: an enterprise's version, as it reported it.
    pub(super) fn set_reported_blacklist(
        &self,
        g: &mut Group<'_>,
        node: &str,
        reported: &BlacklistVersion,
    ) -> Result<(), NodeError> {
        let key = records::reported_blacklist(node);
        let kept: Option<BlacklistVersion> = g.read(&key)?;
        if kept.is_none_or(|k| reported.version >= k.version) {
            g.txn.put(key, encode(reported));
        }
        Ok(())
    }

    /// Enterprise: recomputes every list from the stored rules; a list whose rules do not
    /// give its checksum is asked for whole.
    pub(super) fn verify_blacklists(
        &mut self,
        g: &mut Group<'_>,
    ) -> Result<Vec<BlacklistHeld>, NodeError> {
        if self.tier != Tier::Enterprise {
            return Err(NodeError::Forbidden(
                "only an enterprise holds blacklists to verify".into(),
            ));
        }
        let mut out = Vec::new();
        for (k, v) in g.txn.scan_prefix(records::BLACKLIST_STATE_PREFIX)? {
            let issuer =
                String::from_utf8_lossy(&k[records::BLACKLIST_STATE_PREFIX.len()..]).into_owned();
            let mut state: BlacklistState = decode(&k, &v)?;
            let list = self.stored_blacklist(g, &issuer, state.version)?;
            let recomputed = list.checksum().to_vec();
            let intact = state.version == 0 || recomputed == state.sha256;
            let mut held = held_row(&issuer, &state, &list);
            if !intact {
                let why = format!(
                    "verify: the stored rules give {}, version {} has {}",
                    blacklist::short(&recomputed),
                    state.version,
                    blacklist::short(&state.sha256)
                );
                self.ask_resync(g, &issuer, &mut state, &why);
                g.txn.put(k, encode(&state));
                held.detail = why;
                held.resync_pending = state.resync_pending;
            }
            held.recomputed = recomputed;
            held.intact = intact;
            out.push(held);
        }
        Ok(out)
    }
}

/// The issuer's blacklist as stored rule sets give it through `version`: its sets with a
/// blacklist version up to it.
fn list_of_rule_sets<E>(
    entries: impl IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), E>>,
    issuer: &str,
    version: u64,
) -> Result<Blacklist, NodeError>
where
    NodeError: From<E>,
{
    let mut list = Blacklist::new();
    for entry in entries {
        let (k, v) = entry?;
        let set: ActiveRules = decode(&k, &v)?;
        if set.issuer == issuer && set.blacklist_version != 0 && set.blacklist_version <= version {
            for rule in &set.rules {
                list.insert(rule.kind, &rule.value, &set.directive_id);
            }
        }
    }
    Ok(list)
}

/// Directives folded in the order given; the last one's version.
fn fold<'a>(directives: impl IntoIterator<Item = (&'a u64, &'a Directive)>) -> (u64, Blacklist) {
    let mut list = Blacklist::new();
    let mut last = 0;
    for (version, d) in directives {
        list.apply(d);
        last = *version;
    }
    (last, list)
}

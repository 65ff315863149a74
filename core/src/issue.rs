//! Issuing: an operator's request checked, its targets resolved in this node's
//! jurisdiction, and the directive stored and queued toward them.

use super::*;

impl Core {
    /// An operator's directive: validated, resolved to targets, stored with one outbox entry
    /// per next hop, and audited, all in this group's batch.
    pub(super) fn issue(
        &mut self,
        g: &mut Group<'_>,
        req: IssueRequest,
        caller: &Caller,
    ) -> Result<IssueReply, NodeError> {
        let operator = caller.operator.as_str();
        let id = if req.id.is_empty() {
            uuid::Uuid::now_v7()
        } else {
            uuid::Uuid::parse_str(&req.id).map_err(|_| InputError::Id(req.id.clone()))?
        }
        .to_string();
        let kind = match DirectiveKind::try_from(req.kind) {
            Ok(DirectiveKind::Unspecified) | Err(_) => DirectiveKind::Disposal,
            Ok(k) => k,
        };
        let (rules, to, revokes, scope) = if kind == DirectiveKind::Revocation {
            // Only what this node issued can be withdrawn here, by default from every
            // target it went to.
            let revokes = uuid::Uuid::parse_str(&req.revokes)
                .map_err(|_| InputError::Id(req.revokes.clone()))?
                .to_string();
            let original = self
                .stored_directive(g, &revokes)?
                .and_then(|s| s.directive)
                .filter(|d| d.issuer == self.shared.node_id.as_str())
                .ok_or_else(|| InputError::NotRevocable(revokes.clone()))?;
            self.check_revocable(g, &revokes)?;
            // Signed, it names whom the revocation is for: as the original did, unless
            // narrowed.
            let scope = match (req.to.is_empty(), original.scope.is_empty()) {
                (true, false) => original.scope.clone(),
                (true, true) => original.targets.clone(),
                (false, _) => req.to.clone(),
            };
            let to = if req.to.is_empty() {
                original.targets
            } else {
                req.to.clone()
            };
            (Vec::new(), to, revokes, scope)
        } else {
            (
                directive::issue_rules(kind, &req.rules)?,
                req.to.clone(),
                String::new(),
                scope_of(&req.to),
            )
        };
        if req.expires_at_ms != 0 && req.expires_at_ms <= req.effective_at_ms.max(g.now) {
            return Err(InputError::Expiry.into());
        }
        let query = match (kind, &req.query) {
            (DirectiveKind::AccessLogQuery, Some(q)) => {
                Some(isms_domain::access_log::validate_query(q)?)
            }
            (DirectiveKind::AccessLogQuery, None) => {
                return Err(InputError::Query("no query given".into()).into());
            }
            _ => None,
        };
        let correction = match (kind, &req.correction) {
            (DirectiveKind::DataCorrection, Some(c)) => {
                Some(isms_domain::access_log::validate_correction(c)?)
            }
            (DirectiveKind::DataCorrection, None) => {
                return Err(InputError::Correction("nothing named to correct".into()).into());
            }
            _ => None,
        };
        let blacklist = self.blacklist_request(g, &req, kind, &to)?;
        let selections = directive::parse_targets(&to)?;
        let (mut targets, foreign) = self.resolve_issue_targets(selections)?;
        targets.extend(foreign.iter().cloned());
        let urgency = match Urgency::try_from(req.urgency) {
            Ok(Urgency::Unspecified) | Err(_) => Urgency::General,
            Ok(u) => u,
        };
        let d = Directive {
            id: id.clone(),
            issuer: self.shared.node_id.to_string(),
            operator: operator.to_string(),
            kind: kind as i32,
            urgency: urgency as i32,
            targets: targets.iter().map(ToString::to_string).collect(),
            rules,
            issued_at_ms: g.now,
            revokes,
            effective_at_ms: req.effective_at_ms.max(0),
            expires_at_ms: req.expires_at_ms.max(0),
            query,
            correction,
            // Its numbers are given when it leaves this node (`dispatch`).
            blacklist: blacklist.then(Default::default),
            scope,
            // Signed when it leaves this node (`dispatch`).
            signature: None,
            countersignature: None,
        };
        if let Some(existing) = self.stored_directive(g, &id)?.and_then(|s| s.directive) {
            // The same ID issued again: a retried call (its answer lost) gets the directive
            // it made, and nothing new is stored; other content under that ID is refused.
            if !same_order(&existing, &d) {
                return Err(NodeError::AlreadyExists(format!(
                    "directive {id} was issued with other content"
                )));
            }
            return Ok(IssueReply {
                id,
                targets: u32::try_from(existing.targets.len()).unwrap_or(u32::MAX),
            });
        }
        let span = tracing::info_span!("directive.issue", directive = %id, node = %self.shared.node_id, operator = %operator);
        let _entered = span.enter();
        let trace = trace::inject(&span);
        let major = self.major_because(g, &d, &to)?;
        // Given its blacklist version and signed before it is stored, so that it is stored
        // once, unless it waits for approval (then when approved).
        let d = if major.is_empty() {
            self.seal(g, &d)?.into_owned()
        } else {
            d
        };
        store_directive(g, &d, None, &trace);
        if major.is_empty() {
            self.dispatch(g, &d, trace)?;
        } else {
            self.hold_for_approval(g, &d, operator, major.clone());
        }
        let rule_kinds: BTreeSet<&str> = d
            .rules
            .iter()
            .map(|r| directive::rule_kind_name(r.kind))
            .collect();
        let outcome = if kind == DirectiveKind::Revocation {
            format!("revokes {}, {} targets", d.revokes, d.targets.len())
        } else {
            format!(
                "{} {} rules ({}), {} targets, to {}",
                directive::kind_name(d.kind),
                d.rules.len(),
                rule_kinds.into_iter().collect::<Vec<_>>().join(","),
                d.targets.len(),
                to.join(",")
            )
        };
        let outcome = if major.is_empty() {
            outcome
        } else {
            format!(
                "{outcome}; awaiting approval: major as {}",
                major.join(", ")
            )
        };
        let action = match kind {
            DirectiveKind::Revocation => "directive.revoke",
            _ => "directive.issue",
        };
        audit(g, caller, action, &id, &outcome);
        tracing::info!(directive = %id, targets = d.targets.len(), rules = d.rules.len(), "directive issued");
        Ok(IssueReply {
            id,
            targets: u32::try_from(d.targets.len()).unwrap_or(u32::MAX),
        })
    }

    /// Sends a directive stored here on its way: one outbox entry per next hop, and the
    /// targets' first states. At issue, or once approved (four-eyes, O-6). Its targets are
    /// the enterprises this node reaches itself, and at a province those of other provinces,
    /// asked for through the ministry.
    pub(super) fn dispatch(
        &mut self,
        g: &mut Group<'_>,
        d: &Directive,
        trace: HashMap<String, String>,
    ) -> Result<(), NodeError> {
        let sealed = self.seal(g, d)?;
        let d = sealed.as_ref();
        let id = d.id.as_str();
        let mut routes: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
        let mut foreign = Vec::new();
        for target in &d.targets {
            let node: NodeId = target
                .parse()
                .map_err(|_| InputError::Target(target.clone()))?;
            match self.shared.directory.get(&node) {
                Some(route) => routes
                    .entry(route.clone())
                    .or_default()
                    .push(target.clone()),
                None => foreign.push(target.clone()),
            }
        }
        if !foreign.is_empty() {
            // Enterprises of other provinces: a request for assistance, through the
            // ministry. A province reaches them no other way.
            let parent = self
                .parent
                .clone()
                .ok_or_else(|| NodeError::Forbidden("no parent to ask for assistance".into()))?;
            self.queue_targets(g, id, foreign.clone())?;
            self.enqueue_directive(g, &parent, d, foreign, trace.clone())?;
        }
        let queued = routes.values().flatten().cloned().collect();
        self.queue_targets(g, id, queued)?;
        for (route, route_targets) in routes {
            if route.tier() == Tier::Province {
                self.set_target(g, id, route.as_str(), TargetState::Queued, "")?;
            }
            self.enqueue_directive(g, &route, d, route_targets, trace.clone())?;
        }
        Ok(())
    }

    /// Resolves `--to` for an issue here: the enterprises this node reaches itself, and, at a
    /// province, the enterprises of other provinces to ask the ministry's help for.
    pub(super) fn resolve_issue_targets(
        &self,
        selections: Vec<directive::TargetSelection>,
    ) -> Result<(BTreeSet<NodeId>, BTreeSet<NodeId>), NodeError> {
        use directive::TargetSelection;
        if self.tier != Tier::Province {
            let own = directive::resolve_targets(&selections, &self.shared.directory)?;
            return Ok((own, BTreeSet::new()));
        }
        let mut own = Vec::new();
        let mut foreign = BTreeSet::new();
        for sel in selections {
            match sel {
                TargetSelection::All => own.push(TargetSelection::All),
                TargetSelection::Province(p) if p == self.shared.node_id => {
                    own.push(TargetSelection::All);
                }
                TargetSelection::Province(p) => {
                    return Err(InputError::OtherProvince(p.to_string()).into());
                }
                TargetSelection::Enterprise(e) if self.shared.directory.contains_key(&e) => {
                    own.push(TargetSelection::Enterprise(e));
                }
                TargetSelection::Enterprise(e) => {
                    foreign.insert(e);
                }
            }
        }
        let own = if own.is_empty() {
            BTreeSet::new()
        } else {
            directive::resolve_targets(&own, &self.shared.directory)?
        };
        Ok((own, foreign))
    }
}

impl Core {
    /// Whether an issue is a blacklist change, checked: `--blacklist` on a disposal
    /// to all of this node's jurisdiction; a revocation of a blacklist directive is one by
    /// itself, and withdraws it from every enterprise.
    fn blacklist_request(
        &self,
        g: &Group<'_>,
        req: &IssueRequest,
        kind: DirectiveKind,
        to: &[String],
    ) -> Result<bool, NodeError> {
        if kind == DirectiveKind::Revocation {
            let original = self
                .stored_directive(g, &req.revokes)?
                .and_then(|s| s.directive);
            let listed = original.is_some_and(|d| d.blacklist.is_some());
            if listed && !req.to.is_empty() {
                return Err(InputError::Blacklist(
                    "a blacklist directive is revoked from every enterprise at once (no --to)"
                        .into(),
                )
                .into());
            }
            if req.blacklist && !listed {
                return Err(InputError::Blacklist(format!(
                    "directive {} is not on the blacklist",
                    req.revokes
                ))
                .into());
            }
            return Ok(listed);
        }
        if !req.blacklist {
            return Ok(false);
        }
        if kind != DirectiveKind::Disposal {
            return Err(InputError::Blacklist(format!(
                "only a disposal changes the blacklist, not a {}",
                directive::kind_name(kind as i32)
            ))
            .into());
        }
        if to != ["all"] {
            return Err(InputError::Blacklist(format!(
                "a blacklist change goes to every enterprise of {} (--to all), not {}",
                self.shared.node_id,
                to.join(",")
            ))
            .into());
        }
        Ok(true)
    }
}

/// `--to` as the directive's signed scope: each selection trimmed.
fn scope_of(to: &[String]) -> Vec<String> {
    to.iter().map(|s| s.trim().to_string()).collect()
}

/// Whether `again` orders what `stored` did: everything but when it was issued (a retry
/// comes later), by which of this node's operators, and the blacklist version it made.
fn same_order(stored: &Directive, again: &Directive) -> bool {
    let when = |d: &Directive| Directive {
        issued_at_ms: 0,
        operator: String::new(),
        blacklist: d.blacklist.as_ref().map(|_| Default::default()),
        signature: None,
        countersignature: None,
        ..d.clone()
    };
    when(stored) == when(again)
}

//! The node's operator API: only operators of this node (certificate `<node>/operator/<name>`)
//! may call it, each call only with the role the permission table (`authz`) gives it, and
//! every call, refused, failed or done, is recorded in the audit trail (who, the RPC,
//! a digest of its arguments, its outcome, the caller's address) before it is answered
//! . Issuing and decisions go through the core, which records them; views are
//! read from the store, and recorded through the core. The web console calls the same
//! methods in-process (`console_access::ConsoleIdentity`).
//!
//! One thing, and long for it: the `Operator` trait's implementation, a short method per
//! RPC; what a method computes lives in `views`, `network`, `operation_report`.

use std::sync::Arc;

use isms_proto::v1::operator_server::Operator;
use isms_proto::v1::{
    AnnounceUpgradeRequest, Contact, ContactList, DecideFaultRequest, FaultList, FaultState,
    ListContactsRequest, ListFaultsRequest, ListUpgradesRequest, ReportFaultReply,
    ReportFaultRequest, SetContactRequest, UpgradeList,
};
use isms_proto::v1::{
    AuditExportedReply, AuditExportedRequest, AuditHeadList, AuditList, AuditVerdict,
    BlacklistLagReply, BlacklistLagRequest, BlacklistList, DecisionReply, DecisionRequest,
    DirectiveList, DirectiveSummary, DirectiveView, GetBlacklistRequest, GetDirectiveRequest,
    IssueReply, IssueRequest, ListAuditHeadsRequest, ListAuditRequest, ListDirectivesRequest,
    ListPendingRequest, NetworkNodeReply, NetworkNodeRequest, NetworkStatusReply,
    NetworkStatusRequest, NodeStatusReply, NodeStatusRequest, PendingList, VerifyAuditRequest,
};
use isms_proto::v1::{DataStatusList, ListDataRequest, SubmitDataReply, SubmitDataRequest};
use isms_proto::v1::{
    OpenConsoleReply, OpenConsoleRequest, OperationReportReply, OperationReportRequest,
};
use tonic::{Request, Response, Status};

use isms_core::{Caller, CoreHandle, Decision, ReportAction, Shared, verify_chain};
use isms_domain::audit_chain;
use isms_domain::identity::{Identity, Tier};
use isms_transport::tls;
use prost::Message;

use crate::authz::RosterHandle;
use crate::console_access::{ConsoleIdentity, ConsoleTokens};
use crate::views::{
    audit_heads, audit_list, directive_summary, directive_view, list_directives, node_status,
    pending, with_result_signatures,
};

#[derive(Debug, Clone)]
pub struct OperatorService {
    shared: Arc<Shared>,
    core: CoreHandle,
    trust_domain: String,
    roster: RosterHandle,
    /// What enterprises' signed results are checked against; none: not checked.
    trust: Option<isms_core::TrustHandle>,
    /// The network below this node as its heartbeats say (O-1).
    heartbeats: Arc<isms_network::Heartbeats>,
    /// The web console's sign-in tokens and its address; none: no console is served.
    console: Option<(ConsoleTokens, String)>,
}

impl OperatorService {
    pub fn new(
        shared: Arc<Shared>,
        core: CoreHandle,
        trust_domain: String,
        roster: RosterHandle,
        trust: Option<isms_core::TrustHandle>,
        heartbeats: Arc<isms_network::Heartbeats>,
    ) -> Self {
        OperatorService {
            shared,
            core,
            trust_domain,
            roster,
            trust,
            heartbeats,
            console: None,
        }
    }

    /// Serves console links to `base_url` (`http://host:port`), redeemed from `tokens`.
    pub fn with_console(mut self, tokens: ConsoleTokens, base_url: String) -> Self {
        self.console = Some((tokens, base_url));
        self
    }

    /// Whether `operator` may make the call `method` (the console shows only what may be
    /// done; the call itself is checked again).
    pub fn may(&self, operator: &str, method: &str) -> bool {
        self.roster.current().authorize(operator, method).is_ok()
    }

    pub fn node_id(&self) -> &isms_domain::identity::NodeId {
        &self.shared.node_id
    }

    /// Records, durably, a console session starting (`console.signin`), ending
    /// (`console.signout`) or a link refused (`refused`): the link itself was issued by an
    /// audited `OpenConsole`, the session's calls are audited one by one.
    pub async fn audit_console(
        &self,
        operator: &str,
        browser: &str,
        action: &str,
        outcome: &str,
    ) -> Result<(), Status> {
        let caller = Caller {
            operator: operator.to_string(),
            peer: format!("console {browser}"),
            args_digest: Vec::new(),
        };
        self.core
            .audit(caller, action.into(), "console".into(), outcome.into())
            .await
            .map_err(Status::from)
    }

    /// A directive as it stands now, unaudited: for a live view whose opening
    /// `GetDirective` was authorized and audited (the console's progress stream).
    pub fn directive_now(&self, id: &str) -> Result<DirectiveView, Status> {
        directive_view(&self.shared, id).map_err(Status::from)
    }

    /// An authority's decision on a fault reported below it; the core audits it.
    async fn decide_fault(
        &self,
        request: Request<DecideFaultRequest>,
        method: &'static str,
        state: FaultState,
    ) -> Result<Response<ReportFaultReply>, Status> {
        let caller = self.authorize(&request, method).await?;
        let r = request.into_inner();
        let action = ReportAction::DecideFault {
            id: r.id,
            state,
            note: r.note,
        };
        Ok(Response::new(self.core.report(action, caller).await?))
    }

    /// An operator's decision on a directive at this node; `decision` gets the reason. The
    /// core records it in the audit trail, done or refused, with the caller.
    async fn decide(
        &self,
        request: Request<DecisionRequest>,
        method: &'static str,
        decision: fn(String) -> Decision,
    ) -> Result<Response<DecisionReply>, Status> {
        let caller = self.authorize(&request, method).await?;
        let r = request.into_inner();
        let reply = self.core.decide(r.id, caller, decision(r.reason)).await?;
        Ok(Response::new(reply))
    }

    /// The caller, if they are an operator of this node and hold the role `method` needs.
    /// A refusal is audited (durably) before it is answered; nothing else happens.
    async fn authorize<T: Message>(
        &self,
        request: &Request<T>,
        method: &str,
    ) -> Result<Caller, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown address".to_string(), |a| a.to_string());
        let args_digest = audit_chain::hash(&request.get_ref().encode_to_vec()).to_vec();
        // The console, in this process, vouches for its session's operator.
        let (identity, peer) = match request.extensions().get::<ConsoleIdentity>() {
            Some(c) => (
                Some(Identity::Operator {
                    node: self.shared.node_id.clone(),
                    name: c.operator.clone(),
                }),
                format!("console {}", c.peer),
            ),
            None => (tls::peer_identity(request, &self.trust_domain), peer),
        };
        let refusal = match identity {
            Some(Identity::Operator { node, name }) if node == self.shared.node_id => {
                match self.roster.current().authorize(&name, method) {
                    Ok(_) => {
                        return Ok(Caller {
                            operator: name,
                            peer,
                            args_digest,
                        });
                    }
                    Err(why) => (name, why),
                }
            }
            other => {
                let who = other.map_or_else(|| "no identity".into(), |i| i.to_string());
                let why = format!("{who} is not an operator of {}", self.shared.node_id);
                (who, why)
            }
        };
        let (who, why) = refusal;
        tracing::warn!(identity = %who, method, reason = %why, "refused operator call");
        let caller = Caller {
            operator: who,
            peer,
            args_digest,
        };
        self.core
            .audit(caller, "refused".into(), method.to_string(), why.clone())
            .await?;
        Err(Status::permission_denied(why))
    }

    /// Records a call the core did not perform itself (a read, or one refused before it
    /// reached the core) with its outcome, durably, and only then gives the answer.
    async fn answer<R>(
        &self,
        caller: Caller,
        method: &str,
        subject: &str,
        result: Result<R, Status>,
        describe: impl FnOnce(&R) -> String,
    ) -> Result<Response<R>, Status> {
        let outcome = match &result {
            Ok(r) => describe(r),
            Err(s) => format!("error: {:?}: {}", s.code(), s.message()),
        };
        self.core
            .audit(caller, method.to_string(), subject.to_string(), outcome)
            .await?;
        result.map(Response::new)
    }
}

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn issue_directive(
        &self,
        request: Request<IssueRequest>,
    ) -> Result<Response<IssueReply>, Status> {
        let caller = self.authorize(&request, "IssueDirective").await?;
        if self.shared.node_id.tier() == Tier::Enterprise {
            let refused = Err(Status::permission_denied(
                "an enterprise does not issue directives",
            ));
            let id = request.get_ref().id.clone();
            return self
                .answer(caller, "directive.issue", &id, refused, |_| String::new())
                .await;
        }
        let reply = self.core.issue(request.into_inner(), caller).await?;
        Ok(Response::new(reply))
    }

    async fn get_directive(
        &self,
        request: Request<GetDirectiveRequest>,
    ) -> Result<Response<DirectiveView>, Status> {
        let caller = self.authorize(&request, "GetDirective").await?;
        let id = request.into_inner().id;
        let trust = self
            .trust
            .as_ref()
            .and_then(|t| t.read().ok().map(|t| Arc::clone(&t)));
        let view = directive_view(&self.shared, &id).and_then(|mut v| {
            if let Some(trust) = trust {
                with_result_signatures(&self.shared, &mut v, &trust)?;
            }
            Ok(v)
        });
        let view = view.map_err(Status::from);
        self.answer(caller, "GetDirective", &id, view, |v| {
            format!("ok: {} targets", v.targets.len())
        })
        .await
    }

    async fn get_directive_summary(
        &self,
        request: Request<GetDirectiveRequest>,
    ) -> Result<Response<DirectiveSummary>, Status> {
        let caller = self.authorize(&request, "GetDirectiveSummary").await?;
        let id = request.into_inner().id;
        let summary = directive_summary(&self.shared, &id).map_err(Status::from);
        self.answer(caller, "GetDirectiveSummary", &id, summary, |s| {
            format!("ok: {} of {} targets final", s.finished, s.targets)
        })
        .await
    }

    async fn list_directives(
        &self,
        request: Request<ListDirectivesRequest>,
    ) -> Result<Response<DirectiveList>, Status> {
        let caller = self.authorize(&request, "ListDirectives").await?;
        let request = request.into_inner();
        let list = list_directives(&self.shared, &request);
        let subject = format!("state={} kind={}", request.state, request.kind);
        self.answer(caller, "ListDirectives", &subject, list, |l| {
            format!("ok: {} directives", l.directives.len())
        })
        .await
    }

    async fn node_status(
        &self,
        request: Request<NodeStatusRequest>,
    ) -> Result<Response<NodeStatusReply>, Status> {
        let caller = self.authorize(&request, "NodeStatus").await?;
        let status = node_status(&self.shared).map_err(Status::from);
        self.answer(caller, "NodeStatus", "", status, |_| "ok".into())
            .await
    }

    async fn confirm_directive(
        &self,
        request: Request<DecisionRequest>,
    ) -> Result<Response<DecisionReply>, Status> {
        self.decide(request, "ConfirmDirective", |_| Decision::Confirm)
            .await
    }

    async fn return_directive(
        &self,
        request: Request<DecisionRequest>,
    ) -> Result<Response<DecisionReply>, Status> {
        self.decide(request, "ReturnDirective", Decision::Return)
            .await
    }

    async fn list_pending(
        &self,
        request: Request<ListPendingRequest>,
    ) -> Result<Response<PendingList>, Status> {
        let caller = self.authorize(&request, "ListPending").await?;
        let list = pending(&self.shared).map_err(Status::from);
        self.answer(caller, "ListPending", "", list, |l| {
            format!("ok: {} waiting", l.directives.len())
        })
        .await
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<AuditList>, Status> {
        let caller = self.authorize(&request, "ListAudit").await?;
        let request = request.into_inner();
        let list = audit_list(&self.shared, &request).map_err(Status::from);
        let subject = format!(
            "operator={} action={} from_seq={}",
            request.operator, request.action, request.from_seq
        );
        self.answer(caller, "ListAudit", &subject, list, |l| {
            format!("ok: {} records", l.entries.len())
        })
        .await
    }

    async fn verify_audit(
        &self,
        request: Request<VerifyAuditRequest>,
    ) -> Result<Response<AuditVerdict>, Status> {
        let caller = self.authorize(&request, "VerifyAudit").await?;
        let verdict = match verify_chain(&self.shared.store, self.shared.node_id.as_str()) {
            Ok(records) => AuditVerdict {
                intact: true,
                records,
                first_bad: 0,
                why: String::new(),
            },
            Err(b) => AuditVerdict {
                intact: false,
                records: b.seq.saturating_sub(1),
                first_bad: b.seq,
                why: b.why,
            },
        };
        self.answer(caller, "VerifyAudit", "", Ok(verdict), |v| {
            if v.intact {
                format!("intact: {} records", v.records)
            } else {
                format!("broken at record {}: {}", v.first_bad, v.why)
            }
        })
        .await
    }

    async fn report_corrected(
        &self,
        request: Request<DecisionRequest>,
    ) -> Result<Response<DecisionReply>, Status> {
        self.decide(request, "ReportCorrected", Decision::Corrected)
            .await
    }

    async fn approve_directive(
        &self,
        request: Request<DecisionRequest>,
    ) -> Result<Response<DecisionReply>, Status> {
        self.decide(request, "ApproveDirective", |_| Decision::Approve)
            .await
    }

    async fn list_audit_heads(
        &self,
        request: Request<ListAuditHeadsRequest>,
    ) -> Result<Response<AuditHeadList>, Status> {
        let caller = self.authorize(&request, "ListAuditHeads").await?;
        let node = request.into_inner().node;
        let heads = audit_heads(&self.shared, &node).map_err(Status::from);
        self.answer(caller, "ListAuditHeads", &node, heads, |l| {
            format!("ok: {} heads", l.heads.len())
        })
        .await
    }

    async fn audit_exported(
        &self,
        request: Request<AuditExportedRequest>,
    ) -> Result<Response<AuditExportedReply>, Status> {
        let caller = self.authorize(&request, "AuditExported").await?;
        let r = request.into_inner();
        let (exported_through, pruned_through) = self
            .core
            .audit_exported(caller, r.through_seq, r.hash)
            .await?;
        Ok(Response::new(AuditExportedReply {
            exported_through,
            pruned_through,
        }))
    }

    async fn get_blacklist(
        &self,
        request: Request<GetBlacklistRequest>,
    ) -> Result<Response<BlacklistList>, Status> {
        let caller = self.authorize(&request, "GetBlacklist").await?;
        let lists = if self.shared.node_id.tier() == Tier::Enterprise {
            isms_core::stored_blacklists(&self.shared.store)
                .map(|blacklists| BlacklistList { blacklists })
                .map_err(Status::from)
        } else {
            Err(Status::failed_precondition(
                "only an enterprise holds blacklists; an issuer shows its own with `blacklist lag`",
            ))
        };
        self.answer(caller, "GetBlacklist", "", lists, |l| {
            format!("ok: {} lists", l.blacklists.len())
        })
        .await
    }

    async fn verify_blacklist(
        &self,
        request: Request<GetBlacklistRequest>,
    ) -> Result<Response<BlacklistList>, Status> {
        let caller = self.authorize(&request, "VerifyBlacklist").await?;
        // The core records the outcome in the audit trail with the resync it asked for.
        let blacklists = self.core.verify_blacklist(caller).await?;
        Ok(Response::new(BlacklistList { blacklists }))
    }

    async fn blacklist_lag(
        &self,
        request: Request<BlacklistLagRequest>,
    ) -> Result<Response<BlacklistLagReply>, Status> {
        let caller = self.authorize(&request, "BlacklistLag").await?;
        let all = request.into_inner().all;
        let lag = if self.shared.node_id.tier() == Tier::Enterprise {
            Err(Status::failed_precondition(
                "an enterprise issues no blacklist; `blacklist show` lists those it holds",
            ))
        } else {
            let enterprises = self
                .shared
                .directory
                .keys()
                .filter(|n| n.tier() == Tier::Enterprise)
                .map(ToString::to_string);
            isms_core::blacklist_lag(
                &self.shared.store,
                self.shared.node_id.as_str(),
                enterprises,
                all,
            )
            .map_err(Status::from)
        };
        self.answer(caller, "BlacklistLag", "", lag, |l| {
            format!(
                "ok: version {}, {} of {} lag",
                l.version, l.lagging, l.enterprises
            )
        })
        .await
    }

    async fn reject_directive(
        &self,
        request: Request<DecisionRequest>,
    ) -> Result<Response<DecisionReply>, Status> {
        self.decide(request, "RejectDirective", Decision::Reject)
            .await
    }

    async fn network_status(
        &self,
        request: Request<NetworkStatusRequest>,
    ) -> Result<Response<NetworkStatusReply>, Status> {
        let caller = self.authorize(&request, "NetworkStatus").await?;
        let r = request.into_inner();
        let subject = format!("{} {}", r.state, r.province).trim().to_string();
        let reply = crate::network::network_status(&self.shared, &self.heartbeats, &r)
            .map_err(Status::from);
        self.answer(caller, "NetworkStatus", &subject, reply, |r| {
            format!("ok: {} nodes", r.nodes.len())
        })
        .await
    }

    async fn network_node(
        &self,
        request: Request<NetworkNodeRequest>,
    ) -> Result<Response<NetworkNodeReply>, Status> {
        let caller = self.authorize(&request, "NetworkNode").await?;
        let r = request.into_inner();
        let reply =
            crate::network::network_node(&self.shared, &self.heartbeats, &r).map_err(Status::from);
        self.answer(caller, "NetworkNode", &r.node, reply, |_| "ok".into())
            .await
    }

    async fn report_fault(
        &self,
        request: Request<ReportFaultRequest>,
    ) -> Result<Response<ReportFaultReply>, Status> {
        let caller = self.authorize(&request, "ReportFault").await?;
        let r = request.into_inner();
        let action = ReportAction::Fault {
            severity: r.severity,
            summary: r.summary,
            detail: r.detail,
            automatic: None,
        };
        Ok(Response::new(self.core.report(action, caller).await?))
    }

    async fn acknowledge_fault(
        &self,
        request: Request<DecideFaultRequest>,
    ) -> Result<Response<ReportFaultReply>, Status> {
        self.decide_fault(request, "AcknowledgeFault", FaultState::Acknowledged)
            .await
    }

    async fn resolve_fault(
        &self,
        request: Request<DecideFaultRequest>,
    ) -> Result<Response<ReportFaultReply>, Status> {
        self.decide_fault(request, "ResolveFault", FaultState::Resolved)
            .await
    }

    async fn list_faults(
        &self,
        request: Request<ListFaultsRequest>,
    ) -> Result<Response<FaultList>, Status> {
        let caller = self.authorize(&request, "ListFaults").await?;
        let open_only = request.into_inner().open_only;
        let faults = isms_core::stored_faults(&self.shared.store, open_only)
            .map(|faults| FaultList { faults })
            .map_err(Status::from);
        self.answer(caller, "ListFaults", "", faults, |l| {
            format!("ok: {} faults", l.faults.len())
        })
        .await
    }

    async fn announce_upgrade(
        &self,
        request: Request<AnnounceUpgradeRequest>,
    ) -> Result<Response<ReportFaultReply>, Status> {
        let caller = self.authorize(&request, "AnnounceUpgrade").await?;
        let r = request.into_inner();
        let parsed = crate::network::upgrade_window(&r.at, &r.duration);
        let (at_ms, duration_ms) = match parsed {
            Ok(w) => w,
            Err(e) => {
                let refused = Err(Status::from(e));
                return self
                    .answer(caller, "upgrade.announce", "", refused, |_| String::new())
                    .await;
            }
        };
        let action = ReportAction::Upgrade {
            at_ms,
            duration_ms,
            summary: r.summary,
        };
        Ok(Response::new(self.core.report(action, caller).await?))
    }

    async fn list_upgrades(
        &self,
        request: Request<ListUpgradesRequest>,
    ) -> Result<Response<UpgradeList>, Status> {
        let caller = self.authorize(&request, "ListUpgrades").await?;
        let notices = isms_core::stored_upgrades(&self.shared.store)
            .map(|notices| UpgradeList { notices })
            .map_err(Status::from);
        self.answer(caller, "ListUpgrades", "", notices, |l| {
            format!("ok: {} notices", l.notices.len())
        })
        .await
    }

    async fn set_contact(
        &self,
        request: Request<SetContactRequest>,
    ) -> Result<Response<ReportFaultReply>, Status> {
        let caller = self.authorize(&request, "SetContact").await?;
        let r = request.into_inner();
        let contact = Contact {
            department: r.department.trim().to_string(),
            name: r.name.trim().to_string(),
            phone: r.phone.trim().to_string(),
            email: r.email.trim().to_string(),
            changed_on: r.changed_on.trim().to_string(),
            ..Default::default()
        };
        let action = ReportAction::Contact(contact);
        Ok(Response::new(self.core.report(action, caller).await?))
    }

    async fn list_contacts(
        &self,
        request: Request<ListContactsRequest>,
    ) -> Result<Response<ContactList>, Status> {
        let caller = self.authorize(&request, "ListContacts").await?;
        let contacts = isms_core::stored_contacts(&self.shared.store)
            .map(|contacts| ContactList { contacts })
            .map_err(Status::from);
        self.answer(caller, "ListContacts", "", contacts, |l| {
            format!("ok: {} contacts", l.contacts.len())
        })
        .await
    }

    async fn submit_data(
        &self,
        request: Request<SubmitDataRequest>,
    ) -> Result<Response<SubmitDataReply>, Status> {
        let caller = self.authorize(&request, "SubmitData").await?;
        let report = request.into_inner().report.unwrap_or_default();
        let action = ReportAction::Data(Box::new(report));
        let reply = self.core.report(action, caller).await?;
        let version = reply.id.parse().unwrap_or_default();
        Ok(Response::new(SubmitDataReply { version }))
    }

    async fn list_data(
        &self,
        request: Request<ListDataRequest>,
    ) -> Result<Response<DataStatusList>, Status> {
        let caller = self.authorize(&request, "ListData").await?;
        let only = request.into_inner().anomalies_only;
        let list = isms_core::stored_data(&self.shared.store, only)
            .map(|enterprises| DataStatusList { enterprises })
            .map_err(Status::from);
        self.answer(caller, "ListData", "", list, |l| {
            format!("ok: {} enterprises", l.enterprises.len())
        })
        .await
    }

    async fn operation_report(
        &self,
        request: Request<OperationReportRequest>,
    ) -> Result<Response<OperationReportReply>, Status> {
        let caller = self.authorize(&request, "OperationReport").await?;
        let r = request.into_inner();
        let subject = format!("{} {}", r.kind, r.period);
        let (shared, beats) = (self.shared.clone(), self.heartbeats.clone());
        // A year of directives is read whole: off the runtime's threads.
        let report = tokio::task::spawn_blocking(move || {
            crate::operation_report::operation_report(&shared, &beats, &r)
        })
        .await
        .map_err(|e| Status::internal(format!("the report's task failed: {e}")))?
        .map_err(Status::from)
        .and_then(|report| {
            serde_json::to_vec(&report)
                .map(|report_json| OperationReportReply { report_json })
                .map_err(|e| Status::internal(format!("cannot encode the report: {e}")))
        });
        self.answer(caller, "OperationReport", &subject, report, |r| {
            format!("ok: {} bytes", r.report_json.len())
        })
        .await
    }

    async fn open_console(
        &self,
        request: Request<OpenConsoleRequest>,
    ) -> Result<Response<OpenConsoleReply>, Status> {
        let caller = self.authorize(&request, "OpenConsole").await?;
        let reply = match &self.console {
            Some((tokens, base)) => Ok(OpenConsoleReply {
                url: format!("{base}/signin?token={}", tokens.issue(&caller.operator)),
                expires_at_ms: self.shared.now_ms().saturating_add(
                    i64::try_from(tokens.lifetime().as_millis()).unwrap_or(i64::MAX),
                ),
            }),
            None => Err(Status::failed_precondition(
                "this node serves no console: set `[console] listen` in its config",
            )),
        };
        let subject = caller.operator.clone();
        self.answer(caller, "OpenConsole", &subject, reply, |_| {
            "ok: link issued".into()
        })
        .await
    }
}

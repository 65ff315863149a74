//! The node's operator API: only operators of this node (certificate `<node>/operator/<name>`)
//! may call it, each call only with the role the permission table (`authz`) gives it, and
//! a refused call is recorded in the audit trail before it is answered. Issuing goes
//! through the core; views are read from the store.

use std::sync::Arc;

use isms_proto::record::StoredDirective;
use isms_proto::v1::operator_server::Operator;
use isms_proto::v1::{
    AuditList, AuditVerdict, DecisionReply, DecisionRequest, DirectiveList, DirectiveSummary,
    DirectiveView, GetDirectiveRequest, IssueReply, IssueRequest, ListAuditRequest,
    ListDirectivesRequest, ListPendingRequest, NodeStatusReply, NodeStatusRequest, PendingList,
    TargetState, VerifyAuditRequest,
};
use tonic::{Request, Response, Status};

use isms_core::error::NodeError;
use isms_core::{CoreHandle, Decision, Shared, verify_chain};
use isms_domain::directive::state_name;
use isms_domain::identity::{Identity, Tier};
use isms_domain::records::{self, decode};
use isms_transport::tls;

use crate::authz::RosterHandle;
use crate::views::{Tally, audit_list, directive_summary, directive_view, node_status, pending};

#[derive(Debug, Clone)]
pub struct OperatorService {
    shared: Arc<Shared>,
    core: CoreHandle,
    trust_domain: String,
    roster: RosterHandle,
}

impl OperatorService {
    pub fn new(
        shared: Arc<Shared>,
        core: CoreHandle,
        trust_domain: String,
        roster: RosterHandle,
    ) -> Self {
        OperatorService {
            shared,
            core,
            trust_domain,
            roster,
        }
    }

    /// An operator's decision on a directive waiting here; `decision` gets the reason.
    async fn decide(
        &self,
        request: Request<DecisionRequest>,
        method: &'static str,
        decision: fn(String) -> Decision,
    ) -> Result<Response<DecisionReply>, Status> {
        let operator = self.authorize(&request, method).await?;
        let r = request.into_inner();
        let reply = self.core.decide(r.id, operator, decision(r.reason)).await?;
        Ok(Response::new(reply))
    }

    /// The calling operator's name, if they are an operator of this node and hold the role
    /// `method` needs. A refusal is audited (durably) before it is answered; nothing else
    /// happens.
    async fn authorize<T>(&self, request: &Request<T>, method: &str) -> Result<String, Status> {
        let refusal = match tls::peer_identity(request, &self.trust_domain) {
            Some(Identity::Operator { node, name }) if node == self.shared.node_id => {
                match self.roster.current().authorize(&name, method) {
                    Ok(_) => return Ok(name),
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
        let remote = request
            .remote_addr()
            .map_or_else(|| "unknown address".to_string(), |a| a.to_string());
        self.core
            .audit(
                who,
                "refused".into(),
                method.to_string(),
                format!("{why} (from {remote})"),
            )
            .await?;
        Err(Status::permission_denied(why))
    }
}

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn issue_directive(
        &self,
        request: Request<IssueRequest>,
    ) -> Result<Response<IssueReply>, Status> {
        let operator = self.authorize(&request, "IssueDirective").await?;
        if self.shared.node_id.tier() == Tier::Enterprise {
            return Err(Status::permission_denied(
                "an enterprise does not issue directives",
            ));
        }
        let reply = self.core.issue(request.into_inner(), operator).await?;
        Ok(Response::new(reply))
    }

    async fn get_directive(
        &self,
        request: Request<GetDirectiveRequest>,
    ) -> Result<Response<DirectiveView>, Status> {
        self.authorize(&request, "GetDirective").await?;
        let id = request.into_inner().id;
        Ok(Response::new(directive_view(&self.shared, &id)?))
    }

    async fn get_directive_summary(
        &self,
        request: Request<GetDirectiveRequest>,
    ) -> Result<Response<DirectiveSummary>, Status> {
        self.authorize(&request, "GetDirectiveSummary").await?;
        let id = request.into_inner().id;
        Ok(Response::new(directive_summary(&self.shared, &id)?))
    }

    async fn list_directives(
        &self,
        request: Request<ListDirectivesRequest>,
    ) -> Result<Response<DirectiveList>, Status> {
        self.authorize(&request, "ListDirectives").await?;
        let request = request.into_inner();
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
        if !wanted.is_empty()
            && wanted != "overdue"
            && !isms_domain::directive::STATE_NAMES.contains(&wanted.as_str())
        {
            return Err(Status::invalid_argument(format!(
                "unknown state {wanted:?}: expected overdue or one of {}",
                isms_domain::directive::STATE_NAMES.join(", ")
            )));
        }
        let mut directives = Vec::new();
        // UUIDv7 IDs sort by time: newest first.
        for entry in self
            .shared
            .store
            .scan_prefix(records::DIRECTIVE_PREFIX)
            .rev()
        {
            if directives.len() >= limit {
                break;
            }
            let (k, v) = entry.map_err(NodeError::from)?;
            let stored: StoredDirective = decode(&k, &v).map_err(NodeError::from)?;
            let d = stored.directive.unwrap_or_default();
            let view = directive_view(&self.shared, &d.id)?;
            let all = || view.targets.iter().chain(view.hops.iter());
            let tally = Tally::of_view(&view.targets, &view.hops);
            let matches = match wanted.as_str() {
                "" => true,
                "overdue" => tally.overdue > 0,
                name => all().any(|t| {
                    state_name(TargetState::try_from(t.state).unwrap_or_default()) == name
                }),
            };
            if !matches || (!kind.is_empty() && isms_domain::directive::kind_name(d.kind) != kind) {
                continue;
            }
            directives.push(tally.summary(&d));
        }
        Ok(Response::new(DirectiveList { directives }))
    }

    async fn node_status(
        &self,
        request: Request<NodeStatusRequest>,
    ) -> Result<Response<NodeStatusReply>, Status> {
        self.authorize(&request, "NodeStatus").await?;
        Ok(Response::new(node_status(&self.shared)?))
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
        self.authorize(&request, "ListPending").await?;
        Ok(Response::new(pending(&self.shared)?))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<AuditList>, Status> {
        self.authorize(&request, "ListAudit").await?;
        Ok(Response::new(audit_list(
            &self.shared,
            &request.into_inner(),
        )?))
    }

    async fn verify_audit(
        &self,
        request: Request<VerifyAuditRequest>,
    ) -> Result<Response<AuditVerdict>, Status> {
        self.authorize(&request, "VerifyAudit").await?;
        Ok(Response::new(match verify_chain(&self.shared.store) {
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
        }))
    }

    async fn report_corrected(
        &self,
        request: Request<DecisionRequest>,
    ) -> Result<Response<DecisionReply>, Status> {
        self.decide(request, "ReportCorrected", Decision::Corrected)
            .await
    }
}

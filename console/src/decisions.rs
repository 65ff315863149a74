//! The decisions an operator takes on a directive in the console: a province confirms or
//! returns a requirement, an approver approves or rejects a major directive
//! (four-eyes, O-6). One list page per kind of decision, one path for every action: the
//! session's form token, then the operator service's call as that operator.
//!
//! Must not: decide who may decide (the operator service does) or what a reason must say.

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Response};
use isms_domain::directive::kind_name;
use isms_proto::v1::operator_server::Operator as _;
use isms_proto::v1::{DecisionRequest, ListDirectivesRequest, ListPendingRequest};
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{error, time};
use crate::pages::shell;
use crate::{Console, Operator};

/// A decision, and what the console shows of it.
#[derive(Clone, Copy)]
enum Act {
    Confirm,
    Return,
    Approve,
    Reject,
}

impl Act {
    fn done(self) -> &'static str {
        match self {
            Act::Confirm => "已确认 Confirmed",
            Act::Return => "已退回 Returned",
            Act::Approve => "已批准 Approved",
            Act::Reject => "已驳回 Rejected",
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Decision {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    reason: String,
}

/// The two forms of a row: the plain decision, and the one that needs a reason.
fn forms(op: &Operator, base: &str, id: &str, yes: (&str, &str), no: (&str, &str, &str)) -> Markup {
    html! {
        form.inline method="post" action={ (base) "/" (id) "/" (yes.0) } {
            input type="hidden" name="form_token" value=(op.session.form_token);
            button class=(yes.0) { (yes.1) }
        }
        " "
        form.inline method="post" action={ (base) "/" (id) "/" (no.0) } {
            input type="hidden" name="form_token" value=(op.session.form_token);
            input type="text" name="reason" placeholder=(no.2) style="width:14em";
            " " button { (no.1) }
        }
    }
}

pub(crate) async fn pending(State(c): State<Console>, op: Operator) -> Response {
    pending_page(&c, &op, html! {}).await
}

async fn pending_page(c: &Console, op: &Operator, outcome: Markup) -> Response {
    let list = c
        .service
        .list_pending(op.request(ListPendingRequest {}))
        .await;
    let may_decide = op.may(c, "ConfirmDirective");
    let body = html! {
        (outcome)
        @match list {
            Err(s) => (error(&s)),
            Ok(r) => table {
                tr { th { "指令 Directive" } th { "类型 Kind" } th { "收到 Received" } th { "时限 Deadline" } th { "决定 Decide" } }
                @for p in r.into_inner().directives {
                    @let d = p.directive.clone().unwrap_or_default();
                    tr {
                        td { a href={ "/directives/" (d.id) } { (d.id) } } td { (kind_name(d.kind)) }
                        td { (time(p.received_at_ms)) } td { (time(p.deadline_ms)) }
                        td { @if may_decide {
                            (forms(op, "/pending", &d.id, ("confirm", "确认 Confirm"), ("return", "退回 Return", "退回原因 Reason")))
                        } }
                    }
                }
            },
        }
    };
    shell(c, op, "/pending", "待确认 Pending decisions", body)
}

/// Major directives issued here waiting for a second operator (four-eyes, O-6).
pub(crate) async fn approvals(State(c): State<Console>, op: Operator) -> Response {
    approvals_page(&c, &op, html! {}).await
}

async fn approvals_page(c: &Console, op: &Operator, outcome: Markup) -> Response {
    let list = c
        .service
        .list_directives(op.request(ListDirectivesRequest {
            limit: 200,
            kind: String::new(),
            state: "awaiting_approval".into(),
        }))
        .await;
    let may_decide = op.may(c, "ApproveDirective");
    let body = html! {
        (outcome)
        p.muted { "重大指令须另一名操作员批准后方可下发 A major directive leaves only once a second operator (role approver) approves it." }
        @match list {
            Err(s) => (error(&s)),
            Ok(r) => table {
                tr { th { "指令 Directive" } th { "类型 Kind" } th { "下发 Issued" } th { "目标 Targets" } th { "决定 Decide" } }
                @for d in r.into_inner().directives {
                    tr {
                        td { a href={ "/directives/" (d.id) } { (d.id) } } td { (kind_name(d.kind)) }
                        td { (time(d.issued_at_ms)) } td { (d.targets) }
                        td { @if may_decide {
                            (forms(op, "/approvals", &d.id, ("approve", "批准 Approve"), ("reject", "驳回 Reject", "驳回原因 Reason")))
                        } }
                    }
                }
            },
        }
    };
    shell(c, op, "/approvals", "待批准 Approvals (four-eyes)", body)
}

pub(crate) async fn confirm(
    s: State<Console>,
    op: Operator,
    id: Path<String>,
    f: Form<Decision>,
) -> Response {
    act(s, op, id, f, Act::Confirm).await
}

pub(crate) async fn return_directive(
    s: State<Console>,
    op: Operator,
    id: Path<String>,
    f: Form<Decision>,
) -> Response {
    act(s, op, id, f, Act::Return).await
}

pub(crate) async fn approve(
    s: State<Console>,
    op: Operator,
    id: Path<String>,
    f: Form<Decision>,
) -> Response {
    act(s, op, id, f, Act::Approve).await
}

pub(crate) async fn reject(
    s: State<Console>,
    op: Operator,
    id: Path<String>,
    f: Form<Decision>,
) -> Response {
    act(s, op, id, f, Act::Reject).await
}

async fn act(
    State(c): State<Console>,
    op: Operator,
    Path(id): Path<String>,
    Form(f): Form<Decision>,
    act: Act,
) -> Response {
    if f.form_token != op.session.form_token {
        return (
            axum::http::StatusCode::FORBIDDEN,
            "the form is not this session's",
        )
            .into_response();
    }
    let request = op.request(DecisionRequest {
        id: id.clone(),
        reason: f.reason,
    });
    let outcome = match act {
        Act::Confirm => c.service.confirm_directive(request).await,
        Act::Return => c.service.return_directive(request).await,
        Act::Approve => c.service.approve_directive(request).await,
        Act::Reject => c.service.reject_directive(request).await,
    };
    let shown = match outcome {
        Ok(r) => {
            html! { div.ok { (act.done()) " " (id) ": " (r.into_inner().targets) " enterprises" } }
        }
        Err(s) => error(&s),
    };
    match act {
        Act::Confirm | Act::Return => pending_page(&c, &op, shown).await,
        Act::Approve | Act::Reject => approvals_page(&c, &op, shown).await,
    }
}

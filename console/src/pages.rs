//! The console's pages, each one or two calls of the operator service as the signed-in
//! operator: the network, directives and a directive's live progress, the issue form, an
//! enterprise's corrections, faults, the audit trail and its verification, operation
//! reports (the decisions on a directive are in `decisions`).
//!
//! Must not: decide anything the operator service decides (roles, validation): a refusal
//! comes back from it and is shown as the CLI shows it.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::Stream;
use isms_domain::directive::{
    KIND_NAMES, is_final, issue_rules, kind_name, parse_targets, state_name,
};
use isms_domain::liveness::liveness_name;
use isms_proto::v1::operator_server::Operator as _;
use isms_proto::v1::{
    DirectiveKind, DirectiveView, GetDirectiveRequest, IssueRequest, ListAuditRequest,
    ListDirectivesRequest, ListFaultsRequest, ListPendingRequest, Liveness, NetworkStatusRequest,
    NodeStatusRequest, OperationReportRequest, Rule, RuleKind, RuleOp, TargetState, TargetView,
    Urgency, VerifyAuditRequest,
};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use crate::layout::{error, page, state, time};
use crate::{Console, Operator};

pub(crate) fn shell(
    console: &Console,
    op: &Operator,
    here: &str,
    title: &str,
    body: Markup,
) -> Response {
    page(
        console.service.node_id().as_str(),
        &op.session.operator,
        &op.session.form_token,
        here,
        title,
        |method| op.may(console, method),
        body,
    )
}

fn target_state(t: &TargetView) -> &'static str {
    state_name(TargetState::try_from(t.state).unwrap_or_default())
}

/// The network below this node, worst first, and this node's own links.
pub(crate) async fn network(State(c): State<Console>, op: Operator) -> Response {
    // Worst first: down, stale, unknown, in maintenance, up.
    let rank = |l: Liveness| match l {
        Liveness::Down => 0,
        Liveness::Stale => 1,
        Liveness::Unknown => 2,
        Liveness::Maintenance => 3,
        _ => 4,
    };
    let status = c
        .service
        .network_status(op.request(NetworkStatusRequest::default()))
        .await
        .map(|r| {
            let mut nodes = r.into_inner().nodes;
            nodes.sort_by_key(|n| (rank(n.liveness()), n.node.clone()));
            nodes
        });
    let links = c
        .service
        .node_status(op.request(NodeStatusRequest {}))
        .await;
    let body = html! {
        @match status {
            Err(s) => (error(&s)),
            Ok(nodes) => {
                p.counts {
                    @for l in [Liveness::Up, Liveness::Stale, Liveness::Down, Liveness::Unknown, Liveness::Maintenance] {
                        span { (state(liveness_name(l))) " " (nodes.iter().filter(|n| n.liveness() == l).count()) }
                    }
                }
                table {
                    tr { th { "节点 Node" } th { "上级 Parent" } th { "状态 State" } th { "自 Since" } th { "链路 Links up" } th { "存储 Store" } }
                    @for n in &nodes {
                        @let h = n.health.clone().unwrap_or_default();
                        tr {
                            td { (n.node) } td { (n.parent) } td { (state(liveness_name(n.liveness()))) }
                            td { (time(n.since_ms)) }
                            td { (h.links_up) " / " (h.links_total) }
                            td { (h.store_bytes / 1024) " KiB" }
                        }
                    }
                }
            }
        }
        h2 { "本节点链路 This node's links" }
        @match links {
            Err(s) => (error(&s)),
            Ok(r) => table {
                tr { th { "对端 Peer" } th { "角色 Role" } th { "状态 State" } th { "积压 Backlog" } th { "最早 Oldest" } }
                @for p in r.into_inner().peers {
                    tr {
                        td { (p.peer) } td { (p.role) } td { (state(if p.up { "up" } else { "down" })) }
                        td { (p.backlog) } td { (p.oldest_age_ms / 1000) " s" }
                    }
                }
            },
        }
    };
    shell(&c, &op, "/", "网络 Network", body)
}

#[derive(Deserialize, Default)]
pub(crate) struct DirectiveFilter {
    #[serde(default)]
    state: String,
    #[serde(default)]
    kind: String,
}

pub(crate) async fn directives(
    State(c): State<Console>,
    op: Operator,
    Query(f): Query<DirectiveFilter>,
) -> Response {
    let list = c
        .service
        .list_directives(op.request(ListDirectivesRequest {
            limit: 200,
            kind: f.kind.clone(),
            state: f.state.clone(),
        }))
        .await;
    let body = html! {
        form method="get" action="/directives" {
            label for="kind" { "类型 Kind" }
            select name="kind" id="kind" {
                option value="" { "全部 all" }
                @for k in KIND_NAMES { option value=(k) selected[f.kind == k] { (k) } }
            }
            label for="state" { "状态 State (executed, received, overdue …)" }
            input type="text" name="state" id="state" value=(f.state);
            " " button { "筛选 Filter" }
        }
        @match list {
            Err(s) => (error(&s)),
            Ok(r) => table {
                tr { th { "指令 Directive" } th { "类型 Kind" } th { "下发 Issued" } th { "目标 Targets" } th { "完成 Final" } th { "超时 Overdue" } th { "各状态 By state" } }
                @for d in r.into_inner().directives {
                    tr {
                        td { a href={ "/directives/" (d.id) } { (d.id) } }
                        td { (kind_name(d.kind)) }
                        td { (time(d.issued_at_ms)) }
                        td { (d.targets) } td { (d.finished) }
                        td { @if d.overdue > 0 { (state("overdue")) " " (d.overdue) } }
                        td { @for (s, n) in &d.counts { (state(s)) " " (n) " " } }
                    }
                }
            },
        }
    };
    shell(&c, &op, "/directives", "指令 Directives", body)
}

/// The per-target and per-province rows of a directive: what the live stream replaces.
fn progress(v: &DirectiveView) -> Markup {
    let done = v
        .targets
        .iter()
        .filter(|t| is_final(TargetState::try_from(t.state).unwrap_or_default()))
        .count();
    html! {
        @if let Some(a) = &v.approval {
            p { "四眼批准 Four-eyes (O-6): " (state(isms_domain::four_eyes::approval_state_name(a.state()))) " " (a.major_because.join("; ")) @if !a.decided_by.is_empty() { " · " (a.decided_by) } }
        }
        p { "完成 Final: " strong.done { (done) " / " (v.targets.len()) } }
        @if !v.hops.is_empty() {
            h2 { "各省 Provinces" }
            table {
                tr { th { "省 Province" } th { "状态 State" } th { "时限 Deadline" } th { "超时 Overdue at" } th { "说明 Detail" } }
                @for h in &v.hops {
                    tr { td { (h.node) } td.state-cell { (state(target_state(h))) } td { (time(h.deadline_ms)) } td { (time(h.overdue_at_ms)) } td { (h.detail) } }
                }
            }
        }
        h2 { "各企业 Enterprises" }
        table {
            tr { th { "企业 Enterprise" } th { "状态 State" } th { "更新 Updated" } th { "时限 Deadline" } th { "说明 Detail" } }
            @for t in &v.targets {
                tr { td { (t.node) } td.state-cell { (state(target_state(t))) } td { (time(t.updated_at_ms)) } td { (time(t.deadline_ms)) } td { (t.detail) } }
            }
        }
    }
}

pub(crate) async fn directive(
    State(c): State<Console>,
    op: Operator,
    Path(id): Path<String>,
) -> Response {
    let view = c
        .service
        .get_directive(op.request(GetDirectiveRequest { id: id.clone() }))
        .await;
    let body = match view {
        Err(s) => error(&s),
        Ok(r) => {
            let v = r.into_inner();
            let d = v.directive.clone().unwrap_or_default();
            html! {
                p {
                    "类型 Kind: " strong { (kind_name(d.kind)) } " · 下发者 Issuer: " (d.issuer)
                    " · 下发 Issued: " (time(d.issued_at_ms)) " · 规则 Rules: " (d.rules.len())
                }
                div #progress { (progress(&v)) }
                p.muted { "实时更新 Updates live, without reloading." }
                script { (PreEscaped(format!(
                    "new EventSource('/directives/{}/events').onmessage = e => {{ document.getElementById('progress').innerHTML = e.data; }};",
                    d.id
                ))) }
            }
        }
    };
    shell(
        &c,
        &op,
        "/directives",
        &format!("指令 Directive {id}"),
        body,
    )
}

/// The directive's progress as Server-Sent Events: a fragment each time it changes, until
/// every target is final. The opening call is authorized and audited like a view.
pub(crate) async fn directive_events(
    State(c): State<Console>,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    c.service
        .get_directive(op.request(GetDirectiveRequest { id: id.clone() }))
        .await
        .map_err(|s| {
            (axum::http::StatusCode::FORBIDDEN, s.message().to_string()).into_response()
        })?;
    // Read again soon after a change, then less often while nothing moves: a directive to
    // every enterprise is thousands of targets to read and draw.
    const FIRST: Duration = Duration::from_millis(250);
    const MOST: Duration = Duration::from_secs(2);
    let stream = futures::stream::unfold(
        (c, id, String::new(), false),
        |(c, id, last, ended)| async move {
            if ended {
                return None;
            }
            let mut pause = FIRST;
            loop {
                let Ok(v) = c.service.directive_now(&id) else {
                    return None;
                };
                let fragment = progress(&v).into_string();
                let all_final = !v.targets.is_empty()
                    && v.targets
                        .iter()
                        .all(|t| is_final(TargetState::try_from(t.state).unwrap_or_default()));
                if fragment != last {
                    let event = Event::default().data(fragment.replace('\n', " "));
                    return Some((Ok(event), (c, id, fragment, all_final)));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MOST);
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize, Default)]
pub(crate) struct IssueFormData {
    #[serde(default)]
    to: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    urgency: String,
    #[serde(default)]
    rules: String,
    #[serde(default)]
    form_token: String,
}

fn issue_page(c: &Console, op: &Operator, form: &IssueFormData, outcome: Markup) -> Response {
    let body = html! {
        (outcome)
        form method="post" action="/issue" {
            input type="hidden" name="form_token" value=(op.session.form_token);
            label for="to" { "目标 Targets (all, province/NN, enterprise/ID; 逗号分隔 comma-separated)" }
            input type="text" name="to" id="to" value=(form.to) required;
            label for="kind" { "类型 Kind" }
            select name="kind" id="kind" {
                @for k in ["disposal", "monitoring", "drill"] { option value=(k) selected[form.kind == k] { (k) } }
            }
            label for="urgency" { "紧急程度 Urgency" }
            select name="urgency" id="urgency" {
                @for u in ["general", "urgent", "emergency"] { option value=(u) selected[form.urgency == u] { (u) } }
            }
            label for="rules" { "规则 Rules, one per line: domain bad.example · url https://… · ip 192.0.2.1 · keyword …" }
            textarea name="rules" id="rules" { (form.rules) }
            p { button #submit { "下发 Issue" } }
        }
    };
    shell(c, op, "/issue", "下发指令 Issue a directive", body)
}

pub(crate) async fn issue_form(State(c): State<Console>, op: Operator) -> Response {
    if !op.may(&c, "IssueDirective") {
        return shell(
            &c,
            &op,
            "/issue",
            "下发指令 Issue a directive",
            html! {
                div.error { "无权限 Your roles do not include issuing directives." }
            },
        );
    }
    issue_page(
        &c,
        &op,
        &IssueFormData {
            kind: "disposal".into(),
            urgency: "general".into(),
            ..Default::default()
        },
        html! {},
    )
}

/// The rules as the form gives them, checked as the CLI checks its arguments.
fn issue_request(form: &IssueFormData) -> Result<IssueRequest, String> {
    let to: Vec<String> = form
        .to
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    parse_targets(&to).map_err(|e| e.to_string())?;
    let mut rules = Vec::new();
    for line in form.rules.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (kind, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let kind = match kind {
            "domain" => RuleKind::BlockDomain,
            "url" => RuleKind::BlockUrl,
            "ip" => RuleKind::BlockIp,
            "keyword" => RuleKind::Keyword,
            other => {
                return Err(format!(
                    "rule {line:?}: {other:?} is not domain, url, ip or keyword"
                ));
            }
        };
        rules.push(Rule {
            kind: kind as i32,
            value: value.trim().to_string().into(),
            op: RuleOp::Add as i32,
        });
    }
    let kind = match form.kind.as_str() {
        "monitoring" => DirectiveKind::Monitoring,
        "drill" => DirectiveKind::Drill,
        _ => DirectiveKind::Disposal,
    };
    let rules = issue_rules(kind, &rules).map_err(|e| e.to_string())?;
    let urgency = match form.urgency.as_str() {
        "urgent" => Urgency::Urgent,
        "emergency" => Urgency::Emergency,
        _ => Urgency::General,
    };
    Ok(IssueRequest {
        id: uuid::Uuid::now_v7().to_string(),
        to,
        kind: kind as i32,
        urgency: urgency as i32,
        rules,
        ..IssueRequest::default()
    })
}

pub(crate) async fn issue(
    State(c): State<Console>,
    op: Operator,
    Form(form): Form<IssueFormData>,
) -> Response {
    if form.form_token != op.session.form_token {
        return (
            axum::http::StatusCode::FORBIDDEN,
            "the form is not this session's",
        )
            .into_response();
    }
    let request = match issue_request(&form) {
        Ok(r) => r,
        Err(why) => {
            return issue_page(
                &c,
                &op,
                &form,
                html! { div.error role="alert" { "错误 Error: " (why) } },
            );
        }
    };
    match c.service.issue_directive(op.request(request)).await {
        Ok(r) => Redirect::to(&format!("/directives/{}", r.into_inner().id)).into_response(),
        Err(s) => issue_page(&c, &op, &form, error(&s)),
    }
}

pub(crate) async fn corrections(State(c): State<Console>, op: Operator) -> Response {
    let list = c
        .service
        .list_pending(op.request(ListPendingRequest {}))
        .await;
    let body = html! {
        @match list {
            Err(s) => (error(&s)),
            Ok(r) => table {
                tr { th { "指令 Demand" } th { "下发者 Issuer" } th { "事项 Subject" } th { "原因 Reason" } th { "说明 Detail" } th { "收到 Received" } }
                @for p in r.into_inner().directives {
                    @let d = p.directive.clone().unwrap_or_default();
                    @let k = d.correction.clone().unwrap_or_default();
                    tr { td { (d.id) } td { (d.issuer) } td { (k.subject) } td { (k.reason_code) } td { (k.detail) } td { (time(p.received_at_ms)) } }
                }
            },
        }
        p.muted { "整改后请重新报送数据 Re-report the corrected data (`data submit`), which answers the demand." }
    };
    shell(&c, &op, "/corrections", "整改 Corrections", body)
}

pub(crate) async fn faults(State(c): State<Console>, op: Operator) -> Response {
    let list = c
        .service
        .list_faults(op.request(ListFaultsRequest { open_only: false }))
        .await;
    let body = html! {
        @match list {
            Err(s) => (error(&s)),
            Ok(r) => table {
                tr { th { "故障 Fault" } th { "报告者 Reporter" } th { "状态 State" } th { "摘要 Summary" } th { "时间 At" } }
                @for f in r.into_inner().faults {
                    @let fault = f.fault.clone().unwrap_or_default();
                    tr { td { (fault.id) } td { (fault.reporter) } td { (format!("{:?}", f.state())) } td { (fault.summary) } td { (time(fault.at_ms)) } }
                }
            },
        }
    };
    shell(&c, &op, "/faults", "故障 Faults", body)
}

pub(crate) async fn audit(State(c): State<Console>, op: Operator) -> Response {
    let verdict = c
        .service
        .verify_audit(op.request(VerifyAuditRequest {}))
        .await;
    let list = c
        .service
        .list_audit(op.request(ListAuditRequest {
            limit: 200,
            ..Default::default()
        }))
        .await;
    let body = html! {
        @match verdict {
            Err(s) => (error(&s)),
            Ok(v) => {
                @let v = v.into_inner();
                @if v.intact { div.ok { "审计链完整 The hash chain is intact: " (v.records) " records." } }
                @else { div.error { "审计链断裂 The chain breaks at record " (v.first_bad) ": " (v.why) } }
            }
        }
        @match list {
            Err(s) => (error(&s)),
            Ok(r) => table {
                tr { th { "#" } th { "时间 At" } th { "操作员 Operator" } th { "动作 Action" } th { "对象 Subject" } th { "结果 Outcome" } th { "来自 From" } }
                @for e in r.into_inner().entries {
                    tr { td { (e.seq) } td { (time(e.at_ms)) } td { (e.operator) } td { (e.action) } td { (e.subject) } td { (e.outcome) } td { (e.peer) } }
                }
            },
        }
    };
    shell(&c, &op, "/audit", "审计 Audit trail", body)
}

#[derive(Deserialize, Default)]
pub(crate) struct ReportQuery {
    #[serde(default)]
    month: String,
}

pub(crate) async fn reports(
    State(c): State<Console>,
    op: Operator,
    Query(q): Query<ReportQuery>,
) -> Response {
    let report = if q.month.is_empty() {
        None
    } else {
        Some(
            c.service
                .operation_report(op.request(OperationReportRequest {
                    kind: "monthly".into(),
                    period: q.month.clone(),
                }))
                .await,
        )
    };
    let body = html! {
        form method="get" action="/reports" {
            label for="month" { "月份 Month (YYYY-MM)" }
            input type="text" name="month" id="month" value=(q.month);
            " " button { "生成 Generate" }
        }
        @match report {
            None => {},
            Some(Err(s)) => (error(&s)),
            Some(Ok(r)) => {
                @match serde_json::from_slice::<isms_report::Report>(&r.into_inner().report_json).map_err(|e| e.to_string()).and_then(|r| isms_report::html(&r).map_err(|e| e.to_string())) {
                    Err(why) => div.error { (why) },
                    Ok(page) => (PreEscaped(body_of(&page))),
                }
            }
        }
    };
    shell(&c, &op, "/reports", "运行报告 Operation reports", body)
}

/// What is between a page's `<body>` and `</body>`.
fn body_of(page: &str) -> &str {
    let start = page.find("<body>").map_or(0, |i| i + "<body>".len());
    let end = page.rfind("</body>").unwrap_or(page.len());
    page.get(start..end).unwrap_or_default()
}

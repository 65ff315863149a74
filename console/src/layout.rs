//! The console's page shell: the navigation, the style (readable at 1366×768, no outside
//! resource), labels in Chinese and English side by side, and small formatting helpers.
//!
//! Must not: call the operator service (pages do).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::TimeZone;
use maud::{DOCTYPE, Markup, PreEscaped, html};

const STYLE: &str = r#"
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", sans-serif; margin: 0; color: #1d2733; background: #f4f6f8; font-size: 14px; }
header { background: #14365d; color: #fff; padding: .5em 1em; display: flex; align-items: center; gap: 1.5em; flex-wrap: wrap; }
header a { color: #dce8f5; text-decoration: none; }
header a.here { color: #fff; font-weight: bold; border-bottom: 2px solid #fff; }
header .who { margin-left: auto; font-size: 12px; }
main { padding: 1em 1.5em; max-width: 1340px; }
h1 { font-size: 20px; margin: .2em 0 .6em; }
h2 { font-size: 16px; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; background: #fff; width: 100%; margin-bottom: 1em; }
th, td { border: 1px solid #d5dbe1; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #e9eef3; font-weight: 600; }
.state { padding: 0 .4em; border-radius: 3px; font-size: 12px; white-space: nowrap; }
.s-executed, .s-up, .s-confirmed, .s-forwarded { background: #d8f0d2; }
.s-failed, .s-down, .s-returned, .s-overdue { background: #f8d3cf; }
.s-stale, .s-received, .s-queued, .s-delivered, .s-acknowledged, .s-maintenance { background: #fbeec4; }
.s-unknown, .s-revoked { background: #e2e2e2; }
.error { background: #f8d3cf; border: 1px solid #c0392b; padding: .5em 1em; margin: .5em 0; }
.ok { background: #d8f0d2; border: 1px solid #3c8d2f; padding: .5em 1em; margin: .5em 0; }
form.inline { display: inline; }
label { display: block; margin: .4em 0 .1em; font-weight: 600; }
input[type=text], textarea, select { width: 100%; max-width: 40em; padding: .3em; font: inherit; }
textarea { height: 7em; }
button { padding: .3em 1em; font: inherit; cursor: pointer; }
.counts span { margin-right: 1em; }
.muted { color: #6b7785; font-size: 12px; }
"#;

/// The sections, each with the operator-API call that tells whether it is shown.
const NAV: [(&str, &str, &str); 9] = [
    ("/", "网络 Network", "NetworkStatus"),
    ("/directives", "指令 Directives", "ListDirectives"),
    ("/issue", "下发 Issue", "IssueDirective"),
    ("/approvals", "批准 Approvals", "ListDirectives"),
    ("/pending", "待确认 Pending", "ListPending"),
    ("/corrections", "整改 Corrections", "ListPending"),
    ("/faults", "故障 Faults", "ListFaults"),
    ("/audit", "审计 Audit", "ListAudit"),
    ("/reports", "报告 Reports", "OperationReport"),
];

/// A page: the shell around `body`; `allowed` says which sections the operator may use.
pub(crate) fn page(
    node: &str,
    operator: &str,
    form_token: &str,
    here: &str,
    title: &str,
    allowed: impl Fn(&str) -> bool,
    body: Markup,
) -> Response {
    let tier_has = |path: &str| match path {
        "/pending" => node.starts_with("province/"),
        "/corrections" => node.starts_with("enterprise/"),
        "/issue" | "/approvals" => !node.starts_with("enterprise/"),
        "/reports" => !node.starts_with("enterprise/"),
        _ => true,
    };
    Html(
        html! {
            (DOCTYPE)
            html lang="zh-CN" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    // Forms carry it; a post without it (from another site) is refused.
                    meta name="form-token" content=(form_token);
                    title { (title) " — " (node) }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header {
                        strong { "ISMS " (node) }
                        @for (path, label, method) in NAV {
                            @if tier_has(path) && allowed(method) {
                                a href=(path) class=[(path == here).then_some("here")] { (label) }
                            }
                        }
                        span.who {
                            "操作员 Operator: " (operator) " "
                            form.inline method="post" action="/signout" {
                                input type="hidden" name="form_token" value=(form_token);
                                button { "退出 Sign out" }
                            }
                        }
                    }
                    main { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
    .into_response()
}

/// A page for someone not signed in (or whose session lapsed).
pub(crate) fn signed_out(node: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        message_page(
            node,
            "请登录 Sign in",
            "Open the one-time link `NAME console open --config …` prints (mutual TLS with your \
             operator certificate, as for every command). 请使用 `console open` 命令获取一次性登录链接。",
        ),
    )
        .into_response()
}

pub(crate) fn message_page(node: &str, title: &str, text: &str) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="zh-CN" {
                head { meta charset="utf-8"; title { (title) " — " (node) } style { (PreEscaped(STYLE)) } }
                body { header { strong { "ISMS " (node) } } main { h1 { (title) } p { (text) } } }
            }
        }
        .into_string(),
    )
}

/// A state as a coloured badge.
pub(crate) fn state(name: &str) -> Markup {
    html! { span class={ "state s-" (name) } { (name) } }
}

/// A Unix-ms time in China Standard Time; `—` for none.
pub(crate) fn time(ms: i64) -> String {
    if ms == 0 {
        return "—".into();
    }
    isms_domain::calendar::china()
        .timestamp_millis_opt(ms)
        .single()
        .map_or_else(
            || ms.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
}

/// An error the operator service gave, shown as the CLI prints it.
pub(crate) fn error(status: &tonic::Status) -> Markup {
    html! { div.error role="alert" { "错误 Error: " (status.message()) } }
}

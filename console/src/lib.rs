//! The web console a node serves to its operators (`[console] listen`, issue 39):
//! server-rendered pages (maud) for the network, directives with their live progress
//! (Server-Sent Events), issuing, a province's decisions, corrections, faults, the audit
//! trail and reports; Chinese and English labels side by side.
//!
//! Sign-in: `NAME console open` gets a one-time link (the operator API's `OpenConsole`);
//! opening it makes a session (an HttpOnly, SameSite=Strict cookie) bound to that operator.
//! Every page and action calls the operator service in-process as that operator
//! (`ConsoleIdentity`), so the roster, the roles and the audit trail apply as they do to
//! the CLI; a form also carries the session's own token against cross-site posts.
//!
//! Must not: read or write the store itself, or decide what an operator may do (the
//! operator service does; the console only hides what would be refused).

mod decisions;
mod layout;
mod pages;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use isms_operator::console_access::{ConsoleIdentity, ConsoleTokens, random_hex};
use isms_operator::service::OperatorService;
use tokio_util::sync::CancellationToken;

/// How long a session lasts without being renewed.
const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// The session cookie's name, one per node: browsers keep cookies per host, not per port,
/// so two nodes' consoles on one host would otherwise sign each other out.
fn cookie_name(console: &Console) -> String {
    format!(
        "isms_console_{}",
        console.service.node_id().as_str().replace('/', "_")
    )
}

/// A signed-in browser: its operator and the token its forms must carry.
#[derive(Debug, Clone)]
struct Session {
    operator: String,
    form_token: String,
    expires: Instant,
}

#[derive(Clone)]
struct Console {
    service: OperatorService,
    tokens: ConsoleTokens,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

/// The operator a request is made for, found by its session cookie.
struct Operator {
    session: Session,
    identity: ConsoleIdentity,
}

impl Operator {
    /// `message` as a request of this operator to the operator service.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.extensions_mut().insert(self.identity.clone());
        r
    }

    fn may(&self, console: &Console, method: &str) -> bool {
        console.service.may(&self.session.operator, method)
    }
}

impl FromRequestParts<Console> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let id = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{}=", cookie_name(console)))
                    .map(str::to_string)
            });
        let session = id.and_then(|id| {
            let mut sessions = console.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            sessions.retain(|_, s| s.expires > now);
            sessions.get(&id).cloned()
        });
        let Some(session) = session else {
            return Err(layout::signed_out(console.service.node_id().as_str()));
        };
        let peer = browser(parts.extensions.get::<ConnectInfo<SocketAddr>>());
        Ok(Operator {
            identity: ConsoleIdentity {
                operator: session.operator.clone(),
                peer,
            },
            session,
        })
    }
}

#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

/// Where a browser is, for the audit trail.
fn browser(connected: Option<&ConnectInfo<SocketAddr>>) -> String {
    connected.map_or_else(|| "unknown address".to_string(), |c| c.0.to_string())
}

/// The page for a session whose start or end could not be recorded: nothing was done.
fn not_recorded(console: &Console, e: &tonic::Status) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        layout::message_page(
            console.service.node_id().as_str(),
            "未能记录 Not recorded",
            &format!(
                "The audit trail could not record this, so it was not done: {}",
                e.message()
            ),
        ),
    )
        .into_response()
}

/// Redeems a one-time link for a session; the session's start, or the link's refusal, is
/// in the audit trail before the answer.
async fn sign_in(
    State(console): State<Console>,
    connected: ConnectInfo<SocketAddr>,
    Query(q): Query<SignIn>,
) -> Response {
    let from = browser(Some(&connected));
    let Some(operator) = console.tokens.redeem(&q.token) else {
        if let Err(e) = console
            .service
            .audit_console("no identity", &from, "refused", "console link not valid")
            .await
        {
            return not_recorded(&console, &e);
        }
        return (
            StatusCode::UNAUTHORIZED,
            layout::message_page(
                console.service.node_id().as_str(),
                "链接无效 Link not valid",
                "This link was used already, has lapsed, or was never issued. Ask for a new one \
                 with `NAME console open`. 此链接已使用或已过期，请重新获取。",
            ),
        )
            .into_response();
    };
    if let Err(e) = console
        .service
        .audit_console(&operator, &from, "console.signin", "ok: session started")
        .await
    {
        return not_recorded(&console, &e);
    }
    let id = random_hex();
    let session = Session {
        operator,
        form_token: random_hex(),
        expires: Instant::now() + SESSION_LIFETIME,
    };
    console
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), session);
    let cookie = format!(
        "{}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        cookie_name(&console),
        SESSION_LIFETIME.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

#[derive(serde::Deserialize)]
struct SignOut {
    #[serde(default)]
    form_token: String,
}

async fn sign_out(
    State(console): State<Console>,
    operator: Operator,
    axum::extract::Form(form): axum::extract::Form<SignOut>,
) -> Response {
    if form.form_token != operator.session.form_token {
        return (StatusCode::FORBIDDEN, "the form is not this session's").into_response();
    }
    if let Err(e) = console
        .service
        .audit_console(
            &operator.session.operator,
            &operator.identity.peer,
            "console.signout",
            "ok: session ended",
        )
        .await
    {
        return not_recorded(&console, &e);
    }
    console
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|_, s| s.form_token != operator.session.form_token);
    (
        [(
            header::SET_COOKIE,
            format!("{}=; Path=/; Max-Age=0", cookie_name(&console)),
        )],
        Redirect::to("/signed-out"),
    )
        .into_response()
}

async fn signed_out(State(console): State<Console>) -> Response {
    layout::signed_out(console.service.node_id().as_str())
}

/// Serves the console on `listen` until `stop`; links are redeemed from `tokens`.
pub async fn serve(
    listen: SocketAddr,
    service: OperatorService,
    tokens: ConsoleTokens,
    stop: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let console = Console {
        service,
        tokens,
        sessions: Arc::default(),
    };
    let app = Router::new()
        .route("/signin", get(sign_in))
        .route("/signout", post(sign_out))
        .route("/signed-out", get(signed_out))
        .route("/", get(pages::network))
        .route("/directives", get(pages::directives))
        .route("/directives/{id}", get(pages::directive))
        .route("/directives/{id}/events", get(pages::directive_events))
        .route("/issue", get(pages::issue_form).post(pages::issue))
        .route("/pending", get(decisions::pending))
        .route("/pending/{id}/confirm", post(decisions::confirm))
        .route("/pending/{id}/return", post(decisions::return_directive))
        .route("/approvals", get(decisions::approvals))
        .route("/approvals/{id}/approve", post(decisions::approve))
        .route("/approvals/{id}/reject", post(decisions::reject))
        .route("/corrections", get(pages::corrections))
        .route("/faults", get(pages::faults))
        .route("/audit", get(pages::audit))
        .route("/reports", get(pages::reports))
        .with_state(console);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("config field `console.listen` ({listen}): {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "web console served");
    let task = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "web console ended with an error");
        }
    });
    Ok((local, task))
}

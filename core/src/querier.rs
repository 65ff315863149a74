//! Access-log queries answered off the core's thread: a 30-day query over a large
//! store takes seconds, which the core, committing every link's traffic, must not spend.
//! The querier thread answers each query in turn through the enterprise's adapter, the
//! embedded Parquet store, a configured command that queries the store the
//! enterprise already has, or the feed file itself, and hands the answer back to the core
//! (`Event::QueryAnswered`), which reports it once.
//!
//! Must not: touch the node's store, or decide what is reported (the core does).

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use isms_domain::access_log::{DEFAULT_LIMIT, parse_line, record_matches};
use isms_proto::v1::{AccessLogQuery, QueryResult};
use serde_json::json;

/// Where an enterprise's queries are answered from.
#[derive(Debug, Clone)]
pub enum QueryAdapter {
    /// The embedded Parquet partitions (`[access_logs]`).
    Parquet(isms_data::AccessLogStore),
    /// A command given the query as JSON on its standard input, printing the matching
    /// records as JSON lines (the feed's shape); killed after `timeout`.
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
    /// The feed file read whole (no store kept); none configured: an empty answer that
    /// says so.
    Feed(Option<PathBuf>),
}

impl QueryAdapter {
    pub fn answer(&self, q: &AccessLogQuery) -> Result<QueryResult, String> {
        match self {
            QueryAdapter::Parquet(store) => {
                store.query(q).map(|(r, _)| r).map_err(|e| e.to_string())
            }
            QueryAdapter::Command { argv, timeout } => by_command(argv, *timeout, q),
            QueryAdapter::Feed(path) => isms_domain::access_log::answer(path.as_deref(), q),
        }
    }
}

/// Runs the adapter command. Only records that answer the query are kept (a command that
/// returns more is not believed), up to the query's limit; `matched` counts them all.
fn by_command(
    argv: &[String],
    timeout: Duration,
    q: &AccessLogQuery,
) -> Result<QueryResult, String> {
    let input = json!({
        "from_ms": q.from_ms,
        "until_ms": q.until_ms,
        "src": q.src,
        "dst": q.dst,
        "ports": q.ports,
        "protocol": q.protocol,
        "url_contains": q.url_contains,
        "limit": q.limit,
    });
    let program = argv.first().map(String::as_str).unwrap_or_default();
    let out = isms_enforce::run_command(argv, Some(input.to_string().into_bytes()), timeout)
        .map_err(|e| format!("query command {program}: {e}"))?;
    let limit = usize::try_from(if q.limit == 0 { DEFAULT_LIMIT } else { q.limit }).unwrap_or(1000);
    let mut result = QueryResult {
        source: format!("query command {program}"),
        ..QueryResult::default()
    };
    for (i, line) in out.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = parse_line(line)
            .map_err(|e| format!("query command {program}: line {}: {e}", i + 1))?;
        if !record_matches(q, &record) {
            continue;
        }
        result.matched += 1;
        if result.records.len() < limit {
            result.records.push(record);
        } else {
            result.truncated = true;
        }
    }
    Ok(result)
}

/// The querier thread's handle: queries go in, answers come out through `on_answer`.
pub(crate) struct Querier {
    to_thread: mpsc::Sender<(String, AccessLogQuery)>,
}

impl Querier {
    pub(crate) fn spawn(
        adapter: QueryAdapter,
        on_answer: impl Fn(String, Result<QueryResult, String>) + Send + 'static,
    ) -> std::io::Result<Querier> {
        let (to_thread, queries) = mpsc::channel::<(String, AccessLogQuery)>();
        std::thread::Builder::new()
            .name("isms-querier".into())
            .spawn(move || {
                // Ends when the core (the only sender) is gone.
                for (directive, q) in queries {
                    let answer = adapter.answer(&q);
                    on_answer(directive, answer);
                }
            })?;
        Ok(Querier { to_thread })
    }

    /// Queues a query; its answer comes back as an event.
    pub(crate) fn ask(&self, directive: &str, q: AccessLogQuery) {
        // The thread ends only with the core, which owns this sender.
        let _ = self.to_thread.send((directive.to_string(), q));
    }
}

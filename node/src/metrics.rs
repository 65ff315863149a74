//! Prometheus metrics (`[metrics] listen`, O-1, R-10.1): served as Prometheus text on
//! `/metrics`, built with prometheus-client. Live figures are read at each scrape (links,
//! outboxes, inboxes, the node's own health, the network view's counts by liveness); the
//! figures that need a scan of the store (directives by kind and state, the regulation's
//! clocks) are refreshed in the background every `REFRESH`, or less often where counting
//! would take more than 1/`COUNT_SHARE` of a core, and served as last counted; gRPC
//! requests are counted by a layer around the node's gRPC server.
//!
//! Labels are bounded: peers are the configured neighbours, services and methods the
//! node's own (anything else is `unknown`), kinds and states the protocol's; no directive
//! or operator appears in a label.
//!
//! Must not: write the store, or hold the scrape longer than reading memory takes.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use isms_core::Shared;
use isms_domain::directive::{is_final, kind_name, state_name};
use isms_domain::liveness::liveness_name;
use isms_domain::records::{self, decode};
use isms_network::{Heartbeats, liveness_of};
use isms_proto::record::StoredDirective;
use isms_proto::v1::TargetState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// How often the store is counted for the figures that need a scan, at most.
const REFRESH: Duration = Duration::from_secs(15);
/// The pause after a count is at least this many times what the count took.
const COUNT_SHARE: u32 = 50;

/// The gRPC services whose methods are labels; any other path is `unknown`.
const SERVICES: [&str; 5] = [
    "isms.v1.Operator",
    "isms.v1.Link",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: String,
    method: String,
}

/// gRPC requests by service, method and status code, and their latency.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Family<MethodLabels, Histogram>,
}

impl GrpcMetrics {
    fn new() -> Self {
        GrpcMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                // 0.5 ms to about 16 s.
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
        }
    }

    fn record(&self, path: &str, code: &str, elapsed: Duration) {
        let (service, method) = service_and_method(path);
        self.requests
            .get_or_create(&RequestLabels {
                service: service.clone(),
                method: method.clone(),
                code: code.to_string(),
            })
            .inc();
        self.seconds
            .get_or_create(&MethodLabels { service, method })
            .observe(elapsed.as_secs_f64());
    }
}

/// `/isms.v1.Operator/IssueDirective` → (`isms.v1.Operator`, `IssueDirective`), for the
/// node's own services; anything else is (`unknown`, `unknown`).
fn service_and_method(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some(service), Some(method))
            if SERVICES.contains(&service)
                && !method.is_empty()
                && method.len() <= 64
                && method.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            (service.to_string(), method.to_string())
        }
        _ => ("unknown".into(), "unknown".into()),
    }
}

/// The figures a scan of the store gives, as last counted.
#[derive(Debug, Default)]
struct Counted {
    /// (kind, state) → targets.
    targets: Vec<((&'static str, &'static str), u64)>,
    /// kind → directives.
    directives: Vec<(&'static str, u64)>,
    clocks_running: u64,
    clocks_overdue: u64,
    seconds: f64,
}

/// What a scrape reads.
#[derive(Debug)]
struct NodeCollector {
    shared: Arc<Shared>,
    beats: Arc<Heartbeats>,
    counted: Arc<Mutex<Counted>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
    role: String,
}

fn gauge_family<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let family = Family::<L, Gauge>::default();
    for (labels, value) in rows {
        family.get_or_create(&labels).set(value);
    }
    family.encode(encoder.encode_descriptor(name, help, None, family.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = Gauge::<i64>::default();
    g.set(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let peers = isms_core::peer_statuses(&self.shared).unwrap_or_default();
        let label = |p: &isms_proto::v1::PeerStatus| PeerLabels {
            peer: p.peer.clone(),
            role: p.role.clone(),
        };
        gauge_family(
            &mut e,
            "isms_link_up",
            "Whether the link to the peer is up (1) or down (0).",
            peers.iter().map(|p| (label(p), i64::from(p.up))),
        )?;
        gauge_family(
            &mut e,
            "isms_outbox_messages",
            "Messages queued for the peer and not yet acknowledged.",
            peers.iter().map(|p| (label(p), int(p.backlog))),
        )?;
        gauge_family(
            &mut e,
            "isms_outbox_oldest_age_seconds",
            "Age of the oldest message queued for the peer, seconds (0: none).",
            peers.iter().map(|p| (label(p), p.oldest_age_ms / 1000)),
        )?;
        gauge_family(
            &mut e,
            "isms_inbox_messages",
            "Messages received from the peer, durable, not yet applied.",
            peers.iter().map(|p| (label(p), int(p.inbox))),
        )?;
        let own = self.beats.own();
        let health = own.health.unwrap_or_default();
        gauge(
            &mut e,
            "isms_store_bytes",
            "Bytes the store takes on disk.",
            int(health.store_bytes),
        )?;
        gauge(
            &mut e,
            "isms_disk_free_bytes",
            "Free bytes on the store's file system.",
            int(health.disk_free_bytes),
        )?;
        gauge(
            &mut e,
            "isms_enforcement_failing",
            "Enterprise: whether an enforcement point fails (1) or not (0).",
            i64::from(health.enforcement_failing_since_ms != 0),
        )?;
        gauge(
            &mut e,
            "isms_enforcement_pending_directives",
            "Enterprise: directives not yet in force at every enforcement point.",
            int(health.enforcement_pending),
        )?;
        gauge(
            &mut e,
            "isms_started_at_seconds",
            "When the node started, Unix seconds.",
            health.started_at_ms / 1000,
        )?;
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct LivenessLabels {
            liveness: String,
        }
        let mut by_liveness = std::collections::BTreeMap::new();
        for n in self.beats.view.snapshot() {
            *by_liveness
                .entry(liveness_name(liveness_of(&n)))
                .or_insert(0i64) += 1;
        }
        gauge_family(
            &mut e,
            "isms_nodes",
            "Nodes below this one by what their heartbeats say.",
            by_liveness.into_iter().map(|(l, n)| {
                (
                    LivenessLabels {
                        liveness: l.to_string(),
                    },
                    n,
                )
            }),
        )?;
        let counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct KindStateLabels {
            kind: String,
            state: String,
        }
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct KindLabels {
            kind: String,
        }
        gauge_family(
            &mut e,
            "isms_directives",
            "Directives held here by kind.",
            counted.directives.iter().map(|(k, n)| {
                (
                    KindLabels {
                        kind: k.to_string(),
                    },
                    int(*n),
                )
            }),
        )?;
        gauge_family(
            &mut e,
            "isms_directive_targets",
            "Targets of the directives held here by kind and state.",
            counted.targets.iter().map(|((k, s), n)| {
                (
                    KindStateLabels {
                        kind: k.to_string(),
                        state: s.to_string(),
                    },
                    int(*n),
                )
            }),
        )?;
        gauge(
            &mut e,
            "isms_clocks_running",
            "The regulation's clocks running (a target or relay not final, not overdue).",
            int(counted.clocks_running),
        )?;
        gauge(
            &mut e,
            "isms_clocks_overdue",
            "Targets and relays whose clock ran out.",
            int(counted.clocks_overdue),
        )?;
        let g =
            prometheus_client::metrics::gauge::Gauge::<f64, std::sync::atomic::AtomicU64>::default(
            );
        g.set(counted.seconds);
        g.encode(e.encode_descriptor(
            "isms_metrics_count_seconds",
            "How long the last count of the store for these metrics took.",
            None,
            g.metric_type(),
        )?)
    }
}

/// Counts directives, targets and clocks in the store.
fn count(shared: &Shared) -> Result<Counted, isms_core::error::NodeError> {
    let started = Instant::now();
    let mut targets = std::collections::BTreeMap::new();
    let mut directives = std::collections::BTreeMap::new();
    let mut counted = Counted::default();
    for entry in shared.store.scan_prefix(records::DIRECTIVE_PREFIX) {
        let (k, v) = entry?;
        let stored: StoredDirective = decode(&k, &v)?;
        let Some(d) = stored.directive else { continue };
        let kind = kind_name(d.kind);
        *directives.entry(kind).or_insert(0u64) += 1;
        for (node, rec) in isms_core::stored_targets(&shared.store, &d.id)? {
            let state = TargetState::try_from(rec.state).unwrap_or_default();
            if !isms_domain::identity::is_province(&node) {
                *targets.entry((kind, state_name(state))).or_insert(0u64) += 1;
            }
            if rec.overdue_at_ms != 0 {
                counted.clocks_overdue += 1;
            } else if rec.deadline_ms != 0 && !is_final(state) && state != TargetState::Forwarded {
                counted.clocks_running += 1;
            }
        }
    }
    counted.targets = targets.into_iter().collect();
    counted.directives = directives.into_iter().collect();
    counted.seconds = started.elapsed().as_secs_f64();
    Ok(counted)
}

/// Serves `/metrics` on `listen`; returns the layer that counts gRPC requests.
pub async fn start(
    listen: std::net::SocketAddr,
    shared: Arc<Shared>,
    beats: Arc<Heartbeats>,
    stop: CancellationToken,
) -> anyhow::Result<(GrpcLayer, tokio::task::JoinHandle<()>)> {
    let grpc = GrpcMetrics::new();
    let counted = Arc::new(Mutex::new(Counted::default()));
    let mut registry = Registry::default();
    registry.register(
        "isms_grpc_requests",
        "gRPC requests served, by service, method and status code.",
        grpc.requests.clone(),
    );
    registry.register_with_unit(
        "isms_grpc_request_duration",
        "Time to answer a gRPC request (to the response's headers for a stream).",
        prometheus_client::registry::Unit::Seconds,
        grpc.seconds.clone(),
    );
    registry.register_collector(Box::new(NodeCollector {
        shared: shared.clone(),
        beats,
        counted: counted.clone(),
    }));
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("config field `metrics.listen` ({listen}): {e}"))?;
    tracing::info!(listen = %listener.local_addr()?, "metrics served on /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                match prometheus_client::encoding::prometheus_text::encode(&mut body, &registry) {
                    Ok(()) => (
                        [(
                            http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response(),
                    Err(_) => (
                        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        "cannot encode the metrics".to_string(),
                    )
                        .into_response(),
                }
            }
        }),
    );
    let serve_stop = stop.clone();
    let task = tokio::spawn(async move {
        let counting = tokio::spawn(async move {
            loop {
                let shared = shared.clone();
                let started = Instant::now();
                match tokio::task::spawn_blocking(move || count(&shared)).await {
                    Ok(Ok(c)) => *counted.lock().unwrap_or_else(|p| p.into_inner()) = c,
                    Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot count the store"),
                    Err(e) => tracing::warn!(error = %e, "metrics: the count failed"),
                }
                // A store large enough that counting it takes a while is counted less often:
                // the count never takes more than 1/COUNT_SHARE of a core.
                let pause = REFRESH.max(started.elapsed() * COUNT_SHARE);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        });
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(serve_stop.cancelled_owned())
            .await
        {
            tracing::warn!(error = %e, "metrics server ended with an error");
        }
        let _ = counting.await;
    });
    Ok((GrpcLayer { metrics: grpc }, task))
}

/// Counts each gRPC request by its path and the status its response's headers carry (a
/// response without one is `OK`: tonic puts an error's status in the headers).
#[derive(Clone, Debug)]
pub struct GrpcLayer {
    metrics: GrpcMetrics,
}

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = CountedService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CountedService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CountedService<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S, B, R> tower::Service<http::Request<B>> for CountedService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or_else(
                        || "Ok".to_string(),
                        |c| format!("{:?}", tonic::Code::from_i32(c)),
                    ),
                Err(_) => "TransportError".to_string(),
            };
            metrics.record(&path, &code, started.elapsed());
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_nodes_own_methods_become_labels() {
        assert_eq!(
            service_and_method("/isms.v1.Operator/IssueDirective"),
            ("isms.v1.Operator".into(), "IssueDirective".into())
        );
        for path in [
            "/evil.Service/X",
            "/isms.v1.Operator/",
            "/isms.v1.Operator/a-b",
            "/",
            "",
        ] {
            assert_eq!(
                service_and_method(path),
                ("unknown".into(), "unknown".into()),
                "{path}"
            );
        }
        let long = format!("/isms.v1.Operator/{}", "A".repeat(65));
        assert_eq!(service_and_method(&long).0, "unknown");
    }
}

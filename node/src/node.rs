//! Starting and stopping a node: store, core, mTLS server (links and operator API), the link
//! to the parent, and an ordered teardown on shutdown. Binaries and tests start nodes here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use isms_proto::v1::operator_server::OperatorServer;
use isms_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use isms_config::Config;
use isms_core::{
    AuditKeeping, Caller, Core, CoreHandle, CoreOptions, FourEyesPolicy, PeerState, Role, Shared,
};
use isms_domain::audit_chain::HeadSigner;
use isms_domain::calendar::Calendar;
use isms_domain::clock::{Clock, SystemClock};
use isms_domain::four_eyes::MajorRule;
use isms_domain::identity::{Identity, NodeId, NodeMap};
use isms_operator::authz::RosterHandle;
use isms_operator::service::OperatorService;
use isms_transport::link::{LinkContext, LinkService, dial_parent};
use isms_transport::tls;
use isms_transport::wire::LinkServer;

/// How long teardown may take before the node exits anyway.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Runs a node on `listener` until `shutdown` is cancelled (or the store fails), then drains:
/// stop accepting, end link sessions, let the core commit what it has queued, sync the store.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_clock(config, listener, shutdown, Arc::new(SystemClock)).await
}

pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let paths = tls::TlsPaths {
        ca: &config.tls.ca,
        cert: &config.tls.cert,
        key: &config.tls.key,
    };
    check_own_certificate(&config)?;
    // Before the store opens, so a bad revocation list stops the start with its reason.
    let revocations = match &config.tls.crl {
        Some(crl) => tls::Revocations::watch(&config.tls.ca, crl.clone(), shutdown.clone())
            .map_err(|e| anyhow::anyhow!("config field `tls.crl`: {e}"))?,
        None => tls::Revocations::none(&config.tls.ca)?,
    };
    let server_tls = tls::server_config(&paths, &revocations)?;
    let store = Arc::new(Store::open(&config.data_dir)?);

    let mut peers = NodeMap::default();
    let mut add_peer = |id: &NodeId, role| {
        peers.insert(id.clone(), Arc::new(PeerState::new(id.clone(), role)));
    };
    if let Some(p) = &config.parent {
        add_peer(&p.id, Role::Parent);
    }
    for c in &config.children {
        add_peer(&c.id, Role::Child);
    }
    let shared = Arc::new(Shared {
        node_id: config.node_id.clone(),
        store: store.clone(),
        peers,
        directory: config.directory(),
        started_at_ms: clock.now_ms(),
        clock,
        failed: AtomicBool::new(false),
        directives: AtomicU64::new(0),
    });

    // A store failure cancels everything: the node stops rather than acknowledge writes
    // it may not have made durable.
    let fatal = shutdown.child_token();
    let calendar = match &config.calendar_dir {
        Some(dir) => {
            Some(Arc::new(Calendar::load_dir(dir).map_err(|e| {
                anyhow::anyhow!("config field `calendar_dir`: {e}")
            })?))
        }
        None => None,
    };
    let trust = trust_following(&config, &revocations, fatal.clone())?;
    let (access_log_store, access_log_ingest) = match &config.access_logs {
        Some(keep) => {
            let (store, task) = crate::access_logs::start(
                keep,
                config.access_log.clone(),
                shared.clone(),
                fatal.clone(),
            )?;
            (Some(store), Some(task))
        }
        None => (None, None),
    };
    let access_log_socket = match (&config.access_log_socket, &access_log_store) {
        (Some(path), Some(store)) => Some(crate::access_logs::start_socket(
            path,
            store.clone(),
            fatal.clone(),
        )?),
        _ => None,
    };
    let options = CoreOptions {
        parent: config.parent.as_ref().map(|p| p.id.clone()),
        points: (config.tier() == isms_domain::identity::Tier::Enterprise).then(|| {
            isms_enforce::Points::from_config(&config.enforcement, config.rules_file.as_deref())
        }),
        calendar,
        auto_confirm: config.auto_confirm.iter().map(|k| k.kind()).collect(),
        access_log: config.access_log.clone(),
        // The enterprise's own store's command first, then the Parquet partitions; neither:
        // the feed (the core's default).
        query_adapter: match (&config.access_log_query, access_log_store) {
            (Some(q), _) => Some(isms_core::QueryAdapter::Command {
                argv: q.command.clone(),
                timeout: q.timeout,
            }),
            (None, Some(store)) => Some(isms_core::QueryAdapter::Parquet(store)),
            (None, None) => None,
        },
        linger: config.link.group_linger,
        hold_issue_answers: config.testing.hold_issue_answers,
        four_eyes: four_eyes(&config.four_eyes),
        keeping: audit_keeping(&config)?,
        trust: Some(trust.clone()),
        availability_retention_ms: i64::from(config.health.retention_days) * 86_400_000,
        data_rules: config.data_validation.clone(),
        tamper: config.testing.tamper.map(|t| match t {
            isms_config::Tamper::AlterRule => isms_core::Tamper::AlterRule,
            isms_config::Tamper::DropSignature => isms_core::Tamper::DropSignature,
            isms_config::Tamper::DropCountersignature => isms_core::Tamper::DropCountersignature,
            isms_config::Tamper::Forge => isms_core::Tamper::Forge,
            isms_config::Tamper::AlterResult => isms_core::Tamper::AlterResult,
        }),
    };
    let (core, core_thread) = Core::start(shared.clone(), options, fatal.clone())?;
    // The regulation's clocks are checked every second; a tick on a busy core is dropped.
    let ticker = {
        let core = core.clone();
        let stop = fatal.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => core.tick(),
                }
            }
        })
    };
    let (heartbeats, network_ticker) =
        crate::network::start(&config, &shared, core.clone(), fatal.clone())?;
    crate::network::report_last_failure(&config.data_dir, &core).await;
    let data_export = config.data_export.as_ref().map(|export| {
        crate::data_export::start(export, shared.clone(), core.clone(), fatal.clone())
    });
    let links = LinkContext::new(
        shared.clone(),
        core.clone(),
        config.link.clone(),
        config.trust_domain.clone(),
        fatal.clone(),
        heartbeats.clone(),
    );

    let roster = RosterHandle::load(config.roster.as_deref())
        .map_err(|e| anyhow::anyhow!("config field `roster`: {e}"))?;
    match roster.path() {
        Some(path) => {
            tracing::info!(roster = %path.display(), operators = roster.current().len(), "roster loaded");
            tokio::spawn(reload_roster(roster.clone(), core.clone(), fatal.clone()));
        }
        None => tracing::warn!("config field `roster` is not set: every operator call is refused"),
    }
    let (grpc_metrics, metrics_server) = match &config.metrics {
        Some(m) => {
            let (layer, task) =
                crate::metrics::start(m.listen, shared.clone(), heartbeats.clone(), fatal.clone())
                    .await?;
            (Some(layer), Some(task))
        }
        None => (None, None),
    };
    let max = config.link.max_frame_bytes;
    let link_service = LinkServer::new(LinkService::new(links.clone()), max);
    let mut operators = OperatorService::new(
        shared.clone(),
        core.clone(),
        config.trust_domain.clone(),
        roster,
        Some(trust),
        heartbeats.clone(),
    );
    let console_server = match &config.console {
        Some(c) => {
            let tokens = isms_operator::console_access::ConsoleTokens::default();
            // The console calls the service as its session's operator; the service hands
            // out the links the console redeems.
            let (local, task) =
                isms_console::serve(c.listen, operators.clone(), tokens.clone(), fatal.clone())
                    .await?;
            operators = operators.with_console(tokens, format!("http://{local}"));
            Some(task)
        }
        None => None,
    };
    let operator_service = OperatorServer::new(operators)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    // The standard health service (grpc.health.v1): SERVING from here, when the store is
    // open and the core runs, until the node stops (or fails), when it says NOT_SERVING
    // before the listener closes.
    let (mut health, health_service) = tonic_health::server::health_reporter();
    for service in HEALTH_SERVICES {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(isms_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| anyhow::anyhow!("gRPC reflection: {e}"))?;
    let local = listener.local_addr()?;
    // On stopping, health says NOT_SERVING and ends its watchers' streams first, in a task
    // of its own, and only then do the listener and the server stop: tonic stops waiting
    // for its signal once the incoming stream ends, so a stop signalled through both could
    // leave the statuses unset and the watch streams (and the graceful close) open until
    // the drain deadline.
    let not_serving = CancellationToken::new();
    let stop_serving = fatal.clone();
    let health_done = not_serving.clone();
    tokio::spawn(async move {
        stop_serving.cancelled().await;
        tracing::info!("health: NOT_SERVING");
        for service in HEALTH_SERVICES {
            health
                .set_service_status(service, tonic_health::ServingStatus::NotServing)
                .await;
        }
        // Watchers have NOT_SERVING; ending their streams lets the listener close now
        // rather than at the drain deadline.
        for service in HEALTH_SERVICES {
            health.clear_service_status(service).await;
        }
        health_done.cancel();
    });
    let incoming = tls::incoming(
        listener,
        server_tls,
        revocations.clone(),
        not_serving.clone(),
    );
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(8 << 20))
            .layer(tower::util::option_layer(grpc_metrics))
            .add_service(link_service)
            .add_service(operator_service)
            .add_service(health_service)
            .add_service(reflection)
            .serve_with_incoming_shutdown(incoming, not_serving.cancelled_owned()),
    );
    tracing::info!(node = %config.node_id, listen = %local, "node started");
    // Under systemd (`Type=notify`): ready now that it accepts work. Without
    // NOTIFY_SOCKET this does nothing.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot tell the service manager the node is ready");
    }

    let dialer = config.parent.as_ref().map(|p| {
        let client_tls = tls::client_config_checking(
            &paths,
            Identity::Node(p.id.clone()),
            &config.trust_domain,
            Some(revocations.clone()),
        );
        let parent = shared.peers[&p.id].clone();
        let address = p.address.clone();
        let links = links.clone();
        client_tls.map(|c| tokio::spawn(dial_parent(links, parent, address, c)))
    });
    let dialer = dialer.transpose()?;
    drop(links);
    drop(core);

    fatal.cancelled().await;
    tracing::info!(node = %config.node_id, "shutting down: draining");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    // What the drain waits for, named in the log if the deadline passes.
    let waiting_for = std::cell::Cell::new("the tickers");
    let drain = async {
        let _ = ticker.await;
        let _ = network_ticker.await;
        waiting_for.set("the access-log, data-export and metrics tasks");
        if let Some(t) = access_log_ingest {
            let _ = t.await;
        }
        if let Some(t) = data_export {
            let _ = t.await;
        }
        if let Some(t) = access_log_socket {
            let _ = t.await;
        }
        if let Some(t) = metrics_server {
            let _ = t.await;
        }
        waiting_for.set("the web console's sessions");
        if let Some(t) = console_server {
            let _ = t.await;
        }
        waiting_for.set("the link to the parent");
        if let Some(d) = dialer {
            let _ = d.await;
        }
        waiting_for.set("gRPC connections still open (their clients have not closed them)");
        match server.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "server task failed"),
            Ok(Ok(())) => {}
        }
        // Every sender is gone once the server and sessions have stopped: the core commits
        // what is queued and its thread ends.
        waiting_for.set("the core to commit what is queued");
        let _ = tokio::task::spawn_blocking(move || core_thread.join()).await;
    };
    if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
        tracing::warn!(
            waiting_for = waiting_for.get(),
            "drain deadline passed; exiting with the store synced"
        );
    }
    store.sync()?;
    if shared.failed.load(std::sync::atomic::Ordering::SeqCst) {
        // Said as a fault once the node runs again: the store cannot say it now.
        crate::network::mark_failure(&config.data_dir, shared.now_ms());
        anyhow::bail!("stopped after a failure of the core (store or bug; see the log above)");
    }
    tracing::info!(node = %config.node_id, "stopped");
    Ok(())
}

/// The names the health service answers for: the whole node (`""`) and each service.
const HEALTH_SERVICES: [&str; 3] = ["", "isms.v1.Operator", "isms.v1.Link"];

/// What the core needs to sign this node's audit heads with its node key, check its
/// children's, and keep records for the retention.
fn audit_keeping(config: &Config) -> anyhow::Result<AuditKeeping> {
    let certificate = tls::load_certs(&config.tls.cert)?
        .first()
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    let key = tls::load_pkcs8_key(&config.tls.key)
        .map_err(|e| anyhow::anyhow!("config field `tls.key`: {e}"))?;
    let signer = HeadSigner::from_pkcs8(&key)
        .map_err(|e| anyhow::anyhow!("config field `tls.key` (it signs audit heads): {e}"))?;
    Ok(AuditKeeping {
        signer: Some(Arc::new(signer)),
        certificate,
        trust_domain: config.trust_domain.clone(),
        retention_ms: i64::from(config.audit.retention_days) * 86_400_000,
    })
}

/// The network's CA and the revocation lists in force, which directives' signatures are
/// checked against: replaced in the core's handle as the lists change.
fn trust_following(
    config: &Config,
    revocations: &tls::Revocations,
    stop: CancellationToken,
) -> anyhow::Result<isms_core::TrustHandle> {
    let ca: Vec<Vec<u8>> = tls::load_certs(&config.tls.ca)?
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
    let domain = config.trust_domain.clone();
    let build = move |crls: &isms_transport::revocation::Crls| {
        isms_domain::signature::Trust::new(&ca, &crls.ders(), &domain)
    };
    let first = build(&revocations.current())
        .map_err(|e| anyhow::anyhow!("config field `tls.ca` or `tls.crl`: {e}"))?;
    let handle: isms_core::TrustHandle = Arc::new(std::sync::RwLock::new(Arc::new(first)));
    let mut lists = revocations.subscribe();
    let updated = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                r = lists.changed() => if r.is_err() { return },
            }
            let crls = lists.borrow_and_update().clone();
            match build(&crls) {
                Ok(trust) => {
                    if let Ok(mut t) = updated.write() {
                        *t = Arc::new(trust);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "signatures still checked with the lists before")
                }
            }
        }
    });
    Ok(handle)
}

/// Refuses to start with a certificate that does not prove this node's ID: every peer would
/// refuse it anyway, with a less helpful message.
fn check_own_certificate(config: &Config) -> anyhow::Result<()> {
    let certs = tls::load_certs(&config.tls.cert)?;
    let leaf = certs
        .first()
        .ok_or_else(|| anyhow::anyhow!("config field `tls.cert`: no certificate"))?;
    match Identity::from_cert_der(leaf.as_ref(), &config.trust_domain) {
        Some(Identity::Node(id)) if id == config.node_id => Ok(()),
        other => anyhow::bail!(
            "config field `tls.cert`: the certificate proves {}, not {} in trust domain {}",
            other.map_or_else(|| "no identity".to_string(), |i| i.to_string()),
            config.node_id,
            config.trust_domain
        ),
    }
}

/// `NAME serve --config FILE`: loads and validates the configuration, starts telemetry,
/// binds, runs the node until SIGTERM or SIGINT, drains, and returns the exit code.
pub fn serve(
    binary: &str,
    tier: isms_domain::identity::Tier,
    config_path: &std::path::Path,
) -> i32 {
    // A panic in any task or thread must not leave a half-alive node that acknowledges
    // nothing: log it and abort, the supervisor restarts us, and the store recovers.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let config = match Config::load(config_path) {
        Ok(c) if c.tier() == tier => c,
        Ok(c) => {
            eprintln!(
                "error: config field `node_id`: {} is not a {tier} node; use {}-node",
                c.node_id,
                c.tier()
            );
            return 1;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    // Before the runtime and the store start their threads, which inherit it.
    let scheduled = crate::scheduling::apply(config.scheduling);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(async {
        let telemetry = crate::telemetry::init(binary, config.node_id.as_str(), &config.telemetry)?;
        match &scheduled {
            Ok(()) => tracing::debug!(scheduling = ?config.scheduling, "scheduling policy"),
            Err(e) => tracing::warn!(error = %e, "scheduling: keeping the inherited policy"),
        }
        let result = async {
            let listener = TcpListener::bind(config.listen).await.map_err(|e| {
                anyhow::anyhow!("config field `listen`: cannot bind {}: {e}", config.listen)
            })?;
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            let clock: Arc<dyn Clock> = match &config.testing.clock_file {
                Some(path) => {
                    tracing::warn!(file = %path.display(), "testing clock: time is read from a file");
                    Arc::new(isms_domain::clock::FileClock::new(path.clone()))
                }
                None => Arc::new(SystemClock),
            };
            run_with_clock(config, listener, shutdown, clock).await
        }
        .await;
        if let Err(e) = &result {
            tracing::error!(error = %format!("{e:#}"), "node failed");
        }
        tokio::task::block_in_place(|| telemetry.shutdown());
        result
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// How often the roster file is checked for a change, besides SIGHUP.
const ROSTER_CHECK: Duration = Duration::from_secs(2);

/// Reloads the roster on SIGHUP and when its file changes; a roster that does not load
/// keeps the one in force, with the error in the log. Each reload is audited.
async fn reload_roster(roster: RosterHandle, core: CoreHandle, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Some(path) = roster.path().map(std::path::Path::to_path_buf) else {
        return;
    };
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&path);
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGHUP handler; the roster reloads when its file changes");
            None
        }
    };
    let mut every = tokio::time::interval(ROSTER_CHECK);
    loop {
        let why = tokio::select! {
            _ = stop.cancelled() => return,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
            _ = every.tick() => {
                let now = modified(&path);
                if now == seen { continue; }
                seen = now;
                "file changed"
            }
        };
        let outcome = match roster.reload() {
            Ok(operators) => {
                tracing::info!(roster = %path.display(), operators, why, "roster reloaded");
                format!("reloaded ({why}): {operators} operators")
            }
            Err(e) => {
                tracing::error!(roster = %path.display(), error = %e, why, "roster not reloaded; the one in force stays");
                format!("kept the roster in force ({why}): {e}")
            }
        };
        let subject = path.display().to_string();
        if core
            .audit(Caller::node(), "roster.reload".into(), subject, outcome)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}

/// The core's four-eyes policy from the config's `[four_eyes]` (O-6).
fn four_eyes(c: &isms_config::FourEyes) -> Option<FourEyesPolicy> {
    c.enabled.then(|| FourEyesPolicy {
        major: MajorRule {
            to_all: c.to_all,
            emergency: c.emergency,
            max_rules: c.max_rules,
            revocation_of_major: c.revocation_of_major,
        },
        expires_after_ms: i64::try_from(c.expires_after.as_millis()).unwrap_or(i64::MAX),
    })
}

//! The node's part in the network view (O-1, R-10.1): the view started from what the store
//! recorded, the heartbeats its link sessions send and take, and the ticker that judges
//! children's silence and hands each change of state to the core to record once.
//!
//! Must not: record anything itself (the core does), or hold a link session waiting.

use std::sync::Arc;
use std::time::Duration;

use isms_config::Config;
use isms_core::{CoreHandle, Shared};
use isms_network::{Collector, Heartbeats, Known, NetworkView, Window};
use tokio_util::sync::CancellationToken;

/// The view of this node and its heartbeats, and the ticker's task.
pub fn start(
    config: &Config,
    shared: &Arc<Shared>,
    core: CoreHandle,
    stop: CancellationToken,
) -> anyhow::Result<(Arc<Heartbeats>, tokio::task::JoinHandle<()>)> {
    let interval_ms = i64::try_from(config.health.interval.as_millis()).unwrap_or(i64::MAX);
    let known = isms_core::stored_liveness(&shared.store)?
        .into_iter()
        .map(|(node, l)| Known {
            node,
            liveness: l.liveness(),
            parent: l.parent,
            since_ms: l.since_ms,
        })
        .collect();
    let children: Vec<String> = config.children.iter().map(|c| c.id.to_string()).collect();
    let view = Arc::new(NetworkView::new(
        shared.node_id.as_str(),
        &children,
        interval_ms,
        known,
        shared.now_ms(),
    ));
    let collector = Collector::new(
        env!("CARGO_PKG_VERSION"),
        config.data_dir.clone(),
        interval_ms,
    );
    let beats = Arc::new(Heartbeats::new(view.clone(), collector, shared.clone()));
    let beats_for_faults = beats.clone();
    let limits = Limits {
        enforcement_ms: i64::try_from(config.health.enforcement_fault_after.as_millis())
            .unwrap_or(i64::MAX),
        disk_free_min_percent: u64::from(config.health.disk_free_min_percent),
    };
    let shared = shared.clone();
    // Silence is judged a few times per interval, so a change shows within a fraction of
    // one; never less often than every second.
    let every = (config.health.interval / 4).min(Duration::from_secs(1));
    let ticker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = shared.now_ms();
            match isms_core::stored_upgrades(&shared.store) {
                Ok(notices) => view.set_windows(
                    notices
                        .into_iter()
                        .filter(|n| n.at_ms + n.duration_ms > now)
                        .map(|n| Window {
                            start_ms: n.at_ms,
                            end_ms: n.at_ms + n.duration_ms,
                            node: n.node,
                        })
                        .collect(),
                ),
                Err(e) => tracing::warn!(error = %e, "upgrade windows not read"),
            }
            view.tick(now);
            if let Err(e) = raise_automatic_faults(&beats_for_faults, &core, &limits).await {
                tracing::warn!(error = %e, "automatic faults not checked");
            }
            let changes = view.take_changes();
            if changes.is_empty() {
                continue;
            }
            if let Err(e) = core.liveness(changes).await {
                tracing::error!(error = %e, "changes of nodes' liveness not recorded");
            }
        }
    });
    Ok((beats, ticker))
}

/// When this node raises a fault on its own (`[health]`).
struct Limits {
    enforcement_ms: i64,
    disk_free_min_percent: u64,
}

/// Raises a fault for each condition that calls for one: enforcement
/// points failing longer than allowed, free disk under the minimum. The core keeps one
/// open per kind, so raising again while one is open changes nothing.
async fn raise_automatic_faults(
    beats: &Heartbeats,
    core: &CoreHandle,
    limits: &Limits,
) -> Result<(), isms_core::error::NodeError> {
    let own = beats.own();
    let Some(h) = own.health else {
        return Ok(());
    };
    let now = own.heard_at_ms;
    let mut raise = Vec::new();
    if h.enforcement_failing_since_ms > 0
        && now - h.enforcement_failing_since_ms >= limits.enforcement_ms
    {
        raise.push((
            "enforcement",
            "major",
            "enforcement points failing".to_string(),
            h.enforcement_error.clone(),
        ));
    }
    if h.disk_total_bytes > 0
        && h.disk_free_bytes.saturating_mul(100) < h.disk_total_bytes * limits.disk_free_min_percent
    {
        raise.push((
            "disk",
            "critical",
            "disk nearly full".to_string(),
            format!(
                "{} MiB free of {} MiB on the store's file system",
                h.disk_free_bytes >> 20,
                h.disk_total_bytes >> 20
            ),
        ));
    }
    for (kind, severity, summary, detail) in raise {
        let action = isms_core::ReportAction::Fault {
            severity: severity.into(),
            summary,
            detail,
            automatic: Some(kind.into()),
        };
        let reply = core.report(action, isms_core::Caller::node()).await?;
        if reply.note.is_empty() {
            tracing::error!(fault = %reply.id, kind, "fault raised");
        }
    }
    Ok(())
}

/// Where a node that stopped on a failure of its store leaves word of it, beside the
/// store's files: the store itself may be what failed.
fn failure_marker(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("isms-failure.txt")
}

/// Leaves word that the node stopped on a failure of its core (store or bug), for the next
/// start to report. Best effort: a disk that failed may not take it either.
pub fn mark_failure(data_dir: &std::path::Path, now_ms: i64) {
    let text = format!(
        "the node stopped on a failure of its store or core at {now_ms} (Unix ms); its log \
         says why"
    );
    if let Err(e) = std::fs::write(failure_marker(data_dir), text) {
        tracing::error!(error = %e, "could not leave word of the failure");
    }
}

/// At start: a failure the last run left word of is reported as a fault,
/// and the word removed once the fault is durable.
pub async fn report_last_failure(data_dir: &std::path::Path, core: &CoreHandle) {
    let marker = failure_marker(data_dir);
    let Ok(detail) = std::fs::read_to_string(&marker) else {
        return;
    };
    let action = isms_core::ReportAction::Fault {
        severity: "critical".into(),
        summary: "the node stopped on a store failure".into(),
        detail,
        automatic: Some("store".into()),
    };
    match core.report(action, isms_core::Caller::node()).await {
        Ok(reply) => {
            tracing::error!(fault = %reply.id, "the last run's store failure reported as a fault");
            if let Err(e) = std::fs::remove_file(&marker) {
                tracing::warn!(error = %e, "word of the failure not removed; reported again next start");
            }
        }
        Err(e) => tracing::error!(error = %e, "the last run's store failure not reported"),
    }
}

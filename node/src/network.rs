//! The node's part in the network view (O-1, R-10.1): the view started from what the store
//! recorded, the heartbeats its link sessions send and take, and the ticker that judges
//! children's silence and hands each change of state to the core to record once.
//!
//! Must not: record anything itself (the core does), or hold a link session waiting.

use std::sync::Arc;
use std::time::Duration;

use isms_config::Config;
use isms_core::{CoreHandle, Shared};
use isms_network::{Collector, Heartbeats, Known, NetworkView};
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
            view.tick(shared.now_ms());
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

//! An enterprise's access-log ingest: the `access_log` feed (JSON lines) tailed
//! every second into the Parquet partitions of `[access_logs]`, hours compacted once over,
//! and the retention applied hourly. How far the feed was read is recorded beside the
//! partitions after each append, and in the part files themselves, so a restart neither
//! skips records nor takes them twice.
//!
//! Must not: block the core (it runs on its own blocking task), or drop a record it could
//! not store (it tries again from the same place).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use isms_config::AccessLogs;
use isms_core::Shared;
use isms_data::AccessLogStore;
use tokio_util::sync::CancellationToken;

/// How far the feed was read, beside the partitions.
fn mark_file(dir: &Path) -> PathBuf {
    dir.join("ingest.mark")
}

fn read_mark(dir: &Path, store: &AccessLogStore) -> u64 {
    let recorded = std::fs::read_to_string(mark_file(dir))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    recorded.max(store.last_mark().unwrap_or(0))
}

fn write_mark(dir: &Path, mark: u64) -> std::io::Result<()> {
    let tmp = dir.join("ingest.mark.tmp");
    std::fs::write(&tmp, mark.to_string())?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(tmp, mark_file(dir))
}

/// Starts the ingest; the store queries are answered from.
pub fn start(
    keep: &AccessLogs,
    feed: Option<PathBuf>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> anyhow::Result<(AccessLogStore, tokio::task::JoinHandle<()>)> {
    let store = AccessLogStore::open(&keep.dir)
        .map_err(|e| anyhow::anyhow!("config field `access_logs.dir`: {e}"))?;
    let dir = keep.dir.clone();
    let max_age_ms = i64::from(keep.retention_days) * 86_400_000;
    let max_bytes = if keep.max_bytes == 0 {
        u64::MAX
    } else {
        keep.max_bytes
    };
    let ingest = store.clone();
    let task = tokio::spawn(async move {
        let mut mark = read_mark(&dir, &ingest);
        let mut retained_at = 0i64;
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let now = shared.now_ms();
            let (store, dir, feed) = (ingest.clone(), dir.clone(), feed.clone());
            let step = tokio::task::spawn_blocking(move || -> Result<u64, String> {
                let mut next = mark;
                if let Some(feed) = &feed
                    && feed.exists()
                {
                    let (records, to) = isms_domain::access_log::read_since(feed, mark)?;
                    if !records.is_empty() {
                        store
                            .append_marked(&records, to)
                            .map_err(|e| e.to_string())?;
                    }
                    if to != mark {
                        write_mark(&dir, to).map_err(|e| format!("ingest mark: {e}"))?;
                    }
                    next = to;
                }
                store.compact(now).map_err(|e| e.to_string())?;
                Ok(next)
            })
            .await;
            match step {
                Ok(Ok(next)) => mark = next,
                Ok(Err(e)) => tracing::error!(error = %e, "access logs not ingested; tried again"),
                Err(e) => tracing::error!(error = %e, "access-log ingest task failed"),
            }
            if now - retained_at >= 3_600_000 {
                retained_at = now;
                match ingest.retain(now, max_age_ms, max_bytes) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(hours = n, "access logs past their retention dropped"),
                    Err(e) => tracing::error!(error = %e, "access-log retention failed"),
                }
            }
        }
    });
    Ok((store, task))
}

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

/// Longest line the socket takes: a record is a few hundred bytes.
const MAX_LINE: u64 = 64 * 1024;
/// Most records one socket batch stores before it answers.
const BATCH: usize = 10_000;

/// The socket ingest (`access_log_socket`): senders connect to a Unix socket and write
/// records as JSON lines (the feed's shape). Each batch is stored durably in the partitions
/// before the node answers `ok N` (N records stored); a line that is not a record is
/// answered `error line L: why` and not stored; a line over 64 KiB ends the connection.
pub fn start_socket(
    path: &Path,
    store: AccessLogStore,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    // A socket file left by a node that stopped is in the way of the new one.
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| {
        anyhow::anyhow!("config field `access_log_socket` ({}): {e}", path.display())
    })?;
    tracing::info!(socket = %path.display(), "access-log socket listening");
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_sender(stream, store.clone(), stop.clone()));
                    }
                    Err(e) => tracing::warn!(error = %e, "access-log socket: accept failed"),
                },
            }
        }
    }))
}

async fn serve_sender(
    stream: tokio::net::UnixStream,
    store: AccessLogStore,
    stop: CancellationToken,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line_no = 0u64;
    let mut ended = false;
    while !ended && !stop.is_cancelled() {
        let mut batch = Vec::new();
        let mut replies = String::new();
        // The first line waits; the batch then takes what has already arrived.
        let mut wait = true;
        while batch.len() < BATCH {
            let mut buf = Vec::new();
            let read = if wait {
                (&mut reader)
                    .take(MAX_LINE + 1)
                    .read_until(b'\n', &mut buf)
                    .await
            } else {
                match tokio::time::timeout(
                    Duration::from_millis(5),
                    (&mut reader).take(MAX_LINE + 1).read_until(b'\n', &mut buf),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) if buf.is_empty() => break,
                    // A line half-read when the pause ran out: finish it.
                    Err(_) => {
                        (&mut reader)
                            .take(MAX_LINE + 1)
                            .read_until(b'\n', &mut buf)
                            .await
                    }
                }
            };
            wait = false;
            match read {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(_) if buf.len() as u64 > MAX_LINE => {
                    line_no += 1;
                    replies.push_str(&format!(
                        "error line {line_no}: longer than {MAX_LINE} bytes; connection closed\n"
                    ));
                    ended = true;
                    break;
                }
                Ok(_) => {
                    line_no += 1;
                    let text = String::from_utf8_lossy(&buf);
                    if text.trim().is_empty() {
                        continue;
                    }
                    match isms_domain::access_log::parse_line(text.trim()) {
                        Ok(record) => batch.push(record),
                        Err(why) => replies.push_str(&format!("error line {line_no}: {why}\n")),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "access-log socket: read failed");
                    ended = true;
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let store = store.clone();
            let stored = tokio::task::spawn_blocking(move || store.append(&batch)).await;
            match stored {
                Ok(Ok(n)) => replies.push_str(&format!("ok {n}\n")),
                Ok(Err(e)) => replies.push_str(&format!("error: not stored, send again: {e}\n")),
                Err(e) => replies.push_str(&format!("error: not stored, send again: {e}\n")),
            }
        }
        if !replies.is_empty() && write.write_all(replies.as_bytes()).await.is_err() {
            return;
        }
    }
}

//! An enterprise's scheduled data reading (`[data_export]`, R-5.1): the file its own
//! systems export is read at start and then every `every`; a reading that says something
//! other than the data last submitted is submitted as a new version, by `node`, and goes
//! up like one an operator submitted.
//!
//! Must not: submit the same data twice (each reading is compared with the version the
//! store holds, so a restart after a submission does not repeat it), or stop on a bad
//! file (it says why in the log and reads again at the next turn).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use isms_config::DataExport;
use isms_core::{Caller, CoreHandle, ReportAction, Shared};
use isms_data::submission::MAX_SUBMISSION_BYTES;
use isms_domain::records::{self, decode};
use isms_proto::v1::ResourceReport;
use tokio_util::sync::CancellationToken;

/// Starts the reading; it ends when `stop` is cancelled.
pub fn start(
    export: &DataExport,
    shared: Arc<Shared>,
    core: CoreHandle,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let file = export.file.clone();
    let every = export.every;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // What the last failed reading said, so a file that stays bad is logged once.
        let mut last_failure = String::new();
        let mut first = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match read_and_submit(&file, &shared, &core).await {
                Ok(Some(version)) => {
                    last_failure.clear();
                    tracing::info!(file = %file.display(), version, "exported data submitted (R-5.1)");
                }
                Ok(None) => {
                    if first {
                        tracing::info!(file = %file.display(), "exported data read: unchanged since the version last submitted");
                    }
                    last_failure.clear();
                }
                Err(why) if why != last_failure => {
                    tracing::warn!(file = %file.display(), error = %why, "exported data not submitted");
                    last_failure = why;
                }
                Err(_) => {}
            }
            first = false;
        }
    })
}

/// Reads the file and submits it if it differs from the stored version: the new version,
/// or none when nothing changed.
async fn read_and_submit(
    file: &Path,
    shared: &Shared,
    core: &CoreHandle,
) -> Result<Option<u64>, String> {
    let path: PathBuf = file.to_path_buf();
    let report = tokio::task::spawn_blocking(move || read(&path))
        .await
        .map_err(|e| e.to_string())??;
    if same_as_submitted(shared, &report)? {
        return Ok(None);
    }
    let reply = core
        .report(ReportAction::Data(Box::new(report)), Caller::node())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(reply.id.parse().unwrap_or_default()))
}

fn read(path: &Path) -> Result<ResourceReport, String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > MAX_SUBMISSION_BYTES as u64 {
        return Err(format!(
            "{size} bytes; at most {MAX_SUBMISSION_BYTES} are taken"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    isms_data::parse(&bytes).map_err(|e| e.to_string())
}

/// Whether `report` says what the version this enterprise last submitted says.
fn same_as_submitted(shared: &Shared, report: &ResourceReport) -> Result<bool, String> {
    let key = records::data_report(shared.node_id.as_str());
    let Some(bytes) = shared.store.get(&key).map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    let mut stored: ResourceReport = decode(&key, &bytes).map_err(|e| e.to_string())?;
    stored.enterprise.clear();
    stored.version = 0;
    stored.submitted_at_ms = 0;
    stored.by.clear();
    Ok(&stored == report)
}

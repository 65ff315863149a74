//! The enforcer: converges the points on a thread of its own, so a resolver's reload (half a
//! second for 50,000 names) or a hook up to its timeout never holds the node's core. It
//! takes the newest rule set asked for (an older one still waiting is skipped: the newer
//! includes it), reports every attempt's outcome, and retries a failure with backoff until
//! it succeeds or a newer set arrives.
//!
//! Must not: decide what is in force (it is handed the set), or report an outcome for a set
//! it did not try.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::{Points, Rule};

/// The first pause before a failed convergence is tried again, and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

struct Job {
    version: u64,
    now_ms: i64,
    rules: Vec<Rule>,
}

/// Hands rule sets to the enforcer thread; the thread ends when this is dropped.
#[derive(Debug)]
pub struct Enforcer {
    tx: mpsc::Sender<Job>,
}

impl Enforcer {
    /// Starts the thread; `report(version, outcome)` is called after each attempt.
    pub fn spawn(
        mut points: Points,
        report: impl Fn(u64, Result<(), String>) + Send + 'static,
    ) -> std::io::Result<Enforcer> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("isms-enforce".into())
            .spawn(move || {
                let mut current: Option<Job> = None;
                let mut pause = RETRY_FIRST;
                loop {
                    let arrived = match &current {
                        None => match rx.recv() {
                            Ok(job) => Some(job),
                            Err(_) => return,
                        },
                        Some(_) => match rx.recv_timeout(pause) {
                            Ok(job) => Some(job),
                            Err(RecvTimeoutError::Timeout) => None,
                            Err(RecvTimeoutError::Disconnected) => return,
                        },
                    };
                    if let Some(job) = arrived {
                        current = Some(job);
                        pause = RETRY_FIRST;
                        // Only the newest set matters.
                        while let Ok(newer) = rx.try_recv() {
                            current = Some(newer);
                        }
                    }
                    let Some(job) = &current else { continue };
                    let outcome = points.converge(job.version, job.now_ms, &job.rules);
                    let done = outcome.is_ok();
                    if !done {
                        tracing::warn!(version = job.version, retry_in = ?pause, "enforcement retried");
                    }
                    report(job.version, outcome);
                    if done {
                        current = None;
                    } else {
                        pause = (pause * 2).min(RETRY_MAX);
                    }
                }
            })?;
        Ok(Enforcer { tx })
    }

    /// Asks for the points to enforce `rules` (rule-set `version`).
    pub fn converge(&self, version: u64, now_ms: i64, rules: Vec<Rule>) {
        // The thread ends only when this handle is dropped.
        let _ = self.tx.send(Job {
            version,
            now_ms,
            rules,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isms_config::Enforcement;

    #[test]
    fn a_failure_is_retried_until_the_point_takes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be: the rename fails until it is removed.
        let path = dir.path().join("rules.json");
        std::fs::create_dir(&path).expect("mkdir");
        let points = Points::from_config(
            &[Enforcement::File {
                path: path.clone(),
                kinds: vec!["domain".into()],
            }],
            None,
        );
        let (tx, rx) = mpsc::channel();
        let enforcer = Enforcer::spawn(points, move |v, r| {
            let _ = tx.send((v, r));
        })
        .expect("spawn");
        enforcer.converge(1, 0, Vec::new());
        let (v, first) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("an outcome");
        assert_eq!(v, 1);
        assert!(first.expect_err("cannot write").contains("not written"));
        std::fs::remove_dir(&path).expect("rmdir");
        // Retries go on (a busy machine may fit one more failure in) until one succeeds.
        let mut outcome = Err(String::new());
        for _ in 0..10 {
            let (v, r) = rx.recv_timeout(Duration::from_secs(70)).expect("a retry");
            assert_eq!(v, 1);
            outcome = r;
            if outcome.is_ok() {
                break;
            }
        }
        assert_eq!(outcome, Ok(()));
        assert!(path.is_file());
    }
}

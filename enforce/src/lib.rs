//! Enforcement points: where an enterprise's rules in force take effect. Each
//! point is given, for the rule kinds it enforces, the whole set in force and converges to
//! it, confirming it took (a resolver answers a blocked name as blocked, the nftables set
//! lists the addresses, a hook exits 0, a file is synced): only then is a directive
//! `executed`. `file` writes the JSON rules file; `rpz` an RPZ zone for a resolver;
//! `nftables` interval sets; `hook` hands each change to a command.
//!
//! Must not: read the node's store or decide what is in force (the core does, and hands the
//! set over), or keep a point's failure from the others: each is converged and reported.

use std::collections::BTreeSet;
use std::path::Path;

use isms_config::Enforcement;

mod enforcer;
mod file;
pub use enforcer::Enforcer;
pub use file::RuleFile;
mod hook;
mod nft;
mod rpz;

/// One rule in force, as points and the rules file see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Rule {
    pub directive: String,
    /// `block` (disposal) or `monitor` (observe and report).
    pub action: String,
    /// What is matched: `domain`, `url`, `ip` or `keyword`.
    pub kind: String,
    pub value: String,
    pub issuer: String,
    pub applied_at_ms: i64,
    /// When it took or takes effect, and when it lapses (0: never), Unix ms.
    pub effective_at_ms: i64,
    pub expires_at_ms: i64,
}

impl Rule {
    pub fn blocks(&self) -> bool {
        self.action == "block"
    }
}

/// What a point converges to: the rules in force of its kinds.
pub struct Change<'a> {
    /// The rule set's version: grows with every change (an RPZ zone's SOA serial).
    pub version: u64,
    pub now_ms: i64,
    pub rules: &'a [&'a Rule],
}

/// One place rules take effect.
pub trait Point: Send {
    fn name(&self) -> &'static str;
    /// Makes the point enforce exactly `change.rules` and checks that it does; the error
    /// says what the point itself said.
    fn converge(&mut self, change: &Change<'_>) -> Result<(), String>;
    /// Whether the point is given every change, not only those that change its set of
    /// (kind, value, action): a file also carries the rules' directives and times.
    fn wants_every_change(&self) -> bool {
        false
    }
}

/// A point with the rule kinds it is given, and what it was last converged to.
struct Configured {
    point: Box<dyn Point>,
    kinds: BTreeSet<String>,
    /// The set it last confirmed (kind, value, action); none until the first success, so
    /// the first convergence after a start always runs.
    confirmed: Option<BTreeSet<(String, String, String)>>,
}

/// An enterprise's enforcement points.
pub struct Points {
    points: Vec<Configured>,
}

impl std::fmt::Debug for Points {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.points.iter().map(|p| p.point.name()).collect();
        write!(f, "Points{names:?}")
    }
}

impl Points {
    /// The points of a config's `[[enforcement]]`; none configured: the rules file alone,
    /// for every kind, at `rules_file` (if any).
    pub fn from_config(points: &[Enforcement], rules_file: Option<&Path>) -> Points {
        let mut out: Vec<Configured> = points
            .iter()
            .map(|c| Configured {
                point: build(c),
                kinds: c.kinds().iter().cloned().collect(),
                confirmed: None,
            })
            .collect();
        if out.is_empty()
            && let Some(path) = rules_file
        {
            out.push(Configured {
                point: Box::new(file::FilePoint::new(path.to_path_buf())),
                kinds: isms_config::RULE_KIND_NAMES
                    .iter()
                    .map(|k| k.to_string())
                    .collect(),
                confirmed: None,
            });
        }
        Points { points: out }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Converges every point whose share of `rules` changed since it last confirmed (or
    /// that never did); `Err` names each point that failed and why.
    pub fn converge(&mut self, version: u64, now_ms: i64, rules: &[Rule]) -> Result<(), String> {
        let mut failures = Vec::new();
        for p in &mut self.points {
            let mine: Vec<&Rule> = rules.iter().filter(|r| p.kinds.contains(&r.kind)).collect();
            let key: BTreeSet<(String, String, String)> = mine
                .iter()
                .map(|r| (r.kind.clone(), r.value.clone(), r.action.clone()))
                .collect();
            if !p.point.wants_every_change() && p.confirmed.as_ref() == Some(&key) {
                continue;
            }
            let change = Change {
                version,
                now_ms,
                rules: &mine,
            };
            match p.point.converge(&change) {
                Ok(()) => {
                    tracing::info!(
                        point = p.point.name(),
                        rules = mine.len(),
                        version,
                        "enforcement point converged"
                    );
                    p.confirmed = Some(key);
                }
                Err(why) => {
                    tracing::error!(point = p.point.name(), error = %why, version, "enforcement point failed");
                    failures.push(format!("{}: {why}", p.point.name()));
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

fn build(c: &Enforcement) -> Box<dyn Point> {
    match c {
        Enforcement::File { path, .. } => Box::new(file::FilePoint::new(path.clone())),
        Enforcement::Rpz {
            zone,
            zone_file,
            reload,
            verify_with,
            cname,
            wildcards,
            ..
        } => Box::new(rpz::RpzPoint {
            zone: zone.clone(),
            zone_file: zone_file.clone(),
            reload: reload.clone(),
            verify_with: *verify_with,
            cname: cname.clone(),
            wildcards: *wildcards,
        }),
        Enforcement::Nftables {
            family,
            table,
            set_v4,
            set_v6,
            nft,
            ..
        } => Box::new(nft::NftPoint {
            family: family.clone(),
            table: table.clone(),
            set_v4: set_v4.clone(),
            set_v6: set_v6.clone(),
            nft: nft.clone(),
        }),
        Enforcement::Hook {
            command, timeout, ..
        } => Box::new(hook::HookPoint::new(command.clone(), *timeout)),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, renamed over
/// it, and the directory synced.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("enforce")
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Runs `argv` to completion (at most `timeout`), with `input` on its standard input; the
/// error carries its exit status and the end of what it printed.
pub fn run_command(
    argv: &[String],
    input: Option<Vec<u8>>,
    timeout: std::time::Duration,
) -> Result<String, String> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use wait_timeout::ChildExt;
    let (program, args) = argv.split_first().ok_or("no command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Fed and drained by threads: a child that neither reads all its input nor stops
    // writing must not block us past the timeout.
    let feeder = match (input, child.stdin.take()) {
        (Some(bytes), Some(mut stdin)) => Some(std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })),
        _ => None,
    };
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut out);
            }
            out
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = match child.wait_timeout(timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{program} did not finish within {}s and was killed",
                timeout.as_secs_f64()
            ));
        }
        Err(e) => return Err(format!("waiting for {program}: {e}")),
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        let said = format!("{} {}", out.trim(), err.trim());
        let said = said.trim();
        let tail: String = said
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(format!("{program} exited with {status}: {tail}"))
    }
}

//! A run's figures as a file (`--json FILE`: every figure with all its samples, the
//! machine, the commit and the time) and `isms-bench compare A.json B.json`: each figure
//! side by side with the ratio, and whether the two runs' samples overlap. A design change
//! is judged by alternated pairs of runs; a difference inside the spread is noise.
//!
//! Must not: run anything (it reads what runs wrote).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One figure of a run: its samples and their median and p99.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Figure {
    pub(crate) figure: String,
    pub(crate) unit: String,
    pub(crate) median: f64,
    pub(crate) p99: f64,
    /// Every sample (older files hold only their count: none here).
    #[serde(default, deserialize_with = "samples_or_count")]
    pub(crate) samples: Vec<f64>,
}

/// Files written before the samples were kept have their count in `samples`.
fn samples_or_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Samples(Vec<f64>),
        // Only how many there were: the samples themselves are lost.
        Count(#[allow(dead_code)] u64),
    }
    Ok(match Either::deserialize(d)? {
        Either::Samples(s) => s,
        Either::Count(_) => Vec::new(),
    })
}

/// A run as its file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) machine: String,
    pub(crate) commit: String,
    /// The build that ran, which `--bin-dir` may take from elsewhere than the checkout:
    /// the first 12 hex digits of `ministry-node`'s SHA-256 and its directory (or the
    /// peer's server and version).
    #[serde(default)]
    pub(crate) binaries: String,
    /// RFC 3339.
    pub(crate) at: String,
    pub(crate) enterprises: usize,
    pub(crate) figures: Vec<Figure>,
}

impl Run {
    pub(crate) fn read(path: &Path) -> anyhow::Result<Run> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        // Files of the earlier shape: the figures alone.
        if let Ok(figures) = serde_json::from_str::<Vec<Figure>>(&text) {
            return Ok(Run {
                machine: "unknown".into(),
                commit: "unknown".into(),
                binaries: String::new(),
                at: "unknown".into(),
                enterprises: 0,
                figures,
            });
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a run of isms-bench --json", path.display()))
    }
}

fn built(run: &Run) -> String {
    if run.binaries.is_empty() {
        String::new()
    } else {
        format!(", binaries {}", run.binaries)
    }
}

/// Which build is in `bin_dir`: `ministry-node`'s SHA-256 (12 hex digits) and the
/// directory, so two runs of one checkout with `--bin-dir` still say which build each was.
pub(crate) fn binaries(bin_dir: &Path) -> String {
    let path = bin_dir.join("ministry-node");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
            let hex: String = digest.as_ref()[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("ministry-node {hex} in {}", bin_dir.display())
        }
        Err(e) => format!("{}: {e}", path.display()),
    }
}

/// The commit the bench was built from, if it runs in a git checkout.
pub(crate) fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// How a figure of B stands against the same figure of A.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// The samples' ranges overlap: within the spread of the runs.
    Noise,
    /// B's samples are all above A's, or all below.
    Beyond,
    /// A run kept no samples, or only one each: the spread is unknown.
    Unknown,
}

pub(crate) fn verdict(a: &[f64], b: &[f64]) -> Verdict {
    let range = |v: &[f64]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                (lo.min(*x), hi.max(*x))
            })
    };
    if a.len() < 2 || b.len() < 2 {
        return Verdict::Unknown;
    }
    let ((alo, ahi), (blo, bhi)) = (range(a), range(b));
    if blo > ahi || bhi < alo {
        Verdict::Beyond
    } else {
        Verdict::Noise
    }
}

/// `compare`: a Markdown table of every figure of either run.
pub(crate) fn compare(a: &Run, b: &Run) -> String {
    let mut out = format!(
        "A: {} commit {}{} at {} ({} enterprises)\nB: {} commit {}{} at {} ({} enterprises)\n\n\
         | figure | A median | B median | B/A | spread |\n|---|---:|---:|---:|---|\n",
        a.machine,
        a.commit,
        built(a),
        a.at,
        a.enterprises,
        b.machine,
        b.commit,
        built(b),
        b.at,
        b.enterprises
    );
    let mut names: BTreeMap<&str, (Option<&Figure>, Option<&Figure>)> = BTreeMap::new();
    for f in &a.figures {
        names.entry(&f.figure).or_default().0 = Some(f);
    }
    for f in &b.figures {
        names.entry(&f.figure).or_default().1 = Some(f);
    }
    for (name, pair) in names {
        let line = match pair {
            (Some(x), Some(y)) => {
                let ratio = if x.median == 0.0 {
                    "—".to_string()
                } else {
                    format!("{:.2}", y.median / x.median)
                };
                let spread = match verdict(&x.samples, &y.samples) {
                    Verdict::Beyond => "beyond the spread",
                    Verdict::Noise => "within the spread (noise)",
                    Verdict::Unknown => "spread unknown",
                };
                format!(
                    "| {name} | {:.2} {} | {:.2} {} | {ratio} | {spread} |\n",
                    x.median, x.unit, y.median, y.unit
                )
            }
            (Some(x), None) => format!(
                "| {name} | {:.2} {} | — | — | only in A |\n",
                x.median, x.unit
            ),
            (None, Some(y)) => format!(
                "| {name} | — | {:.2} {} | — | only in B |\n",
                y.median, y.unit
            ),
            (None, None) => String::new(),
        };
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(name: &str, samples: &[f64]) -> Figure {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Figure {
            figure: name.into(),
            unit: "ms".into(),
            median: s[s.len() / 2],
            p99: s[s.len() - 1],
            samples: samples.to_vec(),
        }
    }

    fn run(figures: Vec<Figure>) -> Run {
        Run {
            binaries: String::new(),
            machine: "2 cores".into(),
            commit: "abc".into(),
            at: "2026-12-07T22:00:00Z".into(),
            enterprises: 4991,
            figures,
        }
    }

    #[test]
    fn overlapping_samples_are_noise_and_separate_ones_are_not() {
        assert_eq!(
            verdict(&[300.0, 350.0, 400.0], &[320.0, 410.0, 380.0]),
            Verdict::Noise
        );
        assert_eq!(
            verdict(&[300.0, 350.0, 400.0], &[100.0, 120.0, 150.0]),
            Verdict::Beyond
        );
        assert_eq!(verdict(&[300.0], &[100.0, 120.0]), Verdict::Unknown);
        let a = run(vec![
            figure("full-ack latency", &[300.0, 350.0, 400.0]),
            figure("gone", &[1.0, 2.0]),
        ]);
        let b = run(vec![
            figure("full-ack latency", &[100.0, 120.0, 150.0]),
            figure("new", &[1.0, 2.0]),
        ]);
        let table = compare(&a, &b);
        assert!(
            table.contains(
                "| full-ack latency | 350.00 ms | 120.00 ms | 0.34 | beyond the spread |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| gone | 1.50 ms") || table.contains("| gone | 2.00 ms"),
            "{table}"
        );
        assert!(
            table.contains("only in A") && table.contains("only in B"),
            "{table}"
        );
    }

    #[test]
    fn files_round_trip_and_the_earlier_shape_still_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.json");
        let r = run(vec![figure("throughput", &[7.0, 9.0, 11.0])]);
        std::fs::write(&path, serde_json::to_string(&r).expect("json")).expect("write");
        assert_eq!(Run::read(&path).expect("read"), r);
        std::fs::write(
            &path,
            r#"[{"figure": "throughput", "unit": "/s", "median": 9.0, "p99": 11.0, "samples": 3}]"#,
        )
        .expect("write");
        let old = Run::read(&path).expect("old shape");
        assert_eq!(old.figures[0].samples, Vec::<f64>::new());
        std::fs::write(&path, "{\"not\": \"a run\"}").expect("write");
        let e = Run::read(&path).expect_err("not a run").to_string();
        assert!(e.contains("not a run of isms-bench"), "{e}");
    }
}

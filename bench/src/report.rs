//! The figures of a run: quantiles, the Markdown table, and the CPU split per process.

use super::*;

/// Median and p99 of a sample (nearest rank).
pub(super) fn quantiles(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

pub(super) struct Figures {
    pub(super) rows: Vec<crate::results::Figure>,
}

impl Figures {
    pub(super) fn add(&mut self, name: &str, unit: &str, samples: Vec<f64>) {
        let n = samples.len();
        let (p50, p99) = quantiles(samples.clone());
        println!("  {name}: median {p50:.2} {unit}, p99 {p99:.2} {unit} ({n} samples)");
        self.rows.push(crate::results::Figure {
            figure: name.into(),
            unit: unit.into(),
            median: p50,
            p99,
            samples,
        });
    }
}

/// This machine as a run's file names it: cores and CPU model.
pub(super) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

pub(super) fn print_table(args: &Args, n: usize, figures: &Figures) {
    println!(
        "\n{} provinces x {} enterprises = {n}; {} runs; {}\n",
        args.provinces,
        args.per_province,
        args.runs,
        machine()
    );
    println!("| figure | median | p99 | samples |");
    println!("|---|---:|---:|---:|");
    for f in &figures.rows {
        let (name, unit, p50, p99) = (&f.figure, &f.unit, f.median, f.p99);
        println!(
            "| {name} | {p50:.2} {unit} | {p99:.2} {unit} | {} |",
            f.samples.len()
        );
    }
}

/// Prints CPU time per directive by process group, between two [`cpu_split`]s.
pub(super) fn print_cpu(before: [u64; 4], after: [u64; 4], directives: usize) {
    let per = |i: usize| (after[i] - before[i]) as f64 / directives.max(1) as f64;
    println!(
        "  CPU per directive: ministry {:.0} ms, provinces {:.0} ms, enterprise-node {:.0} ms, simulated enterprises {:.0} ms",
        per(0),
        per(1),
        per(2),
        per(3)
    );
}

/// CPU ms used so far by the ministry, all provinces, the real enterprise and this process.
pub(super) fn cpu_split(bench: &BenchNet, provinces: &[String], enterprise: &str) -> [u64; 4] {
    let of = |id: &str| bench.pid(id).map_or(0, net::cpu_ms);
    [
        of("ministry"),
        provinces.iter().map(|p| of(p)).sum(),
        of(enterprise),
        net::cpu_ms(std::process::id()),
    ]
}

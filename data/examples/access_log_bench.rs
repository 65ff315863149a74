//! The access-log store's benchmark (issue 38, R-9.1, R-9.2): ingest generated records
//! over some days, in time order and in batches as the node's ingest appends them, compact,
//! then time queries of 1 hour, 1 day and the whole period, each checked against the count
//! the generator knows. Run with
//! `cargo run --release -p isms-data --example access_log_bench -- 10000000 30`.

use std::time::Instant;

use isms_data::AccessLogStore;
use isms_proto::v1::{AccessLogQuery, AccessLogRecord};

/// 2026-11-01T00:00:00+08:00.
const START: i64 = 1_793_462_400_000;
const H: i64 = 3_600_000;
const BATCH: usize = 100_000;

/// Record `i` of `n`: in time order, as a filter's log is written, `span` ms in all.
fn record(i: u64, n: u64, span: i64) -> AccessLogRecord {
    let step = span as f64 / n as f64;
    let at = START + (i as f64 * step) as i64;
    AccessLogRecord {
        at_ms: at,
        src: format!("198.51.{}.{}", (i / 250) % 250, i % 250),
        src_port: 30_000 + u32::try_from(i % 30_000).unwrap_or(0),
        dst: format!("203.0.113.{}", i % 7),
        dst_port: if i.is_multiple_of(3) { 443 } else { 80 },
        protocol: "tcp".into(),
        url: format!("https://shop{}.example/p/{}", i % 97, i % 10_007),
    }
}

/// Records the generator made that a query of `[from, until)`, dst 203.0.113.3, port 443
/// matches: counted without keeping them.
fn expected(n: u64, span: i64, from: i64, until: i64) -> u64 {
    (0..n)
        .filter(|i| i % 7 == 3 && i.is_multiple_of(3))
        .filter(|i| {
            let at = record(*i, n, span).at_ms;
            at >= from && at < until
        })
        .count() as u64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(10_000_000), |a| a.parse())?;
    let days: i64 = args.next().map_or(Ok(30), |a| a.parse())?;
    let span = days * 24 * H;
    let dir = tempfile::tempdir()?;
    let store = AccessLogStore::open(dir.path())?;

    let t = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..n {
        batch.push(record(i, n, span));
        if batch.len() == BATCH {
            store.append_marked(&batch, i)?;
            batch.clear();
        }
    }
    store.append_marked(&batch, n)?;
    let ingest = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let hours = store.compact(START + span)?;
    let compact = t.elapsed().as_secs_f64();
    println!(
        "ingest: {n} records over {days} days in {ingest:.1} s ({:.0} records/s); compacted {hours} hours in {compact:.1} s; {:.1} MiB on disk ({:.1} bytes/record)",
        n as f64 / ingest,
        store.bytes() as f64 / (1 << 20) as f64,
        store.bytes() as f64 / n as f64
    );
    for (name, from, until) in [
        ("1 hour", START + 100 * H, START + 101 * H),
        ("1 day", START + 5 * 24 * H, START + 6 * 24 * H),
        ("whole period", START, START + span),
    ] {
        let q = AccessLogQuery {
            from_ms: from,
            until_ms: until,
            dst: vec!["203.0.113.3/32".into()],
            ports: vec![443],
            limit: 1000,
            ..Default::default()
        };
        let t = Instant::now();
        let (answer, scanned) = store.query(&q)?;
        let secs = t.elapsed().as_secs_f64();
        let want = expected(n, span, from, until);
        assert_eq!(answer.matched, want, "{name}");
        println!(
            "query {name}: {} matched (as generated) in {:.3} s; {} files, {} row groups read, {} skipped",
            answer.matched, secs, scanned.files, scanned.row_groups, scanned.row_groups_skipped
        );
    }
    Ok(())
}

//! The partitioned access-log store: queries equal a brute-force scan, read only what
//! their range touches, survive compaction, and retention drops whole hours.

use super::*;

const H: i64 = HOUR_MS;
/// 2026-11-01T00:00:00+08:00.
const START: i64 = 1_793_462_400_000;

/// `n` records over `hours` hours, deterministic.
fn records(n: usize, hours: i64) -> Vec<AccessLogRecord> {
    let span = hours * H;
    (0..n)
        .map(|i| {
            let i64i = i64::try_from(i).unwrap_or(0);
            AccessLogRecord {
                at_ms: START + (i64i * 7_919_993) % span,
                src: format!("198.51.100.{}", i % 250),
                src_port: 40_000 + u32::try_from(i % 1000).unwrap_or(0),
                dst: format!("203.0.113.{}", i % 7),
                dst_port: if i % 3 == 0 { 443 } else { 80 },
                protocol: "tcp".into(),
                url: format!("https://shop{}.example/p/{i}", i % 11),
            }
        })
        .collect()
}

fn query(from_ms: i64, until_ms: i64) -> AccessLogQuery {
    AccessLogQuery {
        from_ms,
        until_ms,
        dst: vec!["203.0.113.3/32".into()],
        ports: vec![443],
        limit: 1_000_000,
        ..Default::default()
    }
}

fn brute(all: &[AccessLogRecord], q: &AccessLogQuery) -> Vec<AccessLogRecord> {
    let mut v: Vec<_> = all
        .iter()
        .filter(|r| record_matches(q, r))
        .cloned()
        .collect();
    v.sort_by_key(|r| r.at_ms);
    v
}

#[test]
fn an_hour_query_answers_exactly_what_a_scan_finds_reading_only_that_hour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AccessLogStore::open(dir.path()).expect("open");
    let all = records(200_000, 48);
    for chunk in all.chunks(50_000) {
        store.append(chunk).expect("append");
    }
    let q = query(START + 5 * H + 600_000, START + 6 * H + 600_000);
    let (answer, scanned) = store.query(&q).expect("query");
    let want = brute(&all, &q);
    assert!(!want.is_empty());
    assert_eq!(answer.matched as usize, want.len());
    assert_eq!(answer.records, want);
    // Two hours of four parts each are touched, no other.
    assert_eq!(scanned.files, 8, "{scanned:?}");

    // Compacted, the same answer from one file per hour.
    let compacted = store.compact(START + 48 * H).expect("compact");
    assert_eq!(compacted, 48);
    let (again, scanned) = store.query(&q).expect("query");
    assert_eq!(again.records, want);
    assert_eq!(scanned.files, 2, "{scanned:?}");
    assert!(
        dir.path()
            .join("dt=2026-11-01/hour=05/data.parquet")
            .exists()
    );
}

#[test]
fn row_groups_outside_the_range_are_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AccessLogStore::open(dir.path()).expect("open");
    // 200,000 records in one hour: four row groups of sorted times after compaction.
    let all: Vec<AccessLogRecord> = records(200_000, 1);
    store.append(&all).expect("append");
    store.compact(START + H).expect("compact");
    let q = query(START, START + 60_000);
    let (answer, scanned) = store.query(&q).expect("query");
    assert_eq!(answer.records, brute(&all, &q));
    assert!(scanned.row_groups_skipped >= 2, "{scanned:?}");
}

#[test]
fn retention_drops_whole_hours_by_age_then_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AccessLogStore::open(dir.path()).expect("open");
    store.append(&records(10_000, 10)).expect("append");
    // Kept 5 hours after the 10th: the first 5 go.
    let dropped = store
        .retain(START + 10 * H, 5 * H, u64::MAX)
        .expect("retain");
    assert_eq!(dropped, 5);
    let q = AccessLogQuery {
        from_ms: START,
        until_ms: START + 10 * H,
        limit: 100_000,
        ..Default::default()
    };
    let (left, _) = store.query(&q).expect("query");
    assert!(left.records.iter().all(|r| r.at_ms >= START + 5 * H));
    assert!(!left.records.is_empty());
    // A size cap: the oldest go until it fits.
    let before = store.bytes();
    store
        .retain(START + 10 * H, i64::MAX / 2, before / 2)
        .expect("retain");
    assert!(
        store.bytes() <= before / 2,
        "{} > {}",
        store.bytes(),
        before / 2
    );
}

#[test]
fn a_compaction_cut_short_is_finished_and_nothing_is_lost_or_doubled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AccessLogStore::open(dir.path()).expect("open");
    let all = records(5_000, 1);
    store.append(&all[..2_500]).expect("append");
    store.append(&all[2_500..]).expect("append");
    let hour = dir.path().join("dt=2026-11-01/hour=00");
    // As a compaction that stopped after writing the merged file and removing one part.
    let parts = parts_of(&hour).expect("parts");
    let refs: Vec<&AccessLogRecord> = {
        let mut v: Vec<&AccessLogRecord> = all.iter().collect();
        v.sort_by_key(|r| r.at_ms);
        v
    };
    write_file(&hour.join("data.parquet.new"), &refs).expect("merged");
    std::fs::remove_file(&parts[0]).expect("remove");
    let q = AccessLogQuery {
        from_ms: START,
        until_ms: START + H,
        limit: 100_000,
        ..Default::default()
    };
    assert_eq!(store.query(&q).expect("query").0.matched, 5_000);
    store.compact(START + H).expect("compact");
    assert_eq!(store.query(&q).expect("query").0.matched, 5_000);
    assert_eq!(parts_of(&hour).expect("parts").len(), 1);
}

#[test]
fn part_files_carry_the_feed_mark_they_were_read_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AccessLogStore::open(dir.path()).expect("open");
    assert_eq!(store.last_mark().expect("mark"), 0);
    let all = records(100, 2);
    store.append_marked(&all[..50], 4_096).expect("append");
    store.append_marked(&all[50..], 9_000).expect("append");
    assert_eq!(store.last_mark().expect("mark"), 9_000);
}

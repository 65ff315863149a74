//! An enterprise's access logs kept as it must keep them: time-partitioned
//! columnar files, Apache Parquet with zstd, under `<dir>/dt=YYYY-MM-DD/hour=HH/` (China
//! Standard Time; the Hive layout DuckDB, Spark and ClickHouse read as they are). Records
//! are appended as part files, each written whole to a temporary name and renamed, so a
//! reader never sees half a file; once an hour is over its parts are compacted into one
//! `data.parquet`. A query opens only the hours its range touches and, in them,
//! only the row groups whose `at_ms` statistics overlap it. Retention drops whole hours,
//! the oldest first, past an age or a total size.
//!
//! Must not: decide what a record is (the query's rules are `isms_domain::access_log`'s),
//! or keep records in memory beyond one batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{Datelike, TimeZone, Timelike};
use isms_domain::access_log::record_matches;
use isms_domain::calendar::china;
use isms_proto::v1::{AccessLogQuery, AccessLogRecord, QueryResult};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;

/// Rows per row group: small enough that a query of minutes reads little of an hour.
const ROW_GROUP_ROWS: usize = 64 * 1024;
const HOUR_MS: i64 = 3_600_000;
/// The compacted file of an hour.
const COMPACTED: &str = "data.parquet";

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("access logs {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("access logs {path}: {why}")]
    Parquet { path: PathBuf, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogStoreError + '_ {
    move |source| LogStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pq(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> LogStoreError + '_ {
    move |e| LogStoreError::Parquet {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

fn arrow(path: &Path) -> impl FnOnce(arrow_schema::ArrowError) -> LogStoreError + '_ {
    move |e| LogStoreError::Parquet {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("at_ms", DataType::Int64, false),
        Field::new("src", DataType::Utf8, false),
        Field::new("src_port", DataType::UInt32, false),
        Field::new("dst", DataType::Utf8, false),
        Field::new("dst_port", DataType::UInt32, false),
        Field::new("protocol", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
    ]))
}

/// The hour (its start, Unix ms) a moment falls in.
fn hour_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// What one query read, for the answer's source line and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scanned {
    pub files: usize,
    pub row_groups: usize,
    pub row_groups_skipped: usize,
}

/// The partitioned store of one enterprise.
#[derive(Debug, Clone)]
pub struct AccessLogStore {
    dir: PathBuf,
}

impl AccessLogStore {
    pub fn open(dir: &Path) -> Result<AccessLogStore, LogStoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(AccessLogStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory of the hour starting at `hour_ms`.
    fn hour_dir(&self, hour_ms: i64) -> PathBuf {
        let t = china()
            .timestamp_millis_opt(hour_ms)
            .single()
            .unwrap_or_else(|| china().timestamp_millis_opt(0).unwrap());
        self.dir
            .join(format!(
                "dt={:04}-{:02}-{:02}",
                t.year(),
                t.month(),
                t.day()
            ))
            .join(format!("hour={:02}", t.hour()))
    }

    /// Every hour kept, oldest first, with its directory.
    fn hours(&self) -> Result<Vec<(i64, PathBuf)>, LogStoreError> {
        let mut out = Vec::new();
        for day in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let day = day.map_err(io(&self.dir))?.path();
            let Some(date) = day
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("dt="))
                .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            else {
                continue;
            };
            for hour in std::fs::read_dir(&day).map_err(io(&day))? {
                let hour = hour.map_err(io(&day))?.path();
                let Some(h) = hour
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("hour="))
                    .and_then(|h| h.parse::<u32>().ok())
                else {
                    continue;
                };
                let Some(start) = date
                    .and_hms_opt(h, 0, 0)
                    .and_then(|t| china().from_local_datetime(&t).single())
                else {
                    continue;
                };
                out.push((start.timestamp_millis(), hour));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Appends `records` (any order), a part file per hour they fall in, each durable
    /// (written, synced, renamed) before this returns.
    pub fn append(&self, records: &[AccessLogRecord]) -> Result<usize, LogStoreError> {
        self.append_marked(records, 0)
    }

    /// As `append`, the part files named with `mark` (how far the feed was read with
    /// them), so an ingest that stopped between writing them and recording how far it got
    /// does not take them twice (`last_mark`).
    pub fn append_marked(
        &self,
        records: &[AccessLogRecord],
        mark: u64,
    ) -> Result<usize, LogStoreError> {
        let mut by_hour: std::collections::BTreeMap<i64, Vec<&AccessLogRecord>> =
            std::collections::BTreeMap::new();
        for r in records {
            by_hour.entry(hour_of(r.at_ms)).or_default().push(r);
        }
        for (hour, mut rs) in by_hour {
            rs.sort_by_key(|r| r.at_ms);
            let dir = self.hour_dir(hour);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let name = format!(
                "part-{}-m{mark}-{}.parquet",
                rs[0].at_ms,
                uuid::Uuid::now_v7().simple()
            );
            write_file(&dir.join(name), &rs)?;
        }
        Ok(records.len())
    }

    /// Merges the parts of every hour that ended before `now_ms` into one file.
    pub fn compact(&self, now_ms: i64) -> Result<usize, LogStoreError> {
        let mut compacted = 0;
        for (start, dir) in self.hours()? {
            if start + HOUR_MS > now_ms {
                continue;
            }
            let merged = dir.join(format!("{COMPACTED}.new"));
            let parts = parts_of(&dir)?;
            if !merged.exists() {
                if parts.len() <= 1 && parts.iter().all(|p| p.ends_with(COMPACTED)) {
                    continue;
                }
                let mut all = Vec::new();
                for p in &parts {
                    read_file(p, i64::MIN, i64::MAX, &mut Scanned::default(), &mut |r| {
                        all.push(r)
                    })?;
                }
                all.sort_by_key(|r| r.at_ms);
                let refs: Vec<&AccessLogRecord> = all.iter().collect();
                // Durable before any part goes: from here on it is the hour (`files_of`),
                // and a compaction that stopped halfway is finished by the next.
                write_file(&merged, &refs)?;
            }
            for p in &parts {
                std::fs::remove_file(p).map_err(io(p))?;
            }
            std::fs::rename(&merged, dir.join(COMPACTED)).map_err(io(&merged))?;
            compacted += 1;
        }
        Ok(compacted)
    }

    /// Answers `q` (validated) from the hours its range touches.
    pub fn query(&self, q: &AccessLogQuery) -> Result<(QueryResult, Scanned), LogStoreError> {
        let limit = usize::try_from(q.limit.max(1)).unwrap_or(usize::MAX);
        let mut result = QueryResult::default();
        let mut scanned = Scanned::default();
        for (start, dir) in self.hours()? {
            if start + HOUR_MS <= q.from_ms || start >= q.until_ms {
                continue;
            }
            for part in files_of(&dir)? {
                scanned.files += 1;
                read_file(&part, q.from_ms, q.until_ms, &mut scanned, &mut |r| {
                    if record_matches(q, &r) {
                        result.matched += 1;
                        if result.records.len() < limit {
                            result.records.push(r);
                        } else {
                            result.truncated = true;
                        }
                    }
                })?;
            }
        }
        result.records.sort_by_key(|r| r.at_ms);
        result.source = format!(
            "access logs {} ({} files, {} row groups read, {} skipped)",
            self.dir.display(),
            scanned.files,
            scanned.row_groups,
            scanned.row_groups_skipped
        );
        Ok((result, scanned))
    }

    /// Drops whole hours, the oldest first, that ended more than `max_age_ms` before
    /// `now_ms`, then while the store is larger than `max_bytes`. Returns the hours dropped.
    pub fn retain(
        &self,
        now_ms: i64,
        max_age_ms: i64,
        max_bytes: u64,
    ) -> Result<usize, LogStoreError> {
        let hours = self.hours()?;
        let sizes: Vec<u64> = hours.iter().map(|(_, d)| dir_bytes(d)).collect();
        let mut total: u64 = sizes.iter().sum();
        let mut dropped = 0;
        for ((start, dir), size) in hours.iter().zip(sizes) {
            let too_old = start + HOUR_MS + max_age_ms <= now_ms;
            if !too_old && total <= max_bytes {
                break;
            }
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
            total = total.saturating_sub(size);
            dropped += 1;
            if let Some(day) = dir.parent()
                && std::fs::read_dir(day).map_err(io(day))?.next().is_none()
            {
                std::fs::remove_dir(day).map_err(io(day))?;
            }
        }
        Ok(dropped)
    }

    /// The highest mark of the part files not yet compacted (0: none).
    pub fn last_mark(&self) -> Result<u64, LogStoreError> {
        let mut mark = 0;
        for (_, dir) in self.hours()? {
            for p in parts_of(&dir)? {
                let m = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.split('-').find_map(|s| s.strip_prefix('m')))
                    .and_then(|m| m.parse::<u64>().ok())
                    .unwrap_or(0);
                mark = mark.max(m);
            }
        }
        Ok(mark)
    }

    /// Bytes the store takes.
    pub fn bytes(&self) -> u64 {
        dir_bytes(&self.dir)
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The files that hold an hour: its merged file if a compaction wrote one and has not yet
/// put it in place, else its Parquet files.
fn files_of(dir: &Path) -> Result<Vec<PathBuf>, LogStoreError> {
    let merged = dir.join(format!("{COMPACTED}.new"));
    if merged.exists() {
        return Ok(vec![merged]);
    }
    parts_of(dir)
}

/// The Parquet files of an hour (not a merged `.new`, nor a `.tmp` being written).
fn parts_of(dir: &Path) -> Result<Vec<PathBuf>, LogStoreError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn write_file(path: &Path, records: &[&AccessLogRecord]) -> Result<(), LogStoreError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| r.at_ms),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.src.as_str()),
        )),
        Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.src_port),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.dst.as_str()),
        )),
        Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.dst_port),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.protocol.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.url.as_str()),
        )),
    ];
    let batch = RecordBatch::try_new(schema(), columns).map_err(arrow(path))?;
    let zstd = ZstdLevel::try_new(3).map_err(pq(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut writer = ArrowWriter::try_new(file, schema(), Some(props)).map_err(pq(&tmp))?;
    writer.write(&batch).map_err(pq(&tmp))?;
    let file = writer.into_inner().map_err(pq(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

/// Reads the records of `path` in row groups whose `at_ms` range meets `[from, until)`.
fn read_file(
    path: &Path,
    from_ms: i64,
    until_ms: i64,
    scanned: &mut Scanned,
    each: &mut dyn FnMut(AccessLogRecord),
) -> Result<(), LogStoreError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq(path))?;
    let groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| match rg.column(0).statistics() {
            Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(min), Some(max)) => *max >= from_ms && *min < until_ms,
                _ => true,
            },
            _ => true,
        })
        .map(|(i, _)| i)
        .collect();
    scanned.row_groups += groups.len();
    scanned.row_groups_skipped += builder.metadata().num_row_groups() - groups.len();
    let reader = builder.with_row_groups(groups).build().map_err(pq(path))?;
    for batch in reader {
        let batch = batch.map_err(arrow(path))?;
        let col = |i: usize| batch.column(i);
        let (Some(at), Some(src), Some(sp), Some(dst), Some(dp), Some(proto), Some(url)) = (
            col(0).as_any().downcast_ref::<Int64Array>(),
            col(1).as_any().downcast_ref::<StringArray>(),
            col(2).as_any().downcast_ref::<UInt32Array>(),
            col(3).as_any().downcast_ref::<StringArray>(),
            col(4).as_any().downcast_ref::<UInt32Array>(),
            col(5).as_any().downcast_ref::<StringArray>(),
            col(6).as_any().downcast_ref::<StringArray>(),
        ) else {
            return Err(LogStoreError::Parquet {
                path: path.to_path_buf(),
                why: "not an access-log file: unexpected column types".into(),
            });
        };
        for i in 0..batch.num_rows() {
            if at.is_null(i) {
                continue;
            }
            each(AccessLogRecord {
                at_ms: at.value(i),
                src: src.value(i).to_string(),
                src_port: sp.value(i),
                dst: dst.value(i).to_string(),
                dst_port: dp.value(i),
                protocol: proto.value(i).to_string(),
                url: url.value(i).to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

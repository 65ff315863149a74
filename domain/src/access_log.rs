//! Access-log queries (R-9.1, R-9.2): validating a query, and an enterprise's answer from the
//! access log it keeps: a JSON-lines file, one record per line, e.g.
//! `{"at": "2026-11-20T10:00:00+08:00", "src": "198.51.100.7", "src_port": 51234,
//!   "dst": "203.0.113.5", "dst_port": 443, "protocol": "tcp", "url": "https://…"}`
//! (`at_ms`, Unix ms, may stand for `at`). Where logs are stored and rotated comes later;
//! the query and its answer path are complete.

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use isms_proto::v1::{AccessLogQuery, AccessLogRecord, DataCorrection, QueryResult};
use serde::Deserialize;

use crate::directive::{InputError, parse_ip};

/// Records returned per enterprise unless the query says otherwise, and at most.
pub const DEFAULT_LIMIT: u32 = 1000;
pub const MAX_LIMIT: u32 = 100_000;

/// Checks and normalises a query: a time range, prefixes, ports, protocol and limit.
pub fn validate_query(q: &AccessLogQuery) -> Result<AccessLogQuery, InputError> {
    let bad = |why: String| InputError::Query(why);
    if q.from_ms <= 0 || q.until_ms <= q.from_ms {
        return Err(bad("the time range needs --from before --until".into()));
    }
    let prefixes = |list: &[String]| -> Result<Vec<String>, InputError> {
        list.iter()
            .map(|p| {
                let n = parse_ip(p)?;
                Ok(if n.contains('/') {
                    n
                } else if n.contains(':') {
                    format!("{n}/128")
                } else {
                    format!("{n}/32")
                })
            })
            .collect()
    };
    if q.ports.iter().any(|p| *p == 0 || *p > 65535) {
        return Err(bad("ports are 1-65535".into()));
    }
    let protocol = q.protocol.trim().to_ascii_lowercase();
    if !protocol.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad(format!("protocol {protocol:?} is not a protocol name")));
    }
    let limit = match q.limit {
        0 => DEFAULT_LIMIT,
        n if n > MAX_LIMIT => return Err(bad(format!("limit is at most {MAX_LIMIT}"))),
        n => n,
    };
    Ok(AccessLogQuery {
        from_ms: q.from_ms,
        until_ms: q.until_ms,
        src: prefixes(&q.src)?,
        dst: prefixes(&q.dst)?,
        ports: q.ports.clone(),
        protocol,
        url_contains: q.url_contains.trim().to_string(),
        limit,
    })
}

/// The reason codes of R-5.2: data missing, wrong, or inconsistent.
pub const REASON_CODES: [&str; 3] = ["missing", "wrong", "inconsistent"];

pub fn validate_correction(c: &DataCorrection) -> Result<DataCorrection, InputError> {
    let bad = |why: String| InputError::Correction(why);
    let subject = c.subject.trim();
    if subject.is_empty() || subject.chars().count() > 256 {
        return Err(bad("the subject is 1-256 characters".into()));
    }
    let code = c.reason_code.trim().to_ascii_lowercase();
    if !REASON_CODES.contains(&code.as_str()) {
        return Err(bad(format!(
            "reason code {code:?} is not one of {}",
            REASON_CODES.join(", ")
        )));
    }
    Ok(DataCorrection {
        subject: subject.to_string(),
        reason_code: code,
        detail: c.detail.trim().to_string(),
    })
}

#[derive(Debug, Deserialize)]
struct Line {
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    at_ms: Option<i64>,
    src: IpAddr,
    #[serde(default)]
    src_port: u32,
    dst: IpAddr,
    #[serde(default)]
    dst_port: u32,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    url: String,
}

impl Line {
    fn into_record(self, at_ms: i64) -> AccessLogRecord {
        AccessLogRecord {
            at_ms,
            src: self.src.to_string(),
            src_port: self.src_port,
            dst: self.dst.to_string(),
            dst_port: self.dst_port,
            protocol: self.protocol,
            url: self.url,
        }
    }

    fn at_ms(&self) -> Option<i64> {
        match (&self.at, self.at_ms) {
            (_, Some(ms)) => Some(ms),
            (Some(at), None) => chrono::DateTime::parse_from_rfc3339(at)
                .ok()
                .map(|t| t.timestamp_millis()),
            (None, None) => None,
        }
    }
}

fn in_prefix(ip: IpAddr, prefix: &str) -> bool {
    let Some((net, len)) = prefix.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn matches(q: &AccessLogQuery, at: i64, line: &Line) -> bool {
    at >= q.from_ms
        && at < q.until_ms
        && (q.src.is_empty() || q.src.iter().any(|p| in_prefix(line.src, p)))
        && (q.dst.is_empty() || q.dst.iter().any(|p| in_prefix(line.dst, p)))
        && (q.ports.is_empty() || q.ports.contains(&line.dst_port))
        && (q.protocol.is_empty() || line.protocol.eq_ignore_ascii_case(&q.protocol))
        && (q.url_contains.is_empty() || line.url.contains(&q.url_contains))
}

/// Whether a stored record answers `q` (its time in range, its addresses in the prefixes,
/// its port, protocol and URL as asked).
pub fn record_matches(q: &AccessLogQuery, r: &AccessLogRecord) -> bool {
    let (Ok(src), Ok(dst)) = (r.src.parse::<IpAddr>(), r.dst.parse::<IpAddr>()) else {
        return false;
    };
    r.at_ms >= q.from_ms
        && r.at_ms < q.until_ms
        && (q.src.is_empty() || q.src.iter().any(|p| in_prefix(src, p)))
        && (q.dst.is_empty() || q.dst.iter().any(|p| in_prefix(dst, p)))
        && (q.ports.is_empty() || q.ports.contains(&r.dst_port))
        && (q.protocol.is_empty() || r.protocol.eq_ignore_ascii_case(&q.protocol))
        && (q.url_contains.is_empty() || r.url.contains(&q.url_contains))
}

/// Answers `q` from the log at `log` (none configured: an empty answer that says so).
pub fn answer(log: Option<&Path>, q: &AccessLogQuery) -> Result<QueryResult, String> {
    let Some(path) = log else {
        return Ok(QueryResult {
            source: "no access log configured at this enterprise".into(),
            ..QueryResult::default()
        });
    };
    let file = std::fs::File::open(path)
        .map_err(|e| format!("access log {} unreadable: {e}", path.display()))?;
    let limit = usize::try_from(if q.limit == 0 { DEFAULT_LIMIT } else { q.limit }).unwrap_or(1000);
    let mut result = QueryResult::default();
    let mut malformed = 0u64;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("access log {}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(parsed) = serde_json::from_str::<Line>(&line) else {
            malformed += 1;
            continue;
        };
        let Some(at) = parsed.at_ms() else {
            malformed += 1;
            continue;
        };
        if !matches(q, at, &parsed) {
            continue;
        }
        result.matched += 1;
        if result.records.len() < limit {
            result.records.push(parsed.into_record(at));
        } else {
            result.truncated = true;
        }
    }
    result.source = if malformed == 0 {
        format!("access log {}", path.display())
    } else {
        format!(
            "access log {} ({malformed} malformed lines skipped)",
            path.display()
        )
    };
    Ok(result)
}

/// One record as a line of the feed gives it (JSON: `at` RFC 3339 or `at_ms`, `src`,
/// `src_port`, `dst`, `dst_port`, `protocol`, `url`).
pub fn parse_line(line: &str) -> Result<AccessLogRecord, String> {
    let parsed = serde_json::from_str::<Line>(line).map_err(|e| e.to_string())?;
    let at = parsed
        .at_ms()
        .ok_or("no time: `at` (RFC 3339) or `at_ms`")?;
    Ok(parsed.into_record(at))
}

/// Monitoring (R-6.1, R-6.5): the access-log records appended since byte `offset`, and the
/// offset after the last whole line read. A log shorter than `offset` was rotated: it is
/// read from its start. Lines that do not parse are skipped.
pub fn read_since(path: &Path, offset: u64) -> Result<(Vec<AccessLogRecord>, u64), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)
        .map_err(|e| format!("access log {} unreadable: {e}", path.display()))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))
        .map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(|e| e.to_string())?;
    // Only whole lines: a line being written is read next time.
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for line in text[..whole].split(|&b| b == b'\n') {
        let Ok(parsed) = serde_json::from_slice::<Line>(line) else {
            continue;
        };
        let Some(at) = parsed.at_ms() else {
            continue;
        };
        out.push(parsed.into_record(at));
    }
    Ok((out, start + whole as u64))
}

/// Whether an access-log record hits a monitoring rule of `kind` (`domain`, `url`, `ip`,
/// `keyword`) with the normalised `value`: the URL's host is the domain or under it; the
/// URL starts with the rule's; the destination is in the prefix; the URL holds the keyword.
pub fn hits(kind: &str, value: &str, r: &AccessLogRecord) -> bool {
    match kind {
        "domain" => url::Url::parse(&r.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .is_some_and(|h| {
                let d = value.trim_start_matches("*.");
                h == d || h.ends_with(&format!(".{d}"))
            }),
        "url" => r.url.starts_with(value),
        "ip" => r.dst.parse::<IpAddr>().ok().is_some_and(|dst| {
            if value.contains('/') {
                in_prefix(dst, value)
            } else {
                value.parse::<IpAddr>() == Ok(dst)
            }
        }),
        "keyword" => r.url.contains(value),
        _ => false,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn rec(dst: &str, url: &str) -> AccessLogRecord {
        AccessLogRecord {
            dst: dst.into(),
            url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn monitoring_rules_match_by_kind() {
        let r = rec("203.0.113.5", "https://CDN.Watched.example/path?q=secret");
        assert!(hits("domain", "watched.example", &r));
        assert!(!hits("domain", "atched.example", &r), "a label boundary");
        assert!(hits("url", "https://CDN.Watched.example/path", &r));
        assert!(hits("ip", "203.0.113.0/24", &r));
        assert!(hits("ip", "203.0.113.5", &r));
        assert!(!hits("ip", "203.0.113.6", &r));
        assert!(hits("keyword", "secret", &r));
        assert!(!hits("keyword", "public", &r));
        assert!(!hits("nonsense", "x", &r));
    }

    #[test]
    fn the_log_is_read_from_where_it_was_left_whole_lines_only_and_again_after_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.jsonl");
        let line = |url: &str| {
            format!(
                "{{\"at_ms\": 5, \"src\": \"192.0.2.1\", \"dst\": \"192.0.2.2\", \"url\": \"{url}\"}}\n"
            )
        };
        std::fs::write(
            &path,
            format!("{}not json\n{}{{\"partial", line("a"), line("b")),
        )
        .expect("write");
        let (read, offset) = read_since(&path, 0).expect("read");
        assert_eq!(
            read.iter().map(|r| r.url.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let (again, same) = read_since(&path, offset).expect("read");
        assert!(again.is_empty() && same == offset, "the partial line waits");
        // Rotated: shorter than the offset, read from its start.
        std::fs::write(&path, line("c")).expect("rotate");
        let (read, _) = read_since(&path, offset).expect("read");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].url, "c");
    }

    #[test]
    fn prefixes_match_v4_and_v6() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(in_prefix(ip("203.0.113.77"), "203.0.113.0/24"));
        assert!(!in_prefix(ip("203.0.114.1"), "203.0.113.0/24"));
        assert!(in_prefix(ip("10.1.2.3"), "0.0.0.0/0"));
        assert!(in_prefix(ip("2001:db8::1"), "2001:db8::/32"));
        assert!(!in_prefix(ip("2001:db8::1"), "203.0.113.0/24"));
    }

    #[test]
    fn queries_are_validated() {
        let q = AccessLogQuery {
            from_ms: 1000,
            until_ms: 2000,
            src: vec!["198.51.100.7".into()],
            ..Default::default()
        };
        let v = validate_query(&q).expect("valid");
        assert_eq!(v.src, vec!["198.51.100.7/32"]);
        assert_eq!(v.limit, DEFAULT_LIMIT);
        assert!(
            validate_query(&AccessLogQuery {
                until_ms: 500,
                ..q.clone()
            })
            .is_err()
        );
        assert!(
            validate_query(&AccessLogQuery {
                ports: vec![0],
                ..q.clone()
            })
            .is_err()
        );
        assert!(
            validate_query(&AccessLogQuery {
                src: vec!["x".into()],
                ..q
            })
            .is_err()
        );
    }

    #[test]
    fn an_answer_filters_the_log_and_reports_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access.jsonl");
        std::fs::write(
            &log,
            concat!(
                r#"{"at_ms": 1500, "src": "198.51.100.7", "dst": "203.0.113.5", "dst_port": 443, "protocol": "tcp", "url": "https://bad.example/a"}"#, "\n",
                r#"{"at": "1970-01-01T08:00:01.600+08:00", "src": "198.51.100.8", "dst": "203.0.113.5", "dst_port": 443, "protocol": "TCP", "url": "https://bad.example/b"}"#, "\n",
                r#"{"at_ms": 1700, "src": "192.0.2.1", "dst": "203.0.113.5", "dst_port": 80, "protocol": "tcp", "url": "http://ok.example/"}"#, "\n",
                "not json\n",
                r#"{"at_ms": 5000, "src": "198.51.100.7", "dst": "203.0.113.5", "dst_port": 443, "protocol": "tcp", "url": "https://bad.example/c"}"#, "\n",
            ),
        )
        .expect("write");
        let q = validate_query(&AccessLogQuery {
            from_ms: 1000,
            until_ms: 2000,
            src: vec!["198.51.100.0/24".into()],
            ports: vec![443],
            protocol: "tcp".into(),
            url_contains: "bad.example".into(),
            limit: 1,
            ..Default::default()
        })
        .expect("valid");
        let r = answer(Some(&log), &q).expect("answer");
        assert_eq!(r.matched, 2);
        assert_eq!(r.records.len(), 1);
        assert!(r.truncated);
        assert!(r.source.contains("1 malformed"));
        let none = answer(None, &q).expect("answer");
        assert_eq!(none.matched, 0);
        assert!(answer(Some(&dir.path().join("missing")), &q).is_err());
    }
}

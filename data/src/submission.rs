//! Reading an enterprise's data as it exports it from its own systems (R-5.1): one JSON
//! document (the shape below) or the same as CSV rows (`csv`; a file is JSON when it opens
//! with `{`), every field checked for its type, unknown fields refused, and the whole
//! bounded in size. Well-formedness of the values (addresses, domains) is
//! the validation's business (`validate`), since a province flags it as an anomaly.
//!
//! ```json
//! {
//!   "operator": { "name": "…", "licence": "B1-20190001", "kinds": ["idc"] },
//!   "houses": [ { "id": "gz-1", "name": "…", "province": "44",
//!                 "ip_ranges": ["203.0.113.0/24"], "bandwidth_mbps": 10000 } ],
//!   "customers": [ { "id": "c1", "name": "…",
//!                    "domains": [ { "domain": "shop.example", "filing_number": "粤ICP备…" } ] } ],
//!   "active": { "from": "2026-11-01T00:00:00+08:00", "until": "2026-12-01T00:00:00+08:00",
//!               "domains": ["shop.example"], "ips": ["203.0.113.7"], "ports": [443] }
//! }
//! ```
//!
//! Must not: read a file (the caller hands the bytes), or judge the data.

use isms_proto::v1::{
    ActiveResources, Customer, House, OperatorInfo, ResourceReport, ServedDomain,
};
use serde::Deserialize;

/// Largest submission taken: a national IDC's data is a few MiB.
pub const MAX_SUBMISSION_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    #[error("the data is {0} bytes; at most {MAX_SUBMISSION_BYTES} are taken")]
    TooLarge(usize),
    #[error("the data does not read as a report: {0}")]
    Shape(String),
    #[error("`active.{field}` {value:?}: an RFC 3339 time such as 2026-11-01T00:00:00+08:00")]
    Time { field: &'static str, value: String },
    #[error("`active`: `from` must come before `until`")]
    Period,
    #[error("CSV line {line}: {why}")]
    Csv { line: u64, why: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    operator: Operator,
    #[serde(default)]
    houses: Vec<HouseFile>,
    #[serde(default)]
    customers: Vec<CustomerFile>,
    #[serde(default)]
    active: Option<Active>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Operator {
    name: String,
    licence: String,
    #[serde(default)]
    kinds: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HouseFile {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    province: String,
    #[serde(default)]
    ip_ranges: Vec<String>,
    #[serde(default)]
    bandwidth_mbps: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerFile {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    domains: Vec<DomainFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainFile {
    domain: String,
    #[serde(default)]
    filing_number: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Active {
    from: String,
    until: String,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    ports: Vec<u16>,
}

fn time(field: &'static str, value: &str) -> Result<i64, SubmissionError> {
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| SubmissionError::Time {
            field,
            value: value.to_string(),
        })
}

/// The report a submission holds, JSON or CSV (its enterprise, version and time are the
/// node's to set).
pub fn parse(bytes: &[u8]) -> Result<ResourceReport, SubmissionError> {
    if bytes.len() > MAX_SUBMISSION_BYTES {
        return Err(SubmissionError::TooLarge(bytes.len()));
    }
    let text = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let is_json = matches!(
        text.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    let file: File = if is_json {
        serde_json::from_slice(text).map_err(|e| SubmissionError::Shape(e.to_string()))?
    } else {
        csv::read(text)?
    };
    let active = match file.active {
        None => None,
        Some(a) => {
            let (from_ms, until_ms) = (time("from", &a.from)?, time("until", &a.until)?);
            if from_ms >= until_ms {
                return Err(SubmissionError::Period);
            }
            Some(ActiveResources {
                from_ms,
                until_ms,
                domains: a.domains,
                ips: a.ips,
                ports: a.ports.into_iter().map(u32::from).collect(),
            })
        }
    };
    Ok(ResourceReport {
        operator: Some(OperatorInfo {
            name: file.operator.name,
            licence: file.operator.licence,
            kinds: file.operator.kinds,
        }),
        houses: file
            .houses
            .into_iter()
            .map(|h| House {
                id: h.id,
                name: h.name,
                province: h.province,
                ip_ranges: h.ip_ranges,
                bandwidth_mbps: h.bandwidth_mbps,
            })
            .collect(),
        customers: file
            .customers
            .into_iter()
            .map(|c| Customer {
                id: c.id,
                name: c.name,
                domains: c
                    .domains
                    .into_iter()
                    .map(|d| ServedDomain {
                        domain: d.domain,
                        filing_number: d.filing_number,
                    })
                    .collect(),
            })
            .collect(),
        active,
        ..Default::default()
    })
}

mod csv;
#[cfg(test)]
mod tests;

//! The same submission as one CSV file, the form most enterprises' systems export: a row
//! per fact, its first field saying which (lines starting `#` are comments; a field holding
//! several values separates them with `;`):
//!
//! ```text
//! operator,Pearl River IDC,B1-20190001,idc;isp
//! house,gz-1,Guangzhou 1,44,203.0.113.0/24;198.51.100.0/25,10000
//! domain,c1,Shop,shop.example,粤ICP备12345678号
//! active,2026-11-01T00:00:00+08:00,2026-12-01T00:00:00+08:00
//! active_domain,shop.example
//! active_ip,203.0.113.7
//! active_port,443
//! ```
//!
//! `domain` rows of one customer ID make one customer. Every row is checked for its field
//! count and types, and an error names its line.
//!
//! Must not: judge the values (the validation does), or accept a row it does not know.

use super::{Active, CustomerFile, DomainFile, File, HouseFile, Operator, SubmissionError};

fn bad(line: u64, why: impl Into<String>) -> SubmissionError {
    SubmissionError::Csv {
        line,
        why: why.into(),
    }
}

/// `a;b;c` → the values, empty ones dropped.
fn list(field: &str) -> Vec<String> {
    field
        .split(';')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads the rows into the JSON form's shape.
pub(super) fn read(bytes: &[u8]) -> Result<File, SubmissionError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(::csv::Trim::All)
        .from_reader(bytes);
    let mut operator: Option<Operator> = None;
    let mut houses = Vec::new();
    let mut customers: Vec<CustomerFile> = Vec::new();
    let mut active: Option<Active> = None;
    let (mut domains, mut ips, mut ports) = (Vec::new(), Vec::new(), Vec::new());
    for row in reader.records() {
        let row = row.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            bad(line, e.to_string())
        })?;
        let line = row.position().map_or(0, |p| p.line());
        let f: Vec<&str> = row.iter().collect();
        let arity = |n: usize| {
            if f.len() == n {
                Ok(())
            } else {
                Err(bad(
                    line,
                    format!(
                        "a `{}` row takes {n} fields; this one has {}",
                        f[0],
                        f.len()
                    ),
                ))
            }
        };
        match f.first().copied().unwrap_or_default() {
            "" if f.len() <= 1 => continue,
            "operator" => {
                if operator.is_some() {
                    return Err(bad(line, "a second `operator` row"));
                }
                if f.len() != 3 && f.len() != 4 {
                    return Err(bad(
                        line,
                        format!(
                            "an `operator` row takes 3 or 4 fields (name, licence, kinds); \
                             this one has {}",
                            f.len()
                        ),
                    ));
                }
                operator = Some(Operator {
                    name: f[1].to_string(),
                    licence: f[2].to_string(),
                    kinds: f.get(3).map(|k| list(k)).unwrap_or_default(),
                });
            }
            "house" => {
                arity(6)?;
                let bandwidth_mbps = match f[5] {
                    "" => 0,
                    b => b.parse().map_err(|_| {
                        bad(line, format!("bandwidth_mbps {b:?} is not a whole number"))
                    })?,
                };
                houses.push(HouseFile {
                    id: f[1].to_string(),
                    name: f[2].to_string(),
                    province: f[3].to_string(),
                    ip_ranges: list(f[4]),
                    bandwidth_mbps,
                });
            }
            "domain" => {
                arity(5)?;
                let domain = DomainFile {
                    domain: f[3].to_string(),
                    filing_number: f[4].to_string(),
                };
                match customers.iter_mut().find(|c| c.id == f[1]) {
                    Some(c) => c.domains.push(domain),
                    None => customers.push(CustomerFile {
                        id: f[1].to_string(),
                        name: f[2].to_string(),
                        domains: vec![domain],
                    }),
                }
            }
            "active" => {
                arity(3)?;
                if active.is_some() {
                    return Err(bad(line, "a second `active` row"));
                }
                active = Some(Active {
                    from: f[1].to_string(),
                    until: f[2].to_string(),
                    domains: Vec::new(),
                    ips: Vec::new(),
                    ports: Vec::new(),
                });
            }
            "active_domain" => {
                arity(2)?;
                domains.push(f[1].to_string());
            }
            "active_ip" => {
                arity(2)?;
                ips.push(f[1].to_string());
            }
            "active_port" => {
                arity(2)?;
                ports.push(f[1].parse::<u16>().map_err(|_| {
                    bad(
                        line,
                        format!("port {:?} is not a number from 0 to 65535", f[1]),
                    )
                })?);
            }
            other => {
                return Err(bad(
                    line,
                    format!(
                        "unknown row {other:?}: operator, house, domain, active, \
                         active_domain, active_ip or active_port"
                    ),
                ));
            }
        }
    }
    let operator = operator.ok_or_else(|| bad(0, "no `operator` row"))?;
    let has_active_rows = !(domains.is_empty() && ips.is_empty() && ports.is_empty());
    let active = match active {
        Some(a) => Some(Active {
            domains,
            ips,
            ports,
            ..a
        }),
        None if has_active_rows => {
            return Err(bad(
                0,
                "active_domain, active_ip or active_port rows without an `active` row \
                 saying their period",
            ));
        }
        None => None,
    };
    Ok(File {
        operator,
        houses,
        customers,
        active,
    })
}

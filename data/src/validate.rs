//! The province's validation of an enterprise's data, by rules kept as data
//! (`Rules`, from the node's configuration): required fields, well-formed addresses,
//! prefixes and domains, address ranges that overlap another enterprise's, served domains
//! without a filing number, active resources outside the reported ranges. Each finding is
//! an `Anomaly`; none means the report is clean.
//!
//! Must not: store or send anything, or look at more than the reports it is given.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use isms_domain::directive::{parse_domain, parse_ip};
use isms_proto::v1::{Anomaly, ResourceReport};
use serde::{Deserialize, Serialize};

/// Which checks run. Every one by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Fields that must not be empty, by name: `operator.name`, `operator.licence`,
    /// `operator.kinds`, `houses`, `house.ip_ranges`, `house.province`, `customer.name`.
    pub required: Vec<String>,
    /// An address range of one enterprise may not overlap another's.
    pub overlap: bool,
    /// Every served domain needs a filing number.
    pub filing: bool,
    /// Every active IP lies within a reported range.
    pub active_within_ranges: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            required: [
                "operator.name",
                "operator.licence",
                "houses",
                "house.ip_ranges",
            ]
            .map(String::from)
            .to_vec(),
            overlap: true,
            filing: true,
            active_within_ranges: true,
        }
    }
}

fn anomaly(rule: &str, subject: impl Into<String>, detail: impl Into<String>) -> Anomaly {
    Anomaly {
        rule: rule.into(),
        subject: subject.into(),
        detail: detail.into(),
    }
}

/// The ranges of a report that parse, with the house each belongs to.
fn ranges(report: &ResourceReport) -> Vec<(String, IpNet)> {
    report
        .houses
        .iter()
        .flat_map(|h| {
            h.ip_ranges
                .iter()
                .filter_map(|r| {
                    parse_ip(r).ok()?.parse::<IpNet>().ok().or_else(|| {
                        // A lone address is a range of one.
                        r.trim().parse::<IpAddr>().ok().map(IpNet::from)
                    })
                })
                .map(|net| (h.id.clone(), net))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What is wrong with `report`, given the latest reports of the other enterprises the
/// province holds.
pub fn validate(report: &ResourceReport, others: &[ResourceReport], rules: &Rules) -> Vec<Anomaly> {
    let mut found = Vec::new();
    let required = |name: &str| rules.required.iter().any(|r| r == name);
    let op = report.operator.clone().unwrap_or_default();
    for (name, empty) in [
        ("operator.name", op.name.trim().is_empty()),
        ("operator.licence", op.licence.trim().is_empty()),
        ("operator.kinds", op.kinds.is_empty()),
        ("houses", report.houses.is_empty()),
    ] {
        if empty && required(name) {
            found.push(anomaly("required", name, "missing"));
        }
    }
    for h in &report.houses {
        if h.ip_ranges.is_empty() && required("house.ip_ranges") {
            found.push(anomaly(
                "required",
                format!("house {}: ip_ranges", h.id),
                "missing",
            ));
        }
        if h.province.trim().is_empty() && required("house.province") {
            found.push(anomaly(
                "required",
                format!("house {}: province", h.id),
                "missing",
            ));
        }
        for r in &h.ip_ranges {
            if let Err(e) = parse_ip(r) {
                found.push(anomaly(
                    "malformed",
                    format!("house {}: {r}", h.id),
                    e.to_string(),
                ));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for c in &report.customers {
        if c.name.trim().is_empty() && required("customer.name") {
            found.push(anomaly(
                "required",
                format!("customer {}: name", c.id),
                "missing",
            ));
        }
        for d in &c.domains {
            if let Err(e) = parse_domain(&d.domain) {
                found.push(anomaly(
                    "malformed",
                    format!("customer {}: {}", c.id, d.domain),
                    e.to_string(),
                ));
                continue;
            }
            if rules.filing && d.filing_number.trim().is_empty() && seen.insert(d.domain.clone()) {
                found.push(anomaly(
                    "no-filing",
                    d.domain.clone(),
                    format!("served for customer {} without a filing number", c.id),
                ));
            }
        }
    }
    let own = ranges(report);
    if rules.overlap {
        for other in others.iter().filter(|o| o.enterprise != report.enterprise) {
            for (house, net) in &own {
                for (their_house, theirs) in ranges(other) {
                    if net.contains(&theirs.network()) || theirs.contains(&net.network()) {
                        found.push(anomaly(
                            "overlap",
                            format!("house {house}: {net}"),
                            format!(
                                "overlaps {theirs} of {} (house {their_house})",
                                other.enterprise
                            ),
                        ));
                    }
                }
            }
        }
    }
    if let Some(active) = &report.active {
        for ip in &active.ips {
            match ip.trim().parse::<IpAddr>() {
                Err(_) => found.push(anomaly(
                    "malformed",
                    format!("active ip {ip}"),
                    "not an IPv4 or IPv6 address",
                )),
                Ok(addr)
                    if rules.active_within_ranges
                        && !own.iter().any(|(_, n)| n.contains(&addr)) =>
                {
                    found.push(anomaly(
                        "active-outside",
                        format!("active ip {ip}"),
                        "outside every reported range",
                    ));
                }
                Ok(_) => {}
            }
        }
        for d in &active.domains {
            if let Err(e) = parse_domain(d) {
                found.push(anomaly(
                    "malformed",
                    format!("active domain {d}"),
                    e.to_string(),
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests;

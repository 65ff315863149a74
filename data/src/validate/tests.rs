//! The validation rules, each on a report planted with its fault.

use super::*;
use isms_proto::v1::{ActiveResources, Customer, House, OperatorInfo, ServedDomain};

fn report(enterprise: &str, range: &str) -> ResourceReport {
    ResourceReport {
        enterprise: enterprise.into(),
        version: 1,
        operator: Some(OperatorInfo {
            name: "Pearl River IDC".into(),
            licence: "B1-20190001".into(),
            kinds: vec!["idc".into()],
        }),
        houses: vec![House {
            id: "gz-1".into(),
            name: "Guangzhou 1".into(),
            province: "44".into(),
            ip_ranges: vec![range.into()],
            bandwidth_mbps: 10_000,
        }],
        customers: vec![Customer {
            id: "c1".into(),
            name: "Shop".into(),
            domains: vec![ServedDomain {
                domain: "shop.example".into(),
                filing_number: "粤ICP备12345678号".into(),
            }],
        }],
        active: Some(ActiveResources {
            from_ms: 0,
            until_ms: 1,
            domains: vec!["shop.example".into()],
            ips: vec!["203.0.113.7".into()],
            ports: vec![443],
        }),
        ..Default::default()
    }
}

fn rules_of(found: &[Anomaly]) -> Vec<&str> {
    found.iter().map(|a| a.rule.as_str()).collect()
}

#[test]
fn a_clean_report_has_no_anomaly() {
    let other = report("enterprise/e4402", "198.51.100.0/24");
    assert!(
        validate(
            &report("enterprise/e4401", "203.0.113.0/24"),
            &[other],
            &Rules::default()
        )
        .is_empty()
    );
}

#[test]
fn three_planted_faults_are_found_and_nothing_else() {
    let mut r = report("enterprise/e4401", "203.0.113.0/24");
    // An overlapping range, a domain without its filing number, a malformed address.
    r.houses[0].ip_ranges.push("198.51.100.128/25".into());
    r.customers[0].domains.push(ServedDomain {
        domain: "blog.example".into(),
        filing_number: String::new(),
    });
    r.houses[0].ip_ranges.push("203.0.113.300".into());
    let other = report("enterprise/e4402", "198.51.100.0/24");
    let found = validate(&r, &[other], &Rules::default());
    assert_eq!(
        rules_of(&found),
        ["malformed", "no-filing", "overlap"],
        "{found:?}"
    );
    assert!(found[2].detail.contains("enterprise/e4402"), "{found:?}");
}

#[test]
fn missing_fields_and_active_resources_outside_the_ranges_are_found_by_the_rules_kept() {
    let mut r = report("enterprise/e4401", "203.0.113.0/24");
    r.operator = Some(OperatorInfo::default());
    if let Some(a) = r.active.as_mut() {
        a.ips.push("192.0.2.1".into());
    }
    let found = validate(&r, &[], &Rules::default());
    assert_eq!(
        rules_of(&found),
        ["required", "required", "active-outside"],
        "{found:?}"
    );
    // Rules are data: without them, nothing of it is found.
    let lenient = Rules {
        required: vec![],
        overlap: false,
        filing: false,
        active_within_ranges: false,
    };
    assert!(validate(&r, &[], &lenient).is_empty());
}

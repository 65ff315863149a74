//! The checks and lateness rules of what nodes report upward, on the shipped calendar.

use super::*;
use std::path::Path;

fn shipped() -> Calendar {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../calendar");
    Calendar::load_dir(&dir).expect("the shipped calendar loads")
}

/// Unix ms of a China Standard Time moment.
fn at(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("time")
        .timestamp_millis()
}

fn fault() -> Fault {
    Fault {
        id: "0193a000-0000-7000-8000-000000000001".into(),
        reporter: "enterprise/e4401".into(),
        severity: FaultSeverity::Major as i32,
        summary: "filtering cluster B down".into(),
        detail: String::new(),
        at_ms: 1,
        automatic: false,
        by: "admin".into(),
    }
}

#[test]
fn a_fault_needs_a_known_severity_a_summary_and_bounded_detail() {
    assert_eq!(check_fault(&fault()), Ok(()));
    assert_eq!(parse_severity("critical"), Ok(FaultSeverity::Critical));
    assert!(parse_severity("apocalyptic").is_err_and(|e| e.to_string().contains("one of")));
    let cases = [
        (
            Fault {
                summary: "  ".into(),
                ..fault()
            },
            "summary is empty",
        ),
        (
            Fault {
                detail: "x".repeat(1 << 20),
                ..fault()
            },
            "at most 16384",
        ),
        (
            Fault {
                severity: 9,
                ..fault()
            },
            "unknown fault severity",
        ),
        (
            Fault {
                id: "f1".into(),
                ..fault()
            },
            "not a UUID",
        ),
        (
            Fault {
                reporter: "someone".into(),
                ..fault()
            },
            "fault reporter",
        ),
    ];
    for (f, why) in cases {
        let e = check_fault(&f).expect_err(why);
        assert!(e.to_string().contains(why), "{e} / {why}");
    }
}

#[test]
fn an_upgrade_is_late_with_fewer_than_five_working_days_across_national_day() {
    let cal = shipped();
    // Tuesday 29 September 2026; 1–7 October off, Saturday 10 October worked.
    let announced = at("2026-09-29T10:00:00+08:00");
    // Eleven days ahead but four working days (30 Sep, 8, 9, 10 Oct): late.
    assert_eq!(
        upgrade_lateness(&cal, announced, at("2026-10-10T10:00:00+08:00")),
        Ok((true, 4))
    );
    // Six working days (… 12, 13 Oct): on time.
    assert_eq!(
        upgrade_lateness(&cal, announced, at("2026-10-13T10:00:00+08:00")),
        Ok((false, 6))
    );
}

#[test]
fn a_contact_change_is_late_after_five_working_days() {
    let cal = shipped();
    // Changed Monday 7 December 2026: due by the end of Monday 14 December.
    let changed = changed_on("2026-12-07").expect("date");
    assert_eq!(
        contact_lateness(&cal, changed, at("2026-12-14T23:59:00+08:00")),
        Ok(false)
    );
    assert_eq!(
        contact_lateness(&cal, changed, at("2026-12-15T00:00:00+08:00")),
        Ok(true)
    );
    assert!(contact_lateness(&cal, changed, at("2026-12-06T12:00:00+08:00")).is_err());
    assert!(changed_on("7 Dec").is_err());
    let good = Contact {
        node: "enterprise/e4401".into(),
        department: "NOC".into(),
        name: "Li Wei".into(),
        phone: "+86 10 1234-5678".into(),
        email: "noc@example.cn".into(),
        changed_on: "2026-12-07".into(),
        ..Default::default()
    };
    assert_eq!(check_contact(&good), Ok(()));
    for (bad, why) in [
        (
            Contact {
                email: "noc".into(),
                ..good.clone()
            },
            "not an address",
        ),
        (
            Contact {
                phone: "call me".into(),
                ..good.clone()
            },
            "digits",
        ),
        (
            Contact {
                name: String::new(),
                ..good.clone()
            },
            "name is empty",
        ),
        (
            Contact {
                department: "d".repeat(200),
                ..good.clone()
            },
            "at most 128",
        ),
    ] {
        let e = check_contact(&bad).expect_err(why);
        assert!(e.to_string().contains(why), "{e} / {why}");
    }
}

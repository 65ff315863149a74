//! The figures of a hand-made period: each count and percentile checked by hand.

use super::*;
use isms_proto::v1::Directive;

const H: i64 = 3_600_000;

fn target(node: &str, s: TargetState, finished: i64, overdue: i64) -> TargetView {
    TargetView {
        node: node.into(),
        state: s as i32,
        finished_at_ms: finished,
        acknowledged_at_ms: finished,
        overdue_at_ms: overdue,
        updated_at_ms: finished,
        ..Default::default()
    }
}

fn view(
    id: &str,
    kind: DirectiveKind,
    urgency: Urgency,
    at: i64,
    targets: Vec<TargetView>,
) -> DirectiveView {
    DirectiveView {
        directive: Some(Directive {
            id: id.into(),
            issuer: "ministry".into(),
            kind: kind as i32,
            urgency: urgency as i32,
            issued_at_ms: at,
            ..Default::default()
        }),
        targets,
        ..Default::default()
    }
}

fn province(node: &str) -> Option<String> {
    let digits = node.strip_prefix("enterprise/e")?.get(..2)?;
    Some(format!("province/{digits}"))
}

/// A November with known activity.
fn november() -> Report {
    let period = Period::month("2026-11").expect("month");
    let (from, until) = period.bounds_ms();
    let t0 = from + 24 * H;
    use TargetState::*;
    let mut returned = view("r", DirectiveKind::Disposal, Urgency::General, t0, vec![]);
    returned.hops = vec![TargetView {
        node: "province/44".into(),
        state: Returned as i32,
        detail: "not ours".into(),
        deadline_ms: t0 + H,
        updated_at_ms: t0 + 1,
        ..Default::default()
    }];
    let mut clocked = view(
        "c",
        DirectiveKind::Disposal,
        Urgency::Urgent,
        t0,
        vec![target("enterprise/e4401", Executed, t0 + 3 * H, 0)],
    );
    clocked.hops = vec![TargetView {
        node: "province/44".into(),
        state: Forwarded as i32,
        deadline_ms: t0 + H,
        overdue_at_ms: t0 + H,
        ..Default::default()
    }];
    let mut late = view("l", DirectiveKind::Disposal, Urgency::General, t0, vec![]);
    late.hops = vec![
        TargetView {
            node: "province/44".into(),
            state: Confirmed as i32,
            deadline_ms: t0 + H,
            updated_at_ms: t0 + 2 * H,
            ..Default::default()
        },
        // Confirmed in time, the directive revoked after the deadline: met.
        TargetView {
            node: "province/11".into(),
            state: Revoked as i32,
            deadline_ms: t0 + H,
            acknowledged_at_ms: t0 + H / 2,
            finished_at_ms: t0 + 3 * H,
            updated_at_ms: t0 + 3 * H,
            ..Default::default()
        },
    ];
    let directives = vec![
        late,
        // Full execution in 1 h and 2 h at province/11, and one with a failure.
        view(
            "a",
            DirectiveKind::Disposal,
            Urgency::General,
            t0,
            vec![
                target("enterprise/e1101", Executed, t0 + H, 0),
                target("enterprise/e1102", Executed, t0 + H / 2, 0),
            ],
        ),
        view(
            "b",
            DirectiveKind::Disposal,
            Urgency::Emergency,
            t0,
            vec![
                target("enterprise/e1101", Executed, t0 + 2 * H, 0),
                target("enterprise/e4401", Failed, t0, 0),
            ],
        ),
        clocked,
        returned,
        view(
            "q",
            DirectiveKind::AccessLogQuery,
            Urgency::General,
            t0,
            vec![
                target("enterprise/e1101", Executed, t0 + H, 0),
                target("enterprise/e4401", Executed, t0 + 3 * H, t0 + 2 * H),
                target("enterprise/e4402", Acknowledged, 0, t0 + 2 * H),
            ],
        ),
        view(
            "d",
            DirectiveKind::Drill,
            Urgency::General,
            t0,
            vec![target("enterprise/e1101", Executed, t0 + 5 * H, 0)],
        ),
        // Outside the period: not counted.
        view(
            "late",
            DirectiveKind::Disposal,
            Urgency::General,
            until,
            vec![target("enterprise/e1101", Executed, until + H, 0)],
        ),
    ];
    let unit_of = |n: &str| province(n);
    compute(&Inputs {
        kind: ReportKind::Monthly,
        period,
        node: "ministry",
        now_ms: until + 10 * H,
        unit: "province",
        unit_of: &unit_of,
        directives: &directives,
        availability: vec![NodeAvailability {
            node: "province/11".into(),
            parent: "ministry".into(),
            up_ms: 9 * H,
            maintenance_ms: H,
            not_up_ms: H,
        }],
    })
}

#[test]
fn counts_percentiles_clocks_and_drills_come_out_as_counted_by_hand() {
    let report = november();
    let kinds: Vec<(&str, &str, u64)> = report
        .directives
        .iter()
        .map(|r| (r.kind.as_str(), r.urgency.as_str(), r.directives))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("access_log_query", "general", 1),
            ("disposal", "emergency", 1),
            ("disposal", "general", 3),
            ("disposal", "urgent", 1),
        ]
    );
    let p11 = &report.execution[0];
    assert_eq!(
        (p11.unit.as_str(), p11.directives, p11.executed),
        ("province/11", 2, 2)
    );
    assert_eq!((p11.p50_ms, p11.p95_ms), (H, 2 * H));
    let p44 = &report.execution[1];
    assert_eq!((p44.directives, p44.executed, p44.failed), (2, 1, 1));
    assert_eq!(p44.p50_ms, 3 * H);
    let all = report.execution.last().expect("all");
    assert_eq!(
        (all.unit.as_str(), all.directives, all.executed, all.failed),
        ("all", 3, 2, 1)
    );
    let p44 = report
        .confirmation
        .iter()
        .find(|r| r.unit == "province/44")
        .expect("province/44");
    assert_eq!(p44.clocks, 3);
    assert_eq!(
        (p44.met, p44.overdue),
        (1, 2),
        "r in time; c marked overdue; l decided after its deadline, unmarked"
    );
    let p11 = &report.confirmation[0];
    assert_eq!(
        (p11.unit.as_str(), p11.clocks, p11.met, p11.overdue),
        ("province/11", 1, 1, 0),
        "decided in time, revoked later"
    );
    let all = report.confirmation.last().expect("all");
    assert_eq!((all.clocks, all.met, all.overdue), (4, 2, 2));
    assert_eq!(report.returns.len(), 1);
    assert_eq!(report.returns[0].reason, "not ours");
    let q = report.queries.last().expect("all");
    assert_eq!(
        (q.asked, q.on_time, q.late, q.missed, q.open),
        (3, 1, 1, 1, 0)
    );
    assert_eq!(report.drills.directives, 1);
    assert_eq!((report.drills.reached, report.drills.p50_ms), (1, 5 * H));
    assert_eq!(report.availability[0].permille, 900);
    assert_eq!(report.series.len(), 1);
    assert_eq!(
        (report.series[0].directives, report.series[0].drills),
        (6, 1)
    );
}

#[test]
fn nearest_rank_percentiles() {
    let s: Vec<i64> = (1..=100).collect();
    assert_eq!(percentile(&s, 0.5), 50);
    assert_eq!(percentile(&s, 0.95), 95);
    assert_eq!(percentile(&[7], 0.95), 7);
    assert_eq!(percentile(&[], 0.5), 0);
}

#[test]
fn every_form_says_the_same_figures() {
    let r = november();
    let md = crate::markdown(&r);
    assert!(md.starts_with("# Operation report for 2026-11"), "{md}");
    assert!(
        md.contains("| province/11 | 2 | 2 | 0 | 0 | 0 | 1h 0m | 2h 0m |"),
        "{md}"
    );
    let html = crate::html(&r).expect("html");
    for id in [
        "chart-directives",
        "chart-execution",
        "chart-confirmation",
        "chart-availability",
    ] {
        assert!(
            html.contains(&format!("<figure id=\"{id}\" class=\"chart\"><svg")),
            "{id}"
        );
    }
    assert!(!html.contains("<script"), "a page without scripts");
    let csv = crate::csv(&r).expect("csv");
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv.as_bytes());
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("row").iter().map(str::to_string).collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == 4));
    let value = |section: &str, unit: &str, measure: &str| {
        rows.iter()
            .find(|r| r[0] == section && r[1] == unit && r[2] == measure)
            .map(|r| r[3].clone())
    };
    assert_eq!(
        value("execution", "province/11", "p95_ms").as_deref(),
        Some("7200000")
    );
    assert_eq!(value("queries", "all", "missed").as_deref(), Some("1"));
    assert_eq!(
        value("returns", "province/44", "r").as_deref(),
        Some("not ours")
    );
    let back: Report =
        serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("parse");
    assert_eq!(back, r);
}

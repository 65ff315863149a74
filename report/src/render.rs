//! A report as Markdown (for people and for filing) and as CSV (for spreadsheets): the CSV
//! is long-form, one figure per row (`section,unit,measure,value`), so every figure of the
//! JSON is there and any tool can pivot it.
//!
//! Must not: compute figures (`figures` does); both forms say what the report says.

use std::fmt::Write as _;

use chrono::TimeZone;
use isms_domain::calendar::china;

use crate::{RenderError, Report, ReportKind};

/// A Unix-ms time in China Standard Time.
pub(crate) fn time(ms: i64) -> String {
    china().timestamp_millis_opt(ms).single().map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// A duration for people: `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
pub(crate) fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        // Under a second: the testing clock, or a directive carried at once.
        0 => format!("{}ms", ms.max(0)),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub(crate) fn permille(p: i32) -> String {
    if p < 0 {
        "unknown".into()
    } else {
        format!("{}.{}%", p / 10, p % 10)
    }
}

pub(crate) fn title(r: &Report) -> String {
    match r.kind {
        ReportKind::Monthly => format!("Operation report for {} — {}", r.period, r.node),
        ReportKind::Annual => format!("Annual operation report {} — {}", r.period, r.node),
        ReportKind::Assistance => format!("Assistance services {} — {}", r.period, r.node),
    }
}

/// One table of a report: what both the Markdown and the HTML show.
pub(crate) struct Section {
    pub heading: String,
    pub note: &'static str,
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The report's tables, in reading order.
pub(crate) fn sections(r: &Report) -> Vec<Section> {
    let mut out = Vec::new();
    let mut table = |heading: &str, note: &'static str, head: &[&str], rows: Vec<Vec<String>>| {
        out.push(Section {
            heading: heading.to_string(),
            note,
            head: head.iter().map(|h| h.to_string()).collect(),
            rows,
        });
    };
    if r.kind == ReportKind::Assistance {
        table(
            "Assistance given (R-17.1)",
            "Requests of other provinces carried out by this one (R-6.4).",
            &[
                "directive",
                "requester",
                "kind",
                "issued",
                "targets",
                "executed",
                "failed",
                "returned",
                "finished",
            ],
            r.assistance
                .iter()
                .map(|a| {
                    vec![
                        a.directive.clone(),
                        a.requester.clone(),
                        a.kind.clone(),
                        time(a.issued_at_ms),
                        a.targets.to_string(),
                        a.executed.to_string(),
                        a.failed.to_string(),
                        a.returned.to_string(),
                        if a.finished_at_ms == 0 {
                            "open".into()
                        } else {
                            time(a.finished_at_ms)
                        },
                    ]
                })
                .collect(),
        );
    }
    table(
        "Directives by kind and urgency",
        "Live directives issued in the period; drills are counted apart.",
        &["kind", "urgency", "directives", "targets"],
        r.directives
            .iter()
            .map(|k| {
                vec![
                    k.kind.clone(),
                    k.urgency.clone(),
                    k.directives.to_string(),
                    k.targets.to_string(),
                ]
            })
            .collect(),
    );
    table(
        &format!("Time to full execution per {}", r.unit),
        "Disposal, monitoring and revocation directives, once per unit they reached; the time runs from issue to the last target's execution.",
        &[
            r.unit.as_str(),
            "directives",
            "executed",
            "failed",
            "returned",
            "open",
            "p50",
            "p95",
        ],
        r.execution
            .iter()
            .map(|e| {
                vec![
                    e.unit.clone(),
                    e.directives.to_string(),
                    e.executed.to_string(),
                    e.failed.to_string(),
                    e.returned.to_string(),
                    e.open.to_string(),
                    span(e.p50_ms),
                    span(e.p95_ms),
                ]
            })
            .collect(),
    );
    table(
        "Confirmation clocks (R-8.1)",
        "",
        &["province", "clocks", "met", "overdue", "open"],
        r.confirmation
            .iter()
            .map(|c| {
                vec![
                    c.unit.clone(),
                    c.clocks.to_string(),
                    c.met.to_string(),
                    c.overdue.to_string(),
                    c.open.to_string(),
                ]
            })
            .collect(),
    );
    table(
        "Returns (R-8.2)",
        "",
        &["directive", "province", "at", "reason"],
        r.returns
            .iter()
            .map(|x| {
                vec![
                    x.directive.clone(),
                    x.node.clone(),
                    time(x.at_ms),
                    x.reason.clone(),
                ]
            })
            .collect(),
    );
    for (heading, rows) in [
        (
            "Access-log queries answered within 2 hours (R-9.2)",
            &r.queries,
        ),
        (
            "Data corrections within 5 working days (R-5.2)",
            &r.corrections,
        ),
    ] {
        table(
            heading,
            "",
            &[
                r.unit.as_str(),
                "asked",
                "on time",
                "late",
                "missed",
                "open",
            ],
            rows.iter()
                .filter(|q| q.asked > 0)
                .map(|q| {
                    vec![
                        q.unit.clone(),
                        q.asked.to_string(),
                        q.on_time.to_string(),
                        q.late.to_string(),
                        q.missed.to_string(),
                        q.open.to_string(),
                    ]
                })
                .collect(),
        );
    }
    table(
        "Availability (R-10.1)",
        "From each node's health history; maintenance windows are not held against it.",
        &[
            "node",
            "reports to",
            "available",
            "up",
            "maintenance",
            "not up",
        ],
        r.availability
            .iter()
            .map(|a| {
                vec![
                    a.node.clone(),
                    a.parent.clone(),
                    permille(a.permille),
                    span(a.up_ms),
                    span(a.maintenance_ms),
                    span(a.not_up_ms),
                ]
            })
            .collect(),
    );
    let d = &r.drills;
    table(
        "Drills (O-3)",
        "Exercises of the whole chain, carried end to end and never applied.",
        &["drills", "targets", "reached", "p50 to reach all", "p95"],
        if d.directives == 0 {
            Vec::new()
        } else {
            vec![vec![
                d.directives.to_string(),
                d.targets.to_string(),
                d.reached.to_string(),
                span(d.p50_ms),
                span(d.p95_ms),
            ]]
        },
    );
    out
}

/// Markdown: a heading per section, tables of the figures.
pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        m,
        "# {}\n\nPeriod {} to {} (China Standard Time), generated {}.\n",
        title(r),
        time(r.from_ms),
        time(r.until_ms),
        time(r.generated_at_ms)
    );
    for s in sections(r) {
        let _ = write!(m, "\n## {}\n\n", s.heading);
        if !s.note.is_empty() {
            let _ = writeln!(m, "{}\n", s.note);
        }
        if s.rows.is_empty() {
            let _ = writeln!(m, "None in this period.");
            continue;
        }
        let _ = writeln!(m, "| {} |", s.head.join(" | "));
        let _ = writeln!(m, "|{}", "---|".repeat(s.head.len()));
        for row in s.rows {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(m, "| {} |", cells.join(" | "));
        }
    }
    m
}

/// CSV, one figure per row: `section,unit,measure,value`.
pub fn csv(r: &Report) -> Result<String, RenderError> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let err = |e: ::csv::Error| RenderError::Csv(e.to_string());
    let mut row = |section: &str, unit: &str, measure: &str, value: String| {
        w.write_record([section, unit, measure, value.as_str()])
    };
    row("report", &r.node, "period", r.period.clone()).map_err(err)?;
    row("report", &r.node, "kind", r.kind.name().into()).map_err(err)?;
    for k in &r.directives {
        let unit = format!("{}/{}", k.kind, k.urgency);
        row("directives", &unit, "directives", k.directives.to_string()).map_err(err)?;
        row("directives", &unit, "targets", k.targets.to_string()).map_err(err)?;
    }
    for p in &r.series {
        row("series", &p.label, "directives", p.directives.to_string()).map_err(err)?;
        row("series", &p.label, "drills", p.drills.to_string()).map_err(err)?;
    }
    for e in &r.execution {
        for (measure, value) in [
            ("directives", e.directives),
            ("executed", e.executed),
            ("failed", e.failed),
            ("returned", e.returned),
            ("open", e.open),
        ] {
            row("execution", &e.unit, measure, value.to_string()).map_err(err)?;
        }
        row("execution", &e.unit, "p50_ms", e.p50_ms.to_string()).map_err(err)?;
        row("execution", &e.unit, "p95_ms", e.p95_ms.to_string()).map_err(err)?;
    }
    for c in &r.confirmation {
        for (measure, value) in [
            ("clocks", c.clocks),
            ("met", c.met),
            ("overdue", c.overdue),
            ("open", c.open),
        ] {
            row("confirmation", &c.unit, measure, value.to_string()).map_err(err)?;
        }
    }
    for x in &r.returns {
        row("returns", &x.node, &x.directive, x.reason.clone()).map_err(err)?;
    }
    for (section, rows) in [("queries", &r.queries), ("corrections", &r.corrections)] {
        for q in rows {
            for (measure, value) in [
                ("asked", q.asked),
                ("on_time", q.on_time),
                ("late", q.late),
                ("missed", q.missed),
                ("open", q.open),
            ] {
                row(section, &q.unit, measure, value.to_string()).map_err(err)?;
            }
        }
    }
    for a in &r.availability {
        row("availability", &a.node, "permille", a.permille.to_string()).map_err(err)?;
        row("availability", &a.node, "up_ms", a.up_ms.to_string()).map_err(err)?;
        row(
            "availability",
            &a.node,
            "maintenance_ms",
            a.maintenance_ms.to_string(),
        )
        .map_err(err)?;
        row(
            "availability",
            &a.node,
            "not_up_ms",
            a.not_up_ms.to_string(),
        )
        .map_err(err)?;
    }
    let d = &r.drills;
    for (measure, value) in [
        ("directives", d.directives),
        ("targets", d.targets),
        ("reached", d.reached),
    ] {
        row("drills", "all", measure, value.to_string()).map_err(err)?;
    }
    row("drills", "all", "p50_ms", d.p50_ms.to_string()).map_err(err)?;
    row("drills", "all", "p95_ms", d.p95_ms.to_string()).map_err(err)?;
    for a in &r.assistance {
        for (measure, value) in [
            ("targets", a.targets),
            ("executed", a.executed),
            ("failed", a.failed),
            ("returned", a.returned),
        ] {
            row("assistance", &a.directive, measure, value.to_string()).map_err(err)?;
        }
        row("assistance", &a.directive, "requester", a.requester.clone()).map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| RenderError::Csv(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| RenderError::Csv(e.to_string()))
}

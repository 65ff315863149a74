//! Operation reports (O-5 monthly and annual, O-3 drills apart, R-17.1 a province's
//! assistance services): the figures of one period, computed from the directive views and
//! availability spans a node holds, and rendered as Markdown, HTML with SVG charts, JSON
//! and CSV. The JSON form is the report itself: the node computes it, the CLI renders it.
//!
//! Must not: read a store or talk to a node (the operator service gathers the inputs), or
//! judge what the regulation demands beyond what the views already say (a target's clock
//! ran out when its view says it did).

mod figures;
mod html;
mod period;
mod render;

pub use figures::{Inputs, NodeAvailability, compute};
pub use html::html;
pub use period::{Period, PeriodError};
pub use render::{csv, markdown};

use serde::{Deserialize, Serialize};

/// The version of [`Report`]'s JSON shape.
pub const SCHEMA: u32 = 1;

/// Which report: the operation reports of O-5, or a province's account of the assistance
/// it gave other provinces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Monthly,
    Annual,
    Assistance,
}

impl ReportKind {
    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Monthly => "monthly",
            ReportKind::Annual => "annual",
            ReportKind::Assistance => "assistance",
        }
    }
}

/// One period's operation report of one node, over the directives it holds (its own and
/// those it relayed: a province reports on its own subtree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: u32,
    pub kind: ReportKind,
    /// `2026-11` or `2026`.
    pub period: String,
    /// The node that made it.
    pub node: String,
    /// The period, Unix ms: `[from_ms, until_ms)` in China Standard Time.
    pub from_ms: i64,
    pub until_ms: i64,
    pub generated_at_ms: i64,
    /// What the per-unit rows are: provinces (at the ministry) or enterprises (at a
    /// province).
    pub unit: String,
    /// Live directives issued in the period, by kind and urgency (drills apart).
    pub directives: Vec<KindRow>,
    /// Directives per day (monthly) or month (annual), live and drills.
    pub series: Vec<SeriesPoint>,
    /// Time from issue to full execution per unit, then `all`.
    pub execution: Vec<ExecutionRow>,
    /// Provinces' confirmation clocks, then `all`.
    pub confirmation: Vec<ClockRow>,
    /// Directives returned by a province, with the reason.
    pub returns: Vec<ReturnRow>,
    /// Access-log queries answered within 2 hours, per unit, then `all`.
    pub queries: Vec<OnTimeRow>,
    /// Data corrections re-reported within 5 working days, per unit, then
    /// `all`.
    pub corrections: Vec<OnTimeRow>,
    /// Each node's availability over the period, where its health history exists.
    pub availability: Vec<AvailabilityRow>,
    /// Drills (O-3), apart from live directives.
    pub drills: DrillSummary,
    /// Assistance requests this province carried out for other provinces; only in
    /// an assistance report.
    pub assistance: Vec<AssistanceRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindRow {
    pub kind: String,
    pub urgency: String,
    pub directives: u64,
    pub targets: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// `2026-11-03` or `2026-11`.
    pub label: String,
    pub directives: u64,
    pub drills: u64,
}

/// A unit's directives (disposal, monitoring, revocation), each counted once per unit it
/// reached: fully executed (every target there executed), with a failure, returned, or
/// still open; and the time from issue to the last target's execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionRow {
    pub unit: String,
    pub directives: u64,
    pub executed: u64,
    pub failed: u64,
    pub returned: u64,
    pub open: u64,
    /// Over the fully executed ones; 0 when none.
    pub p50_ms: i64,
    pub p95_ms: i64,
}

/// A province's confirmation clocks: confirmed (or returned) in time, ran out, still
/// running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockRow {
    pub unit: String,
    pub clocks: u64,
    pub met: u64,
    pub overdue: u64,
    pub open: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnRow {
    pub directive: String,
    pub node: String,
    pub at_ms: i64,
    pub reason: String,
}

/// Answers owed by enterprises: in time, late, never (the clock ran out and nothing
/// came), still open within the clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnTimeRow {
    pub unit: String,
    pub asked: u64,
    pub on_time: u64,
    pub late: u64,
    pub missed: u64,
    pub open: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityRow {
    pub node: String,
    /// The node it reports to.
    pub parent: String,
    pub up_ms: i64,
    pub maintenance_ms: i64,
    pub not_up_ms: i64,
    /// Share of the known time outside maintenance it was up, per mille; -1: unknown.
    pub permille: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillSummary {
    pub directives: u64,
    pub targets: u64,
    /// Targets that confirmed the drill reached them (acknowledged or executed).
    pub reached: u64,
    /// Time from issue until every target was reached, over drills that reached all.
    pub p50_ms: i64,
    pub p95_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistanceRow {
    pub directive: String,
    /// The province that asked.
    pub requester: String,
    pub kind: String,
    pub issued_at_ms: i64,
    pub targets: u64,
    pub executed: u64,
    pub failed: u64,
    pub returned: u64,
    /// When the last target finished; 0 while any is open.
    pub finished_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot draw a chart: {0}")]
    Chart(String),
    #[error("cannot write CSV: {0}")]
    Csv(String),
}

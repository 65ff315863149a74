//! A period's figures from the directive views a node holds: counts by kind and urgency,
//! time to full execution per unit, confirmation clocks, returns, queries and corrections
//! answered in time, drills apart, availability, assistance given.
//!
//! Must not: decide anything a view does not say. A target's clock ran out when its
//! `overdue_at_ms` is set; a directive belongs to the period it was issued in.

use std::collections::BTreeMap;

use isms_domain::directive::{is_final, kind_name};
use isms_proto::v1::{DirectiveKind, DirectiveView, TargetState, TargetView, Urgency};

use crate::period::{Period, bucket_label};
use crate::{
    AssistanceRow, AvailabilityRow, ClockRow, DrillSummary, ExecutionRow, KindRow, OnTimeRow,
    Report, ReportKind, ReturnRow, SCHEMA, SeriesPoint,
};

/// What a report is computed from.
pub struct Inputs<'a> {
    pub kind: ReportKind,
    pub period: Period,
    pub node: &'a str,
    pub now_ms: i64,
    /// `province` or `enterprise`: what [`Inputs::unit_of`] returns.
    pub unit: &'a str,
    /// The unit an enterprise target is counted under; `None`: not below this node (an
    /// assistance request's target elsewhere), counted under `other`.
    pub unit_of: &'a dyn Fn(&str) -> Option<String>,
    /// Every directive the node holds that was issued in the period.
    pub directives: &'a [DirectiveView],
    pub availability: Vec<NodeAvailability>,
}

/// A node's time up, in maintenance and not up within the period (from its health
/// history).
pub struct NodeAvailability {
    pub node: String,
    pub parent: String,
    pub up_ms: i64,
    pub maintenance_ms: i64,
    pub not_up_ms: i64,
}

const ALL: &str = "all";

pub fn compute(inputs: &Inputs<'_>) -> Report {
    let (from_ms, until_ms) = inputs.period.bounds_ms();
    let in_period: Vec<&DirectiveView> = inputs
        .directives
        .iter()
        .filter(|v| {
            v.directive
                .as_ref()
                .is_some_and(|d| d.issued_at_ms >= from_ms && d.issued_at_ms < until_ms)
        })
        .collect();
    let unit = |node: &str| (inputs.unit_of)(node).unwrap_or_else(|| "other".to_string());
    let mut report = Report {
        schema: SCHEMA,
        kind: inputs.kind,
        period: inputs.period.label(),
        node: inputs.node.to_string(),
        from_ms,
        until_ms,
        generated_at_ms: inputs.now_ms,
        unit: inputs.unit.to_string(),
        directives: kind_rows(&in_period),
        series: series(&in_period, matches!(inputs.period, Period::Year(_))),
        execution: execution(&in_period, &unit),
        confirmation: confirmation(&in_period),
        returns: returns(&in_period),
        queries: on_time(&in_period, DirectiveKind::AccessLogQuery, &unit),
        corrections: on_time(&in_period, DirectiveKind::DataCorrection, &unit),
        availability: availability(&inputs.availability),
        drills: drills(&in_period),
        assistance: Vec::new(),
    };
    if inputs.kind == ReportKind::Assistance {
        report.assistance = assistance(&in_period, inputs.node);
    }
    report
}

fn kind_of(v: &DirectiveView) -> DirectiveKind {
    v.directive
        .as_ref()
        .and_then(|d| DirectiveKind::try_from(d.kind).ok())
        .unwrap_or(DirectiveKind::Unspecified)
}

fn issued_at(v: &DirectiveView) -> i64 {
    v.directive.as_ref().map_or(0, |d| d.issued_at_ms)
}

fn state(t: &TargetView) -> TargetState {
    TargetState::try_from(t.state).unwrap_or(TargetState::Unspecified)
}

fn urgency_name(u: i32) -> &'static str {
    match Urgency::try_from(u) {
        Ok(Urgency::Urgent) => "urgent",
        Ok(Urgency::Emergency) => "emergency",
        _ => "general",
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn kind_rows(directives: &[&DirectiveView]) -> Vec<KindRow> {
    let mut rows: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for v in directives {
        let Some(d) = &v.directive else { continue };
        if kind_of(v) == DirectiveKind::Drill {
            continue;
        }
        let row = rows
            .entry((kind_name(d.kind), urgency_name(d.urgency)))
            .or_default();
        row.0 += 1;
        row.1 += count(v.targets.len());
    }
    rows.into_iter()
        .map(|((kind, urgency), (directives, targets))| KindRow {
            kind: kind.to_string(),
            urgency: urgency.to_string(),
            directives,
            targets,
        })
        .collect()
}

fn series(directives: &[&DirectiveView], by_month: bool) -> Vec<SeriesPoint> {
    let mut points: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for v in directives {
        let p = points
            .entry(bucket_label(issued_at(v), by_month))
            .or_default();
        if kind_of(v) == DirectiveKind::Drill {
            p.1 += 1;
        } else {
            p.0 += 1;
        }
    }
    points
        .into_iter()
        .map(|(label, (directives, drills))| SeriesPoint {
            label,
            directives,
            drills,
        })
        .collect()
}

/// Nearest-rank percentile of sorted samples; 0 for none.
fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    // The rank is within 1..=len, so the cast and the index are in range.
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[derive(Default)]
struct Execution {
    directives: u64,
    executed: u64,
    failed: u64,
    returned: u64,
    open: u64,
    times: Vec<i64>,
}

impl Execution {
    /// One directive at one unit: how its targets there ended.
    fn add(&mut self, issued_at_ms: i64, targets: &[&TargetView]) {
        self.directives += 1;
        let states: Vec<TargetState> = targets.iter().map(|t| state(t)).collect();
        if states.iter().all(|s| *s == TargetState::Executed) {
            self.executed += 1;
            let last = targets.iter().map(|t| t.finished_at_ms).max().unwrap_or(0);
            self.times.push((last - issued_at_ms).max(0));
        } else if states.contains(&TargetState::Failed) {
            self.failed += 1;
        } else if states.contains(&TargetState::Returned) {
            self.returned += 1;
        } else {
            self.open += 1;
        }
    }

    fn row(mut self, unit: String) -> ExecutionRow {
        self.times.sort_unstable();
        ExecutionRow {
            unit,
            directives: self.directives,
            executed: self.executed,
            failed: self.failed,
            returned: self.returned,
            open: self.open,
            p50_ms: percentile(&self.times, 0.50),
            p95_ms: percentile(&self.times, 0.95),
        }
    }
}

/// Disposal, monitoring and revocation directives per unit they reached, then over all.
fn execution(directives: &[&DirectiveView], unit: &dyn Fn(&str) -> String) -> Vec<ExecutionRow> {
    let mut units: BTreeMap<String, Execution> = BTreeMap::new();
    let mut all = Execution::default();
    for v in directives {
        if !matches!(
            kind_of(v),
            DirectiveKind::Disposal | DirectiveKind::Monitoring | DirectiveKind::Revocation
        ) || v.targets.is_empty()
        {
            continue;
        }
        let mut by_unit: BTreeMap<String, Vec<&TargetView>> = BTreeMap::new();
        for t in &v.targets {
            by_unit.entry(unit(&t.node)).or_default().push(t);
        }
        for (u, targets) in by_unit {
            units.entry(u).or_default().add(issued_at(v), &targets);
        }
        all.add(issued_at(v), &v.targets.iter().collect::<Vec<_>>());
    }
    let mut rows: Vec<ExecutionRow> = units.into_iter().map(|(u, e)| e.row(u)).collect();
    rows.push(all.row(ALL.to_string()));
    rows
}

fn confirmation(directives: &[&DirectiveView]) -> Vec<ClockRow> {
    let mut units: BTreeMap<String, ClockRow> = BTreeMap::new();
    let mut all = clock_row(ALL);
    for v in directives {
        for hop in v.hops.iter().filter(|h| h.deadline_ms != 0) {
            for row in [
                units
                    .entry(hop.node.clone())
                    .or_insert_with(|| clock_row(&hop.node)),
                &mut all,
            ] {
                row.clocks += 1;
                let waiting = state(hop) == TargetState::Received;
                // Decided after its deadline: late, whether or not this node's own ticker
                // marked it (a province's clock is marked at the ministry, which runs it).
                let decided_late = !waiting && decided_at(hop) > hop.deadline_ms;
                if hop.overdue_at_ms != 0 || decided_late {
                    row.overdue += 1;
                } else if waiting {
                    row.open += 1;
                } else {
                    row.met += 1;
                }
            }
        }
    }
    units.into_values().chain([all]).collect()
}

/// When a relaying province decided: confirmed or passed on (`acknowledged_at_ms`), else
/// returned (`finished_at_ms`); a later change (a revocation) is not its decision.
fn decided_at(hop: &TargetView) -> i64 {
    [
        hop.acknowledged_at_ms,
        hop.finished_at_ms,
        hop.updated_at_ms,
    ]
    .into_iter()
    .find(|&t| t != 0)
    .unwrap_or(0)
}

fn clock_row(unit: &str) -> ClockRow {
    ClockRow {
        unit: unit.to_string(),
        clocks: 0,
        met: 0,
        overdue: 0,
        open: 0,
    }
}

fn returns(directives: &[&DirectiveView]) -> Vec<ReturnRow> {
    let mut rows: Vec<ReturnRow> = directives
        .iter()
        .flat_map(|v| {
            let id = v
                .directive
                .as_ref()
                .map(|d| d.id.clone())
                .unwrap_or_default();
            v.hops
                .iter()
                .filter(|h| state(h) == TargetState::Returned)
                .map(move |h| ReturnRow {
                    directive: id.clone(),
                    node: h.node.clone(),
                    at_ms: h.updated_at_ms,
                    reason: h.detail.clone(),
                })
        })
        .collect();
    rows.sort_by(|a, b| (a.at_ms, &a.directive).cmp(&(b.at_ms, &b.directive)));
    rows
}

fn on_time(
    directives: &[&DirectiveView],
    kind: DirectiveKind,
    unit: &dyn Fn(&str) -> String,
) -> Vec<OnTimeRow> {
    let mut units: BTreeMap<String, OnTimeRow> = BTreeMap::new();
    let mut all = on_time_row(ALL);
    for v in directives.iter().filter(|v| kind_of(v) == kind) {
        for t in &v.targets {
            let u = unit(&t.node);
            for row in [
                units.entry(u.clone()).or_insert_with(|| on_time_row(&u)),
                &mut all,
            ] {
                row.asked += 1;
                let answered = matches!(state(t), TargetState::Executed | TargetState::Failed);
                match (answered, t.overdue_at_ms != 0) {
                    (true, false) => row.on_time += 1,
                    (true, true) => row.late += 1,
                    (false, true) => row.missed += 1,
                    (false, false) => row.open += 1,
                }
            }
        }
    }
    units.into_values().chain([all]).collect()
}

fn on_time_row(unit: &str) -> OnTimeRow {
    OnTimeRow {
        unit: unit.to_string(),
        asked: 0,
        on_time: 0,
        late: 0,
        missed: 0,
        open: 0,
    }
}

fn availability(nodes: &[NodeAvailability]) -> Vec<AvailabilityRow> {
    let mut rows: Vec<AvailabilityRow> = nodes
        .iter()
        .map(|n| {
            let known = n.up_ms + n.not_up_ms;
            AvailabilityRow {
                node: n.node.clone(),
                parent: n.parent.clone(),
                up_ms: n.up_ms,
                maintenance_ms: n.maintenance_ms,
                not_up_ms: n.not_up_ms,
                permille: if known > 0 {
                    i32::try_from(n.up_ms * 1000 / known).unwrap_or(1000)
                } else {
                    -1
                },
            }
        })
        .collect();
    rows.sort_by(|a, b| a.node.cmp(&b.node));
    rows
}

fn drills(directives: &[&DirectiveView]) -> DrillSummary {
    let mut summary = DrillSummary::default();
    let mut times = Vec::new();
    for v in directives
        .iter()
        .filter(|v| kind_of(v) == DirectiveKind::Drill)
    {
        summary.directives += 1;
        summary.targets += count(v.targets.len());
        let reached: Vec<i64> = v
            .targets
            .iter()
            .filter(|t| matches!(state(t), TargetState::Acknowledged | TargetState::Executed))
            .map(|t| match t.acknowledged_at_ms {
                0 => t.finished_at_ms,
                at => at,
            })
            .collect();
        summary.reached += count(reached.len());
        if !v.targets.is_empty() && reached.len() == v.targets.len() {
            let last = reached.iter().copied().max().unwrap_or(0);
            times.push((last - issued_at(v)).max(0));
        }
    }
    times.sort_unstable();
    summary.p50_ms = percentile(&times, 0.50);
    summary.p95_ms = percentile(&times, 0.95);
    summary
}

/// Requests another province issued that this one carried out.
fn assistance(directives: &[&DirectiveView], me: &str) -> Vec<AssistanceRow> {
    directives
        .iter()
        .filter_map(|v| {
            let d = v.directive.as_ref()?;
            if d.issuer == me || !d.issuer.starts_with("province/") {
                return None;
            }
            let states: Vec<TargetState> = v.targets.iter().map(state).collect();
            let n = |s: TargetState| count(states.iter().filter(|x| **x == s).count());
            let all_final = !states.is_empty() && states.iter().all(|s| is_final(*s));
            Some(AssistanceRow {
                directive: d.id.clone(),
                requester: d.issuer.clone(),
                kind: kind_name(d.kind).to_string(),
                issued_at_ms: d.issued_at_ms,
                targets: count(states.len()),
                executed: n(TargetState::Executed),
                failed: n(TargetState::Failed),
                returned: n(TargetState::Returned),
                finished_at_ms: if all_final {
                    v.targets
                        .iter()
                        .map(|t| t.finished_at_ms)
                        .max()
                        .unwrap_or(0)
                } else {
                    0
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;

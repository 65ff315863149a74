//! Operation reports (O-5, O-3, R-17.1): gathers what a report is computed from (every
//! directive this node holds issued in the period, with its targets and relays, and every
//! node's availability history below it) and has `isms_report` compute the figures. A
//! province reports on its own subtree: its units are its enterprises.
//!
//! Must not: write anything, or report on a period that has not ended.

use isms_core::Shared;
use isms_core::error::NodeError;
use isms_domain::directive::InputError;
use isms_domain::identity::{NodeId, Tier};
use isms_domain::records::{self, decode};
use isms_network::{Heartbeats, history};
use isms_proto::record::StoredDirective;
use isms_proto::v1::OperationReportRequest;
use isms_report::{Inputs, NodeAvailability, Period, Report, ReportKind};

use crate::views::directive_view;

fn invalid(why: String) -> NodeError {
    NodeError::Input(InputError::Invalid(why))
}

pub fn operation_report(
    shared: &Shared,
    beats: &Heartbeats,
    request: &OperationReportRequest,
) -> Result<Report, NodeError> {
    let (kind, period) = match request.kind.as_str() {
        "monthly" => (ReportKind::Monthly, Period::month(&request.period)),
        "annual" => (ReportKind::Annual, Period::year(&request.period)),
        "assistance" if shared.node_id.tier() == Tier::Province => {
            (ReportKind::Assistance, Period::year(&request.period))
        }
        "assistance" => {
            return Err(invalid(
                "an assistance report is a province's account of the assistance it gave \
                 (R-17.1)"
                    .into(),
            ));
        }
        other => {
            return Err(invalid(format!(
                "unknown report {other:?}: monthly, annual or assistance"
            )));
        }
    };
    let period = period.map_err(|e| invalid(e.to_string()))?;
    let now_ms = shared.now_ms();
    period
        .check_ended(now_ms)
        .map_err(|e| invalid(e.to_string()))?;
    let (from_ms, until_ms) = period.bounds_ms();
    let directives = directives_issued(shared, from_ms, until_ms)?;
    let availability = availability(shared, beats, from_ms, until_ms, now_ms)?;
    let me = shared.node_id.clone();
    let unit_of = |node: &str| -> Option<String> {
        let id: NodeId = node.parse().ok()?;
        let route = shared.directory.get(&id)?;
        Some(if shared.node_id.tier() == Tier::Ministry {
            route.to_string()
        } else {
            node.to_string()
        })
    };
    Ok(isms_report::compute(&Inputs {
        kind,
        period,
        node: me.as_str(),
        now_ms,
        unit: if shared.node_id.tier() == Tier::Ministry {
            "province"
        } else {
            "enterprise"
        },
        unit_of: &unit_of,
        directives: &directives,
        availability,
    }))
}

/// Every directive held here issued within `[from_ms, until_ms)`, as its view.
fn directives_issued(
    shared: &Shared,
    from_ms: i64,
    until_ms: i64,
) -> Result<Vec<isms_proto::v1::DirectiveView>, NodeError> {
    let mut views = Vec::new();
    for entry in shared.store.scan_prefix(records::DIRECTIVE_PREFIX) {
        let (k, v) = entry?;
        let stored: StoredDirective = decode(&k, &v)?;
        let Some(d) = stored.directive else { continue };
        if d.issued_at_ms >= from_ms && d.issued_at_ms < until_ms {
            views.push(directive_view(shared, &d.id)?);
        }
    }
    Ok(views)
}

/// This node's and every node's below it time up, in maintenance and not up in the period.
fn availability(
    shared: &Shared,
    beats: &Heartbeats,
    from_ms: i64,
    until_ms: i64,
    now_ms: i64,
) -> Result<Vec<NodeAvailability>, NodeError> {
    let mut nodes = vec![beats.own()];
    nodes.extend(beats.view.snapshot());
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        let spans = isms_core::availability_history(&shared.store, &n.node)?;
        if spans.is_empty() {
            continue;
        }
        let t = history::tally(&spans, from_ms, until_ms, now_ms);
        out.push(NodeAvailability {
            node: n.node,
            parent: n.parent,
            up_ms: t.up_ms,
            maintenance_ms: t.maintenance_ms,
            not_up_ms: t.not_up_ms,
        });
    }
    Ok(out)
}

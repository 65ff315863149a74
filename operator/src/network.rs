//! The central view (O-1): the network below this node as its heartbeats say (every node's
//! state and health, filtered), and one node's health with its availability history. A
//! province sees its own subtree; the ministry, the whole tree.
//!
//! Must not: write anything, or judge a node's state (the network view does).

use isms_core::Shared;
use isms_core::error::NodeError;
use isms_domain::directive::InputError;
use isms_domain::liveness::parse_liveness;
use isms_network::{Heartbeats, history, liveness_of};
use isms_proto::v1::{
    NetworkNodeReply, NetworkNodeRequest, NetworkStatusReply, NetworkStatusRequest,
};

/// Every node this node knows of, itself first, filtered by state and province.
pub fn network_status(
    shared: &Shared,
    beats: &Heartbeats,
    request: &NetworkStatusRequest,
) -> Result<NetworkStatusReply, NodeError> {
    let state = match request.state.as_str() {
        "" => None,
        name => Some(parse_liveness(name).ok_or_else(|| {
            NodeError::Input(InputError::Invalid(format!(
                "unknown state {name:?}: one of up, stale, down, unknown, maintenance"
            )))
        })?),
    };
    let province = match request.province.as_str() {
        "" => None,
        p if p.starts_with("province/") => Some(p.to_string()),
        code if code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("province/{code}"))
        }
        other => {
            return Err(NodeError::Input(InputError::Invalid(format!(
                "--province {other:?}: a two-digit code (44) or a province's ID (province/44)"
            ))));
        }
    };
    let mut nodes = vec![beats.own()];
    nodes.extend(beats.view.snapshot());
    nodes.retain(|n| {
        state.is_none_or(|s| liveness_of(n) == s)
            && province
                .as_ref()
                .is_none_or(|p| &n.node == p || &n.parent == p)
    });
    Ok(NetworkStatusReply {
        nodes,
        now_ms: shared.now_ms(),
        interval_ms: beats.view.interval_ms(),
    })
}

/// One node's health, history and availability today and this month (China Standard
/// Time).
pub fn network_node(
    shared: &Shared,
    beats: &Heartbeats,
    request: &NetworkNodeRequest,
) -> Result<NetworkNodeReply, NodeError> {
    let node = if request.node == shared.node_id.as_str() {
        beats.own()
    } else {
        beats
            .view
            .snapshot()
            .into_iter()
            .find(|n| n.node == request.node)
            .ok_or_else(|| {
                NodeError::NotFound(format!(
                    "node {:?}: not below {}",
                    request.node, shared.node_id
                ))
            })?
    };
    let history = isms_core::availability_history(&shared.store, &node.node)?;
    let now = shared.now_ms();
    let (day_start, day_end) = history::day_of(now);
    let (month_start, month_end) = history::month_of(now);
    let month = history::tally(&history, month_start, month_end, now);
    Ok(NetworkNodeReply {
        available_today_permille: history::tally(&history, day_start, day_end, now).permille(),
        available_month_permille: month.permille(),
        maintenance_month_ms: month.maintenance_ms,
        upgrades: isms_core::stored_upgrades(&shared.store)?
            .into_iter()
            .filter(|u| u.node == node.node)
            .collect(),
        contact: isms_core::stored_contacts(&shared.store)?
            .into_iter()
            .find(|c| c.node == node.node),
        node: Some(node),
        history,
    })
}

/// An upgrade window as an operator gives it: the start (RFC 3339) and the duration
/// (`2h`), as Unix ms.
pub fn upgrade_window(at: &str, duration: &str) -> Result<(i64, i64), NodeError> {
    let start = chrono::DateTime::parse_from_rfc3339(at.trim()).map_err(|e| {
        NodeError::Input(InputError::Invalid(format!(
            "--at {at:?}: an RFC 3339 time such as 2026-12-14T22:00:00+08:00 ({e})"
        )))
    })?;
    let length = humantime::parse_duration(duration.trim()).map_err(|e| {
        NodeError::Input(InputError::Invalid(format!(
            "--duration {duration:?}: a duration such as 2h ({e})"
        )))
    })?;
    let ms = i64::try_from(length.as_millis()).unwrap_or(i64::MAX);
    Ok((start.timestamp_millis(), ms))
}

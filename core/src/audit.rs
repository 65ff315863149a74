//! The audit trail: one record per operator action, written in the same group as
//! the action itself.

use super::*;

/// Records an operator action in the audit trail.
pub(super) fn audit(g: &mut Group<'_>, operator: &str, action: &str, subject: &str, outcome: &str) {
    let rec = AuditRecord {
        at_ms: g.now,
        operator: operator.to_string(),
        action: action.to_string(),
        subject: subject.to_string(),
        outcome: outcome.to_string(),
    };
    g.txn
        .put(records::audit(g.now, &uuid::Uuid::now_v7()), encode(&rec));
}

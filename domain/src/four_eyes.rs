//! Four-eyes (O-6): which directives are *major*, and the names of an approval's states.
//! A major directive leaves its issuing node only once a second operator approves it.
//!
//! Must not: decide who may approve (the operator crate's permission table and the core
//! do), or keep any state.

use isms_proto::v1::{ApprovalState, Directive, DirectiveKind, Urgency};

/// What makes a directive major, as configured (`[four_eyes]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MajorRule {
    pub to_all: bool,
    pub emergency: bool,
    /// More rules than this is major.
    pub max_rules: u32,
    pub revocation_of_major: bool,
}

impl MajorRule {
    /// Why `d`, issued with the selection `to`, is major; empty when it is not.
    /// `revokes_major` says whether the directive a revocation withdraws was major.
    pub fn reasons(&self, d: &Directive, to: &[String], revokes_major: bool) -> Vec<String> {
        let mut why = Vec::new();
        if self.to_all && to.iter().any(|t| t.trim() == "all") {
            why.push("to all".to_string());
        }
        if self.emergency && d.urgency == Urgency::Emergency as i32 {
            why.push("an emergency".to_string());
        }
        if d.rules.len() > self.max_rules as usize {
            why.push(format!(
                "{} rules (more than {})",
                d.rules.len(),
                self.max_rules
            ));
        }
        if self.revocation_of_major && d.kind == DirectiveKind::Revocation as i32 && revokes_major {
            why.push("revokes a major directive".to_string());
        }
        why
    }
}

/// The name operators see and `directive list --state` takes.
pub fn approval_state_name(s: ApprovalState) -> &'static str {
    match s {
        ApprovalState::Unspecified => "unknown",
        ApprovalState::Awaiting => "awaiting_approval",
        ApprovalState::Approved => "approved",
        ApprovalState::Rejected => "rejected",
        ApprovalState::Expired => "expired",
    }
}

/// Approval states `directive list --state` takes.
pub const APPROVAL_STATE_NAMES: [&str; 4] =
    ["awaiting_approval", "approved", "rejected", "expired"];

#[cfg(test)]
mod tests {
    use super::*;
    use isms_proto::v1::Rule;

    fn rule() -> MajorRule {
        MajorRule {
            to_all: true,
            emergency: true,
            max_rules: 2,
            revocation_of_major: true,
        }
    }

    #[test]
    fn each_default_reason_makes_a_directive_major() {
        let mut d = Directive {
            kind: DirectiveKind::Disposal as i32,
            urgency: Urgency::General as i32,
            rules: vec![Rule::default(); 2],
            ..Default::default()
        };
        let one = ["enterprise/e1".to_string()];
        assert!(rule().reasons(&d, &one, false).is_empty());
        assert_eq!(rule().reasons(&d, &["all".into()], false), ["to all"]);
        d.rules.push(Rule::default());
        assert_eq!(rule().reasons(&d, &one, false), ["3 rules (more than 2)"]);
        d.rules.truncate(1);
        d.urgency = Urgency::Emergency as i32;
        assert_eq!(rule().reasons(&d, &one, false), ["an emergency"]);
        d.urgency = Urgency::General as i32;
        d.kind = DirectiveKind::Revocation as i32;
        assert!(rule().reasons(&d, &one, false).is_empty());
        assert_eq!(
            rule().reasons(&d, &one, true),
            ["revokes a major directive"]
        );
        let off = MajorRule {
            to_all: false,
            emergency: false,
            max_rules: u32::MAX,
            revocation_of_major: false,
        };
        d.urgency = Urgency::Emergency as i32;
        assert!(off.reasons(&d, &["all".into()], true).is_empty());
    }
}

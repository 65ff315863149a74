//! Accountability settings: which directives need a second operator's approval
//! (`[four_eyes]`, O-6) and how long the audit trail is kept (`[audit]`, R-13.2), with
//! their checks. Must not act on them: the core does.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, invalid};

/// Four-eyes (O-6): a *major* directive is stored as awaiting approval and leaves this node
/// only once an operator other than its issuer, holding `approver`, approves it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FourEyes {
    /// Default true. False: nothing is major (a network for tests of other concerns).
    pub enabled: bool,
    /// `--to all` is major. Default true.
    pub to_all: bool,
    /// Any emergency (urgency `emergency`) is major. Default true.
    pub emergency: bool,
    /// More rules than this is major. Default 1,000.
    pub max_rules: u32,
    /// Revoking a major directive is major. Default true.
    pub revocation_of_major: bool,
    /// How long an approval request stays open; then it is expired and never sent.
    /// Default 24h.
    #[serde(with = "humantime_serde")]
    pub expires_after: Duration,
}

impl Default for FourEyes {
    fn default() -> Self {
        FourEyes {
            enabled: true,
            to_all: true,
            emergency: true,
            max_rules: 1000,
            revocation_of_major: true,
            expires_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// The least retention the regulation allows: six months.
pub const MIN_AUDIT_RETENTION_DAYS: u32 = 183;

/// How long audit records are kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditRetention {
    /// Records younger than this are never pruned; older ones are pruned once exported.
    /// Default and least 183.
    pub retention_days: u32,
}

impl Default for AuditRetention {
    fn default() -> Self {
        AuditRetention {
            retention_days: MIN_AUDIT_RETENTION_DAYS,
        }
    }
}

/// Refuses a retention below the regulation's and an approval request that could never
/// be approved.
pub(crate) fn check(four_eyes: &FourEyes, audit: &AuditRetention) -> Result<(), ConfigError> {
    if audit.retention_days < MIN_AUDIT_RETENTION_DAYS {
        return Err(invalid(
            "audit.retention_days",
            format!(
                "{} is less than the {MIN_AUDIT_RETENTION_DAYS} days (six months) the \
                     regulation requires (R-13.2)",
                audit.retention_days
            ),
        ));
    }
    if four_eyes.expires_after.is_zero() {
        return Err(invalid(
            "four_eyes.expires_after",
            "must be longer than zero (an approval request could never be approved)",
        ));
    }
    Ok(())
}

//! Access to the web console (issue 39): `NAME console open` (an operator call over mTLS
//! like any other) gets a one-time link whose token is bound to that operator and lapses
//! after `LINK_LIFETIME`; the console redeems it once for a session. Every console action
//! then goes through this service with a `ConsoleIdentity` on the request, so the roster,
//! the roles and the audit trail treat it as that operator's call.
//!
//! Must not: let a request from the network carry a console identity (only the console,
//! in the node's process, attaches one), or keep a token past its first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a console link may wait to be opened.
pub const LINK_LIFETIME: Duration = Duration::from_secs(120);

/// The operator a console session speaks for, attached by the console to the requests it
/// makes of this service (request extensions cannot come over the network).
#[derive(Debug, Clone)]
pub struct ConsoleIdentity {
    pub operator: String,
    /// Where the browser is, for the audit trail.
    pub peer: String,
}

/// One-time sign-in tokens, shared by the operator service (which issues them) and the
/// console (which redeems them).
#[derive(Debug, Clone)]
pub struct ConsoleTokens {
    pending: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    lifetime: Duration,
}

impl Default for ConsoleTokens {
    fn default() -> Self {
        ConsoleTokens::with_lifetime(LINK_LIFETIME)
    }
}

impl ConsoleTokens {
    /// Tokens that lapse `lifetime` after they are issued.
    pub fn with_lifetime(lifetime: Duration) -> Self {
        ConsoleTokens {
            pending: Arc::default(),
            lifetime,
        }
    }

    /// How long a token stays valid after it is issued.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A fresh token for `operator`, valid once within the lifetime.
    pub fn issue(&self, operator: &str) -> String {
        let token = random_hex();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        pending.retain(|_, (_, expires)| *expires > now);
        pending.insert(token.clone(), (operator.to_string(), now + self.lifetime));
        token
    }

    /// The operator `token` was issued to, if it is known and has not lapsed; either way
    /// it is gone afterwards.
    pub fn redeem(&self, token: &str) -> Option<String> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (operator, expires) = pending.remove(token)?;
        (expires > Instant::now()).then_some(operator)
    }
}

/// 32 random bytes as hex, from the thread's cryptographically secure generator.
pub fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once_and_only_for_its_operator() {
        let tokens = ConsoleTokens::default();
        let t = tokens.issue("alice");
        assert_eq!(t.len(), 64);
        assert_eq!(tokens.redeem("not-a-token"), None);
        assert_eq!(tokens.redeem(&t).as_deref(), Some("alice"));
        assert_eq!(tokens.redeem(&t), None, "used once");
        assert_ne!(tokens.issue("alice"), tokens.issue("alice"));
    }

    #[test]
    fn a_token_lapses() {
        let tokens = ConsoleTokens::with_lifetime(Duration::ZERO);
        let t = tokens.issue("alice");
        assert_eq!(tokens.redeem(&t), None, "lapsed at once");
    }
}

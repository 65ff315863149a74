//! The ISMS domain: what a directive is, independent of how it travels or is stored.
//!
//! Owns node identities (`identity`), directives' rules and targets with their validation
//! and normalisation (`directive`), the keyspace and versioned encoding of a node's records
//! (`records`), the working-day calendar (`calendar`), the clock the regulation's limits
//! are measured on (`clock`), access-log queries and data-correction demands
//! (`access_log`), the audit trail's hash chain (`audit_chain`), which directives
//! need a second operator's approval (`four_eyes`), the versioned blacklist's fold and
//! checksum (`blacklist`), and what a signed directive covers and how a signature is checked
//! against the network's CA (`signature`).
//!
//! Must not: open a socket, touch the store, or spawn a task. It reads only the files it is
//! pointed to (a calendar directory, a test clock file, an enterprise's access log).

pub mod access_log;
pub mod audit_chain;
pub mod blacklist;
pub mod calendar;
pub mod clock;
pub mod directive;
pub mod four_eyes;
pub mod identity;
pub mod liveness;
pub mod records;
pub mod reports;
pub mod signature;

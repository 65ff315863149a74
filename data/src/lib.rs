//! Enterprises' basic and active-resource data: reading a submission as an
//! enterprise exports it (`submission`), and the province's validation of it by rules kept
//! as data (`validate`), whose findings become a correction demand.
//!
//! Must not: store, send or schedule anything (the core does), or read files.

pub mod access_logs;
pub mod submission;
pub mod validate;

pub use access_logs::{AccessLogStore, LogStoreError};
pub use submission::{SubmissionError, parse};
pub use validate::{Rules, validate};

//! The whole network in one view (O-1, R-10.1): every node sends its parent a heartbeat
//! with its health each `health.interval`; a parent judges its children's silence (stale,
//! down, maintenance) and passes what changed below it up with its own, so the ministry
//! holds the state of every node of the tree. Changes of state go to the core, which records
//! them once with the availability history and the audit trail.
//!
//! Owns the in-memory view (`view`), this node's own health (`local`) and what the
//! availability history adds up to (`history`). Must not write the store: the core is its
//! one writer.

pub mod beats;
pub mod history;
pub mod local;
pub mod view;

pub use beats::Heartbeats;
/// A node's state changing, as one node saw it: recorded by the core.
pub use isms_core::LivenessChange as Change;
pub use local::Collector;
pub use view::{Known, NetworkView, Window, liveness_of};

/// Most nodes one heartbeat carries of what changed below its sender; the rest go with the
/// next ones.
pub const MAX_BELOW_PER_HEARTBEAT: usize = 2_000;

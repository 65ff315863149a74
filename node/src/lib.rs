//! The ISMS node: everything the three binaries share. Layers, bottom up: `identity` and
//! `config` → `tls` → `records` (keyspace over `isms_store`) → `core` (the state machine) →
//! `link` (over `wire`) and `operator` (gRPC at the edge) → `node` (wiring) → `cli`
//! (operator commands).

pub mod access_log;
pub mod calendar;
pub mod cli;
pub mod clock;
pub mod config;
pub mod core;
pub mod directive;
pub mod error;
pub mod identity;
pub mod link;
pub mod node;
pub mod operator;
pub mod pki;
pub mod records;
pub mod scheduling;
pub mod telemetry;
pub mod tls;
pub mod wire;

/// The wire types, for tools and tests that speak the protocol.
pub use isms_proto as proto;

//! The node process: wiring and lifecycle. `node::serve` is what each binary's `serve`
//! command runs: it loads the config, puts the process under its scheduling policy, starts
//! telemetry, opens the store, starts the core, serves links and the operator API over
//! mTLS, dials the parent, and tears it all down in order on SIGTERM.
//!
//! Must not hold domain logic: each piece it starts lives in the crate of its concern
//! (`isms-core`, `isms-transport`, `isms-operator`).

pub mod access_logs;
pub mod data_export;
pub mod metrics;
pub mod network;
pub mod node;
pub mod scheduling;
pub mod telemetry;

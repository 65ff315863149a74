//! The end-to-end suite as one test binary: each module spawns the real node binaries on
//! loopback. One binary, not one per file, because each link of a debug binary carrying the
//! whole workspace costs time and hundreds of megabytes of disk.

mod access_logs;
mod acks;
mod assistance;
mod audit;
mod audit_keeping;
mod backbone;
mod blacklist_sync;
mod console;
mod crash;
mod data;
mod enforce_nftables;
mod enforce_unbound;
mod four_eyes;
mod idempotent;
mod inbox;
mod kinds;
mod lifecycle;
mod malformed;
mod monitoring;
mod network_view;
mod operation_reports;
mod operators_tools;
mod outcomes;
mod queries;
mod reports;
mod requirements;
mod restored;
mod revocation;
mod roles;
mod security;
mod telemetry;
mod tidy;
mod trust;

//! The operator surface: the operator gRPC API a node serves to its own operators
//! (`service`), and the operator commands of the three binaries that call it (`cli`).
//!
//! Owns what an operator may ask and how it is shown. Must not write the store or decide a
//! directive's fate: requests go to the core as events, and views are read from what the
//! core committed. Authorization (roles, the permission table) belongs here, beside the
//! requests it guards.

pub mod cli;
pub mod service;

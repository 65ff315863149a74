//! The operator surface of a node: the operator gRPC API it serves to its own operators
//! (`service`). The commands that call it are `isms-cli`'s.
//!
//! Owns what an operator may ask and how it is shown. Must not write the store or decide a
//! directive's fate: requests go to the core as events, and views are read from what the
//! core committed. Authorization (roles, the permission table) belongs here, beside the
//! requests it guards.

pub mod service;

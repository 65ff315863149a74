//! The operator surface of a node: the operator gRPC API it serves to its own operators
//! (`service`), who may call what (`authz`: roles, the roster, the permission table), and
//! the views it answers with, read from what the core committed (`views`) and from the
//! network view (`network`).
//! The commands that call it are `isms-cli`'s.
//!
//! Owns what an operator may ask and how it is shown. Must not write the store or decide a
//! directive's fate: requests go to the core as events, and views are read from what the
//! core committed.

pub mod authz;
pub mod console_access;
pub mod network;
pub mod operation_report;
pub mod service;
pub mod views;

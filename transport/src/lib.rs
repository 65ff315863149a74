//! The links between nodes: mutual TLS (`tls`), the link's gRPC transport (`wire`), and the
//! store-and-forward sessions over it (`link`), the parent's side and the child's dialer,
//! and the revocation lists that close connections of revoked certificates (`revocation`).
//!
//! Owns the network. Must not write the store: what arrives goes to the core as an event,
//! and what leaves is read from the outboxes the core wrote and published as durable.

pub mod link;
mod pem;
pub mod revocation;
pub mod tls;
pub mod wire;

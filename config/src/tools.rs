//! Operators' tools a node serves (issue 39): Prometheus metrics (`[metrics]`) and the web
//! console (`[console]`), each off unless configured. Must not act on them: the node
//! serves them.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Prometheus metrics (`[metrics]`): where the node serves them as text on `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Address and port, e.g. `127.0.0.1:9464`; port 0 takes a free one (said in the log).
    pub listen: SocketAddr,
}

/// The web console (`[console]`): where the node serves it over HTTP. Operators sign in
/// with the one-time link `NAME console open` prints; keep it on loopback or behind a
/// TLS-terminating proxy of the organisation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Console {
    /// Address and port, e.g. `127.0.0.1:8443`.
    pub listen: SocketAddr,
}

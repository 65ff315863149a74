//! A node's liveness as operators read and write it (O-1): `up`, `stale`, `down`,
//! `unknown`, `maintenance`.
//!
//! Must not: decide a node's liveness (the network view does).

use isms_proto::v1::Liveness;

pub fn liveness_name(l: Liveness) -> &'static str {
    match l {
        Liveness::Up => "up",
        Liveness::Stale => "stale",
        Liveness::Down => "down",
        Liveness::Unknown => "unknown",
        Liveness::Maintenance => "maintenance",
        Liveness::Unspecified => "not yet heard",
    }
}

/// The liveness an operator named, if it is one.
pub fn parse_liveness(name: &str) -> Option<Liveness> {
    [
        Liveness::Up,
        Liveness::Stale,
        Liveness::Down,
        Liveness::Unknown,
        Liveness::Maintenance,
    ]
    .into_iter()
    .find(|l| liveness_name(*l) == name)
}

/// Worst first: how the central view orders nodes and counts.
pub fn severity(l: Liveness) -> u8 {
    match l {
        Liveness::Down => 0,
        Liveness::Stale => 1,
        Liveness::Unknown => 2,
        Liveness::Unspecified => 3,
        Liveness::Maintenance => 4,
        Liveness::Up => 5,
    }
}

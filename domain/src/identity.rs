//! Who is who: node IDs, operator identities, and reading them from a verified certificate's
//! SPIFFE-style URI SAN (`spiffe://<trust-domain>/province/44`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The tier a node belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Ministry,
    Province,
    Enterprise,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Ministry => "ministry",
            Tier::Province => "province",
            Tier::Enterprise => "enterprise",
        })
    }
}

/// A node's ID: `ministry`, `province/<two-digit GB/T 2260 code>` or `enterprise/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node ID {given:?}: {why}")]
pub struct BadNodeId {
    pub given: String,
    pub why: &'static str,
}

impl NodeId {
    pub fn ministry() -> Self {
        NodeId("ministry".into())
    }

    pub fn tier(&self) -> Tier {
        if self.0 == "ministry" {
            Tier::Ministry
        } else if is_province(&self.0) {
            Tier::Province
        } else {
            Tier::Enterprise
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a node ID as stored (a target's or a relay's name) is a province's: the
/// relays among a directive's targets.
pub fn is_province(id: &str) -> bool {
    id.starts_with("province/")
}

fn valid_enterprise_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl FromStr for NodeId {
    type Err = BadNodeId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| BadNodeId {
            given: s.to_string(),
            why,
        };
        if s == "ministry" {
            return Ok(NodeId(s.into()));
        }
        if let Some(code) = s.strip_prefix("province/") {
            if code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(NodeId(s.into()));
            }
            return Err(bad(
                "a province code is two digits (GB/T 2260), e.g. province/44",
            ));
        }
        if let Some(id) = s.strip_prefix("enterprise/") {
            if valid_enterprise_id(id) {
                return Ok(NodeId(s.into()));
            }
            return Err(bad(
                "an enterprise ID is 1-64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        Err(bad("expected `ministry`, `province/NN` or `enterprise/ID`"))
    }
}

impl TryFrom<String> for NodeId {
    type Error = BadNodeId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NodeId> for String {
    fn from(n: NodeId) -> String {
        n.0
    }
}

/// A map keyed by node ID, for lookups on the hot path (a province looks up its peers and
/// its directory several times per enterprise and directive). Hashed with foldhash, not
/// ordered: an ordered search compares IDs that share their first 16 bytes
/// (`enterprise/e65x0…`) at every step, a hash lookup once. Iterate it sorted where the
/// order shows.
pub type NodeMap<V> = std::collections::HashMap<NodeId, V, foldhash::fast::RandomState>;

/// A set of node IDs, hashed as [`NodeMap`] is.
pub type NodeSet = std::collections::HashSet<NodeId, foldhash::fast::RandomState>;

// Lookups by the string form (`directory.get("enterprise/x")`) agree with NodeId's
// ordering and hash, which are the string's.
impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity a verified certificate proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Node(NodeId),
    /// An operator of the given node (`spiffe://td/<node>/operator/<name>`).
    Operator {
        node: NodeId,
        name: String,
    },
}

impl Identity {
    /// The SPIFFE URI for this identity in `trust_domain`.
    pub fn uri(&self, trust_domain: &str) -> String {
        match self {
            Identity::Node(n) => format!("spiffe://{trust_domain}/{n}"),
            Identity::Operator { node, name } => {
                format!("spiffe://{trust_domain}/{node}/operator/{name}")
            }
        }
    }

    /// Parses a SPIFFE URI, accepting only `trust_domain`.
    pub fn from_uri(uri: &str, trust_domain: &str) -> Option<Identity> {
        let path = uri
            .strip_prefix("spiffe://")?
            .strip_prefix(trust_domain)?
            .strip_prefix('/')?;
        if let Some((node, name)) = path.split_once("/operator/") {
            let node = node.parse().ok()?;
            if !valid_enterprise_id(name) {
                return None;
            }
            return Some(Identity::Operator {
                node,
                name: name.to_string(),
            });
        }
        path.parse().ok().map(Identity::Node)
    }

    /// Reads the identity from a DER certificate that TLS has already verified against the
    /// trust anchor. Exactly one URI SAN of our trust domain must be present.
    pub fn from_cert_der(der: &[u8], trust_domain: &str) -> Option<Identity> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        let mut found = None;
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name
                && let Some(id) = Identity::from_uri(uri, trust_domain)
            {
                if found.is_some() {
                    return None;
                }
                found = Some(id);
            }
        }
        found
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node(n) => write!(f, "{n}"),
            Identity::Operator { node, name } => write!(f, "{node}/operator/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_parse_and_reject() {
        assert_eq!(
            "province/44".parse::<NodeId>().map(|n| n.tier()),
            Ok(Tier::Province)
        );
        assert_eq!(
            "enterprise/idc-gz.01".parse::<NodeId>().map(|n| n.tier()),
            Ok(Tier::Enterprise)
        );
        for bad in [
            "",
            "province/4",
            "province/4a",
            "enterprise/",
            "enterprise/a b",
            "x/1",
        ] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn spiffe_uris_round_trip_and_foreign_domains_are_refused() {
        let op = Identity::Operator {
            node: NodeId::ministry(),
            name: "alice".into(),
        };
        let uri = op.uri("isms.test");
        assert_eq!(uri, "spiffe://isms.test/ministry/operator/alice");
        assert_eq!(Identity::from_uri(&uri, "isms.test"), Some(op));
        assert_eq!(Identity::from_uri(&uri, "other.test"), None);
        assert_eq!(
            Identity::from_uri("spiffe://isms.test/province/31", "isms.test"),
            Some(Identity::Node("province/31".parse().expect("valid")))
        );
        assert_eq!(
            Identity::from_uri("spiffe://isms.test/root", "isms.test"),
            None
        );
    }
}

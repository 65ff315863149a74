//! The enterprise's enforcement points as the config names them (`[[enforcement]]`), and
//! their checks. Must not build a point: `isms-enforce` does, from these.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use isms_domain::identity::Tier;

use crate::{ConfigError, invalid};

/// One enforcement point of an enterprise: its rules of `kinds` (`domain`,
/// `url`, `ip`, `keyword`) in force there, confirmed before a directive is `executed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "point", rename_all = "lowercase", deny_unknown_fields)]
pub enum Enforcement {
    /// The rules as a JSON file (written atomically), for systems that read a file.
    File {
        path: PathBuf,
        #[serde(default = "all_rule_kinds")]
        kinds: Vec<String>,
    },
    /// Blocked domains as an RPZ zone for a resolver: written atomically, its SOA serial
    /// the rule set's version, then `reload` is run and a blocked name is looked up
    /// through `verify_with` (host:port) to see it answered as blocked.
    Rpz {
        /// The zone's name, e.g. `rpz.isms.`.
        zone: String,
        zone_file: PathBuf,
        /// The command (argv) that makes the resolver load the zone, e.g. `["unbound-control",
        /// "-c", "/etc/unbound/unbound.conf", "auth_zone_reload", "rpz.isms."]`.
        reload: Vec<String>,
        /// The resolver to check a blocked name through; none: no lookup (not advised).
        #[serde(default)]
        verify_with: Option<SocketAddr>,
        /// `nxdomain` (default) or a name to answer with instead (a CNAME policy, e.g.
        /// `blocked.isms.example.`).
        #[serde(default)]
        cname: Option<String>,
        /// Block every name under a blocked domain too (`*.bad.example`). Default true.
        #[serde(default = "yes")]
        wildcards: bool,
        #[serde(default = "domain_kind")]
        kinds: Vec<String>,
    },
    /// Blocked addresses and CIDRs in two nftables interval sets (IPv4, IPv6) of `table`,
    /// replaced in one `nft -f` transaction. The rule that drops what they match is the
    /// operator's (README), e.g. `ip daddr @blocked_v4 drop`.
    Nftables {
        #[serde(default = "nft_family")]
        family: String,
        #[serde(default = "nft_table")]
        table: String,
        #[serde(default = "nft_set_v4")]
        set_v4: String,
        #[serde(default = "nft_set_v6")]
        set_v6: String,
        /// The `nft` program. Default `nft`.
        #[serde(default = "nft_program")]
        nft: PathBuf,
        #[serde(default = "ip_kind")]
        kinds: Vec<String>,
    },
    /// A command (argv) given each change as JSON on standard input (the rules added and
    /// removed, and the whole set); exit status 0 means in force. Killed after `timeout`.
    Hook {
        command: Vec<String>,
        #[serde(default = "hook_timeout", with = "humantime_serde")]
        timeout: Duration,
        #[serde(default = "url_keyword_kinds")]
        kinds: Vec<String>,
    },
}

/// Rule kinds as the configuration names them.
pub const RULE_KIND_NAMES: [&str; 4] = ["domain", "url", "ip", "keyword"];

fn all_rule_kinds() -> Vec<String> {
    RULE_KIND_NAMES.iter().map(|k| k.to_string()).collect()
}
fn domain_kind() -> Vec<String> {
    vec!["domain".into()]
}
fn ip_kind() -> Vec<String> {
    vec!["ip".into()]
}
fn url_keyword_kinds() -> Vec<String> {
    vec!["url".into(), "keyword".into()]
}
fn yes() -> bool {
    true
}
fn nft_family() -> String {
    "inet".into()
}
fn nft_table() -> String {
    "isms".into()
}
fn nft_set_v4() -> String {
    "blocked_v4".into()
}
fn nft_set_v6() -> String {
    "blocked_v6".into()
}
fn nft_program() -> PathBuf {
    "nft".into()
}
fn hook_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Enforcement {
    /// The point's name in logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Enforcement::File { .. } => "file",
            Enforcement::Rpz { .. } => "rpz",
            Enforcement::Nftables { .. } => "nftables",
            Enforcement::Hook { .. } => "hook",
        }
    }

    pub fn kinds(&self) -> &[String] {
        match self {
            Enforcement::File { kinds, .. }
            | Enforcement::Rpz { kinds, .. }
            | Enforcement::Nftables { kinds, .. }
            | Enforcement::Hook { kinds, .. } => kinds,
        }
    }
}

/// Checks the points: only an enterprise has them, each names known rule kinds, and each
/// kind's own fields make sense.
pub(crate) fn check(points: &[Enforcement], tier: Tier) -> Result<(), ConfigError> {
    if !points.is_empty() && tier != Tier::Enterprise {
        return Err(invalid("enforcement", "only an enterprise enforces rules"));
    }
    for (i, point) in points.iter().enumerate() {
        let field = |f: &str| format!("enforcement[{i}].{f}");
        if point.kinds().is_empty() {
            return Err(invalid(field("kinds"), "names no rule kind"));
        }
        if let Some(k) = point
            .kinds()
            .iter()
            .find(|k| !RULE_KIND_NAMES.contains(&k.as_str()))
        {
            return Err(invalid(
                field("kinds"),
                format!(
                    "unknown rule kind {k:?}: one of {}",
                    RULE_KIND_NAMES.join(", ")
                ),
            ));
        }
        match point {
            Enforcement::Rpz { zone, reload, .. } => {
                if !zone.ends_with('.') || zone.len() < 2 {
                    return Err(invalid(
                        field("zone"),
                        "a zone name ends with '.', e.g. rpz.isms.",
                    ));
                }
                if reload.is_empty() {
                    return Err(invalid(field("reload"), "no command"));
                }
            }
            Enforcement::Hook {
                command, timeout, ..
            } => {
                if command.is_empty() {
                    return Err(invalid(field("command"), "no command"));
                }
                if timeout.is_zero() {
                    return Err(invalid(field("timeout"), "must be longer than zero"));
                }
            }
            Enforcement::File { .. } | Enforcement::Nftables { .. } => {}
        }
    }
    Ok(())
}

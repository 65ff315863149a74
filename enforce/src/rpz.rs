//! The `rpz` point: blocked domains as a Response Policy Zone (RPZ) for a resolver
//! (unbound, BIND, PowerDNS, Knot). The zone is written atomically with the rule set's
//! version as its SOA serial, the resolver is told to load it (`reload`), and a blocked
//! name is looked up through the resolver (`verify_with`) and must answer as blocked:
//! NXDOMAIN, or the configured CNAME.

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::{Change, Point, run_command, write_atomically};

pub(crate) struct RpzPoint {
    pub(crate) zone: String,
    pub(crate) zone_file: PathBuf,
    pub(crate) reload: Vec<String>,
    pub(crate) verify_with: Option<SocketAddr>,
    pub(crate) cname: Option<String>,
    pub(crate) wildcards: bool,
}

/// How long the resolver may take to load a zone (a 50,000-name zone: about 0.5 s).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

impl Point for RpzPoint {
    fn name(&self) -> &'static str {
        "rpz"
    }

    fn converge(&mut self, change: &Change<'_>) -> Result<(), String> {
        let mut domains: Vec<&str> = change
            .rules
            .iter()
            .filter(|r| r.blocks() && r.kind == "domain")
            .map(|r| r.value.trim_end_matches('.'))
            .collect();
        domains.sort_unstable();
        domains.dedup();
        let text = zone_text(
            &self.zone,
            change.version,
            &domains,
            self.cname.as_deref(),
            self.wildcards,
        );
        write_atomically(&self.zone_file, text.as_bytes())
            .map_err(|e| format!("zone file {} not written: {e}", self.zone_file.display()))?;
        run_command(&self.reload, None, RELOAD_TIMEOUT).map_err(|e| format!("reload: {e}"))?;
        if let (Some(resolver), Some(name)) = (self.verify_with, domains.first()) {
            self.check_blocked(resolver, name)?;
        }
        Ok(())
    }
}

impl RpzPoint {
    /// Asks the resolver for `name` and checks the answer is the zone's policy.
    fn check_blocked(&self, resolver: SocketAddr, name: &str) -> Result<(), String> {
        let answer = lookup(resolver, name)
            .map_err(|e| format!("lookup of {name} through {resolver}: {e}"))?;
        let blocked = match &self.cname {
            None => answer.metadata.response_code == ResponseCode::NXDomain,
            Some(target) => answer.answers.iter().any(|r| match &r.data {
                RData::CNAME(c) => {
                    c.0.to_ascii().trim_end_matches('.') == target.trim_end_matches('.')
                }
                _ => false,
            }),
        };
        if blocked {
            Ok(())
        } else {
            Err(format!(
                "{name} is not blocked through {resolver} after the reload (answer {}, {} records)",
                answer.metadata.response_code,
                answer.answers.len()
            ))
        }
    }
}

/// The zone: SOA and NS, then one CNAME per blocked name (and its subdomains when
/// `wildcards`): `.` is NXDOMAIN, another target a CNAME policy.
pub(crate) fn zone_text(
    zone: &str,
    version: u64,
    domains: &[&str],
    cname: Option<&str>,
    wildcards: bool,
) -> String {
    let target = cname.map_or_else(
        || ".".to_string(),
        |c| format!("{}.", c.trim_end_matches('.')),
    );
    // The SOA serial is 32 bits (RFC 1982); the version wraps into it.
    let serial = (version % u64::from(u32::MAX)).max(1);
    let mut out = String::with_capacity(64 + domains.len() * (2 * zone.len() + 48));
    let _ = writeln!(out, "$TTL 60");
    let _ = writeln!(
        out,
        "{zone} IN SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 60"
    );
    let _ = writeln!(out, "{zone} IN NS localhost.");
    for d in domains {
        let _ = writeln!(out, "{d}.{zone} IN CNAME {target}");
        if wildcards {
            let _ = writeln!(out, "*.{d}.{zone} IN CNAME {target}");
        }
    }
    out
}

/// One A query over UDP, retried twice.
fn lookup(resolver: SocketAddr, name: &str) -> Result<Message, String> {
    let fqdn =
        Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|e| e.to_string())?;
    let mut query = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(fqdn, RecordType::A));
    let bytes = query.to_vec().map_err(|e| e.to_string())?;
    let bind = if resolver.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut last = String::from("no answer");
    for _ in 0..3 {
        socket
            .send_to(&bytes, resolver)
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                let answer = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
                if answer.metadata.id == query.metadata.id {
                    return Ok(answer);
                }
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// A query ID: not secret here (a lookup we check ourselves), only distinct.
fn rand_id() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u16::try_from((t ^ (t >> 16)) & 0xFFFF).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_names_each_domain_and_its_subdomains_under_the_policy() {
        let z = zone_text(
            "rpz.isms.",
            7,
            &["bad.example", "xn--fiq228c.example"],
            None,
            true,
        );
        assert!(
            z.contains("rpz.isms. IN SOA localhost. hostmaster.localhost. 7 "),
            "{z}"
        );
        assert!(z.contains("bad.example.rpz.isms. IN CNAME .\n"), "{z}");
        assert!(z.contains("*.bad.example.rpz.isms. IN CNAME .\n"), "{z}");
        assert!(
            z.contains("xn--fiq228c.example.rpz.isms. IN CNAME .\n"),
            "{z}"
        );
        let z = zone_text(
            "rpz.isms.",
            0,
            &["bad.example"],
            Some("blocked.isms.example"),
            false,
        );
        assert!(z.contains(" 1 3600"), "a serial of 0 is not used: {z}");
        assert!(
            z.contains("bad.example.rpz.isms. IN CNAME blocked.isms.example.\n"),
            "{z}"
        );
        assert!(!z.contains("*."), "{z}");
    }
}

//! The `nftables` point: blocked addresses and CIDRs in two interval sets (IPv4, IPv6) of a
//! table, replaced in one `nft -f` transaction (declare, flush, add), then listed back and
//! checked: every blocked address or prefix must be covered by an element of its set. The
//! rule that drops traffic matching the sets is the operator's (README).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{Change, Point, run_command};

pub(crate) struct NftPoint {
    pub(crate) family: String,
    pub(crate) table: String,
    pub(crate) set_v4: String,
    pub(crate) set_v6: String,
    pub(crate) nft: PathBuf,
}

const NFT_TIMEOUT: Duration = Duration::from_secs(60);

/// An address or prefix as an inclusive range of 128-bit numbers (IPv4 in the low bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    v6: bool,
    first: u128,
    last: u128,
}

fn span(addr: IpAddr, len: u8) -> Span {
    let (v6, bits, n) = match addr {
        IpAddr::V4(a) => (false, 32u32, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, 128u32, u128::from(a)),
    };
    let host = bits - u32::from(len).min(bits);
    let mask = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    Span {
        v6,
        first: n & !mask,
        last: n | mask,
    }
}

/// `1.2.3.4`, `10.0.0.0/8`, `2001:db8::/32`.
fn parse(value: &str) -> Option<Span> {
    let (addr, len) = match value.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = value.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    Some(span(addr, len))
}

impl Point for NftPoint {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn converge(&mut self, change: &Change<'_>) -> Result<(), String> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for r in change.rules.iter().filter(|r| r.blocks() && r.kind == "ip") {
            let s = parse(&r.value)
                .ok_or_else(|| format!("{:?} is not an address or prefix", r.value))?;
            if s.v6 {
                v6.push(r.value.as_str())
            } else {
                v4.push(r.value.as_str())
            }
        }
        let (f, t) = (&self.family, &self.table);
        let mut script = format!(
            "table {f} {t} {{\n  set {s4} {{ type ipv4_addr; flags interval; auto-merge; }}\n  \
             set {s6} {{ type ipv6_addr; flags interval; auto-merge; }}\n}}\n\
             flush set {f} {t} {s4}\nflush set {f} {t} {s6}\n",
            s4 = self.set_v4,
            s6 = self.set_v6
        );
        for (set, elems) in [(&self.set_v4, &v4), (&self.set_v6, &v6)] {
            if !elems.is_empty() {
                script.push_str(&format!(
                    "add element {f} {t} {set} {{ {} }}\n",
                    elems.join(", ")
                ));
            }
        }
        let file = tempfile_path();
        std::fs::write(&file, script).map_err(|e| format!("{}: {e}", file.display()))?;
        let nft = self.nft.display().to_string();
        let loaded = run_command(
            &[nft.clone(), "-f".into(), file.display().to_string()],
            None,
            NFT_TIMEOUT,
        );
        let _ = std::fs::remove_file(&file);
        loaded?;
        for (set, elems) in [(&self.set_v4, &v4), (&self.set_v6, &v6)] {
            let listed = run_command(
                &[
                    nft.clone(),
                    "-j".into(),
                    "list".into(),
                    "set".into(),
                    f.clone(),
                    t.clone(),
                    set.clone(),
                ],
                None,
                NFT_TIMEOUT,
            )?;
            let have = listed_spans(&listed)?;
            for e in elems.iter() {
                let want = parse(e).ok_or_else(|| format!("{e:?} is not an address or prefix"))?;
                if !have
                    .iter()
                    .any(|h| h.v6 == want.v6 && h.first <= want.first && want.last <= h.last)
                {
                    return Err(format!("set {set} does not list {e} after the update"));
                }
            }
        }
        Ok(())
    }
}

/// A file for the transaction, beside nothing else: in the system's temporary directory.
fn tempfile_path() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("isms-nft-{}-{nanos}.nft", std::process::id()))
}

/// The elements `nft -j list set` printed, as spans: addresses, prefixes and ranges.
fn listed_spans(json: &str) -> Result<Vec<Span>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("nft -j: {e}"))?;
    let mut out = Vec::new();
    let sets = v["nftables"].as_array().into_iter().flatten();
    for item in sets {
        let Some(elems) = item["set"]["elem"].as_array() else {
            continue;
        };
        for e in elems {
            // An element with options (timeouts, counters) wraps its value in `elem`.
            let e = if e.get("elem").is_some() {
                &e["elem"]["val"]
            } else {
                e
            };
            let s = if let Some(a) = e.as_str() {
                parse(a)
            } else if let Some(p) = e.get("prefix") {
                let addr = p["addr"].as_str().and_then(|a| a.parse::<IpAddr>().ok());
                let len = p["len"].as_u64().and_then(|l| u8::try_from(l).ok());
                addr.zip(len).map(|(a, l)| span(a, l))
            } else if let Some(r) = e.get("range").and_then(|r| r.as_array()) {
                let a = r.first().and_then(|x| x.as_str()).and_then(parse);
                let b = r.get(1).and_then(|x| x.as_str()).and_then(parse);
                a.zip(b).map(|(a, b)| Span {
                    v6: a.v6,
                    first: a.first,
                    last: b.last,
                })
            } else {
                None
            };
            out.extend(s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_elements_cover_what_was_added() {
        let json = r#"{"nftables":[{"metainfo":{}},{"set":{"family":"inet","name":"blocked_v4",
            "elem":["192.0.2.7",{"prefix":{"addr":"10.0.0.0","len":23}},
            {"range":["198.51.100.1","198.51.100.9"]}]}}]}"#;
        let have = listed_spans(json).expect("parse");
        let covered = |v: &str| {
            let w = parse(v).expect("value");
            have.iter()
                .any(|h| h.v6 == w.v6 && h.first <= w.first && w.last <= h.last)
        };
        assert!(covered("192.0.2.7"));
        assert!(covered("10.0.1.0/24"), "merged into the /23");
        assert!(covered("198.51.100.5"));
        assert!(!covered("10.0.2.0/24"));
        assert!(!covered("192.0.2.8"));
        assert_eq!(parse("2001:db8::/32").map(|s| s.v6), Some(true));
        assert_eq!(parse("10.0.0.0/33").map(|s| s.first), Some(10 << 24));
        assert!(parse("nonsense").is_none());
    }
}

//! Revoking certificates of a generated network: the development CA signs a
//! revocation list of the certificates revoked so far (`revoked.txt` beside it), written to
//! the network's directory and, atomically, to every node's `crl.pem`, which running nodes
//! reload by themselves.
//!
//! Must not touch a node's store or process: a node learns of it from its file alone.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::pki::DevCa;

/// The list of revoked serials kept beside the CA: `<hex serial> <certificate path>` lines.
const REVOKED: &str = "revoked.txt";

/// Revokes the certificate in `cert` (or, `undo`, takes its revocation back) and writes the
/// new list everywhere; what it did, in a line.
pub fn revoke(root: &Path, cert: &Path, undo: bool) -> anyhow::Result<String> {
    let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .with_context(|| format!("{}: no certificate", cert.display()))?
        .with_context(|| format!("{}: not PEM", cert.display()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    let serial = hex(parsed.raw_serial());
    let subject = isms_domain::identity::Identity::from_cert_der(der.as_ref(), "")
        .map_or_else(|| cert.display().to_string(), |i| i.to_string());

    let list_path = root.join(REVOKED);
    let mut revoked: Vec<(String, String)> = std::fs::read_to_string(&list_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (s, what) = l.split_once(' ')?;
            Some((s.to_string(), what.to_string()))
        })
        .collect();
    let was = revoked.iter().any(|(s, _)| *s == serial);
    if undo {
        revoked.retain(|(s, _)| *s != serial);
    } else if !was {
        revoked.push((serial.clone(), cert.display().to_string()));
    }
    let ca = DevCa::load(&root.join("ca.pem"), &root.join("ca.key"), "")
        .context("the development CA (isms-devnet keeps its key as ca.key)")?;
    let serials = revoked
        .iter()
        .map(|(s, _)| unhex(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let today = chrono::DateTime::from_timestamp(i64::try_from(now.as_secs()).unwrap_or(0), 0)
        .unwrap_or_default()
        .date_naive();
    use chrono::Datelike;
    let crl = ca.crl_pem(
        &serials,
        now.as_secs(),
        (
            today.year(),
            u8::try_from(today.month()).unwrap_or(1),
            u8::try_from(today.day()).unwrap_or(1),
        ),
    )?;
    let lines: String = revoked.iter().map(|(s, w)| format!("{s} {w}\n")).collect();
    write_atomically(&list_path, lines.as_bytes())?;
    write_atomically(&root.join("crl.pem"), crl.as_bytes())?;
    let mut nodes = 0;
    for dir in node_dirs(root)? {
        write_atomically(&dir.join("crl.pem"), crl.as_bytes())?;
        nodes += 1;
    }
    Ok(match (undo, was) {
        (false, _) => format!(
            "{subject} (serial {serial}) revoked; {} certificates on the list, written to {nodes} nodes",
            revoked.len()
        ),
        (true, true) => format!(
            "{subject} (serial {serial}) no longer revoked; {} on the list, written to {nodes} nodes",
            revoked.len()
        ),
        (true, false) => format!("{subject} (serial {serial}) was not revoked; list rewritten"),
    })
}

/// Directories under `root` that hold a node's configuration.
fn node_dirs(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
        let path = entry?.path();
        if path.join("config.toml").is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Written whole or not at all: a node polling the file never reads half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> anyhow::Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .with_context(|| format!("{REVOKED}: {s:?} is not a hex serial"))
        })
        .collect()
}

//! The audit trail's hash chain, wherever its records are: in a node's
//! store or in an exported file. Record `seq` carries the SHA-256 of the stored bytes of
//! record `seq - 1` (its `records::encode`), so a record altered, removed or moved breaks
//! the chain there, and `verify` names it.
//!
//! Must not read the store or a file itself: callers hand it the records in order.

use isms_proto::record::AuditRecord;

use crate::records;

/// SHA-256 of a record's stored bytes: what the next record links to.
pub fn hash(stored: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, stored);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Where the chain breaks: the first record that is not what the chain says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq}: {why}")]
pub struct ChainBreak {
    pub seq: u64,
    pub why: String,
}

/// One record as a caller found it: the place it holds (its key's sequence number, or its
/// line in a file, from 1) and its stored bytes; or why it could not be read.
pub type Found = Result<(u64, Vec<u8>), String>;

/// Checks `found`, first record to last: the number of records, or the first one that was
/// altered, removed, moved, or does not decode.
pub fn verify(found: impl IntoIterator<Item = Found>) -> Result<u64, ChainBreak> {
    let broken = |seq: u64, why: String| ChainBreak { seq, why };
    let mut expected = 1;
    let mut prev: Option<[u8; 32]> = None;
    let mut found = found.into_iter().peekable();
    while let Some(item) = found.next() {
        let (place, bytes) = item.map_err(|why| broken(expected, why))?;
        if place != expected {
            return Err(broken(
                expected,
                format!("missing (the next record found is {place})"),
            ));
        }
        let rec: AuditRecord = records::decode(&records::audit(place), &bytes)
            .map_err(|e| broken(place, format!("does not decode: {e}")))?;
        if rec.seq != place {
            return Err(broken(
                place,
                format!(
                    "out of place: record {} of the chain is here (records moved, or this one removed)",
                    rec.seq
                ),
            ));
        }
        let linked = match prev {
            None => rec.prev_hash.is_empty(),
            Some(h) => rec.prev_hash == h,
        };
        if !linked {
            // Record `place - 1` was altered, or this one's link was. If this one was, the
            // record after it no longer links to it either; with none after it, the record
            // before (whose contents an intruder would edit) is named.
            let this = hash(&bytes);
            let this_altered = match found.peek() {
                Some(Ok((np, nb))) => records::decode::<AuditRecord>(&records::audit(*np), nb)
                    .map(|n| n.prev_hash != this)
                    .unwrap_or(true),
                _ => false,
            };
            let altered = if this_altered || place == 1 {
                place
            } else {
                place - 1
            };
            return Err(broken(
                altered.max(1),
                format!(
                    "altered: the chain does not link record {} to record {place}",
                    place - 1
                ),
            ));
        }
        prev = Some(hash(&bytes));
        expected += 1;
    }
    Ok(expected - 1)
}

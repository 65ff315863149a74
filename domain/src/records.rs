//! The node's keyspace in the store and the versioned encoding of its records.
//!
//! Every value is one format byte followed by a protobuf record, so a record's layout can
//! change without a flag day. Peer IDs never contain a NUL byte, so `\0` ends a peer or
//! directive component and prefixes never collide (`enterprise/a` vs `enterprise/ab`).

use prost::Message;

use crate::identity::NodeId;

/// Format marker of the records written by this version.
const FORMAT_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
#[error("corrupt record under key {key:?}: {why}")]
pub struct CorruptRecord {
    pub key: String,
    pub why: String,
}

impl CorruptRecord {
    pub fn new(key: &[u8], why: impl Into<String>) -> Self {
        CorruptRecord {
            key: String::from_utf8_lossy(key).into_owned(),
            why: why.into(),
        }
    }
}

pub fn encode<M: Message>(m: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + m.encoded_len());
    out.push(FORMAT_V1);
    // A Vec grows as needed, so encoding into it cannot run out of space.
    let _ = m.encode(&mut out);
    out
}

pub fn decode<M: Message + Default>(key: &[u8], bytes: &[u8]) -> Result<M, CorruptRecord> {
    let corrupt = |why: String| CorruptRecord::new(key, why);
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => M::decode(rest).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown format version {v}"))),
        None => Err(corrupt("empty value".into())),
    }
}

pub fn encode_u64(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

pub fn decode_u64(key: &[u8], bytes: &[u8]) -> Result<u64, CorruptRecord> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| CorruptRecord::new(key, format!("expected 8 bytes, found {}", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

fn key(prefix: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

/// Next outbox sequence number for `peer`, as stores written before the link marks kept it
/// (read at start, never written now).
pub fn next_seq(peer: &NodeId) -> Vec<u8> {
    key("n/", &[peer.as_str().as_bytes()])
}

/// The link marks of `peer`: the highest sequence number applied from it and the next
/// outbox sequence number for it (see [`encode_marks`]).
pub fn marks(peer: &NodeId) -> Vec<u8> {
    key("a/", &[peer.as_str().as_bytes()])
}

/// A link's marks: `applied`, then `next_seq`, 8 bytes each. `next_seq` is only a floor: the
/// outbox's last entry says it when the outbox holds any, so it is written when the
/// outbox empties and whenever `applied` moves, never for each message queued.
pub fn encode_marks(applied: u64, next_seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&applied.to_be_bytes());
    v.extend_from_slice(&next_seq.to_be_bytes());
    v
}

/// Reads link marks: `(applied, next_seq)`; a store written before the marks held only
/// `applied` here (8 bytes), with no `next_seq`.
pub fn decode_marks(key: &[u8], bytes: &[u8]) -> Result<(u64, Option<u64>), CorruptRecord> {
    match bytes.len() {
        8 => Ok((decode_u64(key, bytes)?, None)),
        16 => Ok((
            decode_u64(key, &bytes[..8])?,
            Some(decode_u64(key, &bytes[8..])?),
        )),
        n => Err(CorruptRecord::new(
            key,
            format!("expected 8 or 16 bytes of link marks, found {n}"),
        )),
    }
}

/// All of `peer`'s records under `tag`, each keyed by a sequence number.
fn per_peer(tag: &str, peer: &NodeId) -> Vec<u8> {
    let mut k = key(tag, &[peer.as_str().as_bytes()]);
    k.push(0);
    k
}

/// `peer`'s record under `tag` with sequence number `seq` (big-endian, so in order).
fn per_peer_seq(tag: &str, peer: &NodeId, seq: u64) -> Vec<u8> {
    let mut k = per_peer(tag, peer);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// All outbox entries for `peer`.
pub fn outbox_prefix(peer: &NodeId) -> Vec<u8> {
    per_peer("o/", peer)
}

pub fn outbox(peer: &NodeId, seq: u64) -> Vec<u8> {
    per_peer_seq("o/", peer, seq)
}

/// The sequence number at the end of an outbox key.
pub fn outbox_seq(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// All inbox chunks from `peer`: envelopes received and acknowledged, not yet applied.
pub fn inbox_prefix(peer: &NodeId) -> Vec<u8> {
    per_peer("i/", peer)
}

/// The inbox chunk from `peer` that starts at `first_seq`.
pub fn inbox(peer: &NodeId, first_seq: u64) -> Vec<u8> {
    per_peer_seq("i/", peer, first_seq)
}

/// The first sequence number of an inbox chunk, from its key.
pub fn inbox_seq(key: &[u8]) -> Option<u64> {
    outbox_seq(key)
}

pub const FANOUT_PREFIX: &[u8] = b"f/";

/// A fan-out record (copies of one directive for several peers), by a UUIDv7 so keys
/// sort in the order they were written.
pub fn fanout(id: &uuid::Uuid) -> Vec<u8> {
    let mut k = FANOUT_PREFIX.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

pub const OUTBOX_RUN_PREFIX: &[u8] = b"g/";

/// An outbox run (entries one group queued for one peer), by a UUIDv7 like fan-out records.
pub fn outbox_run(id: &uuid::Uuid) -> Vec<u8> {
    let mut k = OUTBOX_RUN_PREFIX.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

pub const DIRECTIVE_PREFIX: &[u8] = b"d/";

pub fn directive(id: &str) -> Vec<u8> {
    key("d/", &[id.as_bytes()])
}

/// The directive's metadata (issuer, origin, urgency, trace context).
pub fn directive_meta(id: &str) -> Vec<u8> {
    key("m/", &[id.as_bytes()])
}

/// Per-target (and per-relaying-province) states of a directive, in blocks (a
/// `TargetBlock`): `b/<directive>\0<via>\0<bucket>`.
pub fn target_blocks_prefix(directive_id: &str) -> Vec<u8> {
    blocks_prefix_with_room(directive_id, 0)
}

/// [`target_blocks_prefix`] with `room` more bytes allocated: a province builds a block key
/// twice per enterprise per directive, and sizes it at once.
fn blocks_prefix_with_room(directive_id: &str, room: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(b"b/".len() + directive_id.len() + 1 + room);
    k.extend_from_slice(b"b/");
    k.extend_from_slice(directive_id.as_bytes());
    k.push(0);
    k
}

/// How many blocks the targets reached through one child (or this node's own peers) are
/// split into: enough that a block stays a few KiB in a province of thousands of
/// enterprises, few enough that a report from one province rewrites a handful.
pub const TARGET_BUCKETS: u64 = 8;

/// The block holding `node`'s state, where `via` is the child that leads to it (empty for
/// this node's own peers and for nodes it does not route to). The bucket is FNV-1a of the
/// ID: it must never change, or a store would look for its records in the wrong block.
pub fn target_block(directive_id: &str, via: &str, node: &str) -> Vec<u8> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut k = blocks_prefix_with_room(directive_id, via.len() + 2);
    k.extend_from_slice(via.as_bytes());
    k.push(0);
    k.push(b'0' + (hash % TARGET_BUCKETS) as u8);
    k
}

/// A target's answer to an access-log query (a `QueryResult`), kept apart from its block:
/// an answer can hold up to `access_log::MAX_LIMIT` records, and a block is rewritten
/// whenever any of its targets moves. `y/<directive>\0<node>`.
pub fn query_results_prefix(directive_id: &str) -> Vec<u8> {
    let mut k = key("y/", &[directive_id.as_bytes()]);
    k.push(0);
    k
}

pub fn query_result(directive_id: &str, node: &str) -> Vec<u8> {
    let mut k = query_results_prefix(directive_id);
    k.extend_from_slice(node.as_bytes());
    k
}

/// Stores written before target blocks kept one record per target: `t/<directive>\0<node>`.
/// Folded into blocks at start (`core::targets::migrate`).
pub const LEGACY_TARGET_PREFIX: &[u8] = b"t/";

/// The enterprises a directive was queued for here (a `QueuedTargets`).
pub fn queued(directive_id: &str) -> Vec<u8> {
    key("q/", &[directive_id.as_bytes()])
}

/// The issuer's running clocks, ordered by deadline: `k/<deadline ms><directive>\0<node>`.
pub const CLOCK_PREFIX: &[u8] = b"k/";

pub fn clock(deadline_ms: i64, directive_id: &str, node: &str) -> Vec<u8> {
    let mut k = CLOCK_PREFIX.to_vec();
    k.extend_from_slice(&deadline_ms.max(0).to_be_bytes());
    k.extend_from_slice(directive_id.as_bytes());
    k.push(0);
    k.extend_from_slice(node.as_bytes());
    k
}

/// The issuer's delivered runs (`DeliveredRun`), by peer and the acknowledged number that
/// ends them: `dl/<peer>\0<up_to>`, so the run holding a copy is the first at or after it.
pub const DELIVERED_RUN_PREFIX: &[u8] = b"dl/";

pub fn delivered_run(peer: &str, up_to: u64) -> Vec<u8> {
    let mut k = DELIVERED_RUN_PREFIX.to_vec();
    k.extend_from_slice(peer.as_bytes());
    k.push(0);
    k.extend_from_slice(&up_to.to_be_bytes());
    k
}

/// A delivered run's clocks, ordered by deadline: `dk/<deadline ms><peer>\0<up_to>`, one
/// per distinct deadline among its copies.
pub const DELIVERED_CLOCK_PREFIX: &[u8] = b"dk/";

pub fn delivered_clock(deadline_ms: i64, peer: &str, up_to: u64) -> Vec<u8> {
    let mut k = DELIVERED_CLOCK_PREFIX.to_vec();
    k.extend_from_slice(&deadline_ms.max(0).to_be_bytes());
    k.extend_from_slice(peer.as_bytes());
    k.push(0);
    k.extend_from_slice(&up_to.to_be_bytes());
    k
}

/// Deadline, peer and run of a delivered run's clock key.
pub fn delivered_clock_subject(key: &[u8]) -> Option<(i64, String, u64)> {
    let rest = key.strip_prefix(DELIVERED_CLOCK_PREFIX)?;
    let deadline = i64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let rest = rest.get(8..)?;
    let split = rest.len().checked_sub(9)?;
    if rest[split] != 0 {
        return None;
    }
    let peer = std::str::from_utf8(&rest[..split]).ok()?.to_string();
    let up_to = u64::from_be_bytes(rest[split + 1..].try_into().ok()?);
    Some((deadline, peer, up_to))
}

/// Directive and node of a clock key.
pub fn clock_subject(key: &[u8]) -> Option<(String, String)> {
    let rest = key.strip_prefix(CLOCK_PREFIX)?.get(8..)?;
    let text = std::str::from_utf8(rest).ok()?;
    let (directive, node) = text.split_once('\0')?;
    Some((directive.to_string(), node.to_string()))
}

/// Enterprise: the active rule set, as runs of one directive's rules (`ActiveRules`).
pub const RULE_SET_PREFIX: &[u8] = b"rs/";

pub fn rule_set_prefix(directive_id: &str) -> Vec<u8> {
    let mut k = key("rs/", &[directive_id.as_bytes()]);
    k.push(0);
    k
}

pub fn rule_set(directive_id: &str, index: u32) -> Vec<u8> {
    let mut k = rule_set_prefix(directive_id);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Enterprise: one active rule per record (`ActiveRule`), as stores written before rule
/// sets kept them; folded into rule sets at start.
pub const LEGACY_RULE_PREFIX: &[u8] = b"r/";

/// Enterprise: a data-correction demand waiting for the operator.
pub const CORRECTION_PREFIX: &[u8] = b"c/d/";

pub fn correction(directive_id: &str) -> Vec<u8> {
    key("c/d/", &[directive_id.as_bytes()])
}

/// Enterprise: a directive revoked here (even before it arrived), so it is never applied.
pub fn revoked(directive_id: &str) -> Vec<u8> {
    key("v/", &[directive_id.as_bytes()])
}

/// Enterprise: when the active rule set changes by itself (a directive takes effect or
/// lapses): `s/<time ms><directive>`.
pub const SCHEDULE_PREFIX: &[u8] = b"s/";

pub fn schedule(at_ms: i64, directive_id: &str) -> Vec<u8> {
    let mut k = SCHEDULE_PREFIX.to_vec();
    k.extend_from_slice(&at_ms.max(0).to_be_bytes());
    k.extend_from_slice(directive_id.as_bytes());
    k
}

/// Audit trail of operator actions: record `seq` of the hash chain.
pub fn audit(seq: u64) -> Vec<u8> {
    let mut k = AUDIT_PREFIX.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub const AUDIT_PREFIX: &[u8] = b"u/";

/// Present once the store's audit records are all in the chain's layout, so a start reads
/// only the last record rather than every one.
pub const AUDIT_CHAINED: &[u8] = b"c/audit_chained";

/// The sequence number of an audit key; none for a key of another layout (stores written
/// before the chain keyed records by time and a UUID, 24 bytes after the prefix).
pub fn audit_seq(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(AUDIT_PREFIX)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// Four-eyes (O-6): the approval record of a major directive issued here.
pub fn approval(directive_id: &str) -> Vec<u8> {
    key("ap/", &[directive_id.as_bytes()])
}

/// Approval requests still open, by when they expire: `ax/<time ms><directive>`. An entry
/// is removed in the batch that approves, rejects or expires its request, so the index
/// holds exactly the directives awaiting approval.
pub const APPROVAL_EXPIRY_PREFIX: &[u8] = b"ax/";

pub fn approval_expiry(at_ms: i64, directive_id: &str) -> Vec<u8> {
    let mut k = APPROVAL_EXPIRY_PREFIX.to_vec();
    k.extend_from_slice(&at_ms.max(0).to_be_bytes());
    k.extend_from_slice(directive_id.as_bytes());
    k
}

/// The directive of an `approval_expiry` key.
pub fn approval_expiry_subject(key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(APPROVAL_EXPIRY_PREFIX)?;
    String::from_utf8(rest.get(8..)?.to_vec()).ok()
}

/// Where the audit chain stands besides its records: the last head signed, how far it was
/// exported and pruned (`AuditState`).
pub const AUDIT_STATE: &[u8] = b"c/audit_state";

/// Signed audit heads: this node's own and, at a parent, its children's:
/// `ah/<node>\0<seq be64>`.
pub const AUDIT_HEAD_PREFIX: &[u8] = b"ah/";

pub fn audit_heads_of(node: &str) -> Vec<u8> {
    let mut k = AUDIT_HEAD_PREFIX.to_vec();
    k.extend_from_slice(node.as_bytes());
    k.push(0);
    k
}

pub fn audit_head(node: &str, seq: u64) -> Vec<u8> {
    let mut k = audit_heads_of(node);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Enterprise: a directive whose rules did not take effect at every enforcement point: it
/// was reported `failed`, and is reported `executed` when a retry makes them take effect.
pub const ENFORCE_PENDING_PREFIX: &[u8] = b"pe/";

/// Enterprise: an access-log query received and not yet answered (the querier has it);
/// asked again at start.
pub const QUERY_PENDING_PREFIX: &[u8] = b"pq/";

pub fn query_pending(directive_id: &str) -> Vec<u8> {
    key("pq/", &[directive_id.as_bytes()])
}

pub fn enforce_pending(directive_id: &str) -> Vec<u8> {
    key("pe/", &[directive_id.as_bytes()])
}

/// Enterprise: the enforcement points' last error, removed once they all took a set.
pub const ENFORCE_ERROR: &[u8] = b"c/enforce_error";

/// Enterprise: the rule set's version, one more for every group that changed it.
pub const RULES_VERSION: &[u8] = b"c/rules_version";

/// A monitoring directive's hits at an enterprise (`MonitoringHits`), kept where it is
/// monitored and at every node its reports pass: `mh/<directive>\0<node>`.
pub fn monitor_hits_prefix(directive_id: &str) -> Vec<u8> {
    let mut k = key("mh/", &[directive_id.as_bytes()]);
    k.push(0);
    k
}

pub fn monitor_hits(directive_id: &str, node: &str) -> Vec<u8> {
    let mut k = monitor_hits_prefix(directive_id);
    k.extend_from_slice(node.as_bytes());
    k
}

/// Enterprise: how far its access log has been read for monitoring (a byte offset).
pub const MONITOR_OFFSET: &[u8] = b"c/monitor_offset";

/// Versioned blacklists. `bi/<issuer>\0<version>`: a version's directive and the
/// issuer's checksum (`BlacklistIndexEntry`), at the issuer and every node it passes.
pub const BLACKLIST_INDEX_PREFIX: &[u8] = b"bi/";

pub fn blacklist_index_of(issuer: &str) -> Vec<u8> {
    let mut k = key("bi/", &[issuer.as_bytes()]);
    k.push(0);
    k
}

pub fn blacklist_index(issuer: &str, version: u64) -> Vec<u8> {
    let mut k = blacklist_index_of(issuer);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The version at the end of a `bi/` key.
pub fn blacklist_index_version(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// Enterprise: its blacklist of an issuer (`BlacklistState`), `bs/<issuer>`.
pub const BLACKLIST_STATE_PREFIX: &[u8] = b"bs/";

pub fn blacklist_state(issuer: &str) -> Vec<u8> {
    key("bs/", &[issuer.as_bytes()])
}

/// Enterprise: a delta received beyond a gap (`HeldDelta`), `bh/<issuer>\0<from_version>`.
pub fn held_delta_of(issuer: &str) -> Vec<u8> {
    let mut k = key("bh/", &[issuer.as_bytes()]);
    k.push(0);
    k
}

pub fn held_delta(issuer: &str, from_version: u64) -> Vec<u8> {
    let mut k = held_delta_of(issuer);
    k.extend_from_slice(&from_version.to_be_bytes());
    k
}

/// Enterprise: the parts of a resync answer received so far (`BlacklistChunk`),
/// `bx/<issuer>\0<answer>\0<index>`.
pub fn resync_chunks_of(issuer: &str) -> Vec<u8> {
    let mut k = key("bx/", &[issuer.as_bytes()]);
    k.push(0);
    k
}

pub fn resync_chunk(issuer: &str, answer: &str, index: u32) -> Vec<u8> {
    let mut k = resync_chunks_of(issuer);
    k.extend_from_slice(answer.as_bytes());
    k.push(0);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Issuer: the version and checksum an enterprise last reported for its blacklist
/// (`BlacklistVersion`), `bv/<enterprise>`.
pub const REPORTED_BLACKLIST_PREFIX: &[u8] = b"bv/";

pub fn reported_blacklist(node: &str) -> Vec<u8> {
    key("bv/", &[node.as_bytes()])
}

/// A certificate (DER) by its SHA-256, `ic/<sha256>`: at an enterprise, a directive
/// signer's (what a lean copy names); above it, an enterprise's (what its signed results
/// name). Checked when used, with each signature.
pub fn signer_certificate(sha256: &[u8]) -> Vec<u8> {
    key("ic/", &[sha256])
}

/// Enterprise: the SHA-256 of its certificate last sent up (`NodeCertificate`).
pub const CERTIFICATE_ANNOUNCED: &[u8] = b"c/certificate_announced";

/// Issuer: enterprises' signed results (`SignedResults`), one record per status report
/// that brought any: `rs/<directive>\0<report ID>`.
pub fn signed_results_prefix(directive_id: &str) -> Vec<u8> {
    let mut k = key("rs/", &[directive_id.as_bytes()]);
    k.push(0);
    k
}

pub fn signed_results(directive_id: &str, report_id: &str) -> Vec<u8> {
    let mut k = signed_results_prefix(directive_id);
    k.extend_from_slice(report_id.as_bytes());
    k
}

/// What this node recorded last of another node's liveness (`NodeLiveness`),
/// `nl/<node>`.
pub const LIVENESS_PREFIX: &[u8] = b"nl/";

pub fn liveness(node: &str) -> Vec<u8> {
    key("nl/", &[node.as_bytes()])
}

/// A node's availability history as this node saw it (`AvailabilitySpan`), one record per
/// change: `av/<node>\0<start, big-endian ms>`.
pub const AVAILABILITY_PREFIX: &[u8] = b"av/";

pub fn availability_of(node: &str) -> Vec<u8> {
    let mut k = key("av/", &[node.as_bytes()]);
    k.push(0);
    k
}

pub fn availability(node: &str, start_ms: i64) -> Vec<u8> {
    let mut k = availability_of(node);
    k.extend_from_slice(&start_ms.to_be_bytes());
    k
}

/// A fault this node reported or keeps for a node below (`FaultView`), `fa/<fault ID>`
/// (a UUIDv7, so in the order reported).
pub const FAULT_PREFIX: &[u8] = b"fa/";

pub fn fault(id: &str) -> Vec<u8> {
    key("fa/", &[id.as_bytes()])
}

/// The open fault this node raised on its own for a kind of condition, `c/fault/<kind>`:
/// one at a time.
pub fn automatic_fault(kind: &str) -> Vec<u8> {
    key("c/fault/", &[kind.as_bytes()])
}

/// An upgrade notice (`UpgradeNotice`), `ug/<node>\0<notice ID>`.
pub const UPGRADE_PREFIX: &[u8] = b"ug/";

pub fn upgrade(node: &str, id: &str) -> Vec<u8> {
    key("ug/", &[node.as_bytes(), id.as_bytes()])
}

/// A node's current contact (`Contact`), `ct/<node>`.
pub const CONTACT_PREFIX: &[u8] = b"ct/";

pub fn contact(node: &str) -> Vec<u8> {
    key("ct/", &[node.as_bytes()])
}

/// An enterprise's latest data (`ResourceReport`), `dr/<enterprise>`: at the enterprise and
/// every node above it.
pub const DATA_REPORT_PREFIX: &[u8] = b"dr/";

pub fn data_report(enterprise: &str) -> Vec<u8> {
    key("dr/", &[enterprise.as_bytes()])
}

/// What validation found in an enterprise's latest data (`DataStatus`), `ds/<enterprise>`:
/// at its province and above.
pub const DATA_STATUS_PREFIX: &[u8] = b"ds/";

pub fn data_status(enterprise: &str) -> Vec<u8> {
    key("ds/", &[enterprise.as_bytes()])
}

/// Total rules ever added to the active set, counted in the same batch as the addition.
pub const RULES_APPLIED_COUNTER: &[u8] = b"c/rules_applied";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_keys_sort_by_sequence_and_do_not_collide() {
        let a: NodeId = "enterprise/a".parse().expect("id");
        let ab: NodeId = "enterprise/ab".parse().expect("id");
        assert!(outbox(&a, 2) < outbox(&a, 256));
        assert!(!outbox(&ab, 1).starts_with(&outbox_prefix(&a)));
        assert_eq!(outbox_seq(&outbox(&a, 77)), Some(77));
    }

    #[test]
    fn target_block_keys_keep_their_layout_and_buckets() {
        // Stores hold blocks under these keys: the layout and the bucket may never change.
        let key = target_block("d1", "province/11", "enterprise/e11x0001");
        assert_eq!(key, b"b/d1\0province/11\x007".to_vec());
        assert!(key.starts_with(&target_blocks_prefix("d1")));
        assert_eq!(
            target_block("d1", "", "province/11"),
            b"b/d1\0\x004".to_vec()
        );
    }

    #[test]
    fn link_marks_round_trip_and_read_the_older_applied_only_form() {
        let k = marks(&"enterprise/a".parse().expect("id"));
        let both = decode_marks(&k, &encode_marks(7, 12)).expect("marks");
        assert_eq!(both, (7, Some(12)));
        let older = decode_marks(&k, &encode_u64(7)).expect("applied only");
        assert_eq!(older, (7, None));
        let err = decode_marks(&k, &[1, 2, 3]).expect_err("three bytes are not marks");
        assert!(err.why.contains("found 3"), "{}", err.why);
    }

    #[test]
    fn clock_keys_sort_by_deadline_and_name_their_subject() {
        assert!(clock(999, "b", "x") < clock(1000, "a", "x"));
        assert_eq!(
            clock_subject(&clock(5, "d1", "province/44")),
            Some(("d1".into(), "province/44".into()))
        );
    }

    #[test]
    fn records_carry_a_version_and_reject_garbage() {
        let r = isms_proto::record::TargetRecord {
            detail: "x".into(),
            ..Default::default()
        };
        let bytes = encode(&r);
        assert_eq!(bytes[0], FORMAT_V1);
        let back: isms_proto::record::TargetRecord = decode(b"k", &bytes).expect("decode");
        assert_eq!(back, r);
        assert!(decode::<isms_proto::record::TargetRecord>(b"k", &[9, 1]).is_err());
        assert!(decode::<isms_proto::record::TargetRecord>(b"k", &[]).is_err());
    }
}

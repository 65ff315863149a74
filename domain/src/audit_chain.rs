//! The audit trail's hash chain, wherever its records are: in a node's
//! store or in an exported file. Record `seq` carries the SHA-256 of the stored bytes of
//! record `seq - 1` (its `records::encode`), so a record altered, removed or moved breaks
//! the chain there, and `verify` names it.
//!
//! A node signs its chain's head (`AuditHead`) with its node key and sends it to its parent,
//! which keeps it: verification then also checks that the chain still reaches every anchored
//! head with the same record there (`Anchor`), so a node's own administrator cannot rewrite
//! or cut that node's history unnoticed. Records older than the retention are pruned from
//! the front once exported; the chain then starts after the last pruned record (`Start`).
//!
//! Must not read the store or a file itself: callers hand it the records in order.

use isms_proto::record::AuditRecord;
use isms_proto::v1::AuditHead;

use crate::records;

/// SHA-256 of a record's stored bytes: what the next record links to.
pub fn hash(stored: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, stored);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lower-case hex, as hashes and digests are shown and exported.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
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

/// Where the kept chain starts: record 1, or the record after the last one pruned, whose
/// hash it must link to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Start {
    pub pruned_through: u64,
    pub pruned_hash: Option<[u8; 32]>,
}

/// A head the node signed and its parent keeps: record `seq` hashed to `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: [u8; 32],
    pub at_ms: i64,
}

impl Anchor {
    /// The anchor a signed head states (its signature checked elsewhere).
    pub fn of(head: &AuditHead) -> Option<Anchor> {
        Some(Anchor {
            seq: head.seq,
            hash: head.hash.as_slice().try_into().ok()?,
            at_ms: head.at_ms,
        })
    }
}

/// Checks `found`, first record to last: the number of records, or the first one that was
/// altered, removed, moved, or does not decode.
pub fn verify(found: impl IntoIterator<Item = Found>) -> Result<u64, ChainBreak> {
    verify_anchored(found, Start::default(), &[])
}

/// Checks `found` as `verify` does, from `start`, and against `anchors`: the chain must reach
/// each anchored head, with the record the head named. Counts the records checked.
pub fn verify_anchored(
    found: impl IntoIterator<Item = Found>,
    start: Start,
    anchors: &[Anchor],
) -> Result<u64, ChainBreak> {
    let broken = |seq: u64, why: String| ChainBreak { seq, why };
    let mut expected = start.pruned_through + 1;
    let mut prev: Option<[u8; 32]> = start.pruned_hash;
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
            // The first kept record after a prune is named itself: the one before is gone.
            let altered = if this_altered || place == start.pruned_through + 1 {
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
        let this = hash(&bytes);
        if let Some(a) = anchors.iter().find(|a| a.seq == place && a.hash != this) {
            return Err(broken(
                place,
                format!(
                    "altered: it is not the record its signed head anchored (at {} ms)",
                    a.at_ms
                ),
            ));
        }
        prev = Some(this);
        expected += 1;
    }
    let last = expected - 1;
    if let Some(a) = anchors
        .iter()
        .filter(|a| a.seq > last)
        .max_by_key(|a| a.seq)
    {
        return Err(broken(
            last + 1,
            format!(
                "missing: the chain stops at record {last}, short of the head signed at {} ms \
                 (record {})",
                a.at_ms, a.seq
            ),
        ));
    }
    Ok(last - start.pruned_through)
}

/// What a node signs of its chain's head: a fixed context, then the node, the record's
/// number, its hash and when it was signed, so a signature cannot be reused for another.
pub fn head_message(head: &AuditHead) -> Vec<u8> {
    let mut m = b"isms audit head v1\0".to_vec();
    m.extend_from_slice(head.node.as_bytes());
    m.push(0);
    m.extend_from_slice(&head.seq.to_be_bytes());
    m.extend_from_slice(&head.hash);
    m.extend_from_slice(&head.at_ms.to_be_bytes());
    m
}

/// Why a signed head is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the node key is not a PKCS#8 ECDSA P-256 key: {0}")]
    Key(String),
    #[error("the head's certificate does not parse: {0}")]
    Certificate(String),
    #[error("the head's certificate is {found}, not {expected}")]
    WrongSigner { expected: String, found: String },
    #[error("the head's signature does not verify")]
    BadSignature,
}

/// A node's signing key, from its PKCS#8 DER.
pub struct HeadSigner {
    key: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for HeadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeadSigner")
    }
}

impl HeadSigner {
    pub fn from_pkcs8(der: &[u8]) -> Result<HeadSigner, HeadError> {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            der,
            &rng,
        )
        .map_err(|e| HeadError::Key(e.to_string()))?;
        Ok(HeadSigner { key, rng })
    }

    /// Fills in `head.signature`.
    pub fn sign(&self, head: &mut AuditHead) -> Result<(), HeadError> {
        head.signature = self.sign_message(&head_message(head))?;
        Ok(())
    }

    /// An ECDSA P-256 SHA-256 signature (ASN.1) of `message` with the node key.
    pub fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, HeadError> {
        let sig = self
            .key
            .sign(&self.rng, message)
            .map_err(|e| HeadError::Key(e.to_string()))?;
        Ok(sig.as_ref().to_vec())
    }
}

/// Checks a head's signature with the public key of the certificate it carries, and that
/// the certificate is `signer`'s (in `trust_domain`).
pub fn verify_head(
    head: &AuditHead,
    signer: &crate::identity::Identity,
    trust_domain: &str,
) -> Result<(), HeadError> {
    let found = crate::identity::Identity::from_cert_der(&head.certificate, trust_domain);
    if found.as_ref() != Some(signer) {
        return Err(HeadError::WrongSigner {
            expected: signer.to_string(),
            found: found.map_or_else(|| "no identity".to_string(), |i| i.to_string()),
        });
    }
    let (_, cert) = x509_parser::parse_x509_certificate(&head.certificate)
        .map_err(|e| HeadError::Certificate(e.to_string()))?;
    let key = cert.public_key().subject_public_key.data.to_vec();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, key)
        .verify(&head_message(head), &head.signature)
        .map_err(|_| HeadError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `n` records, as stored bytes, numbered from 1.
    fn chain(n: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut prev = Vec::new();
        for seq in 1..=n {
            let bytes = records::encode(&AuditRecord {
                seq,
                at_ms: seq as i64,
                action: "x".into(),
                prev_hash: prev.clone(),
                ..Default::default()
            });
            prev = hash(&bytes).to_vec();
            out.push((seq, bytes));
        }
        out
    }

    fn anchor(c: &[(u64, Vec<u8>)], seq: u64) -> Anchor {
        Anchor {
            seq,
            hash: hash(&c[seq as usize - 1].1),
            at_ms: 7,
        }
    }

    #[test]
    fn a_pruned_front_verifies_from_the_last_pruned_record() {
        let c = chain(6);
        let start = Start {
            pruned_through: 2,
            pruned_hash: Some(hash(&c[1].1)),
        };
        let kept = c[2..].iter().cloned().map(Ok);
        assert_eq!(verify_anchored(kept, start, &[anchor(&c, 5)]), Ok(4));
        // Kept records that do not link to the last pruned one are named.
        let wrong = Start {
            pruned_hash: Some([9; 32]),
            ..start
        };
        let kept = c[2..].iter().cloned().map(Ok);
        assert_eq!(verify_anchored(kept, wrong, &[]).map_err(|b| b.seq), Err(3));
    }

    #[test]
    fn anchors_catch_a_rewritten_record_and_a_cut_chain() {
        let c = chain(5);
        let a = anchor(&c, 4);
        // The chain rebuilt from record 2 on links, but record 4 is not the anchored one.
        let mut other = chain(5);
        other.truncate(1);
        let mut prev = hash(&other[0].1).to_vec();
        for seq in 2..=5 {
            let bytes = records::encode(&AuditRecord {
                seq,
                at_ms: seq as i64,
                action: "rewritten".into(),
                prev_hash: prev.clone(),
                ..Default::default()
            });
            prev = hash(&bytes).to_vec();
            other.push((seq, bytes));
        }
        assert_eq!(verify(other.iter().cloned().map(Ok)), Ok(5));
        let broken = verify_anchored(other.into_iter().map(Ok), Start::default(), &[a])
            .expect_err("rewritten");
        assert_eq!(broken.seq, 4, "{broken}");
        // Cut before the anchor: the first missing record is named.
        let cut = c[..2].iter().cloned().map(Ok);
        let broken = verify_anchored(cut, Start::default(), &[a]).expect_err("cut");
        assert_eq!(broken.seq, 3, "{broken}");
        assert!(broken.why.contains("short of the head"), "{broken}");
    }

    #[test]
    fn a_signed_head_needs_its_signers_certificate_and_an_intact_signature() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://isms.local/province/44").expect("uri"),
        )];
        let cert = params.self_signed(&key).expect("cert");
        let signer = HeadSigner::from_pkcs8(&key.serialize_der()).expect("signer");
        let mut head = AuditHead {
            node: "province/44".into(),
            seq: 9,
            hash: vec![1; 32],
            at_ms: 5,
            certificate: cert.der().to_vec(),
            signature: Vec::new(),
        };
        signer.sign(&mut head).expect("sign");
        let p44 = crate::identity::Identity::Node("province/44".parse().expect("id"));
        assert_eq!(verify_head(&head, &p44, "isms.local"), Ok(()));
        let p11 = crate::identity::Identity::Node("province/11".parse().expect("id"));
        assert!(matches!(
            verify_head(&head, &p11, "isms.local"),
            Err(HeadError::WrongSigner { .. })
        ));
        let mut moved = head.clone();
        moved.seq = 10;
        assert_eq!(
            verify_head(&moved, &p44, "isms.local"),
            Err(HeadError::BadSignature)
        );
        assert!(HeadSigner::from_pkcs8(b"not a key").is_err());
    }
}

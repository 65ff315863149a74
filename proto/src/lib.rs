//! Generated wire and record types of the ISMS network; everything else converts at this edge.
//! Owns the `.proto` schemas and `Pieces` (a frame kept as the buffers it was built from).
//! Must not hold logic: validation is the domain's, storage the store's.

/// Generated code, nested as the protobuf packages are so cross-package paths resolve.
/// Generated code is not restyled: an envelope's directive is larger than its status report.
#[allow(clippy::large_enum_variant)]
pub mod isms {
    /// The link and operator protocol (`isms.v1`).
    pub mod v1 {
        tonic::include_proto!("isms.v1");
    }
    /// Records persisted in a node's store (`isms.record.v1`).
    pub mod record {
        pub mod v1 {
            tonic::include_proto!("isms.record.v1");
        }
    }
}

pub use isms::record::v1 as record;

/// The encoded `FileDescriptorSet` of `isms.proto` and `record.proto`: the services and
/// their methods as declared.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/isms_descriptor.bin"));
pub use isms::v1;

use prost::Message;
use prost::bytes::Bytes;

impl v1::Batch {
    /// A batch of `envelopes`, each encoded, carrying the acknowledgment `applied`.
    pub fn of(envelopes: &[v1::Envelope], applied: u64) -> Self {
        v1::Batch {
            envelopes: envelopes
                .iter()
                .map(|e| Bytes::from(e.encode_to_vec()))
                .collect(),
            applied,
        }
    }

    /// The batch's envelopes, decoded; a compressed directive is decompressed into a
    /// plain one (at most [`MAX_DIRECTIVE_BYTES`]).
    pub fn decode_envelopes(&self) -> Result<Vec<v1::Envelope>, EnvelopeError> {
        self.envelopes
            .iter()
            // From the shared buffer itself, so rule values are slices of it, not copies.
            .map(|b| {
                let mut e =
                    v1::Envelope::decode(b.clone()).map_err(|e| EnvelopeError(e.to_string()))?;
                if let Some(v1::envelope::Payload::CompressedDirective(c)) = &e.payload {
                    e.payload = Some(v1::envelope::Payload::Directive(decompress(c)?));
                }
                Ok(e)
            })
            .collect()
    }
}

/// An encoding held as the pieces it was built from, in order. A large shared piece (the
/// rules of a directive every copy carries) is referenced, not copied: a relay sends one
/// blacklist to 161 enterprises from one buffer.
#[derive(Debug, Clone, Default)]
pub struct Pieces {
    parts: Vec<Bytes>,
    len: usize,
}

impl Pieces {
    /// The encoding of `message`, in one piece.
    pub fn encode<M: Message>(message: &M) -> Self {
        Bytes::from(message.encode_to_vec()).into()
    }

    /// Appends `piece`.
    pub fn push(&mut self, piece: Bytes) {
        self.len += piece.len();
        if !piece.is_empty() {
            self.parts.push(piece);
        }
    }

    /// Appends all of `other`'s pieces.
    pub fn append(&mut self, other: Pieces) {
        self.len += other.len;
        self.parts.extend(other.parts);
    }

    /// Length of the whole encoding, in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// The whole encoding in one buffer (a copy, unless it is one piece).
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [one] => one.clone(),
            parts => Bytes::from(parts.concat()),
        }
    }
}

impl From<Bytes> for Pieces {
    fn from(piece: Bytes) -> Self {
        let mut pieces = Pieces::default();
        pieces.push(piece);
        pieces
    }
}

/// The key of `Envelope.directive` (field 10, length-delimited) on the wire.
const ENVELOPE_DIRECTIVE_KEY: u8 = (10 << 3) | 2;
/// The key of `Frame.batch` (field 2, length-delimited).
const FRAME_BATCH_KEY: u8 = (2 << 3) | 2;
/// The key of `Batch.envelopes` (field 1, length-delimited).
const BATCH_ENVELOPE_KEY: u8 = (1 << 3) | 2;
/// The key of `Batch.applied` (field 2, varint).
const BATCH_APPLIED_KEY: u8 = 2 << 3;

/// The encoding of `head` (an envelope without payload) carrying as its directive `body`,
/// the encoding of a directive without targets, and `targets`. Protobuf merges a message's
/// fields in any order, so this decodes as the directive with these targets: every copy
/// of a directive a relay sends shares one encoding of its rules, by reference.
pub fn directive_envelope(head: &v1::Envelope, body: &Bytes, targets: &[String]) -> Pieces {
    let targets = v1::Directive {
        targets: targets.to_vec(),
        ..Default::default()
    };
    let inner = body.len() + targets.encoded_len();
    let mut front = Vec::with_capacity(head.encoded_len() + 1 + 10);
    // Encoding into a Vec only fails for want of capacity, and a Vec grows.
    let _ = head.encode(&mut front);
    front.push(ENVELOPE_DIRECTIVE_KEY);
    let _ = prost::encode_length_delimiter(inner, &mut front);
    let mut pieces = Pieces::from(Bytes::from(front));
    pieces.push(body.clone());
    pieces.push(Bytes::from(targets.encode_to_vec()));
    pieces
}

/// The most a compressed directive may decompress to: a zstd frame of a few MiB must not
/// become gigabytes.
pub const MAX_DIRECTIVE_BYTES: u64 = 512 << 20;

/// Directives whose encoding is at least this long cross a link compressed (to a peer
/// that accepts it); smaller ones gain little and cost a compression each.
pub const COMPRESS_FROM: usize = 16 << 10;

/// A directive's encoding (without targets), compressed for [`compressed_directive_envelope`].
pub fn compress_directive(body: &[u8]) -> std::io::Result<Bytes> {
    // Level 3: zstd's default, about 300 MB/s; a domain blacklist shrinks 4-6 times.
    zstd::bulk::compress(body, 3).map(Bytes::from)
}

/// An envelope that does not decode (or a compressed directive that does not decompress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError(pub String);

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvelopeError {}

fn decompress(c: &v1::CompressedDirective) -> Result<v1::Directive, EnvelopeError> {
    let bad = |why: &str| EnvelopeError(format!("compressed directive: {why}"));
    if c.len > MAX_DIRECTIVE_BYTES {
        return Err(bad("states more than the largest directive taken"));
    }
    // The frame states its size too (the compressor writes it): both must agree before
    // the stated size is allocated, so a peer cannot make a node reserve 512 MiB with a
    // few bytes.
    match zstd::zstd_safe::get_frame_content_size(&c.zstd) {
        Ok(Some(n)) if n == c.len => {}
        Ok(Some(_)) => return Err(bad("its frame states another length")),
        Ok(None) | Err(_) => return Err(bad("its frame states no length")),
    }
    let capacity = usize::try_from(c.len).map_err(|_| bad("too large"))?;
    let body = zstd::bulk::decompress(&c.zstd, capacity).map_err(|e| bad(&e.to_string()))?;
    if body.len() as u64 != c.len {
        return Err(bad("not the length it states"));
    }
    let mut d = v1::Directive::decode(Bytes::from(body)).map_err(|e| bad(&e.to_string()))?;
    d.targets = c.targets.clone();
    Ok(d)
}

/// An envelope carrying a directive compressed: `zbody` from [`compress_directive`] of an
/// encoding `len` bytes long, shared by every copy, and this copy's `targets`.
pub fn compressed_directive_envelope(
    head: &v1::Envelope,
    zbody: &Bytes,
    len: usize,
    targets: &[String],
) -> Pieces {
    let tail = v1::CompressedDirective {
        zstd: Vec::new(),
        len: len as u64,
        targets: targets.to_vec(),
    };
    // `zstd` (field 1) first, by reference, then the rest as prost encodes it.
    let mut zhead = Vec::with_capacity(1 + 10);
    zhead.push(COMPRESSED_ZSTD_KEY);
    let _ = prost::encode_length_delimiter(zbody.len(), &mut zhead);
    let tail = tail.encode_to_vec();
    let inner = zhead.len() + zbody.len() + tail.len();
    let mut front = Vec::with_capacity(head.encoded_len() + 2 + 10);
    let _ = head.encode(&mut front);
    prost::encoding::encode_key(13, prost::encoding::WireType::LengthDelimited, &mut front);
    let _ = prost::encode_length_delimiter(inner, &mut front);
    let mut pieces = Pieces::from(Bytes::from(front));
    pieces.push(Bytes::from(zhead));
    pieces.push(zbody.clone());
    pieces.push(Bytes::from(tail));
    pieces
}

/// Key of `CompressedDirective.zstd` (field 1, length-delimited).
const COMPRESSED_ZSTD_KEY: u8 = (1 << 3) | 2;

/// The encoding of a `Frame` holding a `Batch` of `envelopes` (each an encoded
/// `Envelope`) that carries the acknowledgment `applied`, byte for byte what prost makes
/// of the same frame, with every envelope's pieces kept by reference.
pub fn batch_frame(envelopes: Vec<Pieces>, applied: u64) -> Pieces {
    let mut batch_len: usize = envelopes
        .iter()
        .map(|e| 1 + prost::length_delimiter_len(e.len()) + e.len())
        .sum();
    if applied != 0 {
        batch_len += 1 + prost::encoding::encoded_len_varint(applied);
    }
    let mut frame = Pieces::default();
    let mut small = Vec::with_capacity(16);
    small.push(FRAME_BATCH_KEY);
    let _ = prost::encode_length_delimiter(batch_len, &mut small);
    for envelope in envelopes {
        small.push(BATCH_ENVELOPE_KEY);
        let _ = prost::encode_length_delimiter(envelope.len(), &mut small);
        frame.push(Bytes::from(std::mem::take(&mut small)));
        frame.append(envelope);
    }
    if applied != 0 {
        small.push(BATCH_APPLIED_KEY);
        prost::encoding::encode_varint(applied, &mut small);
    }
    frame.push(Bytes::from(small));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use v1::{Directive, Envelope, Rule, envelope::Payload};

    #[test]
    fn a_compressed_directive_decodes_as_the_plain_one_and_bad_ones_are_refused() {
        let directive = Directive {
            id: "d2".into(),
            issuer: "ministry".into(),
            kind: 1,
            rules: (0..5_000)
                .map(|i| Rule {
                    kind: 1,
                    value: format!("bl{i:05}.blacklist.example").into(),
                    op: 0,
                })
                .collect(),
            ..Default::default()
        };
        let body = directive.encode_to_vec();
        let z = compress_directive(&body).expect("compress");
        assert!(z.len() * 3 < body.len(), "{} of {}", z.len(), body.len());
        let head = Envelope {
            seq: 9,
            id: "d2".into(),
            ..Default::default()
        };
        let targets = vec!["enterprise/e1".to_string()];
        let env = compressed_directive_envelope(&head, &z, body.len(), &targets);
        let batch = v1::Batch {
            envelopes: vec![env.to_bytes()],
            applied: 0,
        };
        let decoded = batch.decode_envelopes().expect("decodes");
        let Some(Payload::Directive(d)) = &decoded[0].payload else {
            panic!("not a directive: {:?}", decoded[0].payload);
        };
        assert_eq!(d.rules, directive.rules);
        assert_eq!(d.targets, targets);
        assert_eq!(decoded[0].seq, 9);

        let bad = |c: v1::CompressedDirective| {
            let e = Envelope {
                payload: Some(Payload::CompressedDirective(c)),
                ..head.clone()
            };
            v1::Batch {
                envelopes: vec![Bytes::from(e.encode_to_vec())],
                applied: 0,
            }
            .decode_envelopes()
            .expect_err("refused")
        };
        let c = |zstd: Vec<u8>, len: u64| v1::CompressedDirective {
            zstd,
            len,
            targets: vec![],
        };
        // A bomb: more than the largest directive taken, refused before decompressing.
        assert!(
            bad(c(z.to_vec(), MAX_DIRECTIVE_BYTES + 1))
                .0
                .contains("largest")
        );
        // A length that lies, and bytes that are not zstd.
        assert!(
            bad(c(z.to_vec(), body.len() as u64 - 1))
                .0
                .contains("compressed directive")
        );
        assert!(
            bad(c(b"not zstd".to_vec(), 100))
                .0
                .contains("compressed directive")
        );
        // A few bytes claiming 512 MiB: refused by the frame's own length, nothing reserved.
        assert!(
            bad(c(z.to_vec(), MAX_DIRECTIVE_BYTES))
                .0
                .contains("its frame states another length")
        );
    }

    #[test]
    fn a_directive_envelope_built_from_a_shared_body_decodes_as_the_whole_copy() {
        let directive = Directive {
            id: "d1".into(),
            issuer: "ministry".into(),
            kind: 1,
            rules: (0..3)
                .map(|i| Rule {
                    kind: 1,
                    value: format!("r{i}.example").into(),
                    op: 0,
                })
                .collect(),
            issued_at_ms: 7,
            ..Default::default()
        };
        let body = directive.encode_to_vec();
        let head = Envelope {
            seq: 42,
            id: "d1".into(),
            trace_context: HashMap::from([("traceparent".into(), "00-ab-cd-01".into())]),
            payload: None,
        };
        let targets = vec!["enterprise/e11x0001".to_string()];
        let body = Bytes::from(body);
        let pieces = directive_envelope(&head, &body, &targets);
        assert!(
            pieces.parts().iter().any(|p| p.as_ptr() == body.as_ptr()),
            "the rules are shared, not copied"
        );
        let bytes = pieces.to_bytes();
        let want = Envelope {
            payload: Some(Payload::Directive(Directive {
                targets: targets.clone(),
                ..directive
            })),
            ..head
        };
        assert_eq!(Envelope::decode(bytes.as_ref()).expect("decodes"), want);
        assert_eq!(
            bytes.len(),
            want.encoded_len(),
            "no byte more than prost's own"
        );
        let batch = v1::Batch::of(std::slice::from_ref(&want), 3);
        assert_eq!(
            batch.decode_envelopes().expect("decodes"),
            vec![want.clone()]
        );
        // The frame built by reference is the frame prost builds, byte for byte.
        for applied in [0, 3, u64::MAX] {
            let status = Envelope {
                seq: 43,
                id: "s1".into(),
                ..Default::default()
            };
            let frame = batch_frame(vec![pieces.clone(), Pieces::encode(&status)], applied);
            let whole = v1::Frame {
                body: Some(v1::frame::Body::Batch(v1::Batch {
                    envelopes: vec![bytes.clone(), Bytes::from(status.encode_to_vec())],
                    applied,
                })),
            };
            assert_eq!(frame.to_bytes(), Bytes::from(whole.encode_to_vec()));
            assert_eq!(frame.len(), whole.encoded_len());
        }
        let empty = batch_frame(Vec::new(), 0);
        assert_eq!(
            v1::Frame::decode(empty.to_bytes()).expect("decodes"),
            v1::Frame {
                body: Some(v1::frame::Body::Batch(v1::Batch::default()))
            }
        );
        let bad = v1::Batch {
            envelopes: vec![Bytes::from_static(&[0x52, 0x05, 0x01])],
            applied: 0,
        };
        assert!(bad.decode_envelopes().is_err(), "a truncated envelope");
    }
}

//! Generated wire and record types of the ISMS network; everything else converts at this edge.

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

    /// The batch's envelopes, decoded.
    pub fn decode_envelopes(&self) -> Result<Vec<v1::Envelope>, prost::DecodeError> {
        self.envelopes
            .iter()
            .map(|b| v1::Envelope::decode(b.as_ref()))
            .collect()
    }
}

/// The key of `Envelope.directive` (field 10, length-delimited) on the wire.
const ENVELOPE_DIRECTIVE_KEY: u8 = (10 << 3) | 2;

/// The encoding of `head` (an envelope without payload) carrying as its directive `body`,
/// the encoding of a directive without targets, and `targets`. Protobuf merges a message's
/// fields in any order, so this decodes as the directive with these targets: every copy
/// of a directive a relay sends shares one encoding of its rules.
pub fn directive_envelope(head: &v1::Envelope, body: &[u8], targets: &[String]) -> Bytes {
    let targets = v1::Directive {
        targets: targets.to_vec(),
        ..Default::default()
    };
    let inner = body.len() + targets.encoded_len();
    let total = head.encoded_len() + 1 + prost::length_delimiter_len(inner) + inner;
    let mut buf = Vec::with_capacity(total);
    // Encoding into a Vec only fails for want of capacity, and a Vec grows.
    let _ = head.encode(&mut buf);
    buf.push(ENVELOPE_DIRECTIVE_KEY);
    let _ = prost::encode_length_delimiter(inner, &mut buf);
    buf.extend_from_slice(body);
    let _ = targets.encode(&mut buf);
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use v1::{Directive, Envelope, Rule, envelope::Payload};

    #[test]
    fn a_directive_envelope_built_from_a_shared_body_decodes_as_the_whole_copy() {
        let directive = Directive {
            id: "d1".into(),
            issuer: "ministry".into(),
            kind: 1,
            rules: (0..3)
                .map(|i| Rule {
                    kind: 1,
                    value: format!("r{i}.example"),
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
        let bytes = directive_envelope(&head, &body, &targets);
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
        assert_eq!(batch.decode_envelopes().expect("decodes"), vec![want]);
        let bad = v1::Batch {
            envelopes: vec![Bytes::from_static(&[0x52, 0x05, 0x01])],
            applied: 0,
        };
        assert!(bad.decode_envelopes().is_err(), "a truncated envelope");
    }
}

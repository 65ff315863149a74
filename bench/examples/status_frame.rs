//! The ceiling of a bitmap status frame (issue 40, part 2's wire half): what a province's
//! upward status report for one directive costs on the wire and in prost, per enterprise,
//! against the same changes as a set over the province's target list. Nothing of the nodes
//! runs: this measures only what the bitmap could take away.
//!
//! `cargo run --release -p isms-bench --example status_frame -- [enterprises] [rounds]`:
//! by default a province of 161 enterprises (4,991 / 31) and 20,000 rounds of encoding the
//! report at the province and decoding it at the ministry, for updates as the benchmark's
//! simulated enterprises send them (unsigned) and as an enterprise-node sends them (its
//! result signed, issue 36).

use std::time::Instant;

use isms_proto::v1::{DirectiveSignature, SignedResult, StatusReport, TargetState, TargetStatus};
use prost::Message;

fn report(enterprises: usize, state: TargetState, signed: bool) -> StatusReport {
    let at_ms = 1_796_000_000_000;
    StatusReport {
        directive_id: "01a2532d-8144-7726-bbef-2c01da9d63ab".into(),
        updates: (0..enterprises)
            .map(|i| TargetStatus {
                node: format!("enterprise/e44{i:03}"),
                state: state as i32,
                at_ms: at_ms + i as i64,
                signed: signed.then(|| SignedResult {
                    state: state as i32,
                    at_ms: at_ms + i as i64,
                    rules_sha256: vec![0xa5; 32],
                    signature: Some(DirectiveSignature {
                        certificate: Vec::new(),
                        // An ECDSA P-256 signature in DER is 70–72 bytes.
                        signature: vec![0x5a; 71],
                        certificate_sha256: vec![0x3c; 32],
                    }),
                }),
                ..TargetStatus::default()
            })
            .collect(),
    }
}

/// Encoded size of the same changes as a set: per state, a bitmap over the target list
/// and one time (the group's), with the directive ID once.
fn bitmap_bytes(enterprises: usize, states: usize) -> usize {
    let bitmap = enterprises.div_ceil(8);
    36 + 2 + states * (2 + 2 + bitmap + 7)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: [enterprises] [rounds]"))
        .collect();
    let enterprises = args.first().copied().unwrap_or(161);
    let rounds = args.get(1).copied().unwrap_or(20_000);
    println!(
        "{:<34} {:>9} {:>12} {:>14} {:>14}",
        "report", "bytes", "bytes/ent.", "encode ns/ent.", "decode ns/ent."
    );
    for (name, state, signed) in [
        ("acknowledged (unsigned)", TargetState::Acknowledged, false),
        (
            "executed, as the simulator sends",
            TargetState::Executed,
            false,
        ),
        (
            "executed, signed (enterprise-node)",
            TargetState::Executed,
            true,
        ),
    ] {
        let r = report(enterprises, state, signed);
        let bytes = r.encode_to_vec();
        let started = Instant::now();
        let mut sink = 0usize;
        for _ in 0..rounds {
            sink += std::hint::black_box(r.encode_to_vec()).len();
        }
        let encode = started.elapsed().as_nanos() as f64 / (rounds * enterprises) as f64;
        let started = Instant::now();
        for _ in 0..rounds {
            let back = StatusReport::decode(std::hint::black_box(bytes.as_slice()))
                .expect("decodes what it encoded");
            sink += back.updates.len();
        }
        let decode = started.elapsed().as_nanos() as f64 / (rounds * enterprises) as f64;
        std::hint::black_box(sink);
        println!(
            "{name:<34} {:>9} {:>12.1} {encode:>14.1} {decode:>14.1}",
            bytes.len(),
            bytes.len() as f64 / enterprises as f64
        );
    }
    println!(
        "as a bitmap (one state): {} bytes, {:.2} a target; signed results cannot be",
        bitmap_bytes(enterprises, 1),
        bitmap_bytes(enterprises, 1) as f64 / enterprises as f64
    );
}

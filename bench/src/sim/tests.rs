//! Unit tests of `sim`.

use super::*;
use committer::{ReportsRecord, append_report};

#[test]
fn a_receipt_is_new_once_per_enterprise_and_directive() {
    let mut bits = ReceiptBits::default();
    for (ent, number) in [(0, 0), (63, 0), (64, 0), (4990, 0), (0, 7), (4990, 7)] {
        assert!(bits.insert(ent, number), "first receipt of {ent}, {number}");
    }
    for (ent, number) in [(0, 0), (63, 0), (64, 0), (4990, 0), (0, 7), (4990, 7)] {
        assert!(
            !bits.insert(ent, number),
            "second receipt of {ent}, {number}"
        );
    }
    // Neighbours share words, not bits.
    for (ent, number) in [(1, 0), (62, 0), (65, 0), (4989, 7), (0, 3)] {
        assert!(bits.insert(ent, number), "first receipt of {ent}, {number}");
    }
    // A directive first received high up holds only the words it needs, and grows
    // downwards without losing what it held.
    assert!(bits.insert(4900, 9));
    assert_eq!(bits.0[9].words.len(), 1);
    assert!(bits.insert(70, 9));
    assert!(!bits.insert(4900, 9) && !bits.insert(70, 9));
    assert!(bits.insert(71, 9) && bits.insert(4901, 9));
}

#[test]
fn reports_appended_one_at_a_time_read_back_as_one_record() {
    let report = |seq: u64, node: &str| Envelope {
        seq,
        id: format!("r{seq}"),
        trace_context: Default::default(),
        payload: Some(Payload::Status(StatusReport {
            directive_id: "d1".into(),
            updates: vec![TargetStatus {
                node: node.into(),
                state: TargetState::Executed as i32,
                at_ms: 7,
                detail: String::new(),
                overdue_at_ms: 0,
                result: None,
                hits: None,
                blacklist: None,
                signed: None,
            }],
        })),
    };
    let reports = vec![
        report(1, "enterprise/e11x0001"),
        report(4, "enterprise/e12x0002"),
    ];
    let mut record = Vec::new();
    for r in &reports {
        append_report(&mut record, r);
    }
    let read = ReportsRecord::decode(record.as_slice()).expect("a valid record");
    assert_eq!(read.reports, reports);
}

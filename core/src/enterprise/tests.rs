//! Unit tests of `enterprise`.

use super::*;

/// An old store's rule record (`r/<directive>\0<index>`), as stores written before
/// rule sets kept them: the fold at start only scans the prefix.
fn legacy_rule(directive_id: &str, index: u32) -> Vec<u8> {
    let mut k = records::LEGACY_RULE_PREFIX.to_vec();
    k.extend_from_slice(directive_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn domain(name: &str) -> Rule {
    Rule {
        kind: isms_proto::v1::RuleKind::BlockDomain as i32,
        value: Bytes::from(name.to_string()),
        op: RuleOp::Add as i32,
    }
}

fn blacklist(id: &str, n: usize) -> (Directive, Vec<Rule>) {
    let d = Directive {
        id: id.into(),
        issuer: "ministry/miit".into(),
        kind: DirectiveKind::Disposal as i32,
        effective_at_ms: 10,
        expires_at_ms: 0,
        ..Directive::default()
    };
    (
        d,
        (0..n).map(|i| domain(&format!("d{i}.example"))).collect(),
    )
}

#[test]
fn a_blacklist_is_kept_as_few_records_read_back_rule_by_rule() {
    let (d, rules) = blacklist("0190a1b2-0000-7000-8000-000000000001", 300);
    let sets = rule_sets(&d, 5, rules.clone());
    assert_eq!(
        sets.iter().map(|s| s.rules.len()).collect::<Vec<_>>(),
        [128, 128, 44]
    );
    let entries = sets
        .iter()
        .enumerate()
        .map(|(i, s)| (records::rule_set(&d.id, i as u32), encode(s)))
        .collect();
    let file = rules_in_force(entries, 20).expect("in force");
    assert_eq!(file.len(), 300);
    assert_eq!(file[299].value, "d299.example");
    assert_eq!(file[0].issuer, "ministry/miit");
    assert_eq!((file[0].applied_at_ms, file[0].effective_at_ms), (5, 10));
    // Not yet in force.
    let entries = vec![(records::rule_set(&d.id, 0), encode(&sets[0]))];
    assert!(rules_in_force(entries, 9).expect("in force").is_empty());
}

#[test]
fn a_store_with_a_record_per_rule_is_folded_into_rule_sets_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let a = "0190a1b2-0000-7000-8000-00000000000a";
    let b = "0190a1b2-0000-7000-8000-00000000000b";
    let mut txn = store.txn();
    // Directive a: 200 rules, one deleted since (a gap in the indexes); b: 3 rules.
    for (id, n) in [(a, 200u32), (b, 3)] {
        for i in (0..n).filter(|i| !(id == a && *i == 7)) {
            let old = ActiveRule {
                directive_id: id.into(),
                rule: Some(domain(&format!("{id}-{i}.example"))),
                issuer: "ministry/miit".into(),
                kind: DirectiveKind::Disposal as i32,
                applied_at_ms: 1,
                effective_at_ms: 2,
                expires_at_ms: 0,
            };
            txn.put(legacy_rule(id, i), encode(&old));
        }
    }
    store.apply(txn.into_writes()).expect("apply");
    let before = active_rules(&store, 3).expect("rules");
    assert!(
        before.is_empty(),
        "the old records are not read as rule sets"
    );

    assert_eq!(migrate_rules(&store).expect("migrate"), 202);
    assert_eq!(store.scan_prefix(records::LEGACY_RULE_PREFIX).count(), 0);
    let keys: Vec<Vec<u8>> = store
        .scan_prefix(records::RULE_SET_PREFIX)
        .map(|e| e.expect("entry").0)
        .collect();
    assert_eq!(
        keys,
        [
            records::rule_set(a, 0),
            records::rule_set(a, 1),
            records::rule_set(b, 0)
        ]
    );
    let file = active_rules(&store, 3).expect("rules");
    assert_eq!(file.len(), 202);
    let values: Vec<&str> = file.iter().map(|r| r.value.as_str()).collect();
    assert!(!values.contains(&format!("{a}-7.example").as_str()));
    assert!(values.contains(&format!("{a}-199.example").as_str()));
    assert_eq!(values[201], format!("{b}-2.example"));
    assert!(
        file.iter()
            .all(|r| r.issuer == "ministry/miit" && r.effective_at_ms == 2)
    );

    // A second start finds nothing to fold.
    assert_eq!(migrate_rules(&store).expect("migrate"), 0);
    assert_eq!(active_rules(&store, 3).expect("rules").len(), 202);
}

#[test]
fn a_corrupt_old_rule_record_stops_the_fold_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let id = "0190a1b2-0000-7000-8000-00000000000c";
    let mut txn = store.txn();
    txn.put(legacy_rule(id, 0), vec![1, 0xff, 0xff, 0xff]);
    store.apply(txn.into_writes()).expect("apply");
    let err = migrate_rules(&store).expect_err("corrupt record");
    assert!(err.to_string().contains("r/"), "names the record: {err}");
    assert_eq!(store.scan_prefix(records::LEGACY_RULE_PREFIX).count(), 1);
    assert_eq!(store.scan_prefix(records::RULE_SET_PREFIX).count(), 0);
}

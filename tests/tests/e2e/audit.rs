//! The audit trail from an auditor's seat: `audit list` shows what
//! operators did, `audit verify` finds the chain intact, an export verifies without the
//! node and names the record of each edit made to it (altered, removed, swapped, garbage),
//! and after a record is altered, deleted or swapped in the store (the node stopped, the
//! store edited as an intruder would), `audit verify` names that record and fails. Reads
//! are recorded too, with the caller's address and a digest of the arguments.

use isms_deploy::Topology;
use isms_e2e::{TestNet, copy_dir};

fn as_auditor(node_dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut full: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for (flag, ext) in [("--operator-cert", "pem"), ("--operator-key", "key")] {
        full.push(flag.into());
        full.push(
            node_dir
                .join(format!("operators/auditor.{ext}"))
                .display()
                .to_string(),
        );
    }
    full
}

#[test]
fn an_auditor_lists_and_verifies_the_trail_and_a_changed_byte_is_named() {
    let options = isms_deploy::Options {
        role_operators: true,
        ..Default::default()
    };
    let net = TestNet::start_with(&Topology::uniform(&["44"], 1, 0), &options);
    let dir = net.node("ministry").dir.clone();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(net.issue(&["--to", "all", "--block-domain", &format!("a{i}.example")]));
    }
    let run = |args: &[&str]| {
        let full = as_auditor(&dir, args);
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        net.cli("ministry", &refs)
    };

    let out = run(&["audit", "list", "--json", "--action", "directive.issue"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let entries = list["entries"].as_array().expect("entries");
    let subjects: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["subject"].as_str())
        .collect();
    assert_eq!(subjects, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // The second issue's record: the one the store edits below change.
    let second = entries[1]["seq"].as_u64().expect("seq");
    // Every call is recorded, reads too, with its caller's address and a digest of its
    // arguments: the list just made is the newest record.
    let out = run(&["audit", "list", "--json", "--limit", "1"]);
    let newest: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let newest = &newest["entries"][0];
    assert_eq!(newest["action"], "ListAudit", "{newest}");
    assert_eq!(newest["operator"], "auditor");
    assert!(
        newest["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{newest}"
    );
    assert_eq!(newest["args_digest"].as_str().map(str::len), Some(64));
    let out = run(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let newest_seq = newest["seq"].as_u64().expect("seq");
    // A call is recorded once its answer is made, before it is sent: the chain the verify
    // checked ends with the `--limit 1` list after the one it showed.
    let checked = newest_seq + 1;
    assert!(
        said.contains(&format!("intact: {checked} records")),
        "{said}"
    );

    // The export verifies without the node; each kind of tampering with it is named.
    let export = dir.join("audit.jsonl");
    let export_arg = export.to_str().expect("utf8");
    let out = run(&["audit", "export", "--out", export_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = std::fs::read_to_string(&export)
        .expect("export")
        .lines()
        .map(str::to_string)
        .collect();
    // Everything up to the export's own call.
    assert_eq!(lines.len() as u64, checked + 1);
    let verify_file = |lines: &[String]| {
        let path = dir.join("edited.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let out = net.cli(
            "ministry",
            &["audit", "verify", "--file", path.to_str().expect("utf8")],
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    assert_eq!(
        verify_file(&lines),
        (
            Some(0),
            format!("audit trail intact: {} records chained\n", lines.len())
        )
    );
    let mut altered = lines.clone();
    altered[1] = altered[1].replace("\"outcome\":\"", "\"outcome\":\"not ");
    let mut removed = lines.clone();
    removed.remove(1);
    let mut swapped = lines.clone();
    swapped.swap(0, 1);
    let mut garbage = lines.clone();
    garbage[2] = "{not json".into();
    for (case, edited, seq) in [
        ("altered", altered, 2),
        ("removed", removed, 2),
        ("swapped", swapped, 1),
        ("garbage", garbage, 3),
    ] {
        let (code, said) = verify_file(&edited);
        assert_eq!(code, Some(2), "{case}: {said}");
        assert!(
            said.contains(&format!("broken at record {seq}")),
            "{case}: {said}"
        );
    }

    // An operator without the auditor role may not read the trail.
    let refused = net.cli(
        "ministry",
        &[
            "audit",
            "verify",
            "--operator-cert",
            dir.join("operators/viewer.pem").to_str().expect("utf8"),
            "--operator-key",
            dir.join("operators/viewer.key").to_str().expect("utf8"),
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("lacks role auditor"));

    // In the store (the node stopped, the store edited as an intruder would): one byte of
    // the second issue's record changed, that record deleted, it and the next swapped.
    // Each time `audit verify` names that record; the untouched store is restored between.
    net.stop("ministry");
    let store_dir = dir.join("store");
    let pristine = dir.join("store.pristine");
    copy_dir(&store_dir, &pristine);
    type Edit = fn(&isms_store::Store, u64, &str);
    let cases: [(&str, Edit, u64); 3] = [
        ("a changed byte", change_byte, second),
        ("a deleted record", delete_record, second),
        ("two swapped records", swap_records, second),
    ];
    for (case, edit, named) in cases {
        std::fs::remove_dir_all(&store_dir).expect("remove");
        copy_dir(&pristine, &store_dir);
        {
            let store = isms_store::Store::open(&store_dir).expect("store");
            edit(&store, second, &ids[1]);
            store.sync().expect("sync");
        }
        net.spawn("ministry");
        net.wait_linked();
        let out = run(&["audit", "verify"]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{case}: {said}");
        assert!(
            said.contains(&format!("broken at record {named}")),
            "{case}: {said}"
        );
        net.stop("ministry");
    }
}

fn put(store: &isms_store::Store, key: Vec<u8>, value: Vec<u8>) {
    let mut txn = store.txn();
    txn.put(key, value);
    store.apply(txn.into_writes()).expect("apply");
}

fn change_byte(store: &isms_store::Store, seq: u64, subject: &str) {
    let key = isms_domain::records::audit(seq);
    let mut v = store.get(&key).expect("get").expect("record");
    let at = v
        .windows(subject.len())
        .position(|w| w == subject.as_bytes())
        .expect("its subject");
    v[at] = if v[at] == b'0' { b'1' } else { b'0' };
    put(store, key, v);
}

fn delete_record(store: &isms_store::Store, seq: u64, _: &str) {
    let mut txn = store.txn();
    txn.delete(isms_domain::records::audit(seq));
    store.apply(txn.into_writes()).expect("apply");
}

fn swap_records(store: &isms_store::Store, seq: u64, _: &str) {
    let (a, b) = (
        isms_domain::records::audit(seq),
        isms_domain::records::audit(seq + 1),
    );
    let va = store.get(&a).expect("get").expect("record");
    let vb = store.get(&b).expect("get").expect("next record");
    put(store, a, vb);
    put(store, b, va);
}

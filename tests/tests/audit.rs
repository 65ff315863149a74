//! The audit trail from an auditor's seat: `audit list` shows what
//! operators did, `audit verify` finds the chain intact, an export verifies without the
//! node and names the record of each edit made to it (altered, removed, swapped, garbage),
//! and after one byte of one record is changed in the store (the node stopped, the store
//! edited as an intruder would), `audit verify` names that record and fails.

use isms_deploy::Topology;
use isms_e2e::TestNet;

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
    let subjects: Vec<&str> = list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["subject"].as_str())
        .collect();
    assert_eq!(subjects, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact: 3 records"));

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
    assert_eq!(lines.len(), 3);
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
            "audit trail intact: 3 records chained\n".to_string()
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

    // One byte of record 2 (a character of its subject) changed in the store.
    net.stop("ministry");
    {
        let store = isms_store::Store::open(&dir.join("store")).expect("store");
        let key = isms_domain::records::audit(2);
        let mut v = store.get(&key).expect("get").expect("record 2");
        let at = v
            .windows(ids[1].len())
            .position(|w| w == ids[1].as_bytes())
            .expect("its subject");
        v[at] = if v[at] == b'0' { b'1' } else { b'0' };
        let mut txn = store.txn();
        txn.put(key, v);
        store.apply(txn.into_writes()).expect("apply");
        store.sync().expect("sync");
    }
    net.spawn("ministry");
    net.wait_linked();
    let out = run(&["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("broken at record 2"), "{said}");
}

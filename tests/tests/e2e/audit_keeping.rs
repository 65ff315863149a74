//! Keeping the audit trail end to end: each node signs its chain head with
//! its node key and sends it to its parent, which keeps it; an export checked against those
//! heads catches a history rewritten consistently (every link recomputed) and one cut short,
//! which the chain alone cannot; records older than the retention are pruned only once
//! exported, and the kept chain (and a new export of it) still verifies.

use std::time::Duration;

use isms_deploy::{Options, Topology};
use isms_domain::{audit_chain, records};
use isms_e2e::{TestNet, eventually, ok};
use isms_proto::record::AuditRecord;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const PROVINCE: &str = "province/44";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn record(line: &Value) -> AuditRecord {
    let text = |k: &str| line[k].as_str().expect(k).to_string();
    AuditRecord {
        seq: line["seq"].as_u64().expect("seq"),
        at_ms: line["at_ms"].as_i64().expect("at_ms"),
        operator: text("operator"),
        action: text("action"),
        subject: text("subject"),
        outcome: text("outcome"),
        prev_hash: unhex(&text("prev_hash")),
        peer: text("peer"),
        args_digest: unhex(&text("args_digest")),
    }
}

fn line_of(r: &AuditRecord) -> String {
    serde_json::json!({
        "seq": r.seq, "at_ms": r.at_ms, "operator": r.operator, "action": r.action,
        "subject": r.subject, "outcome": r.outcome, "prev_hash": hex(&r.prev_hash),
        "peer": r.peer, "args_digest": hex(&r.args_digest),
    })
    .to_string()
}

/// Record `at` (1-based) altered, and every later link recomputed: a chain that verifies
/// on its own.
fn rewrite(lines: &[String], at: usize) -> Vec<String> {
    let mut recs: Vec<AuditRecord> = lines
        .iter()
        .map(|l| record(&serde_json::from_str(l).expect("json")))
        .collect();
    recs[at - 1].outcome = "nothing happened".into();
    for i in at..recs.len() {
        let prev = audit_chain::hash(&records::encode(&recs[i - 1]));
        recs[i].prev_hash = prev.to_vec();
    }
    recs.iter().map(line_of).collect()
}

#[test]
fn signed_heads_kept_by_the_parent_expose_a_rewritten_trail_and_pruning_follows_export() {
    let options = Options {
        role_operators: true,
        clock_files: true,
        ..Options::default()
    };
    let net = TestNet::start_at(
        &Topology::uniform(&["44"], 1, 0),
        &options,
        "2026-12-07T09:00:00+08:00",
    );
    for i in 0..3 {
        ok(net.cli(
            PROVINCE,
            &[
                "directive",
                "issue",
                "--to",
                "enterprise/e4401",
                "--block-domain",
                &format!("k{i}.example"),
            ],
        ));
    }
    let as_auditor = |node: &str, args: &[&str]| net.cli_as(node, "auditor", args);

    // The province's head reaches the ministry, which keeps it with its signature.
    let heads_file = net.node("ministry").dir.join("heads-44.json");
    let heads = eventually(T, "the province's signed head at the ministry", || {
        let out = as_auditor(
            "ministry",
            &["audit", "heads", "--node", PROVINCE, "--json"],
        );
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (!v["heads"].as_array()?.is_empty()).then_some(v)
    });
    std::fs::write(&heads_file, heads.to_string()).expect("heads");
    let anchored = heads["heads"][0]["seq"].as_u64().expect("seq");
    assert!(anchored >= 1);

    // An export verifies alone and against the heads.
    let dir = net.node(PROVINCE).dir.clone();
    let export = dir.join("audit.jsonl");
    let said = String::from_utf8_lossy(
        &as_auditor(
            PROVINCE,
            &["audit", "export", "--out", export.to_str().expect("utf8")],
        )
        .stderr,
    )
    .to_string();
    assert!(said.contains("exported through record"), "{said}");
    let lines: Vec<String> = std::fs::read_to_string(&export)
        .expect("export")
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        lines.len() as u64 >= anchored,
        "{} < {anchored}",
        lines.len()
    );
    let verify = |lines: &[String], with_heads: bool| {
        let path = dir.join("edited.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let mut args = vec!["audit", "verify", "--file", path.to_str().expect("utf8")];
        if with_heads {
            args.extend(["--heads", heads_file.to_str().expect("utf8")]);
        }
        let out = net.cli(PROVINCE, &args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    assert_eq!(
        verify(&lines, true).0,
        Some(0),
        "{}",
        verify(&lines, true).1
    );

    // The province's administrator rewrites record 1 and every link after it: the chain
    // alone cannot tell, the signed head can.
    let rewritten = rewrite(&lines, 1);
    assert_eq!(verify(&rewritten, false).0, Some(0));
    let (code, said) = verify(&rewritten, true);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains(&format!("broken at record {anchored}")),
        "{said}"
    );
    assert!(
        said.contains("not the record its signed head anchored"),
        "{said}"
    );
    // ... or cuts the trail short of the signed head.
    let cut = &lines[..anchored as usize - 1];
    let (code, said) = verify(cut, true);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("short of the head signed"), "{said}");
    // Heads with a forged signature are refused outright.
    let mut forged = heads.clone();
    let sig = forged["heads"][0]["signature"]
        .as_str()
        .expect("sig")
        .to_string();
    let flipped = if sig.ends_with('0') { "1" } else { "0" };
    forged["heads"][0]["signature"] = Value::from(format!("{}{flipped}", &sig[..sig.len() - 1]));
    std::fs::write(&heads_file, forged.to_string()).expect("heads");
    let (code, _) = verify(&lines, true);
    assert_eq!(code, Some(1));
    std::fs::write(&heads_file, heads.to_string()).expect("heads");

    // Half a year later: what was exported is pruned, what was not is kept.
    let exported = lines.len() as u64;
    let before = ok(as_auditor(
        PROVINCE,
        &["audit", "list", "--json", "--limit", "100000"],
    ));
    let total_before = serde_json::from_str::<Value>(&before).expect("json")["entries"]
        .as_array()
        .expect("entries")
        .len() as u64;
    assert!(total_before > exported);
    ok(net.cli(PROVINCE, &["clock", "advance", "184days"]));
    let first_kept = eventually(T, "the exported records pruned", || {
        let out = as_auditor(PROVINCE, &["audit", "list", "--json", "--limit", "100000"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let first = v["entries"][0]["seq"].as_u64()?;
        (first > 1).then_some(first)
    });
    assert_eq!(first_kept, exported + 1, "pruned exactly what was exported");
    let verdict = ok(as_auditor(PROVINCE, &["audit", "verify"]));
    assert!(verdict.contains("audit trail intact"), "{verdict}");
    // A new export says where the kept trail starts, and verifies on its own; without that
    // line it is a trail missing its front.
    let again = dir.join("audit-2.jsonl");
    ok(as_auditor(
        PROVINCE,
        &["audit", "export", "--out", again.to_str().expect("utf8")],
    ));
    let text = std::fs::read_to_string(&again).expect("export");
    let mut head = text
        .lines()
        .take(2)
        .map(|l| serde_json::from_str::<Value>(l).expect("json"));
    let (said, first) = (head.next().expect("a line"), head.next().expect("a record"));
    assert_eq!(said["pruned_through"].as_u64(), Some(exported));
    assert_eq!(first["seq"].as_u64(), Some(exported + 1));
    let out = net.cli(
        PROVINCE,
        &["audit", "verify", "--file", again.to_str().expect("utf8")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // And a day on, a new head is signed and kept by the ministry.
    eventually(T, "a second signed head", || {
        let out = as_auditor(
            "ministry",
            &["audit", "heads", "--node", PROVINCE, "--json"],
        );
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["heads"].as_array()?.len() >= 2).then_some(())
    });
}

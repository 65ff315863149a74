//! Enterprises' data: an enterprise submits its data with three planted
//! faults; its province flags exactly those three and demands a correction with the
//! findings; the corrected re-report closes them within the clock. Another misses the
//! clock across National Day and is overdue. The ministry sees the anomalies. Bad files:
//! clear errors, nothing stored.

use std::time::Duration;

use isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually, ok};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const P: &str = "province/44";
const E1: &str = "enterprise/e4401";
const E2: &str = "enterprise/e4402";

fn data(range: &str, extra_range: Option<&str>, filing: &str) -> Value {
    let mut ranges = vec![json!(range)];
    if let Some(r) = extra_range {
        ranges.push(json!(r));
    }
    json!({
        "operator": { "name": "Pearl River IDC", "licence": "B1-20190001", "kinds": ["idc"] },
        "houses": [ { "id": "gz-1", "name": "Guangzhou 1", "province": "44",
                      "ip_ranges": ranges, "bandwidth_mbps": 10000 } ],
        "customers": [ { "id": "c1", "name": "Shop", "domains": [
            { "domain": "shop.example", "filing_number": "粤ICP备12345678号" },
            { "domain": "blog.example", "filing_number": filing } ] } ],
    })
}

fn submit(net: &TestNet, node: &str, dir: &std::path::Path, name: &str, v: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, v.to_string()).expect("write");
    ok(net.cli(
        node,
        &["data", "submit", "--file", path.to_str().expect("path")],
    ))
    .trim()
    .to_string()
}

/// `node`'s status of `enterprise`'s data, once it has `version`.
fn status(net: &TestNet, node: &str, enterprise: &str, version: u64) -> Value {
    eventually(
        T,
        &format!("{enterprise} version {version} at {node}"),
        || {
            let v = net.cli_json(node, &["data", "status", "--json"])?;
            v["enterprises"]
                .as_array()?
                .iter()
                .find(|s| s["enterprise"] == enterprise && s["version"] == version)
                .filter(|s| node == E1 || node == E2 || s["validated_at_ms"].as_i64() > Some(0))
                .cloned()
        },
    )
}

fn target(net: &TestNet, id: &str, node: &str) -> Value {
    net.directive(P, id)
        .and_then(|v| {
            v["targets"]
                .as_array()?
                .iter()
                .find(|t| t["node"] == node)
                .cloned()
        })
        .unwrap_or_default()
}

#[test]
fn planted_faults_are_flagged_demanded_corrected_or_overdue() {
    let options = Options {
        clock_files: true,
        ..Options::default()
    };
    let net = TestNet::start_at(
        &Topology::uniform(&["44"], 2, 0),
        &options,
        "2026-09-29T10:00:00+08:00",
    );
    // Tuesday 29 September 2026; 1–7 October off, Saturday 10 October worked.
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        submit(
            &net,
            E2,
            dir.path(),
            "e2.json",
            &data("198.51.100.0/24", None, "粤ICP备2号")
        ),
        "1"
    );
    let clean = status(&net, P, E2, 1);
    assert_eq!(clean["anomalies"], json!([]), "{clean}");

    // Three planted faults: a range overlapping e4402's, a domain without its filing
    // number, a malformed address.
    let faulty = data("203.0.113.0/24", Some("198.51.100.128/25"), "");
    let mut faulty = faulty;
    faulty["houses"][0]["ip_ranges"]
        .as_array_mut()
        .expect("ranges")
        .push(json!("203.0.113.300"));
    submit(&net, E1, dir.path(), "e1.json", &faulty);
    let flagged = status(&net, P, E1, 1);
    let mut rules: Vec<&str> = flagged["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .map(|a| a["rule"].as_str().unwrap_or(""))
        .collect();
    rules.sort_unstable();
    assert_eq!(rules, ["malformed", "no-filing", "overlap"], "{flagged}");
    assert_eq!(flagged["correction_open"], true);
    let demand = flagged["correction_id"]
        .as_str()
        .expect("demand")
        .to_string();
    let view = net.directive(P, &demand).expect("the demand");
    let detail = view["correction"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for finding in ["overlap", "no-filing", "malformed"] {
        assert!(detail.contains(finding), "{detail}");
    }
    // The ministry sees what the province found.
    let at_ministry = status(&net, "ministry", E1, 1);
    assert_eq!(at_ministry["anomalies"].as_array().map(Vec::len), Some(3));

    // Corrected and re-reported within the clock: the demand is executed, the anomalies
    // closed.
    submit(
        &net,
        E1,
        dir.path(),
        "e1-fixed.json",
        &data("203.0.113.0/24", None, "粤ICP备1号"),
    );
    let fixed = status(&net, P, E1, 2);
    assert_eq!(fixed["anomalies"], json!([]), "{fixed}");
    assert_eq!(fixed["correction_open"], false);
    eventually(T, "the demand executed", || {
        (target(&net, &demand, E1)["state"] == "executed").then_some(())
    });
    assert_eq!(target(&net, &demand, E1)["overdue_at_ms"], 0);

    // e4402's next version is faulty and never corrected: overdue after 5 working days,
    // counted across National Day.
    submit(
        &net,
        E2,
        dir.path(),
        "e2-v2.json",
        &data("198.51.100.0/24", None, ""),
    );
    let late = status(&net, P, E2, 2);
    let late_demand = late["correction_id"].as_str().expect("demand").to_string();
    eventually(T, "the demand acknowledged", || {
        (target(&net, &late_demand, E2)["state"] == "acknowledged").then_some(())
    });
    // Due 5 working days after: 30 September, 8, 9, 10 (worked) and 12 October.
    let due = chrono::DateTime::parse_from_rfc3339("2026-10-12T10:00:00+08:00")
        .expect("time")
        .timestamp_millis();
    assert_eq!(target(&net, &late_demand, E2)["deadline_ms"], due);
    ok(net.cli(P, &["clock", "set", "2026-10-13T11:00:00+08:00"]));
    eventually(T, "the demand overdue", || {
        (target(&net, &late_demand, E2)["overdue_at_ms"].as_i64() > Some(0)).then_some(())
    });
    let anomalies = net
        .cli_json("ministry", &["data", "anomalies", "--json"])
        .expect("anomalies");
    let listed: Vec<&str> = anomalies["enterprises"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["enterprise"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(listed, [E2]);

    // The ministry orders the correction itself from what it holds: the demand
    // names the version and carries the findings.
    let ordered = ok(net.cli(
        "ministry",
        &[
            "data",
            "correct",
            "--enterprise",
            E2,
            "--reason",
            "inconsistent",
        ],
    ))
    .trim()
    .to_string();
    let waiting = eventually(T, "the ministry's demand at the enterprise", || {
        let v = net.cli_json(E2, &["directive", "corrections", "--json"])?;
        v["corrections"]
            .as_array()?
            .iter()
            .find(|p| p["id"] == ordered.as_str())
            .cloned()
    });
    let text = waiting.to_string();
    assert!(
        text.contains("data version 2") && text.contains("no-filing"),
        "{text}"
    );
    let out = net.cli(
        "ministry",
        &["data", "correct", "--enterprise", "enterprise/e9999"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no data of enterprise/e9999"));
}

#[test]
fn bad_data_files_get_a_clear_error_and_nothing_is_stored() {
    let net = TestNet::start_with(&Topology::uniform(&["44"], 1, 0), &Options::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wrong = data("203.0.113.0/24", None, "x");
    wrong["houses"][0]["bandwidth_mbps"] = json!("fast");
    std::fs::write(dir.path().join("wrong.json"), wrong.to_string()).expect("write");
    // 1 GB, sparse: refused by its size before it is read.
    let huge = std::fs::File::create(dir.path().join("huge.json")).expect("create");
    huge.set_len(1 << 30).expect("size");
    for (file, why) in [("wrong.json", "invalid type"), ("huge.json", "at most")] {
        let path = dir.path().join(file);
        let out = net.cli(
            E1,
            &["data", "submit", "--file", path.to_str().expect("path")],
        );
        assert_eq!(out.status.code(), Some(1), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{file}: {err}");
    }
    let held = net
        .cli_json(E1, &["data", "status", "--json"])
        .expect("status");
    assert_eq!(held["enterprises"], json!([]), "nothing stored");
    // A province submits no data.
    let good = dir.path().join("good.json");
    std::fs::write(&good, data("203.0.113.0/24", None, "x").to_string()).expect("write");
    let out = net.cli(
        P,
        &["data", "submit", "--file", good.to_str().expect("path")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only an enterprise submits"));
}

/// Writes the export whole and renames it into place, as an exporter should.
fn export(path: &std::path::Path, rows: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, rows).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn a_scheduled_reading_submits_each_changed_export_once() {
    let net = TestNet::generate(&Topology::uniform(&["44"], 1, 0), &Options::default());
    let node = net.node(E1);
    let file = node.dir.join("export.csv");
    export(&file, "operator,Pearl River IDC\nhouses,gz-1\n");
    let text = std::fs::read_to_string(&node.config_path).expect("config");
    std::fs::write(
        &node.config_path,
        format!("{text}\n[data_export]\nfile = \"export.csv\"\nevery = \"1s\"\n"),
    )
    .expect("config");
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();
    // A bad export: said in the log, nothing stored.
    eventually(T, "the bad export to be refused in the log", || {
        let log = net.log(E1);
        (log.contains("exported data not submitted") && log.contains("line 1")).then_some(())
    });
    let held = net
        .cli_json(E1, &["data", "status", "--json"])
        .expect("status");
    assert_eq!(held["enterprises"], json!([]), "nothing stored");

    let rows = "operator,Pearl River IDC,B1-20190001,idc\n\
                house,gz-1,Guangzhou 1,44,203.0.113.0/24,10000\n\
                domain,c1,Shop,shop.example,粤ICP备12345678号\n";
    export(&file, &format!("{rows}domain,c1,Shop,blog.example,\n"));
    let v1 = status(&net, P, E1, 1);
    let rules: Vec<&str> = v1["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .filter_map(|a| a["rule"].as_str())
        .collect();
    assert_eq!(rules, ["no-filing"], "{v1}");
    export(
        &file,
        &format!("{rows}domain,c1,Shop,blog.example,粤ICP备2号\n"),
    );
    let v2 = status(&net, P, E1, 2);
    assert_eq!(v2["anomalies"], json!([]), "{v2}");
    let by = net
        .cli_json(E1, &["data", "status", "--json"])
        .expect("status");
    assert_eq!(by["enterprises"][0]["version"], 2);

    // A restart reads the same export again and submits nothing: the next change is
    // version 3, with what changed.
    net.stop(E1);
    net.spawn(E1);
    eventually(T, "the restarted enterprise to read the export", || {
        net.log(E1)
            .contains("exported data read: unchanged")
            .then_some(())
    });
    export(
        &file,
        &format!(
            "{rows}domain,c1,Shop,blog.example,粤ICP备2号\ndomain,c2,Books,books.example,粤ICP备3号\n"
        ),
    );
    let v3 = status(&net, P, E1, 3);
    assert_eq!(v3["customers"], 2, "{v3}");
    assert_eq!(v3["domains"], 3, "{v3}");
}

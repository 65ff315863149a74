//! Operation reports (O-5, O-3, R-17.1): a November of known activity on the testing clock
//! (directives of each urgency, a confirmation, a return, a late confirmation, a query, a
//! drill, a correction never made), then the ministry's and the province's monthly report
//! checked figure by figure against what the test did; the annual report and a province's
//! account of its assistance; the HTML opened in headless Chromium, its charts measured and
//! a screenshot kept. Bad input: a month not ended, a month that is not one, an assistance
//! report from the ministry.

use std::path::Path;
use std::time::Duration;

use isms_e2e::isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually, ok, states};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn clock_all(net: &TestNet, args: &[&str]) {
    for n in net.net.nodes.clone() {
        ok(net.cli(n.id.as_str(), args));
    }
}

fn all_states(view: &Value) -> std::collections::HashMap<String, String> {
    let mut s = states(&view["targets"]);
    s.extend(states(&view["hops"]));
    s
}

fn wait_for(net: &TestNet, node: &str, id: &str, want: &[(&str, &str)]) -> Value {
    eventually(T, &format!("{want:?} for {id} at {node}"), || {
        let v = net.directive(node, id)?;
        let s = all_states(&v);
        want.iter()
            .all(|(n, st)| s.get(*n).map(String::as_str) == Some(*st))
            .then_some(v)
    })
}

fn report(net: &TestNet, node: &str, args: &[&str]) -> Value {
    let mut full = vec!["report"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--format", "json"]);
    serde_json::from_str(&ok(net.cli(node, &full))).expect("report JSON")
}

fn row<'a>(rows: &'a Value, unit: &str) -> &'a Value {
    rows.as_array()
        .and_then(|rs| rs.iter().find(|r| r["unit"] == unit))
        .unwrap_or_else(|| panic!("no row {unit} in {rows}"))
}

/// Waits until the ministry hears every node up again after a clock jump.
fn every_node_up(net: &TestNet) {
    let nodes = net.net.nodes.len();
    eventually(T, "every node up at the ministry", || {
        let v = net.cli_json("ministry", &["network", "status", "--json"])?;
        (v["counts"]["up"].as_u64()? == nodes as u64).then_some(())
    });
}

/// Nearest-rank percentile, as the report computes it.
fn percentile(mut v: Vec<i64>, q: f64) -> i64 {
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).max(1);
    v[rank - 1]
}

#[test]
fn monthly_and_annual_reports_show_what_happened_and_render_in_chromium() {
    let options = Options {
        manual_confirm: vec!["44".into()],
        clock_files: true,
        health: isms_config::Health {
            interval: Duration::from_millis(200),
            ..Default::default()
        },
        ..Options::default()
    };
    // The clocks are set before the nodes start, so that their health history (and with it
    // November's availability) begins in November.
    let net = TestNet::generate(&Topology::uniform(&["11", "44"], 2, 0), &options);
    clock_all(&net, &["clock", "set", "2026-11-10T10:00:00+08:00"]);
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();
    let (e11, e44) = (
        ["enterprise/e1101", "enterprise/e1102"],
        ["enterprise/e4401", "enterprise/e4402"],
    );
    let executed = |ids: &[&'static str]| -> Vec<(&'static str, &'static str)> {
        ids.iter().map(|n| (*n, "executed")).collect()
    };
    let everywhere: Vec<&str> = e11.iter().chain(e44.iter()).copied().collect();

    // a: general to all, confirmed at province/44.
    let a = net.issue(&["--to", "all", "--block-domain", "a.example"]);
    wait_for(&net, "ministry", &a, &[("province/44", "received")]);
    ok(net.cli("province/44", &["directive", "confirm", &a]));
    // b: urgent, province/11 only. c: emergency, passes provinces unconfirmed.
    let b = net.issue(&[
        "--to",
        "province/11",
        "--urgency",
        "urgent",
        "--block-domain",
        "b.example",
    ]);
    let c = net.issue(&[
        "--to",
        "all",
        "--urgency",
        "emergency",
        "--block-domain",
        "c.example",
    ]);
    // d: returned by province/44 with its reason.
    let d = net.issue(&["--to", "all", "--block-domain", "d.example"]);
    wait_for(&net, "ministry", &d, &[("province/44", "received")]);
    let reason = "outside this province's remit";
    ok(net.cli(
        "province/44",
        &["directive", "return", &d, "--reason", reason],
    ));
    // e: province/44 confirms after its clock ran out.
    let e = net.issue(&["--to", "province/44", "--block-domain", "e.example"]);
    wait_for(&net, "ministry", &e, &[("province/44", "received")]);
    for id in [&a, &c] {
        wait_for(&net, "ministry", id, &executed(&everywhere));
    }
    wait_for(&net, "ministry", &b, &executed(&e11));
    wait_for(&net, "ministry", &d, &executed(&e11));
    clock_all(&net, &["clock", "set", "2026-11-17T10:00:00+08:00"]);
    every_node_up(&net);
    eventually(T, "e's confirmation clock to run out", || {
        let v = net.directive("ministry", &e)?;
        let hop = v["hops"]
            .as_array()?
            .iter()
            .find(|h| h["node"] == "province/44")?
            .clone();
        (hop["overdue_at_ms"].as_i64().unwrap_or(0) != 0).then_some(())
    });
    ok(net.cli("province/44", &["directive", "confirm", &e]));
    wait_for(&net, "ministry", &e, &executed(&e44));
    // A query, answered at once; a drill at province/11; a correction never made.
    let q = ok(net.cli(
        "ministry",
        &[
            "directive",
            "query",
            "--to",
            "all",
            "--from",
            "2026-11-01T00:00:00+08:00",
            "--until",
            "2026-11-02T00:00:00+08:00",
        ],
    ))
    .trim()
    .to_string();
    wait_for(&net, "ministry", &q, &[("province/44", "received")]);
    ok(net.cli("province/44", &["directive", "confirm", &q]));
    let drill = net.issue(&[
        "--to",
        "province/11",
        "--kind",
        "drill",
        "--domain",
        "drill.example",
    ]);
    wait_for(&net, "ministry", &drill, &executed(&e11));
    let fix = ok(net.cli(
        "ministry",
        &[
            "directive",
            "correct",
            "--to",
            "enterprise/e1101",
            "--subject",
            "house gz-1",
            "--reason",
            "wrong",
        ],
    ))
    .trim()
    .to_string();
    wait_for(&net, "ministry", &q, &executed(&everywhere));
    wait_for(
        &net,
        "ministry",
        &fix,
        &[("enterprise/e1101", "acknowledged")],
    );

    // December: November has ended; the correction's 5 working days ran out.
    clock_all(&net, &["clock", "set", "2026-12-02T09:00:00+08:00"]);
    eventually(T, "the correction to be overdue", || {
        let v = net.directive("ministry", &fix)?;
        (v["targets"][0]["overdue_at_ms"].as_i64().unwrap_or(0) != 0).then_some(())
    });

    let r = report(&net, "ministry", &["monthly", "--month", "2026-11"]);
    assert_eq!(
        (r["kind"].as_str(), r["period"].as_str(), r["unit"].as_str()),
        (Some("monthly"), Some("2026-11"), Some("province"))
    );
    let count = |kind: &str, urgency: &str| {
        r["directives"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|k| k["kind"] == kind && k["urgency"] == urgency)
            .map_or(0, |k| k["directives"].as_u64().unwrap_or(0))
    };
    assert_eq!(count("disposal", "general"), 3, "a, d, e");
    assert_eq!(count("disposal", "urgent"), 1, "b");
    assert_eq!(count("disposal", "emergency"), 1, "c");
    let of_kind = |kind: &str| -> u64 {
        r["directives"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|k| k["kind"] == kind)
            .map(|k| k["directives"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(
        (
            of_kind("access_log_query"),
            of_kind("data_correction"),
            of_kind("drill")
        ),
        (1, 1, 0)
    );
    assert_eq!(
        r["drills"],
        json!({"directives": 1, "targets": 2, "reached": 2,
        "p50_ms": r["drills"]["p50_ms"], "p95_ms": r["drills"]["p95_ms"]})
    );

    // Time to full execution at province/11, as the test reads it off each directive.
    let times_at = |ids: &[&String], enterprises: &[&str]| -> Vec<i64> {
        ids.iter()
            .map(|id| {
                let v = net.directive("ministry", id).expect("view");
                let issued = v["issued_at_ms"].as_i64().expect("issued");
                let last = v["targets"]
                    .as_array()
                    .expect("targets")
                    .iter()
                    .filter(|t| enterprises.contains(&t["node"].as_str().unwrap_or("")))
                    .map(|t| t["finished_at_ms"].as_i64().unwrap_or(0))
                    .max()
                    .expect("targets");
                last - issued
            })
            .collect()
    };
    let p11 = row(&r["execution"], "province/11");
    assert_eq!(
        (p11["directives"].as_u64(), p11["executed"].as_u64()),
        (Some(4), Some(4)),
        "a b c d"
    );
    let t11 = times_at(&[&a, &b, &c, &d], &e11);
    assert_eq!(p11["p50_ms"].as_i64(), Some(percentile(t11.clone(), 0.5)));
    assert_eq!(p11["p95_ms"].as_i64(), Some(percentile(t11, 0.95)));
    let p44 = row(&r["execution"], "province/44");
    assert_eq!(
        (
            p44["directives"].as_u64(),
            p44["executed"].as_u64(),
            p44["returned"].as_u64()
        ),
        (Some(4), Some(3), Some(1)),
        "a c e executed, d returned"
    );
    assert_eq!(
        p44["p95_ms"].as_i64(),
        Some(percentile(times_at(&[&a, &c, &e], &e44), 0.95))
    );
    let all = row(&r["execution"], "all");
    assert_eq!(
        (
            all["directives"].as_u64(),
            all["executed"].as_u64(),
            all["returned"].as_u64()
        ),
        (Some(5), Some(4), Some(1))
    );

    let clocks = row(&r["confirmation"], "province/44");
    assert_eq!(
        (
            clocks["clocks"].as_u64(),
            clocks["met"].as_u64(),
            clocks["overdue"].as_u64()
        ),
        (Some(4), Some(3), Some(1)),
        "a, d and the query in time, e late; c had none"
    );
    let c11 = row(&r["confirmation"], "province/11");
    assert_eq!(c11["overdue"], 0);
    assert_eq!(r["returns"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (
            r["returns"][0]["directive"].as_str(),
            r["returns"][0]["reason"].as_str()
        ),
        (Some(d.as_str()), Some(reason))
    );
    let queries = row(&r["queries"], "all");
    assert_eq!(
        (queries["asked"].as_u64(), queries["on_time"].as_u64()),
        (Some(4), Some(4))
    );
    let corrections = row(&r["corrections"], "all");
    assert_eq!(
        (
            corrections["asked"].as_u64(),
            corrections["missed"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let provinces: Vec<&str> = r["availability"]
        .as_array()
        .expect("availability")
        .iter()
        .filter_map(|a| a["node"].as_str())
        .filter(|n| n.starts_with("province/"))
        .collect();
    assert_eq!(provinces, vec!["province/11", "province/44"]);
    for a in r["availability"].as_array().expect("availability") {
        // Up from 10 November, but for the moments after each clock jump before the next
        // heartbeat.
        assert!(a["permille"].as_i64().unwrap_or(-1) >= 990, "{a}");
    }

    // The CSV says the same figures.
    let csv = ok(net.cli(
        "ministry",
        &["report", "monthly", "--month", "2026-11", "--format", "csv"],
    ));
    for line in [
        "directives,disposal/general,directives,3",
        "execution,province/44,returned,1",
        "confirmation,province/44,overdue,1",
        "corrections,all,missed,1",
        "drills,all,reached,2",
    ] {
        assert!(csv.lines().any(|l| l == line), "{line} not in\n{csv}");
    }
    let md = ok(net.cli("ministry", &["report", "monthly", "--month", "2026-11"]));
    assert!(
        md.contains("# Operation report for 2026-11") && md.contains(reason),
        "{md}"
    );

    // The province reports on its own subtree, per enterprise.
    let p = report(&net, "province/44", &["monthly", "--month", "2026-11"]);
    assert_eq!(p["unit"], "enterprise");
    let e4401 = row(&p["execution"], "enterprise/e4401");
    // d was returned before it reached the province's enterprises.
    assert_eq!(
        (e4401["directives"].as_u64(), e4401["executed"].as_u64()),
        (Some(3), Some(3))
    );
    // Its own clocks as the ministry counts them: e decided after its deadline.
    let own = row(&p["confirmation"], "province/44");
    assert_eq!(
        (
            own["clocks"].as_u64(),
            own["met"].as_u64(),
            own["overdue"].as_u64()
        ),
        (Some(4), Some(3), Some(1)),
        "{own}"
    );

    // Bad input: clear errors.
    for (node, args, says) in [
        (
            "ministry",
            vec!["monthly", "--month", "2026-12"],
            "has not ended",
        ),
        (
            "ministry",
            vec!["monthly", "--month", "2026-13"],
            "is not a month",
        ),
        ("ministry", vec!["annual", "--year", "26"], "is not a year"),
        (
            "ministry",
            vec!["assistance", "--year", "2025"],
            "province's account",
        ),
    ] {
        let mut full = vec!["report"];
        full.extend(args);
        let out = net.cli(node, &full);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
    }

    // The HTML in a real browser: every chart lays out with its bars.
    let dir = tempfile::tempdir().expect("tempdir");
    let html = dir.path().join("report-2026-11.html");
    ok(net.cli(
        "ministry",
        &[
            "report",
            "monthly",
            "--month",
            "2026-11",
            "--format",
            "html",
            "--out",
            html.to_str().expect("path"),
        ],
    ));
    render_in_chromium(&html);

    // December: province/11 asks province/44 for assistance; the year's reports.
    let help = ok(net.cli(
        "province/11",
        &[
            "directive",
            "issue",
            "--to",
            "enterprise/e4401",
            "--block-domain",
            "help.example",
        ],
    ))
    .trim()
    .to_string();
    wait_for(&net, "province/44", &help, &[("province/44", "received")]);
    ok(net.cli("province/44", &["directive", "confirm", &help]));
    wait_for(
        &net,
        "province/11",
        &help,
        &[("enterprise/e4401", "executed")],
    );
    clock_all(&net, &["clock", "set", "2027-01-04T09:00:00+08:00"]);
    let given = report(&net, "province/44", &["assistance", "--year", "2026"]);
    let rows = given["assistance"].as_array().expect("assistance");
    assert_eq!(rows.len(), 1, "{given}");
    assert_eq!(
        (
            rows[0]["directive"].as_str(),
            rows[0]["requester"].as_str(),
            rows[0]["executed"].as_u64()
        ),
        (Some(help.as_str()), Some("province/11"), Some(1))
    );
    let annual = report(&net, "ministry", &["annual", "--year", "2026"]);
    let series: Vec<(String, u64, u64)> = annual["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| {
            (
                p["label"].as_str().unwrap_or("").to_string(),
                p["directives"].as_u64().unwrap_or(0),
                p["drills"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        series,
        vec![("2026-11".to_string(), 7, 1), ("2026-12".to_string(), 1, 0)],
        "a b c d e, the query and the correction; the drill; the assistance relayed"
    );
}

/// Opens the page in headless Chromium, measures each chart and keeps a screenshot in the
/// target directory.
fn render_in_chromium(html: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (charts, png) = rt.block_on(async {
        let browser = isms_e2e::browser::Browser::open(1280, 2400).await;
        let client = &browser.client;
        client
            .goto(&format!("file://{}", html.display()))
            .await
            .expect("goto");
        let charts = client.execute(
            "return Array.from(document.querySelectorAll('figure.chart')).map(f => {\
               const s = f.querySelector('svg'); const b = s.getBoundingClientRect();\
               return {id: f.id, width: b.width, height: b.height, rects: s.querySelectorAll('rect').length};\
             });",
            vec![],
        ).await.expect("script");
        let png = client.screenshot().await.expect("screenshot");
        browser.client.close().await.expect("close");
        (charts, png)
    });
    let charts = charts.as_array().expect("charts").clone();
    let ids: Vec<&str> = charts.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "chart-directives",
            "chart-execution",
            "chart-confirmation",
            "chart-availability"
        ]
    );
    for c in &charts {
        assert!(
            c["width"].as_f64().unwrap_or(0.0) > 300.0
                && c["height"].as_f64().unwrap_or(0.0) > 200.0,
            "{c}"
        );
        // The background, the legend box and its swatches, and at least one bar.
        assert!(c["rects"].as_u64().unwrap_or(0) >= 4, "{c}");
    }
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a screenshot of {} bytes",
        png.len()
    );
    std::fs::write(
        isms_e2e::browser::artifacts("reports").join("report-2026-11.png"),
        &png,
    )
    .expect("keep the screenshot");
}

//! Access logs kept as Parquet partitions and queried through them: an
//! enterprise tails its feed into hour partitions; a query from the ministry for one hour
//! answers exactly what a scan of the feed finds; records appended later are taken; a
//! restart takes nothing twice.

use std::io::Write;
use std::time::Duration;

use isms_e2e::isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually, ok};

const T: Duration = Duration::from_secs(60);
const E: &str = "enterprise/e4401";

/// 2026-11-20T00:00:00+08:00.
const DAY: i64 = 1_795_104_000_000;
const H: i64 = 3_600_000;

/// Feed lines for records `from..to`, spread over three days.
fn lines(from: usize, to: usize) -> (String, Vec<(i64, u32)>) {
    let mut text = String::new();
    let mut kept = Vec::new();
    for i in from..to {
        let at = DAY + (i64::try_from(i).unwrap_or(0) * 104_729) % (72 * H);
        let port = if i % 4 == 0 { 443 } else { 80 };
        text.push_str(&format!(
            "{{\"at_ms\": {at}, \"src\": \"198.51.100.{}\", \"src_port\": {}, \"dst\": \"203.0.113.5\", \"dst_port\": {port}, \"protocol\": \"tcp\", \"url\": \"https://shop.example/{i}\"}}\n",
            i % 200,
            40_000 + i % 1000
        ));
        kept.push((at, port));
    }
    (text, kept)
}

/// The number of records a query for `[from, until)`, port 443, matched at `E`.
fn matched(net: &TestNet, from: i64, until: i64) -> u64 {
    let iso = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("time")
            .to_rfc3339()
    };
    let out = ok(net.cli(
        "ministry",
        &[
            "directive",
            "query",
            "--to",
            E,
            "--from",
            &iso(from),
            "--until",
            &iso(until),
            "--port",
            "443",
            "--wait",
            "--json",
            "--timeout",
            "30s",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let t = v["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["node"] == E))
        .cloned()
        .expect("target");
    assert!(
        t["result"]["source"]
            .as_str()
            .unwrap_or("")
            .contains("row groups read"),
        "answered from the partitions: {t}"
    );
    t["result"]["matched"].as_u64().expect("matched")
}

#[test]
fn a_query_reads_the_partitions_and_answers_what_a_scan_of_the_feed_finds() {
    let net = TestNet::generate(&Topology::uniform(&["44"], 1, 0), &Options::default());
    let node = net.node(E);
    let (first, mut all) = lines(0, 30_000);
    std::fs::write(node.dir.join("access.jsonl"), first).expect("feed");
    let text = std::fs::read_to_string(&node.config_path).expect("config");
    let (comment, rest) = text.split_once('\n').expect("header");
    std::fs::write(
        &node.config_path,
        format!(
            "{comment}\naccess_log = \"access.jsonl\"\n{rest}\n[access_logs]\ndir = \"access-logs\"\nretention_days = 3650\n"
        ),
    )
    .expect("config");
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();
    let partitions = node.dir.join("access-logs");
    eventually(T, "the feed ingested", || {
        std::fs::read_to_string(partitions.join("ingest.mark"))
            .ok()
            .filter(|m| m.trim() != "0")
    });
    let scan = |all: &[(i64, u32)], from: i64, until: i64| {
        all.iter()
            .filter(|(at, port)| *at >= from && *at < until && *port == 443)
            .count() as u64
    };
    let (from, until) = (DAY + 10 * H, DAY + 11 * H);
    let want = scan(&all, from, until);
    assert!(want > 0);
    assert_eq!(matched(&net, from, until), want);
    assert!(
        partitions
            .join("dt=2026-11-20/hour=10")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "an hour partition"
    );

    // Appended to the feed later: taken.
    let (more, extra) = lines(30_000, 40_000);
    std::fs::OpenOptions::new()
        .append(true)
        .open(node.dir.join("access.jsonl"))
        .and_then(|mut f| f.write_all(more.as_bytes()))
        .expect("append");
    all.extend(extra);
    let want = scan(&all, from, until);
    eventually(T, "the appended records taken", || {
        (matched(&net, from, until) == want).then_some(())
    });

    // A restart takes nothing twice; a whole day answers as the scan does.
    net.stop(E);
    net.spawn(E);
    net.wait_linked();
    assert_eq!(matched(&net, from, until), want);
    assert_eq!(
        matched(&net, DAY, DAY + 24 * H),
        scan(&all, DAY, DAY + 24 * H)
    );
}

#[test]
fn records_written_to_the_socket_are_stored_before_ok_and_bad_lines_are_refused() {
    use std::io::{BufRead, BufReader};
    let net = TestNet::generate(&Topology::uniform(&["44"], 1, 0), &Options::default());
    let node = net.node(E);
    let socket = node.dir.join("access.sock");
    let text = std::fs::read_to_string(&node.config_path).expect("config");
    let (comment, rest) = text.split_once('\n').expect("header");
    std::fs::write(
        &node.config_path,
        format!(
            "{comment}\naccess_log_socket = \"access.sock\"\n{rest}\n[access_logs]\ndir = \"access-logs\"\nretention_days = 3650\n"
        ),
    )
    .expect("config");
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();
    let stream = eventually(T, "the socket to listen", || {
        std::os::unix::net::UnixStream::connect(&socket).ok()
    });
    let (good, all) = lines(0, 5_000);
    let mut body: Vec<String> = good.lines().map(str::to_string).collect();
    body.insert(2_500, "{\"src\": \"not an address\"}".to_string());
    let mut writer = stream.try_clone().expect("clone");
    let sent = std::thread::spawn(move || {
        for line in body {
            writer.write_all(line.as_bytes()).expect("write");
            writer.write_all(b"\n").expect("write");
        }
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
    });
    let replies: Vec<String> = BufReader::new(stream)
        .lines()
        .map(|l| l.expect("reply"))
        .collect();
    sent.join().expect("sender");
    let stored: u64 = replies
        .iter()
        .filter_map(|r| r.strip_prefix("ok "))
        .map(|n| n.parse::<u64>().expect("count"))
        .sum();
    assert_eq!(stored, 5_000, "{replies:?}");
    let errors: Vec<&String> = replies.iter().filter(|r| r.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{replies:?}");
    assert!(errors[0].starts_with("error line 2501:"), "{errors:?}");
    // Stored before `ok`: a query finds every one of them at once.
    let (from, until) = (DAY + 10 * H, DAY + 11 * H);
    let want = all
        .iter()
        .filter(|(at, port)| *at >= from && *at < until && *port == 443)
        .count() as u64;
    assert!(want > 0);
    assert_eq!(matched(&net, from, until), want);

    // A line past 64 KiB ends the connection, saying so; nothing of it is stored.
    let mut long = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    long.write_all(&vec![b'x'; 70_000]).expect("write");
    long.write_all(b"\n").expect("write");
    let reply = BufReader::new(long)
        .lines()
        .next()
        .expect("a reply")
        .expect("reply");
    assert!(reply.contains("longer than 65536 bytes"), "{reply}");
    assert_eq!(matched(&net, from, until), want);
}

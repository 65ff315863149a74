//! Reading submissions: the documented shape, and its bad forms.

use super::*;

const GOOD: &str = r#"{
  "operator": { "name": "Pearl River IDC", "licence": "B1-20190001", "kinds": ["idc"] },
  "houses": [ { "id": "gz-1", "name": "Guangzhou 1", "province": "44",
                "ip_ranges": ["203.0.113.0/24"], "bandwidth_mbps": 10000 } ],
  "customers": [ { "id": "c1", "name": "Shop",
                   "domains": [ { "domain": "shop.example", "filing_number": "粤ICP备12345678号" } ] } ],
  "active": { "from": "2026-11-01T00:00:00+08:00", "until": "2026-12-01T00:00:00+08:00",
              "domains": ["shop.example"], "ips": ["203.0.113.7"], "ports": [443] }
}"#;

#[test]
fn the_documented_shape_reads() {
    let r = parse(GOOD.as_bytes()).expect("parses");
    assert_eq!(r.houses[0].ip_ranges, ["203.0.113.0/24"]);
    assert_eq!(r.customers[0].domains[0].filing_number, "粤ICP备12345678号");
    assert_eq!(r.active.as_ref().map(|a| a.ports.clone()), Some(vec![443]));
}

#[test]
fn wrong_types_unknown_fields_bad_times_and_huge_files_are_refused() {
    let cases = [
        (GOOD.replace("10000", "\"fast\""), "invalid type"),
        (GOOD.replace("\"kinds\"", "\"kind_of\""), "unknown field"),
        (
            GOOD.replace("2026-11-01T00:00:00+08:00", "November"),
            "RFC 3339",
        ),
        (GOOD.replace("[443]", "[70000]"), "invalid value"),
        ("[1, 2]".to_string(), "invalid type"),
        (
            GOOD.replace("2026-12-01T00:00:00+08:00", "2026-10-01T00:00:00+08:00"),
            "before",
        ),
    ];
    for (text, why) in cases {
        let e = parse(text.as_bytes()).expect_err(why);
        assert!(e.to_string().contains(why), "{e} / {why}");
    }
    let huge = vec![b' '; MAX_SUBMISSION_BYTES + 1];
    assert!(matches!(parse(&huge), Err(SubmissionError::TooLarge(_))));
}

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

const GOOD_CSV: &str = "\
# exported from the IDC's own system
operator,Pearl River IDC,B1-20190001,idc;isp
house,gz-1,Guangzhou 1,44,203.0.113.0/24;198.51.100.0/25,10000
domain,c1,Shop,shop.example,粤ICP备12345678号
domain,c1,Shop,blog.example,
domain,c2,\"Books, Ltd\",books.example,粤ICP备7号
active,2026-11-01T00:00:00+08:00,2026-12-01T00:00:00+08:00
active_domain,shop.example
active_ip,203.0.113.7
active_port,443
";

#[test]
fn the_csv_form_reads_as_the_json_form() {
    let r = parse(GOOD_CSV.as_bytes()).expect("parses");
    let o = r.operator.as_ref().expect("operator");
    assert_eq!(
        (o.name.as_str(), o.kinds.clone()),
        (
            "Pearl River IDC",
            vec!["idc".to_string(), "isp".to_string()]
        )
    );
    assert_eq!(r.houses[0].ip_ranges, ["203.0.113.0/24", "198.51.100.0/25"]);
    assert_eq!(r.houses[0].bandwidth_mbps, 10000);
    assert_eq!(
        r.customers.len(),
        2,
        "rows of one customer make one customer"
    );
    assert_eq!(r.customers[0].domains.len(), 2);
    assert_eq!(
        r.customers[0].domains[1].filing_number, "",
        "kept for the validation to flag"
    );
    assert_eq!(r.customers[1].name, "Books, Ltd");
    let a = r.active.as_ref().expect("active");
    assert_eq!(
        (a.ips.clone(), a.ports.clone()),
        (vec!["203.0.113.7".to_string()], vec![443])
    );
    let json = parse(GOOD.as_bytes()).expect("json");
    assert_eq!(json.active, parse(GOOD_CSV.as_bytes()).expect("csv").active);
}

#[test]
fn bad_csv_rows_are_refused_naming_their_line() {
    let cases = [
        (
            GOOD_CSV.replace(",10000", ",fast"),
            "line 3: bandwidth_mbps \"fast\"",
        ),
        (
            GOOD_CSV.replace("active_port,443", "active_port,70000"),
            "line 10: port",
        ),
        (
            GOOD_CSV.replace("house,gz-1,", "house,"),
            "line 3: a `house` row takes 6 fields; this one has 5",
        ),
        (
            GOOD_CSV.replace("active_ip", "activ_ip"),
            "line 9: unknown row \"activ_ip\"",
        ),
        (
            GOOD_CSV.replace("operator,Pearl", "# operator,Pearl"),
            "no `operator` row",
        ),
        (
            format!("{GOOD_CSV}operator,Again,B1-1\n"),
            "a second `operator` row",
        ),
        (
            GOOD_CSV.replace(
                "active,2026-11-01T00:00:00+08:00,2026-12-01T00:00:00+08:00\n",
                "",
            ),
            "without an `active` row",
        ),
        (
            GOOD_CSV.replace("2026-11-01T00:00:00+08:00", "November"),
            "RFC 3339",
        ),
        (
            "operator,\"unterminated\n".to_string(),
            "an `operator` row takes 3 or 4 fields",
        ),
    ];
    for (text, why) in cases {
        let e = parse(text.as_bytes()).expect_err(why);
        assert!(e.to_string().contains(why), "{e} / {why}");
    }
    let huge = [
        b"operator,a,b\n".as_slice(),
        &vec![b'#'; MAX_SUBMISSION_BYTES],
    ]
    .concat();
    assert!(matches!(parse(&huge), Err(SubmissionError::TooLarge(_))));
}

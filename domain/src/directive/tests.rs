//! Unit tests of `directive`.

use super::*;

#[test]
fn the_quick_domain_check_passes_only_what_the_full_check_accepts_unchanged() {
    // Every name of up to five characters from an alphabet of the cases that matter.
    let alphabet = ["a", "Z", "0", "-", ".", "*", " ", "_", "é"];
    let mut names = vec![String::new()];
    let mut passed = 0;
    for _ in 0..5 {
        names = names
            .iter()
            .flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}")))
            .collect();
        for name in &names {
            let Some(upper) = plain_domain(name.as_bytes()) else {
                // And every name already normal passes it: that is the blacklist's case.
                let normal = check_domain(name);
                assert!(
                    !matches!(normal, Ok(Cow::Borrowed(n)) if n == name),
                    "{name:?}"
                );
                continue;
            };
            passed += 1;
            let normal = check_domain(name).expect("the full check accepts it");
            assert_eq!(normal, name.to_ascii_lowercase(), "{name:?}");
            assert_eq!(upper, normal != *name, "{name:?}");
        }
    }
    assert!(passed > 300, "the quick check passed only {passed} names");
    let labels = |last: usize| {
        [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(last),
        ]
    };
    for long in [format!("{}.com", "a".repeat(63)), labels(61).join(".")] {
        assert_eq!(plain_domain(long.as_bytes()), Some(false), "{long}");
    }
    for too_long in [format!("{}.com", "a".repeat(64)), labels(62).join(".")] {
        assert_eq!(plain_domain(too_long.as_bytes()), None, "{too_long}");
        assert!(check_domain(&too_long).is_err(), "{too_long}");
    }
}

#[test]
fn rule_values_must_be_text() {
    let rule = |kind: RuleKind, value: &[u8]| Rule {
        kind: kind as i32,
        value: Bytes::copy_from_slice(value),
        op: 0,
    };
    for kind in [RuleKind::BlockDomain, RuleKind::Keyword, RuleKind::BlockUrl] {
        let err = normalise_rules(&[rule(kind, b"bad\xff.example")]).expect_err("not text");
        assert!(matches!(err, InputError::NotText(_)), "{err}");
    }
    let rules = [
        rule(RuleKind::BlockDomain, b"a.example"),
        rule(RuleKind::BlockDomain, b" B.example"),
    ];
    let normal = normalise_rules(&rules).expect("valid");
    assert_eq!(normal[0].value, rules[0].value);
    assert_eq!(normal[1].value, &b"b.example"[..]);
}

#[test]
fn domains() {
    assert_eq!(parse_domain("Example.COM.").as_deref(), Ok("example.com"));
    assert_eq!(
        parse_domain("*.bad.example").as_deref(),
        Ok("*.bad.example")
    );
    for bad in [
        "",
        "com",
        "exa mple.com",
        "-a.com",
        "a..com",
        "例子..com",
        "1.2.3.4",
        "a-.com",
        "a.com-",
        "a.-com",
        "a_b.com",
        "*.com",
        "*..a.com",
        &format!("{}.com", "a".repeat(64)),
        &format!("{}.com", "a.".repeat(130)),
    ] {
        assert!(parse_domain(bad).is_err(), "{bad:?} accepted");
    }
    assert!(parse_domain(&format!("{}.com", "a".repeat(63))).is_ok());
    // An internationalised name is kept as punycode, the form a resolver's zone holds.
    assert_eq!(
        parse_domain("例子.测试").as_deref(),
        Ok("xn--fsqu00a.xn--0zwm56d")
    );
    assert_eq!(
        parse_domain("Bücher.Example").as_deref(),
        Ok("xn--bcher-kva.example")
    );
    assert_eq!(parse_domain(" a-b.1x. ").as_deref(), Ok("a-b.1x"));
    assert!(
        matches!(
            parse_domain("already.normal"),
            Ok(Cow::Borrowed("already.normal"))
        ),
        "a normal name is not copied"
    );
}

#[test]
fn urls_and_ips() {
    assert!(parse_url("https://bad.example/path?q=1").is_ok());
    assert!(parse_url("ftp://bad.example/").is_err());
    assert!(parse_url("not a url").is_err());
    assert_eq!(parse_ip("203.0.113.7"), Ok("203.0.113.7".into()));
    assert_eq!(parse_ip("2001:db8::/32"), Ok("2001:db8::/32".into()));
    for bad in ["300.1.1.1", "1.2.3.4/33", "1.2.3.4/x", "host"] {
        assert!(parse_ip(bad).is_err(), "{bad:?} accepted");
    }
    // A prefix with host bits is refused, naming the network meant.
    let err = parse_ip("10.0.0.1/24").expect_err("host bits").to_string();
    assert!(
        err.contains("host bits") && err.contains("10.0.0.0/24"),
        "{err}"
    );
    assert!(parse_ip("2001:db8::1/32").is_err());
    assert_eq!(parse_ip("10.0.0.0/24"), Ok("10.0.0.0/24".into()));
    assert_eq!(parse_ip("0.0.0.0/0"), Ok("0.0.0.0/0".into()));
    // A 10 MB keyword is refused as too long.
    assert!(parse_keyword(&"k".repeat(10 << 20)).is_err());
}

#[test]
fn every_kind_has_a_listed_name() {
    for k in 1..=6 {
        assert!(KIND_NAMES.contains(&kind_name(k)), "kind {k}");
    }
    assert_eq!(kind_name(99), "unknown");
}

#[test]
fn keywords() {
    assert_eq!(parse_keyword("  赌博  "), Ok("赌博".into()));
    assert!(parse_keyword(" ").is_err());
    assert!(parse_keyword("a\u{7}b").is_err());
    assert!(parse_keyword(&"x".repeat(257)).is_err());
}

#[test]
fn rule_lists_are_non_empty_and_deduplicated() {
    assert_eq!(normalise_rules(&[]), Err(InputError::NoRules));
    let r = |v: &str| Rule {
        kind: RuleKind::BlockDomain as i32,
        value: Bytes::copy_from_slice(v.as_bytes()),
        op: 0,
    };
    let rules = normalise_rules(&[r("a.example"), r("b.example"), r("A.example")]).expect("valid");
    assert_eq!(
        rules,
        vec![r("a.example"), r("b.example")],
        "first kept, in order"
    );
    assert_eq!(
        count_distinct_rules(&[r("a.example"), r("b.example"), r("A.example.")]),
        Ok(2)
    );
    let err = normalise_rules(&[r("a.example"), r("-")]).expect_err("invalid");
    assert!(err.to_string().contains("two labels"), "{err}");
    let err = normalise_rules(&[r("A.123")]).expect_err("invalid");
    assert!(err.to_string().contains("numeric"), "{err}");
}

#[test]
fn targets_resolve_through_the_directory() {
    let n = |s: &str| s.parse::<NodeId>().expect("id");
    let dir = crate::identity::NodeMap::from_iter([
        (n("enterprise/a"), n("province/11")),
        (n("enterprise/b"), n("province/44")),
        (n("enterprise/c"), n("enterprise/c")),
    ]);
    let all = resolve_targets(&parse_targets(&["all"]).expect("p"), &dir).expect("r");
    assert_eq!(all.len(), 3);
    let some = resolve_targets(
        &parse_targets(&["province/44,enterprise/c"]).expect("p"),
        &dir,
    )
    .expect("r");
    assert_eq!(some.len(), 2);
    assert_eq!(
        resolve_targets(&parse_targets(&["enterprise/zz"]).expect("p"), &dir),
        Err(InputError::UnknownTarget("enterprise/zz".into()))
    );
    assert_eq!(
        resolve_targets(&parse_targets(&["province/31"]).expect("p"), &dir),
        Err(InputError::UnknownTarget("province/31".into()))
    );
    assert!(parse_targets(&["ministry"]).is_err());
    assert!(parse_targets(&["", ","]).is_err());
}

#[test]
fn an_operators_note_is_trimmed_bounded_and_a_reason_required() {
    assert_eq!(
        operator_note("  outside our remit ", "reason", true),
        Ok("outside our remit".into())
    );
    assert_eq!(
        operator_note(" \t ", "reason", true),
        Err(InputError::NoReason)
    );
    assert_eq!(operator_note("", "note", false), Ok(String::new()));
    let long = "长".repeat(MAX_NOTE_BYTES);
    assert_eq!(
        operator_note(&long, "note", false),
        Err(InputError::NoteTooLong("note", 3 * MAX_NOTE_BYTES))
    );
    assert!(operator_note(&"x".repeat(MAX_NOTE_BYTES), "reason", true).is_ok());
}

#[test]
fn rules_by_kind_at_issue() {
    let rule = |v: &str| Rule {
        kind: RuleKind::BlockDomain as i32,
        value: v.to_string().into(),
        op: RuleOp::Add as i32,
    };
    assert_eq!(
        issue_rules(DirectiveKind::Drill, &[]).expect("drill"),
        vec![]
    );
    assert_eq!(
        issue_rules(DirectiveKind::AccessLogQuery, &[rule("a.example")]).expect("query"),
        vec![]
    );
    assert!(
        issue_rules(DirectiveKind::Disposal, &[]).is_err(),
        "a takedown needs rules"
    );
    let e = issue_rules(DirectiveKind::Disposal, &[rule("bad..example")]).expect_err("bad");
    assert!(e.to_string().contains("bad..example"), "{e}");
    let twice = issue_rules(
        DirectiveKind::Drill,
        &[rule("a.example"), rule("a.example")],
    )
    .expect("drill");
    assert_eq!(twice.len(), 1, "a drill's rules are normalised like any");
}

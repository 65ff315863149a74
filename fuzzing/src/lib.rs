//! One harness per parser of outside input: each takes arbitrary bytes and
//! must return, with an error if the input is bad, never panic, hang or allocate without
//! bound. The cargo-fuzz targets (`fuzz/fuzz_targets`), the property tests below and the
//! regression corpus (`fuzz/regressions/<target>/`, run by `tests/regressions.rs` in CI)
//! all call these, so a crash found by fuzzing is a failing test until it is fixed.
//!
//! Must not: hold state between calls, or read or write files.

use std::path::Path;

use isms_proto::v1::{Batch, Directive, Frame, Rule, RuleKind, frame};
use prost::Message;

/// A harness: arbitrary bytes in, nothing out but a panic on a bug.
pub type Harness = fn(&[u8]);

/// Every target by name, as `fuzz/regressions/<name>/` and `cargo fuzz run <name>` call it.
pub const TARGETS: &[(&str, Harness)] = &[
    ("frame", frame),
    ("directive", directive),
    ("rules", rules),
    ("config", config),
    ("roster", roster),
    ("calendar", calendar),
    ("audit", audit),
    ("submission", submission),
];

/// The link's frame decoder: a frame from a peer, and a batch's envelopes (compressed
/// directives decompressed under their limit).
pub fn frame(data: &[u8]) {
    if let Ok(f) = Frame::decode(data)
        && let Some(frame::Body::Batch(b)) = f.body
    {
        let _ = b.decode_envelopes();
    }
    let batch = Batch {
        envelopes: vec![data.to_vec().into()],
        applied: 0,
    };
    let _ = batch.decode_envelopes();
}

/// A directive as a parent sends it: its shape, rules, query and correction checked as an
/// enterprise checks them.
pub fn directive(data: &[u8]) {
    let Ok(d) = Directive::decode(data) else {
        return;
    };
    let _ = isms_core::check_directive_shape(&d);
    let _ = isms_domain::directive::normalise_rules(&d.rules);
    let _ = isms_domain::directive::count_distinct_rules(&d.rules);
    if let Some(q) = &d.query {
        let _ = isms_domain::access_log::validate_query(q);
    }
    if let Some(c) = &d.correction {
        let _ = isms_domain::access_log::validate_correction(c);
    }
    let _ = isms_domain::directive::parse_targets(&d.scope);
}

/// Rules as an operator types them: each line a rule, its kind by the first byte
/// (domain, URL, IP or prefix, keyword), then its value.
pub fn rules(data: &[u8]) {
    let rules: Vec<Rule> = data
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let (kind, value) = line.split_first()?;
            let kind = match kind % 4 {
                0 => RuleKind::BlockDomain,
                1 => RuleKind::BlockUrl,
                2 => RuleKind::BlockIp,
                _ => RuleKind::Keyword,
            };
            Some(Rule {
                kind: kind as i32,
                value: value.to_vec().into(),
                op: 0,
            })
        })
        .collect();
    if let Ok(normal) = isms_domain::directive::normalise_rules(&rules) {
        // What is normal stays so.
        let again = isms_domain::directive::normalise_rules(&normal);
        assert_eq!(
            again.as_ref().ok(),
            Some(&normal),
            "normalising is not idempotent"
        );
    }
    let text = String::from_utf8_lossy(data);
    let targets: Vec<String> = text.split(',').map(str::to_string).collect();
    let _ = isms_domain::directive::parse_targets(&targets);
}

/// A node's configuration file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = isms_config::Config::parse(text, Path::new("/fuzz/config.toml"));
    }
}

/// The roster of operators and their roles.
pub fn roster(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = isms_operator::authz::Roster::parse(text, "fuzz");
    }
}

/// An enterprise's data as it submits it, JSON or CSV; what reads is validated as
/// a province would.
pub fn submission(data: &[u8]) {
    if let Ok(report) = isms_data::parse(data) {
        let _ = isms_data::validate(&report, &[], &isms_data::Rules::default());
    }
}

/// A working-day calendar file (named for the year it must hold).
pub fn calendar(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut calendar = isms_domain::calendar::Calendar::default();
        if calendar.add_text(Path::new("2026.toml"), text).is_ok() {
            let _ = calendar.years();
        }
    }
}

/// The audit trail's verifier over records as stored: each a length (u16, big-endian) and
/// that many bytes, numbered from 1.
pub fn audit(data: &[u8]) {
    let mut records = Vec::new();
    let mut rest = data;
    let mut seq = 0;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        seq += 1;
        records.push(Ok((seq, tail[..len].to_vec())));
        rest = &tail[len..];
    }
    let _ = isms_domain::audit_chain::verify(records);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn no_parser_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            for (_, target) in TARGETS {
                target(&data);
            }
        }

        #[test]
        fn rules_as_typed_never_panic_and_normalise_once(lines in proptest::collection::vec("[0-3][ -~]{0,40}", 0..8)) {
            rules(lines.join("\n").as_bytes());
        }

        #[test]
        fn configs_and_calendars_of_toml_shape_never_panic(
            key in "[a-z_]{1,12}",
            value in "[ -~]{0,30}",
        ) {
            let text = format!("{key} = \"{value}\"\n[tls]\nca = \"{value}\"\n");
            config(text.as_bytes());
            roster(format!("{key} = [\"{value}\"]\n").as_bytes());
            calendar(format!("year = 2026\n[[holidays]]\nfrom = \"{value}\"\nto = \"{value}\"\n").as_bytes());
        }
    }
}

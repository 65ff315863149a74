//! Per-rule cost of what every enterprise does with a blacklist it receives: decode the
//! envelope from the frame's buffer and count its distinct valid rules (bench/HISTORY.md,
//! "Rule values as slices of the frame"). `cargo run --release -p isms-domain --example
//! rule_check [rules] [rounds]`.

use std::time::{Duration, Instant};

use isms_proto::v1::{Batch, Directive, Envelope, Rule, RuleKind, envelope::Payload};
use prost::Message;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let rules = args.next().transpose()?.unwrap_or(50_000);
    let rounds = args.next().transpose()?.unwrap_or(100);
    // Names shaped as the load generator's (`isms-bench`), already normal as an issuer sends them.
    let directive = Directive {
        id: uuid::Uuid::now_v7().to_string(),
        rules: (0..rules)
            .map(|i| Rule {
                kind: RuleKind::BlockDomain as i32,
                value: format!("r{i}.bulk0.bench.example").into(),
                op: 0,
            })
            .collect(),
        ..Default::default()
    };
    let envelope = Envelope {
        seq: 1,
        payload: Some(Payload::Directive(directive)),
        ..Default::default()
    };
    let batch = Batch {
        envelopes: vec![envelope.encode_to_vec().into()],
        applied: 0,
    };
    for round in 0..3 {
        let (mut decode, mut check) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let start = Instant::now();
            let envelopes = batch.decode_envelopes()?;
            decode += start.elapsed();
            let start = Instant::now();
            let Some(Payload::Directive(d)) = &envelopes[0].payload else {
                anyhow::bail!("not a directive");
            };
            let distinct = isms_domain::directive::count_distinct_rules(&d.rules)?;
            check += start.elapsed();
            anyhow::ensure!(distinct == rules, "{distinct} distinct of {rules}");
        }
        let per_rule = |t: Duration| t.as_nanos() as f64 / (rounds * rules) as f64;
        println!(
            "round {round}: decode {:.1} ns, check {:.1} ns per rule ({rules} rules x {rounds})",
            per_rule(decode),
            per_rule(check)
        );
    }
    Ok(())
}

//! The versioned blacklist: per issuer, the block rules of its blacklist directives
//! not revoked, as a set with a canonical form and its SHA-256.
//!
//! Owns the fold (a directive's adds and deletes, a revocation) and the checksum every node
//! computes the same way: one line `kind\tvalue\n` per distinct rule, sorted by bytes.
//! Must not: read the store or decide who may change the list (the core does both).

use std::collections::{BTreeMap, BTreeSet};

use isms_proto::v1::{Directive, DirectiveKind, RuleOp};

use crate::directive::rule_kind_name;

/// A rule on the list: its kind and normalised value.
pub type Entry = (i32, Vec<u8>);

/// An issuer's blacklist with where each rule came from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Blacklist {
    /// Each rule and the directives that put it on the list; a rule leaves when its last
    /// directive is revoked or a delete names it.
    entries: BTreeMap<Entry, BTreeSet<String>>,
}

impl Blacklist {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one blacklist directive: a revocation takes its directive's rules off, a
    /// delete takes the rule off whoever added it, an add puts it on.
    pub fn apply(&mut self, d: &Directive) {
        if d.kind == DirectiveKind::Revocation as i32 {
            self.revoke(&d.revokes);
            return;
        }
        for rule in &d.rules {
            let entry = (rule.kind, rule.value.to_vec());
            if rule.op == RuleOp::Delete as i32 {
                self.entries.remove(&entry);
            } else {
                self.entries.entry(entry).or_default().insert(d.id.clone());
            }
        }
    }

    /// Adds one rule put on the list by `directive`.
    pub fn insert(&mut self, kind: i32, value: &[u8], directive: &str) {
        self.entries
            .entry((kind, value.to_vec()))
            .or_default()
            .insert(directive.to_string());
    }

    fn revoke(&mut self, directive: &str) {
        self.entries.retain(|_, from| {
            from.remove(directive);
            !from.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The rules and the directives each came from, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&Entry, &BTreeSet<String>)> {
        self.entries.iter()
    }

    /// SHA-256 of the canonical form.
    pub fn checksum(&self) -> [u8; 32] {
        checksum(self.entries.keys().map(|(k, v)| (*k, v.as_slice())))
    }

    /// Distinct rules per kind name.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for (kind, _) in self.entries.keys() {
            *counts.entry(rule_kind_name(*kind).to_string()).or_insert(0) += 1;
        }
        counts
    }
}

/// SHA-256 of a set of rules in canonical form: each distinct `kind\tvalue\n` line once,
/// sorted by bytes, whatever order and repetition they come in.
pub fn checksum<'a>(rules: impl IntoIterator<Item = (i32, &'a [u8])>) -> [u8; 32] {
    let lines: BTreeSet<Vec<u8>> = rules
        .into_iter()
        .map(|(kind, value)| {
            let name = rule_kind_name(kind).as_bytes();
            let mut line = Vec::with_capacity(name.len() + value.len() + 2);
            line.extend_from_slice(name);
            line.push(b'\t');
            line.extend_from_slice(value);
            line.push(b'\n');
            line
        })
        .collect();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for line in &lines {
        ctx.update(line);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The first bytes of a checksum in hex, as operators compare them.
pub fn short(sha256: &[u8]) -> String {
    sha256.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// A checksum in hex.
pub fn hex(sha256: &[u8]) -> String {
    sha256.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use isms_proto::v1::{Rule, RuleKind};

    fn rule(kind: RuleKind, value: &str, op: RuleOp) -> Rule {
        Rule {
            kind: kind as i32,
            value: value.as_bytes().to_vec().into(),
            op: op as i32,
        }
    }

    fn disposal(id: &str, rules: Vec<Rule>) -> Directive {
        Directive {
            id: id.into(),
            kind: DirectiveKind::Disposal as i32,
            rules,
            ..Default::default()
        }
    }

    #[test]
    fn the_checksum_is_of_the_sorted_distinct_lines() {
        let mut expected = ring::digest::Context::new(&ring::digest::SHA256);
        expected.update(b"domain\ta.example\ndomain\tb.example\nip\t10.0.0.0/8\n");
        let got = checksum([
            (RuleKind::BlockIp as i32, b"10.0.0.0/8".as_slice()),
            (RuleKind::BlockDomain as i32, b"b.example".as_slice()),
            (RuleKind::BlockDomain as i32, b"a.example".as_slice()),
            (RuleKind::BlockDomain as i32, b"a.example".as_slice()),
        ]);
        assert_eq!(got.as_slice(), expected.finish().as_ref());
        assert_ne!(got, checksum([]));
    }

    #[test]
    fn adds_deletes_and_revocations_fold_with_provenance() {
        let mut list = Blacklist::new();
        let empty = list.checksum();
        list.apply(&disposal(
            "d1",
            vec![
                rule(RuleKind::BlockDomain, "a.example", RuleOp::Add),
                rule(RuleKind::BlockIp, "10.0.0.0/8", RuleOp::Add),
            ],
        ));
        list.apply(&disposal(
            "d2",
            vec![rule(RuleKind::BlockDomain, "a.example", RuleOp::Add)],
        ));
        assert_eq!(list.len(), 2);
        let revoke_d1 = Directive {
            id: "r1".into(),
            kind: DirectiveKind::Revocation as i32,
            revokes: "d1".into(),
            ..Default::default()
        };
        list.apply(&revoke_d1);
        // a.example stays: d2 still puts it on the list.
        assert_eq!(list.len(), 1);
        assert_eq!(list.counts().get("domain"), Some(&1));
        list.apply(&disposal(
            "d3",
            vec![rule(RuleKind::BlockDomain, "a.example", RuleOp::Delete)],
        ));
        assert!(list.is_empty());
        assert_eq!(list.checksum(), empty);
    }

    #[test]
    fn the_same_rules_in_another_order_have_the_same_checksum() {
        let mut one = Blacklist::new();
        one.insert(RuleKind::Keyword as i32, b"x", "d1");
        one.insert(RuleKind::BlockDomain as i32, b"y.example", "d2");
        let mut two = Blacklist::new();
        two.insert(RuleKind::BlockDomain as i32, b"y.example", "d9");
        two.insert(RuleKind::Keyword as i32, b"x", "d8");
        assert_eq!(one.checksum(), two.checksum());
        assert_eq!(short(&one.checksum()).len(), 12);
        assert_eq!(hex(&one.checksum()).len(), 64);
    }
}

//! Directives in domain terms: validating and normalising rules and target selections, and
//! the per-target state order. Used by the CLI and by the node, so bad input is refused
//! before anything is stored.

use std::borrow::Cow;
use std::net::IpAddr;
use std::str::FromStr;

use isms_proto::v1::{DirectiveKind, Rule, RuleKind, RuleOp, TargetState};
use prost::bytes::Bytes;

use foldhash::HashSetExt;

use crate::identity::{NodeId, Tier};

/// Why a rule or a target selection is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Any other bad argument, saying what was wrong and what is expected.
    #[error("{0}")]
    Invalid(String),
    #[error("blacklist: {0}")]
    Blacklist(String),
    #[error("invalid domain {0:?}: {1}")]
    Domain(String, &'static str),
    #[error("invalid URL {0:?}: {1}")]
    Url(String, String),
    #[error("invalid IP address or prefix {0:?}: {1}")]
    Ip(String, &'static str),
    #[error("invalid prefix {0:?}: it has host bits set; the network is {1}")]
    HostBits(String, String),
    #[error("a directive needs at least one rule")]
    NoRules,
    #[error("too many rules: {0} (at most {MAX_RULES})")]
    TooManyRules(usize),
    #[error("a rule has no kind")]
    NoRuleKind,
    #[error("a {0} rule's value is not UTF-8 text")]
    NotText(&'static str),
    #[error("invalid keyword {0:?}: {1}")]
    Keyword(String, &'static str),
    #[error("invalid target {0:?}: expected `all`, `province/NN` or `enterprise/ID`")]
    Target(String),
    #[error("a directive needs at least one target")]
    NoTargets,
    #[error("unknown target {0}: not in this node's directory")]
    UnknownTarget(String),
    #[error("invalid directive ID {0:?}: expected a UUID")]
    Id(String),
    #[error("a return needs a reason (R-8.2)")]
    NoReason,
    #[error("a rejection needs a reason (O-6)")]
    NoRejectReason,
    #[error("the {0} is {1} bytes long; at most {MAX_NOTE_BYTES} are kept")]
    NoteTooLong(&'static str, usize),
    #[error(
        "a province cannot direct {0}: name the enterprises instead, and the request goes \
         to that province through the ministry as assistance (R-6.4)"
    )]
    OtherProvince(String),
    #[error("invalid access-log query: {0}")]
    Query(String),
    #[error("invalid data-correction demand: {0}")]
    Correction(String),
    #[error("cannot revoke {0}: no directive of that ID was issued here")]
    NotRevocable(String),
    #[error("the expiry time must lie after the effective time and in the future")]
    Expiry,
}

/// Longest reason or note an operator may attach to a decision: it travels up in every
/// status report of the directive's targets and stays in their records.
pub const MAX_NOTE_BYTES: usize = 4096;

/// An operator's reason (a return, R-8.2) or note (a correction done), trimmed: `what`
/// names it in the error. A reason that is `required` may not be empty.
pub fn operator_note(text: &str, what: &'static str, required: bool) -> Result<String, InputError> {
    let text = text.trim();
    if text.len() > MAX_NOTE_BYTES {
        return Err(InputError::NoteTooLong(what, text.len()));
    }
    if required && text.is_empty() {
        return Err(InputError::NoReason);
    }
    Ok(text.to_string())
}

/// Most rules one directive may carry (a national blacklist push is ~50,000).
pub const MAX_RULES: usize = 200_000;

/// Normalises a domain: lower case, ASCII (punycode for IDNs), 1-63-character labels of
/// letters, digits and inner hyphens, at least two labels; `*.` may lead. Borrowed when
/// already normal: an enterprise checks every rule of a 50,000-rule blacklist, almost
/// always normalised by the issuer, so a normal name is checked by [`plain_domain`] without
/// allocating, and only a name it does not pass takes the checks that say what is wrong.
pub fn parse_domain(input: &str) -> Result<Cow<'_, str>, InputError> {
    match plain_domain(input.as_bytes()) {
        Some(false) => Ok(Cow::Borrowed(input)),
        Some(true) => Ok(Cow::Owned(input.to_ascii_lowercase())),
        None => check_domain(input),
    }
}

/// [`parse_domain`] of a rule's value, which is bytes on the wire: a value that is not
/// UTF-8 is refused as such.
fn parse_domain_bytes(input: &[u8]) -> Result<Cow<'_, str>, InputError> {
    let text = || std::str::from_utf8(input).map_err(|_| InputError::NotText("domain"));
    match plain_domain(input) {
        Some(false) => Ok(Cow::Borrowed(text()?)),
        Some(true) => Ok(Cow::Owned(text()?.to_ascii_lowercase())),
        None => check_domain(text()?),
    }
}

/// Byte classes of a domain name, for [`plain_domain`]: one table lookup per byte in
/// place of a chain of range tests.
const UPPER: u8 = 1;
const OTHER: u8 = 2;
static DOMAIN_BYTE: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' => 0,
            b'A'..=b'Z' => UPPER,
            _ => OTHER,
        };
        b += 1;
    }
    t
};

/// Whether `name` is a valid domain as [`check_domain`] accepts it with nothing to trim
/// (`Some(has upper case)`), checked in two tight passes; `None` for anything else, valid
/// or not, which [`check_domain`] then decides. A blacklist's check is mostly this.
fn plain_domain(name: &[u8]) -> Option<bool> {
    let body = name.strip_prefix(b"*.").unwrap_or(name);
    let (first, last) = (body.first()?, body.last()?);
    if name.len() > 253 || !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return None;
    }
    let class = body.iter().fold(0, |c, &b| c | DOMAIN_BYTE[usize::from(b)]);
    if class & OTHER != 0 {
        return None;
    }
    let (mut labels, mut tld) = (0, &body[..0]);
    for label in body.split(|&b| b == b'.') {
        match label {
            [b'-', ..] | [.., b'-'] | [] => return None,
            l if l.len() > 63 => return None,
            l => (labels, tld) = (labels + 1, l),
        }
    }
    if labels < 2 || tld.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(class & UPPER != 0)
}

/// The full check of a domain name, saying what is wrong with it.
fn check_domain(input: &str) -> Result<Cow<'_, str>, InputError> {
    let bad = |why| InputError::Domain(input.to_string(), why);
    // Names from an issuer's node come trimmed; only the odd one pays for the trims.
    let d = match input.as_bytes() {
        [first, .., last] if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() => input,
        _ => input.trim().trim_end_matches('.'),
    };
    if d.is_empty() {
        return Err(bad("empty"));
    }
    if !d.is_ascii() {
        // An internationalised name is kept in its ASCII (punycode, xn--) form, the form
        // resolvers and RPZ zones hold; then checked like any other.
        let ascii =
            idna::domain_to_ascii(d).map_err(|_| bad("not a valid internationalised name"))?;
        return match check_domain(&ascii) {
            Ok(c) => Ok(Cow::Owned(c.into_owned())),
            Err(_) => Err(bad("not a valid internationalised name")),
        };
    }
    if d.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    let body = d.strip_prefix("*.").unwrap_or(d).as_bytes();
    if !body.contains(&b'.') {
        return Err(bad("needs at least two labels, e.g. example.com"));
    }
    let (mut label_len, mut numeric, mut upper, mut prev) = (0usize, true, false, b'.');
    for &b in body {
        if b == b'.' {
            if label_len == 0 {
                return Err(bad("each label is 1-63 characters"));
            }
            if prev == b'-' {
                return Err(bad("a label cannot start or end with a hyphen"));
            }
            (label_len, numeric) = (0, true);
        } else {
            if !(b.is_ascii_alphanumeric() || b == b'-') {
                return Err(bad("labels hold letters, digits and hyphens only"));
            }
            if b == b'-' && label_len == 0 {
                return Err(bad("a label cannot start or end with a hyphen"));
            }
            label_len += 1;
            if label_len > 63 {
                return Err(bad("each label is 1-63 characters"));
            }
            numeric &= b.is_ascii_digit();
            upper |= b.is_ascii_uppercase();
        }
        prev = b;
    }
    // `body` cannot end with a dot (trimmed above), so the last label is not empty.
    if prev == b'-' {
        return Err(bad("a label cannot start or end with a hyphen"));
    }
    if numeric {
        return Err(bad(
            "the top-level label cannot be numeric (use --block-ip)",
        ));
    }
    Ok(if upper {
        Cow::Owned(d.to_ascii_lowercase())
    } else {
        Cow::Borrowed(d)
    })
}

/// Normalises an http(s) URL with a host.
pub fn parse_url(input: &str) -> Result<String, InputError> {
    let bad = |why: String| InputError::Url(input.to_string(), why);
    let url = url::Url::parse(input.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("scheme must be http or https".into()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    Ok(url.to_string())
}

/// Normalises an IPv4/IPv6 address or CIDR prefix (`203.0.113.0/24`).
pub fn parse_ip(input: &str) -> Result<String, InputError> {
    let bad = |why| InputError::Ip(input.to_string(), why);
    let s = input.trim();
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip = IpAddr::from_str(addr).map_err(|_| bad("not an IPv4 or IPv6 address"))?;
    match len {
        None => Ok(ip.to_string()),
        Some(l) => {
            let l: u8 = l
                .parse()
                .map_err(|_| bad("prefix length is not a number"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if l > max {
                return Err(bad("prefix length too long"));
            }
            let network = network_of(ip, l);
            if network != ip {
                return Err(InputError::HostBits(
                    input.trim().to_string(),
                    format!("{network}/{l}"),
                ));
            }
            Ok(format!("{ip}/{l}"))
        }
    }
}

/// `ip` with the bits past a prefix of `len` cleared.
fn network_of(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

/// A keyword: 1-256 characters after trimming, no control characters.
pub fn parse_keyword(input: &str) -> Result<String, InputError> {
    let bad = |why| InputError::Keyword(input.to_string(), why);
    let k = input.trim();
    if k.is_empty() {
        return Err(bad("empty"));
    }
    if k.chars().count() > 256 {
        return Err(bad("longer than 256 characters"));
    }
    if k.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed"));
    }
    Ok(k.to_string())
}

/// A rule's normal value, borrowed from the rule when it is already normal.
fn rule_value(rule: &Rule) -> Result<Cow<'_, str>, InputError> {
    let text = || {
        std::str::from_utf8(&rule.value).map_err(|_| InputError::NotText(rule_kind_name(rule.kind)))
    };
    Ok(match RuleKind::try_from(rule.kind) {
        Ok(RuleKind::BlockDomain) => parse_domain_bytes(&rule.value)?,
        Ok(RuleKind::BlockUrl) => Cow::Owned(parse_url(text()?)?),
        Ok(RuleKind::BlockIp) => Cow::Owned(parse_ip(text()?)?),
        Ok(RuleKind::Keyword) => Cow::Owned(parse_keyword(text()?)?),
        Ok(RuleKind::Unspecified) | Err(_) => return Err(InputError::NoRuleKind),
    })
}

/// A stored rule's value as text, for display and the rules file: a node stores only rules
/// [`normalise_rules`] returned, so nothing is replaced but in a damaged store.
pub fn rule_text(rule: &Rule) -> Cow<'_, str> {
    String::from_utf8_lossy(&rule.value)
}

fn rule_op(rule: &Rule) -> i32 {
    RuleOp::try_from(rule.op).unwrap_or(RuleOp::Add) as i32
}

/// What a rule matches, as operators and the rules file name it.
pub fn rule_kind_name(kind: i32) -> &'static str {
    match RuleKind::try_from(kind) {
        Ok(RuleKind::BlockDomain) => "domain",
        Ok(RuleKind::BlockUrl) => "url",
        Ok(RuleKind::BlockIp) => "ip",
        Ok(RuleKind::Keyword) => "keyword",
        Ok(RuleKind::Unspecified) | Err(_) => "unknown",
    }
}

/// Every directive kind's name, for filters and errors.
pub const KIND_NAMES: [&str; 6] = [
    "disposal",
    "monitoring",
    "access_log_query",
    "data_correction",
    "revocation",
    "drill",
];

/// A directive kind as operators name it.
pub fn kind_name(kind: i32) -> &'static str {
    match DirectiveKind::try_from(kind) {
        Ok(DirectiveKind::Disposal) => "disposal",
        Ok(DirectiveKind::Monitoring) => "monitoring",
        Ok(DirectiveKind::AccessLogQuery) => "access_log_query",
        Ok(DirectiveKind::DataCorrection) => "data_correction",
        Ok(DirectiveKind::Revocation) => "revocation",
        Ok(DirectiveKind::Drill) => "drill",
        Ok(DirectiveKind::Unspecified) | Err(_) => "unknown",
    }
}

/// The rules a directive of `kind` is issued with, as the CLI, the console and the issuing
/// node each check them: none for a query or a correction (what they ask is elsewhere),
/// none needed for a drill, otherwise normalised (`normalise_rules`).
pub fn issue_rules(kind: DirectiveKind, rules: &[Rule]) -> Result<Vec<Rule>, InputError> {
    match kind {
        DirectiveKind::AccessLogQuery | DirectiveKind::DataCorrection => Ok(Vec::new()),
        DirectiveKind::Drill if rules.is_empty() => Ok(Vec::new()),
        _ => normalise_rules(rules),
    }
}

/// Validates and normalises a rule list: non-empty, bounded, duplicates dropped (a rule
/// named twice is one rule).
pub fn normalise_rules(rules: &[Rule]) -> Result<Vec<Rule>, InputError> {
    Ok(distinct_rules(rules)?
        .into_iter()
        .map(|(rule, value)| Rule {
            kind: rule.kind,
            // A value that came normal is kept as it came: a slice of the same frame.
            value: match value {
                Cow::Borrowed(v) if v.len() == rule.value.len() => rule.value.clone(),
                v => Bytes::from(v.into_owned()),
            },
            op: rule_op(rule),
        })
        .collect())
}

/// How many distinct rules [`normalise_rules`] would return, checked the same way, for a
/// caller that keeps no per-rule copy: one pass, no list of normal values.
pub fn count_distinct_rules(rules: &[Rule]) -> Result<usize, InputError> {
    check_rule_count(rules)?;
    let mut seen = Seen::new(rules.len());
    rules
        .iter()
        .try_fold(0, |n, r| Ok(n + usize::from(seen.first(r, rule_value(r)?))))
}

fn check_rule_count(rules: &[Rule]) -> Result<(), InputError> {
    match rules.len() {
        0 => Err(InputError::NoRules),
        n if n > MAX_RULES => Err(InputError::TooManyRules(n)),
        _ => Ok(()),
    }
}

/// The normal values seen so far, one set per (kind, op), almost always a single one, so
/// only the value is hashed; foldhash rather than SipHash: hashing was a fifth of a
/// blacklist's check.
struct Seen<T> {
    sets: Vec<((i32, i32), foldhash::HashSet<T>)>,
    capacity: usize,
}

impl<T: std::hash::Hash + Eq> Seen<T> {
    fn new(capacity: usize) -> Self {
        Self {
            sets: Vec::new(),
            capacity,
        }
    }

    /// Whether `value` is the first of its (kind, op) with that value.
    fn first(&mut self, rule: &Rule, value: T) -> bool {
        let class = (rule.kind, rule_op(rule));
        let i = match self.sets.iter().position(|(c, _)| *c == class) {
            Some(i) => i,
            None => {
                let set = foldhash::HashSet::with_capacity(self.capacity);
                self.sets.push((class, set));
                self.sets.len() - 1
            }
        };
        self.sets[i].1.insert(value)
    }
}

/// Each valid rule's normal value, the first of each (kind, op, value) only, in order.
fn distinct_rules(rules: &[Rule]) -> Result<Vec<(&Rule, Cow<'_, str>)>, InputError> {
    check_rule_count(rules)?;
    let normal = rules
        .iter()
        .map(|r| Ok((r, rule_value(r)?)))
        .collect::<Result<Vec<_>, InputError>>()?;
    let first: Vec<bool> = {
        let mut seen = Seen::new(normal.len());
        normal
            .iter()
            .map(|(r, v)| seen.first(r, v.as_ref()))
            .collect()
    };
    if first.iter().all(|f| *f) {
        return Ok(normal);
    }
    Ok(normal
        .into_iter()
        .zip(first)
        .filter_map(|(r, first)| first.then_some(r))
        .collect())
}

/// One element of `--to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSelection {
    All,
    Province(NodeId),
    Enterprise(NodeId),
}

impl FromStr for TargetSelection {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "all" {
            return Ok(TargetSelection::All);
        }
        let id: NodeId = s.parse().map_err(|_| InputError::Target(s.to_string()))?;
        match id.tier() {
            Tier::Province => Ok(TargetSelection::Province(id)),
            Tier::Enterprise => Ok(TargetSelection::Enterprise(id)),
            Tier::Ministry => Err(InputError::Target(s.to_string())),
        }
    }
}

/// Parses a comma list such as `province/44,enterprise/e0001`.
pub fn parse_targets<S: AsRef<str>>(items: &[S]) -> Result<Vec<TargetSelection>, InputError> {
    let mut out = Vec::new();
    for item in items {
        for part in item.as_ref().split(',') {
            if part.trim().is_empty() {
                continue;
            }
            out.push(part.parse()?);
        }
    }
    if out.is_empty() {
        return Err(InputError::NoTargets);
    }
    Ok(out)
}

/// Resolves selections to enterprise targets through `directory` (enterprise, route).
pub fn resolve_targets(
    selections: &[TargetSelection],
    directory: &crate::identity::NodeMap<NodeId>,
) -> Result<std::collections::BTreeSet<NodeId>, InputError> {
    let mut out = std::collections::BTreeSet::new();
    for sel in selections {
        match sel {
            TargetSelection::All => out.extend(directory.keys().cloned()),
            TargetSelection::Province(p) => {
                let before = out.len();
                let mut known = false;
                for (e, route) in directory {
                    if route == p {
                        known = true;
                        out.insert(e.clone());
                    }
                }
                if !known && before == out.len() {
                    return Err(InputError::UnknownTarget(p.to_string()));
                }
            }
            TargetSelection::Enterprise(e) => {
                if !directory.contains_key(e) {
                    return Err(InputError::UnknownTarget(e.to_string()));
                }
                out.insert(e.clone());
            }
        }
    }
    if out.is_empty() {
        return Err(InputError::NoTargets);
    }
    Ok(out)
}

/// The order a target's state only ever moves along. A relaying province goes
/// `queued` → `delivered` → `received` (waiting for its operator) → `confirmed` (and forwarded
/// at once, R-8.3) or `returned`; an emergency goes straight to `forwarded`. An
/// enterprise goes `queued` → `delivered` → `acknowledged` → `executed` or `failed`.
pub fn state_rank(s: TargetState) -> u8 {
    match s {
        TargetState::Unspecified => 0,
        TargetState::Queued => 1,
        TargetState::Delivered => 2,
        TargetState::Received => 3,
        TargetState::Confirmed => 4,
        TargetState::Forwarded => 5,
        TargetState::Acknowledged => 6,
        TargetState::Executed | TargetState::Failed | TargetState::Returned => 7,
        // An executed directive can still be revoked.
        TargetState::Revoked => 8,
    }
}

/// Whether a target moves from `current` to `next`: states only move forward, except that
/// a directive that failed to take effect and took effect on a retry becomes `executed`.
pub fn supersedes(next: TargetState, current: TargetState) -> bool {
    state_rank(next) > state_rank(current)
        || (current == TargetState::Failed && next == TargetState::Executed)
}

pub fn is_final(s: TargetState) -> bool {
    matches!(
        s,
        TargetState::Executed | TargetState::Failed | TargetState::Returned | TargetState::Revoked
    )
}

/// The state's name as operators see it.
pub fn state_name(s: TargetState) -> &'static str {
    match s {
        TargetState::Unspecified => "unknown",
        TargetState::Queued => "queued",
        TargetState::Delivered => "delivered",
        TargetState::Received => "received",
        TargetState::Confirmed => "confirmed",
        TargetState::Forwarded => "forwarded",
        TargetState::Acknowledged => "acknowledged",
        TargetState::Executed => "executed",
        TargetState::Failed => "failed",
        TargetState::Returned => "returned",
        TargetState::Revoked => "revoked",
    }
}

/// All state names in order, for tables and counts.
pub const STATE_NAMES: [&str; 10] = [
    "queued",
    "delivered",
    "received",
    "confirmed",
    "forwarded",
    "acknowledged",
    "executed",
    "failed",
    "returned",
    "revoked",
];

#[cfg(test)]
mod tests;

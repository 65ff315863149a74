//! The node's state machine: one thread owns every write to the store.
//!
//! Link sessions and the operator API send it [`Event`]s. It takes every event waiting in
//! its queue as one group (a small group waits `link.group_linger` for more), applies the
//! group's writes as one atomic batch, syncs the store once (group commit), and only then
//! replies, acknowledges to peers, and lets link writers see the new outbox entries. So
//! nothing is acknowledged or sent before it is durable, and a crash at any point leaves
//! either the whole group or none of it.
//!
//! Per link and direction (DESIGN.md "Links"): an outbox entry is written in the same batch
//! as the state change that caused it, with the next sequence number; an inbound envelope is
//! applied, or stored in the peer's inbox to apply later (`inbox`), in the same batch as the
//! new `applied` mark; a directive reaching a node twice (by its ID) is applied once; target
//! states only move forward, so a repeated status is harmless.
//!
//! Where each part lives: `event_loop` (the loop and group commit), `inbound` (the checks
//! on what arrives from a peer, and applying it), `issue` (an operator's directive), `approval` (four-eyes on major ones),
//! `delivery` (outboxes and acknowledgments), `status` (target states, reports upward),
//! `audit` (the audit trail) and `audit_keeping` (signed heads, retention), `blacklist`
//! (the versioned blacklist and its resync), `lookup` (stored state through the group's caches); by tier
//! `province`, `enterprise` and `clocks`; the records that keep it fast `fanout`,
//! `targets`, `inbox` and `recent`.
//!
//! Must not: open a socket or serve a request (`isms-transport` and `isms-operator` do,
//! and send events here), or let any other thread write the store.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use isms_proto::record::{
    ActiveRule, ActiveRules, AuditRecord, DirectiveMeta, DirectiveRef, OutboxEntry, QueuedTargets,
    StoredDirective, TargetRecord, outbox_entry,
};
use isms_proto::v1::{
    DecisionReply, Directive, DirectiveKind, Envelope, IssueReply, IssueRequest, Rule, RuleOp,
    StatusReport, TargetState, TargetStatus, Urgency, envelope::Payload,
};
use isms_store::{Store, Txn};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::error::NodeError;
use isms_domain::calendar::{Calendar, CalendarError};
use isms_domain::clock::Clock;
use isms_domain::directive::{self, InputError, state_rank};
use isms_domain::identity::{NodeId, NodeMap, NodeSet, Tier};
use isms_domain::records::{self, decode, encode};

pub mod error;
pub mod trace;

// The state machine, by what it does.
mod approval;
mod audit;
mod audit_keeping;
mod blacklist;
mod data;
mod delivered;
mod delivery;
mod event_loop;
mod handle;
mod inbound;
mod issue;
mod liveness;
mod lookup;
mod peers;
mod status;
// By tier, and the records that keep it fast.
mod clocks;
mod enterprise;
mod fanout;
mod inbox;
mod monitoring;
mod province;
mod querier;
mod recent;
mod reports;
mod results;
mod signing;
mod targets;

use audit::audit;
use clocks::clock_satisfied;
use lookup::store_directive;
use recent::Recent;

pub use approval::FourEyesPolicy;
pub use audit_keeping::{AuditKeeping, verify_chain};
pub use blacklist::{blacklist_lag, stored_blacklists};
pub use data::stored_data;
pub use enterprise::{EnforcementState, active_rules, enforcement_state, rules_checksum};
pub use fanout::stored_outbox;
pub use handle::{Caller, CoreHandle, Decision, Event};
pub use inbound::check_directive_shape;
pub use isms_domain::audit_chain::ChainBreak;
pub use isms_enforce::{Rule as RuleFileEntry, RuleFile};
pub use liveness::{LivenessChange, availability_history, stored_liveness};
pub use peers::{LinkStatus, OutboxTail, PeerState, Role, Shared, peer_statuses};
pub use querier::QueryAdapter;
pub use reports::{ReportAction, stored_contacts, stored_faults, stored_upgrades};
pub use results::result_verdicts;
pub use signing::{Tamper, TrustHandle};
pub use targets::{stored_monitor_hits, stored_query_results, stored_target, stored_targets};

/// What the core needs besides the shared state.
#[derive(Debug, Default)]
pub struct CoreOptions {
    /// The parent statuses go up to; none at the ministry.
    pub parent: Option<NodeId>,
    /// Enterprise: where the rules in force take effect (a file at least).
    pub points: Option<isms_enforce::Points>,
    /// The working-day calendar the regulation's clocks run on.
    pub calendar: Option<Arc<Calendar>>,
    /// Province: kinds confirmed on receipt without an operator.
    pub auto_confirm: Vec<DirectiveKind>,
    /// Enterprise: the access log (its feed) queries are answered from.
    pub access_log: Option<PathBuf>,
    /// Enterprise: where access-log queries are answered from, off the
    /// core's thread; none: the `access_log` feed itself.
    pub query_adapter: Option<QueryAdapter>,
    /// How long a small group waits, from its first event, for more to share its commit
    /// (`link.group_linger`). Zero commits at once.
    pub linger: std::time::Duration,
    /// Testing only (`testing.hold_issue_answers`): after a group that stored an issued
    /// directive is durable, the core stops before answering, so a test can kill the node
    /// between the commit and the answer.
    pub hold_issue_answers: bool,
    /// Four-eyes (O-6): which directives issued here wait for a second operator's
    /// approval. None: none do.
    pub four_eyes: Option<FourEyesPolicy>,
    /// Signing this node's audit heads, checking its children's, and the retention.
    pub keeping: AuditKeeping,
    /// The network's CA and revocation lists, to check directives' signatures with (an
    /// enterprise applies nothing unsigned). None: not checked (a core without node files).
    pub trust: Option<TrustHandle>,
    /// Testing only (`testing.tamper`): a province that tampers with what it relays.
    pub tamper: Option<signing::Tamper>,
    /// How long nodes' availability history is kept (`health.retention_days`).
    pub availability_retention_ms: i64,
    /// Province: the rules its enterprises' data is validated by (`[data_validation]`).
    pub data_rules: isms_data::Rules,
}

pub struct Core {
    shared: Arc<Shared>,
    tier: Tier,
    parent: Option<NodeId>,
    calendar: Option<Arc<Calendar>>,
    auto_confirm: Vec<DirectiveKind>,
    access_log: Option<PathBuf>,
    /// Enterprise: answers access-log queries on a thread of its own
    /// (`Event::QueryAnswered`); started with the core.
    querier: Option<querier::Querier>,
    query_adapter: Option<QueryAdapter>,
    next_seq: NodeMap<u64>,
    applied: NodeMap<u64>,
    acked: NodeMap<u64>,
    inboxes: inbox::Inboxes,
    fans: fanout::Fans,
    /// Issuer: provinces' acknowledgments as runs (`delivered`).
    delivered_runs: delivered::DeliveredRuns,
    /// Enterprise: the points the rules take effect at, converged on a thread of their own
    /// (`isms_enforce::Enforcer`), which answers with `Event::Enforced`; started with the
    /// core.
    points: Option<isms_enforce::Points>,
    enforcer: Option<isms_enforce::Enforcer>,
    /// Enterprise: when the access log is next read for monitoring hits.
    monitor_next: Option<std::time::Instant>,
    fatal: CancellationToken,
    linger: std::time::Duration,
    hold_issue_answers: bool,
    four_eyes: Option<FourEyesPolicy>,
    keeping: AuditKeeping,
    /// The audit chain's head (`audit`): read at start, lent to each group.
    audit: audit::AuditChain,
    /// The runtime a lingering group waits on; none outside one (then no linger).
    runtime: Option<tokio::runtime::Handle>,
    /// Decoded target blocks and directive metadata, lent to each group and kept across
    /// groups (see `Group`).
    caches: Option<(targets::Targets, Recent<String, Arc<DirectiveMeta>>)>,
    /// Issuer: its blacklist as its last version left it (`blacklist`), folded from the
    /// index when first needed.
    own_blacklist: Option<(u64, isms_domain::blacklist::Blacklist)>,
    /// Enterprise: what directives' signatures are checked against (`signing`).
    trust: Option<TrustHandle>,
    tamper: Option<signing::Tamper>,
    availability_retention_ms: i64,
    /// When the availability history was last pruned (`liveness`).
    availability_pruned_at: i64,
    data_rules: isms_data::Rules,
}

/// Directives whose metadata stays decoded; it never changes once written.
const CACHED_METAS: usize = 4096;

enum Reply {
    Inbound(
        oneshot::Sender<Result<u64, NodeError>>,
        Result<u64, NodeError>,
    ),
    Issue(
        oneshot::Sender<Result<IssueReply, NodeError>>,
        Result<IssueReply, NodeError>,
    ),
    Decide(
        oneshot::Sender<Result<DecisionReply, NodeError>>,
        Result<DecisionReply, NodeError>,
    ),
    Audited(oneshot::Sender<Result<(), NodeError>>),
    Reported(
        oneshot::Sender<Result<isms_proto::v1::ReportFaultReply, NodeError>>,
        Result<isms_proto::v1::ReportFaultReply, NodeError>,
    ),
    Exported(
        oneshot::Sender<Result<(u64, u64), NodeError>>,
        Result<(u64, u64), NodeError>,
    ),
    Verified(
        oneshot::Sender<Result<Vec<isms_proto::v1::BlacklistHeld>, NodeError>>,
        Result<Vec<isms_proto::v1::BlacklistHeld>, NodeError>,
    ),
}

/// Status updates headed up for one directive, coalesced within a group.
#[derive(Default)]
struct Upward {
    updates: BTreeMap<String, TargetStatus>,
    trace: HashMap<String, String>,
}

struct Group<'s> {
    txn: Txn<'s>,
    now: i64,
    replies: Vec<Reply>,
    upward: BTreeMap<String, Upward>,
    /// Directives executed once the rules file is written, before this group commits.
    rules_changed: Vec<String>,
    /// The rules file must be rewritten (a directive took effect or lapsed).
    rules_dirty: bool,
    /// Outbox entries written by this group, for the peers' tails once it is durable.
    outbox: Vec<(NodeId, Arc<OutboxEntry>, usize)>,
    /// Directive copies queued by this group, by directive, written at its end (`fanout`).
    copies: BTreeMap<String, Vec<(NodeId, Arc<OutboxEntry>)>>,
    /// Other entries queued by this group, by peer, written at its end (`fanout`): several
    /// for one peer become one outbox run.
    runs: BTreeMap<NodeId, Vec<Arc<OutboxEntry>>>,
    /// Directives this group stored (each new: both callers check first).
    new_directives: u64,
    /// Peers whose link marks this group must write (see `records::encode_marks`).
    marks: NodeSet,
    /// Peers whose link state (applied, acknowledged, queued, inbox) this group may have
    /// changed: the ones `publish` must tell. Those in `marks` and `outbox` join at the
    /// group's end.
    touched: NodeSet,
    /// Target-state blocks, as decoded before and as changed by this group, written at its
    /// end: the node's cache, lent to the group.
    targets: targets::Targets,
    /// Directive metadata, never changed once written: the node's cache, lent to the group.
    metas: Recent<String, Arc<DirectiveMeta>>,
    /// The audit chain's head as this group leaves it (lent by the core, given back).
    audit: audit::AuditChain,
}

impl<'s> Group<'s> {
    fn new(txn: Txn<'s>, now: i64) -> Self {
        Self::with_caches(
            txn,
            now,
            targets::Targets::default(),
            Recent::new(CACHED_METAS),
        )
    }

    fn with_caches(
        txn: Txn<'s>,
        now: i64,
        targets: targets::Targets,
        metas: Recent<String, Arc<DirectiveMeta>>,
    ) -> Self {
        Group {
            txn,
            now,
            replies: Vec::new(),
            upward: BTreeMap::new(),
            rules_changed: Vec::new(),
            rules_dirty: false,
            outbox: Vec::new(),
            copies: BTreeMap::new(),
            runs: BTreeMap::new(),
            new_directives: 0,
            marks: NodeSet::default(),
            touched: NodeSet::default(),
            targets,
            metas,
            audit: audit::AuditChain::default(),
        }
    }

    /// The record under `key` as this group sees it.
    fn read<M: prost::Message + Default>(&self, key: &[u8]) -> Result<Option<M>, NodeError> {
        Ok(match self.txn.get(key)? {
            Some(v) => Some(decode(key, &v)?),
            None => None,
        })
    }
}

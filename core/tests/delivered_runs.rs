//! Ranged acknowledgment at the issuer, in process: a province's acknowledgment of several
//! directives is one delivered run; each directive's record reads `delivered` with its
//! confirmation deadline from it, across a crash of the issuer; the run's clocks mark
//! each undecided one overdue once; its last clock retires it, and the records say the same
//! without it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use isms_core::{Core, CoreHandle, CoreOptions, Event, PeerState, Role, Shared};
use isms_domain::clock::FileClock;
use isms_domain::identity::NodeId;
use isms_domain::records;
use isms_proto::record::TargetRecord;
use isms_proto::v1::{IssueRequest, Rule, RuleKind, TargetState, Urgency};
use isms_store::Store;
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_795_000_000_000;
const HOUR: i64 = 3600 * 1000;

fn id(name: &str) -> NodeId {
    name.parse().expect("node id")
}

struct Ministry {
    core: CoreHandle,
    shared: Arc<Shared>,
    thread: std::thread::JoinHandle<()>,
    _fatal: CancellationToken,
}

impl Ministry {
    /// The ministry over `dir`, with provinces 11 and 44 as its children, on the clock in
    /// `clock`.
    fn start(dir: &std::path::Path, clock: &std::path::Path) -> Ministry {
        let provinces = [id("province/11"), id("province/44")];
        let mut directory: isms_domain::identity::NodeMap<NodeId> =
            provinces.iter().map(|p| (p.clone(), p.clone())).collect();
        directory.insert(id("enterprise/e1101"), id("province/11"));
        directory.insert(id("enterprise/e4401"), id("province/44"));
        let shared = Arc::new(Shared {
            node_id: NodeId::ministry(),
            store: Arc::new(Store::open(&dir.join("store")).expect("open")),
            peers: provinces
                .iter()
                .map(|c| (c.clone(), Arc::new(PeerState::new(c.clone(), Role::Child))))
                .collect(),
            directory,
            clock: Arc::new(FileClock::new(clock.to_path_buf())),
            started_at_ms: 0,
            failed: AtomicBool::new(false),
            directives: AtomicU64::new(0),
        });
        let fatal = CancellationToken::new();
        let (core, thread) =
            Core::start(shared.clone(), CoreOptions::default(), fatal.clone()).expect("core");
        Ministry {
            core,
            shared,
            thread,
            _fatal: fatal,
        }
    }

    async fn issue(&self, to: &str, urgency: Urgency) -> String {
        let request = IssueRequest {
            id: uuid::Uuid::now_v7().to_string(),
            to: vec![to.into()],
            urgency: urgency as i32,
            rules: vec![Rule {
                kind: RuleKind::BlockDomain as i32,
                value: b"blocked.example".to_vec().into(),
                op: 0,
            }],
            ..Default::default()
        };
        self.core
            .issue(request, isms_core::Caller::named("tester"))
            .await
            .expect("issued")
            .id
    }

    async fn send(&self, event: Event) {
        self.core.send(event).await.expect("queued");
    }

    fn target(&self, directive: &str, province: &str) -> TargetRecord {
        isms_core::stored_target(&self.shared.store, directive, "", province)
            .expect("read")
            .expect("a record")
    }

    fn count(&self, prefix: &[u8]) -> usize {
        self.shared.store.scan_prefix(prefix).count()
    }

    /// Polls until `f` holds of the store, for at most 10 s.
    async fn until(&self, what: &str, f: impl Fn(&Ministry) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn stop(self) {
        drop(self.core);
        self.thread.join().expect("core thread");
    }
}

fn state(rec: &TargetRecord) -> TargetState {
    TargetState::try_from(rec.state).expect("state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_acknowledgment_is_one_run_that_survives_a_crash_runs_its_clocks_and_retires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("clock");
    FileClock::write(&clock, T0).expect("clock");
    let ministry = Ministry::start(dir.path(), &clock);
    let urgent = [
        ministry.issue("province/44", Urgency::Urgent).await,
        ministry.issue("province/44", Urgency::Urgent).await,
    ];
    let emergency = ministry.issue("province/44", Urgency::Emergency).await;
    // A general requirement's clock counts working days, and this ministry has no calendar.
    let no_calendar = ministry.issue("province/44", Urgency::General).await;
    let elsewhere = ministry.issue("province/11", Urgency::Urgent).await;
    for d in urgent.iter().chain([&emergency, &no_calendar]) {
        let rec = ministry.target(d, "province/44");
        assert_eq!(state(&rec), TargetState::Queued, "{d}");
        assert_ne!(rec.outbox_seq, 0, "{d} keeps its copy's place");
    }

    // Province 44 holds its four copies, acknowledged in one go an hour later.
    FileClock::write(&clock, T0 + HOUR).expect("clock");
    ministry
        .send(Event::Acked {
            peer: id("province/44"),
            up_to: 4,
        })
        .await;
    ministry
        .until("the run", |m| m.count(records::DELIVERED_RUN_PREFIX) == 1)
        .await;
    // Two clock entries: the urgent pair's deadline and the one that retires the run.
    assert_eq!(ministry.count(records::DELIVERED_CLOCK_PREFIX), 2);
    let check = |m: &Ministry| {
        for d in &urgent {
            let rec = m.target(d, "province/44");
            assert_eq!(state(&rec), TargetState::Delivered, "{d}");
            assert_eq!(rec.delivered_at_ms, T0 + HOUR, "{d}");
            assert_eq!(rec.deadline_ms, T0 + 3 * HOUR, "{d}: 2 hours from delivery");
        }
        let rec = m.target(&emergency, "province/44");
        assert_eq!(state(&rec), TargetState::Delivered);
        assert_eq!(rec.deadline_ms, 0, "an emergency needs no confirmation");
        let rec = m.target(&no_calendar, "province/44");
        assert_eq!((state(&rec), rec.deadline_ms), (TargetState::Delivered, 0));
        assert!(
            rec.detail.starts_with("no confirmation clock: "),
            "the missing clock is said: {rec:?}"
        );
        assert_eq!(
            state(&m.target(&elsewhere, "province/11")),
            TargetState::Queued,
            "another province's acknowledgment says nothing of this one"
        );
    };
    check(&ministry);

    // A crash and a restart: the run is the store's, and says the same.
    ministry.stop();
    let ministry = Ministry::start(dir.path(), &clock);
    check(&ministry);

    // Before the deadline, nothing runs out; after it, each urgent copy is overdue once.
    FileClock::write(&clock, T0 + 2 * HOUR).expect("clock");
    ministry.send(Event::Tick).await;
    // An issue's answer comes after its group's commit: the tick before it is done.
    ministry.issue("province/11", Urgency::Urgent).await;
    for d in &urgent {
        assert_eq!(ministry.target(d, "province/44").overdue_at_ms, 0, "{d}");
    }
    assert_eq!(ministry.count(records::DELIVERED_RUN_PREFIX), 1);
    FileClock::write(&clock, T0 + 3 * HOUR + 1).expect("clock");
    ministry.send(Event::Tick).await;
    ministry
        .until("overdue", |m| {
            urgent
                .iter()
                .all(|d| m.target(d, "province/44").overdue_at_ms != 0)
        })
        .await;
    // Its last clock (the deadline, later than ten minutes after the run) retired it.
    ministry
        .until("the run to retire", |m| {
            m.count(records::DELIVERED_RUN_PREFIX) == 0
                && m.count(records::DELIVERED_CLOCK_PREFIX) == 0
        })
        .await;
    for d in &urgent {
        let rec = ministry.target(d, "province/44");
        assert_eq!(state(&rec), TargetState::Delivered, "{d}");
        assert_eq!(rec.overdue_at_ms, T0 + 3 * HOUR, "{d}");
        assert_eq!(rec.deadline_ms, T0 + 3 * HOUR, "{d}");
    }
    let rec = ministry.target(&emergency, "province/44");
    assert_eq!(
        (state(&rec), rec.delivered_at_ms, rec.overdue_at_ms),
        (TargetState::Delivered, T0 + HOUR, 0),
        "stored on the record as the run retired"
    );
    // Ticks after it raise nothing again.
    FileClock::write(&clock, T0 + 30 * HOUR).expect("clock");
    ministry.send(Event::Tick).await;
    ministry.send(Event::Tick).await;
    ministry.issue("province/11", Urgency::Urgent).await;
    let audit_overdue = ministry
        .shared
        .store
        .scan_prefix(records::AUDIT_PREFIX)
        .filter_map(Result::ok)
        .filter(|(_, v)| String::from_utf8_lossy(v).contains("directive.overdue"))
        .count();
    assert_eq!(audit_overdue, 2, "each urgent copy overdue once");
    ministry.stop();
}

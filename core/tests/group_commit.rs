//! Group commit, in process: many operator requests arriving together are made durable by
//! far fewer fsyncs than requests, and every one is answered only after its commit; a
//! request arriving after its group began waits into it (`link.group_linger`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isms_core::error::NodeError;
use isms_core::{Core, CoreHandle, CoreOptions, Event, PeerState, Role, Shared};
use isms_domain::clock::SystemClock;
use isms_domain::identity::NodeId;
use isms_proto::record::OutboxRun;
use isms_proto::v1::{IssueReply, IssueRequest, Rule, RuleKind};
use isms_store::Store;
use tokio_util::sync::CancellationToken;

/// A ministry's core with enterprises directly under it, on a fresh store; the
/// token is the node's stop.
fn ministry_core(
    dir: &std::path::Path,
    children: &[NodeId],
    options: CoreOptions,
) -> (
    CoreHandle,
    Arc<Shared>,
    std::thread::JoinHandle<()>,
    CancellationToken,
) {
    let shared = Arc::new(Shared {
        node_id: NodeId::ministry(),
        store: Arc::new(Store::open(dir).expect("open")),
        peers: children
            .iter()
            .map(|c| (c.clone(), Arc::new(PeerState::new(c.clone(), Role::Child))))
            .collect(),
        directory: children.iter().map(|c| (c.clone(), c.clone())).collect(),
        clock: Arc::new(SystemClock),
        started_at_ms: 0,
        failed: AtomicBool::new(false),
        directives: AtomicU64::new(0),
    });
    let fatal = CancellationToken::new();
    let (core, thread) = Core::start(shared.clone(), options, fatal.clone()).expect("core");
    (core, shared, thread, fatal)
}

/// Sends an operator's issue without waiting for the answer, which comes on the receiver.
async fn send_issue(
    core: &CoreHandle,
    name: &str,
) -> tokio::sync::oneshot::Receiver<Result<IssueReply, NodeError>> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    core.send(Event::Issue {
        request: Box::new(takedown(name)),
        caller: isms_core::Caller::named("tester"),
        reply,
    })
    .await
    .expect("queued");
    answer
}

/// Waits, bounded, until the core has taken every queued event into a group.
async fn taken(core: &CoreHandle) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while core.queued() > 0 {
        assert!(Instant::now() < deadline, "the core never took the request");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn takedown(name: &str) -> IssueRequest {
    takedown_to(name, "all")
}

fn takedown_to(name: &str, to: &str) -> IssueRequest {
    IssueRequest {
        id: uuid::Uuid::now_v7().to_string(),
        to: vec![to.into()],
        rules: vec![Rule {
            kind: RuleKind::BlockDomain as i32,
            value: name.as_bytes().to_vec().into(),
            op: 0,
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issues_share_fsyncs_and_all_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child: NodeId = "enterprise/e0001".parse().expect("id");
    let requests = 200;
    let (ids, syncs) = {
        let (core, shared, thread, _) = ministry_core(
            dir.path(),
            std::slice::from_ref(&child),
            CoreOptions::default(),
        );
        let store = shared.store.clone();
        drop(shared);
        let before = store.sync_count();
        let mut tasks = Vec::new();
        for i in 0..requests {
            let core = core.clone();
            tasks.push(tokio::spawn(async move {
                core.issue(
                    takedown(&format!("d{i}.example")),
                    isms_core::Caller::named("tester"),
                )
                .await
                .expect("issued")
                .id
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.expect("task"));
        }
        let syncs = store.sync_count() - before;
        drop(core);
        thread.join().expect("core thread");
        (ids, syncs)
    };
    assert!(syncs >= 1);
    assert!(
        syncs < requests,
        "{requests} concurrent issues took {syncs} fsyncs: no grouping"
    );
    // Everything answered is there after a reopen, each with its outbox entry (one each, or
    // in the run of entries its group queued for the child).
    // sled lets go of its file lock once its IO threads have run the closed store's last
    // writes, a moment after the core thread ends: polled, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let store = loop {
        match Store::open(dir.path()) {
            Ok(store) => break store,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("reopen: {e}; retrying");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    for id in &ids {
        let key = isms_domain::records::directive(id);
        assert!(store.get(&key).expect("get").is_some(), "{id} lost");
    }
    let mut seqs: Vec<u64> = store
        .scan_prefix(&isms_domain::records::outbox_prefix(&child))
        .map(|e| isms_domain::records::outbox_seq(&e.expect("read").0).expect("outbox key"))
        .collect();
    for entry in store.scan_prefix(isms_domain::records::OUTBOX_RUN_PREFIX) {
        let (key, value) = entry.expect("read");
        let run: OutboxRun = isms_domain::records::decode(&key, &value).expect("outbox run");
        assert_eq!(run.peer, child.as_str());
        seqs.extend(run.entries.iter().map(|e| e.seq));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=requests).collect::<Vec<_>>(), "each queued once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_group_waits_the_linger_for_more_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child: NodeId = "enterprise/e0001".parse().expect("id");
    // Long here, so that a slow machine cannot end it between the two requests.
    let options = CoreOptions {
        linger: Duration::from_secs(2),
        ..CoreOptions::default()
    };
    let (core, shared, thread, _) =
        ministry_core(dir.path(), std::slice::from_ref(&child), options);
    let before = shared.store.sync_count();
    let first = send_issue(&core, "a.example").await;
    // The second is sent only once the core has taken the first into a group: without the
    // linger it would have a group and a sync of its own.
    taken(&core).await;
    core.issue(takedown("b.example"), isms_core::Caller::named("tester"))
        .await
        .expect("second issued");
    first.await.expect("reply").expect("first issued");
    assert_eq!(shared.directives.load(Ordering::SeqCst), 2);
    assert_eq!(shared.store.sync_count() - before, 1, "both in one commit");
    drop(core);
    thread.join().expect("core thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_does_not_wait_out_a_linger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child: NodeId = "enterprise/e0001".parse().expect("id");
    // Far longer than the test may take: only the node's stop can end this wait.
    let options = CoreOptions {
        linger: Duration::from_secs(3600),
        ..CoreOptions::default()
    };
    let (core, shared, thread, fatal) =
        ministry_core(dir.path(), std::slice::from_ref(&child), options);
    let answer = send_issue(&core, "a.example").await;
    taken(&core).await;
    fatal.cancel();
    tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .expect("the group committed once the node began to stop")
        .expect("reply")
        .expect("issued");
    assert_eq!(shared.directives.load(Ordering::SeqCst), 1);
    drop(core);
    thread.join().expect("core thread");
}

/// After each group the core publishes the link state of the peers that group touched, and
/// only theirs: what a writer and a session read is right for every peer at every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_publishes_the_link_state_of_the_peers_it_touched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b): (NodeId, NodeId) = (
        "enterprise/e0001".parse().expect("id"),
        "enterprise/e0002".parse().expect("id"),
    );
    let (core, shared, thread, _) =
        ministry_core(dir.path(), &[a.clone(), b.clone()], CoreOptions::default());
    let out = |p: &NodeId| *shared.peers[p].durable_out.borrow();
    let acked = |p: &NodeId| shared.peers[p].acked.load(Ordering::SeqCst);

    // The answer comes after the publish: the queued copies are durable for `a` alone.
    for name in ["one.example", "two.example"] {
        core.issue(
            takedown_to(name, a.as_str()),
            isms_core::Caller::named("tester"),
        )
        .await
        .expect("issued");
    }
    assert_eq!((out(&a), out(&b)), (2, 0));

    // An acknowledgment that leaves entries in the outbox writes no marks; it is published
    // because its event touched the peer.
    core.acked(a.clone(), 1).await.expect("acked");
    core.issue(
        takedown_to("three.example", b.as_str()),
        isms_core::Caller::named("tester"),
    )
    .await
    .expect("issued");
    assert_eq!((out(&a), out(&b)), (2, 1));
    assert_eq!((acked(&a), acked(&b)), (1, 0));

    // Both at once: each is told its own number.
    core.issue(takedown("four.example"), isms_core::Caller::named("tester"))
        .await
        .expect("issued");
    assert_eq!((out(&a), out(&b)), (3, 2));
    assert_eq!((acked(&a), acked(&b)), (1, 0));

    drop(core);
    thread.join().expect("core thread");
}

/// Idempotent issuing: a call retried with the same ID (its answer lost) gets the same
/// directive and stores nothing new, before and after a restart; the same ID with other
/// content is refused as `AlreadyExists`, and nothing is stored for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_retried_with_its_id_is_the_same_directive_and_other_content_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child: NodeId = "enterprise/e0001".parse().expect("id");
    let first = takedown("once.example");
    let outbox_entries = |store: &Store| {
        store
            .scan_prefix(b"")
            .filter(|e| {
                e.as_ref().is_ok_and(|(k, _)| {
                    k.starts_with(b"o/") || k.starts_with(b"g/") || k.starts_with(b"f/")
                })
            })
            .count()
    };
    let (reply, entries) = {
        let (core, shared, thread, _) = ministry_core(
            dir.path(),
            std::slice::from_ref(&child),
            CoreOptions::default(),
        );
        let reply = core
            .issue(first.clone(), isms_core::Caller::named("tester"))
            .await
            .expect("issued");
        let entries = outbox_entries(&shared.store);
        let again = core
            .issue(first.clone(), isms_core::Caller::named("tester"))
            .await
            .expect("same");
        assert_eq!(again, reply);
        assert_eq!(
            outbox_entries(&shared.store),
            entries,
            "a retry queued a second copy"
        );
        let mut other = first.clone();
        other.rules[0].value = b"other.example".to_vec().into();
        match core.issue(other, isms_core::Caller::named("tester")).await {
            Err(NodeError::AlreadyExists(why)) => assert!(why.contains(&first.id), "{why}"),
            r => panic!("other content under the same ID: {r:?}"),
        }
        assert_eq!(shared.directives.load(Ordering::SeqCst), 1);
        drop((core, shared));
        thread.join().expect("core thread");
        (reply, entries)
    };
    let (core, shared, thread, _) = ministry_core(
        dir.path(),
        std::slice::from_ref(&child),
        CoreOptions::default(),
    );
    let after = core
        .issue(first.clone(), isms_core::Caller::named("tester"))
        .await
        .expect("same after restart");
    assert_eq!(after, reply);
    assert_eq!(outbox_entries(&shared.store), entries);
    drop((core, shared));
    thread.join().expect("core thread");
}

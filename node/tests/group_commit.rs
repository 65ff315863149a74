//! Group commit, in process: many operator requests arriving together are made durable by
//! far fewer fsyncs than requests, and every one is answered only after its commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use isms_node::clock::SystemClock;
use isms_node::core::{Core, CoreOptions, PeerState, Role, Shared};
use isms_node::identity::NodeId;
use isms_node::proto::record::OutboxRun;
use isms_node::proto::v1::{IssueRequest, Rule, RuleKind};
use isms_store::Store;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issues_share_fsyncs_and_all_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child: NodeId = "enterprise/e0001".parse().expect("id");
    let requests = 200;
    let (ids, syncs) = {
        let store = Arc::new(Store::open(dir.path()).expect("open"));
        let shared = Arc::new(Shared {
            node_id: NodeId::ministry(),
            store: store.clone(),
            peers: BTreeMap::from([(
                child.clone(),
                Arc::new(PeerState::new(child.clone(), Role::Child)),
            )]),
            directory: BTreeMap::from([(child.clone(), child.clone())]),
            clock: Arc::new(SystemClock),
            started_at_ms: 0,
            failed: AtomicBool::new(false),
            directives: AtomicU64::new(0),
        });
        let (core, thread) =
            Core::start(shared, CoreOptions::default(), CancellationToken::new()).expect("core");
        let before = store.sync_count();
        let mut tasks = Vec::new();
        for i in 0..requests {
            let core = core.clone();
            tasks.push(tokio::spawn(async move {
                let request = IssueRequest {
                    id: uuid::Uuid::now_v7().to_string(),
                    to: vec!["all".into()],
                    rules: vec![Rule {
                        kind: RuleKind::BlockDomain as i32,
                        value: format!("d{i}.example").into(),
                        op: 0,
                    }],
                    ..Default::default()
                };
                core.issue(request, "tester".into())
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
        let key = isms_node::records::directive(id);
        assert!(store.get(&key).expect("get").is_some(), "{id} lost");
    }
    let mut seqs: Vec<u64> = store
        .scan_prefix(&isms_node::records::outbox_prefix(&child))
        .map(|e| isms_node::records::outbox_seq(&e.expect("read").0).expect("outbox key"))
        .collect();
    for entry in store.scan_prefix(isms_node::records::OUTBOX_RUN_PREFIX) {
        let (key, value) = entry.expect("read");
        let run: OutboxRun = isms_node::records::decode(&key, &value).expect("outbox run");
        assert_eq!(run.peer, child.as_str());
        seqs.extend(run.entries.iter().map(|e| e.seq));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=requests).collect::<Vec<_>>(), "each queued once");
}

//! The network view's unit tests: silence judged, changes raised once, deltas up.

use super::*;

const I: i64 = 1_000;

fn beat(sent_at_ms: i64, rules_version: u64, below: Vec<NodeHealth>) -> Heartbeat {
    Heartbeat {
        own: Some(Health {
            version: "0.1.0".into(),
            rules_version,
            ..Health::default()
        }),
        below,
        full: false,
        sent_at_ms,
    }
}

fn states(view: &NetworkView) -> Vec<(String, Liveness)> {
    view.snapshot()
        .into_iter()
        .map(|h| (h.node.clone(), liveness_of(&h)))
        .collect()
}

fn changes(view: &NetworkView) -> Vec<(String, Liveness, Liveness)> {
    view.take_changes()
        .into_iter()
        .map(|c| (c.node, c.from, c.to))
        .collect()
}

#[test]
fn a_silent_child_goes_stale_then_down_and_back_up_each_change_once() {
    let e = "enterprise/e4401".to_string();
    let view = NetworkView::new("province/44", std::slice::from_ref(&e), I, vec![], 0);
    view.heard(&e, beat(100, 1, vec![]), 0);
    assert_eq!(
        changes(&view),
        [(e.clone(), Liveness::Unspecified, Liveness::Up)]
    );
    // Heard again: no change. Clock offset measured on arrival.
    view.heard(&e, beat(1_500, 1, vec![]), 1_000);
    assert!(changes(&view).is_empty());
    let h = view.snapshot().remove(0);
    assert_eq!(h.health.map(|h| h.clock_offset_ms), Some(500));
    for now in [1_500, 2_000, 3_999] {
        view.tick(now);
    }
    assert!(changes(&view).is_empty(), "not yet 3 intervals");
    view.tick(4_000);
    view.tick(5_000);
    assert_eq!(changes(&view), [(e.clone(), Liveness::Up, Liveness::Stale)]);
    view.tick(7_000);
    view.tick(8_000);
    assert_eq!(
        changes(&view),
        [(e.clone(), Liveness::Stale, Liveness::Down)]
    );
    view.heard(&e, beat(9_000, 1, vec![]), 9_000);
    assert_eq!(changes(&view), [(e.clone(), Liveness::Down, Liveness::Up)]);
}

#[test]
fn silence_within_an_announced_window_is_maintenance() {
    let e = "enterprise/e4401".to_string();
    let view = NetworkView::new("province/44", std::slice::from_ref(&e), I, vec![], 0);
    view.heard(&e, beat(0, 1, vec![]), 0);
    view.take_changes();
    view.set_windows(vec![Window {
        node: e.clone(),
        start_ms: 2_000,
        end_ms: 10_000,
    }]);
    view.tick(7_000);
    assert_eq!(
        changes(&view),
        [(e.clone(), Liveness::Up, Liveness::Maintenance)]
    );
    // Still silent once the window is over: down.
    view.tick(10_000);
    assert_eq!(
        changes(&view),
        [(e.clone(), Liveness::Maintenance, Liveness::Down)]
    );
}

#[test]
fn enterprises_under_a_province_that_is_not_up_are_unknown_in_one_step() {
    let p = "province/44".to_string();
    let view = NetworkView::new("ministry", std::slice::from_ref(&p), I, vec![], 0);
    let below: Vec<NodeHealth> = (1..=3)
        .map(|i| NodeHealth {
            node: format!("enterprise/e440{i}"),
            liveness: Liveness::Up as i32,
            since_ms: 10,
            health: Some(Health::default()),
            heard_at_ms: 10,
            parent: p.clone(),
        })
        .collect();
    view.heard(&p, beat(0, 0, below), 0);
    assert_eq!(
        changes(&view).len(),
        4,
        "the province and its three enterprises up"
    );
    assert!(states(&view).iter().all(|(_, l)| *l == Liveness::Up));
    view.tick(6_000);
    // One change raised, the province's; its enterprises are shown unknown.
    assert_eq!(changes(&view), [(p.clone(), Liveness::Up, Liveness::Down)]);
    let s = states(&view);
    assert_eq!(s.len(), 4);
    for (node, l) in s {
        let want = if node == p {
            Liveness::Down
        } else {
            Liveness::Unknown
        };
        assert_eq!(l, want, "{node}");
    }
    // A province may not speak for a child of the ministry's own.
    let view = NetworkView::new(
        "ministry",
        &[p.clone(), "enterprise/e9901".into()],
        I,
        vec![],
        0,
    );
    let claim = NodeHealth {
        node: "enterprise/e9901".into(),
        liveness: Liveness::Down as i32,
        ..Default::default()
    };
    view.heard(&p, beat(0, 0, vec![claim]), 0);
    assert!(
        !changes(&view)
            .iter()
            .any(|(n, _, _)| n == "enterprise/e9901")
    );
}

#[test]
fn a_heartbeat_carries_what_changed_since_the_last_one() {
    let e = "enterprise/e4401".to_string();
    let e2 = "enterprise/e4402".to_string();
    let view = NetworkView::new("province/44", &[e.clone(), e2.clone()], I, vec![], 0);
    view.heard(&e, beat(0, 1, vec![]), 0);
    view.heard(&e2, beat(0, 1, vec![]), 0);
    let (all, v) = view.changes_since(0, 100);
    assert_eq!(all.len(), 2);
    // The clock's jitter is not news; a new rule set is.
    view.heard(&e, beat(1_100, 1, vec![]), 1_000);
    assert_eq!(view.changes_since(v, 100).0.len(), 0);
    view.heard(&e2, beat(1_000, 2, vec![]), 1_000);
    let (changed, v2) = view.changes_since(v, 100);
    assert_eq!(
        changed.iter().map(|h| h.node.as_str()).collect::<Vec<_>>(),
        [e2.as_str()]
    );
    // Capped: the rest follow in the next heartbeat.
    let (first, v3) = view.changes_since(0, 1);
    assert_eq!(first.len(), 1);
    assert_eq!(view.changes_since(v3, 100).0.len(), 1);
    assert!(v2 > v);
}

#[test]
fn what_was_recorded_before_a_restart_is_where_it_starts_with_a_grace_period() {
    let e = "enterprise/e4401".to_string();
    let known = vec![Known {
        node: e.clone(),
        parent: "province/44".into(),
        liveness: Liveness::Down,
        since_ms: 5,
    }];
    let view = NetworkView::new("province/44", std::slice::from_ref(&e), I, known, 50_000);
    view.tick(52_000);
    assert!(
        changes(&view).is_empty(),
        "judged only after a silence period"
    );
    view.heard(&e, beat(52_500, 1, vec![]), 52_500);
    assert_eq!(changes(&view), [(e, Liveness::Down, Liveness::Up)]);
}

#[test]
fn a_clock_stepped_back_measures_silence_from_now() {
    let e = "enterprise/e4401".to_string();
    let view = NetworkView::new("province/44", std::slice::from_ref(&e), I, vec![], 0);
    view.heard(&e, beat(0, 1, vec![]), 100_000);
    view.take_changes();
    // The clock goes back 90 s: the heartbeat was heard "in the future".
    view.tick(10_000);
    view.tick(12_000);
    assert!(changes(&view).is_empty(), "not silent yet from the new now");
    view.tick(13_000);
    assert_eq!(changes(&view), [(e, Liveness::Up, Liveness::Stale)]);
}

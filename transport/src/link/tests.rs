//! Unit tests of `link`.

use super::writer::worth_sending;
use super::*;

fn cached(id: &str, encoded_len: usize) -> Cached {
    Cached {
        id: id.into(),
        body: Bytes::from(vec![0; encoded_len]),
        zstd: None,
        lean: None,
    }
}

#[test]
fn a_certificate_goes_whole_until_the_enterprise_acknowledged_it_then_by_its_hash() {
    use super::writer::CertificatesSent;
    let signed = |f: u8| Cached {
        lean: Some((Bytes::from_static(b"lean"), vec![[f; 32]])),
        ..cached("d", 10)
    };
    let mut sent = CertificatesSent::default();
    assert!(
        !sent.lean(&cached("plain", 10), 1, 0),
        "unsigned: nothing to make lean"
    );
    assert!(!sent.lean(&signed(1), 5, 4), "first copy: whole");
    assert!(
        !sent.lean(&signed(1), 6, 4),
        "not yet acknowledged: whole again"
    );
    assert!(sent.lean(&signed(1), 7, 5), "acknowledged: lean");
    assert!(
        !sent.lean(&signed(2), 8, 7),
        "another signer's certificate: whole"
    );
    // A new session knows nothing: whole again.
    assert!(!CertificatesSent::default().lean(&signed(1), 9, 8));
}

#[tokio::test]
async fn owed_acknowledgments_ride_on_batches_and_go_alone_when_due_or_many() {
    let mut ack = OwedAck::new(10, Duration::from_secs(3600), 40);
    assert!(!ack.owed(10));
    assert_eq!(ack.carry(10), 0, "nothing new to carry");
    assert!(!ack.alone_now(12), "a little is owed: wait for a batch");
    assert_eq!(ack.carry(12), 12, "the next batch carries it");
    assert!(!ack.owed(12) && !ack.alone_now(12));
    assert!(
        ack.alone_now(22),
        "a quarter of the window is owed: at once"
    );
    let mut now = OwedAck::new(0, Duration::ZERO, 8192);
    assert!(now.alone_now(1), "no delay: at once");
}

#[test]
fn a_held_back_window_sends_full_batches_and_never_stalls() {
    // (next, acked, top) with window 8,192 and batches of 512.
    let send = |next: u64, acked: u64, top: u64, window: u64, batch: u64| {
        let limit = top.min(acked + window).min(next + batch - 1);
        worth_sending(next, limit, top, acked, window, batch)
    };
    // Nothing held back: whatever is there goes at once, however little.
    assert!(send(11, 10, 12, 8192, 512));
    assert!(!send(13, 10, 12, 8192, 512), "nothing new to send");
    // A backlog beyond the window: a little room waits, a full batch goes.
    assert!(!send(8193, 10, 100_000, 8192, 512));
    assert!(send(8193, 600, 100_000, 8192, 512));
    // A window smaller than a batch still drains: half of it is enough.
    assert!(!send(101, 10, 100_000, 100, 512));
    assert!(send(101, 50, 100_000, 100, 512));
    assert!(
        send(2, 1, 100_000, 1, 512),
        "a window of one sends one at a time"
    );
}

#[test]
fn recent_directives_are_bounded_by_size_and_drop_the_oldest() {
    let mut recent = Recent::default();
    recent.insert(cached("a", RECENT_BYTES / 2));
    recent.insert(cached("b", RECENT_BYTES / 2));
    recent.insert(cached("b", RECENT_BYTES / 2));
    assert_eq!(recent.bytes, RECENT_BYTES, "a second copy counts once");
    recent.insert(cached("c", 10));
    assert!(recent.get("a").is_none(), "the oldest goes first");
    assert!(recent.get("b").is_some() && recent.get("c").is_some());
    assert_eq!(recent.bytes, RECENT_BYTES / 2 + 10);
    // One directive larger than the whole budget is still kept, alone.
    recent.insert(cached("huge", RECENT_BYTES * 2));
    assert_eq!(recent.order, ["huge"]);
    for i in 0..RECENT_DIRECTIVES + 5 {
        recent.insert(cached(&i.to_string(), 1));
    }
    assert_eq!(recent.by_id.len(), RECENT_DIRECTIVES);
    assert!(recent.get("4").is_none() && recent.get("5").is_some());
}

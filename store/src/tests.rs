//! Unit tests of this crate.

use super::*;

#[test]
fn txn_reads_its_own_writes_and_applies_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut base = store.txn();
    base.put(b"p/1".to_vec(), b"one".to_vec());
    base.put(b"p/2".to_vec(), b"two".to_vec());
    store.apply(base.into_writes()).expect("apply");

    let mut txn = store.txn();
    txn.delete(b"p/1".to_vec());
    txn.put(b"p/3".to_vec(), b"three".to_vec());
    assert_eq!(txn.get(b"p/1").expect("get"), None);
    let keys: Vec<_> = txn
        .scan_prefix(b"p/")
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![b"p/2".to_vec(), b"p/3".to_vec()]);
    // Not applied yet: the store still has the old view.
    assert_eq!(store.get(b"p/1").expect("get"), Some(b"one".to_vec()));
    store.apply(txn.into_writes()).expect("apply");
    assert_eq!(store.get(b"p/1").expect("get"), None);
    assert_eq!(store.get(b"p/3").expect("get"), Some(b"three".to_vec()));
}

#[test]
fn synced_writes_survive_reopen_including_blob_sized_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = vec![7u8; 1 << 20];
    // A value goes to pieces, but a key cannot: a 200 KiB key makes a blob.
    let big_key = vec![b'k'; 200 << 10];
    {
        let store = Store::open(dir.path()).expect("open");
        let before = store.sync_count();
        let mut txn = store.txn();
        txn.put(b"big".to_vec(), big.clone());
        txn.put(big_key.clone(), b"v".to_vec());
        txn.put(b"small".to_vec(), b"s".to_vec());
        store.apply(txn.into_writes()).expect("apply");
        store.sync().expect("sync");
        assert_eq!(store.sync_count(), before + 1);
        // The blob file, which sled itself never fsyncs: the sync must have found and
        // synced it.
        let synced = store.synced_blobs.lock().expect("lock").len();
        assert!(synced >= 1, "the blob file was not synced");
    }
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.get(b"big").expect("get"), Some(big));
    assert_eq!(store.get(&big_key).expect("get"), Some(b"v".to_vec()));
    assert_eq!(store.get(b"small").expect("get"), Some(b"s".to_vec()));
}

fn put(store: &Store, key: &[u8], value: &[u8]) {
    let mut txn = store.txn();
    txn.put(key.to_vec(), value.to_vec());
    store.apply(txn.into_writes()).expect("apply");
}

fn delete(store: &Store, key: &[u8]) {
    let mut txn = store.txn();
    txn.delete(key.to_vec());
    store.apply(txn.into_writes()).expect("apply");
}

/// The store's own entries: (keys listed as in pieces, pieces).
fn internals(store: &Store) -> (usize, usize) {
    let spilled = store
        .db
        .range(spilled_key(b"")..piece_key(0, 0).to_vec())
        .count();
    let pieces = store
        .db
        .range(piece_key(0, 0).to_vec()..FORMAT_KEY.to_vec())
        .count();
    (spilled, pieces)
}

fn all(store: &Store) -> Vec<Entry> {
    store.scan_prefix(b"").map(|e| e.expect("entry")).collect()
}

/// Distinct bytes, so a piece out of place shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn a_large_value_is_kept_in_pieces_and_leaves_none_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let first = pattern(2_000_000, 1);
    let second = pattern(700_000, 2);
    put(&store, b"d/a", b"before");
    put(&store, b"d/b", &first);
    put(&store, b"d/c", b"after");
    assert_eq!(store.get(b"d/b").expect("get"), Some(first.clone()));
    assert_eq!(internals(&store), (1, first.len().div_ceil(PIECE)));
    // Scans see the value, never the store's own entries, in both directions.
    let expected = vec![
        (b"d/a".to_vec(), b"before".to_vec()),
        (b"d/b".to_vec(), first.clone()),
        (b"d/c".to_vec(), b"after".to_vec()),
    ];
    assert_eq!(all(&store), expected);
    let back: Vec<Entry> = store
        .range(b"d/", b"d0")
        .rev()
        .map(|e| e.expect("entry"))
        .collect();
    assert_eq!(back, expected.iter().rev().cloned().collect::<Vec<_>>());
    // No leaf holds the value, so none is a blob and syncs need not list them.
    store.sync().expect("sync");
    assert_eq!(blob_files(dir.path()), 0);
    assert!(!store.large_applied.load(Ordering::SeqCst));

    // Replaced by a smaller large value: the old pieces go in the same batch.
    put(&store, b"d/b", &second);
    assert_eq!(store.get(b"d/b").expect("get"), Some(second.clone()));
    assert_eq!(internals(&store), (1, second.len().div_ceil(PIECE)));
    store.sync().expect("sync");
    drop(store);

    // Reopened, the store still knows the value is in pieces.
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.get(b"d/b").expect("get"), Some(second));
    put(&store, b"d/b", b"small now");
    assert_eq!(store.get(b"d/b").expect("get"), Some(b"small now".to_vec()));
    assert_eq!(internals(&store), (0, 0));
    put(&store, b"d/b", &first);
    delete(&store, b"d/b");
    assert_eq!(store.get(b"d/b").expect("get"), None);
    assert_eq!(internals(&store), (0, 0));
    assert_eq!(all(&store).len(), 2);
}

#[test]
fn values_that_look_like_the_stores_own_read_back_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let header_like = Header {
        len: 3,
        id: 0,
        count: 1,
    }
    .encode();
    let mut large_ff = vec![RESERVED; 1];
    large_ff.extend(pattern(50_000, 3));
    let edge = vec![RESERVED; INLINE_ENTRY - 1];
    let values: Vec<Vec<u8>> = vec![
        vec![],
        vec![RESERVED],
        vec![RESERVED, ESCAPED_TAG],
        vec![RESERVED, 9],
        header_like,
        large_ff,
        edge,
    ];
    for (i, v) in values.iter().enumerate() {
        put(&store, format!("v/{i}").as_bytes(), v);
    }
    store.sync().expect("sync");
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    for (i, v) in values.iter().enumerate() {
        let key = format!("v/{i}");
        assert_eq!(
            store.get(key.as_bytes()).expect("get").as_ref(),
            Some(v),
            "{key}"
        );
    }
    let scanned: Vec<Vec<u8>> = all(&store).into_iter().map(|(_, v)| v).collect();
    assert_eq!(scanned, values);
}

#[test]
fn the_stores_own_range_is_neither_writable_nor_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    put(&store, b"big", &pattern(100_000, 4));
    let mut txn = store.txn();
    txn.put(b"fine".to_vec(), b"1".to_vec());
    txn.put(vec![RESERVED, PIECE_TAG], b"mine".to_vec());
    match store.apply(txn.into_writes()) {
        Err(StoreError::ReservedKey { .. }) => {}
        other => panic!("expected ReservedKey, got {other:?}"),
    }
    // Refused whole: nothing of that batch was applied.
    assert_eq!(store.get(b"fine").expect("get"), None);
    assert_eq!(store.get(FORMAT_KEY).expect("get"), None);
    assert_eq!(store.scan_prefix(&[RESERVED]).count(), 0);
    assert_eq!(store.scan_prefix(&[RESERVED, RESERVED]).count(), 0);
    assert_eq!(store.range(b"", &[RESERVED, RESERVED]).count(), 1);
    assert_eq!(all(&store).len(), 1);
}

#[test]
fn a_store_from_before_the_value_format_is_converted_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = pattern(300_000, 5);
    let mut big_ff = vec![RESERVED];
    big_ff.extend(pattern(300_000, 6));
    {
        let store = Store::open(dir.path()).expect("open");
        // As an older store: raw values, no format mark.
        store.db.remove(FORMAT_KEY).expect("remove");
        store
            .db
            .insert(b"a", &[RESERVED, HEADER_TAG, 1][..])
            .expect("insert");
        store.db.insert(b"big", big.clone()).expect("insert");
        store.db.insert(b"big-ff", big_ff.clone()).expect("insert");
        store.db.insert(b"z", &b"plain"[..]).expect("insert");
        store.sync().expect("sync");
    }
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.db.get(FORMAT_KEY).expect("get").as_deref(),
        Some(&[FORMAT_PIECES][..])
    );
    assert_eq!(
        store.get(b"a").expect("get"),
        Some(vec![RESERVED, HEADER_TAG, 1])
    );
    assert_eq!(store.get(b"big").expect("get"), Some(big.clone()));
    assert_eq!(store.get(b"big-ff").expect("get"), Some(big_ff.clone()));
    assert_eq!(store.get(b"z").expect("get"), Some(b"plain".to_vec()));
    let pieces = big.len().div_ceil(PIECE) + big_ff.len().div_ceil(PIECE);
    assert_eq!(internals(&store), (2, pieces));

    // Stopped part way through the second step: two values moved, one not yet.
    let late = pattern(100_000, 8);
    store
        .db
        .insert(FORMAT_KEY, &[FORMAT_ESCAPED][..])
        .expect("insert");
    store.db.insert(b"late", late.clone()).expect("insert");
    store.sync().expect("sync");
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.get(b"big").expect("get"), Some(big));
    assert_eq!(store.get(b"big-ff").expect("get"), Some(big_ff));
    assert_eq!(store.get(b"late").expect("get"), Some(late.clone()));
    assert_eq!(internals(&store), (3, pieces + late.len().div_ceil(PIECE)));
}

#[test]
fn damage_and_newer_formats_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        store.db.insert(b"tag", &[RESERVED, 7][..]).expect("insert");
        store
            .db
            .insert(b"header", &[RESERVED, HEADER_TAG, 0][..])
            .expect("insert");
        put(&store, b"big", &pattern(20_000, 7));
        store.db.remove(piece_key(0, 1)).expect("remove");
        for key in [&b"tag"[..], b"header", b"big"] {
            match store.get(key) {
                Err(StoreError::Corrupt { .. }) => {}
                other => panic!("{key:?}: expected Corrupt, got {other:?}"),
            }
        }
        assert!(store.scan_prefix(b"").any(|e| e.is_err()));
        store.db.insert(FORMAT_KEY, &[9][..]).expect("insert");
        store.sync().expect("sync");
    }
    match Store::open(dir.path()) {
        Err(StoreError::NewerFormat { format: 9, .. }) => {}
        other => panic!("expected NewerFormat, got {other:?}"),
    }
}

#[test]
fn a_reader_sees_a_value_whole_while_it_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(Store::open(dir.path()).expect("open"));
    let versions: Vec<Vec<u8>> = (0..4)
        .map(|i| pattern(200_000 + i * 7_000, i as u8))
        .collect();
    put(&store, b"d/x", &versions[0]);
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, versions, done) = (store.clone(), versions.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !done.load(Ordering::SeqCst) || reads == 0 {
                match store.get(b"d/x").expect("get") {
                    Some(v) => assert!(versions.contains(&v), "a torn value"),
                    None => panic!("the key vanished"),
                }
                reads += 1;
            }
            reads
        })
    };
    for round in 0..200 {
        put(&store, b"d/x", &versions[round % versions.len()]);
    }
    done.store(true, Ordering::SeqCst);
    assert!(reader.join().expect("reader") > 0);
    assert_eq!(internals(&store).0, 1);
}

fn blob_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blobs")).map_or(0, |d| d.count())
}

#[test]
fn entries_within_the_bounds_never_make_blobs_so_syncs_skip_the_listing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    assert!(!store.large_applied.load(Ordering::SeqCst));
    // Leaves full of the largest entries kept inline, rewritten so sled consolidates them.
    for round in 0..4u8 {
        let mut txn = store.txn();
        for i in 0..64u32 {
            let key = format!("k/{i:04}").into_bytes();
            let value = vec![round; INLINE_ENTRY - key.len()];
            txn.put(key, value);
        }
        store.apply(txn.into_writes()).expect("apply");
        store.sync().expect("sync");
    }
    assert_eq!(blob_files(dir.path()), 0);
    assert!(!store.large_applied.load(Ordering::SeqCst));
    drop(store);
    // Reopened, it still knows every entry it holds is within the bounds.
    let store = Store::open(dir.path()).expect("reopen");
    assert!(!store.large_applied.load(Ordering::SeqCst));

    // A large value goes to pieces and keeps within the bounds.
    put(&store, b"large value", &[2u8; 2 << 20]);
    store.sync().expect("sync");
    assert_eq!(blob_files(dir.path()), 0);
    assert!(!store.large_applied.load(Ordering::SeqCst));

    assert_eq!(internals(&store), (1, 1 + (2 << 20) / PIECE));

    // One key over the bounds, and every sync from then on lists the blobs.
    let big_key = vec![b'k'; 200 << 10];
    put(&store, &big_key, b"v");
    store.sync().expect("sync");
    assert!(blob_files(dir.path()) >= 1);
    assert!(!store.synced_blobs.lock().expect("lock").is_empty());
    put(&store, b"small", b"s");
    store.sync().expect("sync");
    assert!(store.large_applied.load(Ordering::SeqCst));
    drop(store);

    // Reopened, it remembers, even once the large entry and its blob are gone.
    let store = Store::open(dir.path()).expect("reopen");
    assert!(store.large_applied.load(Ordering::SeqCst));
    assert!(!store.synced_blobs.lock().expect("lock").is_empty());
    delete(&store, &big_key);
    store.sync().expect("sync");
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert!(store.large_applied.load(Ordering::SeqCst));
}

#[test]
fn a_store_written_before_entry_sizes_were_checked_lists_its_blobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        put(&store, b"small", b"s");
        // As an older store: data, but no record of its entries having been checked.
        store.meta.remove(TRACKED_KEY).expect("remove");
        store.sync().expect("sync");
    }
    let store = Store::open(dir.path()).expect("reopen");
    assert!(store.large_applied.load(Ordering::SeqCst));
}

#[test]
fn a_second_open_of_the_same_store_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = Store::open(dir.path()).expect("open");
    match Store::open(dir.path()) {
        Err(StoreError::Locked(_)) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
}

//! A node's durable store: sled behind a narrow byte-oriented API, with an overlay
//! transaction for group processing and a sync that survives power loss, not only a crash.
//!
//! **Durability.** sled 0.34's `flush()` writes its log with `sync_file_range`, which neither
//! flushes the drive's cache nor the file's metadata, and it never fsyncs blob files (values
//! or pages over ~128 KiB). sled fsyncs on its own only every 500 ms. [`Store::sync`] therefore
//! follows the flush with `sync_data()` on the log file and on every blob file written since
//! the last sync, then fsyncs the blob directory. Listing that directory costs a group five
//! system calls and a 32 KiB allocation, so a store skips it until it has been given an
//! entry large enough that a page holding it could be written as a blob (below). Callers
//! make syncing cheap by group commit: the
//! node applies every event waiting in its queue as one atomic batch and syncs once for all
//! of them before it acknowledges any.
//!
//! The store knows nothing of the protocol: keys and values are bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// sled writes a page as a blob file only when its serialized size exceeds a quarter of a
/// log segment (512 KiB by default, so about 128 KiB). A leaf holds at most 17 entries (it
/// splits past 16) and an index node at most 257 keys, so entries under these bounds can
/// never make one: 17 × 7 KiB and 257 × 264 B both stay well under 128 KiB.
const BLOB_SAFE_ENTRY: usize = 7 << 10;
const BLOB_SAFE_KEY: usize = 256;
/// Where a store remembers, in a tree of its own, that it was once given such an entry (a
/// leaf written inline may still become a blob when sled rewrites it later, in any run), and
/// that it has checked every entry since it was created; a store that has not counts as
/// given one.
const META_TREE: &str = "isms-store";
const LARGE_KEY: &[u8] = b"large-entries";
const TRACKED_KEY: &[u8] = b"entry-sizes-tracked";

/// Errors of the store layer. Any of them means the node cannot promise durability and
/// must stop rather than acknowledge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store engine: {0}")]
    Engine(#[from] sled::Error),
    #[error("store file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store at {0} is in use by another process")]
    Locked(PathBuf),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A key-value pair read from the store.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The durable store of one node.
pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    log_file: File,
    /// Held for the store's lifetime: one process per store directory.
    _lock: File,
    /// Names of blob files already fsync'd, so each sync touches only new ones.
    synced_blobs: Mutex<BTreeSet<std::ffi::OsString>>,
    /// Whether the store was ever given an entry over the bounds above, so syncs must list
    /// the blob directory. Kept in `META_TREE` across runs.
    large_applied: AtomicBool,
    meta: sled::Tree,
    syncs: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        // Our own lock, taken before sled's, so a second node on the same directory gets a
        // clear error instead of sled's opaque one.
        let lock_path = dir.join("isms.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(dir.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let log_path = dir.join("db");
        let log_file = File::open(&log_path).map_err(io_err(&log_path))?;
        let meta = db.open_tree(META_TREE)?;
        if !meta.contains_key(TRACKED_KEY)? {
            if !db.is_empty() {
                // Written before entry sizes were checked: it may hold anything.
                meta.insert(LARGE_KEY, &[1u8][..])?;
            }
            meta.insert(TRACKED_KEY, &[1u8][..])?;
        }
        let large_applied = meta.contains_key(LARGE_KEY)?;
        let store = Store {
            db,
            dir: dir.to_path_buf(),
            log_file,
            _lock: lock,
            synced_blobs: Mutex::new(BTreeSet::new()),
            large_applied: AtomicBool::new(large_applied),
            meta,
            syncs: AtomicU64::new(0),
        };
        // The files sled just created must survive a power loss too.
        sync_dir(dir)?;
        store.sync()?;
        Ok(store)
    }

    /// Reads one value.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<Entry>> + '_ {
        self.db
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Into::into))
    }

    /// Entries with `from <= key < to`, in key order.
    pub fn range(
        &self,
        from: &[u8],
        to: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<Entry>> + '_ {
        self.db
            .range(from.to_vec()..to.to_vec())
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Into::into))
    }

    /// Applies the writes atomically: all of them are visible, or none. Not yet durable:
    /// call [`Store::sync`] before telling anyone they happened.
    pub fn apply(&self, writes: Writes) -> Result<()> {
        if writes.ops.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut large = false;
        for (k, v) in writes.ops {
            large |= k.len() > BLOB_SAFE_KEY
                || k.len() + v.as_ref().map_or(0, Vec::len) > BLOB_SAFE_ENTRY;
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        if large && !self.large_applied.load(Ordering::SeqCst) {
            // Before the batch, so no crash leaves the entry without the mark.
            self.meta.insert(LARGE_KEY, &[1u8][..])?;
            self.large_applied.store(true, Ordering::SeqCst);
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Makes everything applied so far durable against power loss (see the module docs).
    pub fn sync(&self) -> Result<()> {
        self.db.flush()?;
        let log_path = self.dir.join("db");
        self.log_file.sync_data().map_err(io_err(&log_path))?;
        self.sync_new_blobs()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn sync_new_blobs(&self) -> Result<()> {
        if !self.large_applied.load(Ordering::SeqCst) {
            return Ok(());
        }
        let blobs = self.dir.join("blobs");
        let entries = match std::fs::read_dir(&blobs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&blobs)(e)),
        };
        let mut synced = self
            .synced_blobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut present = BTreeSet::new();
        let mut any_new = false;
        for entry in entries {
            let entry = entry.map_err(io_err(&blobs))?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                let path = entry.path();
                match File::open(&path) {
                    Ok(f) => f.sync_data().map_err(io_err(&path))?,
                    // Garbage-collected by sled between listing and opening.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&path)(e)),
                }
                any_new = true;
            }
            present.insert(name);
        }
        if any_new {
            sync_dir(&blobs)?;
        }
        *synced = present;
        Ok(())
    }

    /// How many times [`Store::sync`] has completed: group commit shows as fewer syncs
    /// than committed events.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Starts an overlay transaction reading through to this store.
    pub fn txn(&self) -> Txn<'_> {
        Txn {
            store: self,
            writes: Writes::default(),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// A set of pending writes: `None` deletes the key. The last write to a key wins.
#[derive(Debug, Default)]
pub struct Writes {
    ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Writes {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many keys the writes touch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// Pending writes layered over the store: reads see the transaction's own writes first.
/// Nothing reaches the store until [`Txn::into_writes`] is applied, so a group of events
/// is committed atomically or not at all.
pub struct Txn<'s> {
    store: &'s Store,
    writes: Writes,
}

impl Txn<'_> {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.writes.ops.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.store.get(key),
        }
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.ops.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.ops.insert(key, None);
    }

    /// Entries under `prefix`, merging the store with this transaction's writes.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for entry in self.store.scan_prefix(prefix) {
            let (k, v) = entry?;
            merged.insert(k, v);
        }
        for (k, v) in self
            .writes
            .ops
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    pub fn store(&self) -> &Store {
        self.store
    }

    pub fn into_writes(self) -> Writes {
        self.writes
    }
}

#[cfg(test)]
mod tests {
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
    fn synced_writes_survive_reopen_including_blob_sized_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = vec![7u8; 1 << 20];
        {
            let store = Store::open(dir.path()).expect("open");
            let before = store.sync_count();
            let mut txn = store.txn();
            txn.put(b"big".to_vec(), big.clone());
            txn.put(b"small".to_vec(), b"s".to_vec());
            store.apply(txn.into_writes()).expect("apply");
            store.sync().expect("sync");
            assert_eq!(store.sync_count(), before + 1);
            // A 1 MiB value is stored as a blob file, which sled itself never fsyncs:
            // the sync must have found and synced it.
            let synced = store.synced_blobs.lock().expect("lock").len();
            assert!(synced >= 1, "the blob file was not synced");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.get(b"big").expect("get"), Some(big));
        assert_eq!(store.get(b"small").expect("get"), Some(b"s".to_vec()));
    }

    fn blob_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("blobs")).map_or(0, |d| d.count())
    }

    #[test]
    fn entries_within_the_bounds_never_make_blobs_so_syncs_skip_the_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert!(!store.large_applied.load(Ordering::SeqCst));
        // Leaves full of the largest entries allowed, rewritten so sled consolidates them.
        for round in 0..4u8 {
            let mut txn = store.txn();
            for i in 0..64u32 {
                let key = format!("k/{i:04}").into_bytes();
                let value = vec![round; BLOB_SAFE_ENTRY - key.len()];
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

        // One entry over the bounds, and every sync from then on lists the blobs.
        let mut txn = store.txn();
        txn.put(b"big".to_vec(), vec![1u8; 200 << 10]);
        store.apply(txn.into_writes()).expect("apply");
        store.sync().expect("sync");
        assert!(blob_files(dir.path()) >= 1);
        assert!(!store.synced_blobs.lock().expect("lock").is_empty());
        let mut txn = store.txn();
        txn.put(b"small".to_vec(), b"s".to_vec());
        store.apply(txn.into_writes()).expect("apply");
        store.sync().expect("sync");
        assert!(store.large_applied.load(Ordering::SeqCst));
        drop(store);

        // Reopened, it remembers, even once the large entry and its blob are gone.
        let store = Store::open(dir.path()).expect("reopen");
        assert!(store.large_applied.load(Ordering::SeqCst));
        assert!(!store.synced_blobs.lock().expect("lock").is_empty());
        let mut txn = store.txn();
        txn.delete(b"big".to_vec());
        store.apply(txn.into_writes()).expect("apply");
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
            let mut txn = store.txn();
            txn.put(b"small".to_vec(), b"s".to_vec());
            store.apply(txn.into_writes()).expect("apply");
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
}

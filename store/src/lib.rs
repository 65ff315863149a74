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
//! **Large values.** sled keeps a value inside its leaf, rewrites a leaf whole every ten or
//! so changes to it, and writes a leaf over ~128 KiB as a blob. A 2 MB blacklist stored
//! beside keys that change as reports come in was therefore rewritten, 2 MB at a time, by
//! its neighbours' updates. A value that would make its entry larger than
//! [`BLOB_SAFE_ENTRY`] is instead stored in pieces in a key range callers cannot write,
//! written once and removed once, and its key holds a short header.
//! No leaf then grows large enough to be a blob, and syncs skip the blob listing.
//!
//! **The reserved range.** Keys from `0xFF` up belong to the store: `FF 00 <key>` lists the
//! keys whose values are in pieces, `FF 01 <id> <index>` holds the pieces and `FF 02` the
//! value format. A value in the callers' range that starts with `0xFF` is the store's: `FF 00`
//! then the caller's value (one that itself starts with `0xFF`), or `FF 01` then a header.
//! Stores written before this format are converted when first opened.
//!
//! The store knows nothing of the protocol: keys and values are bytes.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

mod layout;
mod txn;

use layout::*;
pub use txn::{Txn, Writes};

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
    #[error("store key {key:?} starts with 0xFF, which the store keeps for itself")]
    ReservedKey { key: String },
    #[error("store entry {key:?} is corrupt: {why}")]
    Corrupt { key: String, why: &'static str },
    #[error("store at {path} was written by a newer version (value format {format})")]
    NewerFormat { path: PathBuf, format: u8 },
}

impl StoreError {
    fn corrupt(key: &[u8], why: &'static str) -> Self {
        StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            why,
        }
    }
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
    /// Held by [`Store::apply`], the only writer of pieces.
    writer: Mutex<Writer>,
}

/// What the writer knows of the pieces: which keys' values are in pieces (so it knows which
/// old pieces a write replaces without reading every key it writes) and the next piece ID.
/// IDs are never reused while the store is open, so a reader holding an old header never
/// finds another value's pieces under it.
struct Writer {
    spilled: HashSet<Vec<u8>>,
    next_id: u64,
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
        let db = open_sled(dir)?;
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
        let format = match db.get(FORMAT_KEY)? {
            None => escape_values(&db, dir)?,
            Some(f) => match *f {
                [f @ (FORMAT_ESCAPED | FORMAT_PIECES)] => f,
                [f] if f > FORMAT_PIECES => {
                    return Err(StoreError::NewerFormat {
                        path: dir.to_path_buf(),
                        format: f,
                    });
                }
                _ => {
                    return Err(StoreError::corrupt(
                        FORMAT_KEY,
                        "the value format is not a known one",
                    ));
                }
            },
        };
        let mut spilled = HashSet::new();
        for entry in db.range(spilled_key(b"")..piece_key(0, 0).to_vec()) {
            let (k, _) = entry?;
            spilled.insert(k[2..].to_vec());
        }
        let next_id = match db
            .range(piece_key(0, 0).to_vec()..FORMAT_KEY.to_vec())
            .next_back()
        {
            Some(entry) => {
                let (k, _) = entry?;
                let id: [u8; 8] = k
                    .get(2..10)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| StoreError::corrupt(&k, "a piece's key is cut short"))?;
                u64::from_be_bytes(id) + 1
            }
            None => 0,
        };
        let store = Store {
            db,
            dir: dir.to_path_buf(),
            log_file,
            _lock: lock,
            synced_blobs: Mutex::new(BTreeSet::new()),
            large_applied: AtomicBool::new(large_applied),
            meta,
            syncs: AtomicU64::new(0),
            writer: Mutex::new(Writer { spilled, next_id }),
        };
        if format < FORMAT_PIECES {
            store.move_large_values_to_pieces()?;
        }
        // The files sled just created must survive a power loss too.
        sync_dir(dir)?;
        store.sync()?;
        Ok(store)
    }

    /// Second step of converting an older store: its large values go to pieces, one per
    /// batch so no more than one is in memory. A crash part way leaves values each stored
    /// one way or the other, both readable, and the next open carries on.
    fn move_large_values_to_pieces(&self) -> Result<()> {
        let mut large = Vec::new();
        for entry in self.db.range(b"".to_vec()..CALLERS_END.to_vec()) {
            let (k, raw) = entry?;
            // The same test as `apply`'s, so what it puts back goes to pieces.
            if let Stored::Inline(v) = stored(&k, &raw)?
                && k.len() + v.len() > INLINE_ENTRY
            {
                large.push(k.to_vec());
            }
        }
        for k in large {
            if let Some(v) = self.get(&k)? {
                let mut writes = Writes::default();
                writes.ops.insert(k, Some(v));
                self.apply(writes)?;
            }
        }
        self.db.insert(FORMAT_KEY, &[FORMAT_PIECES][..])?;
        Ok(())
    }

    /// The caller's value from what is stored under `key`, reading its pieces if it has
    /// any; `None` if the key was removed while its pieces were being read.
    fn value(&self, key: &[u8], raw: sled::IVec) -> Result<Option<Vec<u8>>> {
        let mut raw = raw;
        loop {
            let header = match stored(key, &raw)? {
                Stored::Inline(v) => return Ok(Some(v.to_vec())),
                Stored::Pieces(h) => h,
            };
            if let Some(v) = self.read_pieces(header)? {
                return Ok(Some(v));
            }
            // A batch replaced or removed the value between reading its header and reading
            // its pieces (batches are atomic, the steps of a range read are not): read again.
            match self.db.get(key)? {
                None => return Ok(None),
                Some(now) if now == raw => {
                    return Err(StoreError::corrupt(key, "pieces of its value are missing"));
                }
                Some(now) => raw = now,
            }
        }
    }

    /// The pieces under `h` joined, or `None` if any is missing.
    fn read_pieces(&self, h: Header) -> Result<Option<Vec<u8>>> {
        let Ok(len) = usize::try_from(h.len) else {
            return Ok(None);
        };
        let mut v = Vec::with_capacity(len);
        let mut expected = 0u32;
        for entry in self
            .db
            .range(piece_key(h.id, 0).to_vec()..piece_key(h.id, h.count).to_vec())
        {
            let (k, piece) = entry?;
            if k[10..] != expected.to_be_bytes() {
                return Ok(None);
            }
            v.extend_from_slice(&piece);
            expected += 1;
        }
        Ok((expected == h.count && v.len() == len).then_some(v))
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads one value.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.db.get(key)? {
            Some(raw) if key.first() != Some(&RESERVED) => self.value(key, raw),
            _ => Ok(None),
        }
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<Entry>> + '_ {
        let from = prefix.to_vec();
        // The first key past every key with the prefix, or the end of the callers' range.
        let mut to = prefix.to_vec();
        while to.last() == Some(&u8::MAX) {
            to.pop();
        }
        match to.last_mut() {
            Some(last) => *last += 1,
            None => to = CALLERS_END.to_vec(),
        }
        self.entries(from, to)
    }

    /// Entries with `from <= key < to`, in key order.
    pub fn range(
        &self,
        from: &[u8],
        to: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<Entry>> + '_ {
        self.entries(from.to_vec(), to.to_vec())
    }

    fn entries(
        &self,
        from: Vec<u8>,
        to: Vec<u8>,
    ) -> impl DoubleEndedIterator<Item = Result<Entry>> + '_ {
        let to = to.min(CALLERS_END.to_vec());
        let from = from.min(to.clone());
        self.db.range(from..to).filter_map(move |r| {
            let (k, raw) = match r {
                Ok(e) => e,
                Err(e) => return Some(Err(e.into())),
            };
            self.value(&k, raw)
                .map(|v| v.map(|v| (k.to_vec(), v)))
                .transpose()
        })
    }

    /// Applies the writes atomically: all of them are visible, or none. Not yet durable:
    /// call [`Store::sync`] before telling anyone they happened.
    pub fn apply(&self, writes: Writes) -> Result<()> {
        if writes.ops.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer();
        let mut batch = sled::Batch::default();
        let mut large = false;
        let mut unspilled = Vec::new();
        let mut spilled = Vec::new();
        for (k, v) in writes.ops {
            if k.first() == Some(&RESERVED) {
                return Err(StoreError::ReservedKey {
                    key: String::from_utf8_lossy(&k).into_owned(),
                });
            }
            // A value can go to pieces; a key cannot.
            large |= k.len() > BLOB_SAFE_KEY;
            if writer.spilled.contains(&k) {
                self.remove_pieces(&k, &mut batch)?;
                batch.remove(spilled_key(&k));
                unspilled.push(k.clone());
            }
            match v {
                None => batch.remove(k),
                Some(v) if k.len() + v.len() > INLINE_ENTRY => {
                    let id = writer.next_id;
                    writer.next_id += 1;
                    let mut count = 0u32;
                    for piece in v.chunks(PIECE) {
                        batch.insert(&piece_key(id, count)[..], piece);
                        count += 1;
                    }
                    let header = Header {
                        len: v.len() as u64,
                        id,
                        count,
                    };
                    batch.insert(spilled_key(&k), &[][..]);
                    batch.insert(k.clone(), header.encode());
                    spilled.push(k);
                }
                Some(v) if v.first() == Some(&RESERVED) => batch.insert(k, escaped(&v)),
                Some(v) => batch.insert(k, v),
            }
        }
        if large && !self.large_applied.load(Ordering::SeqCst) {
            // Before the batch, so no crash leaves the entry without the mark.
            self.meta.insert(LARGE_KEY, &[1u8][..])?;
            self.large_applied.store(true, Ordering::SeqCst);
        }
        self.db.apply_batch(batch)?;
        for k in &unspilled {
            writer.spilled.remove(k);
        }
        writer.spilled.extend(spilled);
        Ok(())
    }

    /// Adds to `batch` the removal of the pieces `key`'s value is stored in now.
    fn remove_pieces(&self, key: &[u8], batch: &mut sled::Batch) -> Result<()> {
        let raw = self
            .db
            .get(key)?
            .ok_or_else(|| StoreError::corrupt(key, "listed as in pieces but absent"))?;
        match stored(key, &raw)? {
            Stored::Pieces(h) => {
                for i in 0..h.count {
                    batch.remove(&piece_key(h.id, i)[..]);
                }
                Ok(())
            }
            Stored::Inline(_) => Err(StoreError::corrupt(key, "listed as in pieces but inline")),
        }
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

    /// Bytes the store's files take (sled's, the log, large values' pieces).
    pub fn size_on_disk(&self) -> u64 {
        let mut total = 0;
        let mut todo = vec![self.dir.clone()];
        while let Some(dir) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                match e.metadata() {
                    Ok(m) if m.is_dir() => todo.push(e.path()),
                    Ok(m) => total += m.len(),
                    Err(_) => {}
                }
            }
        }
        total
    }

    /// Starts an overlay transaction reading through to this store.
    pub fn txn(&self) -> Txn<'_> {
        Txn {
            store: self,
            writes: Writes::default(),
        }
    }
}

/// Opens sled, waiting a moment for its lock on the log if need be. With `isms.lock` held no
/// other process has the store, but sled's thread pool may still be finishing a write for a
/// `Store` this process just dropped, and holds sled's lock until it has (sled's own tests
/// wait for it the same way).
fn open_sled(dir: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r.map_err(Into::into),
        }
    }
}

/// First step of converting a store written before the value format (or of setting up a new
/// one): values that start with `0xFF` are escaped, in one batch with the format mark, so a
/// crash leaves the store all converted or not at all. Returns the format reached.
fn escape_values(db: &sled::Db, dir: &Path) -> Result<u8> {
    if let Some(entry) = db.range(CALLERS_END.to_vec()..).next() {
        let (k, _) = entry?;
        return Err(StoreError::ReservedKey {
            key: String::from_utf8_lossy(&k).into_owned(),
        });
    }
    let format = if db.is_empty() {
        FORMAT_PIECES
    } else {
        FORMAT_ESCAPED
    };
    let mut batch = sled::Batch::default();
    for entry in db.iter() {
        let (k, v) = entry?;
        if v.first() == Some(&RESERVED) {
            batch.insert(k, escaped(&v));
        }
    }
    batch.insert(FORMAT_KEY, &[format][..]);
    db.apply_batch(batch)?;
    tracing::debug!(store = %dir.display(), format, "store value format set");
    Ok(format)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests;

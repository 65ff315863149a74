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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

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

/// The first byte of the store's own keys, and of values it wrote in place of the caller's.
const RESERVED: u8 = 0xFF;
/// Key `FF 00 <key>`: that key's value is in pieces. Value tag `FF 00`: the caller's value follows.
const SPILLED_TAG: u8 = 0;
const ESCAPED_TAG: u8 = 0;
/// Key `FF 01 <id> <index>`: a piece. Value tag `FF 01`: a header ([`Header`]) follows.
const PIECE_TAG: u8 = 1;
const HEADER_TAG: u8 = 1;
/// Key `FF 02`: how far the store's values are converted to this format.
const FORMAT_KEY: &[u8] = &[RESERVED, 2];
/// Values that start with `0xFF` are escaped.
const FORMAT_ESCAPED: u8 = 1;
/// ... and no value makes its entry larger than [`BLOB_SAFE_ENTRY`].
const FORMAT_PIECES: u8 = 2;
/// The size of a piece: with its 14-byte key, well within [`BLOB_SAFE_ENTRY`].
const PIECE: usize = 6 << 10;
/// A value goes to pieces when its entry would be larger than this (the 2 leaves room for
/// an escape tag).
const INLINE_ENTRY: usize = BLOB_SAFE_ENTRY - 2;

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

/// Where a value stored in pieces is: `len` bytes in `count` pieces under `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    len: u64,
    id: u64,
    count: u32,
}

impl Header {
    const SIZE: usize = 2 + 8 + 8 + 4;

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::SIZE);
        v.extend_from_slice(&[RESERVED, HEADER_TAG]);
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(&self.id.to_be_bytes());
        v.extend_from_slice(&self.count.to_be_bytes());
        v
    }

    /// Reads a header after its tag.
    fn decode(b: &[u8]) -> Option<Header> {
        if b.len() != Self::SIZE - 2 {
            return None;
        }
        Some(Header {
            len: u64::from_be_bytes(b[..8].try_into().ok()?),
            id: u64::from_be_bytes(b[8..16].try_into().ok()?),
            count: u32::from_be_bytes(b[16..].try_into().ok()?),
        })
    }
}

/// How a value is held under its key.
enum Stored<'a> {
    Inline(&'a [u8]),
    Pieces(Header),
}

fn stored<'a>(key: &[u8], raw: &'a [u8]) -> Result<Stored<'a>> {
    match raw {
        [RESERVED, ESCAPED_TAG, rest @ ..] => Ok(Stored::Inline(rest)),
        [RESERVED, HEADER_TAG, rest @ ..] => {
            Header::decode(rest).map(Stored::Pieces).ok_or_else(|| {
                StoreError::corrupt(key, "the header of a value in pieces is malformed")
            })
        }
        [RESERVED, ..] => Err(StoreError::corrupt(key, "unknown value tag")),
        _ => Ok(Stored::Inline(raw)),
    }
}

/// A caller's value that starts with `0xFF`, as stored.
fn escaped(value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + value.len());
    v.extend_from_slice(&[RESERVED, ESCAPED_TAG]);
    v.extend_from_slice(value);
    v
}

fn spilled_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + key.len());
    k.extend_from_slice(&[RESERVED, SPILLED_TAG]);
    k.extend_from_slice(key);
    k
}

fn piece_key(id: u64, index: u32) -> [u8; 14] {
    let mut k = [0u8; 14];
    k[0] = RESERVED;
    k[1] = PIECE_TAG;
    k[2..10].copy_from_slice(&id.to_be_bytes());
    k[10..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The end of the callers' range.
const CALLERS_END: &[u8] = &[RESERVED];

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
}

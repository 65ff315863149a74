//! Pending writes (`Writes`) and the overlay transaction (`Txn`) a group of events reads
//! and writes through before it is applied to the store as one atomic batch.

use std::collections::BTreeMap;

use crate::{Entry, Result, Store};

/// A set of pending writes: `None` deletes the key. The last write to a key wins.
#[derive(Debug, Default)]
pub struct Writes {
    pub(crate) ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
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
    pub(crate) store: &'s Store,
    pub(crate) writes: Writes,
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

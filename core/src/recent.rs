//! A bounded cache of recently used records for the core, kept across groups: two
//! generations of a hash map, the older dropped whole when the newer fills, so what a
//! directive in flight keeps asking for stays decoded and the rest ages out without a list.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;

// foldhash rather than SipHash: keys are our own block keys and directive IDs, hashed twice
// per lookup, and SipHash was 6-10% of a province's core thread in the throughput profile.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::hash::Hash;

pub(super) struct Recent<K, V> {
    new: HashMap<K, V>,
    old: HashMap<K, V>,
    /// Entries the newer generation holds before it becomes the older.
    capacity: usize,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    pub fn new(capacity: usize) -> Self {
        Recent {
            new: HashMap::default(),
            old: HashMap::default(),
            capacity: capacity.max(1),
        }
    }

    /// The value under `key`, moved into the newer generation if it was in the older.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.new.contains_key(key) {
            let (k, v) = self.old.remove_entry(key)?;
            self.new.insert(k, v);
        }
        self.new.get_mut(key)
    }

    /// The value under `key`, made by `make` if neither generation holds it.
    pub fn get_or_try_insert_with<E>(
        &mut self,
        key: K,
        make: impl FnOnce(&K) -> Result<V, E>,
    ) -> Result<&mut V, E> {
        let promoted = self.old.remove(&key);
        match self.new.entry(key) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let v = match promoted {
                    Some(v) => v,
                    None => make(e.key())?,
                };
                Ok(e.insert(v))
            }
        }
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.old.remove(&key);
        self.new.insert(key, value);
    }

    /// Ages the cache: once the newer generation is full it becomes the older, and what the
    /// older held is dropped. Called between groups, so nothing a group changed is dropped
    /// before it is written.
    pub fn age(&mut self) {
        if self.new.len() >= self.capacity {
            self.old = std::mem::take(&mut self.new);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.new.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_entries_survive_aging_and_old_ones_are_dropped() {
        let mut cache: Recent<String, u32> = Recent::new(2);
        cache.insert("a".into(), 1);
        cache.insert("b".into(), 2);
        cache.age(); // a, b are now the older generation
        assert_eq!(cache.get("a").copied(), Some(1)); // promoted
        cache.insert("c".into(), 3);
        cache.age(); // newer (a, c) becomes older; b is dropped
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.get("a").copied(), Some(1));
        assert_eq!(cache.get("c").copied(), Some(3));
        assert!(cache.len() <= 4, "two generations of at most two");
    }

    #[test]
    fn a_failed_make_leaves_nothing_and_a_hit_does_not_call_make() {
        let mut cache: Recent<String, u32> = Recent::new(8);
        let r: Result<&mut u32, &str> = cache.get_or_try_insert_with("x".into(), |_| Err("bad"));
        assert_eq!(r, Err("bad"));
        assert_eq!(cache.len(), 0);
        *cache
            .get_or_try_insert_with("x".into(), |_| Ok::<_, ()>(5))
            .expect("made") += 1;
        let v = cache
            .get_or_try_insert_with("x".into(), |_| -> Result<u32, ()> {
                panic!("a cached value is not made again")
            })
            .expect("hit");
        assert_eq!(*v, 6);
    }
}

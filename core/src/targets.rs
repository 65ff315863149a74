//! A directive's target states, kept in blocks (`records::target_block`): a group changes a
//! block in memory and writes it once at its end, so a province's report on 161 enterprises
//! costs the ministry eight rewritten records, not 161 new keys; blocks stay decoded across
//! groups while their directive is in flight.

type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

use isms_proto::record::{TargetBlock, TargetEntry};

use super::recent::Recent;
use super::*;

/// The child `node` is reached through here, or "" for this node's own peers and for nodes
/// it does not route to (itself, its parent, foreign enterprises).
pub fn via<'d>(directory: &'d NodeMap<NodeId>, node: &str) -> &'d str {
    directory
        .get(node)
        .map(NodeId::as_str)
        .filter(|route| *route != node)
        .unwrap_or("")
}

/// Decoded blocks, kept across groups (`Recent`): a directive's reports arrive over many
/// groups, and each used to read and decode the same blocks again. The cache mirrors the
/// store: only this module writes blocks, and a group that fails to commit stops the node.
pub(super) struct Targets {
    /// Each block's entries sorted by node, as they are stored.
    blocks: Recent<Vec<u8>, TargetBlock>,
    /// Blocks this group changed, written at its end.
    dirty: HashSet<Vec<u8>>,
}

/// Blocks kept decoded: a national directive is 8 blocks per child (248 at the ministry),
/// so this holds the blocks of every directive in flight at full pipelining.
const CACHED_BLOCKS: usize = 8192;

impl Default for Targets {
    fn default() -> Self {
        Targets::with_capacity(CACHED_BLOCKS)
    }
}

impl Targets {
    fn with_capacity(blocks: usize) -> Self {
        Targets {
            blocks: Recent::new(blocks),
            dirty: HashSet::default(),
        }
    }

    fn block(&mut self, txn: &Txn<'_>, key: Vec<u8>) -> Result<&mut TargetBlock, NodeError> {
        self.blocks.get_or_try_insert_with(key, |key| {
            let mut block: TargetBlock = match txn.get(key)? {
                Some(v) => decode(key, &v)?,
                None => TargetBlock::default(),
            };
            // Written sorted; sorting a sorted block is one pass.
            block.targets.sort_by(|a, b| a.node.cmp(&b.node));
            Ok(block)
        })
    }

    /// `node`'s record in block `key`, as this group sees it.
    pub fn get(
        &mut self,
        txn: &Txn<'_>,
        key: Vec<u8>,
        node: &str,
    ) -> Result<Option<TargetRecord>, NodeError> {
        let block = self.block(txn, key)?;
        Ok(block
            .targets
            .binary_search_by(|e| e.node.as_str().cmp(node))
            .ok()
            .map(|i| block.targets[i].record.clone().unwrap_or_default()))
    }

    /// Changes `node`'s record in block `key` in place (a default record if it has none):
    /// `change` returns `None` if it left the record as it was, and the block is then not
    /// rewritten. Saves `set_target`, called twice per enterprise per directive, a clone of
    /// the record and a second search of the block.
    pub fn update<T>(
        &mut self,
        txn: &Txn<'_>,
        key: Vec<u8>,
        node: &str,
        change: impl FnOnce(&mut TargetRecord) -> Option<T>,
    ) -> Result<Option<T>, NodeError> {
        // Marked changed only once read (a block that fails to decode is not in the cache),
        // and only by its first change in the group.
        let first_change = (!self.dirty.contains(&key)).then(|| key.clone());
        let block = self.block(txn, key)?;
        let changed = match block
            .targets
            .binary_search_by(|e| e.node.as_str().cmp(node))
        {
            Ok(i) => match &mut block.targets[i].record {
                Some(rec) => change(rec),
                // Left as stored unless changed, so the cache still mirrors the store.
                empty @ None => {
                    let mut rec = TargetRecord::default();
                    let changed = change(&mut rec);
                    if changed.is_some() {
                        *empty = Some(rec);
                    }
                    changed
                }
            },
            Err(i) => {
                let mut rec = TargetRecord::default();
                let changed = change(&mut rec);
                if changed.is_some() {
                    let entry = TargetEntry {
                        node: node.to_string(),
                        record: Some(rec),
                    };
                    block.targets.insert(i, entry);
                }
                changed
            }
        };
        if changed.is_some()
            && let Some(key) = first_change
        {
            self.dirty.insert(key);
        }
        Ok(changed)
    }

    pub fn put(
        &mut self,
        txn: &Txn<'_>,
        key: Vec<u8>,
        node: &str,
        rec: TargetRecord,
    ) -> Result<(), NodeError> {
        self.update(txn, key, node, |r| {
            *r = rec;
            Some(())
        })?;
        Ok(())
    }

    /// Writes the blocks this group changed into its batch, and ages the cache.
    pub fn write(&mut self, txn: &mut Txn<'_>) {
        for key in std::mem::take(&mut self.dirty) {
            // A changed block is in the newer generation: aging waits for this write.
            if let Some(block) = self.blocks.get(&key) {
                let bytes = encode(&*block);
                txn.put(key, bytes);
            }
        }
        self.blocks.age();
    }
}

fn decode_block(key: &[u8], bytes: &[u8]) -> Result<BTreeMap<String, TargetRecord>, NodeError> {
    let block: TargetBlock = decode(key, bytes)?;
    Ok(block
        .targets
        .into_iter()
        .map(|t| (t.node, t.record.unwrap_or_default()))
        .collect())
}

/// Every target record of a directive in the store, in no particular order.
pub fn stored_targets(
    store: &Store,
    directive_id: &str,
) -> Result<Vec<(String, TargetRecord)>, NodeError> {
    let mut out = Vec::new();
    for entry in store.scan_prefix(&records::target_blocks_prefix(directive_id)) {
        let (k, v) = entry?;
        out.extend(decode_block(&k, &v)?);
    }
    for (node, rec) in &mut out {
        super::delivered::resolve_stored(store, node, rec)?;
    }
    Ok(out)
}

/// The answers to an access-log query in the store, by target.
pub fn stored_query_results(
    store: &Store,
    directive_id: &str,
) -> Result<BTreeMap<String, isms_proto::v1::QueryResult>, NodeError> {
    by_node(store, &records::query_results_prefix(directive_id))
}

/// A monitoring directive's hits, by enterprise.
pub fn stored_monitor_hits(
    store: &Store,
    directive_id: &str,
) -> Result<BTreeMap<String, isms_proto::v1::MonitoringHits>, NodeError> {
    by_node(store, &records::monitor_hits_prefix(directive_id))
}

/// Records under `prefix`, each keyed by the node its key ends with.
fn by_node<M: prost::Message + Default>(
    store: &Store,
    prefix: &[u8],
) -> Result<BTreeMap<String, M>, NodeError> {
    let mut out = BTreeMap::new();
    for entry in store.scan_prefix(prefix) {
        let (k, v) = entry?;
        let node = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        out.insert(node, decode(&k, &v)?);
    }
    Ok(out)
}

/// One target's record in the store (`via` as [`via`] says).
pub fn stored_target(
    store: &Store,
    directive_id: &str,
    via: &str,
    node: &str,
) -> Result<Option<TargetRecord>, NodeError> {
    let key = records::target_block(directive_id, via, node);
    let mut rec = match store.get(&key)? {
        Some(v) => decode_block(&key, &v)?.remove(node),
        None => None,
    };
    if let Some(rec) = &mut rec {
        super::delivered::resolve_stored(store, node, rec)?;
    }
    Ok(rec)
}

/// Folds the per-target records of a store written before target blocks into blocks, in one
/// batch, synced before the node starts.
pub fn migrate(store: &Store, directory: &NodeMap<NodeId>) -> Result<u64, NodeError> {
    let mut txn = store.txn();
    let mut targets = Targets::default();
    let mut moved = 0u64;
    for entry in store.scan_prefix(records::LEGACY_TARGET_PREFIX) {
        let (k, v) = entry?;
        let rest = &k[records::LEGACY_TARGET_PREFIX.len()..];
        let Some(split) = rest.iter().position(|b| *b == 0) else {
            return Err(records::CorruptRecord::new(&k, "legacy target key without a node").into());
        };
        let (directive_id, node) = (
            String::from_utf8_lossy(&rest[..split]).into_owned(),
            String::from_utf8_lossy(&rest[split + 1..]).into_owned(),
        );
        let mut rec: TargetRecord = decode(&k, &v)?;
        if let Some(result) = rec.result.take() {
            txn.put(records::query_result(&directive_id, &node), encode(&result));
        }
        let key = records::target_block(&directive_id, via(directory, &node), &node);
        targets.put(&txn, key, &node, rec)?;
        txn.delete(k);
        moved += 1;
    }
    if moved > 0 {
        targets.write(&mut txn);
        store.apply(txn.into_writes())?;
        store.sync()?;
        tracing::info!(
            records = moved,
            "per-target records folded into target blocks"
        );
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: TargetState, at: i64) -> TargetRecord {
        TargetRecord {
            state: state as i32,
            updated_at_ms: at,
            ..TargetRecord::default()
        }
    }

    #[test]
    fn blocks_group_targets_by_child_and_read_back_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let p11: NodeId = "province/11".parse().expect("id");
        let mut directory = NodeMap::default();
        let enterprises: Vec<String> = (0..40).map(|i| format!("enterprise/e{i}")).collect();
        for e in &enterprises {
            directory.insert(e.parse::<NodeId>().expect("id"), p11.clone());
        }
        let d = "0190a1b2-0000-7000-8000-000000000001";
        let mut txn = store.txn();
        let mut targets = Targets::default();
        for (i, e) in enterprises.iter().enumerate() {
            let key = records::target_block(d, via(&directory, e), e);
            targets
                .put(&txn, key, e, rec(TargetState::Delivered, i as i64))
                .expect("put");
        }
        let key = records::target_block(d, via(&directory, p11.as_str()), p11.as_str());
        targets
            .put(&txn, key, p11.as_str(), rec(TargetState::Forwarded, 7))
            .expect("put");
        // A later change in the same group is seen by the group and written once.
        let e0 = &enterprises[0];
        let key = records::target_block(d, via(&directory, e0), e0);
        let mut r = targets
            .get(&txn, key.clone(), e0)
            .expect("get")
            .expect("e0");
        r.state = TargetState::Executed as i32;
        targets.put(&txn, key, e0, r).expect("put");
        targets.write(&mut txn);
        let writes = txn.into_writes();
        let blocks = writes.len();
        assert!(
            blocks <= 1 + records::TARGET_BUCKETS as usize,
            "{blocks} records for 41 targets"
        );
        store.apply(writes).expect("apply");
        store.sync().expect("sync");
        drop(store);

        let store = Store::open(dir.path()).expect("reopen");
        let all = stored_targets(&store, d).expect("scan");
        assert_eq!(all.len(), 41);
        let e0 = stored_target(&store, d, "province/11", &enterprises[0])
            .expect("read")
            .expect("e0 stored");
        assert_eq!(e0.state, TargetState::Executed as i32);
        let e5 = stored_target(&store, d, "province/11", &enterprises[5])
            .expect("read")
            .expect("e5 stored");
        assert_eq!(
            (e5.state, e5.updated_at_ms),
            (TargetState::Delivered as i32, 5)
        );
        let p = stored_target(&store, d, "", "province/11")
            .expect("read")
            .expect("province stored");
        assert_eq!(p.state, TargetState::Forwarded as i32);
        assert!(
            stored_target(
                &store,
                "0190a1b2-0000-7000-8000-000000000002",
                "",
                "province/11"
            )
            .expect("read")
            .is_none()
        );
    }

    #[test]
    fn blocks_stay_decoded_across_groups_and_each_group_writes_only_what_it_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let directory = NodeMap::default();
        let d = "0190a1b2-0000-7000-8000-000000000004";
        let nodes: Vec<String> = (0..40).map(|i| format!("enterprise/e{i}")).collect();
        let key = |n: &str| records::target_block(d, via(&directory, n), n);
        // A cache smaller than one group's blocks: aging waits until they are written.
        let mut targets = Targets::with_capacity(2);
        let mut txn = store.txn();
        for n in &nodes {
            targets
                .put(&txn, key(n), n, rec(TargetState::Delivered, 1))
                .expect("put");
        }
        targets.write(&mut txn);
        let writes = txn.into_writes();
        assert_eq!(
            writes.len(),
            records::TARGET_BUCKETS as usize,
            "every bucket written"
        );
        store.apply(writes).expect("apply");
        store.sync().expect("sync");

        // The next group changes one target: one block written, read from the cache or
        // the store alike.
        let mut txn = store.txn();
        let e3 = &nodes[3];
        let mut r = targets.get(&txn, key(e3), e3).expect("get").expect("e3");
        assert_eq!(r.state, TargetState::Delivered as i32);
        r.state = TargetState::Executed as i32;
        targets.put(&txn, key(e3), e3, r).expect("put");
        targets.write(&mut txn);
        let writes = txn.into_writes();
        assert_eq!(writes.len(), 1);
        store.apply(writes).expect("apply");
        store.sync().expect("sync");
        drop(targets);
        drop(store);

        let store = Store::open(dir.path()).expect("reopen");
        let all = stored_targets(&store, d).expect("scan");
        assert_eq!(all.len(), 40);
        let executed: Vec<&String> = all
            .iter()
            .filter(|(_, r)| r.state == TargetState::Executed as i32)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(executed, vec![e3]);
    }

    #[test]
    fn per_target_records_of_an_older_store_are_folded_into_blocks_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let d = "0190a1b2-0000-7000-8000-000000000003";
        let mut txn = store.txn();
        for (i, node) in ["enterprise/a", "enterprise/b", "province/11"]
            .iter()
            .enumerate()
        {
            let mut k = records::LEGACY_TARGET_PREFIX.to_vec();
            k.extend_from_slice(d.as_bytes());
            k.push(0);
            k.extend_from_slice(node.as_bytes());
            let mut r = rec(TargetState::Acknowledged, i as i64);
            if *node == "enterprise/a" {
                r.result = Some(isms_proto::v1::QueryResult {
                    matched: 3,
                    ..Default::default()
                });
            }
            txn.put(k, encode(&r));
        }
        store.apply(txn.into_writes()).expect("apply");
        let directory = NodeMap::default();
        assert_eq!(migrate(&store, &directory).expect("migrate"), 3);
        assert_eq!(migrate(&store, &directory).expect("again"), 0);
        assert_eq!(store.scan_prefix(records::LEGACY_TARGET_PREFIX).count(), 0);
        let b = stored_target(&store, d, "", "enterprise/b")
            .expect("read")
            .expect("b folded");
        assert_eq!(
            (b.state, b.updated_at_ms),
            (TargetState::Acknowledged as i32, 1)
        );
        assert_eq!(stored_targets(&store, d).expect("scan").len(), 3);
        // The answer moved to its own record; the block keeps the state only.
        let a = stored_target(&store, d, "", "enterprise/a")
            .expect("read")
            .expect("a folded");
        assert!(a.result.is_none());
        let results = stored_query_results(&store, d).expect("results");
        assert_eq!(results.len(), 1);
        assert_eq!(results["enterprise/a"].matched, 3);
    }

    #[test]
    fn a_corrupt_block_is_an_error_naming_its_key_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let d = "0190a1b2-0000-7000-8000-000000000004";
        let key = records::target_block(d, "", "enterprise/a");
        let mut txn = store.txn();
        txn.put(key.clone(), vec![9, 1, 2, 3]);
        store.apply(txn.into_writes()).expect("apply");
        let err = stored_targets(&store, d).expect_err("garbage decodes");
        assert!(err.to_string().contains(d), "{err}");
        let txn = store.txn();
        let err = Targets::default()
            .get(&txn, key, "enterprise/a")
            .expect_err("garbage decodes");
        assert!(err.to_string().contains(d), "{err}");
    }
}

//! A directive's stored state as a group reads and writes it: target records, metadata and
//! the directive itself, through the group's caches.

use super::*;

impl Core {
    /// The key of the block holding `node`'s state of directive `directive_id`.
    pub(super) fn target_key(&self, directive_id: &str, node: &str) -> Vec<u8> {
        records::target_block(
            directive_id,
            targets::via(&self.shared.directory, node),
            node,
        )
    }

    /// `node`'s state of directive `directive_id`, as this group sees it.
    pub(super) fn target(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
    ) -> Result<Option<TargetRecord>, NodeError> {
        let key = self.target_key(directive_id, node);
        let mut rec = g.targets.get(&g.txn, key, node)?;
        if let Some(rec) = &mut rec {
            self.delivered_runs.resolve(node, rec);
        }
        Ok(rec)
    }

    pub(super) fn put_target(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        node: &str,
        rec: TargetRecord,
    ) -> Result<(), NodeError> {
        let key = self.target_key(directive_id, node);
        g.targets.put(&g.txn, key, node, rec)
    }

    /// The directive's metadata as this group sees it, kept decoded across groups (a
    /// province acknowledged by 161 enterprises asks for it 161 times, over many groups).
    pub(super) fn stored_meta(
        &self,
        g: &mut Group<'_>,
        id: &str,
    ) -> Result<Option<Arc<DirectiveMeta>>, NodeError> {
        if let Some(meta) = g.metas.get(id) {
            return Ok(Some(Arc::clone(meta)));
        }
        let Some(meta) = g.read::<DirectiveMeta>(&records::directive_meta(id))? else {
            return Ok(None);
        };
        let meta = Arc::new(meta);
        g.metas.insert(id.to_string(), meta.clone());
        Ok(Some(meta))
    }

    /// The directive's metadata as committed (for checks made before a group's writes).
    pub(super) fn committed_meta(&self, id: &str) -> Result<Option<DirectiveMeta>, NodeError> {
        let key = records::directive_meta(id);
        Ok(match self.shared.store.get(&key)? {
            Some(v) => Some(decode(&key, &v)?),
            None => None,
        })
    }

    pub(super) fn stored_directive(
        &self,
        g: &Group<'_>,
        id: &str,
    ) -> Result<Option<StoredDirective>, NodeError> {
        g.read(&records::directive(id))
    }
}

/// Stores a directive and its metadata; `from` is the peer it came from (none if issued
/// here).
pub(super) fn store_directive(
    g: &mut Group<'_>,
    d: &Directive,
    from: Option<&NodeId>,
    trace: &HashMap<String, String>,
) {
    let received_from = from.map(ToString::to_string).unwrap_or_default();
    let meta = DirectiveMeta {
        issuer: d.issuer.clone(),
        received_from: received_from.clone(),
        urgency: d.urgency,
        kind: d.kind,
        trace_context: trace.clone(),
    };
    g.txn.put(records::directive_meta(&d.id), encode(&meta));
    g.metas.insert(d.id.clone(), Arc::new(meta));
    let stored = StoredDirective {
        directive: Some(d.clone()),
        received_from,
        received_at_ms: g.now,
        trace_context: trace.clone(),
    };
    g.txn.put(records::directive(&d.id), encode(&stored));
    g.new_directives += 1;
}

//! What operators read of the versioned blacklist, from the committed store: an
//! enterprise's lists (`blacklist show`) and an issuer's view of who lags (`blacklist lag`).
//! Must not write: a verify that asks for a resync goes through the core.

use super::*;

/// An enterprise's list of one issuer, as `blacklist show` prints it.
pub(super) fn held_row(issuer: &str, state: &BlacklistState, list: &Blacklist) -> BlacklistHeld {
    BlacklistHeld {
        issuer: issuer.to_string(),
        version: state.version,
        sha256: state.sha256.clone(),
        counts: list.counts().into_iter().collect(),
        resync_pending: state.resync_pending,
        ..Default::default()
    }
}

/// Enterprise: the lists it holds, read from the committed store.
pub fn stored_blacklists(store: &Store) -> Result<Vec<BlacklistHeld>, NodeError> {
    let mut out = Vec::new();
    for entry in store.scan_prefix(records::BLACKLIST_STATE_PREFIX) {
        let (k, v) = entry?;
        let issuer =
            String::from_utf8_lossy(&k[records::BLACKLIST_STATE_PREFIX.len()..]).into_owned();
        let state: BlacklistState = decode(&k, &v)?;
        let list = list_of_rule_sets(
            store.scan_prefix(records::RULE_SET_PREFIX),
            &issuer,
            state.version,
        )?;
        let mut row = held_row(&issuer, &state, &list);
        for held in store.scan_prefix(&records::held_delta_of(&issuer)) {
            let (k, v) = held?;
            let held: HeldDelta = decode(&k, &v)?;
            row.held.push(held.to_version);
        }
        out.push(row);
    }
    Ok(out)
}

/// Issuer: its list's version, checksum and size, and per enterprise of its jurisdiction
/// the version last reported; `all` or only those that lag.
pub fn blacklist_lag(
    store: &Store,
    issuer: &str,
    enterprises: impl IntoIterator<Item = String>,
    all: bool,
) -> Result<isms_proto::v1::BlacklistLagReply, NodeError> {
    use isms_proto::v1::{BlacklistLagReply, EnterpriseBlacklist};
    let mut shas: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut list = Blacklist::new();
    for entry in store.scan_prefix(&records::blacklist_index_of(issuer)) {
        let (k, v) = entry?;
        let e: BlacklistIndexEntry = decode(&k, &v)?;
        let version = records::blacklist_index_version(&k).unwrap_or(0);
        shas.insert(version, e.sha256);
        let key = records::directive(&e.directive_id);
        if let Some(stored) = store.get(&key)? {
            let stored: StoredDirective = decode(&key, &stored)?;
            if let Some(d) = stored.directive {
                list.apply(&d);
            }
        }
    }
    let (version, sha256) = shas
        .last_key_value()
        .map(|(v, s)| (*v, s.clone()))
        .unwrap_or((0, blacklist::checksum([]).to_vec()));
    let mut reply = BlacklistLagReply {
        version,
        sha256,
        rules: list.len() as u64,
        ..Default::default()
    };
    for node in enterprises {
        let key = records::reported_blacklist(&node);
        let reported: Option<BlacklistVersion> = match store.get(&key)? {
            Some(v) => Some(decode(&key, &v)?),
            None => None,
        };
        let (v, sha, state) = match reported {
            None => (
                0,
                Vec::new(),
                if version == 0 { "current" } else { "unknown" },
            ),
            Some(r) => {
                let state = if shas.get(&r.version) != Some(&r.sha256) {
                    "differs"
                } else if r.version < version {
                    "behind"
                } else {
                    "current"
                };
                (r.version, r.sha256, state)
            }
        };
        reply.enterprises += 1;
        if state != "current" {
            reply.lagging += 1;
        }
        if all || state != "current" {
            reply.rows.push(EnterpriseBlacklist {
                node,
                version: v,
                sha256: sha,
                state: state.to_string(),
            });
        }
    }
    Ok(reply)
}

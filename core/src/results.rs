//! Results signed by the enterprise that reached them: an enterprise
//! signs its executed or failed result (directive ID, itself, state, time, and the digest
//! of the rules it received) as its reports leave it; relays pass the signature on
//! untouched; the issuer keeps it and checks it when the directive is viewed, against the
//! enterprise's certificate, which went up once on its own (`NodeCertificate`) and is kept
//! by every node above the enterprise.
//!
//! Must not: sign a result for another node, or take a certificate that does not chain to
//! the network's CA and name the node it is sent for.

use super::*;
use crate::signing;
use isms_domain::identity::Identity;
use isms_domain::signature::{self, SignatureError, Trust};
use isms_proto::record::{NodeSignedResult, SignedResults};
use isms_proto::v1::{NodeCertificate, SignedResult};

/// Largest certificate taken from a peer; a node certificate is well under 2 KiB.
const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// The states an enterprise signs: its result, not its progress.
fn is_result(state: i32) -> bool {
    state == TargetState::Executed as i32 || state == TargetState::Failed as i32
}

impl Core {
    fn current_trust(&self) -> Option<Arc<Trust>> {
        let trust = self.trust.as_ref()?;
        trust.read().ok().map(|t| Arc::clone(&t))
    }

    /// Enterprise: sends its certificate up if the one it has was not sent yet (at start,
    /// and after a renewal).
    pub(super) fn announce_certificate(&mut self, g: &mut Group<'_>) -> Result<(), NodeError> {
        let (Some(parent), false) = (self.parent.clone(), self.keeping.certificate.is_empty())
        else {
            return Ok(());
        };
        let sha = signature::fingerprint(&self.keeping.certificate);
        if g.txn.get(records::CERTIFICATE_ANNOUNCED)?.as_deref() == Some(&sha[..]) {
            return Ok(());
        }
        let announcement = NodeCertificate {
            node: self.shared.node_id.to_string(),
            certificate: self.keeping.certificate.clone(),
        };
        self.enqueue(
            g,
            &parent,
            uuid::Uuid::now_v7().to_string(),
            HashMap::new(),
            outbox_entry::Body::NodeCertificate(announcement),
        );
        g.txn
            .put(records::CERTIFICATE_ANNOUNCED.to_vec(), sha.to_vec());
        tracing::info!(to = %parent, "certificate sent up for signed results");
        Ok(())
    }

    /// Whether `child` may send the certificate of `c.node`: its own, or for a province,
    /// one of its enterprises'.
    pub(super) fn check_node_certificate(
        &self,
        child: &NodeId,
        c: &NodeCertificate,
    ) -> Result<(), NodeError> {
        if !self.speaks_for(child, &c.node) {
            return Err(NodeError::Forbidden(format!(
                "{child} may not send the certificate of {:?}",
                c.node
            )));
        }
        if c.certificate.is_empty() || c.certificate.len() > MAX_CERTIFICATE_BYTES {
            return Err(NodeError::Protocol(format!(
                "the certificate of {} is {} bytes: not a node certificate",
                c.node,
                c.certificate.len()
            )));
        }
        Ok(())
    }

    /// Keeps an enterprise's certificate if it chains to the CA and names it, and passes
    /// it up. One that does not is refused, audited, and not passed on: the link is not
    /// at fault for what a child sent.
    pub(super) fn receive_node_certificate(
        &mut self,
        g: &mut Group<'_>,
        from: &NodeId,
        c: NodeCertificate,
    ) -> Result<(), NodeError> {
        if let Some(trust) = self.current_trust() {
            let named = trust.certificate_identity(&c.certificate, g.now);
            let expected = c.node.parse::<NodeId>().ok().map(Identity::Node);
            let why = match (named, expected) {
                (Ok(found), Some(expected)) if found == expected => None,
                (Ok(found), _) => Some(format!("it names {found}")),
                (Err(e), _) => Some(e.to_string()),
            };
            if let Some(why) = why {
                tracing::error!(%from, node = %c.node, reason = %why, "certificate for signed results refused");
                let outcome = format!("refused the certificate of {}: {why}", c.node);
                audit(
                    g,
                    &Caller::node(),
                    "certificate.refused",
                    from.as_str(),
                    &outcome,
                );
                return Ok(());
            }
        }
        let sha = signature::fingerprint(&c.certificate);
        g.txn
            .put(records::signer_certificate(&sha), c.certificate.clone());
        if let Some(parent) = self.parent.clone() {
            self.enqueue(
                g,
                &parent,
                uuid::Uuid::now_v7().to_string(),
                HashMap::new(),
                outbox_entry::Body::NodeCertificate(c),
            );
        }
        Ok(())
    }

    /// Enterprise: signs its own results in a report about to leave it. Unsigned if the
    /// node has no key (a core without node files).
    pub(super) fn sign_results(
        &self,
        g: &Group<'_>,
        report: &mut StatusReport,
    ) -> Result<(), NodeError> {
        let Some(key) = self.keeping.signer.clone() else {
            return Ok(());
        };
        let me = self.shared.node_id.as_str();
        let mut rules_sha256 = None;
        for u in &mut report.updates {
            if u.node != me || !is_result(u.state) || u.signed.is_some() {
                continue;
            }
            if rules_sha256.is_none() {
                let rules = self
                    .stored_directive(g, &report.directive_id)?
                    .and_then(|s| s.directive)
                    .map(|d| d.rules)
                    .unwrap_or_default();
                rules_sha256 = Some(signature::rules_digest(&rules).to_vec());
            }
            let mut result = SignedResult {
                state: u.state,
                at_ms: u.at_ms,
                rules_sha256: rules_sha256.clone().unwrap_or_default(),
                signature: None,
            };
            let message = signature::result_message(&report.directive_id, me, &result);
            let mut sig = signature::sign(&key, &[], &message)
                .map_err(|e| NodeError::Protocol(e.to_string()))?;
            sig.certificate_sha256 = signature::fingerprint(&self.keeping.certificate).to_vec();
            result.signature = Some(sig);
            u.signed = Some(result);
        }
        Ok(())
    }

    /// Ministry: an assistance request's statuses go to the requesting province, which
    /// may not have the certificates of another province's enterprises: each signed
    /// result carries its certificate whole.
    pub(super) fn attach_result_certificates(
        &self,
        g: &Group<'_>,
        report: &mut StatusReport,
    ) -> Result<(), NodeError> {
        for sig in report
            .updates
            .iter_mut()
            .filter_map(|u| u.signed.as_mut()?.signature.as_mut())
        {
            signing::make_whole(sig, |k| g.txn.get(k))?;
        }
        Ok(())
    }

    /// Issuer: keeps the signed results a report brought, as one record; a whole
    /// certificate one carries is kept apart (checked when used) and not stored again
    /// with it.
    pub(super) fn keep_signed_results(
        &self,
        g: &mut Group<'_>,
        directive_id: &str,
        updates: &[TargetStatus],
    ) {
        let mut results = Vec::new();
        for u in updates {
            let Some(mut signed) = u.signed.clone() else {
                continue;
            };
            if let Some(sig) = signed.signature.as_mut()
                && !sig.certificate.is_empty()
            {
                let sha = signature::fingerprint(&sig.certificate);
                g.txn.put(
                    records::signer_certificate(&sha),
                    std::mem::take(&mut sig.certificate),
                );
                sig.certificate_sha256 = sha.to_vec();
            }
            results.push(NodeSignedResult {
                node: u.node.clone(),
                signed: Some(signed),
            });
        }
        if !results.is_empty() {
            let key = records::signed_results(directive_id, &uuid::Uuid::now_v7().to_string());
            g.txn.put(key, encode(&SignedResults { results }));
        }
    }
}

/// Issuer: each enterprise's latest signed result for a directive, checked: `verified`,
/// or `unverifiable: <why>`; an enterprise whose shown result is not among them is
/// `unsigned` (the caller says so). `rules` are the directive's as issued here.
pub fn result_verdicts(
    store: &Store,
    trust: &Trust,
    directive_id: &str,
    rules: &[isms_proto::v1::Rule],
) -> Result<BTreeMap<String, (SignedResult, String)>, NodeError> {
    let mut latest: BTreeMap<String, SignedResult> = BTreeMap::new();
    for entry in store.scan_prefix(&records::signed_results_prefix(directive_id)) {
        let (k, v) = entry?;
        let kept: SignedResults = decode(&k, &v)?;
        for r in kept.results {
            let Some(signed) = r.signed else { continue };
            let newer = latest.get(&r.node).is_none_or(|l| {
                let (a, b) = (state_rank_of(signed.state), state_rank_of(l.state));
                a > b || (a == b && signed.at_ms > l.at_ms)
            });
            if newer {
                latest.insert(r.node, signed);
            }
        }
    }
    let issued = signature::rules_digest(rules);
    let mut out = BTreeMap::new();
    for (node, signed) in latest {
        let verdict = verdict(store, trust, directive_id, &node, &signed, &issued)?;
        out.insert(node, (signed, verdict));
    }
    Ok(out)
}

fn state_rank_of(state: i32) -> u8 {
    state_rank(TargetState::try_from(state).unwrap_or(TargetState::Unspecified))
}

fn verdict(
    store: &Store,
    trust: &Trust,
    directive_id: &str,
    node: &str,
    signed: &SignedResult,
    issued_rules: &[u8; 32],
) -> Result<String, NodeError> {
    let mut signed = signed.clone();
    if let Some(sig) = signed.signature.as_mut() {
        signing::make_whole(sig, |k| store.get(k))?;
    }
    Ok(match trust.verify_result(directive_id, node, &signed) {
        Ok(()) if signed.rules_sha256 != issued_rules[..] => {
            "unverifiable: signed for rules other than those issued".to_string()
        }
        Ok(()) => "verified".to_string(),
        Err(SignatureError::Altered) => {
            "unverifiable: the signature does not verify: the result was altered".to_string()
        }
        Err(SignatureError::UnknownCertificate) => {
            format!("unverifiable: the certificate of {node} is not known here")
        }
        Err(e) => format!("unverifiable: {e}"),
    })
}

//! Directives signed end to end: the issuer signs a directive when
//! it leaves it, a province countersigns another province's assistance request it is to
//! execute, and an enterprise applies nothing it cannot verify: the signer's
//! certificate chained to the network's CA and not revoked, the signer the directive's
//! issuer, the issuer within its rights over this enterprise, and this enterprise within
//! the directive's signed scope. A refusal is reported up as `failed: signature: …` and
//! audited.
//!
//! Must not: sign anything for another node, or pass a relay's word for the issuer's.

use super::*;
use isms_domain::signature::{self, SignatureError, Trust};

/// Testing only: how a province tampers with what it relays (`testing.tamper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Changes the first `tamper-` rule's value, keeping the issuer's signature.
    AlterRule,
    /// Removes the issuer's signature.
    DropSignature,
    /// Removes its own countersignature from another province's assistance request.
    DropCountersignature,
    /// Signs the altered directive with its own key, as if it were the issuer.
    Forge,
    /// Passes the directive on untouched and turns its enterprises' `executed` into
    /// `failed` on the way back, keeping their signatures.
    AlterResult,
}

/// The network's CA and revocation lists as the node holds them now; replaced when its
/// revocation list changes (`transport::tls` reloads it).
pub type TrustHandle = Arc<std::sync::RwLock<Arc<Trust>>>;

impl Core {
    /// Issuer: the directive as it leaves this node: its blacklist version given, signed.
    /// Once: a directive that already has them is returned as it is.
    pub(super) fn seal<'d>(
        &mut self,
        g: &mut Group<'_>,
        d: &'d Directive,
    ) -> Result<std::borrow::Cow<'d, Directive>, NodeError> {
        let needs_version = d.blacklist.as_ref().is_some_and(|b| b.to_version == 0);
        let signer = self.keeping.signer.clone();
        let needs_signature = d.signature.is_none() && signer.is_some();
        if !needs_version && !needs_signature {
            return Ok(std::borrow::Cow::Borrowed(d));
        }
        let mut sealed = d.clone();
        if needs_version {
            self.version_blacklist(g, &mut sealed)?;
        }
        if let Some(key) = signer {
            let message = signature::directive_message(&sealed);
            let sig = signature::sign(&key, &self.keeping.certificate, &message)
                .map_err(|e| NodeError::Protocol(e.to_string()))?;
            sealed.signature = Some(sig);
        }
        // The stored directive is the one sent (its copies are read from it).
        if let Some(mut stored) = self.stored_directive(g, &sealed.id)? {
            stored.directive = Some(sealed.clone());
            g.txn.put(records::directive(&sealed.id), encode(&stored));
        }
        Ok(std::borrow::Cow::Owned(sealed))
    }

    /// Province: another province's assistance request, received to be executed here,
    /// countersigned so that this province's enterprises take it.
    pub(super) fn countersign(&self, d: &mut Directive) -> Result<(), NodeError> {
        let foreign = d.issuer != self.shared.node_id.as_str()
            && d.issuer
                .parse::<NodeId>()
                .is_ok_and(|i| i.tier() == Tier::Province);
        let Some(key) = self.keeping.signer.as_ref().filter(|_| foreign) else {
            return Ok(());
        };
        let message = signature::directive_message(d);
        d.countersignature = Some(
            signature::sign(key, &self.keeping.certificate, &message)
                .map_err(|e| NodeError::Protocol(e.to_string()))?,
        );
        Ok(())
    }

    /// Enterprise: whether `d` may be applied here: why not, if not.
    pub(super) fn check_signed(&self, d: &Directive, now_ms: i64) -> Result<(), String> {
        let Some(trust) = &self.trust else {
            return Ok(()); // a core run without a node's files (unit tests)
        };
        let trust = trust.read().map(|t| Arc::clone(&t)).map_err(|_| {
            "the trust store is unreadable (a thread panicked holding it)".to_string()
        })?;
        trust
            .verify_directive(d, now_ms)
            .map_err(|e| e.to_string())?;
        let me = self.shared.node_id.as_str();
        let parent = self.parent.as_ref().map(NodeId::as_str).unwrap_or_default();
        let addressed = d
            .scope
            .iter()
            .any(|s| s == "all" || s == me || (s.starts_with("province/") && s == parent));
        if !addressed {
            return Err(format!(
                "{me} is not within the signed scope {:?}",
                d.scope.join(",")
            ));
        }
        let by_ministry = d
            .issuer
            .parse::<NodeId>()
            .is_ok_and(|n| n.tier() == Tier::Ministry);
        if by_ministry || d.issuer == parent {
            return Ok(());
        }
        // Another province's order: only with this enterprise's own province's
        // countersignature.
        let counter = d.countersignature.as_ref().ok_or_else(|| {
            format!(
                "{} is outside its jurisdiction here and {parent} did not countersign",
                d.issuer
            )
        })?;
        let by = trust
            .verify(counter, &signature::directive_message(d), now_ms)
            .map_err(|e| format!("countersignature: {e}"))?;
        match by {
            isms_domain::identity::Identity::Node(n) if n.as_str() == parent => Ok(()),
            other => Err(format!(
                "countersignature: {}",
                SignatureError::WrongSigner {
                    expected: parent.to_string(),
                    found: other.to_string(),
                }
            )),
        }
    }

    /// Testing only (`testing.tamper`): what a compromised relay would do to a directive
    /// with a rule valued `tamper-…`.
    pub(super) fn tamper_with(&self, d: &mut Directive, how: Tamper) -> Result<(), NodeError> {
        let Some(rule) = d.rules.iter_mut().find(|r| r.value.starts_with(b"tamper-")) else {
            return Ok(());
        };
        if how == Tamper::AlterResult {
            return Ok(()); // the results are altered (`tamper_with_result`)
        }
        tracing::warn!(directive = %d.id, ?how, "testing: tampering with a relayed directive");
        match how {
            Tamper::AlterRule => rule.value = "altered.example".into(),
            Tamper::DropSignature => d.signature = None,
            Tamper::DropCountersignature => d.countersignature = None,
            Tamper::AlterResult => {}
            Tamper::Forge => {
                rule.value = "forged.example".into();
                d.signature = None;
                if let Some(key) = &self.keeping.signer {
                    let message = signature::directive_message(d);
                    d.signature = Some(
                        signature::sign(key, &self.keeping.certificate, &message)
                            .map_err(|e| NodeError::Protocol(e.to_string()))?,
                    );
                }
            }
        }
        Ok(())
    }

    /// Testing only (`testing.tamper = "alter-result"`): what a compromised relay would do
    /// to an enterprise's result of a directive with a rule valued `tamper-…`.
    pub(super) fn tamper_with_result(
        &self,
        g: &Group<'_>,
        directive_id: &str,
        u: &mut TargetStatus,
    ) -> Result<(), NodeError> {
        if self.tamper != Some(Tamper::AlterResult) || u.state != TargetState::Executed as i32 {
            return Ok(());
        }
        let tampered = self
            .stored_directive(g, directive_id)?
            .and_then(|s| s.directive)
            .is_some_and(|d| d.rules.iter().any(|r| r.value.starts_with(b"tamper-")));
        if tampered {
            tracing::warn!(directive = %directive_id, node = %u.node, "testing: altering a relayed result");
            u.state = TargetState::Failed as i32;
            u.detail = "altered by the relay".into();
            if let Some(signed) = u.signed.as_mut() {
                signed.state = TargetState::Failed as i32;
            }
        }
        Ok(())
    }

    /// Enterprise: a lean copy's certificates, from those it keeps (`keep_certificates`).
    pub(super) fn fill_certificates(
        &self,
        g: &Group<'_>,
        d: &mut Directive,
    ) -> Result<(), NodeError> {
        for sig in [&mut d.signature, &mut d.countersignature]
            .into_iter()
            .flatten()
        {
            make_whole(sig, |k| g.txn.get(k))?;
        }
        Ok(())
    }

    /// Enterprise: the whole certificates a copy carried, by SHA-256, for the lean copies
    /// after it. Unchecked here: each is checked with every signature it is used for.
    pub(super) fn keep_certificates(g: &mut Group<'_>, d: &Directive) {
        for sig in [&d.signature, &d.countersignature].into_iter().flatten() {
            if !sig.certificate.is_empty() {
                let f = signature::fingerprint(&sig.certificate);
                g.txn
                    .put(records::signer_certificate(&f), sig.certificate.clone());
            }
        }
    }

    /// Enterprise: a directive that failed `check_signed`: kept (so a resend is known and
    /// the report finds its way up), never applied, reported and audited.
    pub(super) fn refuse_unsigned(
        &mut self,
        g: &mut Group<'_>,
        d: &Directive,
        why: &str,
        trace: &HashMap<String, String>,
    ) {
        let me = self.shared.node_id.to_string();
        let detail = format!("signature: {why}");
        tracing::error!(directive = %d.id, issuer = %d.issuer, reason = %why, "directive refused: not applied");
        self.report_up(g, &d.id, &me, TargetState::Failed, &detail, trace);
        audit(g, &Caller::node(), "directive.refused", &d.id, &detail);
    }
}

/// A lean signature's certificate filled in from those kept (`ic/<sha256>`, read with
/// `get`), if known; a whole one is left as it is.
pub(super) fn make_whole<E>(
    sig: &mut isms_proto::v1::DirectiveSignature,
    get: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>, E>,
) -> Result<(), E> {
    if sig.certificate.is_empty()
        && !sig.certificate_sha256.is_empty()
        && let Some(cert) = get(&records::signer_certificate(&sig.certificate_sha256))?
    {
        sig.certificate = cert;
    }
    Ok(())
}

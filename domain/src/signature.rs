//! Directives signed end to end: what the issuer signs, what an
//! enterprise signs of its result, and checking a signature against the network's CA (and
//! its revocation lists) and the signer's identity.
//!
//! Owns the signed message's form and the checks. Must not decide who may address whom
//! (the core checks rights with the signer this module names) or read files.

use isms_proto::v1::{Directive, DirectiveSignature, Rule, SignedResult};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage, OwnedCertRevocationList};

use crate::audit_chain::HeadSigner;
use crate::identity::Identity;

/// Why a signature is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature")]
    Missing,
    #[error("the signer's certificate is named by its SHA-256 but not known here")]
    UnknownCertificate,
    #[error("the signer's certificate is not from the network's CA: {0}")]
    Untrusted(String),
    #[error("the signer's certificate is revoked")]
    Revoked,
    #[error("the signer's certificate names no node of trust domain {0}")]
    NoIdentity(String),
    #[error("signed by {found}, not by {expected}")]
    WrongSigner { expected: String, found: String },
    #[error("the signature does not verify: the directive was altered")]
    Altered,
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// What a directive's signatures cover: everything but the hop's targets and the
/// signatures themselves, after a fixed context.
pub fn directive_message(d: &Directive) -> Vec<u8> {
    let unsigned = Directive {
        targets: Vec::new(),
        signature: None,
        countersignature: None,
        ..d.clone()
    };
    let mut m = b"isms directive v1\0".to_vec();
    // A Vec grows as needed, so encoding into it cannot run out of space.
    let _ = prost::Message::encode(&unsigned, &mut m);
    m
}

/// What an enterprise's signed result says of the rules it received: the SHA-256 of
/// each rule's encoding, length-delimited, in order, after a fixed context.
pub fn rules_digest(rules: &[Rule]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"isms rules v1\0");
    let mut buf = Vec::new();
    for rule in rules {
        buf.clear();
        // A Vec grows as needed, so encoding into it cannot run out of space.
        let _ = prost::Message::encode_length_delimited(rule, &mut buf);
        ctx.update(&buf);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// What an enterprise's signature over its result covers (see `SignedResult`).
pub fn result_message(directive_id: &str, node: &str, result: &SignedResult) -> Vec<u8> {
    let mut m = b"isms result v1\0".to_vec();
    m.extend_from_slice(directive_id.as_bytes());
    m.push(0);
    m.extend_from_slice(node.as_bytes());
    m.push(0);
    m.extend_from_slice(&result.state.to_be_bytes());
    m.extend_from_slice(&result.at_ms.to_be_bytes());
    m.extend_from_slice(&result.rules_sha256);
    m
}

/// A certificate's SHA-256: how a lean copy names it.
pub fn fingerprint(certificate: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, certificate).as_ref());
    out
}

/// `d` with its signatures' certificates replaced by their SHA-256, and those SHA-256s;
/// none if no signature carries a certificate. Signed content is unchanged.
pub fn lean(d: &Directive) -> Option<(Directive, Vec<[u8; 32]>)> {
    let mut lean = d.clone();
    let mut named = Vec::new();
    for sig in [&mut lean.signature, &mut lean.countersignature]
        .into_iter()
        .flatten()
    {
        if !sig.certificate.is_empty() {
            let f = fingerprint(&sig.certificate);
            sig.certificate = Vec::new();
            sig.certificate_sha256 = f.to_vec();
            named.push(f);
        }
    }
    (!named.is_empty()).then_some((lean, named))
}

/// Signs `message` with the node key; `certificate` (DER) goes with it.
pub fn sign(
    key: &HeadSigner,
    certificate: &[u8],
    message: &[u8],
) -> Result<DirectiveSignature, SignatureError> {
    Ok(DirectiveSignature {
        certificate: certificate.to_vec(),
        signature: key
            .sign_message(message)
            .map_err(|e| SignatureError::Sign(e.to_string()))?,
        certificate_sha256: Vec::new(),
    })
}

/// The network's CA and revocation lists: what a signature must chain to.
#[derive(Debug, Default)]
pub struct Trust {
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<webpki::CertRevocationList<'static>>,
    trust_domain: String,
}

impl Trust {
    /// From the CA certificates (DER) and CRLs (DER) of the node's configuration.
    pub fn new(
        ca_certs: &[Vec<u8>],
        crls: &[Vec<u8>],
        trust_domain: &str,
    ) -> Result<Trust, SignatureError> {
        let anchors = ca_certs
            .iter()
            .map(|der| {
                webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                    .map(|a| a.to_owned())
                    .map_err(|e| SignatureError::Untrusted(format!("CA certificate: {e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let crls = crls
            .iter()
            .map(|der| {
                OwnedCertRevocationList::from_der(der)
                    .map(webpki::CertRevocationList::from)
                    .map_err(|e| SignatureError::Untrusted(format!("revocation list: {e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trust {
            anchors,
            crls,
            trust_domain: trust_domain.to_string(),
        })
    }

    /// Checks `sig` over `message`: its certificate chains to the CA and is not revoked,
    /// and its key made the signature. The signer's identity.
    pub fn verify(
        &self,
        sig: &DirectiveSignature,
        message: &[u8],
        now_ms: i64,
    ) -> Result<Identity, SignatureError> {
        if sig.signature.is_empty() {
            return Err(SignatureError::Missing);
        }
        if sig.certificate.is_empty() {
            return Err(if sig.certificate_sha256.is_empty() {
                SignatureError::Missing
            } else {
                SignatureError::UnknownCertificate
            });
        }
        let identity = self.certificate_identity(&sig.certificate, now_ms)?;
        let der = CertificateDer::from(sig.certificate.as_slice());
        let cert = EndEntityCert::try_from(&der)
            .map_err(|e| SignatureError::Untrusted(format!("{e:?}")))?;
        cert.verify_signature(webpki::ring::ECDSA_P256_SHA256, message, &sig.signature)
            .map_err(|_| SignatureError::Altered)?;
        Ok(identity)
    }

    /// Checks a certificate (DER) chains to the CA and is not revoked: the node or
    /// operator it names.
    pub fn certificate_identity(
        &self,
        certificate: &[u8],
        now_ms: i64,
    ) -> Result<Identity, SignatureError> {
        let der = CertificateDer::from(certificate);
        let cert = EndEntityCert::try_from(&der)
            .map_err(|e| SignatureError::Untrusted(format!("{e:?}")))?;
        let crls: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = if crls.is_empty() {
            None
        } else {
            webpki::RevocationOptionsBuilder::new(&crls).ok().map(|b| {
                b.with_depth(webpki::RevocationCheckDepth::EndEntity)
                    .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                    .build()
            })
        };
        let seconds = u64::try_from(now_ms / 1000).unwrap_or(0);
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
            KeyUsage::client_auth(),
            revocation,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertRevoked => SignatureError::Revoked,
            e => SignatureError::Untrusted(format!("{e:?}")),
        })?;
        Identity::from_cert_der(certificate, &self.trust_domain)
            .ok_or_else(|| SignatureError::NoIdentity(self.trust_domain.clone()))
    }

    /// Checks an enterprise's signed result is `node`'s, as it signed it; its
    /// certificate filled in by the caller (from the ones it keeps). Checked at the time
    /// it was signed, against the revocation lists in force now.
    pub fn verify_result(
        &self,
        directive_id: &str,
        node: &str,
        result: &SignedResult,
    ) -> Result<(), SignatureError> {
        let sig = result.signature.as_ref().ok_or(SignatureError::Missing)?;
        let found = self.verify(
            sig,
            &result_message(directive_id, node, result),
            result.at_ms,
        )?;
        signed_by(found, node)
    }

    /// Checks `d`'s signature is its issuer's, over all of it.
    pub fn verify_directive(&self, d: &Directive, now_ms: i64) -> Result<(), SignatureError> {
        let sig = d.signature.as_ref().ok_or(SignatureError::Missing)?;
        let found = self.verify(sig, &directive_message(d), now_ms)?;
        signed_by(found, &d.issuer)
    }
}

/// Whether the signer `found` is the node `expected`.
fn signed_by(found: Identity, expected: &str) -> Result<(), SignatureError> {
    match expected.parse().map(Identity::Node) {
        Ok(node) if found == node => Ok(()),
        _ => Err(SignatureError::WrongSigner {
            expected: expected.to_string(),
            found: found.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isms_proto::v1::{DirectiveKind, Rule, RuleKind};
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
        date_time_ymd,
    };

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        der: Vec<u8>,
    }

    fn ca() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("ca");
        Ca {
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A node certificate (DER) with `serial`, and its key as a signer.
    fn node(ca: &Ca, id: &str, serial: u64) -> (Vec<u8>, HeadSigner) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names.push(SanType::URI(
            format!("spiffe://isms.test/{id}")
                .as_str()
                .try_into()
                .expect("uri"),
        ));
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca.issuer).expect("cert");
        let signer = HeadSigner::from_pkcs8(&key.serialize_der()).expect("signer");
        (cert.der().to_vec(), signer)
    }

    fn directive() -> Directive {
        Directive {
            id: "0193a000-0000-7000-8000-000000000001".into(),
            issuer: "ministry".into(),
            kind: DirectiveKind::Disposal as i32,
            scope: vec!["all".into()],
            targets: vec!["enterprise/e4401".into()],
            rules: vec![Rule {
                kind: RuleKind::BlockDomain as i32,
                value: b"bad.example".to_vec().into(),
                op: 0,
            }],
            ..Default::default()
        }
    }

    fn signed(d: &Directive, cert: &[u8], key: &HeadSigner) -> Directive {
        let mut d = d.clone();
        d.signature = Some(sign(key, cert, &directive_message(&d)).expect("sign"));
        d
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn a_signed_directive_verifies_whatever_its_targets_and_not_once_altered() {
        let ca = ca();
        let trust = Trust::new(std::slice::from_ref(&ca.der), &[], "isms.test").expect("trust");
        let (cert, key) = node(&ca, "ministry", 1);
        let d = signed(&directive(), &cert, &key);
        assert_eq!(trust.verify_directive(&d, NOW), Ok(()));
        // Each hop narrows the targets: not signed.
        let narrowed = Directive {
            targets: vec!["enterprise/e4402".into()],
            ..d.clone()
        };
        assert_eq!(trust.verify_directive(&narrowed, NOW), Ok(()));
        let mut altered = d.clone();
        altered.rules[0].value = b"other.example".to_vec().into();
        assert_eq!(
            trust.verify_directive(&altered, NOW),
            Err(SignatureError::Altered)
        );
        let widened = Directive {
            scope: vec!["province/11".into()],
            ..d.clone()
        };
        assert_eq!(
            trust.verify_directive(&widened, NOW),
            Err(SignatureError::Altered)
        );
        let unsigned = Directive {
            signature: None,
            ..d.clone()
        };
        assert_eq!(
            trust.verify_directive(&unsigned, NOW),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn a_signature_by_another_node_another_ca_or_a_revoked_key_is_refused() {
        let ca = ca();
        let trust = Trust::new(std::slice::from_ref(&ca.der), &[], "isms.test").expect("trust");
        // A province signing as if it were the ministry.
        let (cert, key) = node(&ca, "province/44", 2);
        let forged = signed(&directive(), &cert, &key);
        assert_eq!(
            trust.verify_directive(&forged, NOW),
            Err(SignatureError::WrongSigner {
                expected: "ministry".into(),
                found: "province/44".into()
            })
        );
        // A certificate of another CA naming the ministry.
        let other = self::ca();
        let (cert, key) = node(&other, "ministry", 3);
        let foreign = signed(&directive(), &cert, &key);
        assert!(matches!(
            trust.verify_directive(&foreign, NOW),
            Err(SignatureError::Untrusted(_))
        ));
        // The ministry's own key, revoked.
        let (cert, key) = node(&ca, "ministry", 4);
        let d = signed(&directive(), &cert, &key);
        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2026, 1, 1),
            next_update: date_time_ymd(2030, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(4u64),
                revocation_time: date_time_ymd(2026, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca.issuer)
        .expect("crl");
        let revoking = Trust::new(
            std::slice::from_ref(&ca.der),
            &[crl.der().to_vec()],
            "isms.test",
        )
        .expect("trust");
        assert_eq!(trust.verify_directive(&d, NOW), Ok(()));
        assert_eq!(
            revoking.verify_directive(&d, NOW),
            Err(SignatureError::Revoked)
        );
        assert!(
            Trust::new(
                std::slice::from_ref(&ca.der),
                &[b"not a crl".to_vec()],
                "isms.test"
            )
            .is_err()
        );
    }

    fn signed_result(key: &HeadSigner, cert: &[u8], node: &str) -> SignedResult {
        let d = directive();
        let mut r = SignedResult {
            state: isms_proto::v1::TargetState::Executed as i32,
            at_ms: NOW,
            rules_sha256: rules_digest(&d.rules).to_vec(),
            signature: None,
        };
        r.signature = Some(sign(key, cert, &result_message(&d.id, node, &r)).expect("sign"));
        r
    }

    #[test]
    fn an_enterprises_signed_result_verifies_as_its_own_and_not_once_altered() {
        let ca = ca();
        let trust = Trust::new(std::slice::from_ref(&ca.der), &[], "isms.test").expect("trust");
        let (cert, key) = node(&ca, "enterprise/e4401", 5);
        let id = directive().id;
        let r = signed_result(&key, &cert, "enterprise/e4401");
        assert_eq!(trust.verify_result(&id, "enterprise/e4401", &r), Ok(()));
        // A relay turning `executed` into `failed`, or moving its time.
        let mut altered = r.clone();
        altered.state = isms_proto::v1::TargetState::Failed as i32;
        assert_eq!(
            trust.verify_result(&id, "enterprise/e4401", &altered),
            Err(SignatureError::Altered)
        );
        let mut later = r.clone();
        later.at_ms += 1;
        assert_eq!(
            trust.verify_result(&id, "enterprise/e4401", &later),
            Err(SignatureError::Altered)
        );
        // Another directive's result, or another enterprise's name on it.
        assert_eq!(
            trust.verify_result(
                "0193a000-0000-7000-8000-000000000002",
                "enterprise/e4401",
                &r
            ),
            Err(SignatureError::Altered)
        );
        assert_eq!(
            trust.verify_result(&id, "enterprise/e4402", &r),
            Err(SignatureError::Altered)
        );
        // Signed by its province in the enterprise's name.
        let (pcert, pkey) = node(&ca, "province/44", 6);
        let by_province = signed_result(&pkey, &pcert, "enterprise/e4401");
        assert_eq!(
            trust.verify_result(&id, "enterprise/e4401", &by_province),
            Err(SignatureError::WrongSigner {
                expected: "enterprise/e4401".into(),
                found: "province/44".into()
            })
        );
        // Without its certificate, or without a signature.
        let mut lean = r.clone();
        if let Some(sig) = lean.signature.as_mut() {
            sig.certificate_sha256 = fingerprint(&sig.certificate).to_vec();
            sig.certificate.clear();
        }
        assert_eq!(
            trust.verify_result(&id, "enterprise/e4401", &lean),
            Err(SignatureError::UnknownCertificate)
        );
        let unsigned = SignedResult {
            signature: None,
            ..r
        };
        assert_eq!(
            trust.verify_result(&id, "enterprise/e4401", &unsigned),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn the_rules_digest_changes_with_any_rule_and_with_their_order() {
        let rule = |v: &str| Rule {
            kind: RuleKind::BlockDomain as i32,
            value: v.as_bytes().to_vec().into(),
            op: 0,
        };
        let ab = rules_digest(&[rule("a.example"), rule("b.example")]);
        assert_eq!(ab, rules_digest(&[rule("a.example"), rule("b.example")]));
        assert_ne!(ab, rules_digest(&[rule("b.example"), rule("a.example")]));
        assert_ne!(ab, rules_digest(&[rule("a.example"), rule("c.example")]));
        assert_ne!(ab, rules_digest(&[rule("a.example")]));
        // Boundaries are kept: two rules are not one rule of their concatenation.
        assert_ne!(
            rules_digest(&[rule("ab"), rule("c")]),
            rules_digest(&[rule("a"), rule("bc")])
        );
    }
}

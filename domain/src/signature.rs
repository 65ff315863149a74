//! Directives signed end to end: what the issuer signs, and checking a
//! signature against the network's CA (and its revocation lists) and the signer's identity.
//!
//! Owns the signed message's form and the checks. Must not decide who may address whom
//! (the core checks rights with the signer this module names) or read files.

use isms_proto::v1::{Directive, DirectiveSignature};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage, OwnedCertRevocationList};

use crate::audit_chain::HeadSigner;
use crate::identity::Identity;

/// Why a signature is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature")]
    Missing,
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
        if sig.signature.is_empty() || sig.certificate.is_empty() {
            return Err(SignatureError::Missing);
        }
        let der = CertificateDer::from(sig.certificate.as_slice());
        let cert = EndEntityCert::try_from(&der)
            .map_err(|e| SignatureError::Untrusted(format!("{e:?}")))?;
        let crls: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = if crls.is_empty() {
            None
        } else {
            webpki::RevocationOptionsBuilder::new(&crls)
                .ok()
                .map(|b| {
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
        cert.verify_signature(webpki::ring::ECDSA_P256_SHA256, message, &sig.signature)
            .map_err(|_| SignatureError::Altered)?;
        Identity::from_cert_der(&sig.certificate, &self.trust_domain)
            .ok_or_else(|| SignatureError::NoIdentity(self.trust_domain.clone()))
    }

    /// Checks `d`'s signature is its issuer's, over all of it.
    pub fn verify_directive(&self, d: &Directive, now_ms: i64) -> Result<(), SignatureError> {
        let sig = d.signature.as_ref().ok_or(SignatureError::Missing)?;
        let found = self.verify(sig, &directive_message(d), now_ms)?;
        let expected = d
            .issuer
            .parse()
            .map(Identity::Node)
            .map_err(|_| SignatureError::WrongSigner {
                expected: d.issuer.clone(),
                found: found.to_string(),
            })?;
        if found != expected {
            return Err(SignatureError::WrongSigner {
                expected: expected.to_string(),
                found: found.to_string(),
            });
        }
        Ok(())
    }
}

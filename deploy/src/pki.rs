//! Development PKI made with rcgen, so no OpenSSL step is needed: a CA, node and operator
//! certificates carrying their identity as a SPIFFE URI SAN, and revocation lists.
//! The CA's key stays in the network's directory (owner-readable) for `isms-deploy revoke`. Production operators bring
//! their own CA; nothing else in the node depends on how certificates were made.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};

use isms_domain::identity::Identity;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("reading {path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate authority held in memory while a topology's certificates are issued.
pub struct DevCa {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("trust_domain", &self.trust_domain)
            .finish()
    }
}

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl IssuedCert {
    /// Writes `<stem>.pem` and `<stem>.key` (the key readable by the owner only).
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&cert, &self.cert_pem, 0o644)?;
        write_file(&key, &self.key_pem, 0o600)?;
        Ok((cert, key))
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)
}

impl DevCa {
    /// A fresh CA for `trust_domain`, named `common_name`.
    pub fn generate(trust_domain: &str, common_name: &str) -> Result<DevCa, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "ISMS development PKI");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(DevCa {
            trust_domain: trust_domain.to_string(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// The CA `write_cert` and `write_key` wrote.
    pub fn load(cert: &Path, key: &Path, trust_domain: &str) -> Result<DevCa, PkiError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| PkiError::Read {
                path: p.to_path_buf(),
                why: e.to_string(),
            })
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        let signing = KeyPair::from_pem(&key_pem)?;
        Ok(DevCa {
            trust_domain: trust_domain.to_string(),
            issuer: Issuer::from_ca_cert_pem(&cert_pem, signing)?,
            cert_pem,
            key_pem,
        })
    }

    /// Writes the CA's private key (owner-readable only): what signs revocation lists.
    pub fn write_key(&self, path: &Path) -> Result<(), PkiError> {
        write_file(path, &self.key_pem, 0o600)
    }

    /// A revocation list (PEM) naming `serials` (as certificates carry them), numbered
    /// `number`, valid from `today` (year, month, day) for 30 days.
    pub fn crl_pem(
        &self,
        serials: &[Vec<u8>],
        number: u64,
        today: (i32, u8, u8),
    ) -> Result<String, PkiError> {
        let this_update = rcgen::date_time_ymd(today.0, today.1, today.2);
        let params = CertificateRevocationListParams {
            this_update,
            next_update: this_update + std::time::Duration::from_secs(30 * 86_400),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: this_update,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Writes the CA certificate (its key, which signs revocation lists, by `write_key`).
    pub fn write_cert(&self, path: &Path) -> Result<(), PkiError> {
        write_file(path, &self.cert_pem, 0o644)
    }

    /// Issues a certificate proving `identity`, usable as TLS server and client.
    pub fn issue(&self, identity: &Identity) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity.to_string());
        params.distinguished_name = dn;
        let uri = identity.uri(&self.trust_domain);
        params
            .subject_alt_names
            .push(SanType::URI(uri.as_str().try_into()?));
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_the_identity() {
        let ca = DevCa::generate("isms.test", "test CA").expect("ca");
        let id = Identity::Node("province/44".parse().expect("id"));
        let issued = ca.issue(&id).expect("issue");
        let der = rustls_pemfile::certs(&mut issued.cert_pem.as_bytes())
            .next()
            .expect("one cert")
            .expect("pem");
        assert_eq!(Identity::from_cert_der(der.as_ref(), "isms.test"), Some(id));
        assert_eq!(Identity::from_cert_der(der.as_ref(), "other.test"), None);
    }
}

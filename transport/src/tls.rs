//! Mutual TLS for every connection: the server requires a client certificate from the
//! network's CA and logs every refused handshake; a client verifies the server's chain and
//! that its SPIFFE identity is the one it meant to reach (not a DNS name).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, server::TlsStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use isms_domain::identity::Identity;

use crate::pem::roots;
pub use crate::pem::{TlsError, load_certs, load_key, load_pkcs8_key};
pub use crate::revocation::{Revocable, Revocations};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

/// Installs the ring crypto provider once per process. rustls panics at the first
/// handshake if two providers are compiled in and none is chosen.
pub fn install_crypto_provider() {
    // An Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The files one TLS identity needs.
#[derive(Debug, Clone)]
pub struct TlsPaths<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Server side: our certificate, and client certificates required from `ca`, none of them
/// revoked by the lists in force at the handshake (`revocations`).
pub fn server_config(
    paths: &TlsPaths<'_>,
    revocations: &Revocations,
) -> Result<rustls::ServerConfig, TlsError> {
    let roots = roots(paths.ca)?;
    let verifier = CurrentClientVerifier {
        hints: roots.subjects(),
        current: revocations.clone(),
    };
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(load_certs(paths.cert)?, load_key(paths.key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // Every handshake checks the client's certificate against the lists in force: a
    // resumed session would skip it (a revoked peer back in on an old ticket).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// Client side: our certificate, and a server that must prove `expected` under `ca`.
pub fn client_config(
    paths: &TlsPaths<'_>,
    expected: Identity,
    trust_domain: &str,
) -> Result<rustls::ClientConfig, TlsError> {
    client_config_checking(paths, expected, trust_domain, None)
}

/// As `client_config`, and the server's certificate not revoked by the lists in force.
pub fn client_config_checking(
    paths: &TlsPaths<'_>,
    expected: Identity,
    trust_domain: &str,
    revocations: Option<Revocations>,
) -> Result<rustls::ClientConfig, TlsError> {
    let verifier = SpiffeServerVerifier {
        roots: Arc::new(roots(paths.ca)?),
        expected,
        trust_domain: trust_domain.to_string(),
        algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        revocations,
    };
    let mut config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(load_certs(paths.cert)?, load_key(paths.key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // As the server: every handshake checks the certificate (`server_config`).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Checks the chain like WebPKI does, then the SPIFFE URI instead of a host name: nodes are
/// addressed by ID, and an address can change hands.
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expected: Identity,
    trust_domain: String,
    algorithms: WebPkiSupportedAlgorithms,
    revocations: Option<Revocations>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self
            .revocations
            .as_ref()
            .is_some_and(|r| r.current().revokes(end_entity.as_ref()))
        {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        match Identity::from_cert_der(end_entity.as_ref(), &self.trust_domain) {
            Some(id) if id == self.expected => Ok(ServerCertVerified::assertion()),
            other => {
                tracing::warn!(expected = %self.expected, found = ?other.map(|i| i.to_string()),
                    "server certificate names the wrong identity");
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Checks client certificates with the verifier built on the revocation lists in force.
#[derive(Debug)]
struct CurrentClientVerifier {
    hints: Vec<rustls::DistinguishedName>,
    current: Revocations,
}

impl CurrentClientVerifier {
    fn now(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.current().client_verifier()
    }
}

impl ClientCertVerifier for CurrentClientVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.now()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.now().supported_verify_schemes()
    }
}

/// Accepts TCP connections and completes TLS handshakes concurrently, logging every refused
/// peer, and yields the established streams for tonic's `serve_with_incoming`. A stream
/// whose peer's certificate a later revocation list names is closed (`Revocable`).
pub fn incoming(
    listener: TcpListener,
    config: rustls::ServerConfig,
    revocations: Revocations,
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<Result<Revocable<TlsStream<TcpStream>>, std::io::Error>>
{
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let revocations = revocations.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                match handshake.await {
                    Ok(Ok(stream)) => {
                        let stream = Revocable::watch(stream, addr, revocations);
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(peer = %addr, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::warn!(peer = %addr, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A lazily connecting gRPC channel to `address` (`host:port`) over our own rustls client,
/// so the server is checked by SPIFFE identity.
pub fn channel(address: &str, config: rustls::ClientConfig) -> Result<Channel, TlsError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|_| TlsError::Address(address.to_string()))?
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(5))
        .http2_keep_alive_interval(std::time::Duration::from_secs(10))
        .keep_alive_timeout(std::time::Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20));
    let connector = TlsConnector::from(Arc::new(config));
    let address = address.to_string();
    let connect = tower::service_fn(move |_uri: http::Uri| {
        let connector = connector.clone();
        let address = address.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            // The name is not checked (the verifier checks the SPIFFE URI); rustls needs one
            // for SNI.
            let name = ServerName::try_from("isms.node").map_err(std::io::Error::other)?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connect))
}

/// The identity proven by the client certificate of a request, if any.
pub fn peer_identity<T>(request: &tonic::Request<T>, trust_domain: &str) -> Option<Identity> {
    let certs = request.peer_certs()?;
    let leaf = certs.first()?;
    Identity::from_cert_der(leaf.as_ref(), trust_domain)
}

//! Certificates revoked at runtime: the node's revocation lists (`tls.crl`, PEM,
//! one or more CRLs), reloaded when the file changes, without a restart.
//!
//! Owns reading and checking the file, the client-certificate verifier built on the lists
//! in force, and whether a certificate is revoked by them. A file that does not parse keeps
//! the lists in force and says why; an expired list is used and reported. Must not close
//! connections itself: `tls::incoming` watches the lists for each connection it serves.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::pem::TlsError;

/// How often the file is looked at.
const POLL: Duration = Duration::from_secs(1);

/// The revocation lists in force and the client verifier built on them.
#[derive(Debug)]
pub struct Crls {
    ders: Vec<CertificateRevocationListDer<'static>>,
    lists: Vec<webpki::CertRevocationList<'static>>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

impl Crls {
    fn build(
        roots: &Arc<RootCertStore>,
        ders: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Crls, String> {
        let lists = ders
            .iter()
            .map(|d| {
                webpki::OwnedCertRevocationList::from_der(d.as_ref())
                    .map(webpki::CertRevocationList::from)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("a revocation list does not parse: {e:?}"))?;
        let mut builder = WebPkiClientVerifier::builder(roots.clone());
        if !ders.is_empty() {
            builder = builder
                .with_crls(ders.clone())
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        let client_verifier = builder.build().map_err(|e| e.to_string())?;
        Ok(Crls {
            ders,
            lists,
            client_verifier,
        })
    }

    /// The lists as DER, for checking signatures on directives with them.
    pub fn ders(&self) -> Vec<Vec<u8>> {
        self.ders.iter().map(|d| d.as_ref().to_vec()).collect()
    }

    /// The verifier client certificates are checked with now.
    pub fn client_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.client_verifier.clone()
    }

    /// Whether a list in force, by the certificate's issuer, names its serial number.
    pub fn revokes(&self, cert_der: &[u8]) -> bool {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
            return false;
        };
        // The list's issuer is the name's content; the certificate's, the whole DER.
        self.lists.iter().any(|list| {
            cert.issuer().as_raw().ends_with(list.issuer())
                && matches!(list.find_serial(cert.raw_serial()), Ok(Some(_)))
        })
    }
}

/// The node's revocation lists, as they change.
#[derive(Debug, Clone)]
pub struct Revocations {
    current: watch::Receiver<Arc<Crls>>,
    /// `none`'s sender, kept so that its lists never close.
    _fixed: Option<Arc<watch::Sender<Arc<Crls>>>>,
}

impl Revocations {
    /// No lists: nothing is revoked, ever (a node without `tls.crl`).
    pub fn none(ca: &Path) -> Result<Revocations, TlsError> {
        let roots = Arc::new(crate::pem::roots(ca)?);
        let crls = Crls::build(&roots, Vec::new()).map_err(|what| TlsError::Pem {
            path: ca.display().to_string(),
            what,
        })?;
        let (tx, current) = watch::channel(Arc::new(crls));
        Ok(Revocations {
            current,
            _fixed: Some(Arc::new(tx)),
        })
    }

    /// The lists of `crl` (PEM), checked against the CA of `ca`, reloaded when the file
    /// changes until `shutdown`. A file that does not parse at start is an error; later,
    /// the lists in force stay and the log says why.
    pub fn watch(
        ca: &Path,
        crl: PathBuf,
        shutdown: CancellationToken,
    ) -> Result<Revocations, TlsError> {
        let roots = Arc::new(crate::pem::roots(ca)?);
        let (crls, mut seen) = load(&roots, &crl).map_err(|what| TlsError::Pem {
            path: crl.display().to_string(),
            what,
        })?;
        let (tx, current) = watch::channel(Arc::new(crls));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(POLL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = every.tick() => {}
                }
                let bytes = std::fs::read(&crl).ok();
                if bytes == seen {
                    continue;
                }
                match load(&roots, &crl) {
                    Ok((crls, bytes)) => {
                        tracing::info!(path = %crl.display(), lists = crls.lists.len(), "revocation lists reloaded");
                        seen = bytes;
                        tx.send_replace(Arc::new(crls));
                    }
                    Err(why) => {
                        tracing::error!(path = %crl.display(), error = %why, "revocation lists not reloaded: the lists in force stay");
                        seen = bytes;
                    }
                }
            }
        });
        Ok(Revocations {
            current,
            _fixed: None,
        })
    }

    /// The lists in force now.
    pub fn current(&self) -> Arc<Crls> {
        self.current.borrow().clone()
    }

    /// A receiver that sees each new set of lists.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Crls>> {
        self.current.clone()
    }
}

/// Reads and checks the file: its lists and its bytes.
fn load(roots: &Arc<RootCertStore>, path: &Path) -> Result<(Crls, Option<Vec<u8>>), String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let ders = rustls_pemfile::crls(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if ders.is_empty() && !pem.iter().all(u8::is_ascii_whitespace) {
        return Err("no revocation list (`BEGIN X509 CRL`) in it".into());
    }
    report_expired(path, &ders);
    Ok((Crls::build(roots, ders)?, Some(pem)))
}

/// An expired list is still used (a newer one may be on its way) and said so.
fn report_expired(path: &Path, ders: &[CertificateRevocationListDer<'_>]) {
    let now = x509_parser::time::ASN1Time::now();
    for der in ders {
        if let Ok((_, crl)) = x509_parser::parse_x509_crl(der.as_ref())
            && let Some(next) = crl.next_update()
            && next < now
        {
            tracing::warn!(path = %path.display(), issuer = %crl.issuer(), next_update = %next, "revocation list expired: still used; issue a new one");
        }
    }
}

/// A served connection that is closed once a revocation list names its peer's
/// certificate: reads and writes then fail, and the server drops the connection (a link
/// session or an operator's). A watcher task per connection looks at each new set of lists.
pub struct Revocable<S> {
    inner: S,
    revoked: Arc<Revoked>,
    /// Stops the watcher when the connection goes.
    _watching: tokio_util::sync::DropGuard,
}

#[derive(Default)]
struct Revoked {
    flag: std::sync::atomic::AtomicBool,
    read: futures::task::AtomicWaker,
    write: futures::task::AtomicWaker,
}

impl Revoked {
    fn is_set(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl<S> Revocable<S> {
    /// Watches `revocations` for the certificate of the peer at `addr` (`cert`, DER).
    pub fn new(
        inner: S,
        cert: Option<Vec<u8>>,
        addr: std::net::SocketAddr,
        revocations: Revocations,
    ) -> Self {
        let revoked = Arc::new(Revoked::default());
        let stop = CancellationToken::new();
        if let Some(cert) = cert {
            let revoked = revoked.clone();
            let stop = stop.clone();
            let mut lists = revocations.subscribe();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        r = lists.changed() => if r.is_err() { return },
                    }
                    if lists.borrow_and_update().revokes(&cert) {
                        let peer = crate::pem::identity_of(&cert);
                        tracing::warn!(%addr, peer = %peer, "certificate revoked: connection closed");
                        revoked
                            .flag
                            .store(true, std::sync::atomic::Ordering::Release);
                        revoked.read.wake();
                        revoked.write.wake();
                        return;
                    }
                }
            });
        }
        Revocable {
            inner,
            revoked,
            _watching: stop.drop_guard(),
        }
    }

    fn closed() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the peer's certificate was revoked",
        )
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Revocable<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.revoked.read.register(cx.waker());
        if self.revoked.is_set() {
            return std::task::Poll::Ready(Err(Self::closed()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Revocable<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.revoked.write.register(cx.waker());
        if self.revoked.is_set() {
            return std::task::Poll::Ready(Err(Self::closed()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.revoked.is_set() {
            return std::task::Poll::Ready(Err(Self::closed()));
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.revoked.write.register(cx.waker());
        if self.revoked.is_set() {
            return std::task::Poll::Ready(Err(Self::closed()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Revocable<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl Revocable<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    /// Watches the peer certificate of a TLS stream just accepted.
    pub fn watch(
        stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        addr: std::net::SocketAddr,
        revocations: Revocations,
    ) -> Self {
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
        Revocable::new(stream, cert, addr, revocations)
    }
}

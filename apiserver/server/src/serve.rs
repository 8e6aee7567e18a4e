//! TLS accept and HTTP/1.1 + HTTP/2 serving (rustls, hyper). A client certificate is requested
//! but not judged at the handshake (as upstream's `tls.RequestClientCert`): the connection's
//! chain becomes a [`PeerIdentity`] in every request's extensions and the x509 authenticator
//! (`auth::authn`) verifies it, so a bad certificate gets a 401 Status, not a TLS alert.
//!
//! Hostile clients are bounded here ([`ConnLimits`]): a cap on open connections, a TLS
//! handshake timeout, a header-read timeout (also the HTTP/1 keep-alive idle timeout), HTTP/2
//! keep-alive pings and an idle GOAWAY (90 s without a request in progress), a stream cap and a
//! header list size bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::authn::{AcceptAnyClientCert, PeerCerts};
use crate::certs::Pki;

/// The client certificate chain of a connection (None: no certificate), verified lazily once
/// per connection by the x509 authenticator.
#[derive(Clone, Debug, Default)]
pub struct PeerIdentity(pub Option<Arc<PeerCerts>>);

/// The rustls server configuration: serving certificate, optional client certificates verified
/// against the client CA, ALPN h2 and http/1.1.
pub fn tls_config(pki: &Pki) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = rustls_pemfile::certs(&mut pki.serving_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the serving certificate")?;
    let key = rustls_pemfile::private_key(&mut pki.serving_key_pem.as_bytes())
        .context("parsing the serving key")?
        .context("no private key in the serving key file")?;
    let mut roots = RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pki.client_ca_pem.as_bytes()) {
        roots
            .add(c.context("parsing the client CA")?)
            .context("adding the client CA")?;
    }
    // The front-proxy CA too: the handshake's acceptable-CA hints name it, so a front proxy
    // choosing among certificates by issuer sends its proxy certificate.
    let front_proxy_ca = pki.front_proxy.as_ref().map_or("", |f| f.ca_pem.as_str());
    for c in rustls_pemfile::certs(&mut front_proxy_ca.as_bytes()) {
        roots
            .add(c.context("parsing the request-header CA")?)
            .context("adding the request-header CA")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
    let verifier = Arc::new(AcceptAnyClientCert(verifier));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("serving certificate")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Connection limits and timeouts of [`serve`].
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// Open connections at most. When all are taken the server stops accepting, so further
    /// clients wait in the kernel's accept backlog until a connection closes.
    pub max_connections: usize,
    /// A client must finish its TLS handshake within this time.
    pub tls_handshake_timeout: Duration,
    /// HTTP/1: a request's headers must arrive within this time, counted from the moment the
    /// server starts waiting for them, so it is also the keep-alive idle timeout. HTTP/2: the
    /// first request's headers must arrive within this time.
    pub header_read_timeout: Duration,
    /// HTTP/2: ping an idle connection this often ...
    pub h2_keep_alive_interval: Duration,
    /// ... and close it when the ping is not answered within this time.
    pub h2_keep_alive_timeout: Duration,
    /// HTTP/2: concurrent streams per connection (Go's default, which kube-apiserver keeps).
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: the largest header list a client may send.
    pub h2_max_header_list_size: u32,
    /// HTTP/2: a connection with no request in progress for this long gets a GOAWAY (Go's
    /// `IdleTimeout`, 90 s in kube-apiserver).
    pub h2_idle_timeout: Duration,
    /// How long a graceful shutdown waits for open connections.
    pub drain_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            h2_keep_alive_interval: Duration::from_secs(30),
            h2_keep_alive_timeout: Duration::from_secs(20),
            h2_max_concurrent_streams: 250,
            h2_max_header_list_size: 64 * 1024,
            h2_idle_timeout: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The HTTP/1.1 and HTTP/2 connection builders, configured once from the limits.
struct Builders {
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    h2_idle_timeout: Duration,
}

impl Builders {
    fn new(limits: &ConnLimits) -> Self {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(limits.header_read_timeout);
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(limits.h2_keep_alive_interval)
            .keep_alive_timeout(limits.h2_keep_alive_timeout)
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(limits.h2_max_header_list_size);
        Self {
            h1,
            h2,
            header_read_timeout: limits.header_read_timeout,
            h2_idle_timeout: limits.h2_idle_timeout,
        }
    }
}

/// Accepts connections until `shutdown` resolves, then drains open connections
/// (`limits.drain_timeout` at most). A permit of the connection semaphore is taken before each
/// accept and held by the connection's task until it ends.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let builders = Arc::new(Builders::new(&limits));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let conn = Conn {
            acceptor: acceptor.clone(),
            app: app.clone(),
            builders: builders.clone(),
            tls_handshake_timeout: limits.tls_handshake_timeout,
            stop: stop_rx.clone(),
        };
        tokio::spawn(async move {
            conn.run(tcp, peer).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection task holds one permit: all permits back means all connections closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::info!("graceful shutdown timed out; closing remaining connections");
    }
    Ok(())
}

/// The requests of one connection: how many are in progress (until their response body ends)
/// and since when none is.
struct Activity {
    started: AtomicBool,
    active: AtomicUsize,
    opened: std::time::Instant,
    /// Milliseconds after `opened` when the last request ended.
    last_end_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            opened: std::time::Instant::now(),
            last_end_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.started.store(true, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(self.clone())
    }

    fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// How long no request has been in progress (None while one is).
    fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        Some(self.opened.elapsed().saturating_sub(since))
    }
}

/// One request in progress; dropped with its response body.
struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let now = u64::try_from(a.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last_end_ms.store(now, Ordering::Release);
        a.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds `guard` until the body ends or is dropped (the request counted
/// as in progress, an audit event completed at the end of a watch, ...).
pub(crate) struct GuardedBody<G: Send + 'static> {
    inner: axum::body::Body,
    _guard: G,
}

impl<G: Send + Unpin + 'static> GuardedBody<G> {
    /// `inner`, keeping `guard` alive as long as it.
    pub(crate) fn wrap(inner: axum::body::Body, guard: G) -> axum::body::Body {
        axum::body::Body::new(GuardedBody {
            inner,
            _guard: guard,
        })
    }
}

impl<G: Send + Unpin + 'static> http_body::Body for GuardedBody<G> {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What one connection's task needs.
struct Conn {
    acceptor: TlsAcceptor,
    app: axum::Router,
    builders: Arc<Builders>,
    tls_handshake_timeout: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Conn {
    /// TLS handshake (bounded), then HTTP/2 when ALPN chose it, HTTP/1.1 otherwise (as Go's
    /// server does over TLS); on shutdown the connection finishes its requests and closes.
    async fn run(mut self, tcp: tokio::net::TcpStream, peer: std::net::SocketAddr) {
        let tls = match tokio::time::timeout(self.tls_handshake_timeout, self.acceptor.accept(tcp))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let (_, session) = tls.get_ref();
        let identity = PeerIdentity(
            session
                .peer_certificates()
                .filter(|c| !c.is_empty())
                .map(|c| Arc::new(PeerCerts::new(c))),
        );
        let h2 = session.alpn_protocol() == Some(b"h2");
        // HTTP/2 has no header-read or idle timer of its own: the service tracks requests.
        let activity = Arc::new(Activity::new());
        let tracker = activity.clone();
        let app = self.app.clone();
        let svc = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let guard = tracker.begin();
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(identity.clone());
            req.extensions_mut()
                .insert(crate::audit::RemoteAddr(peer.ip().to_canonical()));
            let call = app.clone().oneshot(req);
            async move {
                let resp = call.await?;
                Ok::<_, std::convert::Infallible>(resp.map(|inner| GuardedBody::wrap(inner, guard)))
            }
        });
        let svc = hyper_util::service::TowerToHyperService::new(svc);
        let io = TokioIo::new(tls);
        let result = if h2 {
            let conn = self.builders.h2.serve_connection(io, svc);
            tokio::pin!(conn);
            let first_deadline = tokio::time::sleep(self.builders.header_read_timeout);
            tokio::pin!(first_deadline);
            let idle_timeout = self.builders.h2_idle_timeout;
            let idle = tokio::time::sleep(idle_timeout);
            tokio::pin!(idle);
            let mut draining = false;
            // A `select!` precondition is only evaluated when the loop enters it, so the
            // deadline's branch checks again when it fires: a request that began meanwhile
            // (and may still be running, e.g. waiting for a webhook) keeps the connection.
            let mut awaiting_first = true;
            loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = &mut first_deadline, if awaiting_first => {
                        if activity.started() {
                            awaiting_first = false;
                            continue;
                        }
                        tracing::debug!(%peer, "no HTTP/2 request headers in time; closing");
                        return;
                    }
                    _ = &mut idle, if !draining => {
                        // GOAWAY once no stream was open for the idle timeout (Go's IdleTimeout).
                        match activity.idle_for() {
                            Some(d) if d >= idle_timeout => {
                                tracing::debug!(%peer, "HTTP/2 connection idle; closing");
                                draining = true;
                                conn.as_mut().graceful_shutdown();
                            }
                            Some(d) => idle.as_mut().reset(tokio::time::Instant::now() + (idle_timeout - d)),
                            None => idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout),
                        }
                    }
                    _ = self.stop.changed(), if !draining => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        } else {
            let conn = self.builders.h1.serve_connection(io, svc).with_upgrades();
            tokio::pin!(conn);
            let mut draining = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = self.stop.changed(), if !draining => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

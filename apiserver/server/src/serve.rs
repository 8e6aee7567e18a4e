//! TLS accept and HTTP/1.1 + HTTP/2 serving (rustls, hyper). A client certificate is requested
//! but not judged at the handshake (as upstream's `tls.RequestClientCert`): the connection's
//! chain becomes a [`PeerIdentity`] in every request's extensions and the x509 authenticator
//! (`auth::authn`) verifies it, so a bad certificate gets a 401 Status, not a TLS alert.
//!
//! Hostile clients are bounded here ([`ConnLimits`]): a cap on open connections, a TLS
//! handshake timeout, a header-read timeout counted from the first byte of a request (as Go's
//! `ReadHeaderTimeout`), an idle timeout of 90 s without a request in progress (Go's
//! `IdleTimeout`: HTTP/1 keep-alive connections are closed, HTTP/2 ones get a GOAWAY), HTTP/2
//! keep-alive pings, a stream cap and a header list size bound.

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
    /// HTTP/1: a request's headers must arrive within this time, counted from the connection's
    /// start for the first request and from the first byte of each later one (an idle
    /// keep-alive connection waits for `idle_timeout` instead). HTTP/2: the first request's
    /// headers must arrive within this time.
    pub header_read_timeout: Duration,
    /// HTTP/2: ping an idle connection this often ...
    pub h2_keep_alive_interval: Duration,
    /// ... and close it when the ping is not answered within this time.
    pub h2_keep_alive_timeout: Duration,
    /// HTTP/2: concurrent streams per connection (Go's default, which kube-apiserver keeps).
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: the largest header list a client may send.
    pub h2_max_header_list_size: u32,
    /// A connection with no request in progress for this long is closed (HTTP/1) or gets a
    /// GOAWAY (HTTP/2): Go's `IdleTimeout`, 90 s in kube-apiserver, as clients' pools keep idle
    /// connections 90 s. Shorter than a client's polling interval would make every poll race
    /// the server's close (node leases renew every 10 s).
    pub idle_timeout: Duration,
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
            idle_timeout: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The HTTP/1.1 and HTTP/2 connection builders, configured once from the limits.
struct Builders {
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Builders {
    fn new(limits: &ConnLimits) -> Self {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        // hyper's own header timer also runs while a keep-alive connection waits for its next
        // request; the connection's watchdog (`Activity::h1_check`) times both instead.
        h1.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(None);
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
            idle_timeout: limits.idle_timeout,
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

/// No bytes of a next request have arrived (see [`Activity::pending_ms`]).
const NOT_PENDING: u64 = u64::MAX;

/// What an HTTP/1 connection's watchdog does next.
#[derive(Debug, PartialEq, Eq)]
enum H1Check {
    /// Look again after this long.
    Wait(Duration),
    /// Idle for the idle timeout: close it.
    Idle,
    /// A request's headers did not arrive in time: drop the connection.
    HeadersLate,
}

/// The requests of one connection: how many are in progress (until their response body ends)
/// and since when none is.
struct Activity {
    started: AtomicBool,
    active: AtomicUsize,
    opened: std::time::Instant,
    /// Milliseconds after `opened` when the last request ended.
    last_end_ms: AtomicU64,
    /// Milliseconds after `opened` when bytes arrived while no request was in progress (the
    /// start of a next request whose headers are not complete yet); [`NOT_PENDING`] when none
    /// did. A new connection waits for its first request's headers from its start.
    pending_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            opened: std::time::Instant::now(),
            last_end_ms: AtomicU64::new(0),
            pending_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NOT_PENDING - 1)
    }

    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.started.store(true, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::AcqRel);
        self.pending_ms.store(NOT_PENDING, Ordering::Release);
        ActiveGuard(self.clone())
    }

    /// Bytes arrived from the client.
    fn bytes_read(&self) {
        if self.active.load(Ordering::Acquire) == 0
            && self.pending_ms.load(Ordering::Relaxed) == NOT_PENDING
        {
            self.pending_ms.store(self.now_ms(), Ordering::Release);
        }
    }

    /// HTTP/1 (Go's `ReadHeaderTimeout` and `IdleTimeout`): headers once begun must be complete
    /// within `header`; a connection with nothing in progress lives `idle`.
    fn h1_check(&self, header: Duration, idle: Duration) -> H1Check {
        if self.active.load(Ordering::Acquire) > 0 {
            return H1Check::Wait(header.min(idle));
        }
        let now = Duration::from_millis(self.now_ms());
        let pending = self.pending_ms.load(Ordering::Acquire);
        if pending != NOT_PENDING {
            let waited = now.saturating_sub(Duration::from_millis(pending));
            return if waited >= header {
                H1Check::HeadersLate
            } else {
                H1Check::Wait(header - waited)
            };
        }
        let since = Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        let idle_for = now.saturating_sub(since);
        if idle_for >= idle {
            H1Check::Idle
        } else {
            // Bytes may arrive meanwhile: look again within the header timeout.
            H1Check::Wait((idle - idle_for).min(header))
        }
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
        let io = ReadWatch {
            inner: tls,
            activity: activity.clone(),
        };
        let result = if h2 {
            let io = TokioIo::new(crate::coalesce::Coalesce::new(io));
            let conn = self.builders.h2.serve_connection(io, svc);
            tokio::pin!(conn);
            let first_deadline = tokio::time::sleep(self.builders.header_read_timeout);
            tokio::pin!(first_deadline);
            let idle_timeout = self.builders.idle_timeout;
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
            let conn = self
                .builders
                .h1
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades();
            tokio::pin!(conn);
            let (header, idle) = (
                self.builders.header_read_timeout,
                self.builders.idle_timeout,
            );
            let check = tokio::time::sleep(header.min(idle));
            tokio::pin!(check);
            let mut draining = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = &mut check => match activity.h1_check(header, idle) {
                        H1Check::Wait(d) => check.as_mut().reset(tokio::time::Instant::now() + d),
                        H1Check::HeadersLate => {
                            tracing::debug!(%peer, "request headers not received in time; closing");
                            return;
                        }
                        // A graceful close of an idle HTTP/1 connection is immediate.
                        H1Check::Idle if draining => return,
                        H1Check::Idle => {
                            tracing::debug!(%peer, "HTTP/1 connection idle; closing");
                            draining = true;
                            conn.as_mut().graceful_shutdown();
                            check.as_mut().reset(tokio::time::Instant::now() + header);
                        }
                    },
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

/// The connection's byte stream, telling its [`Activity`] when bytes arrive.
struct ReadWatch<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ReadWatch<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ReadWatch<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_idle_and_header_timeouts_follow_go() {
        let (header, idle) = (Duration::from_secs(10), Duration::from_secs(90));
        let a = Arc::new(Activity::new());
        // A new connection waits for its first request's headers from its start.
        assert!(matches!(a.h1_check(header, idle), H1Check::Wait(d) if d <= header));
        let g = a.begin();
        assert_eq!(a.h1_check(header, idle), H1Check::Wait(header));
        drop(g);
        // Idle between requests: no header timer, the idle timeout counts.
        assert!(matches!(a.h1_check(header, idle), H1Check::Wait(d) if d <= header));
        a.last_end_ms.store(0, Ordering::Release);
        let a2 = Activity {
            opened: std::time::Instant::now() - Duration::from_secs(30),
            ..Activity::new()
        };
        a2.pending_ms.store(NOT_PENDING, Ordering::Release);
        a2.last_end_ms.store(0, Ordering::Release);
        // 30 s idle (past the header timeout) is not a reason to close ...
        assert!(matches!(a2.h1_check(header, idle), H1Check::Wait(_)));
        // ... 90 s is.
        let a3 = Activity {
            opened: std::time::Instant::now() - Duration::from_secs(91),
            ..Activity::new()
        };
        a3.pending_ms.store(NOT_PENDING, Ordering::Release);
        assert_eq!(a3.h1_check(header, idle), H1Check::Idle);
        // Bytes of a next request that stall past the header timeout close it.
        a3.bytes_read();
        assert!(matches!(a3.h1_check(header, idle), H1Check::Wait(_)));
        a3.pending_ms.store(a3.now_ms() - 11_000, Ordering::Release);
        assert_eq!(a3.h1_check(header, idle), H1Check::HeadersLate);
    }
}

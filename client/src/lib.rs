//! The API clients of ferrokube's own components. They talk to the API server over HTTP like
//! any client, and behave like client-go's REST client where it matters under load:
//!
//! - **429 with `Retry-After` is retried** after that long (client-go's `checkWait`: at most
//!   10 retries, any verb whose body can be sent again). The API server answers 429 when its
//!   `--max-mutating-requests-inflight` / `--max-requests-inflight` budget is spent; without
//!   the retry a burst of pod creates or lease renewals would simply fail.
//! - **A bound on requests in flight per client** ([`MAX_IN_FLIGHT`]): a controller firing
//!   hundreds of creates at once (a ReplicaSet's slow-start batch) waits here instead of
//!   opening hundreds of connections (kube's HTTP/1 pool opens one per concurrent request, each
//!   a TLS handshake) and spending the server's whole in-flight budget. client-go bounds the
//!   same with a QPS limiter (20/s for the controller-manager); a concurrency bound keeps the
//!   throughput without a fixed rate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder, ConfigExt};
use rustls::pki_types::ServerName;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

/// Requests one client has in flight at most.
pub const MAX_IN_FLIGHT: usize = 32;
/// client-go's `maxRetries` for 429 responses.
const MAX_RETRIES: u32 = 10;
/// The longest `Retry-After` honoured (the server sends 1 s).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// A client for `config` with [`ClientLayer`] (a user agent is added when given), over kube's
/// own stack: HTTP/1.1, one connection per request in flight and per watch.
pub fn client(mut config: kube::Config, user_agent: Option<&str>) -> kube::Result<kube::Client> {
    if let Some(ua) = user_agent.and_then(|ua| http::HeaderValue::from_str(ua).ok()) {
        config.headers.push((http::header::USER_AGENT, ua));
    }
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&ClientLayer::new(MAX_IN_FLIGHT))
        .build())
}

/// [`client`] speaking HTTP/2 when the server offers it (ALPN), as client-go does: its watches
/// and requests share one connection (up to the server's stream limit; the hyper pool does not
/// open a second connection, requests past the limit wait). A kubeconfig naming a proxy or an
/// exec plugin gets kube's HTTP/1.1 stack.
///
/// The controller-manager's controllers use it (idle, they held ~100 connections to the server
/// over HTTP/1.1); the scheduler and node agents use [`client`]: with everything on one
/// connection the scheduler's burst of binds after releasing 1,000 pending pods ran ~20%
/// slower. The benchmark uses it for client-go-like watchers.
pub fn client_http2(
    mut config: kube::Config,
    user_agent: Option<&str>,
) -> kube::Result<kube::Client> {
    // A proxy, or credentials from an exec plugin (kube renews the client when they expire).
    if config.proxy_url.is_some() || config.auth_info.exec.is_some() {
        return client(config, user_agent);
    }
    if let Some(ua) = user_agent.and_then(|ua| http::HeaderValue::from_str(ua).ok()) {
        config.headers.push((http::header::USER_AGENT, ua));
    }
    let http = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_keep_alive_interval(H2_PING_INTERVAL)
        .http2_keep_alive_timeout(H2_PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
        .http2_initial_stream_window_size(H2_STREAM_WINDOW)
        .build(https_connector(&config)?);
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(ClientLayer::new(MAX_IN_FLIGHT))
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// client-go's HTTP/2 health check: a ping after 30 s without frames, the connection closed
/// when its answer takes longer than 15 s (`ReadIdleTimeout`, `PingTimeout`). It stands in for
/// kube's read timeout, which would end every stream of an idle connection at once.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(15);
/// Flow-control windows as Go's HTTP/2 transport (1 GiB per connection, 4 MiB per stream): a
/// watch whose reader pauses holds its own stream, not the connection's other streams. Memory
/// is spent only on data received and not yet read.
const H2_CONNECTION_WINDOW: u32 = 1 << 30;
const H2_STREAM_WINDOW: u32 = 4 << 20;

/// HTTPS (HTTP/2 or HTTP/1.1 by ALPN) with the kubeconfig's CA, client certificate and
/// server name, as kube's connector.
fn https_connector(config: &kube::Config) -> kube::Result<HttpsConnector<HttpConnector>> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            let name: ServerName<'static> = name.clone().try_into().map_err(|e| {
                kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e))
            })?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(builder.enable_all_versions().wrap_connector(http))
}

/// The tower layer of [`client`]: 429 retries and a bound on requests in flight.
#[derive(Clone)]
pub struct ClientLayer {
    permits: Arc<Semaphore>,
}

impl ClientLayer {
    /// At most `max_in_flight` requests at once through the layered service.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientService {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            permits: self.permits.clone(),
        }
    }
}

/// See [`ClientLayer`]. The inner service is shared (locked only to start a call: the
/// returned futures run concurrently) so that a retry can call it again.
pub struct ClientService<S> {
    inner: Arc<tokio::sync::Mutex<S>>,
    permits: Arc<Semaphore>,
}

impl<S> Clone for ClientService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            permits: self.permits.clone(),
        }
    }
}

/// How long a 429 asks to wait: its `Retry-After` seconds. client-go retries only when the
/// header is there (an eviction refused by a PodDisruptionBudget is a 429 without one, and is
/// the caller's to handle).
fn retry_after<B>(resp: &Response<B>) -> Option<Duration> {
    resp.headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// A copy of `req` to send again (None when its body is a stream).
fn copy(req: &Request<Body>) -> Option<Request<Body>> {
    let body = req.body().try_clone()?;
    let mut out = Request::new(body);
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.version_mut() = req.version();
    *out.headers_mut() = req.headers().clone();
    Some(out)
}

impl<S, B> Service<Request<Body>> for ClientService<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is awaited per request below, on a clone (the permit comes first).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let permits = self.permits.clone();
        Box::pin(async move {
            let mut req = req;
            let mut attempt = 0;
            loop {
                let again = (attempt < MAX_RETRIES).then(|| copy(&req)).flatten();
                let resp = {
                    // Never closed: the semaphore lives as long as the layer.
                    let _permit = permits.acquire().await.ok();
                    let call = {
                        let mut svc = inner.lock().await;
                        svc.ready().await?.call(req)
                    };
                    call.await?
                };
                let wait = (resp.status() == StatusCode::TOO_MANY_REQUESTS)
                    .then(|| retry_after(&resp))
                    .flatten();
                match (again, wait) {
                    (Some(next), Some(wait)) => {
                        tracing::debug!(uri = %next.uri(), attempt, ?wait, "429: retrying");
                        drop(resp);
                        tokio::time::sleep(wait).await;
                        req = next;
                        attempt += 1;
                    }
                    _ => return Ok(resp),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers 429 to the first `busy` requests (with `Retry-After: 0` when `retry_after`; a
    /// PDB refusing an eviction sends none), then 201 with the body it got.
    #[derive(Clone)]
    struct Busy {
        seen: Arc<AtomicUsize>,
        busy: usize,
        retry_after: bool,
        in_flight: Arc<AtomicUsize>,
        max_seen: Arc<AtomicUsize>,
    }

    impl Service<Request<Body>> for Busy {
        type Response = Response<Vec<u8>>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Response<Vec<u8>>, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<Body>) -> Self::Future {
            let me = self.clone();
            Box::pin(async move {
                let now = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                me.max_seen.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                me.in_flight.fetch_sub(1, Ordering::SeqCst);
                let n = me.seen.fetch_add(1, Ordering::SeqCst);
                let body = req
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default()
                    .to_vec();
                let resp = if n < me.busy {
                    let r = Response::builder().status(429);
                    let r = if me.retry_after {
                        r.header("Retry-After", "0")
                    } else {
                        r
                    };
                    r.body(Vec::new())
                } else {
                    Response::builder().status(201).body(body)
                };
                Ok(resp.unwrap_or_default())
            })
        }
    }

    fn busy(n: usize) -> Busy {
        Busy {
            seen: Arc::new(AtomicUsize::new(0)),
            busy: n,
            retry_after: true,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_seen: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn post(body: &'static [u8]) -> Request<Body> {
        let mut req = Request::new(Body::from(body.to_vec()));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = http::Uri::from_static("/api/v1/namespaces/default/pods");
        req
    }

    #[tokio::test]
    async fn too_many_requests_is_retried_with_the_same_body() {
        let svc = busy(3);
        let seen = svc.seen.clone();
        let mut s = ClientLayer::new(4).layer(svc);
        let resp = s.call(post(b"pod")).await.unwrap_or_default();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.body(), b"pod");
        assert_eq!(seen.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_429_without_retry_after_is_returned() {
        let svc = Busy {
            retry_after: false,
            ..busy(1)
        };
        let seen = svc.seen.clone();
        let mut s = ClientLayer::new(4).layer(svc);
        let resp = s.call(post(b"pod")).await.unwrap_or_default();
        assert_eq!(resp.status(), 429);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_end_after_ten() {
        let svc = busy(100);
        let seen = svc.seen.clone();
        let mut s = ClientLayer::new(4).layer(svc);
        let resp = s.call(post(b"pod")).await.unwrap_or_default();
        assert_eq!(resp.status(), 429);
        assert_eq!(seen.load(Ordering::SeqCst), 11);
    }

    #[tokio::test]
    async fn requests_in_flight_are_bounded() {
        let svc = busy(0);
        let max_seen = svc.max_seen.clone();
        let s = ClientLayer::new(3).layer(svc);
        let calls = (0..20).map(|_| {
            let mut s = s.clone();
            async move { s.call(post(b"x")).await.unwrap_or_default().status() }
        });
        let codes = futures_join(calls).await;
        assert!(codes.iter().all(|c| *c == 201), "{codes:?}");
        assert_eq!(max_seen.load(Ordering::SeqCst), 3);
    }

    async fn futures_join<F: Future<Output = StatusCode> + Send + 'static>(
        calls: impl Iterator<Item = F>,
    ) -> Vec<StatusCode> {
        let handles: Vec<_> = calls.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        }
        out
    }
}

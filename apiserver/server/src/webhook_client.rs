//! The one HTTPS client for endpoints that Kubernetes objects configure: admission webhooks
//! (`clientConfig` of Validating/MutatingWebhookConfiguration) and aggregated API servers
//! (APIService `spec.service`). Upstream `k8s.io/apiserver/pkg/util/webhook` (ClientManager)
//! plus the aggregator's endpoint routing (`--enable-aggregator-routing`).
//!
//! - Targets: `url` (https only) or `service {namespace, name, port, path}`. A service is
//!   resolved through its EndpointSlices (ready endpoints, the port named as the service
//!   port), else its v1 Endpoints, else `externalName` — never a ClusterIP, which nothing
//!   routes here. The TLS server name of a service is `<name>.<namespace>.svc`, as upstream.
//! - TLS: `caBundle` (PEM) is the trust root; without one the system roots are used. A client
//!   identity (the aggregator's `--proxy-client-cert-file`) is presented when configured.
//! - Hostile endpoints: every call has a deadline covering connect, TLS, headers and the whole
//!   body; response bodies are bounded ([`MAX_RESPONSE_BYTES`]); connections are reused from a
//!   bounded pool only after a complete, successful exchange.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, Uri, header};
use http_body_util::{BodyExt, Limited};
use hyper::client::conn::http1::SendRequest;
use serde_json::Value;
use sha2::Digest;

use crate::admission::StoreReader;
use crate::registry::Registry;
use crate::registry::ResourceHandle;

/// Bodies a webhook may answer at most (an AdmissionReview with a JSON patch of a 3 MiB
/// object, base64-encoded, fits).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Idle connections kept per endpoint.
const POOL_PER_KEY: usize = 16;
/// Endpoints with idle connections kept at most.
const POOL_KEYS: usize = 256;
/// EndpointSlices of one service read at most.
const MAX_SLICES: usize = 1000;

/// Why a call failed (each becomes upstream's `failed calling webhook` / proxy error text).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The client configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The service could not be resolved to an address.
    #[error("{0}")]
    Resolve(String),
    /// Connecting, TLS or HTTP failed.
    #[error("Post \"{url}\": {cause}")]
    Transport { url: String, cause: String },
    /// The deadline passed.
    #[error("Post \"{url}\": context deadline exceeded")]
    Timeout { url: String },
    /// The body was larger than allowed.
    #[error("the response body exceeded {limit} bytes")]
    TooLarge { limit: usize },
    /// A non-2xx answer.
    #[error("the server responded with the status code {code} but did not return more information")]
    Status { code: u16 },
    /// The body was not the JSON expected.
    #[error("decoding the response: {0}")]
    Decode(#[source] serde_json::Error),
}

/// `WebhookClientConfig` (admissionregistration) / APIService `spec.service` + `caBundle`.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub target: Target,
    /// PEM bytes (decoded from base64).
    pub ca_bundle: Option<Vec<u8>>,
    /// APIService `insecureSkipTLSVerify`.
    pub insecure: bool,
}

/// Where a call goes.
#[derive(Clone, Debug)]
pub enum Target {
    Url(Uri),
    Service {
        namespace: String,
        name: String,
        port: u16,
        path: String,
    },
}

impl ClientConfig {
    /// Parses an admissionregistration `clientConfig` (`url` | `service`, `caBundle`).
    pub fn from_webhook(v: &Value) -> Result<ClientConfig, CallError> {
        let ca_bundle = decode_ca(v.get("caBundle"))?;
        if let Some(url) = v.get("url").and_then(Value::as_str) {
            let uri: Uri = url
                .parse()
                .map_err(|e| CallError::Config(format!("invalid url {url:?}: {e}")))?;
            if uri.scheme_str() != Some("https") || uri.host().is_none() {
                return Err(CallError::Config(format!(
                    "invalid url {url:?}: must be https with a host"
                )));
            }
            return Ok(ClientConfig {
                target: Target::Url(uri),
                ca_bundle,
                insecure: false,
            });
        }
        let Some(svc) = v.get("service") else {
            return Err(CallError::Config(
                "exactly one of url or service is required".into(),
            ));
        };
        Ok(ClientConfig {
            target: service_target(svc),
            ca_bundle,
            insecure: false,
        })
    }

    /// The URL as upstream prints it in errors (`https://name.ns.svc:443/path`).
    pub fn display_url(&self, path_and_query: &str) -> String {
        match &self.target {
            Target::Url(u) => {
                let base = u.to_string();
                join_query(&base, path_and_query)
            }
            Target::Service {
                namespace,
                name,
                port,
                path,
            } => join_query(
                &format!("https://{name}.{namespace}.svc:{port}{path}"),
                path_and_query,
            ),
        }
    }
}

fn join_query(base: &str, extra: &str) -> String {
    if extra.is_empty() {
        base.to_string()
    } else if extra.starts_with('?') && base.contains('?') {
        format!("{base}&{}", &extra[1..])
    } else {
        format!("{base}{extra}")
    }
}

/// A `service` reference (`{namespace, name, port, path}`; port 443 by default).
pub fn service_target(svc: &Value) -> Target {
    let s = |k: &str| svc.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let port = svc
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(443);
    Target::Service {
        namespace: s("namespace"),
        name: s("name"),
        port,
        path: s("path"),
    }
}

/// Decodes a base64 `caBundle` (JSON `[]byte`).
pub fn decode_ca(v: Option<&Value>) -> Result<Option<Vec<u8>>, CallError> {
    match v.and_then(Value::as_str) {
        Some(s) if !s.is_empty() => base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map(Some)
            .map_err(|e| CallError::Config(format!("invalid caBundle: {e}"))),
        _ => Ok(None),
    }
}

/// A resolved endpoint: where to connect, what name to verify, what path to request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Endpoint {
    host: String,
    port: u16,
    server_name: String,
    /// The path prefix (URL path, or the service `path`), without query.
    path: String,
    /// The URL's query, if any.
    query: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    host: String,
    port: u16,
    server_name: String,
    tls: [u8; 32],
}

/// The client: TLS configurations by CA, a pool of idle HTTP/1.1 connections, and the
/// service resolver.
pub struct WebhookClient {
    reader: StoreReader,
    services: Option<Arc<ResourceHandle>>,
    slices: Option<Arc<ResourceHandle>>,
    endpoints: Option<Arc<ResourceHandle>>,
    /// The identity presented to aggregated API servers (PEM chain, PEM key).
    proxy_identity: Option<(Vec<u8>, Vec<u8>)>,
    tls: Mutex<HashMap<[u8; 32], Arc<rustls::ClientConfig>>>,
    pool: Mutex<HashMap<PoolKey, Vec<SendRequest<Body>>>>,
}

impl WebhookClient {
    /// A client resolving services through `reader`.
    pub fn new(
        reader: StoreReader,
        registry: &Registry,
        proxy_identity: Option<(Vec<u8>, Vec<u8>)>,
    ) -> WebhookClient {
        WebhookClient {
            reader,
            services: registry.get("", "v1", "services").cloned(),
            slices: registry
                .get("discovery.k8s.io", "v1", "endpointslices")
                .cloned(),
            endpoints: registry.get("", "v1", "endpoints").cloned(),
            proxy_identity,
            tls: Mutex::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
        }
    }

    /// POSTs a JSON body and decodes the JSON answer, all within `timeout`. `query` is
    /// appended to the configured URL (upstream adds `?timeout=Ns`).
    pub async fn post_json(
        &self,
        cfg: &ClientConfig,
        query: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let url = cfg.display_url(query);
        let fut = async {
            let ep = self.resolve(cfg).await?;
            let (key, tls) = self.tls_for(cfg, &ep, false)?;
            let path = request_path(&ep, query);
            let bytes = Bytes::from(serde_json::to_vec(body).map_err(CallError::Decode)?);
            let build = |bytes: Bytes| {
                Request::post(path.as_str())
                    .header(header::HOST, authority(&ep))
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::ACCEPT, "application/json")
                    .body(Body::from(bytes))
                    .map_err(|e| transport(&url, e))
            };
            // A pooled connection first; if it was closed under us, one fresh attempt.
            let resp = match self.pooled(&key).await {
                Some(mut s) => match s.send_request(build(bytes.clone())?).await {
                    Ok(r) => (r, s),
                    Err(_) => {
                        let mut s = self.connect(&ep, tls, &url).await?;
                        (
                            s.send_request(build(bytes)?)
                                .await
                                .map_err(|e| transport(&url, e))?,
                            s,
                        )
                    }
                },
                None => {
                    let mut s = self.connect(&ep, tls, &url).await?;
                    (
                        s.send_request(build(bytes)?)
                            .await
                            .map_err(|e| transport(&url, e))?,
                        s,
                    )
                }
            };
            let (resp, sender) = resp;
            let status = resp.status();
            let data = read_limited(resp.into_body(), MAX_RESPONSE_BYTES).await?;
            if !status.is_success() {
                return Err(CallError::Status {
                    code: status.as_u16(),
                });
            }
            self.give_back(key, sender);
            serde_json::from_slice(&data).map_err(CallError::Decode)
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout { url }),
        }
    }

    /// Sends one request to an aggregated API server (a fresh connection, presenting the
    /// proxy identity), streaming both bodies. `connect_timeout` bounds the connection and
    /// the response head; the body streams for as long as the backend sends it.
    pub async fn proxy(
        &self,
        cfg: &ClientConfig,
        mut req: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, CallError> {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let url = cfg.display_url(&pq);
        let fut = async {
            let ep = self.resolve(cfg).await?;
            let (_, tls) = self.tls_for(cfg, &ep, true)?;
            let mut sender = self.connect(&ep, tls, &url).await?;
            *req.uri_mut() = request_path(&ep, &pq)
                .parse()
                .map_err(|e| transport(&url, e))?;
            if let Ok(v) = http::HeaderValue::from_str(&authority(&ep)) {
                req.headers_mut().insert(header::HOST, v);
            }
            sender
                .send_request(req)
                .await
                .map_err(|e| transport(&url, e))
        };
        match tokio::time::timeout(connect_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout { url }),
        }
    }

    async fn resolve(&self, cfg: &ClientConfig) -> Result<Endpoint, CallError> {
        match &cfg.target {
            Target::Url(u) => {
                let host = u.host().unwrap_or("").trim_matches(['[', ']']).to_string();
                Ok(Endpoint {
                    server_name: host.clone(),
                    host,
                    port: u.port_u16().unwrap_or(443),
                    path: u.path().to_string(),
                    query: u.query().map(str::to_string),
                })
            }
            Target::Service {
                namespace,
                name,
                port,
                path,
            } => {
                let (host, p) = self.resolve_service(namespace, name, *port).await?;
                Ok(Endpoint {
                    host,
                    port: p,
                    server_name: format!("{name}.{namespace}.svc"),
                    path: path.clone(),
                    query: None,
                })
            }
        }
    }

    /// A service's address: a ready endpoint of its EndpointSlices (or Endpoints) on the
    /// port named as the service port, or its `externalName`.
    async fn resolve_service(
        &self,
        ns: &str,
        name: &str,
        port: u16,
    ) -> Result<(String, u16), CallError> {
        let not_found = || CallError::Resolve(format!("service \"{name}\" not found"));
        let h = self.services.as_ref().ok_or_else(not_found)?;
        let svc = self
            .reader
            .get(h, ns, name)
            .await
            .map_err(|e| CallError::Resolve(e.to_string()))?
            .ok_or_else(not_found)?;
        if svc.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
            let ext = svc
                .pointer("/spec/externalName")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Ok((ext.to_string(), port));
        }
        let svc_port = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(port)))
            .ok_or_else(|| {
                CallError::Resolve(format!(
                    "no service port {port} found for service \"{name}\""
                ))
            })?;
        let port_name = svc_port.get("name").and_then(Value::as_str).unwrap_or("");
        if let Some(h) = &self.slices {
            let slices = self
                .reader
                .list(h, ns, MAX_SLICES)
                .await
                .map_err(|e| CallError::Resolve(e.to_string()))?;
            for s in slices.iter().filter(|s| {
                s.pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(Value::as_str)
                    == Some(name)
            }) {
                let Some(p) = s
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
                    .and_then(|p| p.get("port").and_then(Value::as_u64))
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    continue;
                };
                let ready = s
                    .get("endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|e| {
                        e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false)
                    })
                    .find_map(|e| e.pointer("/addresses/0").and_then(Value::as_str));
                if let Some(addr) = ready {
                    return Ok((addr.to_string(), p));
                }
            }
        }
        if let Some(h) = &self.endpoints
            && let Some(eps) = self
                .reader
                .get(h, ns, name)
                .await
                .map_err(|e| CallError::Resolve(e.to_string()))?
        {
            for subset in eps
                .get("subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let p = subset
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
                    .and_then(|p| p.get("port").and_then(Value::as_u64))
                    .and_then(|p| u16::try_from(p).ok());
                let ip = subset.pointer("/addresses/0/ip").and_then(Value::as_str);
                if let (Some(p), Some(ip)) = (p, ip) {
                    return Ok((ip.to_string(), p));
                }
            }
        }
        Err(CallError::Resolve(format!(
            "no endpoints available for service \"{name}\""
        )))
    }

    /// The TLS configuration for a CA bundle (cached by its hash), with the proxy identity
    /// when `proxy` is set.
    fn tls_for(
        &self,
        cfg: &ClientConfig,
        ep: &Endpoint,
        proxy: bool,
    ) -> Result<(PoolKey, Arc<rustls::ClientConfig>), CallError> {
        let mut h = sha2::Sha256::new();
        h.update(cfg.ca_bundle.as_deref().unwrap_or(b"<system>"));
        h.update([u8::from(proxy), u8::from(cfg.insecure)]);
        let digest: [u8; 32] = h.finalize().into();
        let key = PoolKey {
            host: ep.host.clone(),
            port: ep.port,
            server_name: ep.server_name.clone(),
            tls: digest,
        };
        if let Some(c) = self.tls.lock().ok().and_then(|m| m.get(&digest).cloned()) {
            return Ok((key, c));
        }
        let c = Arc::new(build_tls(
            cfg,
            if proxy {
                self.proxy_identity.as_ref()
            } else {
                None
            },
        )?);
        if let Ok(mut m) = self.tls.lock() {
            if m.len() >= POOL_KEYS {
                m.clear();
            }
            m.insert(digest, c.clone());
        }
        Ok((key, c))
    }

    async fn connect(
        &self,
        ep: &Endpoint,
        tls: Arc<rustls::ClientConfig>,
        url: &str,
    ) -> Result<SendRequest<Body>, CallError> {
        let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| transport(url, e))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(ep.server_name.clone())
            .map_err(|e| transport(url, e))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| transport(url, e))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| transport(url, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
        Ok(sender)
    }

    /// An idle pooled connection that is ready for a request.
    async fn pooled(&self, key: &PoolKey) -> Option<SendRequest<Body>> {
        loop {
            let mut s = {
                let mut m = self.pool.lock().ok()?;
                m.get_mut(key)?.pop()?
            };
            if !s.is_closed() && s.ready().await.is_ok() {
                return Some(s);
            }
        }
    }

    fn give_back(&self, key: PoolKey, s: SendRequest<Body>) {
        if s.is_closed() {
            return;
        }
        if let Ok(mut m) = self.pool.lock() {
            if !m.contains_key(&key) && m.len() >= POOL_KEYS {
                m.clear();
            }
            let list = m.entry(key).or_default();
            if list.len() < POOL_PER_KEY {
                list.push(s);
            }
        }
    }
}

fn transport(url: &str, e: impl std::fmt::Display) -> CallError {
    CallError::Transport {
        url: url.to_string(),
        cause: e.to_string(),
    }
}

fn authority(ep: &Endpoint) -> String {
    if ep.server_name.contains(':') {
        format!("[{}]:{}", ep.server_name, ep.port)
    } else {
        format!("{}:{}", ep.server_name, ep.port)
    }
}

/// The origin-form request target: the configured path prefix, the extra path and query.
fn request_path(ep: &Endpoint, extra: &str) -> String {
    let base = if ep.path.is_empty() { "" } else { &ep.path };
    let (extra_path, extra_query) = match extra.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (extra, None),
    };
    let mut path = format!("{}{}", base.trim_end_matches('/'), extra_path);
    if path.is_empty() {
        path.push('/');
    } else if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let queries: Vec<&str> = [ep.query.as_deref(), extra_query]
        .into_iter()
        .flatten()
        .filter(|q| !q.is_empty())
        .collect();
    if !queries.is_empty() {
        path.push('?');
        path.push_str(&queries.join("&"));
    }
    path
}

/// Reads a body up to `limit` bytes.
pub async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, CallError>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(CallError::TooLarge { limit }),
        Err(e) => Err(CallError::Transport {
            url: String::new(),
            cause: format!("reading the response: {e}"),
        }),
    }
}

fn build_tls(
    cfg: &ClientConfig,
    identity: Option<&(Vec<u8>, Vec<u8>)>,
) -> Result<rustls::ClientConfig, CallError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CallError::Config(e.to_string()))?;
    let builder = if cfg.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::NoVerify(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let pem = match &cfg.ca_bundle {
            Some(b) => b.clone(),
            None => std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default(),
        };
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            let c = c.map_err(|e| CallError::Config(format!("invalid caBundle: {e}")))?;
            // A bad certificate in the system bundle is skipped, as Go's pool does.
            let _ = roots.add(c);
        }
        if cfg.ca_bundle.is_some() && roots.is_empty() {
            return Err(CallError::Config(
                "invalid caBundle: no certificates found".into(),
            ));
        }
        builder.with_root_certificates(roots)
    };
    match identity {
        Some((chain, key)) => {
            let chain = rustls_pemfile::certs(&mut chain.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CallError::Config(e.to_string()))?;
            let key = rustls_pemfile::private_key(&mut key.as_slice())
                .map_err(|e| CallError::Config(e.to_string()))?
                .ok_or_else(|| CallError::Config("proxy client key: no key found".into()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| CallError::Config(e.to_string()))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

mod insecure {
    //! APIService `insecureSkipTLSVerify: true`: the backend's certificate is not checked
    //! (its signatures still are, so the handshake is well-formed).
    use std::sync::Arc;

    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    pub struct NoVerify(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for NoVerify {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(path: &str, query: Option<&str>) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: 1,
            server_name: "x".into(),
            path: path.into(),
            query: query.map(str::to_string),
        }
    }

    #[test]
    fn request_paths_join_prefix_path_and_queries() {
        assert_eq!(request_path(&ep("", None), ""), "/");
        assert_eq!(
            request_path(&ep("/validate", None), "?timeout=10s"),
            "/validate?timeout=10s"
        );
        assert_eq!(
            request_path(&ep("/hook", Some("a=b")), "?timeout=1s"),
            "/hook?a=b&timeout=1s"
        );
        assert_eq!(
            request_path(&ep("/", None), "/apis/g/v1?watch=true"),
            "/apis/g/v1?watch=true"
        );
    }

    #[test]
    fn client_config_needs_https_url_or_service() {
        let e = ClientConfig::from_webhook(&serde_json::json!({"url": "http://x/y"}));
        assert!(matches!(e, Err(CallError::Config(_))));
        let e = ClientConfig::from_webhook(&serde_json::json!({}));
        assert!(matches!(e, Err(CallError::Config(_))));
        let c = ClientConfig::from_webhook(
            &serde_json::json!({"service": {"namespace": "n", "name": "s", "path": "/p"}}),
        )
        .expect("service config");
        assert_eq!(
            c.display_url("?timeout=10s"),
            "https://s.n.svc:443/p?timeout=10s"
        );
    }
}

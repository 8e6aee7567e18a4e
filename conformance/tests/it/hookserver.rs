//! A small HTTPS test server for webhooks and aggregated API servers, written here (HTTP/1.1
//! with keep-alive over rustls) with its own CA made by rcgen. Each request goes to a handler
//! that answers with a [`Reply`]; replies can be slow, huge, garbage or streamed in chunks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    /// The body as JSON (Null when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// All values of a header (lower-case name).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// What to answer.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Stream the body in these chunks (chunked encoding), `chunk_delay` apart, instead.
    pub chunks: Vec<Vec<u8>>,
    pub chunk_delay: Duration,
    /// `101 Switching Protocols` to this protocol, then echo every byte the client sends
    /// until it closes (an exec/port-forward-like stream).
    pub upgrade: Option<&'static str>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(v: &serde_json::Value) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body: serde_json::to_vec(v).expect("json"),
            delay: Duration::ZERO,
            chunks: Vec::new(),
            chunk_delay: Duration::ZERO,
            upgrade: None,
        }
    }

    /// `101 Switching Protocols` to `protocol`, then an echo of the stream.
    pub fn switch_to(protocol: &'static str) -> Reply {
        Reply {
            status: 101,
            upgrade: Some(protocol),
            ..Reply::json(&serde_json::Value::Null)
        }
    }

    /// A status with a raw body.
    pub fn raw(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_vec(),
            ..Reply::json(&serde_json::Value::Null)
        }
    }
}

/// The handler type.
pub type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// A running server; stops when dropped.
pub struct HookServer {
    pub port: u16,
    /// The CA's certificate (PEM).
    pub ca_pem: String,
    hits: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HookServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl HookServer {
    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The CA as a `caBundle` (base64 of the PEM).
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// Starts a server whose certificate names 127.0.0.1 and `dns_names` (e.g.
    /// `hook.default.svc`), answering with `handler`.
    pub fn start(dns_names: &[&str], handler: Handler) -> HookServer {
        Self::start_inner(dns_names, handler, None)
    }

    /// [`start`](Self::start), refusing TLS clients without a certificate `client_ca_pem`
    /// signed; the handler sees the client certificate's common name in the pseudo-header
    /// [`CLIENT_CN`].
    pub fn start_mtls(dns_names: &[&str], handler: Handler, client_ca_pem: &str) -> HookServer {
        Self::start_inner(dns_names, handler, Some(client_ca_pem))
    }

    fn start_inner(dns_names: &[&str], handler: Handler, client_ca: Option<&str>) -> HookServer {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "hookserver-ca");
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "hookserver");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
        for d in dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName((*d).try_into().expect("dns name")));
        }
        let cert = params.signed_by(&key, &issuer).expect("leaf");
        let certs = vec![cert.der().clone()];
        let key_der =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
                    roots.add(c.expect("client CA")).expect("add client CA");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let cfg = builder
            .with_single_cert(certs, key_der)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let hits2 = hits.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        acc = listener.accept() => {
                            let Ok((tcp, _)) = acc else { continue };
                            let _ = tcp.set_nodelay(true);
                            let acceptor = acceptor.clone();
                            let handler = handler.clone();
                            let hits = hits2.clone();
                            tokio::spawn(async move {
                                if let Ok(tls) = acceptor.accept(tcp).await {
                                    let cn = tls
                                        .get_ref()
                                        .1
                                        .peer_certificates()
                                        .and_then(|c| c.first())
                                        .and_then(|c| common_name(c.as_ref()));
                                    serve_conn(tls, handler, hits, cn).await;
                                }
                            });
                        }
                    }
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        HookServer {
            port,
            ca_pem,
            hits,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

/// The pseudo-header carrying the verified client certificate's common name.
pub const CLIENT_CN: &str = "x-test-client-cn";

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

async fn serve_conn<S>(mut s: S, handler: Handler, hits: Arc<AtomicUsize>, cn: Option<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Read the head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 {
                return;
            }
            let mut tmp = [0u8; 8192];
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let path = first.next().unwrap_or("").to_string();
        let mut headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .filter(|(k, _)| k != CLIENT_CN)
            .collect();
        if let Some(cn) = &cn {
            headers.push((CLIENT_CN.to_string(), cn.clone()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut tmp = [0u8; 65536];
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        hits.fetch_add(1, Ordering::SeqCst);
        let reply = handler(&Req {
            method,
            path,
            headers,
            body,
        });
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        if let Some(protocol) = reply.upgrade {
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
            );
            if s.write_all(head.as_bytes()).await.is_err() || s.write_all(&buf).await.is_err() {
                return;
            }
            let mut tmp = [0u8; 8192];
            loop {
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if s.write_all(&tmp[..n]).await.is_err() || s.flush().await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if reply.chunks.is_empty() {
            let head = format!(
                "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
                reply.status,
                reply.content_type,
                reply.body.len()
            );
            if s.write_all(head.as_bytes()).await.is_err()
                || s.write_all(&reply.body).await.is_err()
                || s.flush().await.is_err()
            {
                return;
            }
        } else {
            let head = format!(
                "HTTP/1.1 {} X\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
                reply.status, reply.content_type
            );
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for c in &reply.chunks {
                let frame = [format!("{:x}\r\n", c.len()).as_bytes(), c, b"\r\n"].concat();
                if s.write_all(&frame).await.is_err() || s.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(reply.chunk_delay).await;
            }
            if s.write_all(b"0\r\n\r\n").await.is_err() || s.flush().await.is_err() {
                return;
            }
        }
    }
}

/// The AdmissionReview answer to `req`: allowed or denied (with a message), with an optional
/// JSON patch and warnings.
pub fn review(
    req: &Req,
    allowed: bool,
    message: &str,
    patch: Option<serde_json::Value>,
    warnings: &[&str],
) -> serde_json::Value {
    let uid = req.json()["request"]["uid"].clone();
    let mut resp = serde_json::json!({"uid": uid, "allowed": allowed});
    if !allowed {
        resp["status"] = serde_json::json!({"code": 403, "message": message});
    }
    if let Some(p) = patch {
        resp["patchType"] = "JSONPatch".into();
        resp["patch"] = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&p).expect("patch"))
            .into();
    }
    if !warnings.is_empty() {
        resp["warnings"] = serde_json::json!(warnings);
    }
    serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
}

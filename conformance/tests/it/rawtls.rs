//! Raw TLS and HTTP/1.1 probes for the abuse and file tests: connections that stop half-way,
//! requests as a user of our own choosing (a client certificate minted from the cluster CA), and
//! small facts about the server process (RSS, readiness).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use ferrokube_conformance::TestServer;

/// A client certificate and key (PEM).
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A client certificate for `cn` (groups `orgs`) signed by the server's generated CA.
pub fn mint_identity(server: &TestServer, cn: &str, orgs: &[&str], days: i64) -> Identity {
    let pki = server.data_dir().join("pki");
    let (cert_pem, key_pem) = sign_with_ca(&pki, cn, orgs, days, false);
    Identity { cert_pem, key_pem }
}

/// A certificate signed by `pki/ca.key`: a client certificate, or a serving certificate for
/// localhost/127.0.0.1 when `server_auth`. Valid for `days` from an hour ago.
pub fn sign_with_ca(
    pki: &std::path::Path,
    cn: &str,
    orgs: &[&str],
    days: i64,
    server_auth: bool,
) -> (String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::from_pem(&read(&pki.join("ca.key"))).expect("parsing ca.key");
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ferrokube-ca");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    if server_auth {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().expect("dns name")),
            SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        ];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let now = time_now();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs((days * 86_400) as u64);
    let cert = params.signed_by(&key, &issuer).expect("signing");
    (cert.pem(), key.serialize_pem())
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// A TLS client config trusting the server's CA, with ALPN `alpn` and an optional identity.
pub fn client_config(
    server: &TestServer,
    identity: Option<&Identity>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = read(&server.data_dir().join("pki/ca.crt"));
    for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(c.expect("CA pem")).expect("adding CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut cfg = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let certs: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut id.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("client cert pem");
            let key: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut id.key_pem.as_bytes())
                    .expect("client key pem")
                    .expect("a client key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A TLS connection to the server (handshake done).
pub async fn connect(
    server: &TestServer,
    identity: Option<&Identity>,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connecting");
    let connector = TlsConnector::from(client_config(server, identity, alpn));
    let name = ServerName::try_from("localhost").expect("server name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// A finished HTTP/1.1 exchange.
#[derive(Debug)]
pub struct RawResponse {
    pub code: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole response.
pub async fn request(
    server: &TestServer,
    identity: Option<&Identity>,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> RawResponse {
    let mut tls = connect(server, identity, &[b"http/1.1"]).await;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("writing head");
    // A server may answer (e.g. 413 for a too-large Content-Length) and close before the body is
    // all sent; like Go's client, read the answer anyway.
    let sent = match tls.write_all(body).await {
        Ok(()) => tls.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "writing body: {e}"
        );
    }
    read_response(&mut tls).await
}

/// Reads a response until the server closes the connection (requests say `Connection: close`).
pub async fn read_response(tls: &mut TlsStream<TcpStream>) -> RawResponse {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), tls.read_to_end(&mut raw)).await;
    match read {
        Ok(Ok(_)) => {}
        // rustls reports a close without close_notify as an error after the data.
        Ok(Err(e)) if !raw.is_empty() => {
            let _ = e;
        }
        Ok(Err(e)) => panic!("reading the response: {e}"),
        Err(_) => panic!("no response within 60 s"),
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        panic!("no header end in {:?}", String::from_utf8_lossy(raw));
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    RawResponse {
        code,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// The server process's resident set size in MiB (VmRSS from /proc).
pub fn rss_mib(server: &TestServer) -> u64 {
    let pid = server.pid().expect("server running");
    let status = read(std::path::Path::new(&format!("/proc/{pid}/status")));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kib / 1024
}

/// Asserts `/readyz` answers 200 within a second and RSS is below 512 MiB.
pub async fn assert_healthy(server: &TestServer, after: &str) {
    let started = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(1),
        request(server, None, "GET", "/readyz", "application/json", b""),
    )
    .await
    .unwrap_or_else(|_| panic!("after {after}: /readyz did not answer within 1 s"));
    assert_eq!(
        resp.code,
        200,
        "after {after}: /readyz: {}",
        String::from_utf8_lossy(&resp.body)
    );
    let rss = rss_mib(server);
    assert!(rss < 512, "after {after}: RSS {rss} MiB");
    eprintln!(
        "after {after}: /readyz 200 in {:?}, RSS {rss} MiB",
        started.elapsed()
    );
}

/// The admin identity (O=system:masters) the server generated.
pub fn admin_identity(server: &TestServer) -> Identity {
    let pki = server.data_dir().join("pki");
    Identity {
        cert_pem: read(&pki.join("admin.crt")),
        key_pem: read(&pki.join("admin.key")),
    }
}

/// A pseudo-random path segment, the same for the same `i` (a counter through SipHash with
/// fixed keys: no RNG crate needed).
pub fn random_segment(i: u64) -> String {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    h.write_u64(i);
    format!("x{:016x}", h.finish())
}

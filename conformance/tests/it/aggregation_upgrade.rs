//! Upgrade requests through an APIService (issue 10): an exec/port-forward style
//! `Connection: Upgrade` request (WebSocket or SPDY) is passed to the aggregated server with
//! the caller's identity; its `101 Switching Protocols` comes back and the bytes flow both
//! ways through the aggregator (upstream's `UpgradeAwareHandler`). A refused upgrade comes back
//! as the backend's answer, so clients can fall back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::admission_webhooks::{apiserver, service_for};
use crate::aggregation::{apiservice, wait_available};
use crate::hookserver::{HookServer, Reply, Req};
use crate::rawtls::{admin_identity, connect};

const GV: &str = "/apis/stream.example.com/v1";
const EXEC: &str = "/apis/stream.example.com/v1/namespaces/default/shells/s1/exec";
const DENIED: &str = "/apis/stream.example.com/v1/namespaces/default/shells/s1/attach";

/// An aggregated server with `shells/exec` (switches to the protocol asked for, then echoes)
/// and `shells/attach` (refuses the upgrade with 403).
fn backend(seen: Arc<Mutex<Vec<Req>>>) -> HookServer {
    HookServer::start(
        &["stream.default.svc"],
        Arc::new(move |req: &Req| {
            seen.lock().expect("lock").push(req.clone());
            let path = req.path.split('?').next().unwrap_or("");
            let upgrade = req
                .header_all("upgrade")
                .first()
                .cloned()
                .unwrap_or_default();
            match path {
                GV => Reply::json(&json!({
                    "kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": "stream.example.com/v1",
                    "resources": [
                        {"name": "shells", "singularName": "shell", "namespaced": true,
                         "kind": "Shell", "verbs": ["get", "list"]},
                        {"name": "shells/exec", "singularName": "", "namespaced": true,
                         "kind": "ShellExecOptions", "verbs": ["create", "get"]}]})),
                EXEC if upgrade.eq_ignore_ascii_case("websocket") => Reply::switch_to("websocket"),
                EXEC if upgrade.eq_ignore_ascii_case("SPDY/3.1") => Reply::switch_to("SPDY/3.1"),
                EXEC => Reply::raw(400, br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Upgrade request required","reason":"BadRequest","code":400}"#),
                DENIED => Reply::raw(403, br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"no attaching here","reason":"Forbidden","code":403}"#),
                _ => Reply::raw(404, br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#),
            }
        }),
    )
}

/// Sends an upgrade request for `path` to `protocol` and reads the response head; returns the
/// status code, the head, the connection and any bytes read past the head.
async fn upgrade(
    server: &ferrokube_conformance::TestServer,
    path: &str,
    protocol: &str,
) -> (u16, String, TlsStream<TcpStream>, Vec<u8>) {
    let admin = admin_identity(server);
    let mut tls = connect(server, Some(&admin), &[b"http/1.1"]).await;
    let head = format!(
        "GET {path}?command=sh&stdin=true&stdout=true HTTP/1.1\r\nHost: localhost\r\n\
         Connection: Upgrade\r\nUpgrade: {protocol}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v5.channel.k8s.io\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
         X-Remote-User: mallory\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.expect("head");
    tls.flush().await.expect("flush");
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut tmp = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut tmp))
            .await
            .expect("a response head within 20 s")
            .expect("reading the head");
        assert!(n > 0, "closed before a response head: {buf:?}");
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (code, head, tls, buf[end..].to_vec())
}

/// Writes `data` and reads the same number of bytes back (the backend echoes), writing and
/// reading at once so that large payloads do not deadlock on full buffers.
async fn echo(tls: TlsStream<TcpStream>, data: Vec<u8>) -> (Vec<u8>, TlsStream<TcpStream>) {
    let (mut rd, mut wr) = tokio::io::split(tls);
    let want = data.len();
    let writer = tokio::spawn(async move {
        wr.write_all(&data)
            .await
            .expect("writing through the tunnel");
        wr.flush().await.expect("flush");
        wr
    });
    let mut got = Vec::with_capacity(want);
    let mut tmp = vec![0u8; 64 * 1024];
    while got.len() < want {
        let n = tokio::time::timeout(Duration::from_secs(20), rd.read(&mut tmp))
            .await
            .expect("echo within 20 s")
            .expect("reading through the tunnel");
        assert!(n > 0, "tunnel closed after {} of {want} bytes", got.len());
        got.extend_from_slice(&tmp[..n]);
    }
    let wr = writer.await.expect("writer");
    (got, rd.unsplit(wr))
}

#[test]
fn upgrade_requests_are_spliced_through_an_apiservice() {
    let server = apiserver();
    let seen: Arc<Mutex<Vec<Req>>> = Arc::default();
    let backend = backend(seen.clone());
    service_for(&server, "default", "stream", backend.port);
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &apiservice(
            "v1.stream.example.com",
            "stream.example.com",
            "v1",
            "stream",
            &backend.ca_bundle(),
        ),
    );
    wait_available(&server, "v1.stream.example.com", "True");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // WebSocket: 101 with the backend's Upgrade, then an echo both ways, small and large.
        let (code, head, tls, rest) = upgrade(&server, EXEC, "websocket").await;
        assert_eq!(code, 101, "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("upgrade: websocket"), "{head}");
        assert!(lower.contains("connection: upgrade"), "{head}");
        assert!(rest.is_empty(), "bytes before any were sent: {rest:?}");
        let (got, tls) = echo(tls, b"hello through the aggregator".to_vec()).await;
        assert_eq!(got, b"hello through the aggregator");
        let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
        let (got, mut tls) = echo(tls, big.clone()).await;
        assert!(got == big, "2 MB came back altered ({} bytes)", got.len());
        tls.shutdown().await.expect("close");

        // SPDY (kubectl's fallback) the same way.
        let (code, head, tls, _) = upgrade(&server, EXEC, "SPDY/3.1").await;
        assert_eq!(code, 101, "{head}");
        assert!(
            head.to_ascii_lowercase().contains("upgrade: spdy/3.1"),
            "{head}"
        );
        let (got, _) = echo(tls, b"spdy frames".to_vec()).await;
        assert_eq!(got, b"spdy frames");

        // A refused upgrade comes back as the backend's answer (clients fall back on it).
        let (code, head, _, _) = upgrade(&server, DENIED, "websocket").await;
        assert_eq!(code, 403, "{head}");
    });
    assert!(
        server
            .must_kubectl(["get", "--raw", "/readyz"])
            .contains("ok")
    );
    // The backend saw the upgrade headers and the caller's identity, never the client's
    // credentials or its forged identity headers.
    let reqs = seen.lock().expect("lock").clone();
    let ups: Vec<&Req> = reqs.iter().filter(|r| r.path.starts_with(EXEC)).collect();
    assert_eq!(ups.len(), 2, "{reqs:?}");
    for r in ups {
        assert_eq!(r.header_all("x-remote-user"), ["kubernetes-admin"], "{r:?}");
        assert!(r.header_all("authorization").is_empty());
        assert!(!r.header_all("sec-websocket-key").is_empty(), "{r:?}");
        assert_eq!(
            r.header_all("sec-websocket-protocol"),
            ["v5.channel.k8s.io"]
        );
        assert!(
            r.header_all("connection")
                .iter()
                .any(|v| v.eq_ignore_ascii_case("upgrade")),
            "{r:?}"
        );
    }
    // A plain request to the same path is proxied as before.
    let err = server.must_kubectl_fail(["get", "--raw", EXEC]);
    assert!(err.contains("Upgrade request required"), "{err}");
}

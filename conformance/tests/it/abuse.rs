//! Server-side abuse probes (issue 7): hostile or careless clients, authenticated or not, must
//! not crash, hang or exhaust the server. Each probe checks the answer (upstream's status and
//! reason), that `/readyz` still answers 200 within a second, that RSS stays below 512 MiB and
//! that nothing was written. Parser probes (patch, YAML, protobuf bounds) live in
//! `abuse_parsers.rs`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use ferrokube_conformance::{ServerSpec, TestServer};

use crate::rawtls::{
    RawResponse, admin_identity, assert_healthy, connect, mint_identity, random_segment, request,
};

const CM: &str = "/api/v1/namespaces/default/configmaps";

async fn admin(server: &TestServer, method: &str, path: &str, body: &[u8]) -> RawResponse {
    request(
        server,
        Some(&admin_identity(server)),
        method,
        path,
        "application/json",
        body,
    )
    .await
}

fn assert_status(resp: &RawResponse, code: u16, reason: &str, what: &str) {
    let body = resp.json();
    assert_eq!(resp.code, code, "{what}: {body}");
    assert_eq!(body["kind"], "Status", "{what}: {body}");
    assert_eq!(body["code"], code, "{what}: {body}");
    assert_eq!(body["reason"], reason, "{what}: {body}");
}

async fn assert_absent(server: &TestServer, path: &str, what: &str) {
    let got = admin(server, "GET", path, b"").await;
    assert_eq!(
        got.code,
        404,
        "{what}: {path} must not exist: {}",
        String::from_utf8_lossy(&got.body)
    );
}

/// The number of configmaps in `default`: writes of refused requests must not show up.
async fn configmap_count(server: &TestServer) -> usize {
    // kube-root-ca.crt is published by the root CA controller at its own pace: not counted.
    let list = admin(server, "GET", CM, b"").await.json();
    list["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|i| i["metadata"]["name"] != "kube-root-ca.crt")
            .count()
    })
}

/// generateName of 57 ASCII bytes then a two-byte character: cut on a character boundary,
/// refused by name validation (422 on metadata.generateName), never a 500.
#[tokio::test(flavor = "multi_thread")]
async fn generate_name_cut_inside_a_character_is_invalid_not_a_panic() {
    let server = TestServer::start();
    let before = configmap_count(&server).await;
    let generate = format!("{}é", "a".repeat(57));
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": generate}
    });
    let resp = admin(&server, "POST", CM, body.to_string().as_bytes()).await;
    assert_status(&resp, 422, "Invalid", "generateName with é");
    let causes = resp.json()["details"]["causes"].clone();
    assert!(
        causes
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["field"] == "metadata.generateName")),
        "{causes}"
    );
    assert_eq!(configmap_count(&server).await, before, "nothing stored");
    assert_healthy(&server, "generateName é").await;
}

fn metric_lines(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#')).count()
}

/// 20,000 unauthenticated GETs of random paths: each 403 (anonymous, refused by RBAC), and `/metrics` does not grow (nothing
/// before authentication is keyed by what the client chose).
#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_random_paths_do_not_grow_metrics() {
    let server = TestServer::start();
    let metrics = || async {
        let r = admin(&server, "GET", "/metrics", b"").await;
        assert_eq!(r.code, 200);
        String::from_utf8_lossy(&r.body).into_owned()
    };
    let before = metric_lines(&metrics().await);
    let client = anonymous_client(&server).await;
    let started = Instant::now();
    let mut unauthorized = 0u32;
    let mut pending = FuturesUnordered::new();
    for i in 0..20_000u64 {
        let path = format!(
            "/apis/{}/v1/{}",
            random_segment(i),
            random_segment(i + 1_000_000)
        );
        pending.push(get_code(client.clone(), path));
        if pending.len() >= 64
            && let Some(code) = pending.next().await
        {
            unauthorized += u32::from(code == 403);
        }
    }
    while let Some(code) = pending.next().await {
        unauthorized += u32::from(code == 403);
    }
    assert_eq!(unauthorized, 20_000);
    let text = metrics().await;
    let after = metric_lines(&text);
    eprintln!(
        "20,000 unauthenticated GETs in {:?}; metric lines {before} -> {after}",
        started.elapsed()
    );
    // No label carries what the clients chose, and the size stays bounded by the resource table
    // (the in-process controllers' own requests may add their series meanwhile).
    for i in [0u64, 1, 19_999, 1_000_000, 1_019_999] {
        let seg = random_segment(i);
        assert!(!text.contains(&seg), "{seg} became part of a metric");
    }
    assert!(after < 5_000, "metrics grew from {before} to {after} lines");
    let counted: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ferrokube_anonymous_requests_total{code_class=\"4xx\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        counted >= 20_000,
        "the bounded counter counts them: {counted}"
    );
    assert_healthy(&server, "20,000 unauthenticated random GETs").await;
}

/// A kube client for the server's URL with no credentials at all.
async fn anonymous_client(server: &TestServer) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    config.auth_info = Default::default();
    kube::Client::try_from(config).expect("client")
}

async fn get_code(client: kube::Client, path: String) -> u16 {
    let req = http::Request::get(path.as_str())
        .body(Vec::new())
        .map(|r| r.map(Into::into))
        .expect("request");
    match client.send(req).await {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// 1,000 concurrent unauthenticated requests with random paths: all 403 (anonymous), server healthy.
#[tokio::test(flavor = "multi_thread")]
async fn thousand_concurrent_unauthenticated_requests() {
    let server = TestServer::start();
    let client = anonymous_client(&server).await;
    let all: Vec<_> = (0..1_000u64)
        .map(|i| {
            get_code(
                client.clone(),
                format!("/api/v1/namespaces/{}/pods", random_segment(i)),
            )
        })
        .collect();
    let codes = futures::future::join_all(all).await;
    // Anonymous (the default --anonymous-auth=true) and refused by RBAC, as upstream.
    assert!(codes.iter().all(|c| *c == 403), "{codes:?}");
    assert_healthy(&server, "1,000 concurrent unauthenticated requests").await;
}

/// 200 clients that send part of their headers and stop: others are still served, and the
/// server drops the 200 after its header-read timeout (10 s).
#[tokio::test(flavor = "multi_thread")]
async fn header_only_slow_clients_are_dropped() {
    let server = TestServer::start();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut tls = connect(&server, None, &[b"http/1.1"]).await;
        tls.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .expect("partial headers");
        tls.flush().await.expect("flush");
        slow.push(tls);
    }
    // HTTP/2 clients that finish TLS but never send a request.
    for _ in 0..20 {
        slow.push(connect(&server, None, &[b"h2"]).await);
    }
    let t = Instant::now();
    let resp = admin(&server, "GET", "/api/v1/namespaces/default", b"").await;
    assert_eq!(resp.code, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_healthy(&server, "220 slow clients connected").await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut dropped = 0;
    for mut tls in slow {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 256];
        // The server closes (EOF or a reset) without answering.
        match tokio::time::timeout(left, tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => dropped += 1,
            Ok(Ok(n)) => {
                // HTTP/2: the server's SETTINGS/GOAWAY frames may arrive before the close.
                let mut rest = Vec::new();
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, tls.read_to_end(&mut rest))
                    .await
                    .is_ok()
                {
                    dropped += 1;
                } else {
                    panic!("connection still open after {n} bytes");
                }
            }
            Err(_) => panic!("a slow client was not dropped within 30 s"),
        }
    }
    assert_eq!(dropped, 220);
    assert_healthy(&server, "slow clients dropped").await;
}

/// A keep-alive HTTP/1.1 connection that waits longer than the header-read timeout between two
/// requests is still served (Go's server: idle connections live `IdleTimeout`, 90 s; only
/// headers once begun must complete within `ReadHeaderTimeout`). Clients that poll every 10 s
/// (node leases) otherwise race the server's close and see "connection closed" errors.
#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connections_outlive_the_header_timeout() {
    let server = TestServer::start();
    let id = admin_identity(&server);
    let mut tls = connect(&server, Some(&id), &[b"http/1.1"]).await;
    let head = b"GET /api/v1/namespaces/default HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n";
    for round in 0..2 {
        tls.write_all(head).await.expect("request");
        tls.flush().await.expect("flush");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // One response: headers and a Content-Length body.
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
                .await
                .expect("response in time")
                .unwrap_or_else(|e| panic!("round {round}: connection failed: {e}"));
            assert!(
                n > 0,
                "round {round}: the server closed the keep-alive connection"
            );
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((h, body)) = text.split_once("\r\n\r\n") {
                let len = h
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .expect("content-length");
                if body.len() >= len {
                    assert!(h.starts_with("HTTP/1.1 200"), "round {round}: {h}");
                    break;
                }
            }
        }
        if round == 0 {
            // Idle past the 10 s header-read timeout.
            tokio::time::sleep(Duration::from_secs(13)).await;
        }
    }
}

/// A client that starts a TLS handshake and never finishes it is dropped after 10 s.
#[tokio::test(flavor = "multi_thread")]
async fn unfinished_tls_handshake_is_dropped() {
    let server = TestServer::start();
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connect");
    // A TLS record header announcing a 512-byte ClientHello, then only a few bytes of it.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .await
        .expect("partial ClientHello");
    let silent = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connect");
    assert_healthy(&server, "unfinished handshakes").await;
    let t = Instant::now();
    for mut s in [tcp, silent] {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("unexpected {n} bytes"),
            Err(_) => panic!("handshake not dropped within 20 s"),
        }
    }
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_healthy(&server, "handshakes dropped").await;
}

/// A 4 MB body: 413 RequestEntityTooLarge, nothing stored.
#[tokio::test(flavor = "multi_thread")]
async fn four_megabyte_body_is_413() {
    let server = TestServer::start();
    let before = configmap_count(&server).await;
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
        "data": {"k": "x".repeat(4 << 20)}
    });
    let resp = admin(&server, "POST", CM, body.to_string().as_bytes()).await;
    assert_status(&resp, 413, "RequestEntityTooLarge", "4 MB body");
    assert_absent(&server, &format!("{CM}/big"), "4 MB body").await;
    assert_eq!(configmap_count(&server).await, before);
    assert_healthy(&server, "4 MB body").await;
}

/// A 2 MB label value: 422 from validation (labels are at most 63 characters), nothing stored.
#[tokio::test(flavor = "multi_thread")]
async fn two_megabyte_label_value_is_invalid() {
    let server = TestServer::start();
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "biglabel", "labels": {"k": "v".repeat(2 << 20)}}
    });
    let resp = admin(&server, "POST", CM, body.to_string().as_bytes()).await;
    assert_status(&resp, 422, "Invalid", "2 MB label value");
    let causes = resp.json()["details"]["causes"].clone();
    assert!(
        causes
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["field"]
                .as_str()
                .unwrap_or("")
                .starts_with("metadata.labels"))),
        "{causes}"
    );
    assert_absent(&server, &format!("{CM}/biglabel"), "2 MB label").await;
    assert_healthy(&server, "2 MB label value").await;
}

/// Invalid UTF-8 inside a name and inside a label value: refused (400 or 422), nothing stored.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_in_names_and_labels_is_refused() {
    let server = TestServer::start();
    let before = configmap_count(&server).await;
    let bodies: [&[u8]; 2] = [
        b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"bad\xff\xfe\"}}",
        b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"badlabel\",\"labels\":{\"k\":\"v\xc3\x28\"}}}",
    ];
    for body in bodies {
        let resp = admin(&server, "POST", CM, body).await;
        let status = resp.json();
        assert!(
            resp.code == 400 || resp.code == 422,
            "{} for {:?}: {status}",
            resp.code,
            String::from_utf8_lossy(body)
        );
        assert_eq!(status["kind"], "Status");
    }
    assert_absent(&server, &format!("{CM}/badlabel"), "invalid UTF-8 label").await;
    assert_eq!(configmap_count(&server).await, before);
    assert_healthy(&server, "invalid UTF-8").await;
}

/// `kubectl patch pod P -p '{"metadata":{"labels":"invalid"}}'` is refused as upstream refuses
/// it, and the stored pod keeps its labels map (typed clients can still decode the list).
#[tokio::test(flavor = "multi_thread")]
async fn patch_labels_to_a_string_is_refused() {
    let server = TestServer::start();
    server.must_kubectl([
        "run",
        "p",
        "--image=registry.k8s.io/pause:3.10",
        "--labels=app=p",
        "--restart=Never",
    ]);
    let err = server.must_kubectl_fail([
        "patch",
        "pod",
        "p",
        "-p",
        r#"{"metadata":{"labels":"invalid"}}"#,
    ]);
    eprintln!("kubectl patch refused: {err}");
    let pod: serde_json::Value =
        serde_json::from_str(&server.must_kubectl(["get", "pod", "p", "-o", "json"]))
            .expect("pod json");
    assert_eq!(pod["metadata"]["labels"], serde_json::json!({"app": "p"}));
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(server.kube_client().await, "default");
    pods.list(&Default::default())
        .await
        .expect("a typed client still decodes the pod list");
    assert_healthy(&server, "labels patched to a string").await;
}

/// Max-in-flight: with `--max-mutating-requests-inflight=1`, a second mutating request of an
/// ordinary user while one is in flight gets 429 TooManyRequests with `Retry-After: 1`;
/// reads (a separate limit) and system:masters are still served; watches are not counted.
#[tokio::test(flavor = "multi_thread")]
async fn max_in_flight_answers_429_beyond_the_limit() {
    // `apiserver` alone: in `server`, the controllers are ordinary (non-masters) clients whose
    // lease renewals would legitimately take the one mutating slot.
    let server = TestServer::start_with(ServerSpec {
        apiserver_only: true,
        extra_args: [
            "--max-requests-inflight=1",
            "--max-mutating-requests-inflight=1",
            "--authorization-mode=AlwaysAllow",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        ..ServerSpec::default()
    });
    let alice = mint_identity(&server, "alice", &[], 30);
    // A watch of alice's (long-running: not counted against the read-only limit of 1).
    let mut watch = connect(&server, Some(&alice), &[b"http/1.1"]).await;
    watch
        .write_all(b"GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("watch");
    // A create whose body never finishes: it holds the one mutating slot.
    let mut held = connect(&server, Some(&alice), &[b"http/1.1"]).await;
    held.write_all(format!("POST {CM} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"apiVersion\"").as_bytes())
        .await
        .expect("partial body");
    held.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"second"}}"#;
    let resp = request(&server, Some(&alice), "POST", CM, "application/json", body).await;
    assert_status(&resp, 429, "TooManyRequests", "second mutating request");
    let status = resp.json();
    assert_eq!(
        status["message"],
        "Too many requests, please try again later."
    );
    assert_eq!(status["details"]["retryAfterSeconds"], 1, "{status}");
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_absent(&server, &format!("{CM}/second"), "refused by max-in-flight").await;

    let read = request(&server, Some(&alice), "GET", CM, "application/json", b"").await;
    assert_eq!(read.code, 200, "reads have their own limit");
    let masters = admin(&server, "POST", CM, body).await;
    assert_eq!(masters.code, 201, "system:masters is never limited");

    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"third"}}"#;
    let resp = request(&server, Some(&alice), "POST", CM, "application/json", body).await;
    assert_eq!(
        resp.code,
        201,
        "the slot is free again: {:?}",
        String::from_utf8_lossy(&resp.body)
    );
    drop(watch);
    let metrics =
        String::from_utf8_lossy(&admin(&server, "GET", "/metrics", b"").await.body).into_owned();
    assert!(
        metrics.contains("apiserver_dropped_requests_total{request_kind=\"mutating\"} 1"),
        "{metrics}"
    );
}

/// A panic on the storage writer thread (test-only fail point): the write that hit it and every
/// later write fail fast with a 5xx Status, reads still work, and `/readyz` and `/livez` fail
/// with the named check `[-]storage failed`.
#[tokio::test(flavor = "multi_thread")]
async fn storage_writer_panic_fails_readyz_and_writes() {
    let server =
        TestServer::start_with_args(&["--debug-failpoint=writer-panic-on-key:failpoint-boom"]);
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"failpoint-boom"}}"#;
    let t = Instant::now();
    let resp = admin(&server, "POST", CM, body).await;
    assert!(
        resp.code >= 500,
        "{}: {}",
        resp.code,
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.json()["kind"], "Status");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let t = Instant::now();
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"later"}}"#;
    let resp = admin(&server, "POST", CM, body).await;
    assert!(
        resp.code >= 500,
        "{}: {}",
        resp.code,
        String::from_utf8_lossy(&resp.body)
    );
    assert!(
        resp.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("storage writer stopped"),
        "{}",
        resp.json()
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "writes fail fast: {:?}",
        t.elapsed()
    );

    let read = admin(&server, "GET", "/api/v1/namespaces/default", b"").await;
    assert_eq!(read.code, 200, "reads still work");
    for path in ["/readyz", "/livez"] {
        let resp = request(&server, None, "GET", path, "application/json", b"").await;
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        assert_eq!(resp.code, 500, "{path}: {text}");
        assert!(text.contains("[-]storage failed"), "{path}: {text}");
    }
    // Named checks are not public (system:public-info-viewer lists only /readyz itself).
    let single = request(
        &server,
        Some(&admin_identity(&server)),
        "GET",
        "/readyz/storage",
        "application/json",
        b"",
    )
    .await;
    assert_eq!(single.code, 500);
}

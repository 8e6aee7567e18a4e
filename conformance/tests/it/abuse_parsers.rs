//! Hostile bodies and query parameters for the parsers, sent through the real server (issue 7):
//! the JSON patch copy bomb, too many JSON patch operations, the YAML alias bomb, a protobuf
//! body nested 100,000 deep (POST and DELETE), 100 KB label and field selectors, a garbage
//! continue token, and out-of-range limits. Each answer is checked (status code and upstream's
//! message), and after each the server must answer `/readyz` within a second, stay under
//! 512 MiB of RSS, and have written nothing.

use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use http_body_util::BodyExt;
use serde_json::{Value, json};

const MAX_RSS_KIB: u64 = 512 * 1024;

struct Probe {
    server: TestServer,
    client: kube::Client,
}

impl Probe {
    async fn start() -> Probe {
        let server = TestServer::start();
        let client = server.kube_client().await;
        let p = Probe { server, client };
        let (code, body) = p
            .send(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "application/json",
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "target"}, "data": {"k": "v"}})
                .to_string()
                .into_bytes(),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        p
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", content_type)
            .header("Accept", "application/json")
            .body(body)
            .map(|r| r.map(Into::into));
        let req = match req {
            Ok(r) => r,
            Err(e) => panic!("building {method} {path}: {e}"),
        };
        let resp = match tokio::time::timeout(Duration::from_secs(60), self.client.send(req)).await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("{method} {path}: {e}\n{}", self.server.log_tail()),
            Err(_) => panic!("{method} {path}: no answer in 60 s"),
        };
        let code = resp.status().as_u16();
        let bytes = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => panic!("reading the answer to {method} {path}: {e}"),
        };
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (code, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, "application/json", Vec::new()).await
    }

    /// Names and resourceVersions of the configmaps in `default`.
    async fn configmaps(&self) -> Vec<(String, String)> {
        let (code, list) = self.get("/api/v1/namespaces/default/configmaps").await;
        assert_eq!(code, 200, "{list}");
        let mut out: Vec<(String, String)> = list["items"]
            .as_array()
            .map(|items| {
                // kube-root-ca.crt is published by the root CA controller at its own pace.
                items
                    .iter()
                    .filter(|i| i["metadata"]["name"] != "kube-root-ca.crt")
                    .map(|i| {
                        let s = |p: &str| i.pointer(p).and_then(Value::as_str).unwrap_or("");
                        (
                            s("/metadata/name").to_string(),
                            s("/metadata/resourceVersion").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    fn rss_kib(&self) -> u64 {
        let Some(pid) = self.server.pid() else {
            panic!("the server is not running");
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
    }

    /// Sends one probe and checks the answer and the server's health afterwards.
    async fn expect(
        &self,
        (method, path, content_type): (&str, &str, &str),
        body: Vec<u8>,
        code: u16,
        reason: &str,
        message: &str,
    ) {
        let before = self.configmaps().await;
        let started = Instant::now();
        let (got, status) = self.send(method, path, content_type, body).await;
        let took = started.elapsed();
        let short: String = status.to_string().chars().take(600).collect();
        assert_eq!(got, code, "{method} {path}: {short}");
        assert_eq!(status["kind"], "Status", "{short}");
        assert_eq!(status["code"], code, "{short}");
        assert_eq!(status["reason"], reason, "{short}");
        let text = status["message"].as_str().unwrap_or_default();
        assert!(
            text.contains(message),
            "{method} {path}: message {:?} lacks {message:?}",
            text.chars().take(600).collect::<String>()
        );
        assert!(
            took < Duration::from_secs(10),
            "{method} {path} took {took:?}"
        );
        self.healthy().await;
        assert_eq!(
            self.configmaps().await,
            before,
            "{method} {path} wrote something"
        );
    }

    async fn healthy(&self) {
        let started = Instant::now();
        let req = http::Request::get("/readyz")
            .body(Vec::new())
            .map(|r| r.map(Into::into));
        let req = match req {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        match tokio::time::timeout(Duration::from_secs(1), self.client.send(req)).await {
            Ok(Ok(r)) => assert_eq!(r.status(), 200, "/readyz"),
            Ok(Err(e)) => panic!("/readyz: {e}"),
            Err(_) => panic!("/readyz did not answer within 1 s"),
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        let rss = self.rss_kib();
        assert!(rss < MAX_RSS_KIB, "server RSS {rss} KiB");
    }
}

const CM: &str = "/api/v1/namespaces/default/configmaps";
const TARGET: &str = "/api/v1/namespaces/default/configmaps/target";

#[tokio::test(flavor = "multi_thread")]
async fn json_patch_copy_bomb_and_too_many_operations() {
    let p = Probe::start().await;
    // A ~3 KB array, then 40 copies of it into itself: 3 KB * 2^40 if nothing stopped it.
    let mut ops = vec![json!({"op": "add", "path": "/data/n", "value": vec!["x".repeat(28); 100]})];
    ops.extend((0..40).map(|_| json!({"op": "copy", "from": "/data/n", "path": "/data/n/-"})));
    p.expect(
        ("PATCH", TARGET, "application/json-patch+json"),
        serde_json::to_vec(&ops).unwrap_or_default(),
        422,
        "Invalid",
        "Unable to complete the copy, the accumulated size increase of copy is ",
    )
    .await;
    // The same `add` of a big value repeated: bounded by the body size (each value is cloned
    // once), so the server stays small whether it stores the result or refuses its size.
    let big = "y".repeat(64 * 1024);
    let adds: Vec<Value> = (0..40)
        .map(|i| json!({"op": "add", "path": format!("/data/k{i}"), "value": big.clone()}))
        .collect();
    let (code, status) = p
        .send(
            "PATCH",
            TARGET,
            "application/json-patch+json",
            serde_json::to_vec(&adds).unwrap_or_default(),
        )
        .await;
    assert!([200, 413, 422].contains(&code), "{code}: {status}");
    p.healthy().await;

    let ops: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/data/k", "value": "v"}))
        .collect();
    p.expect(
        ("PATCH", TARGET, "application/json-patch+json"),
        serde_json::to_vec(&ops).unwrap_or_default(),
        413,
        "RequestEntityTooLarge",
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn yaml_alias_bomb() {
    let p = Probe::start().await;
    // One 1 MB anchored scalar and 200,000 aliases of it in 1.6 MB.
    let mut doc = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\n  annotations:\n    a: &a {}\ndata:\n  list: [",
        "x".repeat(1 << 20)
    );
    doc.push_str(&vec!["*a"; 200_000].join(","));
    doc.push_str("]\n");
    assert!(doc.len() < 3 * 1024 * 1024);
    p.expect(
        ("POST", CM, "application/yaml"),
        doc.clone().into_bytes(),
        400,
        "BadRequest",
        "yaml: document contains excessive aliasing",
    )
    .await;
    let apply = "/api/v1/namespaces/default/configmaps/bomb?fieldManager=test";
    p.expect(
        ("PATCH", apply, "application/apply-patch+yaml"),
        doc.into_bytes(),
        400,
        "BadRequest",
        "error decoding YAML: yaml: document contains excessive aliasing",
    )
    .await;
}

/// `levels` protobuf envelopes of a core/v1 List whose one item is a RawExtension holding the
/// next envelope, built in O(n) from the innermost length outwards.
fn nested_protobuf(levels: usize) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: usize) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn vlen(v: usize) -> usize {
        let mut b = Vec::new();
        varint(&mut b, v);
        b.len()
    }
    const MAGIC: &[u8] = b"k8s\0";
    // Unknown.typeMeta = {apiVersion: "v1", kind: "List"}.
    let tm: &[u8] = b"\x0a\x0a\x0a\x02v1\x12\x04List";
    let innermost = [MAGIC, tm].concat();
    let mut sizes = Vec::with_capacity(levels);
    let mut c = innermost.len();
    for _ in 0..levels {
        let r = 1 + vlen(c) + c;
        let l = 1 + vlen(r) + r;
        sizes.push((c, r, l));
        c = MAGIC.len() + tm.len() + 1 + vlen(l) + l;
    }
    let mut out = Vec::with_capacity(c);
    for &(c, r, l) in sizes.iter().rev() {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(tm);
        out.push(0x12);
        varint(&mut out, l);
        out.push(0x12);
        varint(&mut out, r);
        out.push(0x0a);
        varint(&mut out, c);
    }
    out.extend_from_slice(&innermost);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_nested_100k_deep_post_and_delete() {
    let p = Probe::start().await;
    let body = nested_protobuf(100_000);
    assert!(body.len() < 3 * 1024 * 1024, "{}", body.len());
    let pb = "application/vnd.kubernetes.protobuf";
    let msg = "malformed protobuf message: nested more than 100 levels deep";
    p.expect(("POST", CM, pb), body.clone(), 400, "BadRequest", msg)
        .await;
    p.expect(("DELETE", TARGET, pb), body, 400, "BadRequest", msg)
        .await;
}

/// 100 KB selectors: longer than a URI the `http` crate can hold (64 KiB), so they go through
/// kubectl (Go's client has no such limit); the server must refuse them cleanly and stay up.
/// 60 KB selectors go through the Rust client, where the Status is checked.
#[tokio::test(flavor = "multi_thread")]
async fn huge_selectors_garbage_continue_and_limits() {
    let p = Probe::start().await;
    let before = p.configmaps().await;
    for args in [
        vec!["get", "configmaps", "-l", &"!".repeat(100 * 1024)],
        vec![
            "get",
            "configmaps",
            "--field-selector",
            &"a".repeat(100 * 1024),
        ],
    ] {
        let out = p.server.kubectl(args.iter().copied());
        assert!(!out.status.success(), "a 100 KB selector was accepted");
        p.healthy().await;
    }
    assert_eq!(p.configmaps().await, before);
    let get = |q: String| ("GET", format!("{CM}?{q}"));
    let cases: Vec<((&str, String), &str)> = vec![
        (
            get(format!("labelSelector={}", "!".repeat(60 * 1024))),
            "unable to parse requirement",
        ),
        (
            get(format!("labelSelector={}=x", "a".repeat(60 * 1024))),
            "name part must be no more than 63 characters",
        ),
        (
            get(format!("fieldSelector={}", "a".repeat(60 * 1024))),
            "invalid selector",
        ),
        (
            get("limit=1&continue=garbage!!".to_string()),
            "continue key is not valid",
        ),
    ];
    for ((method, path), message) in cases {
        p.expect(
            (method, &path, "application/json"),
            Vec::new(),
            400,
            "BadRequest",
            message,
        )
        .await;
    }
    // Out-of-range limits are not errors upstream: a negative limit means no limit, a huge one
    // just returns everything.
    let all = p.configmaps().await;
    for limit in ["-1", "99999999999"] {
        let (code, list) = p.get(&format!("{CM}?limit={limit}")).await;
        assert_eq!(code, 200, "limit={limit}: {list}");
        assert_eq!(
            list["items"].as_array().map(Vec::len),
            Some(all.len()),
            "{list}"
        );
        assert!(list["metadata"].get("continue").is_none(), "{list}");
        p.healthy().await;
    }
}

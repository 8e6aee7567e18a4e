//! Wire details stock clients notice: JSON bodies end with a newline, DELETE of the resources
//! upstream registers with `ReturnDeletedObject` answers with the object, and a body of the
//! wrong kind gets upstream's decode error.

use http_body_util::BodyExt;

use ferrokube_conformance::TestServer;

async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    accept: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Accept", accept)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .map(|r| r.map(Into::into))
        .expect("request");
    let resp = match client.send(req).await {
        Ok(r) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let code = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (code, bytes)
}

/// Objects, lists, tables, Status errors and discovery documents end with `\n` (upstream's
/// `json.Encoder.Encode`); `/version` is written raw (`WriteRawJSON`) and does not.
#[tokio::test(flavor = "multi_thread")]
async fn json_bodies_end_with_a_newline() {
    let server = TestServer::start();
    let client = server.kube_client().await;
    let json = "application/json";
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    let aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let cases = [
        ("GET", "/api/v1/namespaces/default", json, 200),
        ("GET", "/api/v1/namespaces", json, 200),
        ("GET", "/api/v1/namespaces", table, 200),
        ("GET", "/api/v1/namespaces/absent", json, 404),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps/absent",
            json,
            404,
        ),
        ("GET", "/api", json, 200),
        ("GET", "/apis", json, 200),
        ("GET", "/apis/apps/v1", json, 200),
        ("GET", "/apis", aggregated, 200),
    ];
    for (method, path, accept, want) in cases {
        let (code, body) = send(&client, method, path, accept, b"").await;
        assert_eq!(code, want, "{method} {path} ({accept})");
        assert!(
            body.ends_with(b"}\n"),
            "{method} {path} ({accept}) must end with a newline: {:?}",
            String::from_utf8_lossy(&body[body.len().saturating_sub(40)..])
        );
    }
    let (code, body) = send(&client, "GET", "/version", json, b"").await;
    assert_eq!(code, 200);
    assert!(body.ends_with(b"}"), "{:?}", String::from_utf8_lossy(&body));
}

/// DELETE of a Service and of a ServiceAccount answers 200 with the deleted object (upstream
/// `ReturnDeletedObject: true`); a ConfigMap still answers a Success Status.
#[tokio::test(flavor = "multi_thread")]
async fn delete_returns_the_object_where_upstream_does() {
    let server = TestServer::start();
    let client = server.kube_client().await;
    server.must_kubectl(["create", "service", "clusterip", "svc", "--tcp=80:80"]);
    server.must_kubectl(["create", "serviceaccount", "sa"]);
    server.must_kubectl(["create", "configmap", "cm"]);
    for (path, kind) in [
        ("/api/v1/namespaces/default/services/svc", "Service"),
        (
            "/api/v1/namespaces/default/serviceaccounts/sa",
            "ServiceAccount",
        ),
        ("/api/v1/namespaces/default/configmaps/cm", "Status"),
    ] {
        let (code, body) = send(&client, "DELETE", path, "application/json", b"").await;
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(code, 200, "{path}: {v}");
        assert_eq!(v["kind"], kind, "{path}: {v}");
        if kind != "Status" {
            assert!(v["metadata"]["uid"].is_string(), "{v}");
        }
    }
    let (code, _) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/services/svc",
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 404, "the service is gone");
}

/// A body of another kind posted to a collection gets upstream's decode error, as upstream's
/// own `test-cmd` checks it with `kubectl create --raw /api/v1/namespaces`.
#[test]
fn wrong_kind_posted_to_a_collection_gets_upstreams_message() {
    let server = TestServer::start();
    let pod_json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;
    let err = server.kubectl_stdin(
        ["create", "--raw", "/api/v1/namespaces", "-f", "-"],
        pod_json,
    );
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success());
    assert!(
        stderr.contains(
            r#"Pod in version "v1" cannot be handled as a Namespace: converting (v1.Pod) to (core.Namespace): unknown conversion"#
        ),
        "{stderr}"
    );
    let unknown = r#"{"apiVersion":"v1","kind":"Nope","metadata":{"name":"p"}}"#;
    let err = server.kubectl_stdin(
        ["create", "--raw", "/api/v1/namespaces", "-f", "-"],
        unknown,
    );
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.contains(
            r#"Nope in version "v1" cannot be handled as a Namespace: no kind "Nope" is registered for version "v1" in scheme "pkg/api/legacyscheme/scheme.go:30""#
        ),
        "{stderr}"
    );
    // YAML sent as JSON (kubectl --raw posts the file as is): the kind cannot be read.
    let yaml = server.data_dir().join("pod.yaml");
    std::fs::write(&yaml, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n").expect("write");
    let err = server.kubectl([
        "create",
        "--raw",
        "/api/v1/namespaces",
        "-f",
        yaml.to_str().unwrap_or(""),
    ]);
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.contains(
            "the object provided is unrecognized (must be of type Namespace): couldn't get version/kind; json parse error: invalid character 'a' looking for beginning of value (61706956657273696f6e3a2076310a6b696e643a20506f640a6d65746164 ...)"
        ),
        "{stderr}"
    );
    let ns = server.must_kubectl(["get", "namespaces", "-o", "name"]);
    assert!(!ns.contains("namespace/p"), "{ns}");
}

/// A GET that must answer 200: its body.
async fn get_ok(client: &kube::Client, path: &str, accept: &str) -> Vec<u8> {
    let (code, body) = send(client, "GET", path, accept, b"").await;
    assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
    body
}

/// `Accept: application/json;as=PartialObjectMetadataList` (kube-rs `list_metadata`,
/// client-go's metadata informers, the garbage collector's): each item is the object's
/// metadata as a full list shows it, in the requested meta.k8s.io version, for a list that is
/// streamed in chunks (large objects) as for a small one.
#[tokio::test(flavor = "multi_thread")]
async fn metadata_lists_carry_the_objects_metadata() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, PostParams};
    let server = TestServer::start();
    let client = server.kube_client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let big = "x".repeat(8 * 1024);
    for i in 0..24 {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("m{i:02}"),
                "labels": {"app": "meta", "n": format!("{i}")},
                "annotations": {"tricky": "}{\"metadata\":{\"name\":\"fake\"}] \\ ["}},
            "data": {"big": big, "brace": "}"}
        }))
        .expect("configmap");
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    let lp = ListParams::default().labels("app=meta");
    let full = api.list(&lp).await.expect("list");
    let meta = api.list_metadata(&lp).await.expect("list_metadata");
    assert_eq!(full.items.len(), 24);
    assert_eq!(meta.items.len(), 24);
    assert_eq!(
        meta.metadata.resource_version,
        full.metadata.resource_version
    );
    for (m, f) in meta.items.iter().zip(&full.items) {
        assert_eq!(m.metadata, f.metadata, "metadata of {:?}", f.metadata.name);
    }
    // The raw documents: kinds and versions as upstream's asPartialObjectMetadataList sets them.
    for v in ["v1", "v1beta1"] {
        let accept = format!("application/json;as=PartialObjectMetadataList;v={v};g=meta.k8s.io");
        let body = get_ok(
            &client,
            "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dmeta",
            &accept,
        )
        .await;
        assert!(body.ends_with(b"}\n"), "ends with a newline");
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(doc["kind"], "PartialObjectMetadataList");
        assert_eq!(doc["apiVersion"], format!("meta.k8s.io/{v}"));
        let items = doc["items"].as_array().expect("items");
        assert_eq!(items.len(), 24);
        for item in items {
            assert_eq!(item["kind"], "PartialObjectMetadata");
            assert_eq!(item["apiVersion"], format!("meta.k8s.io/{v}"));
            assert!(item.get("data").is_none(), "only metadata: {item}");
            assert_eq!(
                item["metadata"]["annotations"]["tricky"],
                "}{\"metadata\":{\"name\":\"fake\"}] \\ ["
            );
        }
        // One object, and a Table's rows (includeObject=Metadata by default): the same
        // version on the PartialObjectMetadata.
        let accept = format!("application/json;as=PartialObjectMetadata;v={v};g=meta.k8s.io");
        let body = get_ok(
            &client,
            "/api/v1/namespaces/default/configmaps/m03",
            &accept,
        )
        .await;
        let one: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(one["apiVersion"], format!("meta.k8s.io/{v}"));
        assert_eq!(one["metadata"], items[3]["metadata"]);
        let accept = format!("application/json;as=Table;v={v};g=meta.k8s.io");
        let body = get_ok(
            &client,
            "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dmeta",
            &accept,
        )
        .await;
        let table: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        let rows = table["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 24);
        assert_eq!(rows[3]["cells"][0], "m03");
        assert_eq!(rows[3]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(rows[3]["object"]["apiVersion"], format!("meta.k8s.io/{v}"));
        assert_eq!(rows[3]["object"]["metadata"], items[3]["metadata"]);
    }
}

/// A watch with `as=PartialObjectMetadata` (client-go's metadata informers, controller-runtime's
/// metadata-only watches, kube-rs `watch_metadata`) gets PartialObjectMetadata objects in its
/// events, as upstream transforms every event's object, not the full objects.
#[tokio::test(flavor = "multi_thread")]
async fn metadata_watches_carry_partial_object_metadata() {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams, WatchEvent, WatchParams};
    let server = TestServer::start();
    let client = server.kube_client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "watched", "labels": {"w": "meta"}},
        "data": {"k": "}{\"v\""}
    }))
    .expect("configmap");
    let created = api
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    // kube-rs: the initial event of the existing object, as metadata.
    let wp = WatchParams::default().labels("w=meta").timeout(2);
    let events: Vec<_> = api
        .watch_metadata(&wp, "0")
        .await
        .expect("watch_metadata")
        .take(1)
        .try_collect()
        .await
        .expect("events");
    match &events[..] {
        [WatchEvent::Added(m)] => assert_eq!(m.metadata, created.metadata),
        other => panic!("want one ADDED, got {other:?}"),
    }
    // The raw events, v1beta1 too, with a bookmark.
    for v in ["v1", "v1beta1"] {
        let accept = format!("application/json;as=PartialObjectMetadata;v={v};g=meta.k8s.io");
        let body = get_ok(&client, "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0&labelSelector=w%3Dmeta&timeoutSeconds=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan", &accept).await;
        let events: Vec<serde_json::Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("event JSON"))
            .collect();
        let added = events
            .iter()
            .find(|e| e["type"] == "ADDED")
            .expect("an ADDED event");
        assert_eq!(added["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(added["object"]["apiVersion"], format!("meta.k8s.io/{v}"));
        assert_eq!(added["object"]["metadata"]["name"], "watched");
        assert_eq!(
            added["object"]["metadata"]["resourceVersion"],
            created
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default()
        );
        assert!(added["object"].get("data").is_none(), "{added}");
        let bookmark = events
            .iter()
            .find(|e| e["type"] == "BOOKMARK")
            .expect("the initial-events-end bookmark");
        assert_eq!(bookmark["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(bookmark["object"]["apiVersion"], format!("meta.k8s.io/{v}"));
    }
}

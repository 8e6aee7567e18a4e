//! The one write path (issue 7): every stored object is well-typed (wrong types refused with
//! upstream's codes and messages, nothing stored), apply validates and prunes fields like the
//! other verbs, concurrent unpinned patches never lose an update, a pinned stale
//! resourceVersion is a 409, and `generateName` is cut on a character boundary.

use ferrokube_conformance::TestServer;
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// Sends one request with the admin client; returns the status code and the JSON body.
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .header("Accept", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .map(|r| r.map(Into::into));
    let req = match req {
        Ok(r) => r,
        Err(e) => panic!("building {method} {path}: {e}"),
    };
    let resp = match client.send(req).await {
        Ok(r) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => panic!("reading {method} {path}: {e}"),
    };
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes).to_string()}));
    (parts.status.as_u16(), v)
}

fn pod(name: &str, ns: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}})
}

/// `kubectl patch pod P -p '{"metadata":{"labels":"invalid"}}'` is refused (422, upstream's
/// decode messages for strategic and merge patches), nothing is stored, and the namespace can
/// still be deleted afterwards (the namespace controller decodes its PodList).
#[tokio::test(flavor = "multi_thread")]
async fn labels_as_string_patch_is_refused_and_namespace_stays_deletable() {
    let server = TestServer::start();
    let client = server.kube_client().await;
    server.must_kubectl(["create", "namespace", "wp"]);
    let (code, body) = send(
        &client,
        "POST",
        "/api/v1/namespaces/wp/pods",
        "application/json",
        &pod("p", "wp"),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let generation = body["metadata"]["generation"].clone();

    let out = server.must_kubectl_fail([
        "patch",
        "-n",
        "wp",
        "pod",
        "p",
        "-p",
        r#"{"metadata":{"labels":"invalid"}}"#,
    ]);
    assert!(
        out.contains("map[metadata:map[labels:invalid]]")
            && out.contains("cannot restore map from string"),
        "{out}"
    );

    let (code, body) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/wp/pods/p",
        "application/merge-patch+json",
        &json!({"metadata": {"labels": "invalid"}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid", "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.ends_with(
            "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type map[string]string"
        ),
        "{msg}"
    );
    assert_eq!(body["details"]["causes"][0]["field"], "patch", "{body}");

    let stored =
        crate::util::json(&server.must_kubectl(["get", "-n", "wp", "pod", "p", "-o", "json"]));
    assert_eq!(stored["metadata"]["labels"], json!({"app": "x"}));
    // The scheduler may write the pod's status meanwhile; the refused patch changed nothing.
    assert_eq!(
        stored["metadata"]["generation"], generation,
        "nothing was written"
    );

    server.must_kubectl(["delete", "namespace", "wp", "--timeout=90s"]);
    let gone = server.kubectl(["get", "namespace", "wp"]);
    assert!(!gone.status.success(), "namespace wp still exists");
}

/// Wrong types in create bodies get upstream's 400 `... cannot be handled as a ...` and are
/// not stored.
#[tokio::test(flavor = "multi_thread")]
async fn wrongly_typed_create_bodies_are_refused() {
    let server = TestServer::start();
    let client = server.kube_client().await;
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": "3", "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
    let (code, body) = send(
        &client,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        &deploy,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
    );

    let mut p = pod("p", "default");
    p["spec"]["containers"][0]["image"] = json!({"name": "nginx"});
    let (code, body) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        &p,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal object into Go struct field Container.spec.containers.image of type string"
    );

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": ["c"]});
    let (code, body) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &cm,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal array into Go struct field ConfigMap.metadata of type v1.ObjectMeta"
    );

    let out = server.must_kubectl([
        "get",
        "deployments,pods,configmaps",
        "-n",
        "default",
        "-o",
        "name",
    ]);
    assert!(
        !out.contains("deployment.apps/d") && !out.contains("pod/p"),
        "{out}"
    );
}

/// Server-side apply prunes unknown fields with a warning (Warn) and refuses them (Strict).
#[tokio::test(flavor = "multi_thread")]
async fn apply_prunes_or_refuses_unknown_fields() {
    let server = TestServer::start();
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\nbogus: 1\n";
    let out = server.kubectl_stdin(
        ["apply", "--server-side", "--validate=warn", "-f", "-"],
        manifest,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("unknown field \"bogus\""), "{stderr}");
    let stored = crate::util::json(&server.must_kubectl(["get", "configmap", "a", "-o", "json"]));
    assert!(stored.get("bogus").is_none(), "{stored}");
    assert_eq!(stored["data"]["k"], "v");

    let strict = manifest.replace("name: a", "name: b");
    let out = server.kubectl_stdin(
        ["apply", "--server-side", "--validate=strict", "-f", "-"],
        &strict,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "strict apply succeeded");
    assert!(
        stderr.contains("strict decoding error: unknown field \"bogus\""),
        "{stderr}"
    );
    assert!(!server.kubectl(["get", "configmap", "b"]).status.success());
}

/// 20 concurrent unpinned merge patches of one object all succeed and none is lost; a patch
/// pinned to a stale resourceVersion gets upstream's 409.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_patches_lose_nothing_and_stale_pins_conflict() {
    let server = TestServer::start();
    let client = server.kube_client().await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let (code, created) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &cm,
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            send(
                &client,
                "PATCH",
                "/api/v1/namespaces/default/configmaps/c",
                "application/merge-patch+json",
                &json!({"metadata": {"labels": {format!("l{i}"): "x"}}, "data": {format!("k{i}"): "v"}}),
            )
            .await
        }));
    }
    for t in tasks {
        let (code, body) = t.await.unwrap_or_else(|e| panic!("task: {e}"));
        assert_eq!(code, 200, "{body}");
    }
    let (_, now) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps/c",
        "application/json",
        &Value::Null,
    )
    .await;
    let labels = now["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(labels.len(), 20, "{now}");
    assert_eq!(now["data"].as_object().map(|d| d.len()), Some(20), "{now}");

    let stale = created["metadata"]["resourceVersion"].clone();
    let (code, body) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        "application/merge-patch+json",
        &json!({"metadata": {"resourceVersion": stale}, "data": {"late": "x"}}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
}

/// `generateName` of 57 ASCII bytes then `é` (a two-byte character across the 58-byte cut)
/// is answered like upstream — 422 on `metadata.generateName`, which must be a DNS subdomain
/// prefix — instead of a handler panic; a long valid prefix is cut to 58 bytes.
#[tokio::test(flavor = "multi_thread")]
async fn generate_name_with_multibyte_character_at_the_cut() {
    let server = TestServer::start();
    let client = server.kube_client().await;
    let base = format!("{}é", "a".repeat(57));
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": base}});
    let (code, body) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &cm,
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["field"], "metadata.generateName",
        "{body}"
    );
    let name = body["details"]["name"].as_str().unwrap_or_default();
    assert_eq!(
        name.len(),
        62,
        "the generated name keeps 57 bytes + 5: {name}"
    );

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"generateName": "b".repeat(70)}});
    let (code, body) = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &cm,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    assert_eq!(name.len(), 63, "{name}");
    assert!(name.starts_with(&"b".repeat(58)), "{name}");
}

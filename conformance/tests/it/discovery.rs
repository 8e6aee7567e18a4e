//! Discovery as kubectl sees it: version, api-versions, api-resources, explain, system namespaces.

use ferrokube_conformance::{KUBECTL_VERSION, TestServer};

use crate::util::{Table, header_line, json, squash};

#[test]
fn kubectl_version_reports_a_1_35_server() {
    let server = TestServer::start();
    let out = json(&server.must_kubectl(["version", "-o", "json"]));
    assert_eq!(
        out["clientVersion"]["gitVersion"], KUBECTL_VERSION,
        "{out:#}"
    );
    let server_version = out["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(
        server_version.starts_with("v1.35."),
        "server gitVersion {server_version:?} in {out:#}"
    );
    assert_eq!(out["serverVersion"]["major"], "1", "{out:#}");
    assert_eq!(out["serverVersion"]["minor"], "35", "{out:#}");
    // No version-skew warning from kubectl.
    let plain = server.kubectl(["version"]);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(
        plain.status.success() && !stderr.contains("WARNING"),
        "{plain:?}"
    );
}

#[test]
fn api_versions_lists_builtin_groups() {
    let server = TestServer::start();
    let out = server.must_kubectl(["api-versions"]);
    let versions: Vec<&str> = out.lines().collect();
    for want in [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v1",
        "autoscaling/v2",
        "policy/v1",
        "networking.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
        "apiextensions.k8s.io/v1",
        "coordination.k8s.io/v1",
        "storage.k8s.io/v1",
    ] {
        assert!(
            versions.contains(&want),
            "api-versions lacks {want}:\n{out}"
        );
    }
}

#[test]
fn api_resources_have_short_names_and_scope() {
    let server = TestServer::start();
    let out = server.must_kubectl(["api-resources"]);
    let table = Table::parse(&out);
    assert_eq!(
        table.headers,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
        "{out}"
    );
    for (name, short, version, namespaced, kind) in [
        ("pods", "po", "v1", "true", "Pod"),
        ("services", "svc", "v1", "true", "Service"),
        ("configmaps", "cm", "v1", "true", "ConfigMap"),
        ("namespaces", "ns", "v1", "false", "Namespace"),
        ("nodes", "no", "v1", "false", "Node"),
        ("deployments", "deploy", "apps/v1", "true", "Deployment"),
        ("daemonsets", "ds", "apps/v1", "true", "DaemonSet"),
        ("statefulsets", "sts", "apps/v1", "true", "StatefulSet"),
        ("cronjobs", "cj", "batch/v1", "true", "CronJob"),
        (
            "horizontalpodautoscalers",
            "hpa",
            "autoscaling/v2",
            "true",
            "HorizontalPodAutoscaler",
        ),
        (
            "ingresses",
            "ing",
            "networking.k8s.io/v1",
            "true",
            "Ingress",
        ),
        (
            "clusterroles",
            "",
            "rbac.authorization.k8s.io/v1",
            "false",
            "ClusterRole",
        ),
    ] {
        assert_eq!(
            table.cell(name, "SHORTNAMES"),
            short,
            "{name} short names:\n{out}"
        );
        assert_eq!(
            table.cell(name, "APIVERSION"),
            version,
            "{name} version:\n{out}"
        );
        assert_eq!(
            table.cell(name, "NAMESPACED"),
            namespaced,
            "{name} scope:\n{out}"
        );
        assert_eq!(table.cell(name, "KIND"), kind, "{name} kind:\n{out}");
    }
    // Subresources are not listed.
    assert!(!out.contains("pods/status"), "{out}");
}

#[test]
fn explain_deployment_strategy_prints_field_docs() {
    let server = TestServer::start();
    let out = server.must_kubectl(["explain", "deployment.spec.strategy"]);
    let flat = squash(&out);
    for want in [
        "GROUP: apps",
        "KIND: Deployment",
        "VERSION: v1",
        "FIELD: strategy <DeploymentStrategy>",
        "DESCRIPTION:",
        "The deployment strategy to use to replace existing pods with new ones.",
        "FIELDS:",
        "rollingUpdate <RollingUpdateDeployment>",
        "type <string>",
    ] {
        assert!(flat.contains(want), "explain output lacks {want:?}:\n{out}");
    }
}

#[test]
fn get_namespaces_shows_system_namespaces() {
    let server = TestServer::start();
    let out = server.must_kubectl(["get", "ns"]);
    assert_eq!(header_line(&out), "NAME STATUS AGE", "{out}");
    let table = Table::parse(&out);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert_eq!(table.cell(ns, "STATUS"), "Active", "{out}");
    }
}

/// `/openapi/v2` as kubectl asks for it (gnostic protobuf, gzip accepted), as JSON, and with a
/// matching ETag; kubectl's client-side validation uses it (`kubectl apply` of a `List`,
/// `kubectl replace -f -`). The protobuf media type contains `@`, which a strict RFC 7230 parser drops: that
/// once made us answer 406 to kubectl's exact Accept header.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_v2_protobuf_json_and_etag() {
    use http_body_util::BodyExt;

    let server = TestServer::start();
    let client = server.kube_client().await;
    let fetch = |accept: &'static str, etag: Option<String>| {
        let client = client.clone();
        async move {
            let mut req = http::Request::get("/openapi/v2").header("Accept", accept);
            if let Some(e) = etag {
                req = req.header("If-None-Match", e);
            }
            let req = req.body(Vec::new()).map(|r| r.map(Into::into));
            let resp = match req {
                Ok(r) => client.send(r).await,
                Err(e) => panic!("request: {e}"),
            };
            let resp = match resp {
                Ok(r) => r,
                Err(e) => panic!("GET /openapi/v2 ({accept}): {e}"),
            };
            let (parts, body) = resp.into_parts();
            let bytes = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => panic!("reading /openapi/v2: {e}"),
            };
            (parts, bytes)
        }
    };
    // Answered as kube-openapi's `ReturnedContentType` (a dot, not `@`): client-go parses the
    // response's Content-Type with Go's `mime.ParseMediaType`, which rejects `@`, and turns the
    // fetch into `Internal error occurred: mime: unexpected content after media subtype`.
    let proto_type = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
    let (parts, body) = fetch(
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json",
        None,
    )
    .await;
    assert_eq!(parts.status, 200, "{parts:?}");
    assert_eq!(parts.headers["content-type"], proto_type, "{parts:?}");
    // gnostic openapi_v2.Document: field 1 (swagger) = "2.0".
    assert!(
        body.starts_with(b"\x0a\x032.0"),
        "{:?}",
        &body[..16.min(body.len())]
    );
    assert!(body.len() > 1_000_000, "{} bytes", body.len());

    let (parts, body) = fetch("application/json", None).await;
    assert_eq!(parts.status, 200, "{parts:?}");
    let doc: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => panic!("/openapi/v2 is not JSON: {e}"),
    };
    assert_eq!(doc["swagger"], "2.0");
    assert!(
        doc["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object(),
        "no Deployment definition"
    );
    let etag = match parts.headers.get("etag").and_then(|v| v.to_str().ok()) {
        Some(e) => e.to_string(),
        None => panic!("no ETag in {parts:?}"),
    };
    let (parts, _) = fetch("application/json", Some(etag)).await;
    assert_eq!(parts.status, 304, "{parts:?}");

    let (parts, _) = fetch("text/html", None).await;
    assert_eq!(parts.status, 406, "{parts:?}");
}

/// kubectl commands that download `/openapi/v2` in protobuf for client-side validation.
#[test]
fn kubectl_client_side_validation_downloads_openapi() {
    let server = TestServer::start();
    let list = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: list-a
  data: {x: "1"}
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: list-b
  data: {y: "2"}
"#;
    let out = server.must_kubectl_stdin(["apply", "-f", "-"], list);
    assert!(out.contains("configmap/list-a created"), "{out}");
    assert!(out.contains("configmap/list-b created"), "{out}");
    let cm = server.must_kubectl(["get", "cm", "list-a", "-o", "json"]);
    let out = server.must_kubectl_stdin(["replace", "-f", "-"], &cm);
    assert!(out.contains("configmap/list-a replaced"), "{out}");
    let out = server.must_kubectl_stdin(
        [
            "create",
            "-f",
            "-",
            "--dry-run=client",
            "--validate=strict",
            "-o",
            "name",
        ],
        list,
    );
    assert_eq!(out.trim(), "configmap/list-a\nconfigmap/list-b");
}

//! API aggregation (issue 10, item 3): an APIService backed by an HTTPS test server
//! (`hookserver.rs`) reached through a Service + EndpointSlice on 127.0.0.1. Its resources
//! appear in `kubectl api-resources` (aggregated discovery) and `/apis` (legacy), `kubectl get`
//! reaches it through the proxy with the caller's identity in `X-Remote-*` headers, a watch
//! streams through, and the `Available` condition follows the backend.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::admission_webhooks::{apiserver, service_for};
use crate::hookserver::{HookServer, Reply, Req};

const GV: &str = "/apis/wardle.example.com/v1alpha1";

fn flunder(name: &str) -> Value {
    json!({"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
           "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                        "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"reference": "x"}})
}

/// The backend: discovery, a list, one object, a two-event watch; records every request.
fn backend(seen: Arc<Mutex<Vec<Req>>>) -> HookServer {
    HookServer::start(
        &["api.default.svc"],
        Arc::new(move |req: &Req| {
            seen.lock().expect("lock").push(req.clone());
            let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
            match path {
                GV => Reply::json(&json!({
                    "kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": "wardle.example.com/v1alpha1",
                    "resources": [
                        {"name": "flunders", "singularName": "flunder", "namespaced": true,
                         "kind": "Flunder", "verbs": ["get", "list", "watch"], "shortNames": ["fl"]},
                        {"name": "flunders/status", "singularName": "", "namespaced": true,
                         "kind": "Flunder", "verbs": ["get"]}]})),
                "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"
                    if query.contains("watch=true") =>
                {
                    let ev = |t: &str, n: &str| {
                        let mut line = serde_json::to_vec(&json!({"type": t, "object": flunder(n)}))
                            .expect("event");
                        line.push(b'\n');
                        line
                    };
                    Reply {
                        chunks: vec![ev("ADDED", "f1"), ev("ADDED", "f2")],
                        chunk_delay: Duration::from_millis(200),
                        ..Reply::json(&Value::Null)
                    }
                }
                "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders" => {
                    Reply::json(&json!({"kind": "FlunderList",
                        "apiVersion": "wardle.example.com/v1alpha1",
                        "metadata": {"resourceVersion": "1"},
                        "items": [flunder("f1")]}))
                }
                "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders/f1" => {
                    Reply::json(&flunder("f1"))
                }
                _ => Reply::raw(404, br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#),
            }
        }),
    )
}

pub(crate) fn apiservice(
    name: &str,
    group: &str,
    version: &str,
    service: &str,
    ca: &str,
) -> String {
    json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
           "metadata": {"name": name},
           "spec": {"group": group, "version": version,
                    "service": {"namespace": "default", "name": service, "port": 443},
                    "caBundle": ca, "groupPriorityMinimum": 1000, "versionPriority": 15}})
    .to_string()
}

pub(crate) fn wait_available(
    server: &ferrokube_conformance::TestServer,
    name: &str,
    want: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = server.must_kubectl(["get", "apiservice", name, "-o", "json"]);
        let v: Value = serde_json::from_str(&out).expect("json");
        let cond = v["status"]["conditions"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == "Available"))
            .cloned();
        if let Some(c) = &cond
            && c["status"] == want
        {
            return c.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became Available={want}: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn apiservice_backed_by_a_test_server_is_discovered_and_proxied() {
    let server = apiserver();
    let seen: Arc<Mutex<Vec<Req>>> = Arc::default();
    let backend = backend(seen.clone());
    service_for(&server, "default", "api", backend.port);
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &apiservice(
            "v1alpha1.wardle.example.com",
            "wardle.example.com",
            "v1alpha1",
            "api",
            &backend.ca_bundle(),
        ),
    );
    let cond = wait_available(&server, "v1alpha1.wardle.example.com", "True");
    assert_eq!(cond["reason"], "Passed", "{cond}");
    let table = server.must_kubectl(["get", "apiservice", "v1alpha1.wardle.example.com"]);
    assert!(table.contains("default/api"), "{table}");

    // Discovery: aggregated (kubectl api-resources) and legacy.
    let resources = server.must_kubectl(["api-resources", "--api-group=wardle.example.com"]);
    assert!(
        resources.contains("flunders") && resources.contains("wardle.example.com/v1alpha1"),
        "{resources}"
    );
    let groups = server.must_kubectl(["get", "--raw", "/apis"]);
    assert!(
        groups.contains("\"wardle.example.com/v1alpha1\""),
        "{groups}"
    );
    let group = server.must_kubectl(["get", "--raw", "/apis/wardle.example.com"]);
    assert!(group.contains("\"preferredVersion\""), "{group}");
    let versions = server.must_kubectl(["api-versions"]);
    assert!(
        versions.contains("wardle.example.com/v1alpha1"),
        "{versions}"
    );

    // kubectl get through the proxy (plural, short name, one object).
    let list = server.must_kubectl(["get", "flunders"]);
    assert!(list.contains("f1"), "{list}");
    let one = server.must_kubectl(["get", "fl", "f1", "-o", "jsonpath={.spec.reference}"]);
    assert_eq!(one, "x");

    // The backend saw the admin's identity as front-proxy headers, never its credentials.
    let reqs = seen.lock().expect("lock").clone();
    let get = reqs
        .iter()
        .rev()
        .find(|r| {
            r.path
                .starts_with(&format!("{GV}/namespaces/default/flunders/f1"))
        })
        .expect("the proxied get");
    assert!(!get.header_all("x-remote-user").is_empty(), "{get:?}");
    assert!(
        get.header_all("x-remote-group")
            .iter()
            .any(|g| g == "system:masters"),
        "{get:?}"
    );
    assert!(get.header_all("authorization").is_empty());
    assert_eq!(get.method, "GET");

    // A watch streams through the proxy.
    let watch = server.must_kubectl([
        "get",
        "--raw",
        &format!("{GV}/namespaces/default/flunders?watch=true"),
    ]);
    assert!(
        watch.contains("\"f1\"") && watch.contains("\"f2\""),
        "{watch}"
    );

    // Impersonated users are proxied as themselves (RBAC first: admin may impersonate).
    server.must_kubectl([
        "get",
        "--raw",
        &format!("{GV}/namespaces/default/flunders"),
        "--as=alice",
        "--as-group=system:masters",
    ]);
    let reqs = seen.lock().expect("lock").clone();
    assert!(
        reqs.iter()
            .any(|r| r.header_all("x-remote-user") == ["alice"]),
        "no request as alice"
    );
}

#[test]
fn apiservice_availability_follows_its_service_and_backend() {
    let server = apiserver();
    // No such service: ServiceNotFound.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &apiservice(
            "v1.gone.example.com",
            "gone.example.com",
            "v1",
            "missing",
            "",
        ),
    );
    let c = wait_available(&server, "v1.gone.example.com", "False");
    assert_eq!(c["reason"], "ServiceNotFound", "{c}");
    let table = server.must_kubectl(["get", "apiservice", "v1.gone.example.com"]);
    assert!(table.contains("False (ServiceNotFound)"), "{table}");
    // Requests to it get 503 without harming anything.
    let err = server.must_kubectl_fail(["get", "--raw", "/apis/gone.example.com/v1/things"]);
    assert!(
        err.contains("ServiceUnavailable") || err.contains("unable to handle"),
        "{err}"
    );

    // A backend that comes up later: the condition turns True.
    let seen: Arc<Mutex<Vec<Req>>> = Arc::default();
    let backend = backend(seen);
    service_for(&server, "default", "api", backend.port);
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &apiservice(
            "v1alpha1.wardle.example.com",
            "wardle.example.com",
            "v1alpha1",
            "api",
            &backend.ca_bundle(),
        ),
    );
    wait_available(&server, "v1alpha1.wardle.example.com", "True");
    // The backend goes away: FailedDiscoveryCheck, and its resources leave discovery.
    drop(backend);
    let c = wait_available(&server, "v1alpha1.wardle.example.com", "False");
    assert_eq!(c["reason"], "FailedDiscoveryCheck", "{c}");
    // A wrong CA: the TLS check fails closed.
    let other = HookServer::start(
        &["api.default.svc"],
        Arc::new(|_: &Req| Reply::json(&json!({}))),
    );
    let wrong_ca = HookServer::start(&[], Arc::new(|_: &Req| Reply::json(&json!({}))));
    service_for(&server, "default", "api", other.port);
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &apiservice(
            "v1alpha1.wardle.example.com",
            "wardle.example.com",
            "v1alpha1",
            "api",
            &wrong_ca.ca_bundle(),
        ),
    );
    let c = wait_available(&server, "v1alpha1.wardle.example.com", "False");
    assert_eq!(c["reason"], "FailedDiscoveryCheck", "{c}");
    assert_eq!(
        other.hits(),
        0,
        "a request reached a server the CA does not vouch for"
    );
    assert!(
        server
            .must_kubectl(["get", "--raw", "/readyz"])
            .contains("ok")
    );
}

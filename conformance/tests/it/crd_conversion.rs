//! Custom resources beyond `conversion: None` (issue 10): `conversion: Webhook` against an
//! HTTPS test server renaming a field between v1 and v2 (read, write, list and watch at both
//! versions, upstream's failure messages), defaulting of stored objects on read, and creates
//! refused while the CRD is terminating — all with stock kubectl v1.35.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use serde_json::{Value, json};

use crate::hookserver::{HookServer, Reply, Req};
use crate::util::json as parse;

/// The conversion the test webhook does: `spec.color` (v1) ⇄ `spec.colour` (v2).
fn convert(obj: &Value, desired: &str) -> Value {
    let mut out = obj.clone();
    out["apiVersion"] = json!(desired);
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        let (from, to) = if desired.ends_with("/v2") {
            ("color", "colour")
        } else {
            ("colour", "color")
        };
        if let Some(v) = spec.remove(from) {
            spec.insert(to.to_string(), v);
        }
    }
    out
}

/// The webhook: converts, except that an object whose color is `wrong-uid` gets an answer
/// for another request, and `bad-name` gets its name changed.
fn converter(calls: Arc<AtomicUsize>, seen: Arc<Mutex<Vec<Value>>>) -> HookServer {
    HookServer::start(
        &["conv.default.svc"],
        Arc::new(move |req: &Req| {
            calls.fetch_add(1, Ordering::SeqCst);
            let review = req.json();
            seen.lock().expect("lock").push(review.clone());
            let request = &review["request"];
            let desired = request["desiredAPIVersion"].as_str().unwrap_or("");
            let objects = request["objects"].as_array().cloned().unwrap_or_default();
            let mut uid = request["uid"].clone();
            let mut converted = Vec::new();
            for o in &objects {
                let color = o["spec"]["color"]
                    .as_str()
                    .or(o["spec"]["colour"].as_str())
                    .unwrap_or("");
                let mut c = convert(o, desired);
                match color {
                    "wrong-uid" => uid = json!("not-the-request-uid"),
                    "bad-name" => c["metadata"]["name"] = json!("renamed"),
                    _ => {}
                }
                converted.push(c);
            }
            Reply::json(&json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "ConversionReview",
                "response": {"uid": uid, "result": {"status": "Success"},
                    "convertedObjects": converted},
            }))
        }),
    )
}

fn gizmo_crd(client_config: &Value) -> String {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.conv.example.com"},
        "spec": {
            "group": "conv.example.com",
            "scope": "Namespaced",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
            "conversion": {"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1", "v1beta1"],
                "clientConfig": client_config}},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object", "properties": {
                        "color": {"type": "string"}}}}}}},
                {"name": "v2", "served": true, "storage": false, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object", "properties": {
                        "colour": {"type": "string"},
                        "size": {"type": "integer", "default": 3}}}}}}}
            ]
        }
    });
    crd.to_string()
}

fn wait_established(server: &TestServer, crd: &str) {
    server.must_kubectl([
        "wait",
        "--for=condition=Established",
        &format!("crd/{crd}"),
        "--timeout=30s",
    ]);
}

/// Retries `f` for up to 20 s (CRD changes reach the serving state through a watch).
fn eventually(what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("timed out waiting for {what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn gizmo(version: &str, name: &str, field: &str, color: &str) -> String {
    json!({"apiVersion": format!("conv.example.com/{version}"), "kind": "Gizmo",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "gizmo"}},
        "spec": {field: color}})
    .to_string()
}

#[test]
fn webhook_conversion_renames_a_field_between_versions_on_read_write_list_and_watch() {
    let server = TestServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let hook = converter(calls.clone(), seen.clone());
    let cfg = json!({"url": hook.url("/convert"), "caBundle": hook.ca_bundle()});
    server.must_kubectl_stdin(["apply", "-f", "-"], &gizmo_crd(&cfg));
    wait_established(&server, "gizmos.conv.example.com");

    // Applied in v1 (the storage version): read in v2 through the webhook, with v2's default.
    server.must_kubectl_stdin(["apply", "-f", "-"], &gizmo("v1", "g1", "color", "red"));
    let before = calls.load(Ordering::SeqCst);
    let v2 = parse(&server.must_kubectl(["get", "gizmos.v2.conv.example.com", "g1", "-o", "json"]));
    assert!(
        calls.load(Ordering::SeqCst) > before,
        "the webhook was not called"
    );
    assert_eq!(v2["apiVersion"], "conv.example.com/v2", "{v2:#}");
    assert_eq!(v2["spec"], json!({"colour": "red", "size": 3}), "{v2:#}");
    assert_eq!(v2["metadata"]["labels"]["app"], "gizmo");
    assert!(
        !v2["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    );
    // The request the webhook saw: ConversionReview v1 (the first listed), one object in v1.
    let review = seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        review["apiVersion"], "apiextensions.k8s.io/v1",
        "{review:#}"
    );
    assert_eq!(
        review["request"]["desiredAPIVersion"],
        "conv.example.com/v2"
    );
    assert_eq!(review["request"]["objects"][0]["spec"]["color"], "red");

    // Applied in v2: stored in v1 (read back at v1 without `colour`), and read again in v2.
    server.must_kubectl_stdin(["apply", "-f", "-"], &gizmo("v2", "g2", "colour", "blue"));
    let v1 = parse(&server.must_kubectl(["get", "gizmos.v1.conv.example.com", "g2", "-o", "json"]));
    assert_eq!(v1["apiVersion"], "conv.example.com/v1");
    assert_eq!(v1["spec"], json!({"color": "blue"}), "{v1:#}");
    let v2 = server.must_kubectl([
        "get",
        "gizmos.v2.conv.example.com",
        "g2",
        "-o",
        "jsonpath={.spec.colour}/{.spec.size}",
    ]);
    assert_eq!(v2.trim(), "blue/3");

    // Lists at v2: every item converted (one call for the page).
    let list = parse(&server.must_kubectl(["get", "gizmos.v2.conv.example.com", "-o", "json"]));
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{list:#}");
    for it in items {
        assert_eq!(it["apiVersion"], "conv.example.com/v2");
        assert!(it["spec"]["colour"].is_string(), "{it:#}");
        assert!(it["spec"].get("color").is_none(), "{it:#}");
    }
    let table = server.must_kubectl(["get", "gizmos.v2.conv.example.com"]);
    assert!(table.contains("g1") && table.contains("g2"), "{table}");

    // A merge patch at v2 goes through both conversions and keeps the other field.
    server.must_kubectl([
        "patch",
        "gizmos.v2.conv.example.com",
        "g1",
        "--type=merge",
        "-p",
        r#"{"spec":{"colour":"green"}}"#,
    ]);
    let v1 = parse(&server.must_kubectl(["get", "gizmos.v1.conv.example.com", "g1", "-o", "json"]));
    assert_eq!(v1["spec"]["color"], "green", "{v1:#}");

    // Watch at v2: the initial events come converted.
    let watched = server.must_kubectl([
        "get",
        "--raw",
        "/apis/conv.example.com/v2/namespaces/default/gizmos?watch=1&timeoutSeconds=2",
    ]);
    let events: Vec<Value> = watched
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse)
        .collect();
    assert_eq!(events.len(), 2, "{watched}");
    for e in &events {
        assert_eq!(e["type"], "ADDED");
        assert_eq!(e["object"]["apiVersion"], "conv.example.com/v2");
        assert!(e["object"]["spec"]["colour"].is_string(), "{e:#}");
    }

    // Answers that break upstream's rules: 500 with upstream's message.
    let out = server.kubectl_stdin(
        ["create", "-f", "-"],
        &gizmo("v2", "g3", "colour", "wrong-uid"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "Internal error occurred: conversion webhook for conv.example.com/v2, Kind=Gizmo failed: expected response.uid="
        ) && stderr.contains(r#"got "not-the-request-uid""#),
        "{stderr}"
    );
    let out = server.kubectl_stdin(
        ["create", "-f", "-"],
        &gizmo("v2", "g4", "colour", "bad-name"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains(
            "conversion webhook for conv.example.com/v2, Kind=Gizmo returned invalid converted object at index 0: must have the same name: g4 != renamed"
        ),
        "{stderr}"
    );
    let names = server.must_kubectl(["get", "gizmos", "-o", "name"]);
    assert_eq!(names.lines().count(), 2, "{names}");
}

#[test]
fn unreachable_conversion_webhook_fails_reads_at_the_other_version_only() {
    let server = TestServer::start();
    // A URL where nothing listens (a port of a stopped server).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let cfg = json!({"url": format!("https://127.0.0.1:{port}/convert")});
    server.must_kubectl_stdin(["apply", "-f", "-"], &gizmo_crd(&cfg));
    wait_established(&server, "gizmos.conv.example.com");
    server.must_kubectl_stdin(["apply", "-f", "-"], &gizmo("v1", "g1", "color", "red"));
    // The storage version needs no call.
    let v1 = server.must_kubectl([
        "get",
        "gizmos.v1.conv.example.com",
        "g1",
        "-o",
        "jsonpath={.spec.color}",
    ]);
    assert_eq!(v1, "red");
    let out = server.kubectl(["get", "gizmos.v2.conv.example.com", "g1"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        stderr.contains("conversion webhook for conv.example.com/v1, Kind=Gizmo failed: Post \"https://127.0.0.1:"),
        "{stderr}"
    );
}

const SPROCKETS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: sprockets.conv.example.com}
spec:
  group: conv.example.com
  scope: Namespaced
  names: {plural: sprockets, singular: sprocket, kind: Sprocket}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              teeth: {type: integer}
              metal: {type: string__DEFAULT__}
"#;

#[test]
fn stored_objects_get_new_defaults_on_get_list_and_watch() {
    let server = TestServer::start();
    server.must_kubectl_stdin(["apply", "-f", "-"], &SPROCKETS.replace("__DEFAULT__", ""));
    wait_established(&server, "sprockets.conv.example.com");
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        "apiVersion: conv.example.com/v1\nkind: Sprocket\nmetadata: {name: s1, namespace: default}\nspec: {teeth: 12}\n",
    );
    let plain = parse(&server.must_kubectl(["get", "sprocket", "s1", "-o", "json"]));
    assert_eq!(plain["spec"], json!({"teeth": 12}));
    // The schema gains a default: the stored object (unchanged in storage) is read with it.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &SPROCKETS.replace("__DEFAULT__", ", default: steel"),
    );
    eventually("the default on get", || {
        let v = parse(&server.must_kubectl(["get", "sprocket", "s1", "-o", "json"]));
        (v["spec"] == json!({"teeth": 12, "metal": "steel"}))
            .then_some(())
            .ok_or_else(|| v.to_string())
    });
    let list = parse(&server.must_kubectl(["get", "sprockets", "-o", "json"]));
    assert_eq!(list["items"][0]["spec"]["metal"], "steel", "{list:#}");
    let watched = server.must_kubectl([
        "get",
        "--raw",
        "/apis/conv.example.com/v1/namespaces/default/sprockets?watch=1&timeoutSeconds=1",
    ]);
    let ev = parse(watched.lines().next().unwrap_or("null"));
    assert_eq!(ev["object"]["spec"]["metal"], "steel", "{watched}");
    // An explicit value is kept.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        "apiVersion: conv.example.com/v1\nkind: Sprocket\nmetadata: {name: s2, namespace: default}\nspec: {metal: brass}\n",
    );
    let s2 = server.must_kubectl(["get", "sprocket", "s2", "-o", "jsonpath={.spec.metal}"]);
    assert_eq!(s2, "brass");
}

#[test]
fn creating_a_custom_resource_while_its_crd_terminates_is_refused_with_405() {
    let server = TestServer::start();
    server.must_kubectl_stdin(["apply", "-f", "-"], &SPROCKETS.replace("__DEFAULT__", ""));
    wait_established(&server, "sprockets.conv.example.com");
    // A finalizer on the object holds the CRD's cleanup (and so the CRD) in Terminating.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        "apiVersion: conv.example.com/v1\nkind: Sprocket\nmetadata: {name: held, namespace: default, finalizers: [example.com/hold]}\nspec: {teeth: 1}\n",
    );
    server.must_kubectl([
        "delete",
        "crd",
        "sprockets.conv.example.com",
        "--wait=false",
    ]);
    eventually("the refusal", || {
        let out = server.kubectl_stdin(
            ["create", "-f", "-", "-o", "json"],
            "apiVersion: conv.example.com/v1\nkind: Sprocket\nmetadata: {name: late, namespace: default}\n",
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() {
            // Not terminating yet as the server sees it: undo and retry.
            server.kubectl(["delete", "sprocket", "late", "--wait=false"]);
            return Err("created".into());
        }
        (stderr.contains("create not allowed while custom resource definition is terminating"))
            .then_some(())
            .ok_or(stderr)
    });
    // The raw Status: 405 MethodNotAllowed.
    let out = server.kubectl_stdin(
        [
            "create",
            "--raw",
            "/apis/conv.example.com/v1/namespaces/default/sprockets",
            "-f",
            "-",
        ],
        r#"{"apiVersion":"conv.example.com/v1","kind":"Sprocket","metadata":{"name":"raw"}}"#,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("MethodNotAllowed") || stderr.contains("405"),
        "{stderr}"
    );
    // Updates still work: the finalizer goes, the cleanup completes, the CRD goes.
    server.must_kubectl([
        "patch",
        "sprocket",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    server.must_kubectl([
        "wait",
        "--for=delete",
        "crd/sprockets.conv.example.com",
        "--timeout=30s",
    ]);
}

//! Server-side apply of custom resources under their schema's list and map types (issue 10):
//! `x-kubernetes-list-type: map` with `x-kubernetes-list-map-keys` (items owned per key),
//! `set` (items owned per value), `atomic` (the default: one owner for the whole list) and
//! `x-kubernetes-map-type: atomic`, with upstream's conflict messages — stock kubectl v1.35.

use ferrokube_conformance::TestServer;
use serde_json::{Value, json};

use crate::util::json as parse;

const ROUTERS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: routers.ssa.example.com}
spec:
  group: ssa.example.com
  scope: Namespaced
  names: {plural: routers, singular: router, kind: Router}
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
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name, protocol]
                items:
                  type: object
                  required: [name, protocol]
                  properties:
                    name: {type: string}
                    protocol: {type: string}
                    port: {type: integer}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
              hosts:
                type: array
                items: {type: string}
              selector:
                type: object
                x-kubernetes-map-type: atomic
                additionalProperties: {type: string}
"#;

fn router(spec: Value) -> String {
    json!({"apiVersion": "ssa.example.com/v1", "kind": "Router",
        "metadata": {"name": "r1", "namespace": "default"}, "spec": spec})
    .to_string()
}

fn ssa(server: &TestServer, manager: &str, spec: Value, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "apply".to_string(),
        "--server-side".into(),
        format!("--field-manager={manager}"),
        "-f".into(),
        "-".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    server.kubectl_stdin(args, &router(spec))
}

fn must_ssa(server: &TestServer, manager: &str, spec: Value) {
    let out = ssa(server, manager, spec, &[]);
    assert!(
        out.status.success(),
        "{manager}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn get(server: &TestServer) -> Value {
    parse(&server.must_kubectl(["get", "router", "r1", "-o", "json", "--show-managed-fields"]))
}

fn fields_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
        .map(|e| &e["fieldsV1"])
        .unwrap_or_else(|| panic!("no managedFields entry for {manager}: {obj:#}"))
}

fn setup() -> TestServer {
    let server = TestServer::start();
    server.must_kubectl_stdin(["apply", "-f", "-"], ROUTERS);
    server.must_kubectl([
        "wait",
        "--for=condition=Established",
        "crd/routers.ssa.example.com",
        "--timeout=30s",
    ]);
    server
}

#[test]
fn two_managers_own_different_entries_of_a_map_list_and_a_set() {
    let server = setup();
    must_ssa(
        &server,
        "alpha",
        json!({"ports": [{"name": "http", "protocol": "TCP", "port": 80}], "tags": ["blue"]}),
    );
    must_ssa(
        &server,
        "beta",
        json!({"ports": [{"name": "https", "protocol": "TCP", "port": 443}], "tags": ["green"]}),
    );
    let obj = get(&server);
    assert_eq!(
        obj["spec"]["ports"],
        json!([{"name": "http", "protocol": "TCP", "port": 80},
               {"name": "https", "protocol": "TCP", "port": 443}]),
        "{obj:#}"
    );
    assert_eq!(obj["spec"]["tags"], json!(["blue", "green"]));
    // Ownership per key (both keys in the element) and per set value, as upstream writes it.
    let alpha = fields_of(&obj, "alpha");
    assert!(
        alpha["f:spec"]["f:ports"]
            .get(r#"k:{"name":"http","protocol":"TCP"}"#)
            .is_some(),
        "{alpha:#}"
    );
    assert!(
        alpha["f:spec"]["f:tags"].get(r#"v:"blue""#).is_some(),
        "{alpha:#}"
    );
    // Beta re-applies without its entry: only its entry goes.
    must_ssa(&server, "beta", json!({"tags": ["green"]}));
    let obj = get(&server);
    assert_eq!(
        obj["spec"]["ports"],
        json!([{"name": "http", "protocol": "TCP", "port": 80}])
    );

    // Beta changes alpha's port: a conflict naming the keyed field, as upstream prints it.
    let out = ssa(
        &server,
        "beta",
        json!({"ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}),
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"Apply failed with 1 conflict: conflict with "alpha": .spec.ports[name="http",protocol="TCP"].port"#
        ),
        "{err}"
    );
    let out = ssa(
        &server,
        "beta",
        json!({"ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}),
        &["--force-conflicts"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(get(&server)["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn atomic_lists_and_maps_have_one_owner() {
    let server = setup();
    must_ssa(
        &server,
        "alpha",
        json!({"hosts": ["a.example.com"], "selector": {"app": "x"}}),
    );
    // A list without a list type is atomic: another manager's different list conflicts.
    let out = ssa(&server, "beta", json!({"hosts": ["b.example.com"]}), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "alpha": .spec.hosts"#),
        "{err}"
    );
    // An atomic map too, as a whole (not per key).
    let out = ssa(&server, "beta", json!({"selector": {"tier": "y"}}), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"conflict with "alpha": .spec.selector"#),
        "{err}"
    );
    let obj = get(&server);
    let alpha = fields_of(&obj, "alpha");
    assert_eq!(alpha["f:spec"]["f:selector"], json!({}), "{alpha:#}");
    assert_eq!(alpha["f:spec"]["f:hosts"], json!({}), "{alpha:#}");
    // Forced: the whole list and map move to beta, replaced, not merged.
    let out = ssa(
        &server,
        "beta",
        json!({"hosts": ["b.example.com"], "selector": {"tier": "y"}}),
        &["--force-conflicts"],
    );
    assert!(out.status.success(), "{out:?}");
    let obj = get(&server);
    assert_eq!(obj["spec"]["hosts"], json!(["b.example.com"]));
    assert_eq!(obj["spec"]["selector"], json!({"tier": "y"}));
}

//! ValidatingAdmissionPolicy `status.typeChecking` (issue 8), as upstream's e2e tests "should
//! type check validation expressions" and "should type check a CRD": expressions are checked
//! against the schemas of the matched kinds; type confusion and unknown fields become
//! `expressionWarnings` with cel-go's messages, well-typed policies get none. With stock kubectl.

use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use serde_json::{Value, json};

use crate::admission_webhooks::apiserver;

fn policy(name: &str, group: &str, resource: &str, validations: Value) -> String {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
           "metadata": {"name": name},
           "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [group], "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"], "resources": [resource]}]},
                    "validations": validations}})
    .to_string()
}

/// Creates the policy and waits for `status.typeChecking`; returns the warnings.
fn type_checked(server: &TestServer, manifest: &str, name: &str) -> Vec<Value> {
    server.must_kubectl_stdin(["create", "-f", "-"], manifest);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = server.must_kubectl(["get", "validatingadmissionpolicy", name, "-o", "json"]);
        let v: Value = serde_json::from_str(&o).expect("policy JSON");
        if let Some(tc) = v.pointer("/status/typeChecking") {
            return tc
                .get("expressionWarnings")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "no status.typeChecking: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn field(w: &Value, key: &str) -> String {
    w.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

#[test]
fn policies_are_type_checked_against_builtin_and_crd_schemas() {
    let server = apiserver();
    // A built-in kind.
    let ok = policy(
        "correct.example.com",
        "apps",
        "deployments",
        json!([{"expression": "object.spec.replicas > 1"}]),
    );
    assert_eq!(
        type_checked(&server, &ok, "correct.example.com"),
        Vec::<Value>::new()
    );
    let confused = policy(
        "confused.example.com",
        "apps",
        "deployments",
        json!([{"expression": "object.spec.replicas > '1'",
                "messageExpression": "'wants replicas > 1, got ' + object.spec.replicas"}]),
    );
    let w = type_checked(&server, &confused, "confused.example.com");
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(field(&w[0], "fieldRef"), "spec.validations[0].expression");
    assert!(
        field(&w[0], "warning").starts_with("apps/v1, Kind=Deployment: ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'"),
        "{w:?}"
    );
    assert_eq!(
        field(&w[1], "fieldRef"),
        "spec.validations[0].messageExpression"
    );
    assert!(
        field(&w[1], "warning")
            .contains("found no matching overload for '_+_' applied to '(string, int)'"),
        "{w:?}"
    );

    // A custom resource (upstream's crontab example).
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "crontabs.stable.example.com"},
                "spec": {"group": "stable.example.com", "scope": "Namespaced",
                         "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
                         "versions": [{"name": "v1", "served": true, "storage": true,
                            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                "spec": {"type": "object", "properties": {
                                    "cronSpec": {"type": "string"},
                                    "image": {"type": "string"},
                                    "replicas": {"type": "integer"}}}}}}}]}})
        .to_string(),
    );
    server.must_kubectl([
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
        "--timeout=10s",
    ]);
    let ok = policy(
        "correct-crd.example.com",
        "stable.example.com",
        "crontabs",
        json!([{"expression": "object.spec.replicas > 1 && object.spec.image.startsWith('r')"}]),
    );
    assert_eq!(
        type_checked(&server, &ok, "correct-crd.example.com"),
        Vec::<Value>::new()
    );
    let confused = policy(
        "confused-crd.example.com",
        "stable.example.com",
        "crontabs",
        json!([{"expression": "object.spec.replicas > '1'"},
               {"expression": "object.spec.maxRetries < 10"}]),
    );
    let w = type_checked(&server, &confused, "confused-crd.example.com");
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(field(&w[0], "fieldRef"), "spec.validations[0].expression");
    assert!(
        field(&w[0], "warning").starts_with("stable.example.com/v1, Kind=CronTab: ERROR:")
            && field(&w[0], "warning")
                .contains("found no matching overload for '_>_' applied to '(int, string)'"),
        "{w:?}"
    );
    assert_eq!(field(&w[1], "fieldRef"), "spec.validations[1].expression");
    assert!(
        field(&w[1], "warning").contains("undefined field 'maxRetries'"),
        "{w:?}"
    );

    // Wildcard rules name no kind: nothing to check, no warnings (as upstream).
    let wild = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
           "metadata": {"name": "wild.example.com"},
           "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"],
                        "operations": ["CREATE"], "resources": ["*"]}]},
                    "validations": [{"expression": "object.spec.replicas > '1'"}]}})
    .to_string();
    assert_eq!(
        type_checked(&server, &wild, "wild.example.com"),
        Vec::<Value>::new()
    );
}

//! Admission reinvocation across plugins (issue 8; upstream `admission/reinvocation.go`): a
//! mutating webhook that changes the object makes the chain run once more, so an earlier
//! MutatingAdmissionPolicy with `reinvocationPolicy: IfNeeded` sees the webhook's change, and a
//! webhook with `IfNeeded` sees a policy's change; entries with `Never` run once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrokube_conformance::{ServerSpec, TestServer};
use serde_json::json;

use crate::hookserver::{HookServer, Reply, Req, review};

fn server() -> TestServer {
    TestServer::start_with(ServerSpec {
        apiserver_only: true,
        extra_args: vec![
            "--feature-gates=MutatingAdmissionPolicy=true".into(),
            "--runtime-config=admissionregistration.k8s.io/v1beta1=true".into(),
        ],
        ..ServerSpec::default()
    })
}

/// A policy copying the `webhook` label (or "none") into the `policy-saw` annotation.
fn policy(reinvocation: &str) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata: {{name: copy-webhook-label}}
spec:
  matchConstraints:
    resourceRules:
    - {{apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"]}}
  reinvocationPolicy: {reinvocation}
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >
        Object{{metadata: Object.metadata{{annotations: {{"policy-saw":
          has(object.metadata.labels) && "webhook" in object.metadata.labels ? object.metadata.labels["webhook"] : "none"}}}}}}
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata: {{name: copy-webhook-label}}
spec: {{policyName: copy-webhook-label}}
"#
    )
}

/// A webhook labelling `webhook=yes` and recording whether it saw the policy's annotation.
fn webhook_config(hooks: &HookServer, reinvocation: &str) -> String {
    json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration", "metadata": {"name": "label"},
        "webhooks": [{"name": "label.example.com",
            "clientConfig": {"url": hooks.url("/"), "caBundle": hooks.ca_bundle()},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
            "reinvocationPolicy": reinvocation}]})
    .to_string()
}

fn label_hook() -> HookServer {
    HookServer::start(
        &[],
        Arc::new(|req: &Req| {
            let obj = &req.json()["request"]["object"];
            let saw = obj["metadata"]["annotations"]["policy-saw"]
                .as_str()
                .unwrap_or("absent")
                .to_string();
            let mut patch = Vec::new();
            if obj["metadata"]["labels"].is_null() {
                patch.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
            }
            patch.push(json!({"op": "add", "path": "/metadata/labels/webhook", "value": "yes"}));
            patch.push(
                json!({"op": "add", "path": "/metadata/labels/hook-saw-policy", "value": saw}),
            );
            Reply::json(&review(req, true, "", Some(json!(patch)), &[]))
        }),
    )
}

/// Creates ConfigMaps until `f` accepts what one looks like (configurations arrive by watch).
fn probe(server: &TestServer, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut i = 0;
    loop {
        i += 1;
        let name = format!("{}-{i}", what.replace(' ', "-"));
        server.must_kubectl(["create", "configmap", &name]);
        let s = server.must_kubectl([
            "get",
            "configmap",
            &name,
            "-o",
            "jsonpath={.metadata.annotations.policy-saw}/{.metadata.labels.webhook}/{.metadata.labels.hook-saw-policy}",
        ]);
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: last {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_webhook_change_reinvokes_an_earlier_if_needed_policy_once() {
    let server = server();
    let hooks = label_hook();
    server.must_kubectl_stdin(["apply", "-f", "-"], &policy("IfNeeded"));
    server.must_kubectl_stdin(["apply", "-f", "-"], &webhook_config(&hooks, "Never"));
    // The policy runs before the webhook, then once more after the webhook labelled the
    // object; the webhook (Never) is not called again, so it saw the first policy output.
    let s = probe(&server, "policy reinvoked", |s| s.ends_with("/yes/none"));
    assert_eq!(s, "yes/yes/none");
    let before = hooks.hits();
    server.must_kubectl(["create", "configmap", "one-call"]);
    assert_eq!(hooks.hits(), before + 1, "a Never webhook is called once");

    // Never on the policy: it keeps what it saw in the first pass.
    server.must_kubectl_stdin(["apply", "-f", "-"], &policy("Never"));
    let s = probe(&server, "policy not reinvoked", |s| s.starts_with("none/"));
    assert_eq!(s, "none/yes/none");

    // IfNeeded on the webhook, policy IfNeeded: in the second pass the policy changes the
    // object, so the webhook runs again and sees the policy's new annotation.
    server.must_kubectl_stdin(["apply", "-f", "-"], &policy("IfNeeded"));
    server.must_kubectl_stdin(["apply", "-f", "-"], &webhook_config(&hooks, "IfNeeded"));
    let s = probe(&server, "both reinvoked", |s| s == "yes/yes/yes");
    assert_eq!(s, "yes/yes/yes");
    let before = hooks.hits();
    server.must_kubectl(["create", "configmap", "two-calls"]);
    assert_eq!(
        hooks.hits(),
        before + 2,
        "an IfNeeded webhook is reinvoked once"
    );
}

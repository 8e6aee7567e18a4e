//! ValidatingAdmissionPolicy and webhook `matchConditions` (issue 8) with stock kubectl: the
//! Kubernetes docs' `replicas <= 5` policy, the Warn action, a ConfigMap param, expressions
//! that do not compile (422 with upstream's field paths), runaway cost and hostile
//! expressions, matchConditions that skip webhook calls, and the create rate with one policy
//! vs none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use serde_json::{Value, json};

use crate::admission_webhooks::apiserver;
use crate::hookserver::{HookServer, Reply, Req, review};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn deployment(ns: &str, name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: nginx, image: nginx}}]
"#
    )
}

/// A multi-document YAML stream of JSON documents.
fn docs(items: &[Value]) -> String {
    items
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// Retries `f` until it gives `Some` (policies reach the plugin through a watch).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Applies `manifest` until kubectl fails; returns its stderr.
fn until_denied(server: &TestServer, manifest: &str) -> String {
    eventually("the policy to deny", || {
        let o = server.kubectl_stdin(["apply", "-f", "-"], manifest);
        (!o.status.success()).then(|| stderr(&o))
    })
}

/// The docs' example (`validating-admission-policy.md`), verbatim.
const DOCS_POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: "demo-policy.example.com"
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups:   ["apps"]
      apiVersions: ["v1"]
      operations:  ["CREATE", "UPDATE"]
      resources:   ["deployments"]
  validations:
    - expression: "object.spec.replicas <= 5"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: "demo-binding-test.example.com"
spec:
  policyName: "demo-policy.example.com"
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: test
"#;

#[test]
fn policy_denies_replicas_over_5_as_in_the_kubernetes_docs() {
    let server = apiserver();
    server.must_kubectl(["create", "namespace", "test"]);
    server.must_kubectl(["label", "namespace", "test", "environment=test"]);
    let out = server.must_kubectl_stdin(["apply", "-f", "-"], DOCS_POLICY);
    assert!(
        out.contains(
            "validatingadmissionpolicy.admissionregistration.k8s.io/demo-policy.example.com created"
        ),
        "{out}"
    );
    let err = until_denied(&server, &deployment("test", "nginx", 6));
    assert_eq!(
        err.trim_end(),
        "The deployments \"nginx\" is invalid: : ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= 5"
    );
    server.must_kubectl_fail(["get", "deployment", "nginx", "-n", "test"]);
    // The raw Status: reason Invalid, 422, the message as the one cause.
    let o = server.kubectl_stdin(
        ["create", "-f", "-", "-o", "json", "-v=8"],
        &deployment("test", "raw", 6),
    );
    assert!(!o.status.success());
    let log = stderr(&o);
    assert!(log.contains("422 Unprocessable Entity"), "{log}");
    assert!(log.contains(r#""reason":"Invalid""#), "{log}");
    assert!(
        log.contains(r#"deployments.apps \"raw\" is forbidden: ValidatingAdmissionPolicy 'demo-policy.example.com'"#),
        "{log}"
    );
    // 5 replicas pass; the namespace without the label is not bound; scaling up is an update.
    server.must_kubectl_stdin(["apply", "-f", "-"], &deployment("test", "nginx", 5));
    server.must_kubectl_stdin(["apply", "-f", "-"], &deployment("default", "nginx", 6));
    let o = server.kubectl([
        "patch",
        "deployment",
        "nginx",
        "-n",
        "test",
        "-p",
        r#"{"spec":{"replicas":7}}"#,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("failed expression: object.spec.replicas <= 5"),
        "{}",
        stderr(&o)
    );
    // As upstream, the rule names `deployments`, not `deployments/scale`: scaling is not matched.
    server.must_kubectl(["scale", "deployment", "nginx", "-n", "test", "--replicas=7"]);
    // The status records the generation the policy was checked at.
    eventually("status.observedGeneration", || {
        let s = server.must_kubectl([
            "get",
            "validatingadmissionpolicy",
            "demo-policy.example.com",
            "-o",
            "jsonpath={.status.observedGeneration}",
        ]);
        (s == "1").then_some(())
    });
    // Deleting the binding lifts the policy.
    server.must_kubectl([
        "delete",
        "validatingadmissionpolicybinding",
        "demo-binding-test.example.com",
    ]);
    eventually("the policy to stop denying", || {
        server
            .kubectl_stdin(["apply", "-f", "-"], &deployment("test", "nginx", 6))
            .status
            .success()
            .then_some(())
    });
}

#[test]
fn warn_action_prints_a_kubectl_warning_and_admits() {
    let server = apiserver();
    let manifest = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: warn-replicas}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: ["apps"], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["deployments"]}
  validations:
  - expression: "object.spec.replicas <= 2"
    messageExpression: "'replicas must be at most 2, got ' + string(object.spec.replicas)"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: warn-binding}
spec:
  policyName: warn-replicas
  validationActions: [Warn, Audit]
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], manifest);
    let warning = eventually("the Warn action", || {
        let o = server.kubectl_stdin(["apply", "-f", "-"], &deployment("default", "web", 3));
        assert!(o.status.success(), "{}", stderr(&o));
        let e = stderr(&o);
        e.contains("Warning:").then_some(e)
    });
    assert!(
        warning.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'warn-replicas' with binding 'warn-binding': replicas must be at most 2, got 3"),
        "{warning}"
    );
    server.must_kubectl(["get", "deployment", "web"]);
}

#[test]
fn configmap_params_with_selector_reason_and_parameter_not_found_action() {
    let server = apiserver();
    let manifest = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: max-replicas}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: ["apps"], apiVersions: ["v1"], operations: ["CREATE"], resources: ["deployments"]}
  variables:
  - {name: limit, expression: "int(params.data.maxReplicas)"}
  validations:
  - expression: "object.spec.replicas <= variables.limit"
    messageExpression: "'at most ' + string(variables.limit) + ' replicas in ' + namespaceObject.metadata.name"
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: max-replicas}
spec:
  policyName: max-replicas
  validationActions: [Deny]
  paramRef: {name: replica-limits, namespace: default, parameterNotFoundAction: Deny}
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], manifest);
    let err = until_denied(&server, &deployment("default", "a", 1));
    assert!(
        err.contains("Error from server (Invalid): error when creating \"STDIN\": deployments.apps \"a\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction")
            || err.contains("failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"),
        "{err}"
    );
    server.must_kubectl([
        "create",
        "configmap",
        "replica-limits",
        "--from-literal=maxReplicas=3",
    ]);
    let o = server.kubectl_stdin(["apply", "-f", "-"], &deployment("default", "b", 4));
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o).trim_end(),
        "Error from server (Forbidden): error when creating \"STDIN\": deployments.apps \"b\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas' denied request: at most 3 replicas in default"
    );
    server.must_kubectl_stdin(["apply", "-f", "-"], &deployment("default", "b", 3));
    // The param is read per request: a new limit applies at once.
    server.must_kubectl([
        "patch",
        "configmap",
        "replica-limits",
        "-p",
        r#"{"data":{"maxReplicas":"10"}}"#,
    ]);
    server.must_kubectl_stdin(["apply", "-f", "-"], &deployment("default", "c", 9));
    // A selector over several params: every one must pass; Allow without params admits.
    let by_selector = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: max-replicas}
spec:
  policyName: max-replicas
  validationActions: [Deny]
  paramRef: {selector: {matchLabels: {limits: "yes"}}, parameterNotFoundAction: Allow}
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], by_selector);
    eventually("the Allow action", || {
        server
            .kubectl_stdin(["apply", "-f", "-"], &deployment("default", "d", 50))
            .status
            .success()
            .then_some(())
    });
    server.must_kubectl(["create", "configmap", "l1", "--from-literal=maxReplicas=8"]);
    server.must_kubectl(["create", "configmap", "l2", "--from-literal=maxReplicas=4"]);
    server.must_kubectl(["label", "configmap", "l1", "l2", "limits=yes"]);
    let err = until_denied(&server, &deployment("default", "e", 6));
    assert!(
        err.contains("denied request: at most 4 replicas in default"),
        "{err}"
    );
}

#[test]
fn expressions_that_do_not_compile_are_422_with_upstreams_field_paths() {
    let server = apiserver();
    let policy = |validations: Value| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
               "metadata": {"name": "bad"},
               "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                            "operations": ["CREATE"], "resources": ["deployments"]}]},
                        "validations": validations}})
        .to_string()
    };
    let o = server.kubectl_stdin(
        ["create", "-f", "-"],
        &policy(
            json!([{"expression": "object.spec.replicas <="}, {"expression": "1 + 1"},
                       {"expression": "variables.nope"}]),
        ),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("The ValidatingAdmissionPolicy \"bad\" is invalid:"),
        "{e}"
    );
    assert!(
        e.contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed: ERROR: <input>:"),
        "{e}"
    );
    assert!(
        e.contains(
            "spec.validations[1].expression: Invalid value: \"1 + 1\": must evaluate to bool"
        ),
        "{e}"
    );
    assert!(
        e.contains("spec.validations[2].expression: Invalid value: \"variables.nope\""),
        "{e}"
    );
    server.must_kubectl_fail(["get", "validatingadmissionpolicy", "bad"]);
    // Bindings: Deny and Warn together, a paramRef without parameterNotFoundAction.
    let o = server.kubectl_stdin(
        ["create", "-f", "-"],
        &json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": "b"}, "spec": {"policyName": "bad", "validationActions": ["Deny", "Warn"],
                "paramRef": {"name": "x"}}})
        .to_string(),
    );
    let e = stderr(&o);
    assert!(
        e.contains("spec.paramRef.parameterNotFoundAction: Required value"),
        "{e}"
    );
    assert!(e.contains("must not contain both Deny and Warn"), "{e}");
    // Webhook matchConditions: compiled, at most 64, unique names.
    let many: Vec<Value> = (0..65)
        .map(|i| json!({"name": format!("c{i}"), "expression": "true"}))
        .collect();
    let cfg = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "cel"},
        "webhooks": [
            {"name": "a.example.com", "clientConfig": {"url": "https://127.0.0.1:1/"},
             "sideEffects": "None", "admissionReviewVersions": ["v1"],
             "matchConditions": [{"name": "x", "expression": "object.metadata.name.startsWith("},
                                 {"name": "x", "expression": "true"}]},
            {"name": "b.example.com", "clientConfig": {"url": "https://127.0.0.1:1/"},
             "sideEffects": "None", "admissionReviewVersions": ["v1"], "matchConditions": many}]});
    let o = server.kubectl_stdin(["create", "-f", "-"], &cfg.to_string());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("webhooks[0].matchConditions[0].expression: Invalid value: \"object.metadata.name.startsWith(\": compilation failed"),
        "{e}"
    );
    assert!(
        e.contains("webhooks[0].matchConditions[1].name: Duplicate value: \"x\""),
        "{e}"
    );
    assert!(
        e.contains("webhooks[1].matchConditions: Too many: 65: must have at most 64 items"),
        "{e}"
    );
}

#[test]
fn runaway_cost_and_hostile_expressions_get_clear_errors_quickly() {
    let server = apiserver();
    let ten = "[1,2,3,4,5,6,7,8,9,10]";
    let runaway = format!(
        "{ten}.all(a, {ten}.all(b, {ten}.all(c, {ten}.all(d, {ten}.all(e, {ten}.all(f, a+b+c+d+e+f > 0))))))"
    );
    let manifest = docs(&[
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": "expensive"},
         "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                      "operations": ["CREATE"], "resources": ["configmaps"]}]},
                  "validations": [{"expression": runaway}]}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": "expensive"},
         "spec": {"policyName": "expensive", "validationActions": ["Deny"]}}),
    ]);
    server.must_kubectl_stdin(["apply", "-f", "-"], &manifest);
    let t = Instant::now();
    let err = eventually("the cost limit", || {
        let o = server.kubectl(["create", "configmap", "c1"]);
        (!o.status.success()).then(|| stderr(&o))
    });
    assert!(
        err.contains("ValidatingAdmissionPolicy 'expensive' with binding 'expensive' denied request: expression '")
            && err.contains("' resulted in error: operation cancelled: actual cost limit exceeded"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    // failurePolicy Ignore admits despite the error.
    server.must_kubectl([
        "patch",
        "validatingadmissionpolicy",
        "expensive",
        "--type=merge",
        "-p",
        r#"{"spec":{"failurePolicy":"Ignore"}}"#,
    ]);
    eventually("failurePolicy Ignore", || {
        server
            .kubectl(["create", "configmap", "c2"])
            .status
            .success()
            .then_some(())
    });
    // Hostile: too long, too deep, too many nodes — refused at creation, the server stays up.
    let policy = |expr: &str| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
               "metadata": {"name": "hostile"},
               "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                            "operations": ["CREATE"], "resources": ["configmaps"]}]},
                        "validations": [{"expression": expr}]}})
        .to_string()
    };
    for expr in [
        "true || ".repeat(20_000) + "true",
        format!("{}true{}", "(".repeat(3000), ")".repeat(3000)),
        format!("{}1{}", "[".repeat(3000), "]".repeat(3000)) + " == []",
    ] {
        let t = Instant::now();
        let o = server.kubectl_stdin(["create", "-f", "-"], &policy(&expr));
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("spec.validations[0].expression: Invalid value"),
            "{}",
            &stderr(&o)[..500.min(stderr(&o).len())]
        );
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    server.must_kubectl(["get", "--raw", "/readyz"]);
}

#[test]
fn webhook_match_conditions_skip_calls_and_errors_follow_failure_policy() {
    let server = apiserver();
    let hooks = HookServer::start(
        &[],
        Arc::new(|req: &Req| Reply::json(&review(req, true, "", None, &[]))),
    );
    let cfg = |fp: &str, conditions: Value| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "cel"},
            "webhooks": [{"name": "cel.example.com",
                "clientConfig": {"url": hooks.url("/"), "caBundle": hooks.ca_bundle()},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
                "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": fp,
                "matchConditions": conditions}]})
        .to_string()
    };
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &cfg(
            "Fail",
            json!([{"name": "not-skipped", "expression": "!object.metadata.name.startsWith('skip')"},
                   {"name": "admins-only", "expression": "'system:masters' in request.userInfo.groups"}]),
        ),
    );
    let mut n = 0;
    eventually("the webhook to be called", || {
        let before = hooks.hits();
        n += 1;
        server.must_kubectl(["create", "configmap", &format!("call-{n}")]);
        (hooks.hits() > before).then_some(())
    });
    let before = hooks.hits();
    for i in 0..3 {
        server.must_kubectl(["create", "configmap", &format!("skip-{i}")]);
    }
    assert_eq!(
        hooks.hits(),
        before,
        "matchConditions false must skip the call"
    );
    server.must_kubectl(["create", "configmap", "call-again"]);
    assert_eq!(hooks.hits(), before + 1);
    // An evaluation error: Fail → 403 with the error; Ignore → the hook is skipped.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &cfg(
            "Fail",
            json!([{"name": "broken", "expression": "object.data.missing == 'x'"}]),
        ),
    );
    let err = eventually("the evaluation error", || {
        let o = server.kubectl(["create", "configmap", "err-1"]);
        (!o.status.success()).then(|| stderr(&o))
    });
    assert!(
        err.contains("configmaps \"err-1\" is forbidden: expression 'object.data.missing == 'x'' resulted in error: no such key: data"),
        "{err}"
    );
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &cfg(
            "Ignore",
            json!([{"name": "broken", "expression": "object.data.missing == 'x'"}]),
        ),
    );
    let before = hooks.hits();
    eventually("failurePolicy Ignore", || {
        server
            .kubectl(["create", "configmap", "err-2"])
            .status
            .success()
            .then_some(())
    });
    assert_eq!(hooks.hits(), before);
}

/// Creates per second of `n` ConfigMaps over `conc` kubectl-free kube-rs clients.
async fn create_rate(server: &TestServer, prefix: &str, n: usize, conc: usize) -> f64 {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ObjectMeta, PostParams};
    let kc = kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    let api: Api<ConfigMap> =
        Api::namespaced(kube::Client::try_from(config).expect("client"), "default");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..conc {
        let api = api.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("{prefix}-{i}")),
                        ..Default::default()
                    },
                    data: Some([("k".to_string(), "v".to_string())].into()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm)
                    .await
                    .expect("create");
                i += conc;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_rate_with_one_policy_vs_none() {
    let server = tokio::task::block_in_place(apiserver);
    const N: usize = 400;
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    create_rate(&server, "warm", 50, 8).await;
    let mut none = Vec::new();
    for round in 0..3 {
        none.push(create_rate(&server, &format!("none-{round}"), N, 8).await);
    }
    let manifest = docs(&[
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": "cm-keys"},
         "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                      "operations": ["CREATE"], "resources": ["configmaps"]}]},
                  "validations": [{"expression": "!has(object.data) || object.data.all(k, k.size() < 64)"},
                                  {"expression": "object.metadata.name != 'forbidden'"}]}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": "cm-keys"},
         "spec": {"policyName": "cm-keys", "validationActions": ["Deny"]}}),
    ]);
    tokio::task::block_in_place(|| server.must_kubectl_stdin(["apply", "-f", "-"], &manifest));
    tokio::task::block_in_place(|| {
        eventually("the policy", || {
            (!server
                .kubectl(["create", "configmap", "forbidden"])
                .status
                .success())
            .then_some(())
        })
    });
    let mut with = Vec::new();
    for round in 0..3 {
        with.push(create_rate(&server, &format!("with-{round}"), N, 8).await);
    }
    let (a, b) = (median(none), median(with));
    println!(
        "BENCH create rate, 8 clients, median of 3x{N}: no policy {a:.0}/s, one ValidatingAdmissionPolicy (2 validations) {b:.0}/s (ratio {:.2})",
        b / a
    );
    assert!(a > 0.0 && b > 0.0);
}

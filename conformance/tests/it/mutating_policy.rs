//! MutatingAdmissionPolicy (`admissionregistration.k8s.io/v1beta1`, issue 8) with stock
//! kubectl: off by default as in Kubernetes 1.35 (feature gate + `--runtime-config`), the
//! Kubernetes docs' sidecar examples (ApplyConfiguration merged by key, JSONPatch), a
//! label-adding policy with a param, `failurePolicy`, `reinvocationPolicy`, and policies that
//! do not validate (422 with upstream's field paths).

use std::time::{Duration, Instant};

use ferrokube_conformance::{ServerSpec, TestServer};

const GATES: [&str; 2] = [
    "--feature-gates=MutatingAdmissionPolicy=true",
    "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
];

fn server() -> TestServer {
    TestServer::start_with(ServerSpec {
        apiserver_only: true,
        extra_args: GATES.iter().map(|s| s.to_string()).collect(),
        ..ServerSpec::default()
    })
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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

/// A namespace labelled `environment=test` with its default ServiceAccount (no controllers).
fn test_namespace(server: &TestServer, ns: &str) {
    server.must_kubectl(["create", "namespace", ns]);
    server.must_kubectl(["label", "namespace", ns, "environment=test"]);
    let _ = server.kubectl(["create", "serviceaccount", "default", "-n", ns]);
}

fn pod(ns: &str, name: &str, labels: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}
spec:
  initContainers: [{{name: init, image: busybox}}]
  containers: [{{name: app, image: nginx}}]
"#
    )
}

/// The docs' `applyconfiguration-example.yaml` (v1beta1), verbatim but for the apiVersion.
const DOCS_APPLY: &str = r#"apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata:
  name: "sidecar-policy.example.com"
spec:
  paramKind:
    kind: Sidecar
    apiVersion: mutations.example.com/v1
  matchConstraints:
    resourceRules:
    - apiGroups:   [""]
      apiVersions: ["v1"]
      operations:  ["CREATE"]
      resources:   ["pods"]
  matchConditions:
    - name: does-not-already-have-sidecar
      expression: "!object.spec.initContainers.exists(ic, ic.name == \"mesh-proxy\")"
  failurePolicy: Fail
  reinvocationPolicy: IfNeeded
  mutations:
    - patchType: "ApplyConfiguration"
      applyConfiguration:
        expression: >
          Object{
            spec: Object.spec{
              initContainers: [
                Object.spec.initContainers{
                  name: "mesh-proxy",
                  image: "mesh/proxy:v1.0.0",
                  args: ["proxy", "sidecar"],
                  restartPolicy: "Always"
                }
              ]
            }
          }
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: "sidecar-binding-test.example.com"
spec:
  policyName: "sidecar-policy.example.com"
  matchResources:
    namespaceSelector:
      matchExpressions:
      - key: environment
        operator: In
        values: ["test"]
"#;

fn init_names(server: &TestServer, ns: &str, name: &str) -> String {
    server.must_kubectl([
        "get",
        "pod",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.initContainers[*].name}",
    ])
}

#[test]
fn off_by_default_as_in_kubernetes_1_35() {
    let server = TestServer::start_with(ServerSpec {
        apiserver_only: true,
        ..ServerSpec::default()
    });
    let err = server.must_kubectl_fail(["get", "mutatingadmissionpolicies"]);
    assert!(
        err.contains("the server doesn't have a resource type \"mutatingadmissionpolicies\""),
        "{err}"
    );
    let versions = server.must_kubectl(["api-versions"]);
    assert!(
        !versions.contains("admissionregistration.k8s.io/v1beta1"),
        "{versions}"
    );
    assert!(
        versions.contains("admissionregistration.k8s.io/v1\n"),
        "{versions}"
    );
}

#[test]
fn bad_feature_gates_and_runtime_config_stop_the_server() {
    for args in [
        "--feature-gates=NoSuchGate=true",
        "--runtime-config=nosuch.k8s.io/v9=true",
        "--feature-gates=MutatingAdmissionPolicy=maybe",
    ] {
        let r = TestServer::try_start_with(ServerSpec {
            apiserver_only: true,
            extra_args: vec![args.to_string()],
            ..ServerSpec::default()
        });
        assert!(r.is_err(), "{args} started a server");
    }
}

#[test]
fn docs_sidecar_policy_merges_an_init_container_by_name() {
    let server = server();
    let resources =
        server.must_kubectl(["api-resources", "--api-group=admissionregistration.k8s.io"]);
    assert!(
        resources.contains("mutatingadmissionpolicies"),
        "{resources}"
    );
    assert!(
        resources.contains("admissionregistration.k8s.io/v1beta1"),
        "{resources}"
    );
    test_namespace(&server, "test");
    let out = server.must_kubectl_stdin(["apply", "-f", "-"], DOCS_APPLY);
    assert!(
        out.contains(
            "mutatingadmissionpolicy.admissionregistration.k8s.io/sidecar-policy.example.com created"
        ),
        "{out}"
    );
    // Defaults as upstream's.
    let mp = server.must_kubectl([
        "get",
        "mutatingadmissionpolicy",
        "sidecar-policy.example.com",
        "-o",
        "jsonpath={.spec.matchConstraints.matchPolicy}/{.spec.matchConstraints.resourceRules[0].scope}",
    ]);
    assert_eq!(mp, "Equivalent/*");
    let names = eventually("the sidecar", || {
        let _ = server.kubectl(["delete", "pod", "p", "-n", "test", "--wait=false"]);
        server.must_kubectl_stdin(["apply", "-f", "-"], &pod("test", "p", "app: web"));
        let n = init_names(&server, "test", "p");
        n.contains("mesh-proxy").then_some(n)
    });
    // Merged as a list keyed by name: the pod's own init container stays first.
    assert_eq!(names, "init mesh-proxy");
    let restart = server.must_kubectl([
        "get",
        "pod",
        "p",
        "-n",
        "test",
        "-o",
        "jsonpath={.spec.initContainers[1].restartPolicy} {.spec.initContainers[1].args}",
    ]);
    assert_eq!(restart, r#"Always ["proxy","sidecar"]"#);
    // Dry-run shows the mutation and stores nothing.
    let dry = server.must_kubectl_stdin(
        [
            "create",
            "--dry-run=server",
            "-f",
            "-",
            "-o",
            "jsonpath={.spec.initContainers[*].name}",
        ],
        &pod("test", "dry", ""),
    );
    assert_eq!(dry, "init mesh-proxy");
    server.must_kubectl_fail(["get", "pod", "dry", "-n", "test"]);
    // The namespace without the label is not bound.
    let _ = server.kubectl(["create", "serviceaccount", "default", "-n", "default"]);
    server.must_kubectl_stdin(["apply", "-f", "-"], &pod("default", "plain", ""));
    assert_eq!(init_names(&server, "default", "plain"), "init");
    // A pod that has the sidecar already does not match the condition: no duplicate.
    let own = r#"apiVersion: v1
kind: Pod
metadata: {name: own, namespace: test}
spec:
  initContainers: [{name: mesh-proxy, image: mine, restartPolicy: Always}]
  containers: [{name: app, image: nginx}]
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], own);
    let img = server.must_kubectl([
        "get",
        "pod",
        "own",
        "-n",
        "test",
        "-o",
        "jsonpath={.spec.initContainers[*].image}",
    ]);
    assert_eq!(img, "mine");
    // The docs' condition reads `object.spec.initContainers`: a pod without any is an error
    // under failurePolicy Fail, reported as upstream's forbidden policy denial.
    let bare = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bare","namespace":"test"},"spec":{"containers":[{"name":"app","image":"nginx"}]}}"#;
    let o = server.kubectl_stdin(["create", "-f", "-"], bare);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(r#"pods "bare" is forbidden: policy 'sidecar-policy.example.com' with binding 'sidecar-binding-test.example.com' denied request: "#),
        "{e}"
    );
    server.must_kubectl_fail(["get", "pod", "bare", "-n", "test"]);
}

#[test]
fn json_patch_label_policy_with_param_and_ignore() {
    let server = server();
    test_namespace(&server, "team");
    let manifest = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: label-settings, namespace: team}
data: {owner: platform}
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata: {name: add-labels}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["configmaps"]}
  matchConditions:
  - name: not-the-settings
    expression: "object.metadata.name != 'label-settings'"
  variables:
  - {name: owner, expression: "params.data.owner"}
  failurePolicy: Fail
  reinvocationPolicy: Never
  mutations:
  - patchType: JSONPatch
    jsonPatch:
      expression: >
        (has(object.metadata.labels) ? [] : [JSONPatch{op: "add", path: "/metadata/labels", value: {}}]) +
        [JSONPatch{op: "add", path: "/metadata/labels/" + jsonpatch.escapeKey("example.com/owner"), value: variables.owner},
         JSONPatch{op: "add", path: "/metadata/annotations", value: {"created-by": request.userInfo.username}}]
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata: {name: add-labels-team}
spec:
  policyName: add-labels
  paramRef: {name: label-settings, parameterNotFoundAction: Deny}
  matchResources:
    namespaceSelector: {matchLabels: {environment: test}}
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], manifest);
    let labels = eventually("the owner label", || {
        let _ = server.kubectl(["delete", "configmap", "c1", "-n", "team"]);
        server.must_kubectl([
            "create",
            "configmap",
            "c1",
            "-n",
            "team",
            "--from-literal=a=b",
        ]);
        let l = server.must_kubectl([
            "get",
            "configmap",
            "c1",
            "-n",
            "team",
            "-o",
            "jsonpath={.metadata.labels}",
        ]);
        l.contains("owner").then_some(l)
    });
    assert_eq!(labels, r#"{"example.com/owner":"platform"}"#);
    let who = server.must_kubectl([
        "get",
        "configmap",
        "c1",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.annotations.created-by}",
    ]);
    assert_eq!(who, "kubernetes-admin");
    // Existing labels are kept.
    server.must_kubectl(["create", "configmap", "c2", "-n", "team"]);
    server.must_kubectl([
        "label",
        "configmap",
        "c2",
        "-n",
        "team",
        "tier=web",
        "--overwrite",
    ]);
    let l = server.must_kubectl([
        "get",
        "configmap",
        "c2",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.labels.tier}",
    ]);
    assert_eq!(l, "web");
    // The param gone with parameterNotFoundAction Deny under Fail: refused, nothing written.
    server.must_kubectl(["delete", "configmap", "label-settings", "-n", "team"]);
    let e = eventually("the missing param to deny", || {
        let o = server.kubectl(["create", "configmap", "c3", "-n", "team"]);
        (!o.status.success()).then(|| stderr(&o))
    });
    assert!(
        e.contains("policy 'add-labels' with binding 'add-labels-team' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"),
        "{e}"
    );
    // failurePolicy Ignore: the same request passes unmutated.
    server.must_kubectl([
        "patch",
        "mutatingadmissionpolicy",
        "add-labels",
        "--type=merge",
        "-p",
        r#"{"spec":{"failurePolicy":"Ignore"}}"#,
    ]);
    eventually("Ignore to admit", || {
        server
            .kubectl(["create", "configmap", "c3", "-n", "team"])
            .status
            .success()
            .then_some(())
    });
    let l = server.must_kubectl([
        "get",
        "configmap",
        "c3",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert_eq!(l, "");
}

#[test]
fn reinvocation_if_needed_runs_an_earlier_policy_again() {
    let server = server();
    // `a-suffix` copies the `tier` label into an annotation; `b-tier` (later by name) sets
    // the label. With IfNeeded, `a-suffix` runs again and sees it.
    let manifest = r#"apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata: {name: a-suffix}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"]}
  reinvocationPolicy: IfNeeded
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >
        Object{metadata: Object.metadata{annotations: {"seen-tier":
          has(object.metadata.labels) && "tier" in object.metadata.labels ? object.metadata.labels["tier"] : "none"}}}
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata: {name: b-tier}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"]}
  reinvocationPolicy: Never
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: 'Object{metadata: Object.metadata{labels: {"tier": "gold"}}}'
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata: {name: a-suffix}
spec: {policyName: a-suffix}
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata: {name: b-tier}
spec: {policyName: b-tier}
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], manifest);
    let seen = eventually("both policies", || {
        let name = format!("c{}", Instant::now().elapsed().as_nanos() % 1_000_000_007);
        let _ = server.kubectl(["delete", "configmap", "probe", "--wait=false"]);
        let _ = name;
        server.must_kubectl(["create", "configmap", "probe"]);
        let s = server.must_kubectl([
            "get",
            "configmap",
            "probe",
            "-o",
            "jsonpath={.metadata.labels.tier}/{.metadata.annotations.seen-tier}",
        ]);
        (s.starts_with("gold/") && !s.ends_with('/')).then_some(s)
    });
    assert_eq!(seen, "gold/gold");
    // With Never, the earlier policy's view stays what it saw first.
    server.must_kubectl([
        "patch",
        "mutatingadmissionpolicy",
        "a-suffix",
        "--type=merge",
        "-p",
        r#"{"spec":{"reinvocationPolicy":"Never"}}"#,
    ]);
    let seen = eventually("Never", || {
        let _ = server.kubectl(["delete", "configmap", "probe2", "--wait=false"]);
        server.must_kubectl(["create", "configmap", "probe2"]);
        let s = server.must_kubectl([
            "get",
            "configmap",
            "probe2",
            "-o",
            "jsonpath={.metadata.labels.tier}/{.metadata.annotations.seen-tier}",
        ]);
        (s == "gold/none").then_some(s)
    });
    assert_eq!(seen, "gold/none");
}

#[test]
fn invalid_policies_are_422_with_upstream_field_paths() {
    let server = server();
    let bad = r#"apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata: {name: bad}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"]}
  mutations:
  - patchType: JSONPatch
    applyConfiguration: {expression: "Object{}"}
  - patchType: Merge
  - patchType: ApplyConfiguration
    applyConfiguration: {expression: "Object{metadata: nope}"}
"#;
    let o = server.kubectl_stdin(["create", "-f", "-"], bad);
    assert!(!o.status.success());
    let e = stderr(&o);
    for want in [
        r#"The MutatingAdmissionPolicy "bad" is invalid"#,
        "spec.reinvocationPolicy: Required value",
        "spec.mutations[0].jsonPatch: Required value: must be specified when patchType is JSONPatch",
        "spec.mutations[0].applyConfiguration: Forbidden: must not be specified when patchType is JSONPatch",
        r#"spec.mutations[1].patchType: Unsupported value: "Merge": supported values: "ApplyConfiguration", "JSONPatch""#,
        "spec.mutations[2].applyConfiguration.expression: Invalid value: \"Object{metadata: nope}\": compilation failed: ERROR: <input>:1:1: undeclared reference to 'nope'",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
    let o = server.kubectl_stdin(
        ["create", "-f", "-"],
        r#"{"apiVersion":"admissionregistration.k8s.io/v1beta1","kind":"MutatingAdmissionPolicyBinding","metadata":{"name":"b"},"spec":{}}"#,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("spec.policyName: Required value"),
        "{}",
        stderr(&o)
    );
    server.must_kubectl_fail(["get", "mutatingadmissionpolicy", "bad"]);
}

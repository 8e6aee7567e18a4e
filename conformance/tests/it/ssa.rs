//! Server-side apply with stock kubectl: conflicts between managers, `--force-conflicts`,
//! `metadata.managedFields` on every write, pruning of fields a manager stops applying, and
//! associative lists owned per item (upstream `fieldmanager` + structured-merge-diff; the
//! conflict text is `fieldmanager/internal/conflict.go`, kubectl's hint text follows it).

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::util::json;

fn deployment(replicas: u32, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{{labels}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: app
        image: nginx
        ports: [{{containerPort: 80}}]
"
    )
}

fn ssa(server: &TestServer, manager: &str, manifest: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "apply".to_string(),
        "--server-side".into(),
        format!("--field-manager={manager}"),
        "-f".into(),
        "-".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    server.kubectl_stdin(args, manifest)
}

fn get(server: &TestServer) -> Value {
    json(&server.must_kubectl([
        "get",
        "deployment",
        "web",
        "-o",
        "json",
        "--show-managed-fields",
    ]))
}

fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
}

fn fields<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    entry(obj, manager)
        .map(|e| &e["fieldsV1"])
        .unwrap_or_else(|| panic!("no managedFields entry for {manager}: {obj:#}"))
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn conflict_between_managers_then_force_conflicts() {
    let server = TestServer::start();
    let out = ssa(
        &server,
        "mgr-a",
        &deployment(1, "app: web, tier: frontend"),
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/web serverside-applied"
    );
    let obj = get(&server);
    let a = entry(&obj, "mgr-a").expect("mgr-a entry");
    assert_eq!(a["operation"], "Apply");
    assert_eq!(a["apiVersion"], "apps/v1");
    assert_eq!(a["fieldsType"], "FieldsV1");
    assert!(a["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(
        keys(&a["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]),
        ["k:{\"name\":\"app\"}"]
    );

    // B changes a field A owns: 409, kubectl names the manager and the field.
    let out = ssa(
        &server,
        "mgr-b",
        &deployment(3, "app: web, tier: frontend"),
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"mgr-a\": .spec.replicas"),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    assert_eq!(get(&server)["spec"]["replicas"], 1);

    // --force-conflicts moves the ownership of .spec.replicas to B.
    let out = ssa(
        &server,
        "mgr-b",
        &deployment(3, "app: web, tier: frontend"),
        &["--force-conflicts"],
    );
    assert!(out.status.success(), "{out:?}");
    let obj = get(&server);
    assert_eq!(obj["spec"]["replicas"], 3);
    assert!(fields(&obj, "mgr-a")["f:spec"].get("f:replicas").is_none());
    assert_eq!(
        fields(&obj, "mgr-b")["f:spec"]["f:replicas"],
        serde_json::json!({})
    );
    // Fields both applied with the same value stay shared.
    assert!(fields(&obj, "mgr-a")["f:spec"]["f:selector"].is_object());
    assert!(fields(&obj, "mgr-b")["f:spec"]["f:selector"].is_object());

    // Plain get hides managedFields (kubectl strips them), the flag shows them.
    let plain = server.must_kubectl(["get", "deployment", "web", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");
}

#[test]
fn fields_a_manager_stops_applying_are_removed() {
    let server = TestServer::start();
    assert!(
        ssa(
            &server,
            "mgr-a",
            &deployment(1, "app: web, tier: frontend"),
            &[]
        )
        .status
        .success()
    );
    assert_eq!(get(&server)["metadata"]["labels"]["tier"], "frontend");
    // dryRun=All answers with the applied object and writes nothing.
    let out = ssa(
        &server,
        "mgr-a",
        &deployment(5, "app: web, tier: frontend"),
        &["--dry-run=server"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(server dry run)"),
        "{out:?}"
    );
    assert_eq!(get(&server)["spec"]["replicas"], 1);
    let out = ssa(&server, "mgr-a", &deployment(1, "app: web"), &[]);
    assert!(out.status.success(), "{out:?}");
    let obj = get(&server);
    assert!(obj["metadata"]["labels"].get("tier").is_none(), "{obj:#}");
    assert!(
        fields(&obj, "mgr-a")["f:metadata"]["f:labels"]
            .get("f:tier")
            .is_none()
    );
    // A label another manager also owns survives A dropping it.
    server.must_kubectl(["label", "deployment", "web", "team=x"]);
    let obj = get(&server);
    let label = entry(&obj, "kubectl-label").expect("kubectl label is recorded as an updater");
    assert_eq!(label["operation"], "Update");
    assert_eq!(
        label["fieldsV1"]["f:metadata"]["f:labels"]["f:team"],
        serde_json::json!({})
    );
}

#[test]
fn updaters_are_managers_and_conflict_with_appliers() {
    let server = TestServer::start();
    server.must_kubectl(["create", "deployment", "web", "--image=nginx"]);
    let obj = get(&server);
    let create = entry(&obj, "kubectl-create").expect("kubectl-create entry");
    assert_eq!(create["operation"], "Update");
    assert!(create["fieldsV1"]["f:spec"]["f:replicas"].is_object());
    let cfg = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 4}\n";
    let out = ssa(&server, "mgr-a", cfg, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conflict with \"kubectl-create\" using apps/v1: .spec.replicas"),
        "{err}"
    );
}

#[test]
fn associative_lists_are_owned_per_item() {
    let server = TestServer::start();
    assert!(
        ssa(&server, "mgr-a", &deployment(1, "app: web"), &[])
            .status
            .success()
    );
    // B adds a sidecar container and a second port on A's container.
    let b = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers:
      - name: app
        ports: [{containerPort: 8080}]
      - name: sidecar
        image: busybox
";
    let out = ssa(&server, "mgr-b", b, &[]);
    assert!(out.status.success(), "{out:?}");
    let obj = get(&server);
    let containers = &obj["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(2), "{obj:#}");
    assert_eq!(containers[0]["ports"].as_array().map(Vec::len), Some(2));
    assert_eq!(containers[0]["image"], "nginx");
    let cs = |m: &str| fields(&obj, m)["f:spec"]["f:template"]["f:spec"]["f:containers"].clone();
    let a = cs("mgr-a");
    let bf = cs("mgr-b");
    assert_eq!(keys(&a), ["k:{\"name\":\"app\"}"]);
    assert_eq!(
        keys(&bf),
        ["k:{\"name\":\"app\"}", "k:{\"name\":\"sidecar\"}"]
    );
    assert_eq!(
        keys(&bf["k:{\"name\":\"app\"}"]["f:ports"]),
        ["k:{\"containerPort\":8080,\"protocol\":\"TCP\"}"]
    );
    assert_eq!(
        keys(&a["k:{\"name\":\"app\"}"]["f:ports"]),
        ["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]
    );
    // B drops everything it applied: its items go, A's stay.
    let out = ssa(
        &server,
        "mgr-b",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, labels: {b: x}}\n",
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let obj = get(&server);
    let containers = &obj["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1), "{obj:#}");
    assert_eq!(containers[0]["name"], "app");
    assert_eq!(containers[0]["ports"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn kube_rs_apply_creates_and_rejects_managed_fields_in_the_body() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;
    use kube::api::{Patch, PatchParams};

    let server = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(server.kube_client().await, "default");
    // Upstream fieldmanager: "metadata.managedFields must be nil" (400) in an apply body.
    let bad = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "managedFields": [{"manager": "x"}]}, "data": {"a": "b"}});
    match api
        .patch("c", &PatchParams::apply("tool"), &Patch::Apply(&bad))
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(
                (e.code, e.message.as_str()),
                (400, "metadata.managedFields must be nil")
            );
        }
        other => panic!("expected 400, got {other:?}"),
    }
    // Apply of a missing object creates it, owned by the applier.
    let good = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c"}, "data": {"a": "b"}});
    let cm = api
        .patch("c", &PatchParams::apply("tool"), &Patch::Apply(&good))
        .await
        .expect("apply creates");
    let mf = cm.metadata.managed_fields.unwrap_or_default();
    assert_eq!(mf.len(), 1, "{mf:?}");
    assert_eq!(mf[0].manager.as_deref(), Some("tool"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&mf[0].fields_v1).expect("fieldsV1");
    assert_eq!(fields, serde_json::json!({"f:data": {"f:a": {}}}));
}

/// `kubectl apply --server-side` after client-side `kubectl apply` takes the fields of the
/// last-applied annotation over without conflicts (upstream `lastappliedmanager.go`), keeps the
/// annotation in step (`lastappliedupdater.go`), and `kubectl diff --server-side` then shows
/// nothing. A manager other than `kubectl` still conflicts.
#[test]
fn server_side_apply_takes_over_client_side_apply() {
    let server = TestServer::start();
    let v1 = deployment(1, "app: web");
    server.must_kubectl_stdin(["apply", "-f", "-"], &v1);
    let csa = get(&server);
    assert!(
        entry(&csa, "kubectl-client-side-apply").is_some(),
        "{csa:#}"
    );
    let v2 = deployment(3, "app: web, tier: front");
    // Another field manager conflicts with the client-side apply owner.
    let other = ssa(&server, "someone-else", &v2, &[]);
    assert!(!other.status.success(), "{other:?}");
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("conflict"), "{err}");
    // kubectl's own manager takes over, without --force-conflicts.
    let out = server.kubectl_stdin(["apply", "--server-side", "-f", "-"], &v2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let obj = get(&server);
    assert_eq!(obj["spec"]["replicas"], 3, "{obj:#}");
    assert_eq!(obj["metadata"]["labels"]["tier"], "front", "{obj:#}");
    let kubectl = fields(&obj, "kubectl");
    assert!(kubectl["f:spec"]["f:replicas"].is_object(), "{kubectl:#}");
    let annotation =
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap_or_default();
    let applied = json(annotation);
    assert_eq!(applied["spec"]["replicas"], 3, "{annotation}");
    // Nothing left to change: diff exits 0 with no output.
    let diff = server.kubectl_stdin(["diff", "--server-side", "-f", "-"], &v2);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        diff.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

//! Deletion like upstream: finalizers, graceful pod deletion, cascading deletion by the garbage
//! collector (Background, Foreground, Orphan) and namespace termination, driven by stock kubectl.
//!
//! Upstream: k8s.io/apiserver `pkg/registry/generic/registry/store.go` (Delete,
//! `deletionFinalizersForGarbageCollection`, `ShouldDeleteDuringUpdate`), `pkg/registry/rest/delete.go`
//! (BeforeDelete), `pkg/registry/core/pod/strategy.go` (CheckGracefulDelete),
//! `pkg/controller/garbagecollector`, `pkg/controller/namespace/deletion`,
//! `plugin/pkg/admission/namespace/lifecycle`.

use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::util::json;

/// A server whose in-process controllers are only the garbage collector, the namespace
/// controller and the ServiceAccount controller (the ServiceAccount admission plugin needs each
/// namespace's `default` account): these tests build owner chains by hand, which the workload
/// controllers would otherwise adopt and reconcile.
fn start_server() -> TestServer {
    TestServer::start_with_args(&[
        "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller",
    ])
}

/// Polls `check` until it holds or `timeout` passes; panics with `what` on timeout.
fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get_json(server: &TestServer, ns: &str, what: &str) -> Option<Value> {
    let out = server.kubectl(["-n", ns, "get", what, "-o", "json"]);
    out.status
        .success()
        .then(|| json(&String::from_utf8_lossy(&out.stdout)))
}

fn exists(server: &TestServer, ns: &str, what: &str) -> bool {
    get_json(server, ns, what).is_some()
}

fn uid(server: &TestServer, ns: &str, what: &str) -> String {
    server
        .must_kubectl(["-n", ns, "get", what, "-o", "jsonpath={.metadata.uid}"])
        .trim()
        .to_string()
}

fn pod_yaml(name: &str, owner_uid: &str, node: Option<&str>) -> String {
    let node = node
        .map(|n| format!("  nodeName: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: ReplicaSet, name: web-rs, uid: {owner_uid}, controller: true, blockOwnerDeletion: true}}
spec:
{node}  terminationGracePeriodSeconds: 30
  containers: [{{name: c, image: nginx}}]
"
    )
}

/// A Deployment → ReplicaSet → Pods chain built by hand (there is no deployment controller):
/// the ReplicaSet names the Deployment's uid, the pods the ReplicaSet's. `bound_pod` adds a pod
/// bound to a node, which deletes gracefully and so lingers until force-deleted.
fn chain(server: &TestServer, ns: &str, bound_pod: bool) {
    server.must_kubectl(["create", "namespace", ns]);
    server.must_kubectl(["-n", ns, "create", "deployment", "web", "--image=nginx"]);
    let d = uid(server, ns, "deployment/web");
    let rs = format!(
        "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-rs
  ownerReferences:
  - {{apiVersion: apps/v1, kind: Deployment, name: web, uid: {d}, controller: true, blockOwnerDeletion: true}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: c, image: nginx}}]}}
"
    );
    server.must_kubectl_stdin(["-n", ns, "apply", "-f", "-"], &rs);
    let r = uid(server, ns, "replicaset/web-rs");
    let mut pods = vec![pod_yaml("web-a", &r, None), pod_yaml("web-b", &r, None)];
    if bound_pod {
        pods.push(pod_yaml("web-bound", &r, Some("node-1")));
    }
    for p in pods {
        server.must_kubectl_stdin(["-n", ns, "apply", "-f", "-"], &p);
    }
}

fn pods_left(server: &TestServer, ns: &str) -> usize {
    get_json(server, ns, "pods")
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[test]
fn background_cascade_deletes_replicaset_and_pods() {
    let server = start_server();
    chain(&server, "bg", false);
    assert_eq!(pods_left(&server, "bg"), 2);
    // kubectl's default cascade is background: the owner goes at once, the GC removes the rest.
    let out = server.must_kubectl(["-n", "bg", "delete", "deployment", "web"]);
    assert_eq!(
        out.trim(),
        "deployment.apps \"web\" deleted from bg namespace"
    );
    wait_for(
        "replicaset and pods deleted",
        Duration::from_secs(20),
        || !exists(&server, "bg", "replicaset/web-rs") && pods_left(&server, "bg") == 0,
    );
}

#[test]
fn foreground_cascade_keeps_owner_until_blocking_dependents_are_gone() {
    let server = start_server();
    chain(&server, "fg", true);
    server.must_kubectl([
        "-n",
        "fg",
        "delete",
        "deployment",
        "web",
        "--cascade=foreground",
        "--wait=false",
    ]);
    // The Deployment stays with deletionTimestamp + foregroundDeletion while the ReplicaSet
    // (blockOwnerDeletion) exists; the ReplicaSet is deleted in the foreground too and waits for
    // the bound pod, which is in graceful deletion (no node agent confirms it).
    wait_for("unbound pods deleted", Duration::from_secs(20), || {
        !exists(&server, "fg", "pod/web-a") && !exists(&server, "fg", "pod/web-b")
    });
    let d = get_json(&server, "fg", "deployment/web").expect("deployment still present");
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d:#}");
    assert_eq!(
        d["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );
    let rs = get_json(&server, "fg", "replicaset/web-rs").expect("replicaset still present");
    assert_eq!(
        rs["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"]),
        "{rs:#}"
    );
    let bound = get_json(&server, "fg", "pod/web-bound").expect("bound pod still present");
    assert_eq!(
        bound["metadata"]["deletionGracePeriodSeconds"], 30,
        "{bound:#}"
    );
    server.must_kubectl([
        "-n",
        "fg",
        "delete",
        "pod",
        "web-bound",
        "--grace-period=0",
        "--force",
    ]);
    wait_for("the whole chain deleted", Duration::from_secs(20), || {
        !exists(&server, "fg", "deployment/web") && !exists(&server, "fg", "replicaset/web-rs")
    });
    assert_eq!(pods_left(&server, "fg"), 0);
}

#[test]
fn orphan_cascade_leaves_dependents_without_the_owner_reference() {
    let server = start_server();
    chain(&server, "or", false);
    let rs_uid = uid(&server, "or", "replicaset/web-rs");
    server.must_kubectl([
        "-n",
        "or",
        "delete",
        "deployment",
        "web",
        "--cascade=orphan",
    ]);
    wait_for("deployment deleted", Duration::from_secs(20), || {
        !exists(&server, "or", "deployment/web")
    });
    let rs = get_json(&server, "or", "replicaset/web-rs").expect("replicaset kept");
    assert!(rs["metadata"]["ownerReferences"].is_null(), "{rs:#}");
    // The pods keep their own owner (the ReplicaSet) and stay.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pods_left(&server, "or"), 2);
    let pod = get_json(&server, "or", "pod/web-a").expect("pod kept");
    assert_eq!(
        pod["metadata"]["ownerReferences"][0]["uid"],
        rs_uid.as_str()
    );
}

#[test]
fn finalizer_holds_object_until_removed() {
    let server = start_server();
    server.must_kubectl(["create", "configmap", "held"]);
    server.must_kubectl([
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    server.must_kubectl(["delete", "configmap", "held", "--wait=false"]);
    let cm = get_json(&server, "default", "configmap/held").expect("held by its finalizer");
    assert!(cm["metadata"]["deletionTimestamp"].is_string(), "{cm:#}");
    assert_eq!(cm["metadata"]["deletionGracePeriodSeconds"], 0, "{cm:#}");
    // ValidateObjectMetaUpdate: no finalizer may be added once deletion started.
    let err = server.must_kubectl_fail([
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#,
    ]);
    assert_eq!(
        err.trim(),
        r#"The ConfigMap "held" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/more"}"#
    );
    server.must_kubectl([
        "patch",
        "configmap",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(!exists(&server, "default", "configmap/held"));
}

#[test]
fn pods_unbound_deleted_at_once_bound_gracefully() {
    let server = start_server();
    server.must_kubectl(["run", "loose", "--image=nginx"]);
    server.must_kubectl(["delete", "pod", "loose", "--wait=false"]);
    assert!(!exists(&server, "default", "pod/loose"));

    server.must_kubectl([
        "run",
        "bound",
        "--image=nginx",
        r#"--overrides={"spec":{"nodeName":"node-1","terminationGracePeriodSeconds":45}}"#,
    ]);
    server.must_kubectl(["delete", "pod", "bound", "--wait=false"]);
    let p = get_json(&server, "default", "pod/bound").expect("graceful deletion keeps the pod");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 45, "{p:#}");
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p:#}");
    // A second delete with a longer period changes nothing; a shorter one shortens it.
    server.must_kubectl([
        "delete",
        "pod",
        "bound",
        "--wait=false",
        "--grace-period=10",
    ]);
    let p = get_json(&server, "default", "pod/bound").expect("still graceful");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 10, "{p:#}");
    let out = server.must_kubectl(["delete", "pod", "bound", "--grace-period=0", "--force"]);
    assert_eq!(
        out.trim(),
        "pod \"bound\" force deleted from default namespace"
    );
    assert!(!exists(&server, "default", "pod/bound"));
}

#[test]
fn namespace_deletion_removes_everything_inside() {
    let server = start_server();
    chain(&server, "doomed", false);
    server.must_kubectl([
        "-n",
        "doomed",
        "create",
        "configmap",
        "c1",
        "--from-literal=a=b",
    ]);
    server.must_kubectl([
        "-n",
        "doomed",
        "create",
        "secret",
        "generic",
        "s1",
        "--from-literal=a=b",
    ]);
    // A finalizer nobody removes keeps the namespace Terminating long enough to look at it.
    server.must_kubectl(["-n", "doomed", "create", "configmap", "held"]);
    server.must_kubectl([
        "-n",
        "doomed",
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    let started = Instant::now();
    let out = server.must_kubectl(["delete", "namespace", "doomed", "--wait=false"]);
    assert_eq!(out.trim(), "namespace \"doomed\" deleted");
    let ns = get_json(&server, "", "namespace/doomed").expect("terminating namespace");
    assert_eq!(ns["status"]["phase"], "Terminating", "{ns:#}");
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns:#}");
    let err = server.must_kubectl_fail(["-n", "doomed", "create", "configmap", "late"]);
    assert_eq!(
        err.trim(),
        "error: failed to create configmap: configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
    );
    wait_for("namespace content deleted", Duration::from_secs(30), || {
        pods_left(&server, "doomed") == 0
            && !exists(&server, "doomed", "deployment/web")
            && !exists(&server, "doomed", "replicaset/web-rs")
            && !exists(&server, "doomed", "configmap/c1")
            && !exists(&server, "doomed", "secret/s1")
    });
    // Still held: the namespace keeps its `kubernetes` finalizer until it is empty.
    let ns = get_json(&server, "", "namespace/doomed").expect("namespace waits for content");
    assert_eq!(
        ns["spec"]["finalizers"],
        serde_json::json!(["kubernetes"]),
        "{ns:#}"
    );
    server.must_kubectl([
        "-n",
        "doomed",
        "patch",
        "configmap",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    wait_for("namespace gone", Duration::from_secs(30), || {
        !exists(&server, "", "namespace/doomed")
    });
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn default_namespaces_cannot_be_deleted() {
    let server = start_server();
    for ns in ["default", "kube-system", "kube-public"] {
        let err = server.must_kubectl_fail(["delete", "namespace", ns]);
        assert_eq!(
            err.trim(),
            format!(
                "Error from server (Forbidden): namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
            )
        );
    }
    let ns = get_json(&server, "", "namespace/default").expect("default stays");
    assert_eq!(ns["status"]["phase"], "Active");
}

/// deletecollection applies the same per-object rules (upstream `Store.DeleteCollection` calls
/// `Delete` for each item): the orphan policy keeps dependents, finalizers keep objects.
#[tokio::test]
async fn deletecollection_honours_propagation_and_finalizers() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, DeleteParams, ListParams, PropagationPolicy};

    let server = start_server();
    chain(&server, "dc", false);
    let client = server.kube_client().await;
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), "dc");
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    rs.delete_collection(&dp, &ListParams::default())
        .await
        .expect("deletecollection replicasets");
    let start = Instant::now();
    while rs.get_opt("web-rs").await.expect("get rs").is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "replicaset not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "dc");
    let left = pods.list(&ListParams::default()).await.expect("list pods");
    assert_eq!(left.items.len(), 2);
    for p in &left.items {
        assert!(p.metadata.owner_references.is_none(), "{:?}", p.metadata);
    }

    let cms: Api<ConfigMap> = Api::namespaced(client, "dc");
    let mut held = ConfigMap::default();
    held.metadata.name = Some("held".into());
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&Default::default(), &held)
        .await
        .expect("create");
    cms.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("deletecollection configmaps");
    let kept = cms.get("held").await.expect("held by its finalizer");
    assert!(
        kept.metadata.deletion_timestamp.is_some(),
        "{:?}",
        kept.metadata
    );
}

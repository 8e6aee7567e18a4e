//! Durability: a graceful restart and a SIGKILL keep every acknowledged object, with the same uid
//! and resourceVersion.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use ferrokube_conformance::TestServer;

use crate::util::{json, manifest};

/// `kind/namespace/name` → (uid, resourceVersion) of every object of the given kinds.
fn snapshot(server: &TestServer, kinds: &str) -> BTreeMap<String, (String, String)> {
    let list = json(&server.must_kubectl(["get", kinds, "-A", "-o", "json"]));
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            let key = format!(
                "{}/{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                m["namespace"].as_str().unwrap_or(""),
                m["name"].as_str().unwrap_or("?")
            );
            let uid = m["uid"].as_str().unwrap_or_default().to_string();
            let rv = m["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (key, (uid, rv))
        })
        .collect()
}

/// Kinds no controller rewrites, so their resourceVersions stay put across a restart.
const STABLE_KINDS: &str = "configmaps,secrets,roles,serviceaccounts";

/// The objects [`fill`] creates (controllers may add others, e.g. `kube-root-ca.crt` or the
/// `default` ServiceAccount, at any time; those are left out of the comparison).
fn ours(snapshot: BTreeMap<String, (String, String)>) -> BTreeMap<String, (String, String)> {
    let mut keys = vec![
        "ConfigMap/default/app-config".to_string(),
        "Secret/default/app-secret".to_string(),
        "Role/default/pod-reader".to_string(),
        "ServiceAccount/default/builder".to_string(),
    ];
    keys.extend((0..5).map(|i| format!("ConfigMap/durable/keep-{i}")));
    snapshot
        .into_iter()
        .filter(|(k, _)| keys.contains(k))
        .collect()
}

fn fill(server: &TestServer) {
    for file in [
        "configmap.yaml",
        "secret.yaml",
        "role.yaml",
        "serviceaccount.yaml",
    ] {
        let path = manifest(file);
        server.must_kubectl(["apply".as_ref(), "-f".as_ref(), path.as_os_str()]);
    }
    server.must_kubectl(["create", "namespace", "durable"]);
    for i in 0..5 {
        server.must_kubectl([
            "create",
            "configmap",
            &format!("keep-{i}"),
            "-n",
            "durable",
            "--from-literal=i=x",
        ]);
    }
}

fn assert_same_after(server: &mut TestServer, restart: impl FnOnce(&mut TestServer)) {
    fill(server);
    let before = ours(snapshot(server, STABLE_KINDS));
    let ns_before = snapshot(server, "namespaces");
    assert_eq!(before.len(), 9, "created objects missing: {before:#?}");
    let max_rv = before
        .values()
        .filter_map(|(_, rv)| rv.parse::<u64>().ok())
        .max()
        .unwrap_or(0);

    restart(server);

    assert_eq!(
        ours(snapshot(server, STABLE_KINDS)),
        before,
        "objects changed across the restart"
    );
    let ns_after = snapshot(server, "namespaces");
    for name in [
        "Namespace//default",
        "Namespace//kube-system",
        "Namespace//durable",
    ] {
        assert_eq!(
            ns_after.get(name).map(|v| &v.0),
            ns_before.get(name).map(|v| &v.0),
            "{name} uid changed"
        );
    }
    // The revision counter continues past everything written before.
    server.must_kubectl(["create", "configmap", "after-restart"]);
    let rv = server.must_kubectl([
        "get",
        "cm",
        "after-restart",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let rv: u64 = rv
        .parse()
        .unwrap_or_else(|e| panic!("resourceVersion {rv:?}: {e}"));
    assert!(rv > max_rv, "new resourceVersion {rv} not above {max_rv}");
}

#[test]
fn graceful_restart_keeps_objects_uids_and_versions() {
    let mut server = TestServer::start();
    assert_same_after(&mut server, |s| {
        let status = s.stop();
        assert!(
            status.success(),
            "SIGTERM exit status {status}; log:\n{}",
            s.log_tail()
        );
        s.start_again();
    });
}

#[test]
fn sigkill_when_idle_keeps_objects_uids_and_versions() {
    let mut server = TestServer::start();
    assert_same_after(&mut server, |s| {
        s.kill9();
        s.start_again();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_write_burst_keeps_every_acknowledged_write() {
    const WRITERS: usize = 8;
    const MIN_ACKED: usize = 40;
    let mut server = TestServer::start();
    let client = server.kube_client().await;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let (acked, killed) = (acked.clone(), killed.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("burst-{w}-{i}");
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some([("burst".to_string(), "yes".to_string())].into()),
                        ..ObjectMeta::default()
                    },
                    data: Some([("i".to_string(), i.to_string())].into()),
                    ..ConfigMap::default()
                };
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => acked.lock().unwrap().push(name),
                    Err(_) if killed.load(Ordering::SeqCst) => return Ok(()),
                    Err(e) => return Err(format!("{name}: {e}")),
                }
            }
            Ok(())
        }));
    }
    // Let the burst run, then pull the plug.
    for _ in 0..600 {
        if acked.lock().unwrap().len() >= MIN_ACKED || writers.iter().any(|w| w.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    killed.store(true, Ordering::SeqCst);
    server.kill9();
    for w in writers {
        if let Err(e) = w.await.unwrap() {
            panic!(
                "write failed before the kill: {e}\nserver log:\n{}",
                server.log_tail()
            );
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= MIN_ACKED,
        "only {} writes acknowledged before the kill",
        acked.len()
    );

    tokio::task::block_in_place(|| server.start_again());
    let api: Api<ConfigMap> = Api::namespaced(server.kube_client().await, "default");
    let present: std::collections::HashSet<String> = api
        .list(&ListParams::default().labels("burst=yes"))
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged configmaps lost after SIGKILL: {lost:?}",
        lost.len(),
        acked.len()
    );
}

#[test]
fn sigterm_exits_cleanly_and_restarts_on_same_port() {
    let mut server = TestServer::start();
    let port = server.port();
    let first_pid = server.pid();
    let readyz = |s: &TestServer| s.must_kubectl(["get", "--raw", "/readyz"]);
    assert_eq!(readyz(&server).trim(), "ok");
    let status = server.stop();
    assert!(
        status.success(),
        "SIGTERM exit status {status}; log:\n{}",
        server.log_tail()
    );
    server.start_again();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), first_pid);
    assert_eq!(readyz(&server).trim(), "ok");
    server.kill9();
    server.start_again();
    assert_eq!(readyz(&server).trim(), "ok");
    // /healthz, /livez and /version answer too.
    assert_eq!(
        server.must_kubectl(["get", "--raw", "/healthz"]).trim(),
        "ok"
    );
    assert_eq!(server.must_kubectl(["get", "--raw", "/livez"]).trim(), "ok");
    let version = json(&server.must_kubectl(["get", "--raw", "/version"]));
    assert!(
        version["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.35.")),
        "{version:#}"
    );
}

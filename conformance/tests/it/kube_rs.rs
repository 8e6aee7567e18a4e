//! kube-rs against the server: typed CRUD of ConfigMaps and Deployments, and the runtime watcher.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use ferrokube_conformance::TestServer;

fn configmap(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

fn assert_status(err: kube::Error, code: u16, reason: &str) {
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, code, "{status:?}");
            assert_eq!(status.reason, reason, "{status:?}");
        }
        other => panic!("expected an API error {code} {reason}, got {other:?}"),
    }
}

#[tokio::test]
async fn configmap_crud() {
    let server = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(server.kube_client().await, "default");
    let pp = PostParams::default();

    let created = api
        .create(
            &pp,
            &configmap("kube-cm", &[("app", "kube")], &[("k", "v1")]),
        )
        .await
        .unwrap();
    assert_eq!(created.namespace().as_deref(), Some("default"));
    assert!(created.uid().is_some_and(|u| u.len() == 36), "{created:?}");
    let rv1: u64 = created
        .resource_version()
        .unwrap_or_default()
        .parse()
        .unwrap();

    let fetched = api.get("kube-cm").await.unwrap();
    assert_eq!(fetched.uid(), created.uid());
    assert_eq!(fetched.data, created.data);

    let mut changed = fetched.clone();
    changed.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
    let replaced = api.replace("kube-cm", &pp, &changed).await.unwrap();
    let rv2: u64 = replaced
        .resource_version()
        .unwrap_or_default()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion did not grow: {rv1} -> {rv2}");

    // Replacing with the stale object is a 409 Conflict.
    let err = api.replace("kube-cm", &pp, &fetched).await.unwrap_err();
    assert_status(err, 409, "Conflict");

    let patched = api
        .patch(
            "kube-cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"extra": "x"}})),
        )
        .await
        .unwrap();
    let data = patched.data.unwrap_or_default();
    assert_eq!(data.get("k").map(String::as_str), Some("v2"));
    assert_eq!(data.get("extra").map(String::as_str), Some("x"));

    api.create(&pp, &configmap("kube-other", &[("app", "other")], &[]))
        .await
        .unwrap();
    let listed = api
        .list(&ListParams::default().labels("app=kube"))
        .await
        .unwrap();
    let names: Vec<String> = listed.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["kube-cm"]);
    assert!(
        listed
            .metadata
            .resource_version
            .is_some_and(|rv| !rv.is_empty())
    );

    let err = api
        .create(&pp, &configmap("kube-cm", &[], &[]))
        .await
        .unwrap_err();
    assert_status(err, 409, "AlreadyExists");

    api.delete("kube-cm", &DeleteParams::default())
        .await
        .unwrap();
    assert_status(api.get("kube-cm").await.unwrap_err(), 404, "NotFound");
    assert!(api.get_opt("kube-cm").await.unwrap().is_none());
}

#[tokio::test]
async fn deployment_crud_with_server_defaults() {
    let server = TestServer::start();
    let api: Api<Deployment> = Api::namespaced(server.kube_client().await, "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "kube-web", "labels": {"app": "kube-web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "kube-web"}},
            "template": {
                "metadata": {"labels": {"app": "kube-web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            }
        }
    }))
    .unwrap();
    let created = api
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let spec = created.spec.clone().unwrap_or_default();
    // Upstream defaulting.
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    let strategy = spec.strategy.unwrap_or_default();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let pod = spec.template.spec.unwrap_or_default();
    assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    assert_eq!(
        pod.containers[0].termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(
        pod.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert_eq!(created.metadata.generation, Some(1));

    let patched = api
        .patch(
            "kube-web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "spec change bumps generation"
    );

    let listed = api
        .list(&ListParams::default().fields("metadata.name=kube-web"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);

    api.delete("kube-web", &DeleteParams::default())
        .await
        .unwrap();
    // Deletion may go through finalizers (foreground/orphan); wait until it is gone.
    for _ in 0..100 {
        if api.get_opt("kube-web").await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deployment kube-web still present 10 s after delete");
}

/// What the watcher reported, reduced to comparable facts.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Apply(String, Option<String>),
    Delete(String),
}

#[tokio::test]
async fn runtime_watcher_sees_every_event_in_order() {
    const N: usize = 5;
    let server = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(server.kube_client().await, "default");
    let config = watcher::Config::default().labels("watched=yes");
    let mut stream = watcher(api.clone(), config).boxed();

    // Wait for the initial (empty) list to finish.
    let wait = Duration::from_secs(30);
    loop {
        match tokio::time::timeout(wait, stream.try_next()).await {
            Ok(Ok(Some(watcher::Event::InitDone))) => break,
            Ok(Ok(Some(watcher::Event::Init))) => {}
            Ok(other) => panic!("unexpected before InitDone: {other:?}"),
            Err(_) => panic!(
                "watcher never finished its initial list; log:\n{}",
                server.log_tail()
            ),
        }
    }

    let pp = PostParams::default();
    let mut expected = Vec::new();
    for i in 0..N {
        let name = format!("w-{i}");
        api.create(&pp, &configmap(&name, &[("watched", "yes")], &[("v", "1")]))
            .await
            .unwrap();
        expected.push(Seen::Apply(name, Some("1".into())));
    }
    for i in 0..N {
        let name = format!("w-{i}");
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await
        .unwrap();
        expected.push(Seen::Apply(name, Some("2".into())));
    }
    for i in 0..N {
        let name = format!("w-{i}");
        api.delete(&name, &DeleteParams::default()).await.unwrap();
        expected.push(Seen::Delete(name));
    }
    // An object without the label must not show up.
    api.create(&pp, &configmap("unwatched", &[("watched", "no")], &[]))
        .await
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let event = match tokio::time::timeout(wait, stream.try_next()).await {
            Ok(Ok(Some(event))) => event,
            other => panic!(
                "watcher stopped after {seen:#?}: {other:?}\nserver log:\n{}",
                server.log_tail()
            ),
        };
        match event {
            watcher::Event::Apply(cm) => {
                let v = cm.data.as_ref().and_then(|d| d.get("v")).cloned();
                seen.push(Seen::Apply(cm.name_any(), v));
            }
            watcher::Event::Delete(cm) => seen.push(Seen::Delete(cm.name_any())),
            other => panic!("watcher re-listed (the watch broke): {other:?} after {seen:#?}"),
        }
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn kube_client_reports_server_version() {
    let server = TestServer::start();
    let info = server
        .kube_client()
        .await
        .apiserver_version()
        .await
        .unwrap();
    assert!(info.git_version.starts_with("v1.35."), "{info:?}");
    assert_eq!(
        (info.major.as_str(), info.minor.as_str()),
        ("1", "35"),
        "{info:?}"
    );
}

/// Every service gets its own cluster IP, reserved as a networking.k8s.io/v1 IPAddress that
/// names it (upstream's IPAddress allocator); a taken address is refused with upstream's message
/// and a deleted service frees its address.
#[tokio::test(flavor = "multi_thread")]
async fn service_cluster_ips_are_unique_and_released() {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::networking::v1::IPAddress;

    let server = TestServer::start();
    let client = server.kube_client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let ips: Api<IPAddress> = Api::all(client);
    let svc = |name: String, ip: Option<&str>| -> Service {
        match serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}], "clusterIP": ip},
        })) {
            Ok(s) => s,
            Err(e) => panic!("service: {e}"),
        }
    };
    let created: Vec<Service> = futures::stream::iter(0..200)
        .map(|i| {
            let services = services.clone();
            let s = svc(format!("s{i}"), None);
            async move { services.create(&PostParams::default(), &s).await }
        })
        .buffer_unordered(32)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("creating services: {e}"));
    let mut seen = std::collections::BTreeSet::new();
    for s in &created {
        let ip = s
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.clone())
            .unwrap_or_default();
        assert!(ip.starts_with("10."), "{s:?}");
        assert!(seen.insert(ip.clone()), "{ip} given twice");
    }
    let reserved = ips
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing IPAddresses: {e}"));
    // Plus the `kubernetes` Service's address (the first of the range).
    let of_ours = reserved
        .items
        .iter()
        .filter(|a| {
            a.spec
                .as_ref()
                .is_some_and(|s| s.parent_ref.name != "kubernetes")
        })
        .count();
    assert_eq!(of_ours, 200);
    assert_eq!(reserved.items.len(), 201);

    let first = created[0].spec.as_ref().and_then(|s| s.cluster_ip.clone());
    let taken = services
        .create(&PostParams::default(), &svc("dup".into(), first.as_deref()))
        .await;
    match taken {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert!(
                s.message.contains("provided IP is already allocated"),
                "{s:?}"
            );
        }
        other => panic!("a taken cluster IP was accepted: {other:?}"),
    }
    services
        .delete(&created[0].name_any(), &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
    let reused = services
        .create(&PostParams::default(), &svc("dup".into(), first.as_deref()))
        .await
        .unwrap_or_else(|e| panic!("the freed address was not reusable: {e}"));
    assert_eq!(reused.spec.and_then(|s| s.cluster_ip), first);
}

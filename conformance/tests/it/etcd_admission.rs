//! NamespaceLifecycle on etcd, where each API server's watch cache lags etcd by a moment: the
//! plugin reads the cache (no etcd read per create) and looks the namespace up in etcd only
//! when the cache does not have it or when the server itself just deleted it. Two API servers
//! on one etcd member: a namespace created through A takes creates through B at once, and a
//! namespace deleted through A refuses creates through A at once (upstream's message and
//! `NamespaceTerminating` cause) and through B as soon as B's cache has seen the delete.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};

use ferrokube_conformance::{EtcdCluster, ServerSpec, TestServer};

fn apiserver_on(etcd: &EtcdCluster) -> TestServer {
    TestServer::start_with(ServerSpec {
        apiserver_only: true,
        extra_args: vec![format!("--etcd-servers={}", etcd.endpoints())],
        data_dir: None,
    })
}

fn configmap(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The Status of a refused create.
fn must_refuse(r: Result<ConfigMap, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_namespace_lifecycle_reads_the_cache_and_looks_up_live() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let a = apiserver_on(&etcd);
    let b = apiserver_on(&etcd);
    let (ca, cb) = (a.kube_client().await, b.kube_client().await);
    let pp = PostParams::default();

    // Created through A, used at once through B (and A): found by the live lookup when the
    // cache has not seen it yet. Ten rounds, so that some land inside the cache's lag.
    for i in 0..10 {
        let ns = format!("fresh-{i}");
        Api::<Namespace>::all(ca.clone())
            .create(&pp, &namespace(&ns))
            .await
            .expect("namespace through A");
        Api::<ConfigMap>::namespaced(cb.clone(), &ns)
            .create(&pp, &configmap("via-b"))
            .await
            .unwrap_or_else(|e| panic!("create in {ns} through B right after: {e}"));
        Api::<ConfigMap>::namespaced(ca.clone(), &ns)
            .create(&pp, &configmap("via-a"))
            .await
            .unwrap_or_else(|e| panic!("create in {ns} through A right after: {e}"));
    }
    // A namespace that exists nowhere: 404 from either.
    let s = must_refuse(
        Api::<ConfigMap>::namespaced(cb.clone(), "nowhere")
            .create(&pp, &configmap("x"))
            .await,
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );

    // Deleted through A (no namespace controller here: it stays Terminating): A refuses at
    // once, whatever its cache has seen.
    for i in 0..5 {
        let ns = format!("fresh-{i}");
        Api::<Namespace>::all(ca.clone())
            .delete(&ns, &DeleteParams::default())
            .await
            .expect("delete through A");
        let s = must_refuse(
            Api::<ConfigMap>::namespaced(ca.clone(), &ns)
                .create(&pp, &configmap("late"))
                .await,
        );
        assert_eq!(s.code, 403, "{s:?}");
        assert_eq!(
            s.message,
            format!(
                "configmaps \"late\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
            )
        );
        let cause = s
            .details
            .as_ref()
            .and_then(|d| d.causes.first())
            .cloned()
            .expect("a cause");
        assert_eq!(cause.reason, "NamespaceTerminating");
        assert_eq!(cause.field, "metadata.namespace");
        assert_eq!(cause.message, format!("namespace {ns} is being terminated"));
    }
    // B refuses too once its cache has the delete (upstream's B behaves the same way).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Api::<ConfigMap>::namespaced(cb.clone(), "fresh-4")
            .create(&pp, &configmap("late-b"))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 => break,
            Err(e) => panic!("unexpected error through B: {e}"),
            Ok(_) => {
                let _ = Api::<ConfigMap>::namespaced(cb.clone(), "fresh-4")
                    .delete("late-b", &DeleteParams::default())
                    .await;
            }
        }
        assert!(
            Instant::now() < deadline,
            "B's cache never saw the delete through A"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Namespaces deleted elsewhere do not slow down the others: still accepted.
    Api::<ConfigMap>::namespaced(ca.clone(), "fresh-7")
        .create(&pp, &configmap("still"))
        .await
        .expect("an active namespace");
}

//! Several API servers on one etcd cluster (a real 3-member etcd on loopback, started by the
//! test; skipped loudly only when no etcd binary is installed):
//!
//! * kubectl through either server sees the same objects; a watch on A sees the writes made
//!   through B in order with no gaps; concurrent Service creates through both never share a
//!   ClusterIP;
//! * losing one etcd member during a write burst loses no acknowledged write; losing quorum
//!   makes writes fail with a 5xx Status and `/readyz` report `etcd` failing, and both recover
//!   when the members return, without restarting the API server;
//! * two clusters on one etcd under different `--etcd-prefix`es stay apart, and one's writes
//!   do not stall the other's consistent reads nor its watches from a list's revision (with
//!   an etcd that orders progress notifications, ≥ 3.4.31 / 3.5.13, its watch cache learns
//!   the shared revision from them; with older ones it reads etcd after a short wait).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use kube::api::{ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::{Api, ResourceExt};

use ferrokube_conformance::{EtcdCluster, ServerSpec, TestServer};

fn apiserver_on(etcd: &EtcdCluster) -> TestServer {
    TestServer::start_with(ServerSpec {
        apiserver_only: true,
        // Room for the 1,000 services (also the server's default).
        extra_args: vec![
            format!("--etcd-servers={}", etcd.endpoints()),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
        ],
        data_dir: None,
    })
}

/// A kube-rs client without kube's default retries of 503/504 (they would hide the failure
/// the quorum-loss check expects to see).
async fn client_without_retries(server: &TestServer) -> kube::Client {
    let path = server.kubeconfig();
    let kc = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    config.default_retry = false;
    kube::Client::try_from(config).expect("kube client")
}

fn configmap(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..ConfigMap::default()
    }
}

fn service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apiservers_share_one_etcd_cluster() {
    let Some(etcd) = EtcdCluster::start(3) else {
        return;
    };
    let a = apiserver_on(&etcd);
    let b = apiserver_on(&etcd);

    // kubectl through either sees the same objects.
    a.must_kubectl(["create", "configmap", "from-a", "--from-literal=x=1"]);
    b.must_kubectl(["create", "configmap", "from-b", "--from-literal=x=2"]);
    for server in [&a, &b] {
        let out = server.must_kubectl(["get", "configmaps", "from-a", "from-b", "-o", "name"]);
        assert_eq!(out.lines().count(), 2, "{out}");
    }
    let uid_a = a.must_kubectl([
        "get",
        "configmap",
        "from-b",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let uid_b = b.must_kubectl([
        "get",
        "configmap",
        "from-b",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    assert_eq!(uid_a, uid_b);

    // A watch on A sees B's writes, in order, with no gap.
    let api_a: Api<ConfigMap> = Api::namespaced(a.kube_client().await, "default");
    let api_b: Api<ConfigMap> = Api::namespaced(b.kube_client().await, "default");
    let rv = api_a
        .list(&ListParams::default())
        .await
        .expect("list on A")
        .metadata
        .resource_version
        .expect("list resourceVersion");
    let mut watch = api_a
        .watch(&WatchParams::default().timeout(60), &rv)
        .await
        .expect("watch on A")
        .boxed();
    const WRITES: usize = 100;
    let writer = tokio::spawn(async move {
        for i in 0..WRITES {
            api_b
                .create(&PostParams::default(), &configmap(&format!("w-{i:03}")))
                .await
                .unwrap_or_else(|e| panic!("create w-{i:03} through B: {e}"));
        }
    });
    let mut seen = Vec::new();
    let mut last_rv = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < WRITES {
        let ev =
            tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), watch.try_next())
                .await
                .unwrap_or_else(|_| panic!("watch on A saw only {} of B's writes", seen.len()));
        match ev {
            Ok(Some(WatchEvent::Added(cm))) => {
                let rv: u64 = cm
                    .resource_version()
                    .unwrap_or_default()
                    .parse()
                    .expect("rv");
                assert!(
                    rv > last_rv,
                    "resourceVersions increase: {rv} after {last_rv}"
                );
                last_rv = rv;
                seen.push(cm.name_any());
            }
            Ok(Some(WatchEvent::Bookmark(_))) => {}
            other => panic!("unexpected watch item on A: {other:?}"),
        }
    }
    writer.await.expect("writer");
    let expected: Vec<String> = (0..WRITES).map(|i| format!("w-{i:03}")).collect();
    assert_eq!(seen, expected, "A saw B's writes in order, none missing");

    // Concurrent Service creates through both never share a ClusterIP.
    const SERVICES: usize = 1000;
    let svc_a: Api<Service> = Api::namespaced(a.kube_client().await, "default");
    let svc_b: Api<Service> = Api::namespaced(b.kube_client().await, "default");
    let started = Instant::now();
    let ips: Vec<String> = futures::stream::iter(0..SERVICES)
        .map(|i| {
            let api = if i % 2 == 0 {
                svc_a.clone()
            } else {
                svc_b.clone()
            };
            async move {
                let created = api
                    .create(&PostParams::default(), &service(&format!("svc-{i:04}")))
                    .await?;
                Ok::<_, kube::Error>(created.spec.and_then(|s| s.cluster_ip).unwrap_or_default())
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("creating services: {e}"));
    eprintln!(
        "{SERVICES} services through two API servers in {:?}",
        started.elapsed()
    );
    let unique: HashSet<&String> = ips.iter().collect();
    assert!(
        ips.iter().all(|ip| !ip.is_empty()),
        "every service got a ClusterIP"
    );
    assert_eq!(unique.len(), SERVICES, "no ClusterIP was handed out twice");
}

/// Creates configmaps `burst-N` until `stop`, retrying a failed create (a 409 on a retry means
/// the earlier attempt succeeded); returns the acknowledged names and the errors retried.
async fn write_burst(api: Api<ConfigMap>, stop: Arc<AtomicBool>) -> (Vec<String>, usize) {
    let mut acked = Vec::new();
    let mut retries = 0;
    let mut i = 0;
    while !stop.load(Ordering::Acquire) {
        let name = format!("burst-{i:05}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match api.create(&PostParams::default(), &configmap(&name)).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 409 && retries > 0 => break,
                Err(e) if Instant::now() < deadline => {
                    retries += 1;
                    eprintln!("retrying {name}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("{name} never succeeded: {e}"),
            }
        }
        acked.push(name);
        i += 1;
    }
    (acked, retries)
}

fn readyz(server: &TestServer) -> (bool, String) {
    let out = server.kubectl(["get", "--raw", "/readyz?verbose"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_member_and_quorum_loss() {
    let Some(mut etcd) = EtcdCluster::start(3) else {
        return;
    };
    let a = apiserver_on(&etcd);
    let api: Api<ConfigMap> = Api::namespaced(client_without_retries(&a).await, "default");

    // One member dies in the middle of a write burst: no acknowledged write is lost.
    let stop = Arc::new(AtomicBool::new(false));
    let burst = tokio::spawn(write_burst(api.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    etcd.kill(0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Release);
    let (acked, retries) = burst.await.expect("burst");
    eprintln!("{} writes acknowledged, {retries} retried", acked.len());
    assert!(acked.len() > 20, "the burst made progress: {}", acked.len());
    let present: HashSet<String> = api
        .list(&ListParams::default())
        .await
        .expect("list after losing one member")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    for name in &acked {
        assert!(
            present.contains(name),
            "acknowledged write {name} is present"
        );
    }
    let (ok, text) = readyz(&a);
    assert!(ok, "one member down changes nothing for /readyz: {text}");

    // Two members down: no quorum. Writes fail with a 5xx Status, /readyz reports etcd.
    etcd.kill(1);
    let started = Instant::now();
    match api
        .create(&PostParams::default(), &configmap("no-quorum"))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert!(s.code >= 500, "a 5xx Status without quorum, got {s:?}");
            eprintln!("without quorum: {} {} {}", s.code, s.reason, s.message);
        }
        other => panic!("a write without quorum must fail with a Status, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(61));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, text) = readyz(&a);
        if !ok && text.contains("[-]etcd") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never reported etcd failing: {text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Quorum returns: service resumes without restarting the API server.
    etcd.restart(0);
    etcd.restart(1);
    etcd.wait_healthy(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match api
            .create(&PostParams::default(), &configmap("after-quorum"))
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for writes to work again: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("writes did not recover after quorum returned: {e}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, text) = readyz(&a);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz did not recover: {text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    a.must_kubectl(["get", "configmap", "after-quorum"]);
}

/// Two clusters on one etcd (`--etcd-prefix` per tenant). etcd's revision counts both tenants'
/// writes, so after a write to B the current revision that a consistent read on A waits for is
/// carried by no event A's watch cache sees: the cache must learn it from a watch progress
/// notification, not wait out its timeout (before: every read on A after a write on B took
/// ~3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_on_one_etcd_do_not_stall_each_others_reads() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let tenant = |prefix: &str| {
        TestServer::start_with(ServerSpec {
            apiserver_only: true,
            extra_args: vec![
                format!("--etcd-servers={}", etcd.endpoints()),
                format!("--etcd-prefix={prefix}"),
            ],
            data_dir: None,
        })
    };
    let a = tenant("/tenant-a");
    let b = tenant("/tenant-b");
    a.must_kubectl(["create", "configmap", "only-in-a", "--from-literal=x=1"]);
    // With an etcd that orders progress notifications (>= 3.4.31 / 3.5.13) A's watch cache
    // learns the shared revision from them; with older ones (Debian's 3.4.23) A waits for its
    // cache only briefly and then reads etcd. Either way no read waits for B's revision.
    eprintln!(
        "etcd orders progress notifications: {}",
        etcd_orders_progress_notifications()
    );
    let api_a: Api<ConfigMap> = Api::namespaced(a.kube_client().await, "default");
    let api_b: Api<ConfigMap> = Api::namespaced(b.kube_client().await, "default");
    let mut slowest = Duration::ZERO;
    let mut last_rv_a = 0;
    for i in 0..10 {
        api_b
            .create(&PostParams::default(), &configmap(&format!("in-b-{i}")))
            .await
            .expect("create through B");
        let started = Instant::now();
        let got = api_a
            .get("only-in-a")
            .await
            .expect("consistent GET through A");
        let listed = api_a
            .list(&ListParams::default())
            .await
            .expect("consistent list through A");
        let paged = api_a
            .list(&ListParams::default().limit(1))
            .await
            .expect("consistent paginated list through A");
        slowest = slowest.max(started.elapsed());
        assert_eq!(got.name_any(), "only-in-a");
        let names: Vec<String> = listed.items.iter().map(ResourceExt::name_any).collect();
        assert_eq!(names, ["only-in-a"], "tenant A sees B's objects");
        assert_eq!(paged.items.len(), 1);
        // A's list is at a revision at least as new as B's write (one etcd revision counter).
        let rv_a: i64 = listed
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .expect("list resourceVersion");
        let rv_b: i64 = api_b
            .get(&format!("in-b-{i}"))
            .await
            .expect("get through B")
            .resource_version()
            .and_then(|v| v.parse().ok())
            .expect("resourceVersion");
        assert!(
            rv_a >= rv_b,
            "A's consistent list at {rv_a} is older than B's write {rv_b}"
        );
        last_rv_a = rv_a;
    }
    // The stall this guards against was ~3 s per read (the watch cache's timeout).
    assert!(
        slowest < Duration::from_millis(500),
        "a GET + 2 lists on A after a write on B took {slowest:?}"
    );
    // An informer's next step: a watch on A from the list's revision (B's) starts at once and
    // sees A's next write.
    let watch_started = Instant::now();
    let mut events = api_a
        .watch(&WatchParams::default(), &last_rv_a.to_string())
        .await
        .expect("watch on A from its list's revision")
        .boxed();
    api_a
        .create(&PostParams::default(), &configmap("after-the-watch"))
        .await
        .expect("create through A");
    let event = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .expect("an event within 10 s")
        .expect("watch event");
    let watch_took = watch_started.elapsed();
    match event {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.name_any(), "after-the-watch"),
        other => panic!("expected ADDED after-the-watch, got {other:?}"),
    }
    assert!(
        watch_took < Duration::from_millis(1500),
        "watch from B's revision + create on A took {watch_took:?}"
    );
    // kubectl on A right after each write on B (kubectl's own start-up included).
    let mut kubectl_slowest = Duration::ZERO;
    for i in 0..3 {
        b.must_kubectl(["create", "configmap", &format!("by-kubectl-{i}")]);
        let started = Instant::now();
        let out = a.must_kubectl(["get", "configmaps", "-o", "name"]);
        kubectl_slowest = kubectl_slowest.max(started.elapsed());
        assert!(!out.contains("by-kubectl-"), "{out}");
        assert!(out.contains("configmap/only-in-a"), "{out}");
    }
    eprintln!(
        "tenants: slowest GET+lists {slowest:?}, watch {watch_took:?}, kubectl get {kubectl_slowest:?}"
    );
    assert!(
        kubectl_slowest < Duration::from_millis(1500),
        "kubectl get on A after a write on B took {kubectl_slowest:?}"
    );
    let out = b.must_kubectl(["get", "configmaps", "-o", "name"]);
    assert!(!out.contains("only-in-a"), "{out}");
    assert_eq!(out.matches("configmap/in-b-").count(), 10, "{out}");
}

/// Whether the installed etcd answers watch progress requests in order (≥ 3.4.31 / 3.5.13,
/// upstream's `endpointSupportsRequestWatchProgress`).
fn etcd_orders_progress_notifications() -> bool {
    let out = std::process::Command::new("etcd").arg("--version").output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .unwrap_or("");
    let nums: Vec<u64> = version
        .trim()
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    match nums.as_slice() {
        [3, 4, p, ..] => *p >= 31,
        [3, 5, p, ..] => *p >= 13,
        [3, m, ..] => *m > 5,
        [m, ..] => *m > 3,
        [] => false,
    }
}

//! Issue 12, ready before the watch cache is filled: a server restarted on a data directory
//! with thousands of objects is ready while its watch cache still fills (slowed down here by
//! the test-only `--debug-failpoint watch-cache-fill-delay:MS`, so that every check below runs
//! before the fill ends — the test checks that it did), and answers as it would with a filled
//! cache: complete lists (consistent, `resourceVersion=0`, paginated, with selectors), GETs of
//! the last objects written, 404 for absent ones, initial-event watches with every object and
//! watches from a list's resourceVersion that see the next write.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};

use ferrokube_conformance::{ServerSpec, TestServer};

const NS: &str = "lazy";
/// Enough objects for several fill pages (1,000 keys each).
const COUNT: usize = 3000;

fn configmap(i: usize) -> ConfigMap {
    let parity = if i.is_multiple_of(2) { "even" } else { "odd" };
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("cm-{i:05}")),
            labels: Some([("parity".to_string(), parity.to_string())].into()),
            ..ObjectMeta::default()
        },
        data: Some([("i".to_string(), i.to_string())].into()),
        ..ConfigMap::default()
    }
}

async fn filled(client: &Client) -> bool {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client.request_text(req).await.expect("/metrics");
    let line = text
        .lines()
        .find(|l| l.starts_with("ferrokube_watch_cache_filled "))
        .unwrap_or_else(|| panic!("no ferrokube_watch_cache_filled in /metrics"));
    line.ends_with(" 1")
}

/// The names of the test's objects (not the controller-made `kube-root-ca.crt`).
fn names(list: &[ConfigMap]) -> BTreeSet<String> {
    list.iter()
        .map(ResourceExt::name_any)
        .filter(|n| n.starts_with("cm-"))
        .collect()
}

/// Every list form a client uses, checked against the `COUNT` objects written.
async fn check_lists(api: &Api<ConfigMap>, want: &BTreeSet<String>) {
    let all = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(names(&all.items), *want, "consistent list");
    let any = api
        .list(&ListParams::default().match_any())
        .await
        .expect("list rv=0");
    assert_eq!(names(&any.items), *want, "resourceVersion=0 list");

    let mut paged = Vec::new();
    let mut lp = ListParams::default().limit(700);
    loop {
        let page = api.list(&lp).await.expect("page");
        assert!(page.items.len() <= 700);
        paged.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(
        names(&paged).len(),
        paged
            .iter()
            .filter(|c| c.name_any().starts_with("cm-"))
            .count(),
        "no duplicates across pages"
    );
    assert_eq!(names(&paged), *want, "paginated list");

    let even = api
        .list(&ListParams::default().labels("parity=even"))
        .await
        .expect("label selector");
    let want_even: BTreeSet<String> = want
        .iter()
        .filter(|n| {
            n.strip_prefix("cm-")
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i: usize| i.is_multiple_of(2))
        })
        .cloned()
        .collect();
    assert_eq!(names(&even.items), want_even, "label-selected list");
    let one = api
        .list(&ListParams::default().fields("metadata.name=cm-01234"))
        .await
        .expect("field selector");
    assert_eq!(names(&one.items), BTreeSet::from(["cm-01234".to_string()]));
}

#[tokio::test]
async fn a_server_is_ready_and_answers_completely_before_its_watch_cache_is_filled() {
    // Write the objects through a first server, then stop it.
    let mut first = TestServer::start();
    {
        let client = first.kube_client().await;
        first.must_kubectl(["create", "namespace", NS]);
        let api: Api<ConfigMap> = Api::namespaced(client, NS);
        futures::stream::iter(0..COUNT)
            .map(|i| {
                let api = api.clone();
                async move { api.create(&PostParams::default(), &configmap(i)).await }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await
            .expect("create the objects");
    }
    first.stop();

    // Restart on the same data directory with a slow fill: ~4 pages, 3 s before each.
    let started = Instant::now();
    let server = TestServer::start_with(ServerSpec {
        data_dir: Some(first.data_dir().to_path_buf()),
        extra_args: vec!["--debug-failpoint=watch-cache-fill-delay:3000".into()],
        ..ServerSpec::default()
    });
    let client = server.kube_client().await;
    assert!(
        !filled(&client).await,
        "ready {:?} after start with the cache not filled",
        started.elapsed()
    );
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let mut want: BTreeSet<String> = (0..COUNT).map(|i| configmap(i).name_any()).collect();
    check_lists(&api, &want).await;

    // GETs of the last objects written, and of an absent one.
    for i in COUNT - 5..COUNT {
        let cm = api.get(&format!("cm-{i:05}")).await.expect("get");
        let value = cm.data.as_ref().and_then(|d| d.get("i")).cloned();
        assert_eq!(value, Some(i.to_string()));
    }
    match api.get("cm-absent").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404, "{status:?}"),
        other => panic!("GET of an absent object: {other:?}"),
    }

    // A watch with initial events (resourceVersion=0) has every object, then what follows.
    let initial = api
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .expect("initial watch");
    let mut initial = initial.boxed();
    let mut seen = BTreeSet::new();
    // The initial events come in key order: kube-root-ca.crt (made by the controller) last.
    while seen.len() < COUNT {
        match tokio::time::timeout(Duration::from_secs(20), initial.next()).await {
            Ok(Some(Ok(WatchEvent::Added(cm)))) if cm.name_any().starts_with("cm-") => {
                seen.insert(cm.name_any());
            }
            Ok(Some(Ok(WatchEvent::Added(_) | WatchEvent::Bookmark(_)))) => {}
            other => panic!("initial event {}: {other:?}", seen.len()),
        }
    }
    assert_eq!(seen, want, "the initial events are every object");

    // A watch from a list's resourceVersion sees the next write.
    let list = api
        .list(&ListParams::default().limit(1))
        .await
        .expect("list");
    let rv = list
        .metadata
        .resource_version
        .expect("list resourceVersion");
    let mut from_rv = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .expect("watch")
        .boxed();
    api.create(&PostParams::default(), &configmap(COUNT))
        .await
        .expect("create after the lists");
    want.insert(configmap(COUNT).name_any());
    for stream in [&mut from_rv, &mut initial] {
        loop {
            match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
                Ok(Some(Ok(WatchEvent::Added(cm)))) if cm.name_any().starts_with("cm-") => {
                    assert_eq!(cm.name_any(), configmap(COUNT).name_any());
                    break;
                }
                // kube-root-ca.crt (its initial event, or the controller's update).
                Ok(Some(Ok(
                    WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Bookmark(_),
                ))) => {}
                other => panic!("the write after the list: {other:?}"),
            }
        }
    }
    let got = api
        .get(&configmap(COUNT).name_any())
        .await
        .expect("get new");
    assert_eq!(got.name_any(), configmap(COUNT).name_any());
    assert!(
        !filled(&client).await,
        "every check above ran before the fill ended ({:?} after start)",
        started.elapsed()
    );

    // Once filled, the cache answers the same.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !filled(&client).await {
        assert!(
            Instant::now() < deadline,
            "the fill did not end within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check_lists(&api, &want).await;
}

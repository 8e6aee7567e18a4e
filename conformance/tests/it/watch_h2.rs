//! Watches over HTTP/2, as client-go opens them: many streams on one connection. The server
//! coalesces the connection's writes and serves each watch from its stream's task; every
//! watch must still get every event, in order, and end at its timeout.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{PostParams, WatchEvent, WatchParams};
use serde_json::json;

use ferrokube_conformance::TestServer;

/// A kube client over HTTP/2 (ferrokube's own, as its components can use it).
async fn h2_client(server: &TestServer) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    ferrokube_client::client_http2(cfg, Some("watch-h2-test")).expect("client")
}

#[tokio::test]
async fn many_watches_on_one_http2_connection_each_get_every_event_in_order() {
    let server = TestServer::start();
    let client = h2_client(&server).await;
    server.must_kubectl(["create", "namespace", "h2w"]);

    // The client really speaks HTTP/2 to the server.
    let resp = client
        .send(
            http::Request::get("/api/v1/namespaces/h2w/configmaps")
                .body(kube::client::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let list: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    const WATCHES: usize = 120;
    const EVENTS: usize = 30;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "h2w");
    let mut watches = Vec::new();
    for _ in 0..WATCHES {
        let stream = api
            .watch(&WatchParams::default().timeout(60), &rv)
            .await
            .unwrap()
            .boxed();
        watches.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut seen = Vec::new();
            while seen.len() < EVENTS {
                match stream.try_next().await {
                    // The namespace's kube-root-ca.crt may be published after `rv`.
                    Ok(Some(WatchEvent::Added(cm)))
                        if cm.metadata.name.as_deref() == Some("kube-root-ca.crt") => {}
                    Ok(Some(WatchEvent::Added(cm))) => seen.push((
                        cm.metadata.name.unwrap_or_default(),
                        cm.metadata
                            .resource_version
                            .unwrap_or_default()
                            .parse::<u64>()
                            .unwrap_or(0),
                    )),
                    Ok(Some(other)) => panic!("unexpected event {other:?}"),
                    Ok(None) => break,
                    Err(e) => panic!("watch failed: {e}"),
                }
            }
            seen
        }));
    }
    // Burst the creates (concurrently, over the same connection) so that events fan out
    // while the connection is busy.
    let creates = futures::future::join_all((0..EVENTS).map(|i| {
        let api = api.clone();
        async move {
            let cm: ConfigMap = serde_json::from_value(
                json!({"metadata": {"name": format!("cm-{i:02}")}, "data": {"i": i.to_string()}}),
            )
            .unwrap();
            api.create(&PostParams::default(), &cm)
                .await
                .unwrap()
                .metadata
                .resource_version
                .unwrap()
                .parse::<u64>()
                .unwrap()
        }
    }))
    .await;
    let mut expected: Vec<u64> = creates;
    expected.sort();
    for w in watches {
        let seen = tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("a watch did not get every event in 30 s")
            .unwrap();
        let revs: Vec<u64> = seen.iter().map(|(_, rv)| *rv).collect();
        assert_eq!(revs, expected, "every event, in revision order");
    }
}

#[tokio::test]
async fn an_http2_watch_ends_at_its_timeout_and_others_on_the_connection_go_on() {
    let server = TestServer::start();
    let client = h2_client(&server).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let short = api
        .watch(&WatchParams::default().timeout(2), "0")
        .await
        .unwrap()
        .boxed();
    let long = api
        .watch(&WatchParams::default().timeout(60), "0")
        .await
        .unwrap()
        .boxed();
    let started = Instant::now();
    let ended = tokio::time::timeout(
        Duration::from_secs(10),
        short.try_for_each(|_| async { Ok(()) }),
    )
    .await
    .expect("the 2 s watch did not end in 10 s");
    assert!(ended.is_ok(), "{ended:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "ended early: {:?}",
        started.elapsed()
    );
    // The connection's other watch still delivers.
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "after-timeout"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    let mut long = long;
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = long.try_next().await.unwrap() {
            if let WatchEvent::Added(o) = ev
                && o.metadata.name.as_deref() == Some("after-timeout")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true));
}

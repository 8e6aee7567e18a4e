//! The added latency of one admission webhook (issue 8's figure, goal p50 < 1 ms on
//! loopback): serial ConfigMap creates with no webhook and with one no-op validating webhook
//! (a real HTTPS test server), alternating rounds in one run; prints the p50 and p90 of each
//! and the difference of the p50s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;

use crate::admission_webhooks::apiserver;
use crate::hookserver::{HookServer, Reply, Req, review};

async fn client(server: &TestServer) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// `n` serial creates; the latency of each.
async fn creates(api: &Api<ConfigMap>, prefix: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}-{i}")),
                ..Default::default()
            },
            ..Default::default()
        };
        let t = Instant::now();
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
        out.push(t.elapsed());
    }
    out
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_validating_webhook_added_p50_latency() {
    let server = tokio::task::block_in_place(apiserver);
    let hooks = HookServer::start(
        &[],
        Arc::new(|req: &Req| Reply::json(&review(req, true, "", None, &[]))),
    );
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    creates(&api, "warm", 100).await;
    const N: usize = 300;
    const ROUNDS: usize = 3;
    let config = |on: bool| {
        let hooks_json = if on {
            json!([{
                "name": "noop.example.com",
                "clientConfig": {"url": hooks.url("/"), "caBundle": hooks.ca_bundle()},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""],
                           "apiVersions": ["v1"], "resources": ["configmaps"]}],
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            }])
        } else {
            json!([])
        };
        json!({"apiVersion": "admissionregistration.k8s.io/v1",
               "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": "noop"}, "webhooks": hooks_json})
        .to_string()
    };
    let (mut none, mut with) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for on in [false, true] {
            tokio::task::block_in_place(|| {
                server.must_kubectl_stdin(["apply", "-f", "-"], &config(on))
            });
            // The configuration reaches the plugin through a watch.
            let before = hooks.hits();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                creates(&api, &format!("probe-{round}-{on}-{}", hooks.hits()), 1).await;
                let called = hooks.hits() > before;
                if called == on {
                    break;
                }
                assert!(Instant::now() < deadline, "the configuration did not apply");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let lat = creates(&api, &format!("r{round}-{on}"), N).await;
            if on {
                with.extend(lat)
            } else {
                none.extend(lat)
            }
        }
    }
    assert!(
        hooks.hits() >= ROUNDS * N,
        "the webhook was not called for every create"
    );
    let (p50a, p90a) = (pct(&mut none, 0.5), pct(&mut none, 0.9));
    let (p50b, p90b) = (pct(&mut with, 0.5), pct(&mut with, 0.9));
    println!(
        "BENCH serial create latency, {} creates each, alternating rounds: no webhook p50 {:.3} ms p90 {:.3} ms; one no-op validating webhook (HTTPS, loopback) p50 {:.3} ms p90 {:.3} ms; added p50 {:.3} ms (goal < 1 ms)",
        ROUNDS * N,
        ms(p50a),
        ms(p90a),
        ms(p50b),
        ms(p90b),
        ms(p50b) - ms(p50a)
    );
    assert!(p50b > Duration::ZERO && p50a > Duration::ZERO);
}

//! Many pods at once on many simulated nodes, with a small mutating in-flight budget so the
//! API server answers 429 to part of the burst: the controllers, the scheduler and the node
//! agents must retry (client-go does, after `Retry-After`) instead of failing their creates,
//! bindings, status writes and lease renewals, and the controllers must not flood the server
//! with one event per pod (upstream's spam filter: 25 per object, then one per 5 minutes).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use serde_json::Value;

use crate::nodes::must_wait_for;
use crate::util::json;

const NODES: usize = 50;
const DEPLOYMENTS: usize = 6;
const REPLICAS: usize = 100;

fn deployments_yaml() -> String {
    (1..=DEPLOYMENTS)
        .map(|i| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: burst-{i}}}\nspec:\n  replicas: {REPLICAS}\n  selector: {{matchLabels: {{app: burst-{i}}}}}\n  template:\n    metadata: {{labels: {{app: burst-{i}}}}}\n    spec: {{containers: [{{name: c, image: nginx, resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}]}}\n---\n"
            )
        })
        .collect()
}

#[test]
fn deployments_of_600_pods_on_50_nodes_converge_under_a_small_inflight_budget() {
    let nodes = format!("--nodes={NODES}");
    let server = TestServer::start_with_args(&[
        &nodes,
        "--runtime=simulated",
        "--node-lease-renew-seconds=2",
        "--max-mutating-requests-inflight=20",
    ]);
    must_wait_for(&server, "50 nodes Ready", Duration::from_secs(60), || {
        let out = server.kubectl(["get", "nodes", "--no-headers"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let ready = text
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        if ready == NODES {
            Ok(())
        } else {
            Err(format!("{ready} Ready"))
        }
    });
    let t0 = Instant::now();
    server.must_kubectl_stdin(["apply", "-f", "-"], &deployments_yaml());
    for i in 1..=DEPLOYMENTS {
        server.must_kubectl([
            "rollout",
            "status",
            &format!("deployment/burst-{i}"),
            "--timeout=180s",
        ]);
    }
    let took = t0.elapsed();

    let deploys = json(&server.must_kubectl(["get", "deployments", "-o", "json"]));
    for d in deploys["items"].as_array().into_iter().flatten() {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        for field in [
            "replicas",
            "readyReplicas",
            "availableReplicas",
            "updatedReplicas",
        ] {
            assert_eq!(
                d["status"][field], REPLICAS,
                "{name} status.{field}: {}",
                d["status"]
            );
        }
    }
    // Every pod Running on a node, spread over the nodes, none beyond a node's max pods.
    let pods = json(&server.must_kubectl(["get", "pods", "-o", "json"]));
    let items: Vec<&Value> = pods["items"].as_array().into_iter().flatten().collect();
    assert_eq!(items.len(), DEPLOYMENTS * REPLICAS, "pods");
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in &items {
        assert_eq!(p["status"]["phase"], "Running", "{}", p["metadata"]["name"]);
        *per_node
            .entry(p["spec"]["nodeName"].as_str().unwrap_or_default())
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), NODES, "pods on every node: {per_node:?}");
    assert!(
        per_node.values().all(|n| (4..=110).contains(n)),
        "spread: {per_node:?}"
    );

    // The burst did meet the in-flight limit (otherwise this test shows nothing) ...
    let metrics = server.must_kubectl(["get", "--raw", "/metrics"]);
    let rejected: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{") && l.contains("code=\"429\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        rejected > 0.0,
        "no request was refused with 429: raise the burst"
    );
    // ... and the node leases were still renewed: every one within the last 10 s.
    let leases =
        json(&server.must_kubectl(["get", "leases", "-n", "kube-node-lease", "-o", "json"]));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut stale = Vec::new();
    for l in leases["items"].as_array().into_iter().flatten() {
        let renewed = serde_json::from_value::<MicroTime>(l["spec"]["renewTime"].clone())
            .ok()
            .map(|t| t.0.as_second());
        if renewed.is_none_or(|r| now - r > 10) {
            stale.push(format!(
                "{} {}",
                l["metadata"]["name"], l["spec"]["renewTime"]
            ));
        }
    }
    assert!(stale.is_empty(), "leases not renewed: {stale:?}");

    // No controller reported a failure: a 429 is retried, not turned into `FailedCreate`.
    let warnings = server.must_kubectl([
        "get",
        "events",
        "--field-selector",
        "type=Warning",
        "--no-headers",
    ]);
    assert!(
        warnings.trim().is_empty() || warnings.contains("No resources found"),
        "warnings:\n{warnings}"
    );
    // Events: a ReplicaSet's `SuccessfulCreate`s stop at upstream's spam-filter burst (25).
    let events = json(&server.must_kubectl([
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=ReplicaSet,reason=SuccessfulCreate",
        "-o",
        "json",
    ]));
    let mut per_rs: HashMap<String, u64> = HashMap::new();
    for e in events["items"].as_array().into_iter().flatten() {
        let n = e["count"].as_u64().unwrap_or(1).max(1);
        *per_rs
            .entry(
                e["involvedObject"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
            .or_default() += n;
    }
    eprintln!(
        "{} pods on {NODES} nodes available after {took:?}; {rejected} requests answered 429; SuccessfulCreate events per ReplicaSet: {per_rs:?}",
        DEPLOYMENTS * REPLICAS
    );
    assert_eq!(
        per_rs.len(),
        DEPLOYMENTS,
        "SuccessfulCreate events per ReplicaSet: {per_rs:?}"
    );
    assert!(per_rs.values().all(|n| (1..=25).contains(n)), "{per_rs:?}");
    assert!(took < Duration::from_secs(90), "took {took:?}");
}

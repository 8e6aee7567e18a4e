//! The HorizontalPodAutoscaler controller on a cluster without a metrics API (no
//! metrics-server), as users meet it first: `kubectl autoscale` creates the HPA, the controller
//! reports `ScalingActive=False/FailedGetResourceMetric` with upstream's message and events,
//! and still keeps the target within `--min`/`--max`.

use std::time::Duration;

use ferrokube_conformance::TestServer;

use crate::nodes::must_wait_for;
use crate::util::{json, squash};

const NO_METRICS: &str = "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)";

fn condition(server: &TestServer, type_: &str) -> Result<(String, String, String), String> {
    let hpa = json(&server.must_kubectl(["get", "hpa", "web", "-o", "json"]));
    hpa["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .ok_or_else(|| format!("no {type_} condition: {hpa}"))
}

fn replicas(server: &TestServer) -> String {
    server.must_kubectl([
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.replicas}",
    ])
}

#[test]
fn hpa_without_metrics_api_reports_and_clamps_to_bounds() {
    let server = TestServer::start();
    server.must_kubectl([
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=3",
    ]);
    server.must_kubectl([
        "autoscale",
        "deployment",
        "web",
        "--min=2",
        "--max=5",
        "--cpu-percent=50",
    ]);
    let wait = Duration::from_secs(40);
    let (status, reason, message) = must_wait_for(&server, "ScalingActive", wait, || {
        condition(&server, "ScalingActive")
    });
    assert_eq!(
        (status.as_str(), reason.as_str(), message.as_str()),
        ("False", "FailedGetResourceMetric", NO_METRICS)
    );
    let (status, reason, _) = condition(&server, "AbleToScale").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "SucceededGetScale")
    );
    let table = squash(&server.must_kubectl(["get", "hpa", "web"]));
    assert!(
        table.contains("web Deployment/web cpu: <unknown>/50% 2 5 3"),
        "{table}"
    );
    let describe = server.must_kubectl(["describe", "hpa", "web"]);
    assert!(
        describe.contains("FailedComputeMetricsReplicas"),
        "{describe}"
    );
    assert!(
        describe.contains(
            "invalid metrics (1 invalid out of 1), first error is: failed to get cpu utilization"
        ),
        "{describe}"
    );
    assert_eq!(
        replicas(&server),
        "3",
        "no metrics: no scaling within bounds"
    );

    // Outside the bounds the controller acts without metrics (next sync, ≤ 15 s).
    server.must_kubectl(["scale", "deployment", "web", "--replicas=9"]);
    must_wait_for(&server, "clamped to maxReplicas", wait, || {
        let r = replicas(&server);
        if r == "5" { Ok(()) } else { Err(r) }
    });
    let describe = server.must_kubectl(["describe", "hpa", "web"]);
    assert!(
        describe.contains("New size: 5; reason: Current number of replicas above Spec.MaxReplicas"),
        "{describe}"
    );
    let (status, reason, message) =
        condition(&server, "AbleToScale").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (status.as_str(), reason.as_str(), message.as_str()),
        (
            "True",
            "SucceededRescale",
            "the HPA controller was able to update the target scale to 5"
        )
    );
}

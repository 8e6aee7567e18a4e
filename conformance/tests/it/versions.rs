//! Kinds served at two versions over one storage version: HorizontalPodAutoscaler
//! (autoscaling/v2 stored, v1 converted like upstream's `pkg/apis/autoscaling/v1/conversion.go`)
//! and Event (core/v1 stored, events.k8s.io/v1 converted like `pkg/apis/events/v1/conversion.go`).
//! Each version must show its own fields whichever version wrote the object.

use ferrokube_conformance::TestServer;

use crate::util::json;

const HPA_V2: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 500Mi}}
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
"#;

#[test]
fn hpa_written_as_v2_reads_as_v1_and_back() {
    let server = TestServer::start();
    server.must_kubectl_stdin(["apply", "-f", "-"], HPA_V2);

    let v1 = json(&server.must_kubectl([
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "-o",
        "json",
    ]));
    assert_eq!(v1["apiVersion"], "autoscaling/v1", "{v1:#}");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60, "{v1:#}");
    assert_eq!(v1["spec"]["minReplicas"], 2, "{v1:#}");
    assert!(v1["spec"].get("metrics").is_none(), "{v1:#}");
    let others = v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
        .as_str()
        .unwrap_or_else(|| panic!("no metrics annotation in {v1:#}"));
    assert_eq!(
        json(others),
        serde_json::json!([{"type": "Resource",
            "resource": {"name": "memory", "targetAverageValue": "500Mi"}}])
    );

    // A v1 client edits the target; the v2 view keeps the memory metric from the annotation.
    server.must_kubectl([
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":75}}"#,
    ]);
    let v2 = json(&server.must_kubectl([
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "-o",
        "json",
    ]));
    assert_eq!(v2["apiVersion"], "autoscaling/v2", "{v2:#}");
    assert_eq!(
        v2["spec"]["metrics"],
        serde_json::json!([
            {"type": "Resource", "resource": {"name": "memory",
                "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
            {"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 75}}}
        ]),
        "{v2:#}"
    );
    assert!(
        v2["metadata"]
            .get("annotations")
            .is_none_or(|a| a.get("autoscaling.alpha.kubernetes.io/metrics").is_none()),
        "v2 objects never carry the round-trip annotations: {v2:#}"
    );

    // A v1 HPA without a target gets upstream's explicit 80% CPU default in v2.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: plain}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 3\n",
    );
    let plain = json(&server.must_kubectl([
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "plain",
        "-o",
        "json",
    ]));
    assert_eq!(
        plain["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80,
        "{plain:#}"
    );
}

#[test]
fn core_event_reads_as_events_k8s_io() {
    let server = TestServer::start();
    server.must_kubectl_stdin(
        ["create", "-f", "-"],
        r#"
apiVersion: v1
kind: Event
metadata: {name: web.1}
involvedObject: {kind: Pod, name: web, namespace: default}
reason: Started
message: Started container web
type: Normal
source: {component: kubelet, host: node-1}
count: 2
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:00:05Z"
"#,
    );
    let ev = json(&server.must_kubectl(["get", "events.v1.events.k8s.io", "web.1", "-o", "json"]));
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1", "{ev:#}");
    assert_eq!(ev["regarding"]["name"], "web", "{ev:#}");
    assert_eq!(ev["note"], "Started container web", "{ev:#}");
    assert_eq!(ev["deprecatedSource"]["component"], "kubelet", "{ev:#}");
    assert_eq!(ev["deprecatedCount"], 2, "{ev:#}");
    assert!(ev.get("involvedObject").is_none(), "{ev:#}");

    // Listed through events.k8s.io too, and written back through it.
    let list = json(&server.must_kubectl(["get", "events.v1.events.k8s.io", "-o", "json"]));
    assert_eq!(
        list["items"][0]["note"], "Started container web",
        "{list:#}"
    );
    server.must_kubectl([
        "patch",
        "events.v1.events.k8s.io",
        "web.1",
        "--type=merge",
        "-p",
        r#"{"note":"Restarted container web"}"#,
    ]);
    let core = json(&server.must_kubectl(["get", "events.v1.", "web.1", "-o", "json"]));
    assert_eq!(core["apiVersion"], "v1", "{core:#}");
    assert_eq!(core["message"], "Restarted container web", "{core:#}");
    assert_eq!(core["involvedObject"]["kind"], "Pod", "{core:#}");
    assert!(core.get("note").is_none(), "{core:#}");
}

//! The StatefulSet controller with simulated nodes and stock kubectl: ordered creation with
//! claims from `volumeClaimTemplates`, scale-down in reverse order, partitioned rolling updates,
//! `kubectl rollout status|history|undo`, Parallel pod management with `ordinals.start`, and the
//! PVC retention policy.

use std::time::Duration;

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::nodes::{THREE_NODES, must_have_ready_nodes, must_wait_for};
use crate::workloads::{get_json, items, name};

const WAIT: Duration = Duration::from_secs(60);

fn sts_manifest(name: &str, replicas: u32, extra_spec: &str, annotations: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  clusterIP: None
  selector:
    app: {name}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  serviceName: {name}
  replicas: {replicas}
{extra_spec}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
      annotations: {{{annotations}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: nginx:1.0
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
"#
    )
}

fn is_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Live (not terminating) pods of the set, by name.
fn set_pods(server: &TestServer, app: &str) -> Vec<Value> {
    let mut v: Vec<Value> = items(server, &["get", "pods", "-l", &format!("app={app}")])
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    v.sort_by_key(name);
    v
}

fn image(p: &Value) -> String {
    p["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn rollout_status(server: &TestServer, target: &str) -> String {
    server.must_kubectl(["rollout", "status", target, "--timeout=90s"])
}

#[test]
fn statefulset_comes_up_in_order_with_claims_rolls_a_partition_and_scales_down_in_reverse() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl_stdin(["apply", "-f", "-"], &sts_manifest("web", 3, "", ""));
    // Ordered: a pod exists only once every lower ordinal is Running and Ready.
    must_wait_for(&server, "web-0..2 ready, in order", WAIT, || {
        let pods = set_pods(&server, "web");
        let names: Vec<String> = pods.iter().map(name).collect();
        for (i, p) in pods.iter().enumerate().skip(1) {
            let prev = &pods[i - 1];
            assert_eq!(
                name(prev),
                format!("web-{}", i - 1),
                "gap in ordinals: {names:?}"
            );
            assert!(
                is_ready(prev) || !is_ready(p),
                "{} ready before {}",
                name(p),
                name(prev)
            );
        }
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        if ready == 3 {
            Ok(())
        } else {
            Err(format!("{names:?}, {ready} ready"))
        }
    });
    let pods = set_pods(&server, "web");
    for (i, p) in pods.iter().enumerate() {
        let n = format!("web-{i}");
        assert_eq!(p["spec"]["hostname"], n.as_str());
        assert_eq!(p["spec"]["subdomain"], "web");
        assert_eq!(
            p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            n.as_str()
        );
        assert_eq!(
            p["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
            i.to_string()
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        let claim = p["spec"]["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == "data"))
            .map(|v| v["persistentVolumeClaim"]["claimName"].clone());
        assert_eq!(claim, Some(Value::from(format!("data-web-{i}"))), "{p}");
        if i > 0 {
            // The predecessor was Ready no later than this pod was created.
            let ready_at = pods[i - 1]["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    c["lastTransitionTime"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .unwrap_or_default();
            let created = p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default();
            assert!(ready_at.as_str() <= created, "{ready_at} > {created}");
        }
    }
    let claims = items(&server, &["get", "pvc", "-l", "app=web"]);
    let mut claim_names: Vec<String> = claims.iter().map(name).collect();
    claim_names.sort();
    assert_eq!(claim_names, ["data-web-0", "data-web-1", "data-web-2"]);
    let out = rollout_status(&server, "sts/web");
    // apps/v1 defaults `rollingUpdate.partition: 0`, so kubectl reports a partitioned roll out.
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let sts = get_json(&server, &["get", "sts", "web"]);
    let st = &sts["status"];
    assert_eq!(
        (st["replicas"].clone(), st["readyReplicas"].clone()),
        (3.into(), 3.into()),
        "{sts}"
    );
    assert_eq!(st["availableReplicas"], 3);
    assert_eq!(st["currentReplicas"], 3);
    assert_eq!(st["updatedReplicas"], 3);
    assert_eq!(st["observedGeneration"], sts["metadata"]["generation"]);
    assert_eq!(st["currentRevision"], st["updateRevision"]);
    let rev1 = st["currentRevision"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let revs = items(&server, &["get", "controllerrevisions", "-l", "app=web"]);
    assert_eq!(revs.len(), 1, "{revs:?}");
    assert_eq!(name(&revs[0]), rev1);
    assert_eq!(revs[0]["revision"], 1);
    assert_eq!(
        pods[0]["metadata"]["labels"]["controller-revision-hash"],
        rev1.as_str()
    );

    // A partitioned update touches only ordinals >= partition, highest first.
    server.must_kubectl([
        "patch",
        "sts",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}"#,
    ]);
    server.must_kubectl(["set", "image", "sts/web", "c=nginx:2.0"]);
    let out = rollout_status(&server, "sts/web");
    assert!(
        out.contains("partitioned roll out complete: 1 new pods have been updated"),
        "{out}"
    );
    must_wait_for(&server, "web-2 updated and ready", WAIT, || {
        let pods = set_pods(&server, "web");
        let images: Vec<(String, String, bool)> = pods
            .iter()
            .map(|p| (name(p), image(p), is_ready(p)))
            .collect();
        let want = vec![
            ("web-0".to_string(), "nginx:1.0".to_string(), true),
            ("web-1".to_string(), "nginx:1.0".to_string(), true),
            ("web-2".to_string(), "nginx:2.0".to_string(), true),
        ];
        if images == want {
            Ok(())
        } else {
            Err(format!("{images:?}"))
        }
    });
    let st = get_json(&server, &["get", "sts", "web"])["status"].clone();
    assert_eq!(st["updatedReplicas"], 1, "{st}");
    assert_eq!(st["currentRevision"], rev1.as_str());
    assert_ne!(st["updateRevision"], rev1.as_str());
    // Partition 0 finishes the roll; the update revision becomes current.
    server.must_kubectl([
        "patch",
        "sts",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    let out = rollout_status(&server, "sts/web");
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    must_wait_for(&server, "all pods at nginx:2.0", WAIT, || {
        let pods = set_pods(&server, "web");
        let ok = pods.len() == 3 && pods.iter().all(|p| image(p) == "nginx:2.0" && is_ready(p));
        if ok {
            Ok(())
        } else {
            Err(format!("{:?}", pods.iter().map(image).collect::<Vec<_>>()))
        }
    });
    let history = server.must_kubectl(["rollout", "history", "sts/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    // Undo restores revision 1's template, which becomes revision 3.
    server.must_kubectl(["rollout", "undo", "sts/web"]);
    must_wait_for(&server, "rolled back to nginx:1.0", WAIT, || {
        let sts = get_json(&server, &["get", "sts", "web"]);
        let st = &sts["status"];
        let pods = set_pods(&server, "web");
        let ok = sts["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.0"
            && st["currentRevision"] == rev1.as_str()
            && st["updatedReplicas"] == 3
            && pods.iter().all(|p| image(p) == "nginx:1.0" && is_ready(p));
        if ok { Ok(()) } else { Err(format!("{st}")) }
    });
    let revs = items(&server, &["get", "controllerrevisions", "-l", "app=web"]);
    let r1 = revs
        .iter()
        .find(|r| name(r) == rev1)
        .cloned()
        .unwrap_or_default();
    assert_eq!(r1["revision"], 3, "{revs:?}");

    // Scale down: web-2 goes before web-1; claims stay (Retain).
    server.must_kubectl(["scale", "sts", "web", "--replicas=1"]);
    must_wait_for(&server, "only web-0 left", WAIT, || {
        let names: Vec<String> = set_pods(&server, "web").iter().map(name).collect();
        assert!(
            !names.contains(&"web-2".to_string()) || names.contains(&"web-1".to_string()),
            "web-1 went before web-2: {names:?}"
        );
        if names == ["web-0"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    assert_eq!(items(&server, &["get", "pvc", "-l", "app=web"]).len(), 3);
    let events = server.must_kubectl([
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(
        events.contains("create Pod web-0 in StatefulSet web successful"),
        "{events}"
    );
    assert!(
        events.contains("create Claim data-web-0 Pod web-0 in StatefulSet web success"),
        "{events}"
    );
    assert!(
        events.contains("delete Pod web-2 in StatefulSet web successful"),
        "{events}"
    );
}

#[test]
fn ordered_ready_waits_for_each_pod_while_parallel_starts_all_from_ordinals_start() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    let never = r#""ferrokube.io/simulate": "never-ready""#;
    server.must_kubectl_stdin(["apply", "-f", "-"], &sts_manifest("slow", 3, "", never));
    let parallel = "  podManagementPolicy: Parallel\n  ordinals:\n    start: 5\n  persistentVolumeClaimRetentionPolicy:\n    whenScaled: Delete\n    whenDeleted: Retain";
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &sts_manifest("fast", 3, parallel, never),
    );
    must_wait_for(&server, "fast-5..7 created together", WAIT, || {
        let names: Vec<String> = set_pods(&server, "fast").iter().map(name).collect();
        if names == ["fast-5", "fast-6", "fast-7"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    must_wait_for(&server, "slow-0 running", WAIT, || {
        let pods = set_pods(&server, "slow");
        match pods.first() {
            Some(p) if p["status"]["phase"] == "Running" => Ok(()),
            _ => Err(format!("{pods:?}")),
        }
    });
    // slow-0 never becomes Ready, so slow-1 is never created.
    std::thread::sleep(Duration::from_secs(3));
    let names: Vec<String> = set_pods(&server, "slow").iter().map(name).collect();
    assert_eq!(names, ["slow-0"]);
    let out = server.must_kubectl(["rollout", "status", "sts/slow", "--watch=false"]);
    assert!(out.contains("Waiting for 3 pods to be ready"), "{out}");
    let claims: Vec<String> = items(&server, &["get", "pvc", "-l", "app=fast"])
        .iter()
        .map(name)
        .collect();
    assert_eq!(claims.len(), 3, "{claims:?}");
    // whenScaled: Delete — the condemned pod's claim goes with it.
    server.must_kubectl(["scale", "sts", "fast", "--replicas=1"]);
    must_wait_for(
        &server,
        "fast scaled to fast-5 with its claim only",
        WAIT,
        || {
            let names: Vec<String> = set_pods(&server, "fast").iter().map(name).collect();
            let claims: Vec<String> = items(&server, &["get", "pvc", "-l", "app=fast"])
                .iter()
                .filter(|c| c["metadata"]["deletionTimestamp"].is_null())
                .map(name)
                .collect();
            if names == ["fast-5"] && claims == ["data-fast-5"] {
                Ok(())
            } else {
                Err(format!("{names:?} {claims:?}"))
            }
        },
    );
    let sts = get_json(&server, &["get", "sts", "fast"]);
    assert_eq!(sts["status"]["replicas"], 1, "{sts}");
    assert!(sts["status"]["readyReplicas"].is_null(), "{sts}");
}

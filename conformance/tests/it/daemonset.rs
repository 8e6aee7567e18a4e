//! The DaemonSet controller with simulated nodes and stock kubectl: a pod on every eligible
//! node (a node added later gets one, a tainted one does not), `kubectl rollout status`,
//! rolling updates with ControllerRevisions, and eviction by a NoExecute taint.

use std::time::Duration;

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::nodes::{NodeAgent, THREE_NODES, must_have_ready_nodes, must_wait_for};
use crate::workloads::{get_json, items, name};

const WAIT: Duration = Duration::from_secs(60);

const AGENT: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: agent:1
"#;

fn is_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// (node, image, ready) of every live daemon pod, sorted by node.
fn placement(server: &TestServer) -> Vec<(String, String, bool)> {
    let mut v: Vec<(String, String, bool)> = items(server, &["get", "pods", "-l", "app=agent"])
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                is_ready(p),
            )
        })
        .collect();
    v.sort();
    v
}

fn all_on(nodes: &[&str], image: &str) -> Vec<(String, String, bool)> {
    nodes
        .iter()
        .map(|n| (n.to_string(), image.to_string(), true))
        .collect()
}

#[test]
fn daemonset_lands_on_every_node_follows_new_nodes_skips_tainted_ones_and_rolls() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl_stdin(["apply", "-f", "-"], AGENT);
    let three = all_on(&["node-0", "node-1", "node-2"], "agent:1");
    must_wait_for(&server, "a ready pod on each node", WAIT, || {
        let p = placement(&server);
        if p == three {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    let out = server.must_kubectl(["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
    let ds = get_json(&server, &["get", "ds", "agent"]);
    let st = &ds["status"];
    for (field, want) in [
        ("desiredNumberScheduled", 3),
        ("currentNumberScheduled", 3),
        ("numberReady", 3),
        ("updatedNumberScheduled", 3),
        ("numberAvailable", 3),
        ("numberMisscheduled", 0),
    ] {
        assert_eq!(st[field], want, "{field}: {ds}");
    }
    assert_eq!(st["observedGeneration"], ds["metadata"]["generation"]);
    // Pods are pinned by node affinity and carry the default daemon tolerations.
    let pod = items(&server, &["get", "pods", "-l", "app=agent"]).remove(0);
    let term = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0];
    assert_eq!(term["matchFields"][0]["key"], "metadata.name", "{pod}");
    assert_eq!(term["matchFields"][0]["values"][0], pod["spec"]["nodeName"]);
    let tolerations = pod["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains("node.kubernetes.io/unschedulable"),
        "{tolerations}"
    );
    assert!(
        tolerations.contains("node.kubernetes.io/not-ready"),
        "{tolerations}"
    );
    let hash = pod["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!hash.is_empty(), "{pod}");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");

    // A node that joins gets a pod; a tainted one does not.
    let _n3 = NodeAgent::start(&server, "node-3", &["--node-lease-renew-seconds=2"]);
    let _n4 = NodeAgent::start(
        &server,
        "node-4",
        &[
            "--node-lease-renew-seconds=2",
            "--register-with-taints=dedicated=db:NoSchedule",
        ],
    );
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2", "node-3", "node-4"]);
    let four = all_on(&["node-0", "node-1", "node-2", "node-3"], "agent:1");
    must_wait_for(&server, "a pod on node-3, none on node-4", WAIT, || {
        let p = placement(&server);
        if p == four {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(placement(&server), four);
    let st = get_json(&server, &["get", "ds", "agent"])["status"].clone();
    assert_eq!(st["desiredNumberScheduled"], 4, "{st}");

    // Rolling update, one node at a time (maxUnavailable 1), with a second revision.
    server.must_kubectl(["set", "image", "ds/agent", "c=agent:2"]);
    let out = server.must_kubectl(["rollout", "status", "ds/agent", "--timeout=90s"]);
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
    let rolled = all_on(&["node-0", "node-1", "node-2", "node-3"], "agent:2");
    must_wait_for(&server, "every pod at agent:2", WAIT, || {
        let p = placement(&server);
        if p == rolled {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    let revs = items(&server, &["get", "controllerrevisions", "-l", "app=agent"]);
    let mut numbers: Vec<i64> = revs
        .iter()
        .map(|r| r["revision"].as_i64().unwrap_or(0))
        .collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2], "{revs:?}");
    assert!(
        revs.iter().any(|r| name(r) == format!("agent-{hash}")),
        "{revs:?}"
    );
    let history = server.must_kubectl(["rollout", "history", "ds/agent"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let events = server.must_kubectl([
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=agent",
    ]);
    assert!(events.contains("Created pod: agent-"), "{events}");
    assert!(events.contains("Deleted pod: agent-"), "{events}");

    // A NoExecute taint the pods do not tolerate removes the pod from that node.
    server.must_kubectl(["taint", "nodes", "node-0", "evict=now:NoExecute"]);
    let three_left = all_on(&["node-1", "node-2", "node-3"], "agent:2");
    must_wait_for(&server, "no pod on node-0", WAIT, || {
        let p = placement(&server);
        if p == three_left {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    must_wait_for(&server, "desired 3", WAIT, || {
        let st = get_json(&server, &["get", "ds", "agent"])["status"].clone();
        if st["desiredNumberScheduled"] == 3 && st["numberMisscheduled"] == 0 {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
}

#[test]
fn daemonset_node_selector_limits_placement_and_on_delete_waits() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl(["label", "node", "node-1", "disk=ssd"]);
    let manifest = AGENT
        .replace(
            "      terminationGracePeriodSeconds: 1",
            "      terminationGracePeriodSeconds: 1\n      nodeSelector:\n        disk: ssd",
        )
        .replace(
            "spec:\n  selector:",
            "spec:\n  updateStrategy:\n    type: OnDelete\n  selector:",
        );
    server.must_kubectl_stdin(["apply", "-f", "-"], &manifest);
    let one = all_on(&["node-1"], "agent:1");
    must_wait_for(&server, "a pod on node-1 only", WAIT, || {
        let p = placement(&server);
        if p == one {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    // Labelling another node brings a pod there.
    server.must_kubectl(["label", "node", "node-2", "disk=ssd"]);
    let two = all_on(&["node-1", "node-2"], "agent:1");
    must_wait_for(&server, "pods on node-1 and node-2", WAIT, || {
        let p = placement(&server);
        if p == two {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    // OnDelete: a new template waits until a pod is deleted by hand.
    server.must_kubectl(["set", "image", "ds/agent", "c=agent:2"]);
    must_wait_for(&server, "status observed the new generation", WAIT, || {
        let ds = get_json(&server, &["get", "ds", "agent"]);
        if ds["status"]["observedGeneration"] == ds["metadata"]["generation"] {
            Ok(())
        } else {
            Err(ds["status"].to_string())
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(placement(&server), two);
    assert!(
        get_json(&server, &["get", "ds", "agent"])["status"]["updatedNumberScheduled"].is_null()
    );
    let victim = items(
        &server,
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "--field-selector",
            "spec.nodeName=node-2",
        ],
    );
    server.must_kubectl(["delete", "pod", &name(&victim[0]), "--wait=false"]);
    let mixed = vec![
        ("node-1".to_string(), "agent:1".to_string(), true),
        ("node-2".to_string(), "agent:2".to_string(), true),
    ];
    must_wait_for(&server, "node-2 replaced at agent:2", WAIT, || {
        let p = placement(&server);
        if p == mixed {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    // Removing the label makes the node's pod misscheduled, and it is deleted.
    server.must_kubectl(["label", "node", "node-1", "disk-"]);
    let only2 = vec![("node-2".to_string(), "agent:2".to_string(), true)];
    must_wait_for(&server, "node-1's pod removed", WAIT, || {
        let p = placement(&server);
        if p == only2 {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
}

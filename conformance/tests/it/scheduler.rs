//! The scheduler against simulated nodes: placement by nodeSelector and taints/tolerations,
//! upstream's `Unschedulable` message, scheduling once a bigger node (a separate
//! `ferrokube node-agent` process) joins, cordon/uncordon, the Scheduled/FailedScheduling events,
//! preemption, `pods/binding` conflicts, scheduling gates, and a stopped agent's lease.

use std::time::Duration;

use ferrokube_conformance::TestServer;

use crate::nodes::{
    NodeAgent, THREE_NODES, must_have_ready_nodes, must_reach_phase, must_renew_lease,
    must_wait_for, pod_json,
};
use crate::util::{Table, json};

fn pod_with(name: &str, extra_spec: &str, cpu: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
{extra_spec}
  containers:
  - name: c
    image: nginx
    resources: {{requests: {{cpu: "{cpu}"}}}}
"#
    )
}

fn scheduled_message(server: &TestServer, name: &str) -> String {
    must_wait_for(
        server,
        &format!("{name} PodScheduled=False"),
        Duration::from_secs(30),
        || {
            let p = pod_json(server, name);
            let c = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "PodScheduled")
                .cloned();
            match c {
                Some(c) if c["status"] == "False" && c["reason"] == "Unschedulable" => {
                    Ok(c["message"].as_str().unwrap_or("").to_string())
                }
                _ => Err(p["status"].to_string()),
            }
        },
    )
}

fn node_of(server: &TestServer, name: &str) -> String {
    must_wait_for(
        server,
        &format!("{name} bound"),
        Duration::from_secs(30),
        || {
            let p = pod_json(server, name);
            match p["spec"]["nodeName"].as_str() {
                Some(n) if !n.is_empty() => Ok(n.to_string()),
                _ => Err(p["status"].to_string()),
            }
        },
    )
}

#[test]
fn too_big_pod_is_unschedulable_with_upstream_message_until_a_bigger_node_joins() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    for n in ["node-0", "node-1"] {
        server.must_kubectl([
            "taint",
            "nodes",
            n,
            "node-role.kubernetes.io/control-plane:NoSchedule",
        ]);
    }
    server.must_kubectl_stdin(["apply", "-f", "-"], &pod_with("big", "", "16"));
    let msg = scheduled_message(&server, "big");
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    let table = Table::parse(&server.must_kubectl(["get", "pod", "big"]));
    assert_eq!(table.cell("big", "STATUS"), "Pending");
    // The FailedScheduling event carries the same message.
    let events = server.must_kubectl([
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=big",
    ]);
    assert!(events.contains("FailedScheduling"), "{events}");
    assert!(events.contains("0/3 nodes are available"), "{events}");
    // A bigger node joins as its own process with its own certificate.
    let agent = NodeAgent::start(
        &server,
        "big-node",
        &["--node-cpu=32", "--node-memory=64Gi"],
    );
    must_have_ready_nodes(&server, &["big-node"]);
    assert_eq!(
        node_of(&server, "big"),
        "big-node",
        "agent log:\n{}",
        agent.log_tail()
    );
    must_reach_phase(&server, "big", "Running");
    let events = server.must_kubectl([
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=big,reason=Scheduled",
    ]);
    assert!(
        events.contains("Successfully assigned default/big to big-node"),
        "{events}"
    );
}

#[test]
fn node_selector_and_taints_are_honoured() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl(["taint", "nodes", "node-0", "dedicated=infra:NoSchedule"]);
    server.must_kubectl(["label", "nodes", "node-1", "disk=ssd"]);
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &pod_with("ssd", "  nodeSelector: {disk: ssd}", "100m"),
    );
    assert_eq!(node_of(&server, "ssd"), "node-1");
    let tolerating = "  nodeSelector: {kubernetes.io/hostname: node-0}\n  tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]";
    server.must_kubectl_stdin(["apply", "-f", "-"], &pod_with("infra", tolerating, "100m"));
    assert_eq!(node_of(&server, "infra"), "node-0");
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &pod_with(
            "intolerant",
            "  nodeSelector: {kubernetes.io/hostname: node-0}",
            "100m",
        ),
    );
    assert_eq!(
        scheduled_message(&server, "intolerant"),
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    // Untainted nodes only for pods without tolerations.
    for i in 0..4 {
        let name = format!("free-{i}");
        server.must_kubectl_stdin(["apply", "-f", "-"], &pod_with(&name, "", "100m"));
        assert_ne!(node_of(&server, &name), "node-0");
    }
    // Removing the taint lets the pending pod in.
    server.must_kubectl(["taint", "nodes", "node-0", "dedicated=infra:NoSchedule-"]);
    assert_eq!(node_of(&server, "intolerant"), "node-0");

    // A pod with scheduling gates says so (upstream's pod strategy sets the condition on
    // create) and is left alone until its last gate is removed.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &pod_with(
            "gated",
            "  schedulingGates: [{name: example.com/wait}]",
            "100m",
        ),
    );
    let p = pod_json(&server, "gated");
    assert_eq!(
        p["status"]["conditions"],
        serde_json::json!([{
            "type": "PodScheduled",
            "status": "False",
            "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
        }]),
        "{p:#}"
    );
    let out = server.must_kubectl(["get", "pod", "gated"]);
    assert!(out.contains("SchedulingGated"), "{out}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pod_json(&server, "gated")["spec"]["nodeName"],
        serde_json::Value::Null
    );
    server.must_kubectl([
        "patch",
        "pod",
        "gated",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/schedulingGates"}]"#,
    ]);
    node_of(&server, "gated");
}

#[test]
fn cordoned_nodes_get_no_pods_until_uncordoned() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl(["cordon", "node-0", "node-1"]);
    let table = Table::parse(&server.must_kubectl(["get", "nodes"]));
    assert_eq!(table.cell("node-0", "STATUS"), "Ready,SchedulingDisabled");
    for i in 0..3 {
        let name = format!("p{i}");
        server.must_kubectl_stdin(["apply", "-f", "-"], &pod_with(&name, "", "100m"));
        assert_eq!(node_of(&server, &name), "node-2");
    }
    server.must_kubectl(["cordon", "node-2"]);
    server.must_kubectl_stdin(["apply", "-f", "-"], &pod_with("waits", "", "100m"));
    assert_eq!(
        scheduled_message(&server, "waits"),
        "0/3 nodes are available: 3 node(s) were unschedulable. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    server.must_kubectl(["uncordon", "node-1"]);
    assert_eq!(node_of(&server, "waits"), "node-1");
}

#[test]
fn pods_spread_over_nodes_by_least_allocated() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..6 {
        let name = format!("s{i}");
        server.must_kubectl_stdin(["apply", "-f", "-"], &pod_with(&name, "", "500m"));
        *per_node.entry(node_of(&server, &name)).or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_node:?}"
    );
}

#[test]
fn binding_an_already_bound_pod_conflicts() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl_stdin(["apply", "-f", "-"], &pod_with("bound", "", "100m"));
    let node = node_of(&server, "bound");
    let other = if node == "node-0" { "node-1" } else { "node-0" };
    let binding = format!(
        r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"bound"}},"target":{{"kind":"Node","name":"{other}"}}}}"#
    );
    let out = server.kubectl_stdin(
        [
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/bound/binding",
            "-f",
            "-",
        ],
        &binding,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Operation cannot be fulfilled on pods/binding \"bound\": pod bound is already assigned to node \"{node}\""
        )),
        "{err}"
    );
    // A pod with a scheduler nobody runs stays pending until bound by hand.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &pod_with("manual", "  schedulerName: nobody", "100m"),
    );
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"manual","annotations":{"by":"test"}},"target":{"kind":"Node","name":"node-2"}}"#;
    let created = server.must_kubectl_stdin(
        [
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/manual/binding",
            "-f",
            "-",
        ],
        binding,
    );
    let status = json(&created);
    assert_eq!(status["status"], "Success", "{created}");
    let pod = pod_json(&server, "manual");
    assert_eq!(pod["spec"]["nodeName"], "node-2");
    assert_eq!(pod["metadata"]["annotations"]["by"], "test");
    must_reach_phase(&server, "manual", "Running");
}

#[test]
fn higher_priority_pod_preempts_a_lower_one() {
    let server = TestServer::start_with_args(&["--nodes=1", "--runtime=simulated", "--node-cpu=2"]);
    must_have_ready_nodes(&server, &["node-0"]);
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &pod_with("low", "  priority: 0", "1500m"),
    );
    must_reach_phase(&server, "low", "Running");
    // The Priority admission plugin computes a pod's priority from its PriorityClass.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\n",
    );
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &pod_with("high", "  priorityClassName: high", "1"),
    );
    assert_eq!(node_of(&server, "high"), "node-0");
    let out = server.kubectl(["get", "pod", "low"]);
    assert!(!out.status.success(), "the victim still exists");
    let events = server.must_kubectl(["get", "events"]);
    assert!(events.contains("Preempted"), "{events}");
}

#[test]
fn killed_node_agent_stops_renewing_its_lease() {
    let server = TestServer::start();
    let mut agent = NodeAgent::start(&server, "lonely", &["--node-lease-renew-seconds=1"]);
    must_have_ready_nodes(&server, &["lonely"]);
    must_renew_lease(&server, "lonely");
    agent.kill();
    let read = || {
        server
            .must_kubectl([
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                "lonely",
                "-o",
                "jsonpath={.spec.renewTime}",
            ])
            .trim()
            .to_string()
    };
    let before = read();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(read(), before, "the lease was renewed after the agent died");
}

#[test]
fn drain_respects_a_pod_disruption_budget() {
    let server = TestServer::start_with_args(&["--nodes=2", "--runtime=simulated"]);
    must_have_ready_nodes(&server, &["node-0", "node-1"]);
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: guarded, labels: {app: g}}
spec:
  nodeSelector: {kubernetes.io/hostname: node-0}
  containers: [{name: c, image: nginx}]
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], pod);
    must_reach_phase(&server, "guarded", "Running");
    let pdb = r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: keep-one}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: g}}
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], pdb);
    // What the disruption controller computes for one healthy pod and minAvailable 1 (written
    // here too, so the test does not depend on that controller's timing).
    let status = |generation: i64, desired: i64, allowed: i64| {
        format!(
            r#"{{"status":{{"observedGeneration":{generation},"currentHealthy":1,"desiredHealthy":{desired},"expectedPods":1,"disruptionsAllowed":{allowed}}}}}"#
        )
    };
    server.must_kubectl([
        "patch",
        "pdb",
        "keep-one",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status(1, 1, 0),
    ]);
    let out = server.kubectl(["drain", "node-0", "--force", "--timeout=6s"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "drain succeeded despite the budget: {text}"
    );
    assert!(
        text.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{text}"
    );
    assert_eq!(
        pod_json(&server, "guarded")["metadata"]["deletionTimestamp"],
        serde_json::Value::Null
    );
    let table = Table::parse(&server.must_kubectl(["get", "nodes"]));
    assert_eq!(table.cell("node-0", "STATUS"), "Ready,SchedulingDisabled");
    // Once the budget allows a disruption, the drain evicts the pod.
    server.must_kubectl([
        "patch",
        "pdb",
        "keep-one",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":0}}"#,
    ]);
    server.must_kubectl([
        "patch",
        "pdb",
        "keep-one",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status(2, 0, 1),
    ]);
    let drained = server.must_kubectl(["drain", "node-0", "--force", "--timeout=30s"]);
    assert!(
        drained.contains("evicting pod default/guarded"),
        "{drained}"
    );
    assert!(drained.contains("node/node-0 drained"), "{drained}");
    let out = server.kubectl(["get", "pod", "guarded"]);
    assert!(!out.status.success(), "the evicted pod still exists");
    server.must_kubectl(["uncordon", "node-0"]);
}

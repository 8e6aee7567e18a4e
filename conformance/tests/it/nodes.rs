//! Simulated nodes (`ferrokube server --nodes=3 --runtime=simulated` and a separate
//! `ferrokube node-agent` process): registration, Ready condition and runtime column, node leases,
//! and pods run to the states the kubelet reports (Running with container statuses, Succeeded,
//! CrashLoopBackOff, init containers in order, graceful deletion).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrokube_conformance::{TestServer, ferrokube_bin};
use serde_json::Value;

use crate::util::{Table, json};

/// `server` flags for three embedded simulated nodes with fast lease renewal.
pub const THREE_NODES: &[&str] = &[
    "--nodes=3",
    "--runtime=simulated",
    "--node-lease-renew-seconds=2",
];

/// Polls `f` every 250 ms until it returns `Some`, panicking with `what` and the last value
/// seen after `timeout`.
pub fn must_wait_for<T>(
    server: &TestServer,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; last: {last}\nserver log:\n{}",
                server.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The pod as JSON.
pub fn pod_json(server: &TestServer, name: &str) -> Value {
    json(&server.must_kubectl(["get", "pod", name, "-o", "json"]))
}

/// Waits until every node named is Ready.
pub fn must_have_ready_nodes(server: &TestServer, names: &[&str]) {
    must_wait_for(server, "nodes Ready", Duration::from_secs(30), || {
        let out = server.kubectl(["get", "nodes", "-o", "json"]);
        let list = json(&String::from_utf8_lossy(&out.stdout));
        let ready: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            // Ready also for the scheduler: the node lifecycle controller has lifted the
            // `not-ready` taint a new node is registered with (TaintNodesByCondition).
            .filter(|n| {
                !n["spec"]["taints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["key"] == "node.kubernetes.io/not-ready")
            })
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        if names.iter().all(|n| ready.iter().any(|r| r == n)) {
            Ok(())
        } else {
            Err(format!("ready: {ready:?}"))
        }
    });
}

/// Waits for a pod phase.
pub fn must_reach_phase(server: &TestServer, name: &str, phase: &str) -> Value {
    must_wait_for(
        server,
        &format!("pod {name} {phase}"),
        Duration::from_secs(30),
        || {
            let p = pod_json(server, name);
            if p["status"]["phase"] == phase {
                Ok(p)
            } else {
                Err(p["status"].to_string())
            }
        },
    )
}

fn lease_renew_time(server: &TestServer, node: &str) -> String {
    server
        .must_kubectl([
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            node,
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
        .trim()
        .to_string()
}

/// Waits until the node's lease renewTime changes twice (so it is renewed periodically).
pub fn must_renew_lease(server: &TestServer, node: &str) {
    let first = must_wait_for(server, "node lease", Duration::from_secs(30), || {
        let out = server.kubectl([
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            node,
            "-o",
            "jsonpath={.spec.renewTime}",
        ]);
        let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !t.is_empty() {
            Ok(t)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    let second = must_wait_for(server, "lease renewal", Duration::from_secs(15), || {
        let t = lease_renew_time(server, node);
        if t != first { Ok(t) } else { Err(t) }
    });
    must_wait_for(
        server,
        "second lease renewal",
        Duration::from_secs(15),
        || {
            let t = lease_renew_time(server, node);
            if t != second { Ok(()) } else { Err(t) }
        },
    );
}

/// A `ferrokube node-agent` process with its own certificate and kubeconfig; killed on drop.
pub struct NodeAgent {
    child: Child,
    log: PathBuf,
}

impl NodeAgent {
    /// Issues `system:node:<name>` credentials with `ferrokube kubeconfig` and starts the agent.
    pub fn start(server: &TestServer, name: &str, extra: &[&str]) -> NodeAgent {
        let dir = server.data_dir();
        let out = Command::new(ferrokube_bin())
            .args(["kubeconfig", "--data-dir"])
            .arg(dir)
            .args(["--secure-port", &server.port().to_string()])
            .args(["--client-name", &format!("system:node:{name}")])
            .args(["--org", "system:nodes"])
            .output()
            .unwrap_or_else(|e| panic!("ferrokube kubeconfig: {e}"));
        assert!(
            out.status.success(),
            "ferrokube kubeconfig failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, &out.stdout)
            .unwrap_or_else(|e| panic!("writing {}: {e}", kubeconfig.display()));
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = file
            .try_clone()
            .unwrap_or_else(|e| panic!("cloning log: {e}"));
        let child = Command::new(ferrokube_bin())
            .arg("node-agent")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--node-name", name, "--runtime=simulated"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning node-agent: {e}"));
        NodeAgent { child, log }
    }

    /// The tail of the agent's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or("").to_string()
    }

    /// SIGKILLs the agent.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn three_nodes_register_ready_with_simulated_runtime_and_renewing_leases() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    let wide = Table::parse(&server.must_kubectl(["get", "nodes", "-o", "wide"]));
    assert_eq!(wide.names(), ["node-0", "node-1", "node-2"]);
    for n in ["node-0", "node-1", "node-2"] {
        assert_eq!(wide.cell(n, "STATUS"), "Ready");
        assert_eq!(wide.cell(n, "ROLES"), "<none>");
        assert_eq!(wide.cell(n, "VERSION"), "v1.35.0");
        assert!(
            wide.cell(n, "CONTAINER-RUNTIME")
                .starts_with("simulated://"),
            "{wide:?}"
        );
    }
    let node = json(&server.must_kubectl(["get", "node", "node-1", "-o", "json"]));
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "node-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].is_string());
    assert_eq!(
        labels["node.kubernetes.io/instance-type"],
        "ferrokube-simulated"
    );
    let status = &node["status"];
    assert_eq!(status["capacity"]["pods"], "110");
    assert_eq!(status["allocatable"]["cpu"], "4");
    let types: Vec<&str> = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    assert_eq!(status["addresses"][0]["type"], "InternalIP");
    assert_eq!(node["spec"]["podCIDR"], "10.64.1.0/24");
    // The lease is owned by the node and renewed.
    let lease = json(&server.must_kubectl([
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        "node-1",
        "-o",
        "json",
    ]));
    assert_eq!(lease["spec"]["holderIdentity"], "node-1");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    must_renew_lease(&server, "node-2");
}

#[test]
fn bare_pod_runs_with_kubelet_status() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl(["run", "web", "--image=nginx:1.27", "--port=80"]);
    let pod = must_reach_phase(&server, "web", "Running");
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    assert!(node.starts_with("node-"), "{pod}");
    let st = &pod["status"];
    let cs = &st["containerStatuses"][0];
    assert_eq!(cs["name"], "web");
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(cs["image"], "nginx:1.27");
    assert!(
        cs["imageID"]
            .as_str()
            .is_some_and(|s| s.starts_with("docker.io/library/nginx@sha256:")),
        "{cs}"
    );
    assert!(
        cs["containerID"]
            .as_str()
            .is_some_and(|s| s.starts_with("simulated://")),
        "{cs}"
    );
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    assert!(
        st["podIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.64.")),
        "{st}"
    );
    assert!(
        st["hostIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("172.18.")),
        "{st}"
    );
    assert!(st["startTime"].is_string());
    assert_eq!(st["qosClass"], "BestEffort");
    let conds: Vec<(String, String)> = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or("").to_string(),
                c["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert!(
            conds.iter().any(|(ty, s)| ty == t && s == "True"),
            "{t} not True in {conds:?}"
        );
    }
    let table = Table::parse(&server.must_kubectl(["get", "pod", "web", "-o", "wide"]));
    assert_eq!(table.cell("web", "READY"), "1/1");
    assert_eq!(table.cell("web", "STATUS"), "Running");
    assert_eq!(table.cell("web", "NODE"), node);
    // Deletion: the node stops the containers and deletes the object (grace period 0).
    server.must_kubectl(["delete", "pod", "web", "--timeout=30s"]);
    let out = server.kubectl(["get", "pod", "web"]);
    assert!(!out.status.success(), "pod still exists after delete");
}

#[test]
fn sleep_pod_with_restart_never_succeeds() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl([
        "run",
        "nap",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sleep",
        "1",
    ]);
    let pod = must_reach_phase(&server, "nap", "Succeeded");
    let term = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 0, "{pod}");
    assert_eq!(term["reason"], "Completed");
    let table = Table::parse(&server.must_kubectl(["get", "pod", "nap"]));
    assert_eq!(table.cell("nap", "STATUS"), "Completed");
    assert_eq!(table.cell("nap", "READY"), "0/1");
}

#[test]
fn failing_container_goes_into_crash_loop_backoff() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl([
        "run",
        "crash",
        "--image=busybox",
        "--restart=Always",
        "--annotations=ferrokube.io/simulate=fail",
    ]);
    // First crash restarts at once, the second waits 10 s in CrashLoopBackOff.
    let pod = must_wait_for(&server, "CrashLoopBackOff", Duration::from_secs(30), || {
        let p = pod_json(&server, "crash");
        let cs = &p["status"]["containerStatuses"][0];
        if cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
            Ok(p)
        } else {
            Err(cs.to_string())
        }
    });
    let cs = &pod["status"]["containerStatuses"][0];
    assert!(cs["restartCount"].as_i64().unwrap_or(0) >= 1, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
    let msg = cs["state"]["waiting"]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("back-off 10s restarting failed container=crash pod=crash_default("),
        "{msg}"
    );
    let table = Table::parse(&server.must_kubectl(["get", "pod", "crash"]));
    assert_eq!(table.cell("crash", "STATUS"), "CrashLoopBackOff");
    // The count keeps rising after the back-off.
    must_wait_for(&server, "restartCount 2", Duration::from_secs(30), || {
        let p = pod_json(&server, "crash");
        let n = p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0);
        if n >= 2 { Ok(()) } else { Err(n.to_string()) }
    });
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: staged}
spec:
  initContainers:
  - {name: first, image: busybox, command: [sleep, "1"]}
  - {name: second, image: busybox, command: [sh, -c, "sleep 3"]}
  containers:
  - {name: app, image: nginx, resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 100m, memory: 64Mi}}}
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], manifest);
    let early = must_wait_for(&server, "Init:1/2", Duration::from_secs(30), || {
        let t = Table::parse(&server.must_kubectl(["get", "pod", "staged"]));
        let s = t.cell("staged", "STATUS").to_string();
        if s == "Init:1/2" { Ok(s) } else { Err(s) }
    });
    assert_eq!(early, "Init:1/2");
    let pod = must_reach_phase(&server, "staged", "Running");
    let inits = pod["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(inits.len(), 2);
    let finished = |i: usize| {
        inits[i]["state"]["terminated"]["finishedAt"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let started = |i: usize| {
        inits[i]["state"]["terminated"]["startedAt"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(started(1) >= finished(0), "{inits:?}");
    assert_eq!(inits[1]["state"]["terminated"]["reason"], "Completed");
    // Init containers without limits make the pod Burstable (upstream GetPodQOS counts them).
    assert_eq!(pod["status"]["qosClass"], "Burstable");
}

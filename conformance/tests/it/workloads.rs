//! Workload and housekeeping controllers, black-box with stock kubectl: the `default`
//! ServiceAccount and `kube-root-ca.crt` in every namespace, ReplicaSets and
//! ReplicationControllers keeping their pods, Deployments rolling out (step by step within
//! maxSurge/maxUnavailable), `kubectl rollout status|history|undo|pause|resume|restart`,
//! Recreate, and the progress deadline.
//!
//! No node agent runs here: the tests play the kubelet by writing pod status through
//! `pods/status` (phase Running, condition Ready) with [`make_ready`].

use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::util::json;

/// How long a controller may take to react.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Polls `f` every 100 ms until it returns `Some`, panicking with `what` and the server log.
pub(crate) fn eventually<T>(
    server: &TestServer,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > WAIT {
            panic!(
                "timed out waiting for {what}\nserver log:\n{}",
                server.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    json(&server.must_kubectl(all))
}

pub(crate) fn items(server: &TestServer, args: &[&str]) -> Vec<Value> {
    get_json(server, args)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn name(v: &Value) -> String {
    v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Plays the kubelet: the pod is Running and Ready.
fn make_ready(server: &TestServer, ns: &str, pod: &str) {
    let patch = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"},{"type":"ContainersReady","status":"True"}]}}"#;
    server.must_kubectl([
        "patch",
        "pod",
        pod,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]);
}

/// Makes every not-yet-ready, not-deleted pod matching `selector` ready; returns how many.
fn make_all_ready(server: &TestServer, ns: &str, selector: &str) -> usize {
    let pods = items(server, &["get", "pods", "-n", ns, "-l", selector]);
    let mut n = 0;
    for p in pods
        .iter()
        .filter(|p| !is_ready(p) && p["metadata"]["deletionTimestamp"].is_null())
    {
        make_ready(server, ns, &name(p));
        n += 1;
    }
    n
}

fn controller_of(v: &Value) -> Option<Value> {
    v["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .cloned()
}

#[test]
fn new_namespace_gets_default_service_account_and_root_ca() {
    let server = TestServer::start();
    server.must_kubectl(["create", "namespace", "team-a"]);
    let sa = eventually(&server, "ServiceAccount default in team-a", || {
        let out = server.kubectl([
            "get",
            "serviceaccount",
            "default",
            "-n",
            "team-a",
            "-o",
            "json",
        ]);
        out.status
            .success()
            .then(|| json(&String::from_utf8_lossy(&out.stdout)))
    });
    // The default namespace has one too.
    eventually(&server, "ServiceAccount default in default", || {
        server
            .kubectl(["get", "sa", "default", "-n", "default"])
            .status
            .success()
            .then_some(())
    });
    // Deleted: created again (a new object).
    server.must_kubectl(["delete", "sa", "default", "-n", "team-a"]);
    eventually(&server, "the default ServiceAccount recreated", || {
        let out = server.kubectl(["get", "sa", "default", "-n", "team-a", "-o", "json"]);
        if !out.status.success() {
            return None;
        }
        let again = json(&String::from_utf8_lossy(&out.stdout));
        (again["metadata"]["uid"] != sa["metadata"]["uid"]).then_some(())
    });
    // kube-root-ca.crt holds the cluster CA that the admin kubeconfig trusts.
    let want = server.must_kubectl([
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    let decoded = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            if let Some(mut i) = c.stdin.take() {
                i.write_all(want.trim().as_bytes())?;
            }
            c.wait_with_output()
        })
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    assert!(decoded.contains("BEGIN CERTIFICATE"), "{decoded}");
    let cm = eventually(&server, "kube-root-ca.crt in team-a", || {
        let out = server.kubectl([
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "team-a",
            "-o",
            "json",
        ]);
        out.status
            .success()
            .then(|| json(&String::from_utf8_lossy(&out.stdout)))
    });
    assert_eq!(cm["data"]["ca.crt"].as_str(), Some(decoded.as_str()));
    // Edited: put back.
    server.must_kubectl([
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team-a",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"tampered"}}"#,
    ]);
    eventually(&server, "kube-root-ca.crt restored", || {
        let cm = get_json(
            &server,
            &["get", "configmap", "kube-root-ca.crt", "-n", "team-a"],
        );
        (cm["data"]["ca.crt"].as_str() == Some(decoded.as_str())).then_some(())
    });
}

const REPLICASET: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: frontend
spec:
  replicas: 3
  selector:
    matchLabels: {app: fe}
  template:
    metadata:
      labels: {app: fe, tier: web}
    spec:
      containers:
      - name: c
        image: nginx
"#;

fn rs_pods(server: &TestServer, selector: &str) -> Vec<Value> {
    items(server, &["get", "pods", "-l", selector])
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

#[test]
fn replicaset_creates_replaces_adopts_releases_and_scales_down_unready_first() {
    let server = TestServer::start();
    server.must_kubectl_stdin(["apply", "-f", "-"], REPLICASET);
    let rs = get_json(&server, &["get", "rs", "frontend"]);
    let pods = eventually(&server, "3 pods of frontend", || {
        let p = rs_pods(&server, "app=fe");
        (p.len() == 3).then_some(p)
    });
    for p in &pods {
        let owner = controller_of(p).unwrap_or_else(|| panic!("no controller ref: {p}"));
        assert_eq!(owner["kind"], "ReplicaSet");
        assert_eq!(owner["apiVersion"], "apps/v1");
        assert_eq!(owner["name"], "frontend");
        assert_eq!(owner["uid"], rs["metadata"]["uid"]);
        assert_eq!(owner["blockOwnerDeletion"], true);
        assert_eq!(p["metadata"]["generateName"], "frontend-");
        assert_eq!(p["metadata"]["labels"]["tier"], "web");
    }
    eventually(&server, "status.replicas 3 observedGeneration 1", || {
        let rs = get_json(&server, &["get", "rs", "frontend"]);
        (rs["status"]["replicas"] == 3
            && rs["status"]["fullyLabeledReplicas"] == 3
            && rs["status"]["observedGeneration"] == 1)
            .then_some(())
    });
    // No over-creation while the watch settles.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rs_pods(&server, "app=fe").len(), 3);

    // A deleted pod is replaced.
    let victim = name(&pods[0]);
    server.must_kubectl(["delete", "pod", &victim, "--wait=false"]);
    eventually(&server, "a replacement pod", || {
        let p = rs_pods(&server, "app=fe");
        (p.len() == 3 && p.iter().all(|x| name(x) != victim)).then_some(())
    });

    // Two ready pods, one not: scaling to 2 deletes the one that is not ready.
    let pods = rs_pods(&server, "app=fe");
    make_ready(&server, "default", &name(&pods[0]));
    make_ready(&server, "default", &name(&pods[1]));
    let not_ready = name(&pods[2]);
    eventually(&server, "readyReplicas 2", || {
        let rs = get_json(&server, &["get", "rs", "frontend"]);
        (rs["status"]["readyReplicas"] == 2 && rs["status"]["availableReplicas"] == 2).then_some(())
    });
    server.must_kubectl(["scale", "rs", "frontend", "--replicas=2"]);
    let left = eventually(&server, "2 pods after scale-down", || {
        let p = rs_pods(&server, "app=fe");
        (p.len() == 2).then_some(p)
    });
    assert!(
        left.iter().all(|p| name(p) != not_ready),
        "the unready pod should go first: {left:?}"
    );
    eventually(&server, "status after scale-down", || {
        let rs = get_json(&server, &["get", "rs", "frontend"]);
        (rs["status"]["replicas"] == 2 && rs["status"]["observedGeneration"] == 2).then_some(())
    });

    // An orphan with matching labels is adopted; the surplus pod is then deleted.
    server.must_kubectl(["run", "stray", "--image=nginx", "--labels=app=fe"]);
    eventually(&server, "2 owned pods after adopting the orphan", || {
        let p = rs_pods(&server, "app=fe");
        (p.len() == 2
            && p.iter()
                .all(|x| controller_of(x).is_some_and(|o| o["name"] == "frontend")))
        .then_some(())
    });

    // A pod whose labels stop matching is released and replaced.
    let pods = rs_pods(&server, "app=fe");
    let released = name(&pods[0]);
    server.must_kubectl(["label", "pod", &released, "app=elsewhere", "--overwrite"]);
    eventually(&server, "the relabelled pod released and replaced", || {
        let p = get_json(&server, &["get", "pod", &released]);
        let replaced = rs_pods(&server, "app=fe").len() == 2;
        (controller_of(&p).is_none() && replaced).then_some(())
    });

    // kubectl describe shows the controller's events.
    let describe = server.must_kubectl(["describe", "rs", "frontend"]);
    assert!(describe.contains("SuccessfulCreate"), "{describe}");
    assert!(describe.contains("Created pod: frontend-"), "{describe}");
    assert!(describe.contains("SuccessfulDelete"), "{describe}");
}

#[test]
fn replication_controller_keeps_its_pods() {
    let server = TestServer::start();
    let rc = r#"
apiVersion: v1
kind: ReplicationController
metadata:
  name: legacy
spec:
  replicas: 2
  selector: {app: legacy}
  template:
    metadata:
      labels: {app: legacy}
    spec:
      containers:
      - name: c
        image: nginx
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], rc);
    let pods = eventually(&server, "2 pods of the RC", || {
        let p = rs_pods(&server, "app=legacy");
        (p.len() == 2).then_some(p)
    });
    for p in &pods {
        let owner = controller_of(p).unwrap_or_default();
        assert_eq!(owner["kind"], "ReplicationController", "{p}");
        assert_eq!(owner["apiVersion"], "v1", "{p}");
    }
    make_all_ready(&server, "default", "app=legacy");
    eventually(&server, "RC status", || {
        let rc = get_json(&server, &["get", "rc", "legacy"]);
        (rc["status"]["replicas"] == 2
            && rc["status"]["readyReplicas"] == 2
            && rc["status"]["observedGeneration"] == 1)
            .then_some(())
    });
    let table = server.must_kubectl(["get", "rc", "legacy"]);
    assert!(
        crate::util::squash(&table).contains("legacy 2 2 2"),
        "{table}"
    );
}

/// The ReplicaSets of deployment `d` with their spec/status replicas, by name.
fn replicasets(server: &TestServer, d: &str) -> Vec<Value> {
    items(server, &["get", "rs", "-l", &format!("app={d}")])
}

fn spec_replicas(rs: &Value) -> i64 {
    rs["spec"]["replicas"].as_i64().unwrap_or(0)
}

fn image_of(rs: &Value) -> String {
    rs["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn rs_with_image(server: &TestServer, d: &str, image: &str) -> Option<Value> {
    replicasets(server, d)
        .into_iter()
        .find(|rs| image_of(rs) == image)
}

/// Plays the kubelet for deployment `d` until `kubectl rollout status` succeeds.
fn roll_to_completion(server: &TestServer, d: &str) {
    let start = Instant::now();
    loop {
        make_all_ready(server, "default", &format!("app={d}"));
        let out = server.kubectl([
            "rollout",
            "status",
            &format!("deployment/{d}"),
            "--watch=false",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text.contains("successfully rolled out") {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "rollout of {d} did not finish: {text}\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn deployment_rolls_out_and_kubectl_rollout_commands_work() {
    let server = TestServer::start();
    server.must_kubectl([
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=3",
    ]);
    let rs = eventually(&server, "the first ReplicaSet with 3 pods", || {
        let rss = replicasets(&server, "web");
        let pods = rs_pods(&server, "app=web");
        (rss.len() == 1 && pods.len() == 3).then(|| rss[0].clone())
    });
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!hash.is_empty(), "{rs}");
    assert_eq!(name(&rs), format!("web-{hash}"));
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
        "3"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"],
        "4"
    );
    let owner = controller_of(&rs).unwrap_or_default();
    assert_eq!(owner["kind"], "Deployment");
    for p in rs_pods(&server, "app=web") {
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash.as_str());
        assert_eq!(controller_of(&p).unwrap_or_default()["name"], name(&rs));
    }
    // Not ready yet: Available=False.
    eventually(&server, "Available=False before pods are ready", || {
        let d = get_json(&server, &["get", "deploy", "web"]);
        d["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "Available"
                        && c["status"] == "False"
                        && c["reason"] == "MinimumReplicasUnavailable"
                })
            })
            .then_some(())
    });
    roll_to_completion(&server, "web");
    server.must_kubectl(["rollout", "status", "deployment/web", "--timeout=30s"]);
    server.must_kubectl([
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=30s",
    ]);
    let d = get_json(&server, &["get", "deploy", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let progressing = d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned())
        .unwrap_or_default();
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable", "{d}");
    assert_eq!(
        progressing["message"],
        format!("ReplicaSet \"web-{hash}\" has successfully progressed.")
    );
    for (field, want) in [
        ("replicas", 3),
        ("updatedReplicas", 3),
        ("readyReplicas", 3),
        ("availableReplicas", 3),
    ] {
        assert_eq!(d["status"][field], want, "{field}: {d}");
    }

    // set image: the new ReplicaSet surges by one (25% of 3 rounded up), no pod is taken
    // away before a new one is available (25% rounded down = 0 unavailable).
    server.must_kubectl(["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    let new = eventually(&server, "the new ReplicaSet at 1 replica", || {
        rs_with_image(&server, "web", "nginx:1.27").filter(|rs| spec_replicas(rs) == 1)
    });
    std::thread::sleep(Duration::from_millis(500));
    let old = rs_with_image(&server, "web", "nginx:1.25").unwrap_or_default();
    assert_eq!(
        spec_replicas(&old),
        3,
        "old RS must keep 3 until new pods are available"
    );
    assert_eq!(
        spec_replicas(&rs_with_image(&server, "web", "nginx:1.27").unwrap_or_default()),
        1
    );
    assert_eq!(
        new["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    // One new pod becomes ready: old goes to 2, new to 2.
    make_all_ready(&server, "default", "app=web");
    eventually(&server, "old 2 / new 2", || {
        let o = rs_with_image(&server, "web", "nginx:1.25")?;
        let n = rs_with_image(&server, "web", "nginx:1.27")?;
        (spec_replicas(&o) == 2 && spec_replicas(&n) == 2).then_some(())
    });
    roll_to_completion(&server, "web");
    let old = rs_with_image(&server, "web", "nginx:1.25").unwrap_or_default();
    assert_eq!(spec_replicas(&old), 0);
    let history = server.must_kubectl(["rollout", "history", "deployment/web"]);
    let revs: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["1", "2"], "{history}");

    // undo: back to 1.25, whose ReplicaSet becomes revision 3.
    server.must_kubectl(["rollout", "undo", "deployment/web"]);
    eventually(&server, "the old ReplicaSet is revision 3", || {
        let o = rs_with_image(&server, "web", "nginx:1.25")?;
        (o["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3").then_some(())
    });
    roll_to_completion(&server, "web");
    let history = server.must_kubectl(["rollout", "history", "deployment/web"]);
    let revs: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["2", "3"], "{history}");
    assert_eq!(
        replicasets(&server, "web").len(),
        2,
        "no third ReplicaSet for an undo"
    );

    // pause: template changes do not roll out until resume.
    server.must_kubectl(["rollout", "pause", "deployment/web"]);
    server.must_kubectl(["set", "image", "deployment/web", "nginx=nginx:1.28"]);
    eventually(&server, "Progressing=Unknown DeploymentPaused", || {
        let d = get_json(&server, &["get", "deploy", "web"]);
        d["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "Progressing"
                        && c["reason"] == "DeploymentPaused"
                        && c["status"] == "Unknown"
                })
            })
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rs_with_image(&server, "web", "nginx:1.28").is_none(),
        "a paused deployment must not roll out"
    );
    server.must_kubectl(["rollout", "resume", "deployment/web"]);
    eventually(&server, "a ReplicaSet for 1.28 after resume", || {
        rs_with_image(&server, "web", "nginx:1.28")
    });
    roll_to_completion(&server, "web");

    // scale.
    server.must_kubectl(["scale", "deployment/web", "--replicas=5"]);
    eventually(&server, "5 replicas", || {
        let n = rs_with_image(&server, "web", "nginx:1.28")?;
        (spec_replicas(&n) == 5).then_some(())
    });
    roll_to_completion(&server, "web");

    // restart: a new ReplicaSet with the restartedAt annotation on its template.
    let before = replicasets(&server, "web").len();
    server.must_kubectl(["rollout", "restart", "deployment/web"]);
    eventually(&server, "a ReplicaSet for the restart", || {
        (replicasets(&server, "web").len() == before + 1).then_some(())
    });
    roll_to_completion(&server, "web");

    let describe = server.must_kubectl(["describe", "deployment", "web"]);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");
    assert!(
        describe.contains("Scaled up replica set web-"),
        "{describe}"
    );
    assert!(describe.contains("NewReplicaSetAvailable"), "{describe}");
    let events = server.must_kubectl(["get", "events"]);
    assert!(events.contains("ScalingReplicaSet"), "{events}");
}

#[test]
fn recreate_scales_old_to_zero_before_new_and_history_is_limited() {
    let server = TestServer::start();
    let manifest = |image: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: db
spec:
  replicas: 2
  revisionHistoryLimit: 1
  strategy: {{type: Recreate}}
  selector:
    matchLabels: {{app: db}}
  template:
    metadata:
      labels: {{app: db}}
    spec:
      containers:
      - name: db
        image: {image}
"#
        )
    };
    server.must_kubectl_stdin(["apply", "-f", "-"], &manifest("postgres:15"));
    roll_to_completion(&server, "db");
    // Old pods linger while terminating (a finalizer plays the kubelet's grace period).
    let old_pods: Vec<String> = rs_pods(&server, "app=db").iter().map(name).collect();
    for p in &old_pods {
        server.must_kubectl([
            "patch",
            "pod",
            p,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
        ]);
    }
    server.must_kubectl_stdin(["apply", "-f", "-"], &manifest("postgres:16"));
    eventually(&server, "old scaled to 0", || {
        let o = rs_with_image(&server, "db", "postgres:15")?;
        (spec_replicas(&o) == 0).then_some(())
    });
    eventually(&server, "old pods terminating", || {
        old_pods
            .iter()
            .all(|p| {
                !get_json(&server, &["get", "pod", p])["metadata"]["deletionTimestamp"].is_null()
            })
            .then_some(())
    });
    // No new pod while an old one is still running.
    std::thread::sleep(Duration::from_secs(1));
    if let Some(n) = rs_with_image(&server, "db", "postgres:16") {
        assert_eq!(spec_replicas(&n), 0, "new pods while old pods still run");
    }
    for p in &old_pods {
        server.must_kubectl([
            "patch",
            "pod",
            p,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
    eventually(
        &server,
        "the new ReplicaSet scaled up once old pods are gone",
        || {
            let n = rs_with_image(&server, "db", "postgres:16")?;
            (spec_replicas(&n) == 2).then_some(())
        },
    );
    roll_to_completion(&server, "db");
    server.must_kubectl_stdin(["apply", "-f", "-"], &manifest("postgres:17"));
    roll_to_completion(&server, "db");
    // revisionHistoryLimit 1: only one old ReplicaSet is kept.
    eventually(&server, "history limited to one old ReplicaSet", || {
        let rss = replicasets(&server, "db");
        (rss.len() == 2 && rs_with_image(&server, "db", "postgres:15").is_none()).then_some(())
    });
}

#[test]
fn progress_deadline_exceeded_is_reported() {
    let server = TestServer::start();
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
spec:
  replicas: 1
  progressDeadlineSeconds: 2
  selector:
    matchLabels: {app: stuck}
  template:
    metadata:
      labels: {app: stuck}
    spec:
      containers:
      - name: c
        image: nginx
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], manifest);
    // Nobody makes the pod ready.
    let d = eventually(
        &server,
        "Progressing=False ProgressDeadlineExceeded",
        || {
            let d = get_json(&server, &["get", "deploy", "stuck"]);
            d["status"]["conditions"].as_array().and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "Progressing" && c["status"] == "False")
                    .cloned()
            })
        },
    );
    assert_eq!(d["reason"], "ProgressDeadlineExceeded");
    assert!(
        d["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("has timed out progressing."),
        "{d}"
    );
    let err = server.must_kubectl_fail(["rollout", "status", "deployment/stuck", "--timeout=10s"]);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
}

#[test]
fn pod_disruption_budget_status_follows_ready_pods() {
    let server = TestServer::start();
    server.must_kubectl([
        "create",
        "deployment",
        "api",
        "--image=nginx",
        "--replicas=3",
    ]);
    roll_to_completion(&server, "api");
    server.must_kubectl([
        "create",
        "pdb",
        "api-min",
        "--selector=app=api",
        "--min-available=2",
    ]);
    server.must_kubectl([
        "create",
        "pdb",
        "api-max",
        "--selector=app=api",
        "--max-unavailable=1",
    ]);
    for pdb in ["api-min", "api-max"] {
        let st = eventually(&server, &format!("{pdb} status"), || {
            let p = get_json(&server, &["get", "pdb", pdb]);
            (p["status"]["observedGeneration"] == 1).then(|| p["status"].clone())
        });
        assert_eq!(st["expectedPods"], 3, "{pdb}: {st}");
        assert_eq!(st["currentHealthy"], 3, "{pdb}: {st}");
        assert_eq!(st["desiredHealthy"], 2, "{pdb}: {st}");
        assert_eq!(st["disruptionsAllowed"], 1, "{pdb}: {st}");
        let cond = &st["conditions"][0];
        assert_eq!(cond["type"], "DisruptionAllowed");
        assert_eq!(cond["status"], "True");
        assert_eq!(cond["reason"], "SufficientPods");
    }
    // One pod stops being ready: no disruption allowed any more.
    let pod = name(&rs_pods(&server, "app=api")[0]);
    let patch = r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#;
    server.must_kubectl([
        "patch",
        "pod",
        &pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]);
    eventually(&server, "disruptionsAllowed 0", || {
        let p = get_json(&server, &["get", "pdb", "api-min"]);
        (p["status"]["disruptionsAllowed"] == 0
            && p["status"]["currentHealthy"] == 2
            && p["status"]["conditions"][0]["reason"] == "InsufficientPods")
            .then_some(())
    });
    let table = server.must_kubectl(["get", "pdb", "api-min"]);
    assert!(
        crate::util::squash(&table).contains("api-min 2 N/A 0"),
        "{table}"
    );
}

/// A `ferrokube controllers` process with its own log file.
struct ControllerProcess {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl ControllerProcess {
    fn start(server: &TestServer, tag: &str) -> Self {
        let log = server.data_dir().join(format!("controllers-{tag}.log"));
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = file.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = std::process::Command::new(ferrokube_conformance::ferrokube_bin())
            .arg("controllers")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args([
                "--leader-elect-resource-name=kcm-test",
                "--leader-elect-lease-duration=4s",
                "--leader-elect-renew-deadline=3s",
                "--leader-elect-retry-period=500ms",
            ])
            .env("RUST_LOG", "ferrokube_controllers=info")
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning ferrokube controllers: {e}"));
        Self { child, log }
    }

    fn is_leader(&self) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains("became leader")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_controller_managers_elect_one_leader_and_hand_over() {
    let server = TestServer::start();
    let mut procs = [
        Some(ControllerProcess::start(&server, "a")),
        Some(ControllerProcess::start(&server, "b")),
    ];
    let leader_of = |procs: &[Option<ControllerProcess>; 2]| -> Vec<usize> {
        (0..2)
            .filter(|&i| procs[i].as_ref().is_some_and(ControllerProcess::is_leader))
            .collect()
    };
    let lease = eventually(&server, "a holder of kube-system/kcm-test", || {
        let out = server.kubectl([
            "get",
            "lease",
            "kcm-test",
            "-n",
            "kube-system",
            "-o",
            "json",
        ]);
        if !out.status.success() {
            return None;
        }
        let l = json(&String::from_utf8_lossy(&out.stdout));
        let held = l["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| !h.is_empty());
        (held && !leader_of(&procs).is_empty()).then_some(l)
    });
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 4);
    // Exactly one acts as leader while both run.
    std::thread::sleep(Duration::from_secs(2));
    let leaders = leader_of(&procs);
    assert_eq!(leaders.len(), 1, "exactly one leader expected");
    let (dead, survivor) = (leaders[0], 1 - leaders[0]);
    // Kill the leader (SIGKILL: no chance to release the lease).
    procs[dead] = None;
    let killed_at = Instant::now();
    let holder_before = lease["spec"]["holderIdentity"].clone();
    eventually(&server, "lease handed over to the survivor", || {
        let l = get_json(&server, &["get", "lease", "kcm-test", "-n", "kube-system"]);
        let moved = l["spec"]["holderIdentity"] != holder_before;
        (moved
            && procs[survivor]
                .as_ref()
                .is_some_and(ControllerProcess::is_leader))
        .then_some(())
    });
    assert!(
        killed_at.elapsed() < Duration::from_secs(4 + 3),
        "handover took {:?}, lease duration is 4s",
        killed_at.elapsed()
    );
    let l = get_json(&server, &["get", "lease", "kcm-test", "-n", "kube-system"]);
    assert_eq!(l["spec"]["leaseTransitions"], 1, "{l}");
}

#[test]
fn service_gets_endpoint_slices_with_resolved_ports_and_conditions() {
    let server = TestServer::start();
    let pod = |name: &str, port: i32| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: shop}}
spec:
  containers:
  - name: c
    image: nginx
    ports:
    - name: http
      containerPort: {port}
"#
        )
    };
    let svc = r#"
apiVersion: v1
kind: Service
metadata:
  name: shop
  labels: {team: retail}
spec:
  selector: {app: shop}
  ports:
  - name: web
    port: 80
    targetPort: http
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], svc);
    // With no pods: one placeholder slice.
    eventually(&server, "a placeholder slice", || {
        let s = items(
            &server,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=shop",
            ],
        );
        (s.len() == 1 && s[0]["endpoints"].as_array().is_none_or(Vec::is_empty)).then_some(())
    });
    for (n, port) in [
        ("shop-a", 8080),
        ("shop-b", 8080),
        ("shop-c", 8080),
        ("shop-d", 9090),
    ] {
        server.must_kubectl_stdin(["apply", "-f", "-"], &pod(n, port));
    }
    for (i, n) in ["shop-a", "shop-b", "shop-c", "shop-d"].iter().enumerate() {
        let ready = if *n == "shop-c" { "False" } else { "True" };
        let patch = format!(
            r#"{{"status":{{"phase":"Running","podIP":"10.244.0.{ip}","podIPs":[{{"ip":"10.244.0.{ip}"}}],"conditions":[{{"type":"Ready","status":"{ready}"}}]}}}}"#,
            ip = i + 10
        );
        server.must_kubectl([
            "patch",
            "pod",
            n,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    }
    let slices = eventually(&server, "two slices (8080 and 9090)", || {
        let s = items(
            &server,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=shop",
            ],
        );
        let total: usize = s
            .iter()
            .map(|x| x["endpoints"].as_array().map_or(0, Vec::len))
            .sum();
        (s.len() == 2 && total == 4).then_some(s)
    });
    for s in &slices {
        assert_eq!(s["addressType"], "IPv4");
        assert_eq!(
            s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(s["metadata"]["labels"]["team"], "retail");
        assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(s["ports"][0]["name"], "web");
        let port = s["ports"][0]["port"].as_i64().unwrap_or(0);
        for e in s["endpoints"].as_array().cloned().unwrap_or_default() {
            let pod = e["targetRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert_eq!(port, if pod == "shop-d" { 9090 } else { 8080 }, "{s}");
            let ready = pod != "shop-c";
            assert_eq!(e["conditions"]["ready"], ready, "{e}");
            assert_eq!(e["conditions"]["serving"], ready, "{e}");
            assert_eq!(e["conditions"]["terminating"], false, "{e}");
        }
    }
    // The legacy Endpoints object: ready and not-ready addresses.
    let ep = eventually(&server, "Endpoints shop", || {
        let out = server.kubectl(["get", "endpoints", "shop", "-o", "json"]);
        out.status
            .success()
            .then(|| json(&String::from_utf8_lossy(&out.stdout)))
    });
    let text = ep["subsets"].to_string();
    assert!(
        text.contains("10.244.0.10") && text.contains("10.244.0.13"),
        "{text}"
    );
    assert!(
        ep["subsets"].as_array().is_some_and(|s| s
            .iter()
            .any(|x| x["notReadyAddresses"].to_string().contains("10.244.0.12"))),
        "{ep}"
    );
    // A pod being deleted is terminating in the slice; gone afterwards.
    server.must_kubectl([
        "patch",
        "pod",
        "shop-a",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    server.must_kubectl(["delete", "pod", "shop-a", "--wait=false"]);
    eventually(&server, "shop-a terminating in its slice", || {
        let s = items(
            &server,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=shop",
            ],
        );
        s.iter()
            .flat_map(|x| x["endpoints"].as_array().cloned().unwrap_or_default())
            .any(|e| {
                e["targetRef"]["name"] == "shop-a"
                    && e["conditions"]["terminating"] == true
                    && e["conditions"]["ready"] == false
            })
            .then_some(())
    });
    server.must_kubectl([
        "patch",
        "pod",
        "shop-a",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually(&server, "shop-a removed from slices", || {
        let s = items(
            &server,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=shop",
            ],
        );
        (!s.iter()
            .any(|x| x["endpoints"].to_string().contains("shop-a")))
        .then_some(())
    });
}

#[test]
fn node_whose_lease_stops_is_tainted_and_its_pods_evicted() {
    let server = TestServer::start();
    // A controller-manager with a short grace period (the in-process one keeps 40 s).
    let log = server.data_dir().join("controllers-nodes.log");
    let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let err = file.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let child = std::process::Command::new(ferrokube_conformance::ferrokube_bin())
        .arg("controllers")
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args([
            "--leader-elect-resource-name=kcm-nodes",
            "--node-monitor-grace-period=3s",
            "--node-monitor-period=1s",
        ])
        .stdout(file)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning ferrokube controllers: {e}"));
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let node = r#"
apiVersion: v1
kind: Node
metadata:
  name: n1
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], node);
    let ready = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}]}}"#;
    server.must_kubectl([
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        ready,
    ]);
    let lease = r#"
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: n1
  namespace: kube-node-lease
spec:
  holderIdentity: n1
  leaseDurationSeconds: 40
"#;
    server.must_kubectl_stdin(["apply", "-f", "-"], lease);
    let pod = |name: &str, toleration: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: n1
  tolerations:
  - key: node.kubernetes.io/unreachable
    operator: Exists
    effect: NoExecute
{toleration}
  containers:
  - name: c
    image: nginx
"#
        )
    };
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &pod("short", "    tolerationSeconds: 2"),
    );
    server.must_kubectl_stdin(["apply", "-f", "-"], &pod("forever", ""));
    // Nobody renews the lease: Ready=Unknown, then the unreachable taints.
    let node = eventually(&server, "n1 Ready=Unknown and tainted", || {
        let n = get_json(&server, &["get", "node", "n1"]);
        let unknown = n["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "Unknown")
        });
        let taints = n["spec"]["taints"].to_string();
        (unknown && taints.contains("NoExecute") && taints.contains("NoSchedule")).then_some(n)
    });
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or_default();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert!(
        node["spec"]["taints"]
            .to_string()
            .contains("node.kubernetes.io/unreachable"),
        "{node}"
    );
    // The pod tolerating the taint for 2 s is evicted; the one tolerating it forever stays.
    eventually(&server, "pod short evicted", || {
        let out = server.kubectl(["get", "pod", "short", "-o", "json"]);
        if !out.status.success() {
            return Some(());
        }
        let p = json(&String::from_utf8_lossy(&out.stdout));
        (!p["metadata"]["deletionTimestamp"].is_null()).then_some(())
    });
    let forever = get_json(&server, &["get", "pod", "forever"]);
    assert!(
        forever["metadata"]["deletionTimestamp"].is_null(),
        "{forever}"
    );
    // The kubelet is back: it renews its lease and reports Ready; the taints go.
    let now = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.000000Z"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let renew = format!(r#"{{"spec":{{"renewTime":"{now}"}}}}"#);
    server.must_kubectl([
        "patch",
        "lease",
        "n1",
        "-n",
        "kube-node-lease",
        "--type=merge",
        "-p",
        &renew,
    ]);
    let ready_again = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}]}}"#;
    server.must_kubectl([
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        ready_again,
    ]);
    eventually(&server, "taints removed", || {
        let n = get_json(&server, &["get", "node", "n1"]);
        (!n["spec"]["taints"].to_string().contains("unreachable")).then_some(())
    });
}

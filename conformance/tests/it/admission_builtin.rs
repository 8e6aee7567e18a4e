//! The built-in admission plugins (issue 8), driven by stock kubectl: PodSecurity enforce and
//! warn messages, LimitRanger defaults, the ServiceAccount plugin's default account and
//! projected token volume, DefaultTolerationSeconds, Priority from PriorityClasses,
//! ResourceQuota refusing the (n+1)th pod with `kubectl describe quota` showing used/hard,
//! NodeRestriction refusing a node identity that edits another node, and the
//! `--enable/--disable-admission-plugins` flags.

use std::process::Command;

use ferrokube_conformance::{ServerSpec, TestServer, ferrokube_bin};
use serde_json::Value;

use crate::workloads::{eventually, get_json};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs kubectl with `stdin`, panics unless it fails; returns stderr.
fn fail_stdin<const N: usize>(server: &TestServer, args: [&str; N], stdin: &str) -> String {
    let out = server.kubectl_stdin(args, stdin);
    assert!(
        !out.status.success(),
        "kubectl {args:?} succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr(&out)
}

/// A namespace with labels, created as the admin.
fn namespace(server: &TestServer, name: &str, labels: &[(&str, &str)]) {
    let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n");
    if !labels.is_empty() {
        yaml.push_str("  labels:\n");
        for (k, v) in labels {
            yaml.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    server.must_kubectl_stdin(["apply", "-f", "-"], &yaml);
}

fn pod_yaml(name: &str, extra_container: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra_spec}  containers:\n  - name: app\n    image: nginx\n{extra_container}"
    )
}

const RESTRICTED_DETAIL: &str = "allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")";

#[test]
fn pod_security_enforces_and_warns_with_upstreams_messages() {
    let server = TestServer::start();
    namespace(
        &server,
        "locked",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    );
    let privileged = pod_yaml("priv", "    securityContext:\n      privileged: true\n", "");
    let out = server.kubectl_stdin(["apply", "-n", "locked", "-f", "-"], &privileged);
    assert!(!out.status.success(), "privileged pod admitted");
    let err = stderr(&out);
    let want = format!(
        "pods \"priv\" is forbidden: violates PodSecurity \"restricted:latest\": privileged (container \"app\" must not set securityContext.privileged=true), {RESTRICTED_DETAIL}"
    );
    assert!(err.contains(&want), "stderr:\n{err}\nwant:\n{want}");
    assert!(
        server
            .kubectl(["get", "pod", "priv", "-n", "locked"])
            .status
            .code()
            != Some(0),
        "nothing stored"
    );

    // A compliant pod is admitted in the enforced namespace.
    let ok = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ok\nspec:\n  securityContext:\n    runAsNonRoot: true\n    seccompProfile:\n      type: RuntimeDefault\n  containers:\n  - name: app\n    image: nginx\n    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities:\n        drop: [\"ALL\"]\n";
    server.must_kubectl_stdin(["apply", "-n", "locked", "-f", "-"], ok);

    // warn mode: admitted, with the warning kubectl prints.
    namespace(
        &server,
        "warned",
        &[
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("pod-security.kubernetes.io/warn-version", "v1.35"),
        ],
    );
    let out = server.kubectl_stdin(
        ["apply", "-n", "warned", "-f", "-"],
        &pod_yaml("plain", "", ""),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let want =
        format!("Warning: would violate PodSecurity \"restricted:v1.35\": {RESTRICTED_DETAIL}");
    assert!(err.contains(&want), "stderr:\n{err}\nwant:\n{want}");

    // Workloads in an enforced namespace are admitted with a warning about their pods.
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      hostNetwork: true\n      containers:\n      - name: app\n        image: nginx\n";
    let out = server.kubectl_stdin(["apply", "-n", "locked", "-f", "-"], deploy);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "Warning: would violate PodSecurity \"restricted:latest\": host namespaces (hostNetwork=true), allowPrivilegeEscalation != false"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pod_defaults_from_limit_range_service_account_priority_and_tolerations() {
    let server = TestServer::start();
    namespace(&server, "team", &[]);
    server.must_kubectl_stdin(
        ["apply", "-n", "team", "-f", "-"],
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: defaults\nspec:\n  limits:\n  - type: Container\n    default:\n      cpu: 500m\n      memory: 256Mi\n    defaultRequest:\n      cpu: 100m\n      memory: 128Mi\n    max:\n      cpu: \"1\"\n",
    );
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\npreemptionPolicy: Never\n",
    );
    let classes = server.must_kubectl(["get", "priorityclasses", "-o", "name"]);
    for c in ["system-node-critical", "system-cluster-critical", "high"] {
        assert!(classes.contains(c), "{classes}");
    }
    let spec = "  priorityClassName: high\n";
    server.must_kubectl_stdin(
        ["apply", "-n", "team", "-f", "-"],
        &pod_yaml("web", "", spec),
    );
    let pod = get_json(&server, &["get", "pod", "web", "-n", "team"]);
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["resources"]["requests"]["cpu"], "100m", "{pod}");
    assert_eq!(c["resources"]["requests"]["memory"], "128Mi");
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );
    // ServiceAccount: the default account and the projected token volume, as upstream 1.35.
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let vols = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(vols.len(), 1, "{vols:?}");
    let vol_name = vols[0]["name"].as_str().unwrap_or_default().to_string();
    assert!(
        vol_name.starts_with("kube-api-access-") && vol_name.len() == "kube-api-access-".len() + 5,
        "{vol_name}"
    );
    let sources = &vols[0]["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
    assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(sources[1]["configMap"]["items"][0]["key"], "ca.crt");
    assert_eq!(
        sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(vols[0]["projected"]["defaultMode"], 420);
    assert_eq!(
        c["volumeMounts"][0],
        serde_json::json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "name": vol_name, "readOnly": true})
    );
    // Priority from the class.
    assert_eq!(pod["spec"]["priority"], 1000);
    assert_eq!(pod["spec"]["preemptionPolicy"], "Never");
    // DefaultTolerationSeconds.
    let tolerations: Vec<(String, i64)> = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            assert_eq!(t["effect"], "NoExecute");
            assert_eq!(t["operator"], "Exists");
            (
                t["key"].as_str().unwrap_or_default().to_string(),
                t["tolerationSeconds"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        tolerations,
        vec![
            ("node.kubernetes.io/not-ready".to_string(), 300),
            ("node.kubernetes.io/unreachable".to_string(), 300)
        ]
    );

    // Refusals: a missing class, a missing service account, a limit above the range's max.
    let err = fail_stdin(
        &server,
        ["apply", "-n", "team", "-f", "-"],
        &pod_yaml("nope", "", "  priorityClassName: missing\n"),
    );
    assert!(
        err.contains("pods \"nope\" is forbidden: no PriorityClass with name missing was found"),
        "{err}"
    );
    let err = fail_stdin(
        &server,
        ["apply", "-n", "team", "-f", "-"],
        &pod_yaml("nosa", "", "  serviceAccountName: ghost\n"),
    );
    assert!(
        err.contains("pods \"nosa\" is forbidden: error looking up service account team/ghost: serviceaccount \"ghost\" not found"),
        "{err}"
    );
    let err = fail_stdin(
        &server,
        ["apply", "-n", "team", "-f", "-"],
        &pod_yaml(
            "big",
            "    resources:\n      limits:\n        cpu: \"2\"\n",
            "",
        ),
    );
    assert!(
        err.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{err}"
    );
}

#[test]
fn resource_quota_refuses_the_pod_beyond_hard_and_describe_shows_usage() {
    let server = TestServer::start();
    namespace(&server, "q", &[]);
    server.must_kubectl_stdin(
        ["apply", "-n", "q", "-f", "-"],
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: pods-quota\nspec:\n  hard:\n    pods: \"2\"\n    requests.cpu: \"1\"\n",
    );
    // The quota controller fills in status.hard and status.used.
    eventually(&server, "quota status", || {
        let q = get_json(&server, &["get", "resourcequota", "pods-quota", "-n", "q"]);
        (q["status"]["hard"]["pods"] == "2" && q["status"]["used"]["pods"] == "0").then_some(())
    });
    let with_cpu = "    resources:\n      requests:\n        cpu: 100m\n";
    for p in ["p1", "p2"] {
        server.must_kubectl_stdin(["apply", "-n", "q", "-f", "-"], &pod_yaml(p, with_cpu, ""));
    }
    let err = fail_stdin(
        &server,
        ["apply", "-n", "q", "-f", "-"],
        &pod_yaml("p3", with_cpu, ""),
    );
    assert!(
        err.contains("pods \"p3\" is forbidden: exceeded quota: pods-quota, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    // A pod that does not state what the quota limits is refused.
    let err = fail_stdin(
        &server,
        ["apply", "-n", "q", "-f", "-"],
        &pod_yaml("bare", "", ""),
    );
    assert!(
        err.contains("pods \"bare\" is forbidden: failed quota: pods-quota: must specify requests.cpu for: app"),
        "{err}"
    );
    let describe = server.must_kubectl(["describe", "quota", "pods-quota", "-n", "q"]);
    let rows: Vec<Vec<&str>> = describe
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec!["Resource", "Used", "Hard"]),
        "{describe}"
    );
    assert!(rows.contains(&vec!["pods", "2", "2"]), "{describe}");
    assert!(
        rows.contains(&vec!["requests.cpu", "200m", "1"]),
        "{describe}"
    );
    // Deleting a pod gives its usage back (the controller recomputes), and a pod fits again.
    server.must_kubectl(["delete", "pod", "p1", "-n", "q", "--wait=false"]);
    eventually(&server, "usage given back", || {
        let q = get_json(&server, &["get", "resourcequota", "pods-quota", "-n", "q"]);
        (q["status"]["used"]["pods"] == "1").then_some(())
    });
    server.must_kubectl_stdin(
        ["apply", "-n", "q", "-f", "-"],
        &pod_yaml("p3", with_cpu, ""),
    );
}

/// A kubeconfig for `system:node:<name>` in `system:nodes`.
fn node_kubeconfig(server: &TestServer, name: &str) -> String {
    let dir = server.data_dir();
    let out = Command::new(ferrokube_bin())
        .args(["kubeconfig", "--data-dir"])
        .arg(dir)
        .args(["--secure-port", &server.port().to_string()])
        .args(["--client-name", &format!("system:node:{name}")])
        .args(["--org", "system:nodes"])
        .output()
        .unwrap_or_else(|e| panic!("ferrokube kubeconfig: {e}"));
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, &out.stdout).unwrap_or_else(|e| panic!("writing kubeconfig: {e}"));
    format!("--kubeconfig={}", path.display())
}

#[test]
fn node_restriction_keeps_a_node_to_its_own_objects() {
    let server = TestServer::start();
    // TaintNodesByCondition: a new node starts not-ready for scheduling (seen in the create
    // response: the node lifecycle controller removes the taint as soon as it looks).
    for n in ["n1", "n2"] {
        let created = crate::util::json(&server.must_kubectl_stdin(
            ["create", "-o", "json", "-f", "-"],
            &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\n"),
        ));
        assert_eq!(
            created["spec"]["taints"][0],
            serde_json::json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}),
            "{created}"
        );
    }
    let as_n1 = node_kubeconfig(&server, "n1");
    let err = server.must_kubectl_fail([as_n1.as_str(), "label", "node", "n2", "owner=n1"]);
    assert!(
        err.contains("nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""),
        "{err}"
    );
    let err = server.must_kubectl_fail([
        as_n1.as_str(),
        "label",
        "node",
        "n1",
        "node-role.kubernetes.io/control-plane=",
    ]);
    assert!(
        err.contains("nodes \"n1\" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/control-plane"),
        "{err}"
    );
    server.must_kubectl([as_n1.as_str(), "label", "node", "n1", "example.com/rack=r1"]);
    let labels = get_json(&server, &["get", "node", "n1"])["metadata"]["labels"].clone();
    assert_eq!(labels["example.com/rack"], "r1");
    assert_eq!(
        get_json(&server, &["get", "node", "n2"])["metadata"]["labels"]["owner"],
        Value::Null
    );
    // A node may only create mirror pods bound to itself.
    let err = fail_stdin(
        &server,
        [as_n1.as_str(), "apply", "-n", "default", "-f", "-"],
        &pod_yaml("sneaky", "", "  nodeName: n1\n"),
    );
    assert!(
        err.contains("pods \"sneaky\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods"),
        "{err}"
    );
}

#[test]
fn admission_plugin_flags_select_the_chain() {
    // Unknown plugin: the server refuses to start with upstream's message.
    let e = TestServer::try_start_with(ServerSpec {
        extra_args: vec!["--enable-admission-plugins=NoSuchPlugin".into()],
        ..ServerSpec::default()
    })
    .expect_err("unknown plugin accepted");
    assert!(
        e.to_string()
            .contains("enable-admission-plugins plugin \\\"NoSuchPlugin\\\" is unknown")
            || e.to_string()
                .contains("enable-admission-plugins plugin \"NoSuchPlugin\" is unknown"),
        "{e}"
    );
    // PodSecurity disabled: an enforced namespace admits a privileged pod.
    let server =
        TestServer::start_with_args(&["--disable-admission-plugins=PodSecurity,LimitRanger"]);
    namespace(
        &server,
        "locked",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    );
    server.must_kubectl_stdin(
        ["apply", "-n", "locked", "-f", "-"],
        &pod_yaml("priv", "    securityContext:\n      privileged: true\n", ""),
    );
}

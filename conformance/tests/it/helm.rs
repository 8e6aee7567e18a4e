//! helm v4 (server-side apply by default) installs, upgrades, rolls back and uninstalls the
//! stock chart from `helm create`; with simulated nodes, `helm install --wait` returns once the
//! Deployment is available and `helm test` runs the chart's test pod (`wget <service>:<port>`)
//! to completion — and fails when the Service has no ready endpoint.

use ferrokube_conformance::TestServer;

use crate::util::json;

fn replicas(server: &TestServer) -> String {
    server.must_kubectl([
        "get",
        "deployment",
        "rel1-mychart",
        "-o",
        "jsonpath={.spec.replicas}",
    ])
}

#[test]
fn helm_install_upgrade_rollback_uninstall() {
    let server = TestServer::start();
    let dir = server.data_dir().join("charts");
    std::fs::create_dir_all(&dir).expect("chart dir");
    let chart = dir.join("mychart");
    let out = server.must_helm(["create".as_ref(), chart.as_os_str()]);
    assert!(out.contains("Creating"), "{out}");

    let out = server.must_helm(["install".as_ref(), "rel1".as_ref(), chart.as_os_str()]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert_eq!(replicas(&server), "1");
    let obj = json(&server.must_kubectl([
        "get",
        "deployment",
        "rel1-mychart",
        "-o",
        "json",
        "--show-managed-fields",
    ]));
    let helm = obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == "helm"))
        .unwrap_or_else(|| panic!("helm manages the deployment: {obj:#}"));
    assert_eq!(helm["operation"], "Apply");
    for kind in ["service/rel1-mychart", "serviceaccount/rel1-mychart"] {
        server.must_kubectl(["get", kind]);
    }

    let out = server.must_helm([
        "upgrade".as_ref(),
        "rel1".as_ref(),
        chart.as_os_str(),
        "--set".as_ref(),
        "replicaCount=2".as_ref(),
    ]);
    assert!(out.contains("has been upgraded"), "{out}");
    assert_eq!(replicas(&server), "2");

    let out = server.must_helm(["rollback", "rel1", "1"]);
    assert!(out.contains("Rollback was a success"), "{out}");
    assert_eq!(replicas(&server), "1");

    let list = server.must_helm(["list", "-o", "json"]);
    let releases = json(&list);
    assert_eq!(releases[0]["name"], "rel1", "{list}");
    assert_eq!(releases[0]["revision"], "3", "{list}");
    assert_eq!(releases[0]["status"], "deployed", "{list}");

    let out = server.must_helm(["uninstall", "rel1"]);
    assert!(out.contains("release \"rel1\" uninstalled"), "{out}");
    let left = server.must_kubectl([
        "get",
        "deployments,services,serviceaccounts,secrets",
        "-l",
        "app.kubernetes.io/instance=rel1",
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "", "objects left after uninstall");
    let secrets = server.must_kubectl(["get", "secrets", "-o", "name"]);
    assert!(!secrets.contains("sh.helm.release"), "{secrets}");
}

#[test]
fn helm_install_wait_and_helm_test_on_simulated_nodes() {
    let server = TestServer::start_with_args(crate::nodes::THREE_NODES);
    crate::nodes::must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    let dir = server.data_dir().join("charts");
    std::fs::create_dir_all(&dir).expect("chart dir");
    let chart = dir.join("web");
    server.must_helm(["create".as_ref(), chart.as_os_str()]);

    let out = server.must_helm([
        "install".as_ref(),
        "rel2".as_ref(),
        chart.as_os_str(),
        "--wait".as_ref(),
        "--timeout".as_ref(),
        "60s".as_ref(),
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    // --wait returned: the Deployment is available, its pod Ready on a node.
    let dep = json(&server.must_kubectl(["get", "deployment", "rel2-web", "-o", "json"]));
    assert_eq!(dep["status"]["availableReplicas"], 1, "{dep:#}");
    let pods = json(&server.must_kubectl([
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/instance=rel2",
        "-o",
        "json",
    ]));
    let node = pods["items"][0]["spec"]["nodeName"].as_str().unwrap_or("");
    assert!(node.starts_with("node-"), "{pods:#}");

    let out = server.must_helm(["test", "rel2", "--timeout", "60s"]);
    assert!(out.contains("rel2-web-test-connection"), "{out}");
    assert!(out.contains("Phase:          Succeeded"), "{out}");
    let phase = server.must_kubectl([
        "get",
        "pod",
        "rel2-web-test-connection",
        "-o",
        "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.exitCode}",
    ]);
    assert_eq!(phase, "Succeeded 0");

    // No ready endpoint behind the Service: the same test fails, as wget would.
    server.must_kubectl(["scale", "deployment", "rel2-web", "--replicas=0"]);
    crate::nodes::must_wait_for(
        &server,
        "endpoints emptied",
        std::time::Duration::from_secs(30),
        || {
            let eps = server.must_kubectl([
                "get",
                "endpoints",
                "rel2-web",
                "-o",
                "jsonpath={.subsets[*].addresses[*].ip}",
            ]);
            if eps.trim().is_empty() {
                Ok(())
            } else {
                Err(eps)
            }
        },
    );
    let out = server.helm(["test", "rel2", "--timeout", "60s"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "helm test must fail: {all}");
    assert!(all.contains("Phase:          Failed"), "{all}");
    let code = server.must_kubectl([
        "get",
        "pod",
        "rel2-web-test-connection",
        "-o",
        "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.exitCode}",
    ]);
    assert_eq!(code, "Failed 1");
}

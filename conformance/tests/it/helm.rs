//! helm v4 (server-side apply by default) installs, upgrades, rolls back and uninstalls the
//! stock chart from `helm create`. Without controllers the Deployment never becomes ready, so
//! no `--wait`.

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

//! kubectl create/apply/get/describe/replace/delete against every common built-in kind, with the
//! exact tables, output formats and error messages upstream prints.

use ferrokube_conformance::TestServer;

use crate::util::{Table, header_line, json, manifest, squash};

/// Every manifest with the `kind.group/name` kubectl prints for it.
const MANIFESTS: &[(&str, &str)] = &[
    ("pod.yaml", "pod/web-pod"),
    ("deployment.yaml", "deployment.apps/web"),
    ("replicaset.yaml", "replicaset.apps/frontend"),
    ("daemonset.yaml", "daemonset.apps/log-agent"),
    ("statefulset.yaml", "statefulset.apps/db"),
    ("service.yaml", "service/web"),
    ("configmap.yaml", "configmap/app-config"),
    ("secret.yaml", "secret/app-secret"),
    ("job.yaml", "job.batch/pi"),
    ("cronjob.yaml", "cronjob.batch/hello"),
    ("role.yaml", "role.rbac.authorization.k8s.io/pod-reader"),
    (
        "rolebinding.yaml",
        "rolebinding.rbac.authorization.k8s.io/read-pods",
    ),
    ("ingress.yaml", "ingress.networking.k8s.io/web"),
    ("serviceaccount.yaml", "serviceaccount/builder"),
    ("pvc.yaml", "persistentvolumeclaim/data"),
    ("hpa.yaml", "horizontalpodautoscaler.autoscaling/web"),
    ("pdb.yaml", "poddisruptionbudget.policy/web"),
];

fn apply(server: &TestServer, file: &str) -> String {
    let path = manifest(file);
    server.must_kubectl(["apply".as_ref(), "-f".as_ref(), path.as_os_str()])
}

#[test]
fn apply_every_manifest_then_get_it_back() {
    let server = TestServer::start();
    for (file, printed) in MANIFESTS {
        let out = apply(&server, file);
        assert_eq!(out.trim(), format!("{printed} created"), "apply -f {file}");
        let path = manifest(file);
        let got = json(&server.must_kubectl([
            "get".as_ref(),
            "-f".as_ref(),
            path.as_os_str(),
            "-o".as_ref(),
            "json".as_ref(),
        ]));
        let name = printed.rsplit('/').next().unwrap_or_default();
        assert_eq!(got["metadata"]["name"], name, "{file}: {got:#}");
        assert_eq!(got["metadata"]["namespace"], "default", "{file}: {got:#}");
        assert!(
            got["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| u.len() == 36),
            "{file}: {got:#}"
        );
        assert!(
            got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .is_string(),
            "{file}: {got:#}"
        );
        // Applying the same manifest again changes nothing.
        let again = apply(&server, file);
        let again = again.trim();
        if matches!(*file, "statefulset.yaml" | "pdb.yaml" | "secret.yaml") {
            // Upstream reports `configured` here: volumeClaimTemplates is an atomic list and the
            // live copy carries server defaults (kubernetes/kubernetes#66450); the PDB's
            // spec.selector has patch strategy `replace` in upstream's schema, so kubectl's
            // three-way diff always re-sends it; a Secret's stringData is write-only (merged into
            // data), so the live object never shows it and kubectl re-sends it.
            assert!(
                again == format!("{printed} unchanged") || again == format!("{printed} configured"),
                "re-apply -f {file}: {again}"
            );
        } else {
            assert_eq!(again, format!("{printed} unchanged"), "re-apply -f {file}");
        }
    }
    // Everything shows up in one listing.
    let all = server.must_kubectl([
        "get",
        "deploy,rs,ds,sts,svc,cm,secret,job,cj,sa,pvc,hpa,pdb,ing",
        "-o",
        "name",
    ]);
    for (_, printed) in MANIFESTS
        .iter()
        .filter(|(f, _)| !f.starts_with("role") && *f != "pod.yaml")
    {
        assert!(
            all.lines().any(|l| l == *printed),
            "{printed} missing from:\n{all}"
        );
    }
}

#[test]
fn get_prints_upstream_table_columns() {
    let server = TestServer::start();
    for file in [
        "pod.yaml",
        "deployment.yaml",
        "service.yaml",
        "configmap.yaml",
        "secret.yaml",
        "job.yaml",
    ] {
        apply(&server, file);
    }
    let cases = [
        ("pods", "web-pod", "NAME READY STATUS RESTARTS AGE"),
        ("deployments", "web", "NAME READY UP-TO-DATE AVAILABLE AGE"),
        (
            "services",
            "web",
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE",
        ),
        ("configmaps", "app-config", "NAME DATA AGE"),
        ("secrets", "app-secret", "NAME TYPE DATA AGE"),
        ("jobs", "pi", "NAME STATUS COMPLETIONS DURATION AGE"),
    ];
    for (resource, name, header) in cases {
        let out = server.must_kubectl(["get", resource, name]);
        assert_eq!(
            header_line(&out),
            header,
            "kubectl get {resource} {name}:\n{out}"
        );
        assert_eq!(Table::parse(&out).names(), [name], "{out}");
    }
    let pods = Table::parse(&server.must_kubectl(["get", "pods"]));
    assert!(pods.cell("web-pod", "READY").ends_with("/1"), "{pods:#?}");
    assert_eq!(pods.cell("web-pod", "RESTARTS"), "0", "{pods:#?}");
    let svc = Table::parse(&server.must_kubectl(["get", "svc", "web"]));
    assert_eq!(svc.cell("web", "TYPE"), "ClusterIP");
    assert!(
        svc.cell("web", "CLUSTER-IP")
            .parse::<std::net::IpAddr>()
            .is_ok(),
        "{svc:#?}"
    );
    assert_eq!(svc.cell("web", "EXTERNAL-IP"), "<none>");
    assert_eq!(svc.cell("web", "PORT(S)"), "80/TCP");
    let cm = Table::parse(&server.must_kubectl(["get", "cm", "app-config"]));
    assert_eq!(cm.cell("app-config", "DATA"), "2");
    let secret = Table::parse(&server.must_kubectl(["get", "secret", "app-secret"]));
    assert_eq!(secret.cell("app-secret", "TYPE"), "Opaque");
    assert_eq!(secret.cell("app-secret", "DATA"), "2");
    let deploy = Table::parse(&server.must_kubectl(["get", "deploy", "web"]));
    assert!(deploy.cell("web", "READY").ends_with("/2"), "{deploy:#?}");

    // -o wide adds the upstream wide columns.
    let wide = server.must_kubectl(["get", "pods", "-o", "wide"]);
    assert_eq!(
        header_line(&wide),
        "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES",
        "{wide}"
    );
    let wide = server.must_kubectl(["get", "deploy", "web", "-o", "wide"]);
    assert_eq!(
        header_line(&wide),
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR",
        "{wide}"
    );
    let wide_table = Table::parse(&wide);
    assert_eq!(wide_table.cell("web", "CONTAINERS"), "nginx");
    assert_eq!(wide_table.cell("web", "IMAGES"), "nginx:1.27");
    assert_eq!(wide_table.cell("web", "SELECTOR"), "app=web");
}

#[test]
fn output_formats_yaml_json_jsonpath_name() {
    let server = TestServer::start();
    apply(&server, "configmap.yaml");
    let yaml = server.must_kubectl(["get", "cm", "app-config", "-o", "yaml"]);
    for want in [
        "apiVersion: v1",
        "kind: ConfigMap",
        "name: app-config",
        "LOG_LEVEL: info",
        "resourceVersion:",
        "uid:",
    ] {
        assert!(yaml.contains(want), "-o yaml lacks {want:?}:\n{yaml}");
    }
    let obj = json(&server.must_kubectl(["get", "cm", "app-config", "-o", "json"]));
    assert_eq!(obj["kind"], "ConfigMap");
    assert_eq!(obj["apiVersion"], "v1");
    assert_eq!(obj["data"]["LOG_LEVEL"], "info");
    assert_eq!(obj["metadata"]["labels"]["app"], "web");
    let rv = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(
        rv.parse::<u64>().is_ok(),
        "resourceVersion {rv:?} is not a decimal"
    );
    assert!(
        obj["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{obj:#}"
    );
    let list = json(&server.must_kubectl(["get", "cm", "-l", "app=web", "-o", "json"]));
    assert_eq!(list["kind"], "List", "{list:#}");
    assert_eq!(
        list["items"][0]["metadata"]["name"], "app-config",
        "{list:#}"
    );
    let name = server.must_kubectl(["get", "cm", "app-config", "-o", "jsonpath={.metadata.name}"]);
    assert_eq!(name, "app-config");
    let by_name = server.must_kubectl(["get", "cm", "app-config", "-o", "name"]);
    assert_eq!(by_name.trim(), "configmap/app-config");
    let columns = server.must_kubectl([
        "get",
        "cm",
        "app-config",
        "-o",
        "custom-columns=N:.metadata.name,L:.data.LOG_LEVEL",
    ]);
    assert_eq!(squash(&columns), "N L app-config info");
}

#[test]
fn describe_configmap() {
    let server = TestServer::start();
    apply(&server, "configmap.yaml");
    let out = server.must_kubectl(["describe", "configmap", "app-config"]);
    let lines: Vec<String> = out.lines().map(squash).collect();
    for want in [
        "Name: app-config",
        "Namespace: default",
        "Labels: app=web",
        "Data",
        "LOG_LEVEL:",
        "info",
        "Events: <none>",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "describe lacks line {want:?}:\n{out}"
        );
    }
}

#[test]
fn delete_then_not_found() {
    let server = TestServer::start();
    server.must_kubectl(["create", "configmap", "doomed", "--from-literal=a=b"]);
    let out = server.must_kubectl(["delete", "configmap", "doomed"]);
    assert!(out.starts_with("configmap \"doomed\" deleted"), "{out}");
    let err = server.must_kubectl_fail(["get", "configmap", "doomed"]);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): configmaps \"doomed\" not found"
    );
    // Deleting a whole manifest works too.
    apply(&server, "deployment.yaml");
    let path = manifest("deployment.yaml");
    let out = server.must_kubectl(["delete".as_ref(), "-f".as_ref(), path.as_os_str()]);
    assert!(out.starts_with("deployment.apps \"web\" deleted"), "{out}");
}

#[test]
fn error_messages_match_upstream() {
    let server = TestServer::start();
    let err = server.must_kubectl_fail(["get", "configmap", "nope"]);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): configmaps \"nope\" not found"
    );

    server.must_kubectl(["create", "configmap", "x", "--from-literal=k=v1"]);
    // The generator (typed client, protobuf body) wraps the server's error like upstream does.
    let err = server.must_kubectl_fail(["create", "configmap", "x", "--from-literal=k=v1"]);
    assert_eq!(
        err.trim(),
        "error: failed to create configmap: configmaps \"x\" already exists"
    );
    // `create -f` prints the Status as kubectl's standard server error.
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  k: v1\n";
    let out = server.kubectl_stdin(["create", "-f", "-"], manifest);
    assert!(
        !out.status.success(),
        "create -f of an existing object must fail"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "Error from server (AlreadyExists): error when creating \"STDIN\": configmaps \"x\" already exists"
    );

    // Replace with a stale resourceVersion → Conflict.
    let stale = server.must_kubectl(["get", "configmap", "x", "-o", "json"]);
    server.must_kubectl(["label", "configmap", "x", "touched=yes"]);
    let mut obj = json(&stale);
    obj["data"]["k"] = "v2".into();
    let out = server.kubectl_stdin(["replace", "-f", "-"], &obj.to_string());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "replace with stale resourceVersion succeeded: {out:?}"
    );
    assert!(err.contains("Error from server (Conflict)"), "{err}");
    assert!(
        err.contains(
            "Operation cannot be fulfilled on configmaps \"x\": the object has been modified; \
             please apply your changes to the latest version and try again"
        ),
        "{err}"
    );
    // The current version replaces fine.
    let mut fresh = json(&server.must_kubectl(["get", "configmap", "x", "-o", "json"]));
    fresh["data"]["k"] = "v3".into();
    server.must_kubectl_stdin(["replace", "-f", "-"], &fresh.to_string());
    let value = server.must_kubectl(["get", "configmap", "x", "-o", "jsonpath={.data.k}"]);
    assert_eq!(value, "v3");
}

/// kubectl's generators (`create deployment`, `create service`) send protobuf bodies in which Go
/// writes zero values of value-typed fields (an empty template `creationTimestamp`, `generation:
/// 0`, `hostPort: 0`, `nodePort: 0`); upstream decodes them as unset, so they must not show up.
#[test]
fn generator_protobuf_bodies_carry_no_go_zero_values() {
    let server = TestServer::start();
    server.must_kubectl(["create", "deployment", "gen", "--image=nginx", "--port=80"]);
    let dep = json(&server.must_kubectl(["get", "deployment", "gen", "-o", "json"]));
    let template_meta = &dep["spec"]["template"]["metadata"];
    assert!(template_meta.get("creationTimestamp").is_none(), "{dep:#}");
    assert!(template_meta.get("generation").is_none(), "{dep:#}");
    let port = &dep["spec"]["template"]["spec"]["containers"][0]["ports"][0];
    assert_eq!(port["containerPort"], 80, "{dep:#}");
    assert!(port.get("hostPort").is_none(), "{dep:#}");
    assert!(dep["spec"].get("minReadySeconds").is_none(), "{dep:#}");
    // Removing the last port leaves no `ports: []` behind (Go's omitempty drops empty slices).
    server.must_kubectl([
        "patch",
        "deployment",
        "gen",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/template/spec/containers/0/ports/0"}]"#,
    ]);
    let dep = json(&server.must_kubectl(["get", "deployment", "gen", "-o", "json"]));
    let container = &dep["spec"]["template"]["spec"]["containers"][0];
    assert!(container.get("ports").is_none(), "{dep:#}");

    server.must_kubectl(["create", "service", "clusterip", "gen", "--tcp=80:8080"]);
    let svc = json(&server.must_kubectl(["get", "service", "gen", "-o", "json"]));
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none(), "{svc:#}");
    assert!(svc["spec"].get("healthCheckNodePort").is_none(), "{svc:#}");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080, "{svc:#}");
}

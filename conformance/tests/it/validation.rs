//! Validation of built-in kinds with upstream's rules, messages and field paths, driven by stock
//! kubectl (`apply -f` with default validation).
//!
//! `conformance/manifests/invalid/NN-*.yaml` each start with `# expect: <text>` (the
//! `field.Error` string upstream's validator produces, field path first) and
//! `# upstream: <source>` (the rule in kubernetes/kubernetes). Every one must be rejected with
//! a 422 that kubectl prints as `The <Kind> "<name>" is invalid: <expect>`, and nothing may be
//! stored. The update tests create a valid object, then change an immutable field.

use std::path::{Path, PathBuf};

use ferrokube_conformance::{ServerSpec, TestServer, manifests_dir};

/// The invalid manifests, sorted by name.
fn invalid_manifests() -> Vec<PathBuf> {
    let dir = manifests_dir().join("invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// The `# expect:` text of a manifest.
fn expectation(path: &Path) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()))
        .to_string()
}

fn apply_fails(server: &TestServer, path: &Path) -> String {
    server.must_kubectl_fail(["apply".as_ref(), "-f".as_ref(), path.as_os_str()])
}

#[test]
fn every_invalid_manifest_is_rejected_with_upstreams_field_path() {
    let server = TestServer::start();
    let files = invalid_manifests();
    assert!(
        files.len() >= 30,
        "only {} invalid manifests in conformance/manifests/invalid",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let want = expectation(path);
        let err = apply_fails(&server, path);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !err.contains("is invalid") || !err.contains(&want) {
            failures.push(format!("{name}:\n  want: {want}\n  got:  {}", err.trim()));
            continue;
        }
        // Nothing was stored.
        let get = server.kubectl(["get".as_ref(), "-f".as_ref(), path.as_os_str()]);
        let get_err = String::from_utf8_lossy(&get.stderr);
        if get.status.success() || !get_err.contains("NotFound") {
            failures.push(format!(
                "{name}: object exists after a rejected create: {get_err}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} manifests not rejected as upstream does:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// Undoes Go's `%q` quoting of kubectl's `-v=8` "Response Body" log field.
fn go_unquote(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The Status body carries `reason: Invalid`, code 422 and one cause per field error with
/// upstream's `FieldValue*` reasons (what clients such as Helm read); kubectl prints one
/// bullet per cause.
#[test]
fn invalid_status_lists_causes_with_field_paths() {
    let server = TestServer::start();
    let body = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"two-errors"},
        "spec":{"containers":[{"name":"a","image":"nginx","imagePullPolicy":"Sometimes"},
                              {"name":"a","image":"nginx"}]}}"#;
    let out = server.kubectl_stdin(["create", "-f", "-", "-v=8"], body);
    assert!(!out.status.success(), "invalid pod created");
    let log = String::from_utf8_lossy(&out.stderr);
    // klog prints a body ending with a newline (as upstream's, and ours, do) as a block:
    // `"Response Body" body=<` then the text on the next line, indented by a tab.
    let lines: Vec<&str> = log.lines().collect();
    let json = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            if !l.contains("\"Response Body\"") {
                return None;
            }
            if l.trim_end().ends_with("body=<") {
                let next = lines.get(i + 1)?.trim_start_matches('\t');
                return next
                    .contains(r#""kind":"Status""#)
                    .then(|| next.to_string());
            }
            let quoted = l
                .split_once("body=\"")
                .map(|(_, b)| b.trim_end().trim_end_matches('"'))?;
            quoted
                .contains(r#"\"kind\":\"Status\""#)
                .then(|| go_unquote(quoted))
        })
        .unwrap_or_else(|| panic!("no Status response body in:\n{log}"));
    let status: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("bad Status JSON ({e}): {json}"));
    assert_eq!(status["code"], 422, "{status:#}");
    assert_eq!(status["reason"], "Invalid", "{status:#}");
    assert_eq!(status["details"]["kind"], "Pod", "{status:#}");
    assert_eq!(status["details"]["name"], "two-errors", "{status:#}");
    let causes: Vec<(String, String)> = status["details"]["causes"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| {
                    (
                        c["field"].as_str().unwrap_or_default().to_string(),
                        c["reason"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        causes,
        vec![
            (
                "spec.containers[0].imagePullPolicy".to_string(),
                "FieldValueNotSupported".to_string()
            ),
            (
                "spec.containers[1].name".to_string(),
                "FieldValueDuplicate".to_string()
            ),
        ]
    );
    assert!(
        log.contains("The Pod \"two-errors\" is invalid: \n* spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"\n* spec.containers[1].name: Duplicate value: \"a\""),
        "{log}"
    );
}

/// Total annotation size over 256 KiB (apimachinery `ValidateAnnotations`).
#[test]
fn annotations_over_256k_are_too_long() {
    let server = TestServer::start();
    let big = "x".repeat(256 * 1024);
    let body = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: huge\n  annotations:\n    big: {big}\n"
    );
    let out = server.kubectl_stdin(["create", "-f", "-"], &body);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "oversized annotations accepted");
    assert!(
        err.contains(
            "The ConfigMap \"huge\" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes"
        ),
        "{err}"
    );
}

fn apply_stdin(server: &TestServer, yaml: &str) -> std::process::Output {
    server.kubectl_stdin(["apply", "-f", "-"], yaml)
}

fn must_apply(server: &TestServer, yaml: &str) {
    let out = apply_stdin(server, yaml);
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn must_reject(server: &TestServer, yaml: &str, want: &[&str]) {
    let out = apply_stdin(server, yaml);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "update accepted, wanted {want:?}");
    for w in want {
        assert!(err.contains(w), "missing {w:?} in:\n{err}");
    }
}

fn deployment(selector: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: immut\nspec:\n  selector:\n    matchLabels:\n      app: {selector}\n  template:\n    metadata:\n      labels:\n        app: {selector}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n"
    )
}

fn pod(container: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: immut\nspec:\n  containers:\n  - name: {container}\n    image: {image}\n"
    )
}

fn job(image: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: immut\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: pi\n        image: {image}\n"
    )
}

fn service(cluster_ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: immut\nspec:\n{cluster_ip}  ports:\n  - port: 80\n"
    )
}

fn binding(role: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: immut\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {role}\nsubjects:\n- kind: User\n  name: jane\n  apiGroup: rbac.authorization.k8s.io\n"
    )
}

/// apps `ValidateDeploymentUpdate` (apps/v1 selectors are immutable).
#[test]
fn deployment_selector_is_immutable() {
    let server = TestServer::start();
    must_apply(&server, &deployment("web"));
    must_reject(
        &server,
        &deployment("api"),
        &[
            "The Deployment \"immut\" is invalid: spec.selector: Invalid value:",
            "field is immutable",
        ],
    );
}

/// `kubectl get -o json`, `edit` applied to the object, then `kubectl replace -f -`.
fn replace_edited(
    server: &TestServer,
    resource: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> std::process::Output {
    let mut obj: serde_json::Value =
        serde_json::from_str(&server.must_kubectl(["get", resource, "-o", "json"]))
            .unwrap_or_else(|e| panic!("get {resource}: {e}"));
    edit(&mut obj);
    server.kubectl_stdin(["replace", "-f", "-"], &obj.to_string())
}

/// core `ValidatePodUpdate`: only images (and a few others) may change.
#[test]
fn pod_spec_is_immutable_except_images() {
    let server = TestServer::start();
    must_apply(&server, &pod("web", "nginx:1.27"));
    let out = replace_edited(&server, "pod/immut", |p| {
        p["spec"]["containers"][0]["image"] = "nginx:1.28".into();
        p["spec"]["activeDeadlineSeconds"] = 600.into();
    });
    assert!(
        out.status.success(),
        "image change rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = server.must_kubectl([
        "get",
        "pod",
        "immut",
        "-o",
        "jsonpath={.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:1.28");
    let out = replace_edited(&server, "pod/immut", |p| {
        p["spec"]["containers"][0]["name"] = "renamed".into();
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "container rename accepted");
    assert!(
        err.contains("The Pod \"immut\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations)"),
        "{err}"
    );
}

/// batch `ValidateJobSpecUpdate`: the pod template of a job is immutable.
#[test]
fn job_template_is_immutable() {
    let server = TestServer::start();
    must_apply(&server, &job("perl:5.34"));
    must_reject(
        &server,
        &job("perl:5.36"),
        &[
            "The Job \"immut\" is invalid: spec.template: Invalid value:",
            "field is immutable",
        ],
    );
}

/// core `ValidateServiceUpdate` / `validateUpgradeDowngradeClusterIPs`.
#[test]
fn service_cluster_ip_may_not_change() {
    let server = TestServer::start();
    must_apply(&server, &service(""));
    let ip = server.must_kubectl(["get", "svc", "immut", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(!ip.is_empty());
    let other = if ip == "10.96.77.77" {
        "10.96.77.78"
    } else {
        "10.96.77.77"
    };
    must_reject(
        &server,
        &service(&format!("  clusterIP: {other}\n")),
        &[&format!(
            "The Service \"immut\" is invalid: spec.clusterIPs[0]: Invalid value: []string{{\"{other}\"}}: may not change once set"
        )],
    );
}

/// rbac `ValidateRoleBindingUpdate`.
#[test]
fn role_binding_role_ref_is_immutable() {
    let server = TestServer::start();
    must_apply(&server, &binding("reader"));
    must_reject(
        &server,
        &binding("writer"),
        &[
            "The RoleBinding \"immut\" is invalid: roleRef: Invalid value:",
            "cannot change roleRef",
        ],
    );
}

/// Status updates do not re-run spec rules (upstream status strategies validate metadata and
/// status only): a controller-style status patch goes through.
#[test]
fn status_updates_are_not_blocked_by_spec_rules() {
    // The API server alone: the deployment controller would rewrite the status it is given.
    let server = TestServer::start_with(ServerSpec {
        apiserver_only: true,
        ..ServerSpec::default()
    });
    must_apply(&server, &deployment("web"));
    server.must_kubectl([
        "patch",
        "deployment",
        "immut",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":1,"readyReplicas":1}}"#,
    ]);
    let ready = server.must_kubectl([
        "get",
        "deployment",
        "immut",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ]);
    assert_eq!(ready, "1");
}

/// core `ValidateConfigMapUpdate`: the data of an immutable ConfigMap may not change.
#[test]
fn immutable_config_map_data_is_frozen() {
    let server = TestServer::start();
    let cm = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: true\ndata:\n  key: {v}\n"
        )
    };
    must_apply(&server, &cm("one"));
    must_reject(
        &server,
        &cm("two"),
        &[
            "The ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set",
        ],
    );
}

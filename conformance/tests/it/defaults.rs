//! Defaulting of built-in kinds, field validation and server-side dry-run, driven by stock
//! kubectl (issue 3 items 4-6).
//!
//! The read-back tests compare `kubectl get -o yaml` field by field with fixtures of what
//! upstream 1.35 returns for the same manifests (conformance/fixtures/defaults/*.upstream-1.35.yaml,
//! each line's upstream source cited in the fixture). Compared: the whole object, status included
//! (the test server runs no scheduler or controllers, like a cluster before they act), except
//! `metadata.uid`, `metadata.creationTimestamp`, `metadata.resourceVersion` and
//! `metadata.managedFields` (per-object values); the random suffix of the
//! `kube-api-access-*` projected token volume the ServiceAccount admission plugin adds is
//! normalized on both sides, the volume itself compared.

use std::path::PathBuf;

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::util::json;

fn fixture(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("defaults")
        .join(name);
    assert!(p.is_file(), "missing fixture {}", p.display());
    p
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

/// Drops the per-object metadata the comparison ignores.
fn strip_meta(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "managedFields",
        ] {
            m.remove(f);
        }
    }
    v
}

/// Gives the ServiceAccount admission plugin's `kube-api-access-<random>` token volume and its
/// mounts one fixed name, so upstream's and ours compare field by field.
fn normalize_token_volume(mut v: Value) -> Value {
    fn rename(x: &mut Value) {
        if let Some(n) = x.get_mut("name")
            && n.as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        {
            *n = Value::String("kube-api-access-RANDOM".into());
        }
    }
    for v in v
        .pointer_mut("/spec/volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        rename(v);
    }
    for list in ["/spec/containers", "/spec/initContainers"] {
        for c in v
            .pointer_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for m in c
                .get_mut("volumeMounts")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                rename(m);
            }
        }
    }
    v
}

/// Every path where two values differ (for a readable failure).
fn differences(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => differences(&p, wv, gv, out),
                    None => out.push(format!("{p}: missing (upstream has {wv})")),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push(format!("{path}.{k}: unexpected {gv}"));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                differences(&format!("{path}[{i}]"), wv, gv, out);
            }
        }
        _ if want != got => out.push(format!("{path}: upstream {want}, ferrokube {got}")),
        _ => {}
    }
}

fn assert_matches_upstream(what: &str, fixture_name: &str, got: &str) {
    let text = std::fs::read_to_string(fixture(fixture_name)).unwrap_or_default();
    let mut want = normalize_token_volume(strip_meta(yaml(&text)));
    let mut got = normalize_token_volume(strip_meta(yaml(got)));
    // A stored object's status belongs to the controllers and the scheduler, which act on it at
    // their own pace (PodScheduled, Deployment replica counts): only a dry run's status is
    // compared.
    if what.ends_with("get -o yaml") {
        for v in [&mut want, &mut got] {
            if let Some(m) = v.as_object_mut() {
                m.remove("status");
            }
            // The deployment controller's revision annotation, written at its own pace too.
            if let Some(a) = v
                .pointer_mut("/metadata/annotations")
                .and_then(Value::as_object_mut)
            {
                a.remove("deployment.kubernetes.io/revision");
                if a.is_empty()
                    && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    m.remove("annotations");
                }
            }
        }
    }
    let mut diffs = Vec::new();
    differences("", &want, &got, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{what} differs from {fixture_name}:\n  {}",
        diffs.join("\n  ")
    );
}

#[test]
fn pod_and_deployment_read_back_like_upstream_1_35() {
    let server = TestServer::start();
    for (kind, manifest, upstream) in [
        ("pod", "pod.yaml", "pod.upstream-1.35.yaml"),
        (
            "deployment",
            "deployment.yaml",
            "deployment.upstream-1.35.yaml",
        ),
    ] {
        let path = fixture(manifest);
        // Server-side dry run answers with the defaulted object and stores nothing.
        let dry = server.must_kubectl([
            "create".as_ref(),
            "-f".as_ref(),
            path.as_os_str(),
            "--dry-run=server".as_ref(),
            "-o".as_ref(),
            "yaml".as_ref(),
        ]);
        assert_matches_upstream(&format!("{kind} create --dry-run=server"), upstream, &dry);
        let dry = yaml(&dry);
        assert!(
            dry.pointer("/metadata/uid")
                .and_then(Value::as_str)
                .is_some_and(|u| u.len() == 36),
            "a dry-run create still has a generated uid: {dry:#}"
        );
        let err = server.must_kubectl_fail(["get", kind, "defaults-web"]);
        assert!(
            err.contains("\"defaults-web\" not found"),
            "nothing persisted by the dry run: {err}"
        );
        // The real create, read back.
        let out = server.must_kubectl(["create".as_ref(), "-f".as_ref(), path.as_os_str()]);
        assert!(out.contains("defaults-web created"), "{out}");
        let got = server.must_kubectl(["get", kind, "defaults-web", "-o", "yaml"]);
        assert_matches_upstream(&format!("{kind} get -o yaml"), upstream, &got);
    }
}

#[test]
fn dry_run_on_every_write_verb_persists_nothing() {
    let server = TestServer::start();
    server.must_kubectl(["create", "configmap", "keep", "--from-literal=a=1"]);
    let rv = |s: &TestServer| {
        json(&s.must_kubectl(["get", "configmap", "keep", "-o", "json"]))["metadata"]
            ["resourceVersion"]
            .clone()
    };
    let before = rv(&server);

    // create with generateName: a generated name and uid come back, nothing is stored.
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"gen-"}}"#;
    let out = server.must_kubectl_stdin(
        [
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps?dryRun=All",
            "-f",
            "-",
        ],
        body,
    );
    let created = json(&out);
    let name = created["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        name.starts_with("gen-") && name.len() == 9,
        "generated name: {created:#}"
    );
    assert_eq!(
        created["metadata"]["uid"].as_str().map(str::len),
        Some(36),
        "{created:#}"
    );
    let err = server.must_kubectl_fail(["get", "configmap", &name]);
    assert!(err.contains("not found"), "{err}");

    // update (replace), patch, delete and deletecollection with dryRun.
    let live = server.must_kubectl(["get", "configmap", "keep", "-o", "yaml"]);
    let edited = live.replace("a: \"1\"", "a: \"2\"");
    let out = server.must_kubectl_stdin(
        ["replace", "--dry-run=server", "-f", "-", "-o", "json"],
        &edited,
    );
    assert_eq!(
        json(&out)["data"]["a"],
        "2",
        "replace answers with the new object"
    );
    let out = server.must_kubectl([
        "patch",
        "configmap",
        "keep",
        "--dry-run=server",
        "-p",
        r#"{"data":{"b":"3"}}"#,
        "-o",
        "json",
    ]);
    assert_eq!(
        json(&out)["data"]["b"],
        "3",
        "patch answers with the patched object"
    );
    let out = server.must_kubectl(["delete", "configmap", "keep", "--dry-run=server"]);
    assert!(out.contains("(server dry run)"), "{out}");
    let out = server.must_kubectl([
        "delete",
        "--raw",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
    ]);
    assert!(
        out.contains("\"keep\""),
        "deletecollection lists what it would delete: {out}"
    );

    let after = json(&server.must_kubectl(["get", "configmap", "keep", "-o", "json"]));
    assert_eq!(after["data"], serde_json::json!({"a": "1"}), "{after:#}");
    assert_eq!(
        after["metadata"]["resourceVersion"], before,
        "no write happened"
    );
}

#[test]
fn kubectl_diff_exits_1_with_the_change_and_0_when_unchanged() {
    let server = TestServer::start();
    let path = fixture("deployment.yaml");
    server.must_kubectl(["apply".as_ref(), "-f".as_ref(), path.as_os_str()]);
    let same = server.kubectl(["diff".as_ref(), "-f".as_ref(), path.as_os_str()]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "unchanged manifest: {}{}",
        String::from_utf8_lossy(&same.stdout),
        String::from_utf8_lossy(&same.stderr)
    );
    assert!(
        same.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );

    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let edited = text.replace("        image: nginx\n", "        image: nginx:1.27\n");
    assert_ne!(edited, text);
    let out = server.kubectl_stdin(["diff", "-f", "-"], &edited);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-      - image: nginx\n"), "{stdout}");
    assert!(stdout.contains("+      - image: nginx:1.27\n"), "{stdout}");
    // Strategic merge keeps the live container's defaulted pull policy (the patch names the
    // container by its merge key and only sets `image`), as upstream: defaulting fills only what
    // is unset, so the diff must not touch `imagePullPolicy`.
    assert!(
        !stdout
            .lines()
            .any(|l| (l.starts_with('-') || l.starts_with('+')) && l.contains("imagePullPolicy")),
        "{stdout}"
    );
    assert!(!stdout.contains("resourceVersion"), "{stdout}");
    let live = json(&server.must_kubectl(["get", "deployment", "defaults-web", "-o", "json"]));
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
}

const BAD_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: NAME
spec:
  foo: bar
  containers:
  - name: c
    image: busybox:1.36
";

#[test]
fn unknown_fields_follow_kubectl_validate() {
    let server = TestServer::start();
    // kubectl's default (--validate=strict → fieldValidation=Strict).
    let out = server.kubectl_stdin(["create", "-f", "-"], &BAD_POD.replace("NAME", "strict"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.foo""#),
        "{stderr}"
    );
    assert!(server.kubectl(["get", "pod", "strict"]).status.code() == Some(1));

    // --validate=warn: created without the field, one warning.
    let out = server.kubectl_stdin(
        ["create", "--validate=warn", "-f", "-"],
        &BAD_POD.replace("NAME", "warn"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.trim(), r#"Warning: unknown field "spec.foo""#);
    let got = json(&server.must_kubectl(["get", "pod", "warn", "-o", "json"]));
    assert!(got["spec"].get("foo").is_none(), "{got:#}");

    // --validate=false (fieldValidation=Ignore): created silently.
    let out = server.kubectl_stdin(
        ["create", "--validate=false", "-f", "-"],
        &BAD_POD.replace("NAME", "ignore"),
    );
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // apply of an existing object patches it: the patched result is checked (422 on `patch`).
    let out = server.kubectl_stdin(["apply", "-f", "-"], &BAD_POD.replace("NAME", "ignore"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"strict decoding error: unknown field "spec.foo""#),
        "{stderr}"
    );

    // ... and with --validate=warn the patch goes through with the warning, without the field.
    let out = server.kubectl_stdin(
        ["apply", "--validate=warn", "-f", "-"],
        &BAD_POD.replace("NAME", "ignore"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Warning: unknown field "spec.foo""#),
        "{stderr}"
    );
    let got = json(&server.must_kubectl(["get", "pod", "ignore", "-o", "json"]));
    assert!(got["spec"].get("foo").is_none(), "{got:#}");

    // replace (PUT) is checked like create.
    let live = server.must_kubectl(["get", "pod", "warn", "-o", "yaml"]);
    let edited = live.replacen("spec:\n", "spec:\n  foo: bar\n", 1);
    let out = server.kubectl_stdin(["replace", "-f", "-"], &edited);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.foo""#),
        "{stderr}"
    );

    // An unsupported directive is rejected like upstream's ValidateFieldValidation.
    let out = server.kubectl_stdin(
        [
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps?fieldValidation=Bogus",
            "-f",
            "-",
        ],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"fieldValidation: Unsupported value: "Bogus": supported values: "", "Ignore", "Strict", "Warn""#),
        "{stderr}"
    );
}

#[test]
fn duplicate_fields_in_a_json_body() {
    let server = TestServer::start();
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"first","name":"dup"},"data":{"a":"1"},"data":{"b":"2"}}"#;
    let url = "/api/v1/namespaces/default/configmaps";
    let out = server.kubectl_stdin(
        [
            "create",
            "--raw",
            &format!("{url}?fieldValidation=Strict"),
            "-f",
            "-",
        ],
        body,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: duplicate field "metadata.name", duplicate field "data""#),
        "{stderr}"
    );
    // Without the parameter the default is Warn: the last value wins, with a warning each.
    let out = server.kubectl_stdin(["create", "--raw", url, "-f", "-"], body);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Warning: duplicate field "metadata.name""#),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"Warning: duplicate field "data""#),
        "{stderr}"
    );
    let got = json(&server.must_kubectl(["get", "configmap", "dup", "-o", "json"]));
    assert_eq!(got["data"], serde_json::json!({"b": "2"}), "{got:#}");
}

/// Upstream's defaults of the other workload kinds, as a server-side dry run shows them for the
/// shared manifests (values from pkg/apis/{batch,apps,core,autoscaling}/v*/defaults.go and the
/// Job registry's generateSelector).
#[test]
fn other_kinds_get_upstream_defaults() {
    let server = TestServer::start();
    let dry = |file: &str| {
        let path = crate::util::manifest(file);
        json(&server.must_kubectl([
            "create".as_ref(),
            "-f".as_ref(),
            path.as_os_str(),
            "--dry-run=server".as_ref(),
            "-o".as_ref(),
            "json".as_ref(),
        ]))
    };
    let job = dry("job.yaml");
    let spec = &job["spec"];
    assert_eq!(spec["backoffLimit"], 4, "explicit values stay: {job:#}");
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    let uid = job["metadata"]["uid"].clone();
    assert_eq!(
        spec["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(
        spec["template"]["metadata"]["labels"]["controller-uid"],
        uid
    );
    assert_eq!(
        spec["template"]["metadata"]["labels"]["job-name"],
        job["metadata"]["name"]
    );
    assert_eq!(
        spec["template"]["spec"]["terminationGracePeriodSeconds"],
        30
    );

    let cj = dry("cronjob.yaml");
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow", "{cj:#}");
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
    assert_eq!(cj["spec"]["suspend"], false);
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );

    let ss = dry("statefulset.yaml");
    assert_eq!(ss["spec"]["podManagementPolicy"], "OrderedReady", "{ss:#}");
    assert_eq!(
        ss["spec"]["updateStrategy"],
        serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 1}})
    );
    assert_eq!(
        ss["spec"]["persistentVolumeClaimRetentionPolicy"],
        serde_json::json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(ss["spec"]["revisionHistoryLimit"], 10);

    let ds = dry("daemonset.yaml");
    assert_eq!(
        ds["spec"]["updateStrategy"],
        serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        "{ds:#}"
    );
    assert_eq!(ds["status"]["numberReady"], 0);

    let svc = dry("service.yaml");
    assert_eq!(svc["spec"]["sessionAffinity"], "None", "{svc:#}");
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Cluster");
    assert_eq!(svc["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");

    let pvc = dry("pvc.yaml");
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem", "{pvc:#}");
    assert_eq!(pvc["status"]["phase"], "Pending");

    let hpa = dry("hpa.yaml");
    assert_eq!(
        hpa["spec"]["minReplicas"].as_i64().map(|m| m >= 1),
        Some(true),
        "{hpa:#}"
    );
    assert_eq!(hpa["status"]["desiredReplicas"], 0);
}

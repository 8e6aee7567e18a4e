//! Auditing with stock kubectl: `--audit-policy-file` + `--audit-log-path` write one
//! `audit.k8s.io/v1` Event per line and stage; levels None/Metadata/Request/RequestResponse
//! decide what is recorded; `Audit-ID` answers carry the events' ID; authorization and
//! PodSecurity add their annotations; watches get `ResponseStarted`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::auth::scratch;

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  resources:
  - group: ""
    resources: ["configmaps"]
- level: RequestResponse
  namespaces: ["rr"]
  resources:
  - group: ""
    resources: ["secrets"]
- level: Request
  namespaces: ["rq"]
  resources:
  - group: ""
    resources: ["secrets"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets", "pods", "namespaces"]
- level: None
"#;

/// A server auditing with [`POLICY`] into `DIR/audit.log`.
fn audited_server(tag: &str, extra: &[&str]) -> (TestServer, PathBuf) {
    let dir = scratch(tag);
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let log = dir.join("logs").join("audit.log");
    let mut args = vec![
        "--audit-policy-file".to_string(),
        policy.display().to_string(),
        "--audit-log-path".to_string(),
        log.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (TestServer::start_with_args(&args), log)
}

fn events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l:?}: {e}")))
        .collect()
}

/// Waits (the writer is asynchronous) until `pred` holds for the events, then returns them.
fn wait_events(log: &Path, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = events(log);
        if pred(&ev) {
            return ev;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; events:\n{ev:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn for_object<'a>(ev: &'a [Value], verb: &str, resource: &str, name: &str) -> Vec<&'a Value> {
    ev.iter()
        .filter(|e| {
            e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["objectRef"]["name"] == name
        })
        .collect()
}

#[test]
fn kubectl_create_secret_at_metadata_and_request_response_levels() {
    let (server, log) = audited_server("levels", &[]);
    server.must_kubectl(["create", "namespace", "rr"]);
    server.must_kubectl(["create", "namespace", "rq"]);
    // Metadata: who, what, result; never the secret.
    let out = server.kubectl([
        "create",
        "secret",
        "generic",
        "meta",
        "-n",
        "default",
        "--from-literal=password=hunter2-meta",
        "-v=8",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verbose = String::from_utf8_lossy(&out.stderr).to_string();
    let audit_id = verbose
        .lines()
        .find_map(|l| l.split("Audit-Id: ").nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("no Audit-Id header in kubectl -v=8 output:\n{verbose}"));
    let ev = wait_events(&log, "the Metadata create", |ev| {
        for_object(ev, "create", "secrets", "meta")
            .iter()
            .any(|e| e["stage"] == "ResponseComplete")
    });
    let meta = for_object(&ev, "create", "secrets", "meta");
    let stages: Vec<&str> = meta.iter().filter_map(|e| e["stage"].as_str()).collect();
    assert_eq!(stages, ["RequestReceived", "ResponseComplete"], "{meta:#?}");
    let done = meta[1];
    assert_eq!(done["kind"], "Event");
    assert_eq!(done["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(done["level"], "Metadata");
    assert_eq!(done["auditID"], audit_id.as_str());
    assert_eq!(meta[0]["auditID"], audit_id.as_str());
    assert_eq!(done["objectRef"]["namespace"], "default");
    assert_eq!(done["objectRef"]["apiVersion"], "v1");
    assert_eq!(done["responseStatus"]["code"], 201);
    assert_eq!(done["user"]["username"], "kubernetes-admin");
    assert_eq!(done["sourceIPs"][0], "127.0.0.1");
    assert!(
        done["userAgent"]
            .as_str()
            .unwrap_or_default()
            .starts_with("kubectl")
    );
    assert!(
        done["requestURI"]
            .as_str()
            .unwrap_or_default()
            .starts_with("/api/v1/namespaces/default/secrets"),
        "{done}"
    );
    assert_eq!(
        done["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    assert!(done.get("requestObject").is_none() && done.get("responseObject").is_none());
    for ts in ["requestReceivedTimestamp", "stageTimestamp"] {
        let t = done[ts].as_str().unwrap_or_default();
        assert!(t.len() == 27 && t.ends_with('Z'), "{ts}: {t}");
    }
    let raw = std::fs::read_to_string(&log).expect("log");
    assert!(!raw.contains("hunter2-meta") && !raw.contains("aHVudGVyMi1tZXRh"));

    // RequestResponse: the object sent and the object stored.
    server.must_kubectl([
        "create",
        "secret",
        "generic",
        "full",
        "-n",
        "rr",
        "--from-literal=password=hunter2-rr",
    ]);
    let ev = wait_events(&log, "the RequestResponse create", |ev| {
        for_object(ev, "create", "secrets", "full")
            .iter()
            .any(|e| e["stage"] == "ResponseComplete")
    });
    let full = for_object(&ev, "create", "secrets", "full");
    let done = full
        .iter()
        .find(|e| e["stage"] == "ResponseComplete")
        .expect("complete");
    assert_eq!(done["level"], "RequestResponse");
    assert_eq!(done["requestObject"]["kind"], "Secret");
    assert_eq!(
        done["requestObject"]["data"]["password"],
        "aHVudGVyMi1ycg=="
    );
    assert_eq!(done["responseObject"]["metadata"]["name"], "full");
    assert!(done["responseObject"]["metadata"]["uid"].is_string());
    // The RequestReceived stage has the request but not yet a response.
    let first = full
        .iter()
        .find(|e| e["stage"] == "RequestReceived")
        .expect("received");
    assert!(first["requestObject"].is_object() && first.get("responseObject").is_none());

    // Request: the request body only.
    server.must_kubectl([
        "create",
        "secret",
        "generic",
        "req",
        "-n",
        "rq",
        "--from-literal=password=x",
    ]);
    let ev = wait_events(&log, "the Request create", |ev| {
        !for_object(ev, "create", "secrets", "req").is_empty()
    });
    let req = for_object(&ev, "create", "secrets", "req");
    assert!(
        req.iter()
            .all(|e| e["level"] == "Request" && e["requestObject"].is_object())
    );
    assert!(req.iter().all(|e| e.get("responseObject").is_none()));

    // None: configmaps and everything the policy does not list leave no trace.
    server.must_kubectl(["create", "configmap", "quiet", "--from-literal=a=b"]);
    server.must_kubectl(["get", "serviceaccounts", "-A"]);
    server.must_kubectl(["create", "secret", "generic", "after", "--from-literal=a=b"]);
    let ev = wait_events(&log, "the last create", |ev| {
        !for_object(ev, "create", "secrets", "after").is_empty()
    });
    assert!(
        ev.iter().all(|e| e["objectRef"]["resource"] != "configmaps"
            && e["objectRef"]["resource"] != "serviceaccounts"),
        "None rules logged something"
    );
    // Every event has an ID; the two stages of one request share it.
    assert!(
        ev.iter()
            .all(|e| e["auditID"].as_str().is_some_and(|s| !s.is_empty()))
    );
}

#[test]
fn denials_impersonation_watches_and_pod_security_annotations() {
    let (server, log) = audited_server("annotations", &[]);
    // Impersonation without rights: forbidden, recorded with both users and the decision.
    let err = server.must_kubectl_fail(["get", "secrets", "-n", "default", "--as=bob"]);
    assert!(err.contains("forbidden"), "{err}");
    let ev = wait_events(&log, "the forbidden list", |ev| {
        ev.iter()
            .any(|e| e["impersonatedUser"]["username"] == "bob" && e["stage"] == "ResponseComplete")
    });
    let denied = ev
        .iter()
        .find(|e| e["impersonatedUser"]["username"] == "bob" && e["stage"] == "ResponseComplete")
        .expect("denied event");
    assert_eq!(denied["user"]["username"], "kubernetes-admin");
    assert_eq!(denied["verb"], "list");
    assert_eq!(
        denied["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert_eq!(denied["responseStatus"]["code"], 403);
    assert_eq!(denied["responseStatus"]["reason"], "Forbidden");
    assert!(
        denied["responseStatus"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("User \"bob\" cannot list resource \"secrets\""),
        "{denied}"
    );

    // PodSecurity audit mode: the pod is admitted, the violation is in the event.
    server.must_kubectl(["create", "namespace", "psa"]);
    server.must_kubectl([
        "label",
        "namespace",
        "psa",
        "pod-security.kubernetes.io/audit=restricted",
    ]);
    server.must_kubectl(["run", "priv", "-n", "psa", "--image=nginx", "--privileged"]);
    let ev = wait_events(&log, "the pod create", |ev| {
        for_object(ev, "create", "pods", "priv")
            .iter()
            .any(|e| e["stage"] == "ResponseComplete")
    });
    let pod = for_object(&ev, "create", "pods", "priv");
    let done = pod
        .iter()
        .find(|e| e["stage"] == "ResponseComplete")
        .expect("complete");
    assert_eq!(done["responseStatus"]["code"], 201);
    let a = &done["annotations"];
    assert_eq!(
        a["pod-security.kubernetes.io/enforce-policy"],
        "privileged:latest"
    );
    let v = a["pod-security.kubernetes.io/audit-violations"]
        .as_str()
        .unwrap_or_else(|| panic!("no audit-violations annotation: {done}"));
    assert!(
        v.starts_with("would violate PodSecurity \"restricted:latest\": privileged (container \"priv\" must not set securityContext.privileged=true)"),
        "{v}"
    );

    // A watch: ResponseStarted when the stream opens, ResponseComplete when it ends.
    let mut watch = server.spawn_kubectl(["get", "pods", "-n", "psa", "-w"]);
    // (The in-process controllers' own watches are audited too: pick kubectl's.)
    let is_kubectl_watch = |e: &Value| {
        e["verb"] == "watch"
            && e["stage"] == "ResponseStarted"
            && e["objectRef"]["namespace"] == "psa"
            && e["userAgent"]
                .as_str()
                .is_some_and(|u| u.starts_with("kubectl"))
    };
    let ev = wait_events(&log, "the watch start", |ev| {
        ev.iter().any(is_kubectl_watch)
    });
    let started = ev.iter().find(|e| is_kubectl_watch(e)).expect("started");
    assert_eq!(started["responseStatus"]["code"], 200);
    let id = started["auditID"].clone();
    let _ = watch.kill();
    let _ = watch.wait();
    wait_events(&log, "the watch end", |ev| {
        ev.iter()
            .any(|e| e["auditID"] == id && e["stage"] == "ResponseComplete")
    });
}

#[test]
fn no_policy_no_log_and_bad_policies_refused() {
    // A log path without a policy records nothing (upstream), but Audit-ID is still sent.
    let dir = scratch("nopolicy");
    let log = dir.join("audit.log");
    let server = TestServer::start_with_args(&["--audit-log-path", log.to_str().expect("path")]);
    let out = server.kubectl(["get", "ns", "-v=8"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Audit-Id: "));
    server.must_kubectl(["create", "secret", "generic", "s", "--from-literal=a=b"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(std::fs::read_to_string(&log).unwrap_or_default().is_empty());
    drop(server);

    // A policy upstream refuses keeps the server from starting, with the reason.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n",
    )
    .expect("write");
    let err = TestServer::try_start_with(ferrokube_conformance::ServerSpec {
        extra_args: vec![
            "--audit-policy-file".into(),
            bad.display().to_string(),
            "--audit-log-path".into(),
            log.display().to_string(),
        ],
        ..Default::default()
    })
    .expect_err("a bad policy must not start");
    assert!(format!("{err}").contains("audit policy"), "{err}");
}

//! Admission webhooks (issue 8) against HTTPS test servers written in `hookserver.rs`, driven
//! by stock kubectl: a validating webhook that denies (upstream's message), a mutating webhook
//! that adds a label, warnings, namespace and object selectors, a service-addressed webhook
//! (Service + EndpointSlice on 127.0.0.1), `failurePolicy` Fail vs Ignore with unreachable,
//! slow and garbage webhooks, dry-run and `sideEffects`, hostile answers (huge, dripping)
//! that must not harm the server, and the create rate with one no-op webhook vs none.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrokube_conformance::{ServerSpec, TestServer};
use serde_json::{Value, json};

use crate::hookserver::{HookServer, Reply, Req, review};

/// An API server without the in-process controllers (their writes would meet the webhooks).
pub fn apiserver() -> TestServer {
    TestServer::start_with(ServerSpec {
        apiserver_only: true,
        ..ServerSpec::default()
    })
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A webhook configuration with one webhook per `(name, clientConfig, extra fields)`, all on
/// configmaps CREATE/UPDATE.
fn configuration(kind: &str, name: &str, hooks: &[(&str, Value, Value)]) -> String {
    let webhooks: Vec<Value> = hooks
        .iter()
        .map(|(n, client, extra)| {
            let mut w = json!({
                "name": n,
                "clientConfig": client,
                "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
                           "apiVersions": ["v1"], "resources": ["configmaps"]}],
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            });
            if let (Some(w), Some(e)) = (w.as_object_mut(), extra.as_object()) {
                w.extend(e.clone());
            }
            w
        })
        .collect();
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
           "metadata": {"name": name}, "webhooks": webhooks})
    .to_string()
}

fn configmap(ns: &str, name: &str, labels: Value) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "data": {"k": "v"}})
    .to_string()
}

/// Polls `f` until it is true (configurations reach the plugins through a watch).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// A Service without selector and its EndpointSlice pointing at 127.0.0.1:`port` (how tests
/// reach a server outside the cluster through a service reference).
pub fn service_for(server: &TestServer, ns: &str, name: &str, port: u16) {
    let manifest = format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: [{{name: https, port: 443, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: https, port: {port}, protocol: TCP}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
"#
    );
    server.must_kubectl_stdin(["apply", "-f", "-"], &manifest);
}

#[test]
fn validating_webhook_denies_and_mutating_webhook_labels_through_kubectl() {
    let server = apiserver();
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen2 = seen.clone();
    let hooks = HookServer::start(
        &["hook.default.svc"],
        Arc::new(move |req: &Req| {
            let r = req.json();
            seen2.lock().expect("lock").push(r.clone());
            let obj = &r["request"]["object"];
            let name = obj["metadata"]["name"].as_str().unwrap_or("");
            if req.path.starts_with("/validate") {
                let deny = name.starts_with("bad");
                Reply::json(&review(
                    req,
                    !deny,
                    &format!("name {name} is not allowed"),
                    None,
                    &["checked by the test webhook"],
                ))
            } else {
                let patch = if obj["metadata"]["labels"].is_object() {
                    json!([{"op": "add", "path": "/metadata/labels/webhook.example.com~1mutated", "value": "true"}])
                } else {
                    json!([{"op": "add", "path": "/metadata/labels", "value": {"webhook.example.com/mutated": "true"}}])
                };
                Reply::json(&review(req, true, "", Some(patch), &[]))
            }
        }),
    );
    server.must_kubectl(["create", "namespace", "hooked"]);
    server.must_kubectl(["label", "namespace", "hooked", "webhooks=on"]);
    server.must_kubectl(["create", "namespace", "plain"]);
    service_for(&server, "default", "hook", hooks.port);
    let validating = configuration(
        "ValidatingWebhookConfiguration",
        "deny-bad-names",
        &[(
            "deny.example.com",
            json!({"service": {"namespace": "default", "name": "hook", "path": "/validate"},
                   "caBundle": hooks.ca_bundle()}),
            json!({"namespaceSelector": {"matchLabels": {"webhooks": "on"}}}),
        )],
    );
    let mutating = configuration(
        "MutatingWebhookConfiguration",
        "label-everything",
        &[(
            "label.example.com",
            json!({"url": hooks.url("/mutate"), "caBundle": hooks.ca_bundle()}),
            json!({"objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}}),
        )],
    );
    server.must_kubectl_stdin(["apply", "-f", "-"], &mutating);
    server.must_kubectl_stdin(["apply", "-f", "-"], &validating);

    // The denial, as kubectl prints upstream's Status.
    let mut probe = 0;
    eventually("the validating webhook to deny", || {
        probe += 1;
        let name = format!("bad-probe-{probe}");
        !server
            .kubectl(["create", "configmap", &name, "-n", "hooked"])
            .status
            .success()
    });
    let err = stderr(&server.kubectl(["create", "configmap", "bad-one", "-n", "hooked"]));
    assert!(
        err.contains(r#"configmaps "bad-one" is forbidden: admission webhook "deny.example.com" denied the request: name bad-one is not allowed"#),
        "{err}"
    );
    server.must_kubectl_fail(["get", "configmap", "bad-one", "-n", "hooked"]);

    // Allowed: labelled by the mutating webhook, with the validating webhook's warning.
    let o = server.kubectl(["create", "configmap", "good", "-n", "hooked"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Warning: checked by the test webhook"),
        "{}",
        stderr(&o)
    );
    let labels = server.must_kubectl(["get", "configmap", "good", "-n", "hooked", "--show-labels"]);
    assert!(
        labels.contains("webhook.example.com/mutated=true"),
        "{labels}"
    );

    // The namespace selector: the same name is allowed where the label is absent.
    server.must_kubectl(["create", "configmap", "bad-one", "-n", "plain"]);
    // The object selector: a skipped object is not mutated.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &configmap("plain", "skipped", json!({"skip": "yes"})),
    );
    let skipped = server.must_kubectl([
        "get",
        "configmap",
        "skipped",
        "-n",
        "plain",
        "--show-labels",
    ]);
    assert!(!skipped.contains("mutated"), "{skipped}");

    // What the webhooks were sent: AdmissionReview v1 with the user and the object.
    let reviews = seen.lock().expect("lock").clone();
    let create = reviews
        .iter()
        .find(|r| r["request"]["name"] == "good" && r["request"]["operation"] == "CREATE")
        .expect("a review of good");
    assert_eq!(create["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(
        create["request"]["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(create["request"]["namespace"], "hooked");
    assert_eq!(create["request"]["dryRun"], false);
    assert!(
        create["request"]["userInfo"]["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|x| x == "system:masters")),
        "{create}"
    );

    // Updates are reviewed with the old object; the validating hook saw the mutated label.
    server.must_kubectl(["label", "configmap", "good", "-n", "hooked", "x=y"]);
    let reviews = seen.lock().expect("lock").clone();
    let update = reviews
        .iter()
        .rev()
        .find(|r| r["request"]["operation"] == "UPDATE" && r["request"]["name"] == "good")
        .expect("an update review");
    assert_eq!(
        update["request"]["oldObject"]["metadata"]["labels"]["webhook.example.com/mutated"],
        "true"
    );

    // The configurations themselves are exempt: deleting them is never blocked.
    server.must_kubectl(["delete", "validatingwebhookconfiguration", "deny-bad-names"]);
    eventually("the deleted configuration to stop denying", || {
        server
            .kubectl(["create", "configmap", "bad-two", "-n", "hooked"])
            .status
            .success()
    });
}

#[test]
fn failure_policy_fail_vs_ignore_for_unreachable_slow_and_garbage_webhooks() {
    let server = apiserver();
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let hooks = HookServer::start(
        &[],
        Arc::new(|req: &Req| match req.path.split('?').next().unwrap_or("") {
            "/slow" => Reply {
                delay: Duration::from_secs(4),
                ..Reply::json(&review(req, true, "", None, &[]))
            },
            "/garbage" => Reply::raw(200, b"this is not an AdmissionReview"),
            "/wrong-uid" => Reply::json(&json!({"apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview", "response": {"uid": "nope", "allowed": true}})),
            "/error" => Reply::raw(500, b"{}"),
            _ => Reply::json(&review(req, true, "", None, &[])),
        }),
    );
    let ca = hooks.ca_bundle();
    let case = |name: &str, url: String, policy: &str, timeout: u64| {
        (
            name.to_string(),
            json!({"url": url, "caBundle": ca}),
            json!({"failurePolicy": policy, "timeoutSeconds": timeout,
                   "objectSelector": {"matchLabels": {"case": name.split('.').next().unwrap_or("")}}}),
        )
    };
    let cases = [
        case(
            "unreachable-fail.example.com",
            format!("https://127.0.0.1:{dead}/"),
            "Fail",
            5,
        ),
        case(
            "unreachable-ignore.example.com",
            format!("https://127.0.0.1:{dead}/"),
            "Ignore",
            5,
        ),
        case("slow-fail.example.com", hooks.url("/slow"), "Fail", 1),
        case("slow-ignore.example.com", hooks.url("/slow"), "Ignore", 1),
        case("garbage-fail.example.com", hooks.url("/garbage"), "Fail", 5),
        case(
            "garbage-ignore.example.com",
            hooks.url("/garbage"),
            "Ignore",
            5,
        ),
        case(
            "wronguid-fail.example.com",
            hooks.url("/wrong-uid"),
            "Fail",
            5,
        ),
        case("error-fail.example.com", hooks.url("/error"), "Fail", 5),
    ];
    let hooks_cfg: Vec<(&str, Value, Value)> = cases
        .iter()
        .map(|(n, c, e)| (n.as_str(), c.clone(), e.clone()))
        .collect();
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &configuration("ValidatingWebhookConfiguration", "policies", &hooks_cfg),
    );
    let create = |label: &str| {
        let t = Instant::now();
        let o = server.kubectl_stdin(
            ["create", "-f", "-"],
            &configmap("default", &format!("cm-{label}"), json!({"case": label})),
        );
        (o.status.success(), stderr(&o), t.elapsed())
    };
    let mut probe = 0;
    eventually("the configuration to apply", || {
        probe += 1;
        let o = server.kubectl_stdin(
            ["create", "-f", "-"],
            &configmap(
                "default",
                &format!("probe-{probe}"),
                json!({"case": "unreachable-fail"}),
            ),
        );
        !o.status.success()
    });
    let (ok, err, _) = create("unreachable-fail");
    assert!(!ok);
    assert!(
        err.contains(&format!(
            r#"Internal error occurred: failed calling webhook "unreachable-fail.example.com": failed to call webhook: Post "https://127.0.0.1:{dead}/?timeout=5s""#
        )),
        "{err}"
    );
    assert!(create("unreachable-ignore").0);

    let (ok, err, took) = create("slow-fail");
    assert!(!ok);
    assert!(err.contains("context deadline exceeded"), "{err}");
    assert!(
        took < Duration::from_secs(4),
        "the 1 s timeout took {took:?}"
    );
    let (ok, _, took) = create("slow-ignore");
    assert!(ok);
    assert!(
        took < Duration::from_secs(4),
        "the 1 s timeout took {took:?}"
    );

    let (ok, err, _) = create("garbage-fail");
    assert!(!ok);
    assert!(
        err.contains(r#"failed calling webhook "garbage-fail.example.com""#),
        "{err}"
    );
    assert!(create("garbage-ignore").0);
    let (ok, err, _) = create("wronguid-fail");
    assert!(!ok);
    assert!(err.contains(r#"expected response.uid="#), "{err}");
    let (ok, err, _) = create("error-fail");
    assert!(!ok);
    assert!(
        err.contains("the server responded with the status code 500"),
        "{err}"
    );

    // Nothing refused was written.
    let names = server.must_kubectl(["get", "configmaps", "-o", "name"]);
    for refused in [
        "unreachable-fail",
        "slow-fail",
        "garbage-fail",
        "wronguid-fail",
        "error-fail",
    ] {
        assert!(
            !names.contains(&format!("cm-{refused}")),
            "{refused} was written: {names}"
        );
    }
    for allowed in ["unreachable-ignore", "slow-ignore", "garbage-ignore"] {
        assert!(
            names.contains(&format!("cm-{allowed}")),
            "{allowed} missing: {names}"
        );
    }
}

#[test]
fn dry_run_meets_side_effects() {
    let server = apiserver();
    let hooks = HookServer::start(
        &[],
        Arc::new(|req: &Req| Reply::json(&review(req, true, "", None, &[]))),
    );
    let cfg = configuration(
        "ValidatingWebhookConfiguration",
        "side-effects",
        &[(
            "some.example.com",
            json!({"url": hooks.url("/"), "caBundle": hooks.ca_bundle()}),
            json!({"sideEffects": "NoneOnDryRun", "objectSelector": {"matchLabels": {"case": "safe"}}}),
        )],
    );
    server.must_kubectl_stdin(["apply", "-f", "-"], &cfg);
    // sideEffects Some/Unknown can no longer be created in v1, but NoneOnDryRun must be called
    // with dryRun=true.
    eventually("the webhook to be called", || {
        let before = hooks.hits();
        let o = server.kubectl_stdin(
            ["create", "--dry-run=server", "-f", "-"],
            &configmap("default", "dry", json!({"case": "safe"})),
        );
        o.status.success() && hooks.hits() > before
    });
    server.must_kubectl_fail(["get", "configmap", "dry"]);
}

#[test]
fn hostile_webhooks_huge_and_dripping_answers_fail_closed_without_harming_the_server() {
    let server = apiserver();
    let hooks = HookServer::start(
        &[],
        Arc::new(|req: &Req| match req.path.split('?').next().unwrap_or("") {
            // 20 MiB of JSON-looking bytes.
            "/huge" => {
                let mut body = b"{\"apiVersion\":\"admission.k8s.io/v1\",\"x\":\"".to_vec();
                body.resize(20 * 1024 * 1024, b'a');
                Reply::raw(200, &body)
            }
            // A byte every 300 ms, for longer than the timeout.
            "/drip" => Reply {
                chunks: (0..40).map(|_| b" ".to_vec()).collect(),
                chunk_delay: Duration::from_millis(300),
                ..Reply::json(&json!(null))
            },
            // Deeply nested JSON.
            "/deep" => Reply::raw(200, &[b"[".repeat(100_000), b"]".repeat(100_000)].concat()),
            _ => Reply::json(&review(req, true, "", None, &[])),
        }),
    );
    let ca = hooks.ca_bundle();
    let hook = |name: &'static str, path: &str| {
        (
            name,
            json!({"url": hooks.url(path), "caBundle": ca}),
            json!({"timeoutSeconds": 2, "objectSelector": {"matchLabels": {"case": name.split('.').next().unwrap_or("")}}}),
        )
    };
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &configuration(
            "MutatingWebhookConfiguration",
            "hostile",
            &[
                hook("huge.example.com", "/huge"),
                hook("drip.example.com", "/drip"),
                hook("deep.example.com", "/deep"),
            ],
        ),
    );
    let pid = server.pid().expect("pid");
    let rss_mib = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    let try_create = |case: &str, i: usize| {
        let t = Instant::now();
        let o = server.kubectl_stdin(
            ["create", "-f", "-"],
            &configmap("default", &format!("{case}-{i}"), json!({"case": case})),
        );
        (o.status.success(), stderr(&o), t.elapsed())
    };
    let mut probe = 100;
    eventually("the hostile configuration to apply", || {
        probe += 1;
        !try_create("huge", probe).0
    });
    for i in 1..4 {
        let (ok, err, _) = try_create("huge", i);
        assert!(!ok);
        assert!(err.contains("exceeded"), "{err}");
        let (ok, err, took) = try_create("drip", i);
        assert!(!ok);
        assert!(err.contains("context deadline exceeded"), "{err}");
        assert!(took < Duration::from_secs(6), "drip took {took:?}");
        let (ok, err, _) = try_create("deep", i);
        assert!(!ok, "{err}");
        assert!(
            err.contains(r#"failed calling webhook "deep.example.com""#),
            "{err}"
        );
    }
    // The server is healthy, small, and wrote nothing it refused.
    assert!(
        server
            .must_kubectl(["get", "--raw", "/readyz"])
            .contains("ok")
    );
    let rss = rss_mib();
    assert!(rss < 512, "RSS {rss} MiB after hostile webhooks");
    let names = server.must_kubectl(["get", "configmaps", "-o", "name"]);
    for case in ["huge-1", "huge-2", "huge-3", "drip-", "deep-"] {
        assert!(!names.contains(case), "{names}");
    }
    // Other writes are unaffected.
    server.must_kubectl(["create", "configmap", "fine"]);
}

/// Creates `n` ConfigMaps over `conc` concurrent kube-rs clients; returns creates per second.
async fn create_rate(server: &TestServer, prefix: &str, n: usize, conc: usize) -> f64 {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ObjectMeta, PostParams};
    let kc = kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    let client = kube::Client::try_from(config).expect("kube client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..conc {
        let api = api.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("{prefix}-{i}")),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm)
                    .await
                    .expect("create");
                i += conc;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_rate_with_one_noop_validating_webhook_vs_none() {
    let server = tokio::task::block_in_place(apiserver);
    let hooks = HookServer::start(
        &[],
        Arc::new(|req: &Req| Reply::json(&review(req, true, "", None, &[]))),
    );
    const N: usize = 400;
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    // Warm up; then 3 runs per concurrency (serial and 8 clients), without and with the hook.
    create_rate(&server, "warm", 50, 8).await;
    let mut none = Vec::new();
    for conc in [1, 8] {
        let mut runs = Vec::new();
        for round in 0..3 {
            runs.push(create_rate(&server, &format!("none{conc}-{round}"), N, conc).await);
        }
        none.push(median(runs));
    }
    let cfg = configuration(
        "ValidatingWebhookConfiguration",
        "noop",
        &[(
            "noop.example.com",
            json!({"url": hooks.url("/"), "caBundle": hooks.ca_bundle()}),
            json!({}),
        )],
    );
    tokio::task::block_in_place(|| server.must_kubectl_stdin(["apply", "-f", "-"], &cfg));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = hooks.hits();
    let mut with = Vec::new();
    for conc in [1, 8] {
        let mut runs = Vec::new();
        for round in 0..3 {
            runs.push(create_rate(&server, &format!("with{conc}-{round}"), N, conc).await);
        }
        with.push(median(runs));
    }
    assert!(
        hooks.hits() - before >= 6 * N,
        "the webhook was not called for every create"
    );
    for (i, conc) in [1usize, 8].iter().enumerate() {
        let (a, b) = (none[i], with[i]);
        println!(
            "BENCH create rate, {conc} client(s), median of 3x{N}: no webhook {a:.0}/s, one no-op validating webhook {b:.0}/s (ratio {:.2}; mean latency {:.2} ms -> {:.2} ms, +{:.2} ms)",
            b / a,
            *conc as f64 / a * 1000.0,
            *conc as f64 / b * 1000.0,
            (*conc as f64 / b - *conc as f64 / a) * 1000.0
        );
        assert!(a > 0.0 && b > 0.0);
    }
}

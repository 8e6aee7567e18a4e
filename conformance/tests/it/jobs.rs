//! The Job and TTL-after-finished controllers with stock kubectl: completions/parallelism,
//! back-off and `BackoffLimitExceeded`, Indexed Jobs, podFailurePolicy, suspend, and the
//! tracking finalizer. The tests play the kubelet by writing pod phases through `pods/status`.

use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::workloads::{eventually, get_json, items, name};

fn job_pods(server: &TestServer, job: &str) -> Vec<Value> {
    items(
        server,
        &[
            "get",
            "pods",
            "-l",
            &format!("batch.kubernetes.io/job-name={job}"),
        ],
    )
}

fn running(server: &TestServer, job: &str) -> Vec<Value> {
    job_pods(server, job)
        .into_iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null()
                && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .collect()
}

fn set_phase(server: &TestServer, pod: &str, phase: &str, exit_code: i32) {
    let patch = format!(
        r#"{{"status":{{"phase":"{phase}","containerStatuses":[{{"name":"c","image":"busybox","imageID":"","ready":false,"restartCount":0,"state":{{"terminated":{{"exitCode":{exit_code}}}}}}}]}}}}"#
    );
    server.must_kubectl([
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

fn job_condition(job: &Value, type_: &str) -> Option<Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
        .cloned()
}

fn job_manifest(name: &str, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: busybox
        command: ["true"]
"#
    )
}

#[test]
fn job_with_completions_and_parallelism_completes() {
    let server = TestServer::start();
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &job_manifest("batch3", "  completions: 3\n  parallelism: 2"),
    );
    let first = eventually(&server, "2 running pods", || {
        let p = running(&server, "batch3");
        (p.len() == 2).then_some(p)
    });
    for p in &first {
        let fins = p["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            fins.iter().any(|f| f == "batch.kubernetes.io/job-tracking"),
            "{p}"
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
    }
    // Parallelism holds: no third pod while two run.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(running(&server, "batch3").len(), 2);
    for p in &first {
        set_phase(&server, &name(p), "Succeeded", 0);
    }
    let last = eventually(&server, "the third pod", || {
        let p = running(&server, "batch3");
        (p.len() == 1).then_some(p)
    });
    eventually(&server, "succeeded 2", || {
        (get_json(&server, &["get", "job", "batch3"])["status"]["succeeded"] == 2).then_some(())
    });
    set_phase(&server, &name(&last[0]), "Succeeded", 0);
    server.must_kubectl([
        "wait",
        "--for=condition=complete",
        "job/batch3",
        "--timeout=30s",
    ]);
    let job = get_json(&server, &["get", "job", "batch3"]);
    assert_eq!(job["status"]["succeeded"], 3, "{job}");
    assert!(job["status"]["completionTime"].is_string(), "{job}");
    let met = job_condition(&job, "SuccessCriteriaMet").unwrap_or_default();
    assert_eq!(met["reason"], "CompletionsReached");
    let complete = job_condition(&job, "Complete").unwrap_or_default();
    assert_eq!(complete["reason"], "CompletionsReached");
    assert_eq!(
        complete["message"],
        "Reached expected number of succeeded pods"
    );
    // The tracking finalizer is gone from every pod.
    for p in job_pods(&server, "batch3") {
        let fins = p["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(fins.is_empty(), "{p}");
    }
    let table = server.must_kubectl(["get", "job", "batch3"]);
    assert!(
        crate::util::squash(&table).contains("batch3 Complete 3/3"),
        "{table}"
    );
}

#[test]
fn failing_job_backs_off_then_fails_with_backoff_limit_exceeded() {
    let server = TestServer::start();
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &job_manifest("flaky", "  backoffLimit: 1"),
    );
    let p = eventually(&server, "a pod", || {
        running(&server, "flaky").into_iter().next()
    });
    set_phase(&server, &name(&p), "Failed", 1);
    let failed_at = Instant::now();
    eventually(&server, "failed 1", || {
        (get_json(&server, &["get", "job", "flaky"])["status"]["failed"] == 1).then_some(())
    });
    // The replacement waits for the 10 s back-off.
    let replacement = {
        let start = Instant::now();
        loop {
            if let Some(p) = running(&server, "flaky").into_iter().next() {
                break p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no replacement pod\n{}",
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_secs(8),
        "replacement after {waited:?}, back-off is 10 s"
    );
    set_phase(&server, &name(&replacement), "Failed", 1);
    let job = eventually(&server, "Failed condition", || {
        let j = get_json(&server, &["get", "job", "flaky"]);
        job_condition(&j, "Failed").map(|_| j)
    });
    let failed = job_condition(&job, "Failed").unwrap_or_default();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert_eq!(
        job_condition(&job, "FailureTarget").unwrap_or_default()["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(job["status"]["failed"], 2);
    let describe = server.must_kubectl(["describe", "job", "flaky"]);
    assert!(describe.contains("BackoffLimitExceeded"), "{describe}");
}

#[test]
fn indexed_job_runs_each_index_once() {
    let server = TestServer::start();
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &job_manifest(
            "idx",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
        ),
    );
    let pods = eventually(&server, "3 indexed pods", || {
        let p = running(&server, "idx");
        (p.len() == 3).then_some(p)
    });
    let mut indexes: Vec<String> = pods
        .iter()
        .map(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    for p in &pods {
        let i = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap_or_default();
        assert!(name(p).starts_with(&format!("idx-{i}-")), "{}", name(p));
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            i
        );
        let env = &p["spec"]["containers"][0]["env"];
        assert!(env.to_string().contains("JOB_COMPLETION_INDEX"), "{env}");
    }
    let by_index = |i: &str| {
        pods.iter()
            .find(|p| p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == i)
            .map(name)
            .unwrap_or_default()
    };
    set_phase(&server, &by_index("0"), "Succeeded", 0);
    set_phase(&server, &by_index("2"), "Succeeded", 0);
    eventually(&server, "completedIndexes 0,2", || {
        (get_json(&server, &["get", "job", "idx"])["status"]["completedIndexes"] == "0,2")
            .then_some(())
    });
    // Index 1 fails once: it is retried under the same index.
    set_phase(&server, &by_index("1"), "Failed", 1);
    let retry = eventually(&server, "a new pod for index 1", || {
        running(&server, "idx").into_iter().next()
    });
    assert_eq!(
        retry["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"],
        "1"
    );
    set_phase(&server, &name(&retry), "Succeeded", 0);
    server.must_kubectl([
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=30s",
    ]);
    let job = get_json(&server, &["get", "job", "idx"]);
    assert_eq!(job["status"]["completedIndexes"], "0-2");
    assert_eq!(job["status"]["succeeded"], 3);
}

#[test]
fn pod_failure_policy_fail_job_and_suspend_and_ttl() {
    let server = TestServer::start();
    let spec = "  backoffLimit: 5\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        containerName: c\n        operator: In\n        values: [42]";
    server.must_kubectl_stdin(["apply", "-f", "-"], &job_manifest("policy", spec));
    let p = eventually(&server, "a pod", || {
        running(&server, "policy").into_iter().next()
    });
    set_phase(&server, &name(&p), "Failed", 42);
    let job = eventually(&server, "Failed by the pod failure policy", || {
        let j = get_json(&server, &["get", "job", "policy"]);
        job_condition(&j, "Failed").map(|_| j)
    });
    let failed = job_condition(&job, "Failed").unwrap_or_default();
    assert_eq!(failed["reason"], "PodFailurePolicy");
    let msg = failed["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("Container c for pod default/policy-")
            && msg.ends_with("failed with exit code 42 matching FailJob rule at index 0"),
        "{msg}"
    );

    // suspend: no pods until resumed.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &job_manifest("later", "  suspend: true\n  ttlSecondsAfterFinished: 5"),
    );
    eventually(&server, "Suspended condition", || {
        let j = get_json(&server, &["get", "job", "later"]);
        job_condition(&j, "Suspended").filter(|c| c["reason"] == "JobSuspended")
    });
    assert!(job_pods(&server, "later").is_empty());
    server.must_kubectl([
        "patch",
        "job",
        "later",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    let p = eventually(&server, "a pod after resume", || {
        running(&server, "later").into_iter().next()
    });
    set_phase(&server, &name(&p), "Succeeded", 0);
    server.must_kubectl([
        "wait",
        "--for=condition=complete",
        "job/later",
        "--timeout=30s",
    ]);
    // ttlSecondsAfterFinished: 5 (room for `kubectl wait` on a loaded machine) → the Job is deleted.
    eventually(&server, "the finished Job deleted after its TTL", || {
        (!server.kubectl(["get", "job", "later"]).status.success()).then_some(())
    });
}

//! The CronJob controller with simulated nodes and stock kubectl: Jobs on schedule named by the
//! scheduled minute, `concurrencyPolicy` Forbid / Replace / Allow across one real minute
//! boundary, suspend and missed activations, history limits, and
//! `kubectl create job --from=cronjob/x`.
//!
//! A missed activation is what a controller that was down sees: the tests set
//! `status.lastScheduleTime` a few minutes back (as a restarted controller would find it), so
//! the first Job is due at once and only the second needs a real minute boundary.

use std::time::Duration;

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::nodes::{THREE_NODES, must_have_ready_nodes, must_wait_for};
use crate::workloads::{get_json, items, name};

fn cronjob(name: &str, schedule: &str, extra_spec: &str, sleep: u32) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: "{schedule}"
{extra_spec}
  jobTemplate:
    metadata:
      labels:
        cron: {name}
    spec:
      template:
        metadata:
          labels:
            cron: {name}
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
          - name: c
            image: busybox
            command: ["sleep", "{sleep}"]
"#
    )
}

/// Sets `status.lastScheduleTime` `minutes` back, as a controller that was down would find it.
fn missed_since(server: &TestServer, cj: &str, minutes: i64) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        - minutes * 60;
    let t = t - t.rem_euclid(60);
    let stamp = rfc3339(t);
    server.must_kubectl([
        "patch",
        "cronjob",
        cj,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"lastScheduleTime":"{stamp}"}}}}"#),
    ]);
}

/// Seconds since the epoch as RFC 3339 UTC (civil-from-days, no date crate needed).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Sleeps until at most `latest` seconds past a minute boundary, so that a phase that must see
/// exactly one scheduled minute does not straddle the next one.
fn early_in_a_minute(latest: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now % 60 > latest {
        std::thread::sleep(Duration::from_secs(60 - now % 60 + 1));
    }
}

fn jobs_of(server: &TestServer, cj: &str) -> Vec<Value> {
    let mut v: Vec<Value> = items(server, &["get", "jobs", "-l", &format!("cron={cj}")])
        .into_iter()
        .filter(|j| j["metadata"]["deletionTimestamp"].is_null())
        .collect();
    v.sort_by_key(name);
    v
}

fn active_names(server: &TestServer, cj: &str) -> Vec<String> {
    let c = get_json(server, &["get", "cronjob", cj]);
    let mut v: Vec<String> = c["status"]["active"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn cronjob_creates_jobs_on_schedule_and_honours_forbid_replace_and_allow() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    // Everything up to "one Job each" must happen within one minute: "allow" runs a second
    // Job at the next boundary.
    early_in_a_minute(15);
    for (cj, policy) in [
        ("forbid", "Forbid"),
        ("replace", "Replace"),
        ("allow", "Allow"),
    ] {
        server.must_kubectl_stdin(
            ["apply", "-f", "-"],
            &cronjob(
                cj,
                "* * * * *",
                &format!("  concurrencyPolicy: {policy}"),
                3600,
            ),
        );
        missed_since(&server, cj, 3);
    }
    // The missed activation runs at once: one Job each, named by the scheduled minute.
    let mut first = Vec::new();
    for cj in ["forbid", "replace", "allow"] {
        let jobs = must_wait_for(
            &server,
            &format!("{cj}'s first Job"),
            Duration::from_secs(30),
            || {
                let j = jobs_of(&server, cj);
                if j.len() == 1 {
                    Ok(j)
                } else {
                    Err(format!("{:?}", j.iter().map(name).collect::<Vec<_>>()))
                }
            },
        );
        let job = &jobs[0];
        let jname = name(job);
        let minutes: i64 = jname
            .strip_prefix(&format!("{cj}-"))
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("job name {jname}"));
        let stamp =
            job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        assert_eq!(stamp, rfc3339(minutes * 60), "{job}");
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);
        must_wait_for(
            &server,
            "status.active and lastScheduleTime",
            Duration::from_secs(30),
            || {
                let c = get_json(&server, &["get", "cronjob", cj]);
                let ok = active_names(&server, cj) == [jname.clone()]
                    && c["status"]["lastScheduleTime"].as_str() == Some(stamp.as_str());
                if ok {
                    Ok(())
                } else {
                    Err(c["status"].to_string())
                }
            },
        );
        first.push((cj, jname));
    }
    let table = server.must_kubectl(["get", "cronjob", "allow"]);
    assert!(
        crate::util::squash(&table).contains("allow * * * * * <none> False 1"),
        "{table}"
    );
    // The next real minute boundary: Allow runs a second Job beside the first, Replace
    // replaces its Job, Forbid skips and says why.
    let allowed = must_wait_for(
        &server,
        "allow's second Job",
        Duration::from_secs(90),
        || {
            let a = active_names(&server, "allow");
            if a.len() == 2 {
                Ok(a)
            } else {
                Err(format!("{a:?}"))
            }
        },
    );
    assert!(allowed.contains(&first[2].1), "{allowed:?}");
    must_wait_for(
        &server,
        "replace's Job replaced",
        Duration::from_secs(30),
        || {
            let a = active_names(&server, "replace");
            let jobs: Vec<String> = jobs_of(&server, "replace").iter().map(name).collect();
            let ok = a.len() == 1 && a[0] != first[1].1 && jobs == a;
            if ok {
                Ok(())
            } else {
                Err(format!("active {a:?}, jobs {jobs:?}"))
            }
        },
    );
    must_wait_for(
        &server,
        "forbid's JobAlreadyActive event",
        Duration::from_secs(30),
        || {
            let ev = server.must_kubectl([
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=forbid",
            ]);
            if ev.contains("JobAlreadyActive") {
                Ok(ev)
            } else {
                Err(ev)
            }
        },
    );
    assert_eq!(active_names(&server, "forbid"), [first[0].1.clone()]);
    assert_eq!(jobs_of(&server, "forbid").len(), 1);
    let ev = server.must_kubectl([
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=replace",
    ]);
    assert!(ev.contains(&format!("Deleted job {}", first[1].1)), "{ev}");
    assert!(ev.contains("Created job replace-"), "{ev}");
}

#[test]
fn suspended_cronjob_waits_and_history_limits_keep_the_newest_jobs() {
    let server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    // Suspended: a missed activation does not run until the CronJob is resumed.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &cronjob("paused", "*/5 * * * *", "  suspend: true", 1),
    );
    missed_since(&server, "paused", 11);
    std::thread::sleep(Duration::from_secs(3));
    assert!(jobs_of(&server, "paused").is_empty());
    server.must_kubectl([
        "patch",
        "cronjob",
        "paused",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    let job = must_wait_for(
        &server,
        "the missed Job after resuming",
        Duration::from_secs(30),
        || {
            let j = jobs_of(&server, "paused");
            if j.len() == 1 {
                Ok(j[0].clone())
            } else {
                Err(format!("{j:?}"))
            }
        },
    );
    let minutes: i64 = name(&job)
        .trim_start_matches("paused-")
        .parse()
        .unwrap_or(1);
    assert_eq!(minutes % 5, 0, "{}", name(&job));

    // History: successful Jobs beyond the limit go, oldest first; kubectl create job --from
    // makes Jobs the CronJob owns.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &cronjob("nightly", "0 3 1 1 *", "  successfulJobsHistoryLimit: 1", 1),
    );
    server.must_kubectl(["create", "job", "run-1", "--from=cronjob/nightly"]);
    server.must_kubectl([
        "wait",
        "--for=condition=complete",
        "job/run-1",
        "--timeout=60s",
    ]);
    std::thread::sleep(Duration::from_millis(1100));
    server.must_kubectl(["create", "job", "run-2", "--from=cronjob/nightly"]);
    server.must_kubectl([
        "wait",
        "--for=condition=complete",
        "job/run-2",
        "--timeout=60s",
    ]);
    must_wait_for(
        &server,
        "run-1 removed by the history limit",
        Duration::from_secs(30),
        || {
            let j: Vec<String> = jobs_of(&server, "nightly").iter().map(name).collect();
            if j == ["run-2"] {
                Ok(())
            } else {
                Err(format!("{j:?}"))
            }
        },
    );
    let c = get_json(&server, &["get", "cronjob", "nightly"]);
    let run2 = get_json(&server, &["get", "job", "run-2"]);
    assert_eq!(
        c["status"]["lastSuccessfulTime"], run2["status"]["completionTime"],
        "{c}"
    );
    let ev = server.must_kubectl([
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=nightly",
    ]);
    assert!(ev.contains("Deleted job run-1"), "{ev}");
}

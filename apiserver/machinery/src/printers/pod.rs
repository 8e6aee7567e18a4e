//! Pods: `NAME READY STATUS RESTARTS AGE` (+ wide `IP NODE NOMINATED NODE READINESS GATES`),
//! with upstream's STATUS derivation from init and app container states.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::format::{age, human_duration_nanos, list, name, nanos_between, parse_time, text};
use super::{AGE, ColumnDefinition, NAME, Printer, col, wide};

const COLUMNS: &[ColumnDefinition] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled.",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\"",
    ),
];

/// `NodeUnreachablePodReason`: the node controller's reason for pods on a lost node.
const NODE_LOST: &str = "NodeLost";

pub(super) fn lookup(group: &str, resource: &str) -> Option<Printer> {
    match (group, resource) {
        ("", "pods") => Some(Printer {
            columns: COLUMNS,
            cells,
        }),
        _ => None,
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn restart_count(status: &Value) -> i64 {
    status
        .get("restartCount")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// `finishedAt` of the container's last termination, if any.
fn last_terminated_at(status: &Value) -> Option<Timestamp> {
    parse_time(status.pointer("/lastState/terminated/finishedAt"))
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The reason a terminated state without `reason` shows: `Signal:N` or `ExitCode:N`.
fn terminated_code(terminated: &Value, prefix: &str) -> String {
    let signal = terminated
        .get("signal")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        let code = terminated
            .get("exitCode")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        format!("{prefix}ExitCode:{code}")
    }
}

fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec_containers = list(pod, "/spec/containers");
    let init_specs = list(pod, "/spec/initContainers");
    let conditions = list(pod, "/status/conditions");
    let is_restartable_init = |container_name: &str| {
        init_specs
            .iter()
            .any(|c| s(c, "name") == container_name && s(c, "restartPolicy") == "Always")
    };

    let total = spec_containers.len()
        + init_specs
            .iter()
            .filter(|c| s(c, "restartPolicy") == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = text(pod, "/status/phase");
    let mut reason = phase.clone();
    let status_reason = text(pod, "/status/reason");
    if !status_reason.is_empty() {
        reason = status_reason.clone();
    }
    if conditions
        .iter()
        .any(|c| s(c, "type") == "PodScheduled" && s(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_owned();
    }

    let init_statuses = list(pod, "/status/initContainerStatuses");
    let mut initializing = false;
    for (i, st) in init_statuses.iter().enumerate() {
        restarts += restart_count(st);
        last_restart = later(last_restart, last_terminated_at(st));
        let restartable = is_restartable_init(s(st, "name"));
        if restartable {
            sidecar_restarts += restart_count(st);
            last_sidecar_restart = later(last_sidecar_restart, last_terminated_at(st));
        }
        let terminated = st.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting_reason = st
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let exit_code = terminated
            .and_then(|t| t.get("exitCode"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if terminated.is_some() && exit_code == 0 {
            continue;
        }
        if restartable && st.get("started").and_then(Value::as_bool) == Some(true) {
            if st.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let r = s(t, "reason");
            reason = if r.is_empty() {
                terminated_code(t, "Init:")
            } else {
                format!("Init:{r}")
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .find(|c| s(c, "type") == "Initialized")
        .is_some_and(|c| s(c, "status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for st in list(pod, "/status/containerStatuses").iter().rev() {
            restarts += restart_count(st);
            last_restart = later(last_restart, last_terminated_at(st));
            let waiting_reason = st
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let terminated = st.pointer("/state/terminated").filter(|t| t.is_object());
            let running = st.pointer("/state/running").is_some_and(Value::is_object);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_owned();
            } else if let Some(t) = terminated {
                let r = s(t, "reason");
                reason = if r.is_empty() {
                    terminated_code(t, "")
                } else {
                    r.to_owned()
                };
            } else if st.get("ready").and_then(Value::as_bool) == Some(true) && running {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| s(c, "type") == "Ready" && s(c, "status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_owned();
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && status_reason == NODE_LOST {
        reason = "Unknown".to_owned();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_owned();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration_nanos(nanos_between(t, now))
        ),
        _ => restarts.to_string(),
    };

    let or_none = |v: String| if v.is_empty() { "<none>".to_owned() } else { v };
    let pod_ip = or_none(text(pod, "/status/podIPs/0/ip"));
    let node = or_none(text(pod, "/spec/nodeName"));
    let nominated = or_none(text(pod, "/status/nominatedNodeName"));
    let gates = list(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                let wanted = s(g, "conditionType");
                conditions
                    .iter()
                    .find(|c| s(c, "type") == wanted)
                    .is_some_and(|c| s(c, "status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    vec![
        json!(name(pod)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(pod, now)),
        json!(pod_ip),
        json!(node),
        json!(nominated),
        json!(readiness_gates),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::cells;
    use super::super::test_support::{names, now};
    use serde_json::{Value, json};

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": "2025-06-01T10:00:00Z"},
            "spec": spec,
            "status": status,
        })
    }

    fn row(p: &Value) -> Vec<String> {
        cells("", "pods", p, now())
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn columns_are_upstreams() {
        assert_eq!(
            names("", "pods"),
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
    }

    #[test]
    fn crash_looping_container_with_restarts() {
        let p = pod(
            json!({"nodeName": "node-1", "containers": [{"name": "app"}, {"name": "sidecar"}]}),
            json!({
                "phase": "Running",
                "podIPs": [{"ip": "10.0.0.5"}],
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "app", "ready": false, "restartCount": 3,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2025-06-01T11:55:00Z"}}},
                    {"name": "sidecar", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2025-06-01T10:00:05Z"}}}
                ]
            }),
        );
        assert_eq!(
            row(&p),
            [
                "web-0",
                "1/2",
                "CrashLoopBackOff",
                "3 (5m ago)",
                "120m",
                "10.0.0.5",
                "node-1",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn pending_pod_waiting_on_init_container() {
        let p = pod(
            json!({"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}),
            json!({
                "phase": "Pending",
                "initContainerStatuses": [{"name": "init", "ready": false, "restartCount": 0, "state": {"running": {}}}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]
            }),
        );
        let r = row(&p);
        assert_eq!(&r[1..4], ["0/1", "Init:0/1", "0"]);
    }

    #[test]
    fn init_failures_show_reason_or_exit_code() {
        let failed = pod(
            json!({"initContainers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "app"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "restartCount": 2, "state": {"terminated": {"exitCode": 2}}}
            ]}),
        );
        assert_eq!(&row(&failed)[2..4], ["Init:ExitCode:2", "2"]);
        let backoff = pod(
            json!({"initContainers": [{"name": "a"}], "containers": [{"name": "app"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
            ]}),
        );
        assert_eq!(row(&backoff)[2], "Init:ImagePullBackOff");
    }

    #[test]
    fn running_pod_with_started_sidecar_counts_it_ready() {
        let p = pod(
            json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}],
                   "readinessGates": [{"conditionType": "example.com/gate"}]}),
            json!({
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"},
                               {"type": "example.com/gate", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                    "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 137, "finishedAt": "2025-06-01T11:00:00Z"}}}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]
            }),
        );
        let r = row(&p);
        assert_eq!(&r[1..4], ["2/2", "Running", "1 (60m ago)"]);
        assert_eq!(r[8], "1/1");
    }

    #[test]
    fn completed_pods_and_terminating_pods() {
        let done = pod(
            json!({"containers": [{"name": "job"}]}),
            json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "job", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]}),
        );
        assert_eq!(&row(&done)[1..3], ["0/1", "Completed"]);

        let mut deleting = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}]}),
        );
        deleting["metadata"]["deletionTimestamp"] = json!("2025-06-01T11:59:00Z");
        assert_eq!(&row(&deleting)[1..3], ["1/1", "Terminating"]);

        deleting["status"]["reason"] = json!("NodeLost");
        assert_eq!(row(&deleting)[2], "Unknown");

        let killed = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Failed", "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
        );
        assert_eq!(row(&killed)[2], "Signal:9");
    }

    #[test]
    fn scheduling_gated_and_evicted_reasons() {
        let gated = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(row(&gated)[2], "SchedulingGated");
        let evicted = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Failed", "reason": "Evicted"}),
        );
        assert_eq!(row(&evicted)[2], "Evicted");
    }
}

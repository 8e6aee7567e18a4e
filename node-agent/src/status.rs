//! Pod status as the kubelet writes it (upstream `pkg/kubelet/kubelet_pods.go`
//! `generateAPIPodStatus`, `getPhase`, and `pkg/kubelet/status/generate.go`): phase, the
//! conditions, container statuses, IPs, start time and QoS class.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition};
use serde_json::{Map, Value, json};

/// RFC 3339 with seconds, as `metav1.Time` serializes.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What a container looks like to the status writer.
#[derive(Debug, Clone, PartialEq)]
pub enum CState {
    /// Not running: `reason` (ContainerCreating, PodInitializing, CrashLoopBackOff, ...).
    Waiting {
        /// Machine-readable reason.
        reason: String,
        /// Human-readable detail.
        message: Option<String>,
    },
    /// Running since `started_at`.
    Running {
        /// Start time (RFC 3339).
        started_at: String,
    },
    /// Exited.
    Terminated {
        /// Exit code.
        exit_code: i32,
        /// Completed / Error.
        reason: String,
        /// Start time.
        started_at: String,
        /// Exit time.
        finished_at: String,
        /// The runtime's id (`scheme://id`).
        container_id: String,
    },
}

impl CState {
    /// The `state` / `lastState` object.
    pub fn to_json(&self) -> Value {
        match self {
            CState::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            CState::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            CState::Terminated {
                exit_code,
                reason,
                started_at,
                finished_at,
                container_id,
            } => json!({"terminated": {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": started_at,
                "finishedAt": finished_at,
                "containerID": container_id,
            }}),
        }
    }
}

/// One container's status line.
#[derive(Debug, Clone)]
pub struct ContainerLine {
    /// Container name.
    pub name: String,
    /// Image from the spec.
    pub image: String,
    /// Digest reference once pulled.
    pub image_id: String,
    /// `scheme://id` of the current container, once created.
    pub container_id: Option<String>,
    /// Current state.
    pub state: CState,
    /// Previous termination, if any.
    pub last_state: Option<CState>,
    /// Ready (running and, simulated, not `never-ready`).
    pub ready: bool,
    /// Restarts so far.
    pub restart_count: i32,
}

impl ContainerLine {
    /// The `containerStatuses[]` entry.
    pub fn to_json(&self) -> Value {
        let started = matches!(self.state, CState::Running { .. });
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        m.insert("state".into(), self.state.to_json());
        m.insert(
            "lastState".into(),
            self.last_state
                .as_ref()
                .map(CState::to_json)
                .unwrap_or_else(|| json!({})),
        );
        m.insert("ready".into(), json!(self.ready));
        m.insert("restartCount".into(), json!(self.restart_count));
        m.insert("image".into(), json!(self.image));
        m.insert("imageID".into(), json!(self.image_id));
        if let Some(id) = &self.container_id {
            m.insert("containerID".into(), json!(id));
        }
        m.insert("started".into(), json!(started));
        Value::Object(m)
    }

    /// Whether it currently runs.
    pub fn running(&self) -> bool {
        matches!(self.state, CState::Running { .. })
    }
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct PodView<'a> {
    /// The pod as last seen.
    pub pod: &'a Pod,
    /// The conditions this node agent last wrote (None: it has not written since it took
    /// the pod, or its last write failed). Their transition times are kept, as upstream's
    /// status manager keeps them from its own cache: the pod seen through the watch may not
    /// show our last write yet, and computing against it would stamp a new
    /// `lastTransitionTime` and write again (under load, several times per pod).
    pub written_conditions: Option<&'a [PodCondition]>,
    /// The sandbox exists (PodReadyToStartContainers).
    pub sandbox_ready: bool,
    /// All init containers completed.
    pub initialized: bool,
    /// Phase as decided by the worker.
    pub phase: &'static str,
    /// Node address.
    pub host_ip: &'a str,
    /// Pod address, once the sandbox exists.
    pub pod_ip: Option<&'a str>,
    /// When the worker first accepted the pod.
    pub start_time: &'a str,
    /// Init container statuses.
    pub init: &'a [ContainerLine],
    /// Regular container statuses.
    pub containers: &'a [ContainerLine],
}

fn condition(
    v: &PodView<'_>,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> Value {
    let pod = v.pod;
    let status = if ok { "True" } else { "False" };
    // Keep lastTransitionTime when the status did not change.
    let prev = match v.written_conditions {
        Some(cs) => cs.iter().find(|c| c.type_ == type_),
        None => pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_)),
    };
    let ltt = match prev {
        Some(c) if c.status == status => c
            .last_transition_time
            .as_ref()
            .map(|t| rfc3339(t.0))
            .unwrap_or_else(|| rfc3339(Timestamp::now())),
        _ => rfc3339(Timestamp::now()),
    };
    let mut m = Map::new();
    m.insert("type".into(), json!(type_));
    if let Some(g) = pod.metadata.generation {
        m.insert("observedGeneration".into(), json!(g));
    }
    m.insert("status".into(), json!(status));
    m.insert("lastProbeTime".into(), Value::Null);
    m.insert("lastTransitionTime".into(), json!(ltt));
    if let Some(r) = reason {
        m.insert("reason".into(), json!(r));
    }
    if let Some(msg) = message {
        m.insert("message".into(), json!(msg));
    }
    Value::Object(m)
}

/// The QoS class (upstream `pkg/apis/core/v1/helper/qos`).
pub fn qos_class(containers: &[Container]) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let res = c.resources.as_ref();
        let req = res.and_then(|r| r.requests.as_ref());
        let lim = res.and_then(|r| r.limits.as_ref());
        for k in ["cpu", "memory"] {
            let r = req.and_then(|m| m.get(k));
            let l = lim.and_then(|m| m.get(k));
            if r.is_some() || l.is_some() {
                any = true;
            }
            match (r, l) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn unready_names(lines: &[ContainerLine]) -> Vec<String> {
    lines
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.clone())
        .collect()
}

/// The `status` object the kubelet writes.
pub fn pod_status(v: &PodView<'_>) -> Value {
    let pod = v.pod;
    let completed = v.phase == "Succeeded";
    let mut conds = Vec::new();
    conds.push(condition(
        v,
        "PodReadyToStartContainers",
        v.sandbox_ready,
        None,
        None,
    ));
    let pending_init: Vec<String> = v
        .init
        .iter()
        .filter(|c| !matches!(c.state, CState::Terminated { exit_code: 0, .. }))
        .map(|c| c.name.clone())
        .collect();
    conds.push(if completed {
        condition(v, "Initialized", true, Some("PodCompleted"), None)
    } else if v.initialized {
        condition(v, "Initialized", true, None, None)
    } else {
        condition(
            v,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                pending_init.join(" ")
            )),
        )
    });
    let unready = unready_names(v.containers);
    let (ready, reason, message) = if completed {
        (false, Some("PodCompleted"), None)
    } else if !v.initialized {
        (
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                pending_init.join(" ")
            )),
        )
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    conds.push(condition(v, "Ready", ready, reason, message.clone()));
    conds.push(condition(v, "ContainersReady", ready, reason, message));
    // Conditions others own (PodScheduled from the scheduler, DisruptionTarget, readiness gates'
    // types) are kept as they are; PodScheduled is added when a pod came pre-bound.
    let owned = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
    ];
    let mut has_scheduled = false;
    for c in pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if owned.contains(&c.type_.as_str()) {
            continue;
        }
        has_scheduled |= c.type_ == "PodScheduled";
        if let Ok(v) = serde_json::to_value(c) {
            conds.push(v);
        }
    }
    if !has_scheduled {
        conds.push(condition(v, "PodScheduled", true, None, None));
    }
    let mut s = Map::new();
    if let Some(g) = pod.metadata.generation {
        s.insert("observedGeneration".into(), json!(g));
    }
    s.insert("phase".into(), json!(v.phase));
    s.insert("conditions".into(), Value::Array(conds));
    s.insert("hostIP".into(), json!(v.host_ip));
    s.insert("hostIPs".into(), json!([{"ip": v.host_ip}]));
    if let Some(ip) = v.pod_ip {
        s.insert("podIP".into(), json!(ip));
        s.insert("podIPs".into(), json!([{"ip": ip}]));
    }
    s.insert("startTime".into(), json!(v.start_time));
    if !v.init.is_empty() {
        s.insert(
            "initContainerStatuses".into(),
            Value::Array(v.init.iter().map(ContainerLine::to_json).collect()),
        );
    }
    s.insert(
        "containerStatuses".into(),
        Value::Array(v.containers.iter().map(ContainerLine::to_json).collect()),
    );
    let qos = pod
        .status
        .as_ref()
        .and_then(|s| s.qos_class.clone())
        .unwrap_or_else(|| {
            qos_class(
                pod.spec
                    .as_ref()
                    .map(|s| s.containers.as_slice())
                    .unwrap_or(&[]),
            )
            .into()
        });
    s.insert("qosClass".into(), json!(qos));
    if let Some(n) = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_ref())
    {
        s.insert("nominatedNodeName".into(), json!(n));
    }
    Value::Object(s)
}

/// Go's `time.Duration.String()` for whole seconds (`10s`, `1m20s`, `5m0s`).
pub fn go_duration(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(go_duration(10), "10s");
        assert_eq!(go_duration(80), "1m20s");
        assert_eq!(go_duration(300), "5m0s");
    }

    #[test]
    fn qos() {
        let c: Container = serde_json::from_value(json!({"name": "a"})).unwrap_or_default();
        assert_eq!(qos_class(std::slice::from_ref(&c)), "BestEffort");
        let g: Container = serde_json::from_value(json!({"name": "a", "resources": {
            "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}))
        .unwrap_or_default();
        assert_eq!(qos_class(std::slice::from_ref(&g)), "Guaranteed");
        let b: Container = serde_json::from_value(
            json!({"name": "a", "resources": {"requests": {"cpu": "100m"}}}),
        )
        .unwrap_or_default();
        assert_eq!(qos_class(&[b]), "Burstable");
    }

    fn ready_of(status: &Value) -> (String, String) {
        let c = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .cloned()
            .unwrap_or_default();
        (
            c["status"].as_str().unwrap_or_default().to_string(),
            c["lastTransitionTime"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    /// The pod seen through the watch may lag our own write: transition times come from what
    /// we wrote, so recomputing the same status later yields the same bytes (no second write).
    #[test]
    fn transition_times_come_from_our_last_write_not_a_stale_pod() {
        let stale: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }))
        .unwrap_or_default();
        let ours: Vec<PodCondition> = serde_json::from_value(json!([{"type": "Ready",
            "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}]))
        .unwrap_or_default();
        fn view<'a>(stale: &'a Pod, written: Option<&'a [PodCondition]>) -> PodView<'a> {
            PodView {
                pod: stale,
                written_conditions: written,
                sandbox_ready: true,
                initialized: true,
                phase: "Running",
                host_ip: "10.0.0.1",
                pod_ip: Some("10.244.0.2"),
                start_time: "2026-01-01T00:00:00Z",
                init: &[],
                containers: &[],
            }
        }
        // Against the stale pod: Ready turned True now, a fresh transition time.
        let fresh = ready_of(&pod_status(&view(&stale, None)));
        assert_eq!(fresh.0, "True");
        assert_ne!(fresh.1, "2026-01-01T00:00:00Z");
        // Against what we wrote: the time we wrote is kept.
        let kept = ready_of(&pod_status(&view(&stale, Some(&ours))));
        assert_eq!(
            kept,
            ("True".to_string(), "2026-01-01T00:00:05Z".to_string())
        );
    }
}

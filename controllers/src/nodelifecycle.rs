//! Node lifecycle (upstream `pkg/controller/nodelifecycle` and its taint eviction
//! controller) and pod garbage collection (upstream `pkg/controller/podgc`).
//!
//! - A node whose `kube-node-lease` Lease (or Ready heartbeat) has not changed for
//!   `--node-monitor-grace-period` gets its conditions set to `Unknown` ("Kubelet stopped
//!   posting node status.") and the `node.kubernetes.io/unreachable` NoSchedule/NoExecute
//!   taints; a node reporting `Ready=False` gets the `not-ready` taints; both go when it is
//!   Ready again.
//! - Pods on a node with NoExecute taints they do not tolerate (or tolerate only for
//!   `tolerationSeconds`) are evicted: `DisruptionTarget` condition, then deletion.
//! - Pod GC: pods bound to nodes that do not exist, unscheduled pods being deleted, and
//!   terminated pods beyond `--terminated-pod-gc-threshold` are deleted.
//!
//! The monitor is a loop over explicit per-node observations; it needs no watch of its own
//! beyond the shared node, lease and pod informers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::informer::Informer;
use crate::podutil::is_terminal;

/// `node.kubernetes.io/unreachable`.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `node.kubernetes.io/not-ready`.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";

/// Settings (kube-controller-manager flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// `--node-monitor-grace-period` (40 s).
    pub grace_period: Duration,
    /// `--node-monitor-period` (5 s).
    pub monitor_period: Duration,
    /// `--terminated-pod-gc-threshold` (12500).
    pub terminated_pod_gc_threshold: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(40),
            monitor_period: Duration::from_secs(5),
            terminated_pod_gc_threshold: 12_500,
        }
    }
}

/// The last heartbeat seen for a node and when we saw it change (upstream `nodeHealthData`).
struct Health {
    heartbeat: String,
    observed: Instant,
}

/// Runs the node lifecycle monitor, the taint eviction and pod GC until the informers stop.
pub async fn run(client: Client, pods: Informer<Pod>, opts: Options) -> anyhow::Result<()> {
    let nodes = Informer::<Node>::spawn(Api::all(client.clone()));
    let leases = Informer::<Lease>::spawn(Api::namespaced(client.clone(), "kube-node-lease"));
    nodes.wait_until_ready().await;
    leases.wait_until_ready().await;
    let mut health: HashMap<String, Health> = HashMap::new();
    let mut missing: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(
        opts.monitor_period
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(200)),
    );
    loop {
        tick.tick().await;
        let node_list = nodes.store().state();
        for node in &node_list {
            if let Err(e) = monitor_node(&client, node, &leases, &mut health, &opts).await {
                tracing::debug!(node = %node.name_any(), error = %e, "node lifecycle");
            }
        }
        // One set of names per tick: with 1,000 nodes and 30,000 pods, a scan of the node list
        // per pod (and per health entry) cost tens of millions of string copies every second.
        let names: HashSet<&str> = node_list
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        health.retain(|n, _| names.contains(n.as_str()));
        let all_pods = pods.store().state();
        if let Err(e) = evict_tainted(&client, &node_list, &all_pods).await {
            tracing::debug!(error = %e, "taint eviction");
        }
        if let Err(e) = pod_gc(&client, &names, &all_pods, &opts, &mut missing).await {
            tracing::debug!(error = %e, "pod gc");
        }
    }
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

async fn monitor_node(
    client: &Client,
    node: &Node,
    leases: &Informer<Lease>,
    health: &mut HashMap<String, Health>,
    opts: &Options,
) -> Result<(), kube::Error> {
    let name = node.name_any();
    let lease = leases
        .store()
        .get(&kube::runtime::reflector::ObjectRef::new(&name).within("kube-node-lease"));
    let heartbeat = format!(
        "{:?}|{:?}",
        lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.clone()),
        ready_condition(node).and_then(|c| c.last_heartbeat_time.clone()),
    );
    let h = health.entry(name.clone()).or_insert_with(|| Health {
        heartbeat: heartbeat.clone(),
        observed: Instant::now(),
    });
    if h.heartbeat != heartbeat {
        h.heartbeat = heartbeat;
        h.observed = Instant::now();
    }
    let now = Timestamp::now();
    let api: Api<Node> = Api::all(client.clone());
    let ready = ready_condition(node).map(|c| c.status.clone());
    if h.observed.elapsed() > opts.grace_period && ready.as_deref() != Some("Unknown") {
        // upstream `tryUpdateNodeHealth`: every condition becomes Unknown.
        let mut updated = node.clone();
        let st = updated.status.get_or_insert_with(Default::default);
        let conds = st.conditions.get_or_insert_with(Vec::new);
        let never = !conds.iter().any(|c| c.type_ == "Ready");
        if never {
            conds.push(NodeCondition {
                type_: "Ready".into(),
                ..Default::default()
            });
        }
        for c in conds.iter_mut() {
            if c.status != "Unknown" {
                c.last_transition_time = Some(Time(now));
            }
            c.status = "Unknown".into();
            // upstream: "NodeStatusNeverUpdated" for a node that never reported.
            let (reason, message) = if never {
                (
                    "NodeStatusNeverUpdated",
                    "Kubelet never posted node status.",
                )
            } else {
                ("NodeStatusUnknown", "Kubelet stopped posting node status.")
            };
            c.reason = Some(reason.into());
            c.message = Some(message.into());
        }
        tracing::info!(node = %name, "node stopped posting status: Ready=Unknown");
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e),
        }
        return Ok(());
    }
    // Taints follow the Ready condition.
    let want: Option<&str> = match ready.as_deref() {
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        Some("False") => Some(TAINT_NOT_READY),
        _ => None,
    };
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut kept: Vec<Taint> = taints
        .iter()
        .filter(|t| {
            let ours = t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY;
            !ours || Some(t.key.as_str()) == want
        })
        .cloned()
        .collect();
    if let Some(key) = want {
        for effect in ["NoSchedule", "NoExecute"] {
            if !kept.iter().any(|t| t.key == key && t.effect == effect) {
                kept.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    value: None,
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    if kept != taints {
        let patch = json!({"spec": {"taints": if kept.is_empty() { serde_json::Value::Null } else { json!(kept) }},
            "metadata": {"resourceVersion": node.metadata.resource_version}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// upstream `ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    let exists = t.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists;
    }
    if key != taint.key {
        return false;
    }
    exists || t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
}

/// When a pod must leave a node with these NoExecute taints: None = never, Some(t) = at t
/// (upstream `getMinTolerationTime` from each taint's timeAdded).
pub fn eviction_time(pod: &Pod, taints: &[Taint]) -> Option<i64> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut at: Option<i64> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = taint.time_added.as_ref().map_or(0, |t| t.0.as_second());
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(i64::MIN);
        }
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let secs = matching
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        let t = added + secs;
        at = Some(at.map_or(t, |a| a.min(t)));
    }
    at
}

async fn mark_disruption_and_delete(
    client: &Client,
    pod: &Pod,
    reason: &str,
    message: &str,
) -> Result<(), kube::Error> {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if !conditions.iter().any(|c| c.type_ == "DisruptionTarget") {
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(Timestamp::now())),
            ..Default::default()
        });
        let patch = json!({"status": {"conditions": conditions}});
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e),
        }
    }
    match api.delete(&pod.name_any(), &DeleteParams::default()).await {
        Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn evict_tainted(
    client: &Client,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
) -> Result<(), kube::Error> {
    let now = Timestamp::now().as_second();
    let tainted: HashMap<String, Vec<Taint>> = nodes
        .iter()
        .filter_map(|n| {
            let t: Vec<Taint> = n
                .spec
                .as_ref()?
                .taints
                .clone()?
                .into_iter()
                .filter(|t| t.effect == "NoExecute")
                .collect();
            (!t.is_empty()).then(|| (n.name_any(), t))
        })
        .collect();
    if tainted.is_empty() {
        return Ok(());
    }
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() || is_terminal(pod) {
            continue;
        }
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) else {
            continue;
        };
        let Some(taints) = tainted.get(node) else {
            continue;
        };
        if eviction_time(pod, taints).is_some_and(|at| at <= now) {
            tracing::info!(pod = %pod.name_any(), node = %node, "taint eviction");
            mark_disruption_and_delete(
                client,
                pod,
                "DeletionByTaintManager",
                "Taint manager: deleting due to NoExecute taint",
            )
            .await?;
        }
    }
    Ok(())
}

/// upstream `quarantineTime`: a node must be missing this long before its pods are orphans
/// (the node informer may simply not have seen a new node yet).
const QUARANTINE: Duration = Duration::from_secs(40);

async fn pod_gc(
    client: &Client,
    nodes: &HashSet<&str>,
    pods: &[Arc<Pod>],
    opts: &Options,
    missing: &mut HashMap<String, Instant>,
) -> Result<(), kube::Error> {
    // Orphans: bound to a node that has been missing for the quarantine time.
    missing.retain(|n, _| !nodes.contains(n.as_str()));
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) else {
            continue;
        };
        if nodes.contains(node.as_str()) || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let since = *missing.entry(node.clone()).or_insert_with(Instant::now);
        if since.elapsed() >= QUARANTINE {
            tracing::info!(pod = %pod.name_any(), node = %node, "pod gc: node gone");
            mark_disruption_and_delete(
                client,
                pod,
                "DeletionByPodGC",
                "PodGC: node no longer exists",
            )
            .await?;
        }
    }
    // Terminated pods beyond the threshold, oldest first.
    let mut terminated: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| is_terminal(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    if terminated.len() > opts.terminated_pod_gc_threshold {
        terminated.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let excess = terminated.len() - opts.terminated_pod_gc_threshold;
        for pod in terminated.into_iter().take(excess) {
            let api: Api<Pod> =
                Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            match api
                .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await
            {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn taint(key: &str, added: i64) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Timestamp::from_second(added).ok().map(Time),
        }
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn eviction_time_follows_toleration_seconds() {
        let t = taint(TAINT_UNREACHABLE, 1000);
        assert_eq!(
            eviction_time(&pod(vec![]), std::slice::from_ref(&t)),
            Some(i64::MIN)
        );
        let tol = Toleration {
            key: Some(TAINT_UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(300),
            value: None,
        };
        assert_eq!(
            eviction_time(&pod(vec![tol.clone()]), std::slice::from_ref(&t)),
            Some(1300)
        );
        let forever = Toleration {
            toleration_seconds: None,
            ..tol
        };
        assert_eq!(eviction_time(&pod(vec![forever]), &[t]), None);
        let any = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&any, &taint("x", 0)));
    }
}

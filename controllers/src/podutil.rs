//! Pod predicates and orderings shared by the workload controllers (upstream
//! `pkg/api/v1/pod/util.go` and `pkg/controller/controller_utils.go`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;

/// Annotation lowering or raising a pod's chance to be deleted on scale-down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The transform of the controller-manager's shared pod informer (upstream informers'
/// `SetTransform`): managedFields, volumes and the parts of containers no controller reads of
/// an existing pod (environment, mounts, probes, commands...) are dropped before the pod is
/// stored, so the cache holds what the controllers use: metadata, the scheduling fields,
/// container names, images, ports (EndpointSlices' named ports) and requests, and the whole
/// status. No controller writes a pod back from this cache (they patch), so nothing dropped
/// here can be lost on the server.
pub fn drop_unread_pod_fields(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            *c = Container {
                name: std::mem::take(&mut c.name),
                image: c.image.take(),
                ports: c.ports.take(),
                resources: c.resources.take(),
                restart_policy: c.restart_policy.take(),
                ..Container::default()
            };
        }
    }
}

/// The pod's phase, `Pending` when unset.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// `IsPodActive`: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let p = phase(pod);
    p != "Succeeded" && p != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// `IsPodTerminal`: Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// `IsPodReady`: the Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// When the pod last became Ready (None when not ready or unknown).
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = condition(pod, "Ready")?;
    if c.status != "True" {
        return None;
    }
    c.last_transition_time.as_ref().map(|t| t.0)
}

/// `IsPodAvailable`: ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(t) => t.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
        None => false,
    }
}

/// Seconds until a ready pod becomes available (None when not ready or already available).
pub fn seconds_until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<i64> {
    let since = ready_since(pod)?;
    let left = since.as_second() + i64::from(min_ready_seconds) - now.as_second();
    (left > 0).then_some(left)
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `labels` carries every key/value of `want` (a template's labels as a selector).
pub fn labels_superset(
    labels: Option<&BTreeMap<String, String>>,
    want: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    want.unwrap_or(&empty)
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// upstream `logarithmicRankDiff`: compares the log2 of the ages in nanoseconds.
fn log_rank_diff(t1: Option<Timestamp>, t2: Option<Timestamp>, now: Timestamp) -> i64 {
    let rank = |t: Option<Timestamp>| -> i64 {
        let Some(t) = t else { return -1 };
        let d = now.as_nanosecond() - t.as_nanosecond();
        if d > 0 {
            // Truncation is upstream's `int64(math.Log2(float64(d)))`.
            (d as f64).log2() as i64
        } else {
            -1
        }
    };
    rank(t1) - rank(t2)
}

/// A pod with its rank (`ActivePodsWithRanks`): how many related active pods share its node.
pub struct Ranked<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Pods of the same (indirect) owner on the same node.
    pub rank: usize,
}

/// upstream `ActivePodsWithRanks.Less`: `Less` means "delete first".
pub fn deletion_order(a: &Ranked<'_>, b: &Ranked<'_>, now: Timestamp) -> Ordering {
    let (pa, pb) = (a.pod, b.pod);
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    let (na, nb) = (node(pa), node(pb));
    // 1. Unassigned < assigned.
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // 2. Pending < Unknown < Running.
    let cmp = phase_ordinal(pa).cmp(&phase_ordinal(pb));
    if cmp != Ordering::Equal {
        return cmp;
    }
    // 3. Not ready < ready.
    let (ra, rb) = (is_ready(pa), is_ready(pb));
    if ra != rb {
        return if !ra {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // 4. Lower pod-deletion-cost < higher.
    let cmp = deletion_cost(pa).cmp(&deletion_cost(pb));
    if cmp != Ordering::Equal {
        return cmp;
    }
    // 5. Doubled up (higher rank) < not doubled up.
    if a.rank != b.rank {
        return b.rank.cmp(&a.rank);
    }
    // 6. Ready for less time < more time (logarithmic buckets; ties by UID).
    if ra && rb {
        let (ta, tb) = (ready_since(pa), ready_since(pb));
        if ta != tb {
            let d = log_rank_diff(ta, tb, now);
            return if d == 0 {
                uid(pa).cmp(&uid(pb))
            } else {
                d.cmp(&0)
            };
        }
    }
    // 7. More container restarts < fewer.
    let cmp = max_restarts(pb).cmp(&max_restarts(pa));
    if cmp != Ordering::Equal {
        return cmp;
    }
    // 8. Newer < older (logarithmic buckets; ties by UID).
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let (ca, cb) = (created(pa), created(pb));
    if ca != cb {
        let d = log_rank_diff(ca, cb, now);
        return if d == 0 {
            uid(pa).cmp(&uid(pb))
        } else {
            d.cmp(&0)
        };
    }
    Ordering::Equal
}

/// upstream `getPodsToDelete`: the `n` pods of `pods` to delete first, ranked by how many
/// `related` pods (same indirect owner) run on their node.
pub fn pods_to_delete<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    n: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    if n >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| is_active(p)) {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            *on_node.entry(node).or_default() += 1;
        }
    }
    let mut ranked: Vec<Ranked<'a>> = pods
        .iter()
        .map(|p| Ranked {
            pod: p,
            rank: p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(|n| on_node.get(n).copied())
                .unwrap_or(0),
        })
        .collect();
    ranked.sort_by(|a, b| deletion_order(a, b, now));
    ranked.into_iter().take(n).map(|r| r.pod).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// What the controllers read of a stored pod survives the informer's transform: the
    /// finalizers and annotations (Job tracking, completion index), owner, tolerations and
    /// affinity (node lifecycle, DaemonSets), named ports (EndpointSlices), requests, the
    /// whole status (exit codes for podFailurePolicy); volumes and environment do not.
    #[test]
    fn the_informer_transform_keeps_what_controllers_read() {
        let full: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j-0", "namespace": "default", "uid": "u",
                "finalizers": ["batch.kubernetes.io/job-tracking"],
                "annotations": {"batch.kubernetes.io/job-completion-index": "0"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                    "uid": "j-uid", "controller": true}],
                "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {"nodeName": "n1", "hostname": "j-0", "subdomain": "svc",
                "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 300}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name",
                        "operator": "In", "values": ["n1"]}]}]}}},
                "volumes": [{"name": "v", "emptyDir": {}}],
                "containers": [{"name": "c", "image": "busybox",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "resources": {"requests": {"cpu": "1"}},
                    "env": [{"name": "A", "value": "b"}], "command": ["sh"],
                    "livenessProbe": {"exec": {"command": ["true"]}}}]},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "c", "image": "busybox",
                "imageID": "", "ready": false, "restartCount": 2,
                "state": {"terminated": {"exitCode": 42}}}]}
        }))
        .unwrap_or_default();
        let mut p = full.clone();
        drop_unread_pod_fields(&mut p);
        let (m, fm) = (&p.metadata, &full.metadata);
        assert_eq!(m.finalizers, fm.finalizers);
        assert_eq!(m.annotations, fm.annotations);
        assert_eq!(m.owner_references, fm.owner_references);
        assert!(m.managed_fields.is_none());
        let (s, fs) = (
            p.spec.clone().unwrap_or_default(),
            full.spec.clone().unwrap_or_default(),
        );
        assert_eq!((s.tolerations, s.affinity), (fs.tolerations, fs.affinity));
        assert_eq!(
            (s.hostname, s.subdomain, s.node_name),
            (fs.hostname, fs.subdomain, fs.node_name)
        );
        assert_eq!(s.containers[0].ports, fs.containers[0].ports);
        assert_eq!(s.containers[0].resources, fs.containers[0].resources);
        assert_eq!(s.containers[0].name, "c");
        assert_eq!(p.status, full.status);
        assert!(s.volumes.is_none());
        let c = &s.containers[0];
        assert!(c.env.is_none() && c.command.is_none() && c.liveness_probe.is_none());
    }

    fn pod(
        name: &str,
        node: &str,
        phase: &str,
        ready_secs_ago: Option<i64>,
        now: Timestamp,
    ) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.metadata.creation_timestamp = Some(Time(
            now - k8s_openapi::jiff::SignedDuration::from_secs(3600),
        ));
        p.spec = Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            ..Default::default()
        });
        let conditions = ready_secs_ago.map(|ago| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(
                    now - k8s_openapi::jiff::SignedDuration::from_secs(ago),
                )),
                ..Default::default()
            }]
        });
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions,
            ..Default::default()
        });
        p
    }

    fn names(v: &[&Pod]) -> Vec<String> {
        v.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn unscheduled_then_pending_then_not_ready_then_ready() {
        let now = Timestamp::now();
        let ready = pod("ready", "n1", "Running", Some(100), now);
        let not_ready = pod("notready", "n1", "Running", None, now);
        let pending = pod("pending", "n1", "Pending", None, now);
        let unscheduled = pod("unscheduled", "", "Pending", None, now);
        let pods = vec![&ready, &not_ready, &pending, &unscheduled];
        assert_eq!(names(&pods_to_delete(&pods, &[], 1, now)), ["unscheduled"]);
        assert_eq!(
            names(&pods_to_delete(&pods, &[], 3, now)),
            ["unscheduled", "pending", "notready"]
        );
        assert_eq!(pods_to_delete(&pods, &[], 9, now).len(), 4);
    }

    #[test]
    fn deletion_cost_then_doubled_up_then_recently_ready() {
        let now = Timestamp::now();
        let mut cheap = pod("cheap", "n1", "Running", Some(5000), now);
        cheap.metadata.annotations = Some(BTreeMap::from([(
            POD_DELETION_COST.to_string(),
            "-5".to_string(),
        )]));
        let a = pod("a", "n1", "Running", Some(5000), now);
        let b = pod("b", "n2", "Running", Some(5000), now);
        let c = pod("c", "n2", "Running", Some(5000), now);
        let pods = vec![&a, &b, &c, &cheap];
        let related = vec![&a, &b, &c];
        assert_eq!(names(&pods_to_delete(&pods, &related, 1, now)), ["cheap"]);
        // n2 holds two related pods: one of them goes before the pod alone on n1.
        let first = names(&pods_to_delete(&[&a, &b, &c], &related, 1, now));
        assert!(first == ["b"] || first == ["c"], "{first:?}");
        // Equal rank: the pod ready for a much shorter time goes first.
        let young = pod("young", "n3", "Running", Some(2), now);
        let old = pod("old", "n4", "Running", Some(100_000), now);
        assert_eq!(
            names(&pods_to_delete(&[&old, &young], &[], 1, now)),
            ["young"]
        );
    }

    #[test]
    fn availability_respects_min_ready_seconds() {
        let now = Timestamp::now();
        let p = pod("p", "n1", "Running", Some(5), now);
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 10, now));
        assert_eq!(seconds_until_available(&p, 10, now), Some(5));
        let q = pod("q", "n1", "Running", None, now);
        assert!(!is_available(&q, 0, now));
    }
}

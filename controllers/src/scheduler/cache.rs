//! The scheduler's cache (upstream `pkg/scheduler/backend/cache`): one [`NodeInfo`] per node
//! with the pods bound or assumed there and the resources they request, fed by the node and pod
//! informers, so a scheduling cycle never calls the API server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, PodSpec, PodStatus, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Resource quantities in milli-units: the one parser, shared with ResourceQuota.
pub use ferrokube_machinery::quota::parse_milli;

/// Amounts of resources: cpu in millicores, everything else in whole units (bytes, pods).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// Millicores.
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Pod slots (allocatable only).
    pub pods: i64,
    /// Extended resources by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// From a `requests`/`allocatable` map.
    pub fn from_map(
        m: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    ) -> Self {
        let mut r = Resources::default();
        for (k, q) in m {
            let Some(milli) = parse_milli(&q.0) else {
                continue;
            };
            let whole = ((milli + 999) / 1000).clamp(0, i64::MAX as i128) as i64;
            match k.as_str() {
                "cpu" => r.milli_cpu = milli.clamp(0, i64::MAX as i128) as i64,
                "memory" => r.memory = whole,
                "ephemeral-storage" => r.ephemeral_storage = whole,
                "pods" => r.pods = whole,
                k if k.starts_with("hugepages-") || k.contains('/') => {
                    r.scalar.insert(k.to_string(), whole);
                }
                _ => {}
            }
        }
        r
    }

    /// Adds another amount.
    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts another amount.
    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Component-wise maximum.
    pub fn max(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// Default requests used for scoring pods that request nothing (upstream
/// `DefaultMilliCPURequest` / `DefaultMemoryRequest`).
pub const NON_ZERO_CPU: i64 = 100;
/// 200 MiB.
pub const NON_ZERO_MEMORY: i64 = 200 * 1024 * 1024;

/// What the scheduler keeps of a pod.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod.
    pub pod: Arc<Pod>,
    /// Uid.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// Effective requests (upstream `ComputePodResourceRequest`).
    pub requests: Resources,
    /// Requests with non-zero defaults for cpu/memory (scoring).
    pub non_zero: Resources,
    /// `(protocol, hostIP, hostPort)` of host ports.
    pub host_ports: Vec<(String, String, i32)>,
    /// Required anti-affinity terms (existing pods' terms are checked against incoming pods).
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    /// Uid of the controlling owner (spreading).
    pub owner: Option<String>,
}

fn sum_requests(containers: &[k8s_openapi::api::core::v1::Container]) -> Resources {
    let mut r = Resources::default();
    for c in containers {
        if let Some(req) = c.resources.as_ref().and_then(|r| r.requests.as_ref()) {
            r.add(&Resources::from_map(req));
        }
    }
    r
}

impl PodInfo {
    /// Builds the scheduler's view of a pod.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut requests = sum_requests(&spec.containers);
        // Sidecars (restartable init containers) add up; other init containers take the max.
        let mut sidecars = Resources::default();
        for ic in spec.init_containers.iter().flatten() {
            let one = sum_requests(std::slice::from_ref(ic));
            if ic.restart_policy.as_deref() == Some("Always") {
                sidecars.add(&one);
                requests.add(&one);
            } else {
                let mut with_sidecars = one.clone();
                with_sidecars.add(&sidecars);
                requests.max(&with_sidecars);
            }
        }
        if let Some(o) = &spec.overhead {
            requests.add(&Resources::from_map(o));
        }
        let mut non_zero = requests.clone();
        if non_zero.milli_cpu == 0 {
            non_zero.milli_cpu = NON_ZERO_CPU;
        }
        if non_zero.memory == 0 {
            non_zero.memory = NON_ZERO_MEMORY;
        }
        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let hp = p.host_port.filter(|hp| *hp > 0)?;
                Some((
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    p.host_ip
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    hp,
                ))
            })
            .collect();
        let required_anti_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            requests,
            non_zero,
            host_ports,
            required_anti_affinity,
            owner,
            pod,
        }
    }

    /// The view of a pod bound to a node (or terminating there): what is derived from it
    /// (requests, ports, labels, anti-affinity, owner) plus a skeleton of the object with
    /// only what the scheduler still reads of a pod it will not place again (name, uid,
    /// resourceVersion for events and preemption, deletion, node, priority, phase). Bound pods
    /// are nearly every pod of a cluster; the full object would be held once more here.
    pub fn bound(pod: Pod) -> PodInfo {
        let mut info = PodInfo::new(Arc::new(pod));
        let (m, spec, status) = (
            &info.pod.metadata,
            info.pod.spec.as_ref(),
            info.pod.status.as_ref(),
        );
        let skeleton = Pod {
            metadata: ObjectMeta {
                name: m.name.clone(),
                namespace: m.namespace.clone(),
                uid: m.uid.clone(),
                resource_version: m.resource_version.clone(),
                deletion_timestamp: m.deletion_timestamp.clone(),
                ..ObjectMeta::default()
            },
            spec: spec.map(|s| PodSpec {
                node_name: s.node_name.clone(),
                priority: s.priority,
                preemption_policy: s.preemption_policy.clone(),
                scheduler_name: s.scheduler_name.clone(),
                ..PodSpec::default()
            }),
            status: status.map(|s| PodStatus {
                phase: s.phase.clone(),
                nominated_node_name: s.nominated_node_name.clone(),
                ..PodStatus::default()
            }),
        };
        info.pod = Arc::new(skeleton);
        info
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.namespace,
            self.pod.metadata.name.as_deref().unwrap_or("")
        )
    }
}

/// One node and what is bound to it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node (None while only pods referring to it are known).
    pub node: Option<Arc<Node>>,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// Sum of the requests of its pods.
    pub requested: Resources,
    /// Same with non-zero defaults (scoring).
    pub non_zero_requested: Resources,
    /// Pods by uid.
    pub pods: HashMap<String, Arc<PodInfo>>,
    /// How many of them have required anti-affinity terms (upstream
    /// `PodsWithRequiredAntiAffinity`): nodes without any are skipped when a cycle looks for
    /// existing pods whose anti-affinity rejects the incoming pod.
    pub pods_with_required_anti_affinity: usize,
}

impl NodeInfo {
    /// The node's labels.
    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref())
    }

    /// The node's taints.
    pub fn taints(&self) -> &[Taint] {
        self.node
            .as_ref()
            .and_then(|n| n.spec.as_ref())
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[])
    }

    /// Adds a pod's requests.
    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.remove_pod(&p.uid);
        self.requested.add(&p.requests);
        self.non_zero_requested.add(&p.non_zero);
        if !p.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.insert(p.uid.clone(), p);
    }

    /// Removes a pod.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let old = self.pods.remove(uid)?;
        self.requested.sub(&old.requests);
        self.non_zero_requested.sub(&old.non_zero);
        if !old.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        Some(old)
    }
}

/// All nodes, plus where each pod is.
#[derive(Debug, Default)]
pub struct Cache {
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Pod uid → node name (bound or assumed).
    pub pod_node: HashMap<String, String>,
    /// Pods assumed by this scheduler whose binding has not been observed yet.
    pub assumed: HashMap<String, String>,
}

impl Cache {
    /// A node was added or changed.
    pub fn upsert_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let alloc = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .map(Resources::from_map)
            .unwrap_or_default();
        let ni = self.nodes.entry(name).or_default();
        ni.allocatable = alloc;
        ni.node = Some(Arc::new(node));
    }

    /// A node was deleted (its pods stay accounted until they are deleted too).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(ni) = self.nodes.get_mut(name) {
            ni.node = None;
            if ni.pods.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    /// Number of nodes that exist.
    pub fn node_count(&self) -> usize {
        self.nodes.values().filter(|n| n.node.is_some()).count()
    }

    /// Accounts a pod on a node (bound, or assumed by us).
    pub fn add_pod(&mut self, node: &str, p: Arc<PodInfo>) {
        let uid = p.uid.clone();
        if let Some(prev) = self.pod_node.get(&uid).cloned()
            && prev != node
            && let Some(ni) = self.nodes.get_mut(&prev)
        {
            ni.remove_pod(&uid);
        }
        self.nodes.entry(node.to_string()).or_default().add_pod(p);
        self.pod_node.insert(uid, node.to_string());
    }

    /// Forgets a pod (deleted, terminal, or its binding failed).
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        self.assumed.remove(uid);
        let node = self.pod_node.remove(uid)?;
        let ni = self.nodes.get_mut(&node)?;
        let p = ni.remove_pod(uid);
        if ni.node.is_none() && ni.pods.is_empty() {
            self.nodes.remove(&node);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("1Ki"), Some(1024 * 1000));
        assert_eq!(parse_milli("8Gi"), Some(8 * 1024i128.pow(3) * 1000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("1.5G"), Some(1_500_000_000_000));
        assert_eq!(parse_milli("abc"), None);
        assert_eq!(parse_milli("1Zi"), None);
    }

    /// A bound pod keeps what filtering and preemption read of it: its requests, ports,
    /// labels and anti-affinity as derived from the full object, and the identity a victim
    /// needs (name, namespace, uid, resourceVersion, priority).
    #[test]
    fn a_bound_pod_is_accounted_as_the_full_object() {
        let full: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {"app": "a"}},
            "spec": {"nodeName": "n1", "priority": 5, "volumes": [{"name": "v", "emptyDir": {}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname",
                     "labelSelector": {"matchLabels": {"app": "a"}}}]}},
                "containers": [{"name": "c", "image": "i",
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                    "ports": [{"containerPort": 80, "hostPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}
        }))
        .unwrap_or_default();
        let a = PodInfo::new(Arc::new(full.clone()));
        let b = PodInfo::bound(full);
        assert_eq!(b.requests, a.requests);
        assert_eq!(b.non_zero, a.non_zero);
        assert_eq!(b.host_ports, a.host_ports);
        assert_eq!(b.labels, a.labels);
        assert_eq!(b.required_anti_affinity, a.required_anti_affinity);
        assert_eq!(
            (b.uid.as_str(), b.priority, b.key()),
            ("u", 5, "ns/p".to_string())
        );
        assert_eq!(b.pod.metadata.resource_version.as_deref(), Some("7"));
        let spec = b.pod.spec.clone().unwrap_or_default();
        assert!(spec.containers.is_empty() && spec.volumes.is_none());
    }
}

//! The node itself: self-registration (upstream `kubelet_node_status.go`
//! `registerWithAPIServer`/`initialNode`/`setNodeStatus`), the status report, and the
//! `kube-node-lease` Lease renewed every 10 s (`pkg/kubelet/nodelease`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::runtime::Runtime;
use crate::status::rfc3339;

/// The kubelet version a simulated node reports.
pub const KUBELET_VERSION: &str = "v1.35.0";
/// Namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Lease duration (upstream `nodeLeaseDurationSeconds`).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// What a node registers as.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// CPU capacity (quantity).
    pub cpu: String,
    /// Memory capacity (quantity).
    pub memory: String,
    /// Ephemeral storage capacity (quantity).
    pub ephemeral_storage: String,
    /// `--max-pods`.
    pub max_pods: u32,
    /// `InternalIP` address (also every host-network pod's IP).
    pub node_ip: String,
    /// The node's pod CIDR (a /24; pod IPs .2–.254).
    pub pod_cidr: Ipv4Addr,
    /// `node.kubernetes.io/instance-type`.
    pub instance_type: String,
    /// Extra labels (`--node-labels`).
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`.
    pub taints: Vec<Value>,
    /// Lease renewal period.
    pub lease_renew: Duration,
    /// Full status report period (upstream `nodeStatusReportFrequency`, 5 min).
    pub status_report: Duration,
}

/// Parses `key=value:Effect,key:Effect` (`--register-with-taints`).
pub fn parse_taints(s: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (kv, effect) = t
            .rsplit_once(':')
            .ok_or_else(|| format!("invalid taint spec: {t}"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!(
                "invalid taint effect: {effect}, unsupported taint effect"
            ));
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (kv, None),
        };
        if key.is_empty() {
            return Err(format!("invalid taint spec: {t}"));
        }
        let mut taint = json!({"key": key, "effect": effect});
        if let Some(v) = value {
            taint["value"] = json!(v);
        }
        out.push(taint);
    }
    Ok(out)
}

/// The Go name of this machine's architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Per-node state shared by the node loops and the pod workers.
pub struct NodeCtx {
    /// What the node registered as.
    pub config: NodeConfig,
    /// The node's own client (`system:node:<name>`).
    pub client: Client,
    /// The container runtime.
    pub runtime: Arc<dyn Runtime>,
    ips: Mutex<BTreeSet<u8>>,
}

impl NodeCtx {
    /// A node context.
    pub fn new(config: NodeConfig, client: Client, runtime: Arc<dyn Runtime>) -> Arc<NodeCtx> {
        Arc::new(NodeCtx {
            config,
            client,
            runtime,
            ips: Mutex::new(BTreeSet::new()),
        })
    }

    /// The lowest free pod IP of the node's CIDR.
    pub fn allocate_ip(&self) -> Option<String> {
        let mut used = self
            .ips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let host = (2u8..=254).find(|h| !used.contains(h))?;
        used.insert(host);
        let o = self.config.pod_cidr.octets();
        Some(Ipv4Addr::new(o[0], o[1], o[2], host).to_string())
    }

    /// Gives a pod IP back.
    pub fn release_ip(&self, ip: Option<String>) {
        let Some(ip) = ip.and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
            return;
        };
        let o = ip.octets();
        let c = self.config.pod_cidr.octets();
        if o[..3] == c[..3] {
            self.ips
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&o[3]);
        }
    }

    fn cidr(&self) -> String {
        format!("{}/24", self.config.pod_cidr)
    }

    /// The Node object a fresh registration creates.
    pub fn initial_node(&self) -> Value {
        let c = &self.config;
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/hostname".to_string(), c.name.clone());
        labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
        labels.insert("kubernetes.io/arch".to_string(), go_arch().to_string());
        labels.insert("beta.kubernetes.io/os".to_string(), "linux".to_string());
        labels.insert("beta.kubernetes.io/arch".to_string(), go_arch().to_string());
        labels.insert(
            "node.kubernetes.io/instance-type".to_string(),
            c.instance_type.clone(),
        );
        labels.extend(c.labels.clone());
        let mut spec = json!({"podCIDR": self.cidr(), "podCIDRs": [self.cidr()]});
        if !c.taints.is_empty() {
            spec["taints"] = Value::Array(c.taints.clone());
        }
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": c.name,
                "labels": labels,
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": spec,
        })
    }

    /// The node's status (capacity, conditions, addresses, nodeInfo).
    pub fn node_status(&self, transition: &str) -> Value {
        let c = &self.config;
        let now = rfc3339(Timestamp::now());
        let cond = |t: &str, s: &str, reason: &str, msg: &str| {
            json!({"type": t, "status": s, "lastHeartbeatTime": now,
                   "lastTransitionTime": transition, "reason": reason, "message": msg})
        };
        let resources = json!({
            "cpu": c.cpu,
            "memory": c.memory,
            "ephemeral-storage": c.ephemeral_storage,
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            "pods": c.max_pods.to_string(),
        });
        let rt = self.runtime.version();
        let machine = format!("{:x}", fxhash(&c.name));
        json!({
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": c.node_ip},
                {"type": "Hostname", "address": c.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": machine,
                "systemUUID": machine,
                "bootID": machine,
                "kernelVersion": "simulated",
                "osImage": format!("ferrokube simulated node ({} runtime)", rt.name),
                "containerRuntimeVersion": format!("{}://{}", rt.name, rt.version),
                "kubeletVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": go_arch(),
            },
        })
    }

    /// Registers the node (creates it, or takes over an existing one of the same name) and
    /// writes its status; retries until the API server answers.
    pub async fn register(&self) -> Result<String, kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let name = &self.config.name;
        let node: Node =
            serde_json::from_value(self.initial_node()).map_err(kube::Error::SerdeError)?;
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => tracing::info!(node = %name, "node registered"),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // An existing node (restart): reconcile the labels the kubelet owns.
                let labels = self.initial_node()["metadata"]["labels"].clone();
                api.patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": labels}})),
                )
                .await?;
                tracing::info!(node = %name, "node already registered");
            }
            Err(e) => return Err(e),
        }
        let now = rfc3339(Timestamp::now());
        let patched = api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": self.node_status(&now)})),
            )
            .await?;
        Ok(patched.metadata.uid.unwrap_or_default())
    }

    /// Keeps the lease renewed and the status reported until cancelled.
    pub async fn run_heartbeats(self: Arc<Self>, uid: String) {
        let transition = rfc3339(Timestamp::now());
        let lease = self.clone().run_lease(uid);
        let status = async {
            let api: Api<Node> = Api::all(self.client.clone());
            loop {
                tokio::time::sleep(self.config.status_report).await;
                let body = json!({"status": self.node_status(&transition)});
                if let Err(e) = api
                    .patch_status(
                        &self.config.name,
                        &PatchParams::default(),
                        &Patch::Merge(&body),
                    )
                    .await
                {
                    tracing::warn!(node = %self.config.name, error = %e, "node status report");
                }
            }
        };
        tokio::join!(lease, status);
    }

    /// The node lease loop (create, then renew every `lease_renew`).
    async fn run_lease(self: Arc<Self>, node_uid: String) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let name = self.config.name.clone();
        let mut current: Option<Lease> = None;
        loop {
            let renew = micro_time(Timestamp::now());
            let result = match current.take() {
                None => match api.get_opt(&name).await {
                    Ok(Some(l)) => Ok(l),
                    Ok(None) => {
                        let l: Result<Lease, _> = serde_json::from_value(json!({
                            "apiVersion": "coordination.k8s.io/v1",
                            "kind": "Lease",
                            "metadata": {"name": name, "namespace": LEASE_NAMESPACE,
                                "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                    "name": name, "uid": node_uid}]},
                            "spec": {"holderIdentity": name,
                                     "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                                     "renewTime": renew},
                        }));
                        match l {
                            Ok(l) => api.create(&PostParams::default(), &l).await,
                            Err(e) => Err(kube::Error::SerdeError(e)),
                        }
                    }
                    Err(e) => Err(e),
                },
                Some(mut l) => {
                    let spec = l.spec.get_or_insert_with(Default::default);
                    spec.holder_identity = Some(name.clone());
                    spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
                    match serde_json::from_value(json!(renew)) {
                        Ok(t) => spec.renew_time = Some(t),
                        Err(e) => tracing::warn!(error = %e, "lease time"),
                    }
                    api.replace(&name, &PostParams::default(), &l).await
                }
            };
            let wait = match result {
                Ok(l) => {
                    current = Some(l);
                    self.config.lease_renew
                }
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "node lease renewal");
                    // Conflict or failure: read it again soon (upstream retries at 200 ms, then
                    // backs off to 7 s).
                    Duration::from_millis(500)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// `metav1.MicroTime` (RFC 3339 with microseconds).
pub fn micro_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

fn fxhash(s: &str) -> u128 {
    let mut h: u128 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints() {
        let t = parse_taints("a=b:NoSchedule,c:NoExecute").unwrap_or_default();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            json!({"key": "a", "value": "b", "effect": "NoSchedule"})
        );
        assert_eq!(t[1], json!({"key": "c", "effect": "NoExecute"}));
        assert!(parse_taints("a=b:Sometimes").is_err());
        assert!(parse_taints("novalue").is_err());
    }

    #[test]
    fn micro() {
        let t: Timestamp = "2026-01-02T03:04:05.123456789Z".parse().unwrap_or_default();
        assert_eq!(micro_time(t), "2026-01-02T03:04:05.123456Z");
    }
}

//! The pod source (upstream `pkg/kubelet/config/apiserver.go`): one watch of the pods bound to
//! this process's nodes (`spec.nodeName=N` for one node, `spec.nodeName!=` filtered locally for
//! several), dispatched to one [`Worker`] per pod uid.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::node::NodeCtx;
use crate::worker::Worker;

struct Entry {
    tx: watch::Sender<Option<Arc<Pod>>>,
    handle: tokio::task::JoinHandle<()>,
}

/// Routes pod events to per-pod workers.
pub struct PodDispatcher {
    nodes: HashMap<String, Arc<NodeCtx>>,
    workers: HashMap<String, Entry>,
    seen: HashSet<String>,
}

impl PodDispatcher {
    /// A dispatcher for these nodes.
    pub fn new(nodes: Vec<Arc<NodeCtx>>) -> PodDispatcher {
        PodDispatcher {
            nodes: nodes
                .into_iter()
                .map(|n| (n.config.name.clone(), n))
                .collect(),
            workers: HashMap::new(),
            seen: HashSet::new(),
        }
    }

    /// The field selector of the pod watch.
    pub fn field_selector(&self) -> String {
        match self.nodes.keys().next() {
            Some(name) if self.nodes.len() == 1 => format!("spec.nodeName={name}"),
            _ => "spec.nodeName!=".to_string(),
        }
    }

    /// Watches pods until the stream ends (it retries with back-off on errors).
    pub async fn run(mut self, client: kube::Client) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(&self.field_selector());
        // Workers keep only what they read of their pod (one copy per pod on the node).
        let mut stream = watcher(api, config)
            .default_backoff()
            .modify(keep_what_workers_read)
            .boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => {
                    self.seen.insert(p.metadata.uid.clone().unwrap_or_default());
                    self.apply(p);
                }
                Ok(watcher::Event::Delete(p)) => {
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    if let Some(e) = self.workers.remove(&uid) {
                        let _ = e.tx.send(None);
                    }
                }
                Ok(watcher::Event::Init) => self.seen.clear(),
                Ok(watcher::Event::InitDone) => {
                    // Pods deleted while the watch was down.
                    let gone: Vec<String> = self
                        .workers
                        .keys()
                        .filter(|u| !self.seen.contains(*u))
                        .cloned()
                        .collect();
                    for uid in gone {
                        if let Some(e) = self.workers.remove(&uid) {
                            let _ = e.tx.send(None);
                        }
                    }
                    self.seen.clear();
                }
                Err(e) => tracing::warn!(error = %e, "pod watch"),
            }
        }
        Ok(())
    }

    fn apply(&mut self, pod: Pod) {
        let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .and_then(|n| self.nodes.get(n))
            .cloned()
        else {
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let pod = Arc::new(pod);
        if let Some(e) = self.workers.get(&uid) {
            if !e.handle.is_finished() {
                let _ = e.tx.send(Some(pod));
            }
            return;
        }
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let worker = Worker::new(node, pod);
        let handle = tokio::spawn(worker.run(rx));
        self.workers.insert(uid, Entry { tx, handle });
    }
}

/// Reduces a pod from the watch to what the pod workers, the status writer and the runtime
/// read (as upstream informers' transforms drop what no consumer reads): an agent holds one
/// copy of each of its pods for the pod's life, and at 30 pods per node the full objects
/// (volumes, environment, probes, every container status) were most of its memory. A runtime
/// that needs more of the spec (the CRI one: volumes, mounts, env) adds it here.
pub fn keep_what_workers_read(pod: &mut Pod) {
    let m = std::mem::take(&mut pod.metadata);
    pod.metadata = ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        generation: m.generation,
        deletion_timestamp: m.deletion_timestamp,
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        // The simulated runtime's behaviour annotations.
        annotations: m.annotations,
        ..ObjectMeta::default()
    };
    pod.spec = pod.spec.take().map(|s| PodSpec {
        node_name: s.node_name,
        restart_policy: s.restart_policy,
        host_network: s.host_network,
        containers: s.containers.into_iter().map(container).collect(),
        init_containers: s
            .init_containers
            .map(|cs| cs.into_iter().map(container).collect()),
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|s| PodStatus {
        phase: s.phase,
        start_time: s.start_time,
        // Conditions others own (PodScheduled, DisruptionTarget, readiness gates) are kept
        // as they are when the status is written.
        conditions: s.conditions,
        qos_class: s.qos_class,
        nominated_node_name: s.nominated_node_name,
        ..PodStatus::default()
    });
}

/// What a container's worker and the runtime read: name, image, argv, requests (QoS class)
/// and the restart policy (sidecar init containers).
fn container(c: Container) -> Container {
    Container {
        name: c.name,
        image: c.image,
        command: c.command,
        args: c.args,
        resources: c.resources,
        restart_policy: c.restart_policy,
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{PodView, pod_status};
    use serde_json::json;

    /// A pod as the API serves it after admission: service-account volume, env, probes,
    /// container statuses, conditions from the scheduler and a DisruptionTarget.
    fn full_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "prod", "uid": "u-1", "generation": 2,
                "resourceVersion": "41", "labels": {"app": "web"},
                "annotations": {"ferrokube.io/simulate-exit-after": "5"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                    "uid": "rs-1", "controller": true}],
                "deletionTimestamp": "2026-01-01T00:01:00Z", "deletionGracePeriodSeconds": 7},
            "spec": {
                "nodeName": "node-1", "restartPolicy": "OnFailure", "hostNetwork": false,
                "volumes": [{"name": "kube-api-access-x", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 300}],
                "initContainers": [{"name": "init", "image": "busybox", "command": ["sleep", "1"],
                    "restartPolicy": "Always", "env": [{"name": "A", "value": "b"}]}],
                "containers": [{"name": "c", "image": "nginx", "args": ["-g", "daemon off;"],
                    "resources": {"requests": {"cpu": "100m"}},
                    "env": [{"name": "X", "value": "y"}],
                    "readinessProbe": {"httpGet": {"port": 80}},
                    "volumeMounts": [{"name": "kube-api-access-x", "mountPath": "/var/run"}]}]},
            "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                "qosClass": "Burstable", "nominatedNodeName": "node-1",
                "podIP": "10.244.0.9", "hostIP": "10.0.0.1",
                "conditions": [
                    {"type": "PodScheduled", "status": "True",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                        "lastTransitionTime": "2026-01-01T00:00:30Z"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:02Z"}],
                "containerStatuses": [{"name": "c", "image": "nginx", "imageID": "x",
                    "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn workers_see_the_same_pod_through_the_reduced_copy() {
        let full = full_pod();
        let mut slim = full.clone();
        keep_what_workers_read(&mut slim);
        // What the status writer computes is the same from either copy.
        let view = |pod| PodView {
            pod,
            written_conditions: None,
            sandbox_ready: true,
            initialized: true,
            phase: "Running",
            host_ip: "10.0.0.1",
            pod_ip: Some("10.244.0.9"),
            start_time: "2026-01-01T00:00:00Z",
            init: &[],
            containers: &[],
        };
        let (a, b) = (pod_status(&view(&full)), pod_status(&view(&slim)));
        assert_eq!(a, b);
        assert!(
            a["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "DisruptionTarget")),
            "{a}"
        );
        // What the worker and the runtime read is kept.
        let (m, s) = (&slim.metadata, slim.spec.as_ref());
        assert_eq!(m.name.as_deref(), Some("web-1"));
        assert_eq!(m.uid.as_deref(), Some("u-1"));
        assert_eq!(m.deletion_grace_period_seconds, Some(7));
        assert!(m.deletion_timestamp.is_some());
        assert_eq!(m.annotations, full.metadata.annotations);
        assert_eq!(s.and_then(|s| s.node_name.as_deref()), Some("node-1"));
        assert_eq!(
            s.and_then(|s| s.restart_policy.as_deref()),
            Some("OnFailure")
        );
        let c = &s.map(|s| s.containers.clone()).unwrap_or_default()[0];
        assert_eq!(c.args.as_deref().map(<[String]>::len), Some(2));
        assert!(c.resources.is_some());
        let init = s
            .and_then(|s| s.init_containers.clone())
            .unwrap_or_default();
        assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
        assert_eq!(init[0].command.as_deref().map(<[String]>::len), Some(2));
        // And what nobody on the node reads is gone.
        assert!(s.is_some_and(|s| s.volumes.is_none() && s.tolerations.is_none()));
        assert!(c.env.is_none() && c.readiness_probe.is_none() && c.volume_mounts.is_none());
        assert!(
            slim.status
                .as_ref()
                .is_some_and(|s| s.container_statuses.is_none())
        );
        assert!(m.labels.is_none() && m.owner_references.is_none());
    }
}

//! The pod source (upstream `pkg/kubelet/config/apiserver.go`): one watch of the pods bound to
//! this process's nodes (`spec.nodeName=N` for one node, `spec.nodeName!=` filtered locally for
//! several), dispatched to one [`Worker`] per pod uid.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
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
        // Workers keep their pod: without managedFields (the kubelet never reads them).
        let mut stream = watcher(api, config)
            .default_backoff()
            .modify(|p: &mut Pod| p.metadata.managed_fields = None)
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

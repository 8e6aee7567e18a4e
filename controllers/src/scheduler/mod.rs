//! The scheduler (`default-scheduler`, upstream `pkg/scheduler`): informers for nodes and pods
//! feed a [`cache::Cache`] and a [`queue::Queue`]; one loop ([`Scheduler::step`]) pops the
//! highest-priority pending pod, filters and scores the nodes from the cache (no API calls), assumes
//! the pod on the chosen node and binds it asynchronously through `POST pods/{name}/binding`.
//! A pod that fits nowhere gets `PodScheduled=False/Unschedulable` with upstream's `FitError`
//! message and a `FailedScheduling` Event, and may preempt lower-priority pods.
//!
//! Like every component it reaches the API server only over HTTPS with the `kube` crate, as
//! `system:kube-scheduler` when started by `ferrokube server`.

pub mod cache;
pub mod events;
pub mod filters;
pub mod preempt;
pub mod queue;
pub mod score;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::mpsc;

use self::cache::{Cache, PodInfo};
use self::filters::{CycleState, NodeStatus};
use self::queue::Queue;
use crate::informer::drop_managed_fields;

/// The scheduler name pods ask for by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// Bindings in flight at once.
const MAX_BINDS_IN_FLIGHT: usize = 64;
/// Pods scheduled per loop turn before the loop looks at events again.
const BATCH: usize = 64;

/// Where the scheduler loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the first full list of nodes and pods.
    Syncing {
        /// Pods listed.
        pods: bool,
        /// Nodes listed.
        nodes: bool,
    },
    /// Scheduling.
    Running,
}

/// The outcome of a binding, reported back to the loop.
#[derive(Debug)]
enum BindResult {
    Bound {
        key: String,
    },
    Failed {
        key: String,
        uid: String,
        conflict: bool,
    },
}

/// The scheduler's state, owned by one task.
pub struct Scheduler {
    client: Client,
    cache: Cache,
    queue: Queue,
    phase: Phase,
    binds: mpsc::UnboundedSender<BindResult>,
    bind_slots: Arc<tokio::sync::Semaphore>,
    /// Pod uids seen during a relist (to drop the ones deleted meanwhile).
    pods_seen: HashSet<String>,
    nodes_seen: HashSet<String>,
    tie_breaker: usize,
    /// Where the next cycle's node search starts (upstream `nextStartNodeIndex`).
    next_start: Option<String>,
    events: events::EventSink,
}

/// Fewest nodes the search looks for before stopping (upstream `minFeasibleNodesToFind`).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Lowest adaptive percentage (upstream `minFeasibleNodesPercentageToFind`).
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Upstream `numFeasibleNodesToFind` with the default (adaptive) `percentageOfNodesToScore`:
/// every node below 100 nodes, otherwise `50% - nodes/125` (at least 5%, at least 100 nodes).
pub fn num_feasible_nodes_to_find(num_all: usize) -> usize {
    if num_all < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all;
    }
    let percentage = 50usize
        .saturating_sub(num_all / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (num_all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

fn is_terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn gated(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

fn ours(p: &Pod) -> bool {
    let name = p
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(DEFAULT_SCHEDULER);
    name == DEFAULT_SCHEDULER || name.is_empty()
}

/// Runs the scheduler until its watches end.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let mut s = Scheduler {
        client: client.clone(),
        cache: Cache::default(),
        queue: Queue::default(),
        phase: Phase::Syncing {
            pods: false,
            nodes: false,
        },
        binds: tx,
        bind_slots: Arc::new(tokio::sync::Semaphore::new(MAX_BINDS_IN_FLIGHT)),
        pods_seen: HashSet::new(),
        nodes_seen: HashSet::new(),
        tie_breaker: 0,
        next_start: None,
        events: events::EventSink::start(client.clone(), format!("{DEFAULT_SCHEDULER}-{host}")),
    };
    // The cache keeps every bound pod: without managedFields, as upstream's scheduler.
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(drop_managed_fields)
        .boxed();
    let nodes = watcher(Api::<Node>::all(client), watcher::Config::default())
        .default_backoff()
        .modify(drop_managed_fields)
        .boxed();
    tracing::info!("scheduler starting");
    s.run_loop(pods, nodes, &mut rx).await;
    Ok(())
}

type Stream<K> = futures::stream::BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

impl Scheduler {
    async fn run_loop(
        &mut self,
        mut pods: Stream<Pod>,
        mut nodes: Stream<Node>,
        rx: &mut mpsc::UnboundedReceiver<BindResult>,
    ) {
        let mut next_flush = Instant::now();
        loop {
            let can_schedule = self.phase == Phase::Running && self.queue.active_len() > 0;
            tokio::select! {
                ev = pods.next() => match ev {
                    Some(ev) => self.on_pod(ev),
                    None => return,
                },
                ev = nodes.next() => match ev {
                    Some(ev) => self.on_node(ev),
                    None => return,
                },
                Some(r) = rx.recv() => self.on_bind(r),
                _ = tokio::time::sleep_until(next_flush.into()) => {},
                _ = std::future::ready(()), if can_schedule => {
                    for _ in 0..BATCH {
                        if !self.step() {
                            break;
                        }
                    }
                }
            }
            let now = Instant::now();
            let next = self.queue.flush(now);
            next_flush = next
                .unwrap_or(now + Duration::from_secs(1))
                .min(now + Duration::from_secs(1));
        }
    }

    fn on_pod(&mut self, ev: Result<watcher::Event<Pod>, watcher::Error>) {
        match ev {
            Ok(watcher::Event::Apply(p)) => self.pod_applied(p),
            Ok(watcher::Event::InitApply(p)) => {
                self.pods_seen
                    .insert(p.metadata.uid.clone().unwrap_or_default());
                self.pod_applied(p);
            }
            Ok(watcher::Event::Delete(p)) => self.pod_deleted(&p),
            Ok(watcher::Event::Init) => self.pods_seen.clear(),
            Ok(watcher::Event::InitDone) => {
                let stale: Vec<String> = self
                    .cache
                    .pod_node
                    .keys()
                    .filter(|u| {
                        !self.pods_seen.contains(*u) && !self.cache.assumed.contains_key(*u)
                    })
                    .cloned()
                    .collect();
                for uid in stale {
                    self.cache.remove_pod(&uid);
                }
                self.pods_seen.clear();
                if let Phase::Syncing { nodes, .. } = self.phase {
                    self.phase = if nodes {
                        Phase::Running
                    } else {
                        Phase::Syncing { pods: true, nodes }
                    };
                }
                self.queue.move_all_unschedulable(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "scheduler pod watch"),
        }
    }

    fn pod_applied(&mut self, p: Pod) {
        let key = pod_key(&p);
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        match node {
            Some(node) => {
                self.queue.remove(&key);
                self.cache.assumed.remove(&uid);
                if is_terminal(&p) {
                    if self.cache.remove_pod(&uid).is_some() {
                        self.queue.move_all_unschedulable(Instant::now());
                    }
                } else {
                    self.cache.add_pod(&node, Arc::new(PodInfo::bound(p)));
                }
            }
            // Gated pods wait outside the queue (upstream's SchedulingGates PreEnqueue plugin):
            // the update that removes the last gate queues them.
            None if p.metadata.deletion_timestamp.is_none()
                && ours(&p)
                && !is_terminal(&p)
                && !gated(&p) =>
            {
                if !self.cache.assumed.contains_key(&uid) {
                    self.queue.add_or_update(key, Arc::new(p));
                }
            }
            None => self.queue.remove(&key),
        }
    }

    fn pod_deleted(&mut self, p: &Pod) {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        self.queue.remove(&pod_key(p));
        if self.cache.remove_pod(&uid).is_some() {
            self.queue.move_all_unschedulable(Instant::now());
        }
    }

    fn on_node(&mut self, ev: Result<watcher::Event<Node>, watcher::Error>) {
        match ev {
            Ok(watcher::Event::Apply(n)) | Ok(watcher::Event::InitApply(n)) => {
                self.nodes_seen
                    .insert(n.metadata.name.clone().unwrap_or_default());
                self.cache.upsert_node(n);
                self.queue.move_all_unschedulable(Instant::now());
            }
            Ok(watcher::Event::Delete(n)) => {
                self.cache
                    .remove_node(n.metadata.name.as_deref().unwrap_or(""));
            }
            Ok(watcher::Event::Init) => self.nodes_seen.clear(),
            Ok(watcher::Event::InitDone) => {
                let stale: Vec<String> = self
                    .cache
                    .nodes
                    .iter()
                    .filter(|(n, ni)| ni.node.is_some() && !self.nodes_seen.contains(*n))
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in stale {
                    self.cache.remove_node(&n);
                }
                if let Phase::Syncing { pods, .. } = self.phase {
                    self.phase = if pods {
                        Phase::Running
                    } else {
                        Phase::Syncing { pods, nodes: true }
                    };
                }
            }
            Err(e) => tracing::warn!(error = %e, "scheduler node watch"),
        }
    }

    fn on_bind(&mut self, r: BindResult) {
        match r {
            BindResult::Bound { key } => self.queue.done(&key),
            BindResult::Failed { key, uid, conflict } => {
                self.cache.remove_pod(&uid);
                if conflict {
                    self.queue.remove(&key);
                } else {
                    self.queue.requeue(&key, false, Instant::now());
                }
            }
        }
    }

    /// One scheduling cycle; false when the active queue is empty.
    pub fn step(&mut self) -> bool {
        let Some((key, pod)) = self.queue.pop() else {
            return false;
        };
        let pi = Arc::new(PodInfo::new(pod.clone()));
        let num_all = self.cache.node_count();
        if num_all == 0 {
            self.queue.requeue(&key, true, Instant::now());
            self.record_failure(
                &pod,
                "SchedulerError",
                "no nodes available to schedule pods".into(),
                None,
            );
            return true;
        }
        let st = CycleState::new(&pi, &self.cache);
        // Upstream's adaptive `percentageOfNodesToScore`: in a big cluster the search stops once
        // enough feasible nodes are found, and the next cycle starts where this one stopped.
        let to_find = num_feasible_nodes_to_find(num_all);
        let mut feasible = Vec::new();
        let mut statuses: BTreeMap<String, NodeStatus> = BTreeMap::new();
        let start = self.next_start.clone().unwrap_or_default();
        let mut stopped_at = None;
        for (name, ni) in self
            .cache
            .nodes
            .range::<String, _>(&start..)
            .chain(self.cache.nodes.range::<String, _>(..&start))
        {
            if ni.node.is_none() {
                continue;
            }
            if feasible.len() >= to_find {
                stopped_at = Some(name.clone());
                break;
            }
            match filters::filter(&pi, &st, ni) {
                None => feasible.push((name.clone(), ni)),
                Some(s) => {
                    statuses.insert(name.clone(), s);
                }
            }
        }
        self.next_start = stopped_at.or_else(|| self.next_start.take());
        if feasible.is_empty() {
            let refs: Vec<&NodeStatus> = statuses.values().collect();
            let (post, nominate) = match preempt::find(&pi, &self.cache, &statuses) {
                Ok(c) => {
                    self.preempt(&pod, &c);
                    (String::new(), Some(c.node))
                }
                Err(msg) => (msg, None),
            };
            let msg = filters::fit_error_message(num_all, &refs, &post);
            tracing::debug!(pod = %key, %msg, "unschedulable");
            self.queue.requeue(&key, nominate.is_none(), Instant::now());
            self.record_failure(&pod, "Unschedulable", msg, nominate);
            return true;
        }
        let nodes: Vec<&cache::NodeInfo> = feasible.iter().map(|(_, ni)| *ni).collect();
        let scores = score::score(&pi, &nodes);
        let best = scores.iter().copied().max().unwrap_or(0);
        let ties: Vec<usize> = (0..scores.len()).filter(|i| scores[*i] == best).collect();
        self.tie_breaker = self.tie_breaker.wrapping_add(1);
        let pick = ties[self.tie_breaker % ties.len()];
        let node = feasible[pick].0.clone();
        // Assume: the pod counts on the node from now on, before the binding is confirmed.
        self.cache.add_pod(&node, pi.clone());
        self.cache.assumed.insert(pi.uid.clone(), node.clone());
        self.bind(key, pod, node);
        true
    }

    fn bind(&self, key: String, pod: Arc<Pod>, node: String) {
        let client = self.client.clone();
        let tx = self.binds.clone();
        let slots = self.bind_slots.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let _permit = slots.acquire_owned().await;
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let binding = json!({
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let r = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
            match r {
                Ok(_) => {
                    let _ = tx.send(BindResult::Bound { key });
                    let note = format!("Successfully assigned {ns}/{name} to {node}");
                    events.emit(&pod, "Normal", "Scheduled", "Binding", &note);
                }
                Err(e) => {
                    let conflict =
                        matches!(&e, kube::Error::Api(s) if s.code == 409 || s.code == 404);
                    tracing::debug!(pod = %key, error = %e, "binding failed");
                    let _ = tx.send(BindResult::Failed { key, uid, conflict });
                }
            }
        });
    }

    /// Deletes the victims (after marking them with the DisruptionTarget condition).
    fn preempt(&self, preemptor: &Pod, c: &preempt::Candidate) {
        for v in &c.victims {
            let client = self.client.clone();
            let victim = v.pod.clone();
            let events = self.events.clone();
            let note = format!(
                "Preempted by pod {} on node {}",
                preemptor.metadata.uid.as_deref().unwrap_or(""),
                c.node
            );
            tokio::spawn(async move {
                let ns = victim.metadata.namespace.clone().unwrap_or_default();
                let name = victim.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let cond = json!({"status": {"conditions": [{
                    "type": "DisruptionTarget", "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": format!("{DEFAULT_SCHEDULER}: preempting to accommodate a higher priority pod"),
                    "lastTransitionTime": now_rfc3339(),
                }]}});
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(cond))
                    .await;
                if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                    tracing::debug!(pod = %name, error = %e, "preemption delete");
                }
                events.emit(&victim, "Normal", "Preempted", "Preempting", &note);
            });
        }
    }

    /// Writes `PodScheduled=False` (when it changed) and a FailedScheduling event.
    fn record_failure(&self, pod: &Arc<Pod>, reason: &str, msg: String, nominate: Option<String>) {
        let client = self.client.clone();
        let events = self.events.clone();
        let pod = pod.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let status = pod.status.clone().unwrap_or_default();
            let prev = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled");
            let same = prev.is_some_and(|c| {
                c.status == "False"
                    && c.reason.as_deref() == Some(reason.as_str())
                    && c.message.as_deref() == Some(msg.as_str())
            });
            let nominated_same =
                nominate.is_none() || status.nominated_node_name.as_deref() == nominate.as_deref();
            if !same || !nominated_same {
                let ltt = match prev {
                    Some(c) if c.status == "False" => c
                        .last_transition_time
                        .as_ref()
                        .and_then(|t| serde_json::to_value(t).ok())
                        .unwrap_or_else(|| json!(now_rfc3339())),
                    _ => json!(now_rfc3339()),
                };
                let mut body = json!({"status": {"conditions": [{
                    "type": "PodScheduled", "status": "False", "lastProbeTime": null,
                    "lastTransitionTime": ltt, "reason": reason, "message": msg,
                }]}});
                if let Some(n) = &nominate {
                    body["status"]["nominatedNodeName"] = json!(n);
                }
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                if let Err(e) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(body))
                    .await
                {
                    tracing::debug!(pod = %name, error = %e, "pod condition update");
                }
            }
            events.emit(&pod, "Warning", "FailedScheduling", "Scheduling", &msg);
        });
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::num_feasible_nodes_to_find;

    #[test]
    fn adaptive_percentage_of_nodes_to_score() {
        // Upstream: all nodes below 100, then 50% - nodes/125 (min 5%), never below 100 nodes.
        assert_eq!(num_feasible_nodes_to_find(3), 3);
        assert_eq!(num_feasible_nodes_to_find(99), 99);
        assert_eq!(num_feasible_nodes_to_find(100), 100);
        assert_eq!(num_feasible_nodes_to_find(1000), 420);
        assert_eq!(num_feasible_nodes_to_find(5000), 500);
        assert_eq!(num_feasible_nodes_to_find(6000), 300);
    }
}

//! The DaemonSet controller (upstream `pkg/controller/daemon`): one pod per eligible node
//! (`nodeSelector`, required node affinity, taints against the pod's tolerations plus the
//! default daemon tolerations), each pinned to its node by node affinity so the scheduler binds
//! it there; RollingUpdate (`maxUnavailable`, `maxSurge`) and OnDelete; ControllerRevisions of
//! the template ([`crate::history`]); upstream's status counters.
//!
//! Pods come from the shared pod informer, nodes and revisions from informers of their own.
//! Node updates wake every DaemonSet only when something that decides placement changed
//! (labels, taints, unschedulable, readiness), so heartbeats cost nothing.

mod nodes;
mod sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::events::Recorder;
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::podutil::controller_ref;

pub use nodes::{HASH_LABEL, should_run, target_node};

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The selector cannot be evaluated.
    #[error(transparent)]
    Selector(#[from] crate::replicaset::Error),
    /// Pods could not be created or deleted.
    #[error("{0}")]
    Manage(String),
    /// A revision name is taken by a different object: the collision count grew.
    #[error("revision name collision for DaemonSet {0}")]
    Collision(String),
}

/// Shared state.
pub struct Ctx {
    pub(crate) client: Client,
    pub(crate) pods: Store<Pod>,
    pub(crate) nodes: Store<Node>,
    pub(crate) revisions: Store<ControllerRevision>,
    pub(crate) expectations: Expectations,
    pub(crate) recorder: Recorder,
    /// Failed pods per `ds-uid/node`: how many in a row and when the last was deleted
    /// (upstream `failedPodsBackoff`, 1 s doubling to 15 min).
    pub(crate) failed_backoff: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Runs the controller.
pub async fn run(client: Client, pods: Informer<Pod>) -> anyhow::Result<()> {
    let nodes = Informer::<Node>::spawn(Api::all(client.clone()));
    let revisions = Informer::<ControllerRevision>::spawn(Api::all(client.clone()));
    nodes.wait_until_ready().await;
    revisions.wait_until_ready().await;
    let api: Api<DaemonSet> = Api::all(client.clone());
    let controller = Controller::new(
        api,
        kube::runtime::watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        nodes: nodes.store(),
        revisions: revisions.store(),
        expectations: Expectations::default(),
        recorder: Recorder::new(client, "daemonset-controller"),
        failed_backoff: Mutex::new(HashMap::new()),
    });
    let (sets, ctx2) = (store.clone(), ctx.clone());
    let pod_refs = pods.subscribe().flat_map(move |change| {
        let refs: Vec<ObjectRef<DaemonSet>> = match change {
            Change::Resync => all(&sets),
            other => pod_change(&sets, &ctx2.expectations, &other),
        };
        futures::stream::iter(refs)
    });
    let sets = store.clone();
    let node_refs = nodes.subscribe().flat_map(move |change| {
        let refs = match change {
            Change::Updated(old, new) if !placement_changed(&old, &new) => Vec::new(),
            _ => all(&sets),
        };
        futures::stream::iter(refs)
    });
    controller
        .reconcile_on(pod_refs)
        .reconcile_on(node_refs)
        .run(sync::sync, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "daemonset reconcile");
            }
        })
        .await;
    Ok(())
}

fn all(sets: &Store<DaemonSet>) -> Vec<ObjectRef<DaemonSet>> {
    sets.state()
        .iter()
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The DaemonSets a pod change concerns, observing expectations on the way.
fn pod_change(
    sets: &Store<DaemonSet>,
    exp: &Expectations,
    change: &Change<Pod>,
) -> Vec<ObjectRef<DaemonSet>> {
    let owner = |p: &Pod| {
        controller_ref(&p.metadata)
            .filter(|r| r.kind == "DaemonSet" && r.api_version.starts_with("apps/"))
            .map(|r| (p.namespace().unwrap_or_default(), r.name.clone()))
    };
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    let key = |(ns, n): &(String, String)| format!("{ns}/{n}");
    let to_ref = |(ns, n): (String, String)| ObjectRef::new(&n).within(&ns);
    match change {
        Change::Added(p) => match owner(p) {
            Some(o) => {
                if p.metadata.deletion_timestamp.is_some() {
                    exp.deletion_observed(&key(&o), &uid(p));
                } else {
                    exp.creation_observed(&key(&o));
                }
                vec![to_ref(o)]
            }
            // An orphan may be adopted by a set selecting it.
            None => matching(sets, p),
        },
        Change::Updated(old, new) => {
            let mut out = Vec::new();
            if let Some(o) = owner(new) {
                if new.metadata.deletion_timestamp.is_some() {
                    exp.deletion_observed(&key(&o), &uid(new));
                }
                out.push(to_ref(o));
            } else if old.metadata.labels != new.metadata.labels {
                out.extend(matching(sets, new));
            }
            if let Some(o) = owner(old)
                && owner(new).as_ref() != Some(&o)
            {
                out.push(to_ref(o));
            }
            out
        }
        Change::Deleted(p) => match owner(p) {
            Some(o) => {
                exp.deletion_observed(&key(&o), &uid(p));
                vec![to_ref(o)]
            }
            None => Vec::new(),
        },
        Change::Resync => Vec::new(),
    }
}

fn matching(sets: &Store<DaemonSet>, pod: &Pod) -> Vec<ObjectRef<DaemonSet>> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    sets.state()
        .iter()
        .filter(|s| s.namespace() == pod.namespace())
        .filter(|s| {
            s.spec.as_ref().is_some_and(|sp| {
                crate::replicaset::selects(&sp.selector, pod.metadata.labels.as_ref())
                    .unwrap_or(false)
            })
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Upstream `shouldIgnoreNodeUpdate`, narrowed: what decides where daemon pods run.
fn placement_changed(old: &Node, new: &Node) -> bool {
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
    };
    let spec = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable));
    old.metadata.labels != new.metadata.labels || spec(old) != spec(new) || ready(old) != ready(new)
}

fn error_policy(ds: Arc<DaemonSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(daemonset = %ds.name_any(), error = %err, "daemonset sync failed");
    Action::requeue(Duration::from_secs(1))
}

/// The set as the object of its events.
pub(crate) fn regarding(ds: &DaemonSet) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("DaemonSet".into()),
        name: ds.metadata.name.clone(),
        namespace: ds.metadata.namespace.clone(),
        uid: ds.metadata.uid.clone(),
        resource_version: ds.metadata.resource_version.clone(),
        ..Default::default()
    }
}

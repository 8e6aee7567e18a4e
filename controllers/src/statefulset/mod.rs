//! The StatefulSet controller (upstream `pkg/controller/statefulset`): pods with stable names
//! `<set>-<ordinal>` (from `spec.ordinals.start`), created in order and each waited for until
//! Running and Ready (`OrderedReady`) or all at once (`Parallel`), removed in reverse order on
//! scale-down, PersistentVolumeClaims `<template>-<set>-<ordinal>` from `volumeClaimTemplates`
//! (owner references following `persistentVolumeClaimRetentionPolicy`), rolling updates from the
//! highest ordinal down to `partition` (at most `maxUnavailable` at a time) or `OnDelete`,
//! ControllerRevisions of the template ([`crate::history`]) and upstream's status fields.
//!
//! Pods come from the shared pod informer; revisions and claims from informers of their own.

mod pods;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::events::Recorder;
use crate::informer::{Change, Informer};
use crate::podutil::controller_ref;

pub use pods::{get_ordinal, pod_name};

/// The label with the name of a pod's revision (upstream `ControllerRevisionHashLabelKey`).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label with a pod's own name (upstream `StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a pod's ordinal (upstream `PodIndexLabel`).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The selector cannot be evaluated.
    #[error(transparent)]
    Selector(#[from] crate::replicaset::Error),
    /// A pod or claim could not be created, updated or deleted.
    #[error("{0}")]
    Manage(String),
    /// A revision name is taken by a different object: the collision count grew.
    #[error("revision name collision for StatefulSet {0}")]
    Collision(String),
}

/// Shared state.
pub struct Ctx {
    pub(crate) client: Client,
    pub(crate) pods: Store<Pod>,
    pub(crate) revisions: Store<ControllerRevision>,
    pub(crate) claims: Store<PersistentVolumeClaim>,
    pub(crate) recorder: Recorder,
}

/// Runs the controller.
pub async fn run(client: Client, pods: Informer<Pod>) -> anyhow::Result<()> {
    let revisions = Informer::<ControllerRevision>::spawn(Api::all(client.clone()));
    let claims = Informer::<PersistentVolumeClaim>::spawn(Api::all(client.clone()));
    revisions.wait_until_ready().await;
    claims.wait_until_ready().await;
    let api: Api<StatefulSet> = Api::all(client.clone());
    let controller = Controller::new(
        api,
        kube::runtime::watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        revisions: revisions.store(),
        claims: claims.store(),
        recorder: Recorder::new(client, "statefulset-controller"),
    });
    // A pod change concerns its controlling StatefulSet (upstream `addPod`/`updatePod`/
    // `deletePod`); an orphan concerns the sets whose selector selects it (adoption).
    let sets = store.clone();
    let pod_refs = pods.subscribe().flat_map(move |change| {
        let refs: Vec<ObjectRef<StatefulSet>> = match change {
            Change::Added(p) | Change::Deleted(p) => owners(&sets, &p),
            Change::Updated(old, new) => {
                let mut v = owners(&sets, &new);
                if old.metadata.labels != new.metadata.labels {
                    v.extend(owners(&sets, &old));
                }
                v
            }
            Change::Resync => sets
                .state()
                .iter()
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect(),
        };
        futures::stream::iter(refs)
    });
    controller
        .reconcile_on(pod_refs)
        .run(sync::sync, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "statefulset reconcile");
            }
        })
        .await;
    Ok(())
}

/// The StatefulSets a pod concerns: its controller, or for an orphan every set selecting it.
fn owners(sets: &Store<StatefulSet>, pod: &Pod) -> Vec<ObjectRef<StatefulSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = controller_ref(&pod.metadata) {
        if r.kind == "StatefulSet" && r.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&r.name).within(&ns)];
        }
        return Vec::new();
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    sets.state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| {
            s.spec.as_ref().is_some_and(|sp| {
                crate::replicaset::selects(&sp.selector, pod.metadata.labels.as_ref())
                    .unwrap_or(false)
            })
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

fn error_policy(set: Arc<StatefulSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(statefulset = %set.name_any(), error = %err, "statefulset sync failed");
    Action::requeue(Duration::from_secs(1))
}

/// The set as the object of its events.
pub(crate) fn regarding(set: &StatefulSet) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("StatefulSet".into()),
        name: set.metadata.name.clone(),
        namespace: set.metadata.namespace.clone(),
        uid: set.metadata.uid.clone(),
        resource_version: set.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// The message of an API error.
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

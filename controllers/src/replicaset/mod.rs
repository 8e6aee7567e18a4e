//! The ReplicaSet controller and the ReplicationController manager sharing its code (upstream
//! `pkg/controller/replicaset`, whose `replication` package converts RCs to ReplicaSets the same
//! way [`View`] does): keeps `spec.replicas` active pods matching the selector, adopting orphans
//! and releasing pods that stopped matching, with expectations so that pods are never created or
//! deleted twice, and reports `status` (replicas, fullyLabeledReplicas, readyReplicas,
//! availableReplicas, observedGeneration, the `ReplicaFailure` condition).
//!
//! Pods come from the shared pod [`Informer`]; ReplicaSets from the shared ReplicaSet informer
//! (the Deployment controller reads the same store).

mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::core::SelectorExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::events::Recorder;
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::podutil::controller_ref;

/// Which of the two kinds a controller instance manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `apps/v1` ReplicaSet.
    ReplicaSet,
    /// `v1` ReplicationController.
    ReplicationController,
}

impl Kind {
    /// The owner reference `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "apps/v1",
            Kind::ReplicationController => "v1",
        }
    }
    /// The owner reference `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
        }
    }
    /// The controller's name (user agent, event reporter).
    pub fn controller_name(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "replicaset-controller",
            Kind::ReplicationController => "replication-controller",
        }
    }
    /// Whether an owner reference points at this kind.
    pub fn owns(self, r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
        match self {
            Kind::ReplicaSet => r.kind == "ReplicaSet" && r.api_version.starts_with("apps/"),
            Kind::ReplicationController => {
                r.kind == "ReplicationController" && r.api_version == "v1"
            }
        }
    }
}

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The selector cannot be evaluated.
    #[error("invalid selector: {0}")]
    Selector(String),
    /// Creating or deleting pods failed (the ReplicaFailure condition says it too).
    #[error("{0}")]
    Manage(String),
    /// An object could not be converted.
    #[error("conversion: {0}")]
    Convert(#[from] serde_json::Error),
}

/// A ReplicaSet or ReplicationController seen as a ReplicaSet (upstream's RC conversion).
#[derive(Debug, Clone)]
pub struct View {
    /// Which kind this is.
    pub kind: Kind,
    /// The object as a ReplicaSet (for an RC: the selector map as `matchLabels`).
    pub rs: ReplicaSet,
}

impl View {
    /// The view of a ReplicationController.
    pub fn from_rc(rc: &ReplicationController) -> Result<Self, Error> {
        let spec = rc.spec.clone().unwrap_or_default();
        let status: Option<ReplicaSetStatus> = match &rc.status {
            Some(s) => Some(serde_json::from_value(serde_json::to_value(s)?)?),
            None => None,
        };
        let selector = spec.selector.clone().or_else(|| {
            spec.template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone())
        });
        Ok(View {
            kind: Kind::ReplicationController,
            rs: ReplicaSet {
                metadata: rc.metadata.clone(),
                spec: Some(ReplicaSetSpec {
                    replicas: spec.replicas,
                    min_ready_seconds: spec.min_ready_seconds,
                    selector: LabelSelector {
                        match_labels: selector,
                        match_expressions: None,
                    },
                    template: spec.template.clone(),
                }),
                status,
            },
        })
    }

    fn meta(&self) -> &ObjectMeta {
        &self.rs.metadata
    }
    /// `namespace/name`, the expectations key.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.rs.namespace().unwrap_or_default(),
            self.rs.name_any()
        )
    }
    fn replicas(&self) -> i32 {
        self.rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.rs.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn selector(&self) -> Option<&LabelSelector> {
        self.rs.spec.as_ref().map(|s| &s.selector)
    }
    fn status(&self) -> ReplicaSetStatus {
        self.rs.status.clone().unwrap_or_default()
    }
    fn object_ref(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(self.kind.api_version().to_string()),
            kind: Some(self.kind.kind().to_string()),
            name: self.meta().name.clone(),
            namespace: self.meta().namespace.clone(),
            uid: self.meta().uid.clone(),
            resource_version: self.meta().resource_version.clone(),
            ..Default::default()
        }
    }
}

/// Whether `selector` selects `labels` (`metav1.LabelSelectorAsSelector`; an empty selector
/// selects everything).
pub fn selects(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<bool, Error> {
    let sel = kube::core::Selector::try_from(selector.clone())
        .map_err(|e| Error::Selector(e.to_string()))?;
    let empty = BTreeMap::new();
    Ok(sel.matches(labels.unwrap_or(&empty)))
}

/// Shared state of one controller instance.
pub struct Ctx {
    pub(crate) client: Client,
    pub(crate) pods: Store<Pod>,
    /// ReplicaSets (for sibling pods in the deletion ranking); empty for RCs.
    pub(crate) replicasets: Option<Store<ReplicaSet>>,
    pub(crate) expectations: Arc<Expectations>,
    pub(crate) recorder: Recorder,
}

/// Keys of the controllers a pod change concerns, observing expectations on the way
/// (upstream `addPod`/`updatePod`/`deletePod`). `matching` finds controllers whose selector
/// selects an orphan pod.
fn pod_change_keys(
    kind: Kind,
    change: &Change<Pod>,
    expectations: &Expectations,
    matching: &dyn Fn(&Pod) -> Vec<(String, String)>,
) -> Vec<(String, String)> {
    let owner = |p: &Pod| {
        controller_ref(&p.metadata)
            .filter(|r| kind.owns(r))
            .map(|r| (p.namespace().unwrap_or_default(), r.name.clone()))
    };
    let key = |(ns, n): &(String, String)| format!("{ns}/{n}");
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    match change {
        Change::Added(p) => match owner(p) {
            Some(o) => {
                if p.metadata.deletion_timestamp.is_some() {
                    expectations.deletion_observed(&key(&o), &uid(p));
                } else {
                    expectations.creation_observed(&key(&o));
                }
                vec![o]
            }
            None if p.metadata.deletion_timestamp.is_none() => matching(p),
            None => Vec::new(),
        },
        Change::Updated(old, new) => {
            let mut out = Vec::new();
            let (oo, no) = (owner(old), owner(new));
            if new.metadata.deletion_timestamp.is_some()
                && let Some(o) = &no
            {
                expectations.deletion_observed(&key(o), &uid(new));
            }
            if oo != no {
                out.extend(oo.clone());
            }
            match no {
                Some(o) => out.push(o),
                None => {
                    if old.metadata.labels != new.metadata.labels || oo.is_some() {
                        out.extend(matching(new));
                    }
                }
            }
            out
        }
        Change::Deleted(p) => match owner(p) {
            Some(o) => {
                expectations.deletion_observed(&key(&o), &uid(p));
                vec![o]
            }
            None => Vec::new(),
        },
        Change::Resync => Vec::new(),
    }
}

/// Runs the ReplicaSet controller.
pub async fn run_replicasets(
    client: Client,
    pods: Informer<Pod>,
    replicasets: Informer<ReplicaSet>,
) -> anyhow::Result<()> {
    let kind = Kind::ReplicaSet;
    let expectations = Arc::new(Expectations::default());
    let rs_store = replicasets.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        replicasets: Some(rs_store.clone()),
        expectations: expectations.clone(),
        recorder: Recorder::new(client, kind.controller_name()),
    });
    let store = rs_store.clone();
    let exp = expectations.clone();
    let pod_refs = pods.subscribe().flat_map(move |change| {
        let refs: Vec<ObjectRef<ReplicaSet>> = if let Change::Resync = change {
            store
                .state()
                .iter()
                .map(|rs| ObjectRef::from_obj(rs.as_ref()))
                .collect()
        } else {
            let matching = |p: &Pod| -> Vec<(String, String)> {
                let ns = p.namespace();
                store
                    .state()
                    .iter()
                    .filter(|rs| rs.namespace() == ns)
                    .filter(|rs| {
                        rs.spec.as_ref().is_some_and(|s| {
                            selects(&s.selector, p.metadata.labels.as_ref()).unwrap_or(false)
                        })
                    })
                    .map(|rs| (rs.namespace().unwrap_or_default(), rs.name_any()))
                    .collect()
            };
            pod_change_keys(kind, &change, &exp, &matching)
                .into_iter()
                .map(|(ns, n)| ObjectRef::new(&n).within(&ns))
                .collect()
        };
        futures::stream::iter(refs)
    });
    Controller::for_shared_stream(replicasets.trigger_stream(), rs_store)
        .reconcile_on(pod_refs)
        .run(
            |rs: Arc<ReplicaSet>, ctx: Arc<Ctx>| async move {
                let view = View {
                    kind: Kind::ReplicaSet,
                    rs: (*rs).clone(),
                };
                sync::sync(view, ctx).await
            },
            error_policy,
            ctx,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "replicaset reconcile");
            }
        })
        .await;
    Ok(())
}

/// Runs the ReplicationController manager.
pub async fn run_replication_controllers(
    client: Client,
    pods: Informer<Pod>,
) -> anyhow::Result<()> {
    let kind = Kind::ReplicationController;
    let expectations = Arc::new(Expectations::default());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        replicasets: None,
        expectations: expectations.clone(),
        recorder: Recorder::new(client.clone(), kind.controller_name()),
    });
    let api: kube::Api<ReplicationController> = kube::Api::all(client);
    let controller = Controller::new(
        api,
        kube::runtime::watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    let exp = expectations.clone();
    let pod_refs = pods.subscribe().flat_map(move |change| {
        let refs: Vec<ObjectRef<ReplicationController>> = if let Change::Resync = change {
            store
                .state()
                .iter()
                .map(|rc| ObjectRef::from_obj(rc.as_ref()))
                .collect()
        } else {
            let matching = |p: &Pod| -> Vec<(String, String)> {
                let ns = p.namespace();
                store
                    .state()
                    .iter()
                    .filter(|rc| rc.namespace() == ns)
                    .filter_map(|rc| View::from_rc(rc).ok())
                    .filter(|v| {
                        v.selector().is_some_and(|s| {
                            s.match_labels.is_some()
                                && selects(s, p.metadata.labels.as_ref()).unwrap_or(false)
                        })
                    })
                    .map(|v| (v.rs.namespace().unwrap_or_default(), v.rs.name_any()))
                    .collect()
            };
            pod_change_keys(kind, &change, &exp, &matching)
                .into_iter()
                .map(|(ns, n)| ObjectRef::new(&n).within(&ns))
                .collect()
        };
        futures::stream::iter(refs)
    });
    controller
        .reconcile_on(pod_refs)
        .run(
            |rc: Arc<ReplicationController>, ctx: Arc<Ctx>| async move {
                let view = View::from_rc(&rc)?;
                sync::sync(view, ctx).await
            },
            error_policy_rc,
            ctx,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "replicationcontroller reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy(rs: Arc<ReplicaSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(replicaset = %rs.name_any(), error = %err, "replicaset sync failed");
    Action::requeue(Duration::from_secs(1))
}

fn error_policy_rc(rc: Arc<ReplicationController>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(rc = %rc.name_any(), error = %err, "replicationcontroller sync failed");
    Action::requeue(Duration::from_secs(1))
}

/// The pod a controller creates from its template (upstream `GetPodFromTemplate`).
pub fn pod_from_template(template: &PodTemplateSpec, owner: &ObjectMeta, kind: Kind) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let owner_ref = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: kind.api_version().to_string(),
        kind: kind.kind().to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", owner.name.as_deref().unwrap_or_default())),
            namespace: owner.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

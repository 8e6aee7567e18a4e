//! One sync of a ReplicaSet / ReplicationController (upstream `syncReplicaSet`): claim pods,
//! create or delete the difference (when expectations are satisfied), write status.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use serde_json::json;

use super::{Ctx, Error, Kind, View, pod_from_template, selects};
use crate::podutil::{self, controller_ref, is_active, is_available, is_ready};

/// Most pods created or deleted in one sync (upstream `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// Reconciles one object.
pub async fn sync(view: View, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = view.key();
    let ns = view.rs.namespace().unwrap_or_default();
    let Some(selector) = view.selector().cloned() else {
        return Ok(Action::await_change());
    };
    let needs_sync = ctx.expectations.satisfied(&key);
    let all: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let active: Vec<Arc<Pod>> = all.into_iter().filter(|p| is_active(p)).collect();
    let owned = claim_pods(&view, &selector, active, &ctx).await?;
    let mut manage_err = None;
    if needs_sync
        && view.rs.metadata.deletion_timestamp.is_none()
        && let Err(e) = manage_replicas(&view, &owned, &ctx).await
    {
        manage_err = Some(e);
    }
    let now = Timestamp::now();
    let status = calculate_status(&view, &owned, manage_err.as_ref(), now);
    update_status(&view, status, &ctx).await?;
    if let Some(e) = manage_err {
        return Err(e);
    }
    // A pod that is ready but not yet available becomes available later without any event.
    let mrs = view.min_ready_seconds();
    if mrs > 0 {
        let wait = owned
            .iter()
            .filter_map(|p| podutil::seconds_until_available(p, mrs, now))
            .min();
        if let Some(secs) = wait {
            return Ok(Action::requeue(Duration::from_secs(
                secs.unsigned_abs() + 1,
            )));
        }
    }
    Ok(Action::await_change())
}

/// upstream `ClaimPods` (`PodControllerRefManager`): pods owned by this object that still
/// match are kept, owned pods that no longer match are released, matching orphans adopted.
async fn claim_pods(
    view: &View,
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    pods: Vec<Arc<Pod>>,
    ctx: &Ctx,
) -> Result<Vec<Arc<Pod>>, Error> {
    let uid = view.rs.metadata.uid.clone().unwrap_or_default();
    let deleting = view.rs.metadata.deletion_timestamp.is_some();
    let mut owned = Vec::new();
    let api: Api<Pod> =
        Api::namespaced(ctx.client.clone(), &view.rs.namespace().unwrap_or_default());
    let mut fresh_checked = false;
    for pod in pods {
        let matches = selects(selector, pod.metadata.labels.as_ref())?;
        match controller_ref(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if !deleting {
                    release(&api, &pod, &uid).await?;
                }
            }
            Some(_) => {}
            None => {
                if !matches || deleting || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                // upstream `RecheckDeletionTimestamp`: adopt only if a fresh read agrees.
                if !fresh_checked {
                    if !can_adopt(view, ctx).await? {
                        return Ok(owned);
                    }
                    fresh_checked = true;
                }
                if let Some(p) = adopt(&api, &pod, view).await? {
                    owned.push(Arc::new(p));
                }
            }
        }
    }
    Ok(owned)
}

async fn can_adopt(view: &View, ctx: &Ctx) -> Result<bool, Error> {
    let ns = view.rs.namespace().unwrap_or_default();
    let name = view.rs.name_any();
    let fresh_uid = match view.kind {
        Kind::ReplicaSet => Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&name)
            .await?
            .filter(|o| o.metadata.deletion_timestamp.is_none())
            .and_then(|o| o.metadata.uid),
        Kind::ReplicationController => {
            Api::<ReplicationController>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&name)
                .await?
                .filter(|o| o.metadata.deletion_timestamp.is_none())
                .and_then(|o| o.metadata.uid)
        }
    };
    Ok(fresh_uid.is_some() && fresh_uid == view.rs.metadata.uid)
}

/// Adds the controller reference (upstream patches with the pod's UID as precondition).
async fn adopt(api: &Api<Pod>, pod: &Pod, view: &View) -> Result<Option<Pod>, Error> {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(OwnerReference {
        api_version: view.kind.api_version().to_string(),
        kind: view.kind.kind().to_string(),
        name: view.rs.name_any(),
        uid: view.rs.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    });
    let patch = json!({
        "metadata": {
            "ownerReferences": refs,
            "uid": pod.metadata.uid,
            "resourceVersion": pod.metadata.resource_version,
        }
    });
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(p) => Ok(Some(p)),
        // Gone, or its UID changed: nothing to adopt.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 422 => Ok(None),
        // Changed meanwhile (409, e.g. bound by the scheduler): the error requeues this sync,
        // as upstream's failed adoption does; the pod's own event may already have passed.
        Err(e) => Err(e.into()),
    }
}

/// Removes this object's owner reference from a pod that no longer matches.
async fn release(api: &Api<Pod>, pod: &Pod, uid: &str) -> Result<(), Error> {
    let refs: Vec<OwnerReference> = pod
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != uid)
        .collect();
    let patch = json!({
        "metadata": {
            "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
            "uid": pod.metadata.uid,
            "resourceVersion": pod.metadata.resource_version,
        }
    });
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 422 => Ok(()),
        // A conflict requeues the sync (see `adopt`).
        Err(e) => Err(e.into()),
    }
}

/// upstream `manageReplicas`.
async fn manage_replicas(view: &View, owned: &[Arc<Pod>], ctx: &Ctx) -> Result<(), Error> {
    let key = view.key();
    let want = usize::try_from(view.replicas().max(0)).unwrap_or(0);
    let have = owned.len();
    let ns = view.rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let regarding = view.object_ref();
    if have < want {
        let diff = (want - have).min(BURST_REPLICAS);
        let Some(template) = view.template() else {
            return Ok(());
        };
        ctx.expectations.expect_creations(&key, diff);
        let pod = pod_from_template(template, &view.rs.metadata, view.kind);
        // upstream `slowStartBatch`: 1, 2, 4, ... pods at a time, stopping at the first error.
        let mut created = 0;
        let mut batch = 1;
        let mut first_err: Option<String> = None;
        while created < diff {
            let n = batch.min(diff - created);
            let pp = PostParams::default();
            let results = join_all((0..n).map(|_| api.create(&pp, &pod))).await;
            for r in results {
                match r {
                    Ok(p) => {
                        ctx.recorder
                            .normal(
                                &regarding,
                                "SuccessfulCreate",
                                format!("Created pod: {}", p.name_any()),
                            )
                            .await;
                    }
                    Err(e) => {
                        ctx.expectations.creation_observed(&key);
                        let msg = api_message(&e);
                        ctx.recorder
                            .warning(&regarding, "FailedCreate", format!("Error creating: {msg}"))
                            .await;
                        first_err.get_or_insert(msg);
                    }
                }
            }
            created += n;
            if first_err.is_some() {
                break;
            }
            batch *= 2;
        }
        // Pods of batches never started are not expected any more.
        for _ in created..diff {
            ctx.expectations.creation_observed(&key);
        }
        if let Some(msg) = first_err {
            return Err(Error::Manage(msg));
        }
    } else if have > want {
        let diff = (have - want).min(BURST_REPLICAS);
        let related = related_pods(view, ctx);
        let owned_refs: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
        let related_refs: Vec<&Pod> = related.iter().map(|p| p.as_ref()).collect();
        let victims = podutil::pods_to_delete(&owned_refs, &related_refs, diff, Timestamp::now());
        let uids: Vec<String> = victims
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        ctx.expectations.expect_deletions(&key, uids);
        let results = join_all(victims.iter().map(|p| {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: p.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let name = p.name_any();
            let api = api.clone();
            async move { (name, api.delete(&p.name_any(), &dp).await) }
        }))
        .await;
        let mut first_err = None;
        for ((name, r), pod) in results.into_iter().zip(victims.iter()) {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            match r {
                Ok(_) => {
                    ctx.recorder
                        .normal(
                            &regarding,
                            "SuccessfulDelete",
                            format!("Deleted pod: {name}"),
                        )
                        .await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    ctx.expectations.deletion_observed(&key, &uid)
                }
                Err(e) => {
                    ctx.expectations.deletion_observed(&key, &uid);
                    let msg = api_message(&e);
                    ctx.recorder
                        .warning(&regarding, "FailedDelete", format!("Error deleting: {msg}"))
                        .await;
                    first_err.get_or_insert(msg);
                }
            }
        }
        if let Some(msg) = first_err {
            return Err(Error::Manage(msg));
        }
    }
    Ok(())
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// upstream `getIndirectlyRelatedPods`: active pods of every ReplicaSet with the same controller
/// (the Deployment's other ReplicaSets), for the "doubled up on a node" rank.
fn related_pods(view: &View, ctx: &Ctx) -> Vec<Arc<Pod>> {
    let ns = view.rs.namespace();
    let mut owners: HashSet<String> = HashSet::new();
    owners.extend(view.rs.metadata.uid.clone());
    if let (Some(store), Some(parent)) = (&ctx.replicasets, controller_ref(&view.rs.metadata)) {
        for rs in store.state() {
            if rs.namespace() == ns
                && controller_ref(&rs.metadata).is_some_and(|r| r.uid == parent.uid)
            {
                owners.extend(rs.metadata.uid.clone());
            }
        }
    }
    ctx.pods
        .state()
        .into_iter()
        .filter(|p| p.namespace() == ns)
        .filter(|p| controller_ref(&p.metadata).is_some_and(|r| owners.contains(&r.uid)))
        .collect()
}

/// upstream `calculateStatus`.
fn calculate_status(
    view: &View,
    owned: &[Arc<Pod>],
    err: Option<&Error>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = view.status();
    let template_labels = view
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let mrs = view.min_ready_seconds();
    let fully = owned
        .iter()
        .filter(|p| podutil::labels_superset(p.metadata.labels.as_ref(), template_labels))
        .count();
    let ready = owned.iter().filter(|p| is_ready(p)).count();
    let available = owned.iter().filter(|p| is_available(p, mrs, now)).count();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match err {
        Some(e) if !has_failure => {
            let diff = owned.len() as i64 - i64::from(view.replicas());
            let reason = if diff < 0 {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(e.to_string()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let nonzero = |n: usize| (n > 0).then(|| count(n));
    status.replicas = count(owned.len());
    status.fully_labeled_replicas = nonzero(fully);
    status.ready_replicas = nonzero(ready);
    status.available_replicas = nonzero(available);
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status
}

/// upstream `updateReplicaSetStatus`: writes status (with observedGeneration) when it changed.
async fn update_status(view: &View, mut status: ReplicaSetStatus, ctx: &Ctx) -> Result<(), Error> {
    let generation = view.rs.metadata.generation;
    let current = view.status();
    let same = current.replicas == status.replicas
        && current.fully_labeled_replicas.unwrap_or(0)
            == status.fully_labeled_replicas.unwrap_or(0)
        && current.ready_replicas.unwrap_or(0) == status.ready_replicas.unwrap_or(0)
        && current.available_replicas.unwrap_or(0) == status.available_replicas.unwrap_or(0)
        && current.observed_generation == generation
        && current.conditions == status.conditions;
    if same {
        return Ok(());
    }
    status.observed_generation = generation;
    let ns = view.rs.namespace().unwrap_or_default();
    let name = view.rs.name_any();
    let pp = PostParams::default();
    let result = match view.kind {
        Kind::ReplicaSet => {
            let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
            let mut obj = view.rs.clone();
            obj.status = Some(status);
            api.replace_status(&name, &pp, &obj).await.map(|_| ())
        }
        Kind::ReplicationController => {
            let api: Api<ReplicationController> = Api::namespaced(ctx.client.clone(), &ns);
            let Some(mut obj) = api.get_opt(&name).await? else {
                return Ok(());
            };
            if obj.metadata.uid != view.rs.metadata.uid {
                return Ok(());
            }
            obj.status = Some(serde_json::from_value(serde_json::to_value(&status)?)?);
            api.replace_status(&name, &pp, &obj).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(()),
        // Changed meanwhile: the watch event brings the new version and another sync.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

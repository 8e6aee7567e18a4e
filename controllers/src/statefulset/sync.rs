//! One sync of a StatefulSet (upstream `StatefulSetControl.UpdateStatefulSet`): revisions,
//! claim pods, create/replace/condemn replicas in ordinal order, roll updates, write status,
//! truncate history.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::pods::{claim_owner_refs, claims_for, new_pod, pod_revision, replicas, start_ordinal};
use super::{Ctx, Error, api_message, get_ordinal, regarding};
use crate::deployment::util::scaled_value;
use crate::history::{self, Created, Owner, REVISION_HASH_LABEL};
use crate::podutil::{controller_ref, is_available, is_ready, phase};
use crate::replicaset::selects;

/// `revisionHistoryLimit` default.
const DEFAULT_HISTORY: i32 = 10;

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn is_failed_or_succeeded(p: &Pod) -> bool {
    matches!(phase(p), "Failed" | "Succeeded")
}

/// `isRunningAndReady`.
fn running_and_ready(p: &Pod) -> bool {
    phase(p) == "Running" && is_ready(p)
}

/// `isHealthy`: running, ready and not terminating.
fn healthy(p: &Pod) -> bool {
    running_and_ready(p) && !is_terminating(p)
}

/// The template a revision restores (its `data.spec.template` without the directive).
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

fn owner_of(set: &StatefulSet) -> Owner<'_> {
    let spec = set.spec.as_ref();
    Owner {
        api_version: "apps/v1",
        kind: "StatefulSet",
        meta: &set.metadata,
        selector: spec.map(|s| &s.selector).unwrap_or(&EMPTY_SELECTOR),
        template_labels: spec
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
    }
}

static EMPTY_SELECTOR: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        match_expressions: None,
        match_labels: None,
    };

/// Upstream `getStatefulSetRevisions`: the current and update revisions (creating the update
/// revision or renumbering an equal older one) and the collision count.
async fn revisions(
    set: &StatefulSet,
    existing: &[Arc<ControllerRevision>],
    client: &Client,
) -> Result<(ControllerRevision, ControllerRevision, i32), Error> {
    let owner = owner_of(set);
    let status = set.status.clone().unwrap_or_default();
    let collision = status.collision_count.unwrap_or(0);
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let data = history::template_patch(&template);
    let hash = history::hash_revision(&data, Some(collision));
    let next = history::next_revision(existing);
    let candidate = history::new_revision(&owner, data, next, &hash, REVISION_HASH_LABEL);
    let equal: Vec<&Arc<ControllerRevision>> = existing
        .iter()
        .filter(|r| history::equal_revision(r, &candidate))
        .collect();
    let update = match equal.last() {
        Some(r) if r.revision == next - 1 => (***r).clone(),
        Some(r) => history::bump_revision(client, r, next).await?,
        None => match history::create_revision(client, &candidate).await? {
            Created::Ok(r) => *r,
            Created::Collision => {
                bump_collision(set, client, collision + 1).await?;
                return Err(Error::Collision(set.name_any()));
            }
        },
    };
    let current_name = status.current_revision.unwrap_or_default();
    let current = existing
        .iter()
        .find(|r| r.name_any() == current_name)
        .map(|r| (**r).clone())
        .unwrap_or_else(|| update.clone());
    Ok((current, update, collision))
}

async fn bump_collision(set: &StatefulSet, client: &Client, count: i32) -> Result<(), Error> {
    let api: Api<StatefulSet> =
        Api::namespaced(client.clone(), &set.namespace().unwrap_or_default());
    let patch = json!({"status": {"collisionCount": count}});
    api.patch_status(
        &set.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// upstream `ClaimPods` with `isMemberOf`: pods of this set, adopting orphans that match.
async fn claim_pods(set: &StatefulSet, ctx: &Ctx) -> Result<Vec<Arc<Pod>>, Error> {
    let ns = set.namespace();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let selector = set
        .spec
        .as_ref()
        .map(|s| &s.selector)
        .unwrap_or(&EMPTY_SELECTOR);
    let name = set.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns.as_deref().unwrap_or_default());
    let mut owned = Vec::new();
    for pod in ctx.pods.state() {
        if pod.namespace() != ns {
            continue;
        }
        let matches = selects(selector, pod.metadata.labels.as_ref())?
            && get_ordinal(&name, &pod.name_any()).is_some();
        match controller_ref(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if set.metadata.deletion_timestamp.is_none() {
                    // Release: drop our reference.
                    let refs: Vec<OwnerReference> = pod
                        .metadata
                        .owner_references
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|r| r.uid != uid)
                        .collect();
                    patch_owner_refs(&api, &pod, refs).await?;
                }
            }
            Some(_) => {}
            None if matches
                && set.metadata.deletion_timestamp.is_none()
                && !is_terminating(&pod) =>
            {
                let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                refs.push(OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "StatefulSet".into(),
                    name: name.clone(),
                    uid: uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                });
                if let Some(p) = patch_owner_refs(&api, &pod, refs).await? {
                    owned.push(Arc::new(p));
                }
            }
            None => {}
        }
    }
    Ok(owned)
}

async fn patch_owner_refs(
    api: &Api<Pod>,
    pod: &Pod,
    refs: Vec<OwnerReference>,
) -> Result<Option<Pod>, Error> {
    let patch = json!({"metadata": {
        "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
        "uid": pod.metadata.uid,
        "resourceVersion": pod.metadata.resource_version,
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The reconcile function.
pub async fn sync(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ctx = ctx.as_ref();
    let existing = history::owned_revisions(&ctx.revisions, &owner_of(&set));
    let (current, update, collision) = revisions(&set, &existing, &ctx.client).await?;
    let pods = claim_pods(&set, ctx).await?;
    let mut status = StatefulSetStatus {
        collision_count: Some(collision),
        current_revision: Some(current.name_any()),
        update_revision: Some(update.name_any()),
        observed_generation: set.metadata.generation,
        ..Default::default()
    };
    let outcome = update_pods(&set, &pods, &current, &update, &mut status, ctx).await;
    complete_rolling_update(&set, &mut status);
    write_status(&set, status.clone(), ctx).await?;
    // Revisions still used by a pod, the current and the update revision are kept.
    let mut keep: HashSet<String> = pods.iter().map(|p| pod_revision(p).to_string()).collect();
    keep.extend(status.current_revision.clone());
    keep.extend(status.update_revision.clone());
    let limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(DEFAULT_HISTORY);
    let all = history::owned_revisions(&ctx.revisions, &owner_of(&set));
    history::truncate_history(&ctx.client, &all, &keep, limit).await?;
    outcome
}

/// Upstream `completeRollingUpdate`: once every pod is updated and ready, the update revision
/// becomes current.
fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let rolling = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling
        && status.updated_replicas.unwrap_or(0) == status.replicas
        && status.ready_replicas.unwrap_or(0) == status.replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

async fn write_status(
    set: &StatefulSet,
    status: StatefulSetStatus,
    ctx: &Ctx,
) -> Result<(), Error> {
    let norm = |s: &StatefulSetStatus| {
        let z = |v: Option<i32>| v.filter(|n| *n != 0);
        StatefulSetStatus {
            ready_replicas: z(s.ready_replicas),
            available_replicas: z(s.available_replicas),
            current_replicas: z(s.current_replicas),
            updated_replicas: z(s.updated_replicas),
            collision_count: z(s.collision_count),
            ..s.clone()
        }
    };
    let status = norm(&status);
    if set.status.as_ref().map(norm).as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<StatefulSet> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    let mut obj = set.clone();
    obj.status = Some(status);
    match api
        .replace_status(&set.name_any(), &PostParams::default(), &obj)
        .await
    {
        Ok(_) => Ok(()),
        // Changed meanwhile: its watch event brings another sync.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The pods, split into the replicas in the ordinal range (index = ordinal - start) and the
/// condemned ones beyond it (highest ordinal first).
fn split(set: &StatefulSet, pods: &[Arc<Pod>]) -> (Vec<Option<Arc<Pod>>>, Vec<Arc<Pod>>) {
    let start = start_ordinal(set);
    let n = replicas(set);
    let mut slots: Vec<Option<Arc<Pod>>> = vec![None; usize::try_from(n).unwrap_or(0)];
    let mut condemned = Vec::new();
    let name = set.name_any();
    for p in pods {
        let Some(ord) = get_ordinal(&name, &p.name_any()) else {
            continue;
        };
        if ord >= start && ord < start.saturating_add(n) {
            if let Some(slot) = slots.get_mut(usize::try_from(ord - start).unwrap_or(usize::MAX)) {
                *slot = Some(p.clone());
            }
        } else {
            condemned.push(p.clone());
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(get_ordinal(&name, &p.name_any())));
    (slots, condemned)
}

struct Plan<'a> {
    set: &'a StatefulSet,
    ctx: &'a Ctx,
    current: &'a ControllerRevision,
    update: &'a ControllerRevision,
    monotonic: bool,
    min_ready: i32,
}

/// Upstream `updateStatefulSet` (the replica loop, condemned loop and rolling update).
async fn update_pods(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    current: &ControllerRevision,
    update: &ControllerRevision,
    status: &mut StatefulSetStatus,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let spec = set.spec.clone().unwrap_or_default();
    let plan = Plan {
        set,
        ctx,
        current,
        update,
        monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
        min_ready: spec.min_ready_seconds.unwrap_or(0),
    };
    let now = Timestamp::now();
    let (mut slots, condemned) = split(set, pods);
    count_status(pods, &plan, status, now);
    let start = start_ordinal(set);
    let mut requeue: Option<u64> = None;
    let mut first_err: Option<Error> = None;
    // Replicas in ordinal order.
    for (i, slot) in slots.iter_mut().enumerate() {
        let ord = start + i32::try_from(i).unwrap_or(i32::MAX);
        let stop = match process_replica(&plan, slot, ord, status).await {
            Ok(s) => s,
            Err(e) => {
                if plan.monotonic {
                    return Err(e);
                }
                first_err.get_or_insert(e);
                false
            }
        };
        if let Some(p) = slot.as_ref()
            && healthy(p)
            && !is_available(p, plan.min_ready, now)
        {
            let left = crate::podutil::seconds_until_available(p, plan.min_ready, now).unwrap_or(1);
            requeue = Some(requeue.map_or(left.unsigned_abs(), |r| r.min(left.unsigned_abs())));
            if plan.monotonic {
                return Ok(Action::requeue(Duration::from_secs(
                    left.unsigned_abs() + 1,
                )));
            }
        }
        if stop && plan.monotonic {
            return Ok(Action::await_change());
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    // Reconcile claims' owner references of the replicas (retention policy).
    for (i, slot) in slots.iter().enumerate() {
        let ord = start + i32::try_from(i).unwrap_or(i32::MAX);
        if let Some(p) = slot {
            sync_claim_refs(&plan, p, ord, false).await?;
        }
    }
    // Condemned pods, highest ordinal first; in OrderedReady mode only once every replica is
    // healthy, one at a time, each waited for.
    let first_unhealthy = slots
        .iter()
        .flatten()
        .chain(condemned.iter())
        .find(|p| !healthy(p))
        .map(|p| p.name_any());
    for p in &condemned {
        let ord = get_ordinal(&set.name_any(), &p.name_any()).unwrap_or(0);
        if is_terminating(p) {
            if plan.monotonic {
                return Ok(Action::await_change());
            }
            continue;
        }
        if plan.monotonic
            && !running_and_ready(p)
            && first_unhealthy.as_deref() != Some(p.name_any().as_str())
        {
            return Ok(Action::await_change());
        }
        sync_claim_refs(&plan, p, ord, true).await?;
        delete_pod(&plan, p).await?;
        if plan.monotonic {
            return Ok(Action::await_change());
        }
    }
    // Rolling update.
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref() == Some("OnDelete") {
        return Ok(requeue_after(requeue));
    }
    let ru = strategy.rolling_update.unwrap_or_default();
    let partition = usize::try_from(ru.partition.unwrap_or(0).max(0)).unwrap_or(0);
    let n = slots.len();
    let max_unavailable = scaled_value(
        Some(&ru.max_unavailable.unwrap_or(IntOrString::Int(1))),
        i32::try_from(n).unwrap_or(i32::MAX),
        false,
        "1",
    )
    .max(1);
    let unavailable = slots
        .iter()
        .skip(partition)
        .filter(|s| match s {
            Some(p) => !healthy(p) || !is_available(p, plan.min_ready, now),
            None => true,
        })
        .count();
    let mut budget = usize::try_from(max_unavailable)
        .unwrap_or(1)
        .saturating_sub(unavailable);
    for target in (partition..n).rev() {
        let Some(p) = slots[target].as_ref() else {
            continue;
        };
        if pod_revision(p) != update.name_any() && !is_terminating(p) {
            if budget == 0 {
                break;
            }
            delete_pod(&plan, p).await?;
            budget -= 1;
            continue;
        }
        // Wait for unhealthy pods (upstream: with the default maxUnavailable of 1 the update
        // proceeds one pod at a time).
        if !healthy(p) && max_unavailable <= 1 {
            break;
        }
    }
    Ok(requeue_after(requeue))
}

fn requeue_after(secs: Option<u64>) -> Action {
    match secs {
        Some(s) => Action::requeue(Duration::from_secs(s + 1)),
        None => Action::await_change(),
    }
}

/// The status counters of the pods (upstream, in `updateStatefulSet`'s first loop).
fn count_status(
    pods: &[Arc<Pod>],
    plan: &Plan<'_>,
    status: &mut StatefulSetStatus,
    now: Timestamp,
) {
    let (cur, upd) = (plan.current.name_any(), plan.update.name_any());
    let mut s = (0, 0, 0, 0, 0);
    for p in pods {
        s.0 += 1;
        if running_and_ready(p) {
            s.1 += 1;
            if is_available(p, plan.min_ready, now) {
                s.2 += 1;
            }
        }
        if !is_terminating(p) {
            if pod_revision(p) == cur {
                s.3 += 1;
            }
            if pod_revision(p) == upd {
                s.4 += 1;
            }
        }
    }
    status.replicas = s.0;
    status.ready_replicas = Some(s.1);
    status.available_replicas = Some(s.2);
    status.current_replicas = Some(s.3);
    status.updated_replicas = Some(s.4);
}

/// Upstream `processReplica`: returns whether an ordered sync must stop here.
async fn process_replica(
    plan: &Plan<'_>,
    slot: &mut Option<Arc<Pod>>,
    ord: i32,
    status: &mut StatefulSetStatus,
) -> Result<bool, Error> {
    if let Some(p) = slot.as_ref()
        && is_failed_or_succeeded(p)
    {
        if !is_terminating(p) {
            delete_pod(plan, p).await?;
        }
        // The new pod is created on the next sync, once this one is gone.
        return Ok(true);
    }
    let Some(p) = slot.as_ref() else {
        let pod = versioned_pod(plan, ord);
        create_claims(plan, &pod, ord).await?;
        let created = create_pod(plan, &pod).await?;
        status.replicas += 1;
        if pod_revision(&pod) == plan.current.name_any() {
            status.current_replicas = Some(status.current_replicas.unwrap_or(0) + 1);
        }
        if pod_revision(&pod) == plan.update.name_any() {
            status.updated_replicas = Some(status.updated_replicas.unwrap_or(0) + 1);
        }
        *slot = created.map(Arc::new);
        return Ok(true);
    };
    if phase(p) == "Pending" {
        // A pending pod may still miss a claim (deleted by hand): create it.
        create_claims(plan, p, ord).await?;
    }
    if is_terminating(p) || !running_and_ready(p) {
        return Ok(true);
    }
    Ok(false)
}

/// Upstream `newVersionedStatefulSetPod`: ordinals below the partition get the current
/// revision, the others the update revision.
fn versioned_pod(plan: &Plan<'_>, ord: i32) -> Pod {
    let spec = plan.set.spec.clone().unwrap_or_default();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let start = start_ordinal(plan.set);
    let prior_current = plan
        .set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let use_current = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate"
        && match strategy.rolling_update.as_ref() {
            Some(r) => ord < start + r.partition.unwrap_or(0),
            None => ord < start + prior_current,
        };
    let (rev, template) = if use_current {
        (plan.current, template_of(plan.current))
    } else {
        (plan.update, Some(spec.template.clone()))
    };
    let template = template.unwrap_or(spec.template);
    new_pod(plan.set, &template, ord, &rev.name_any())
}

async fn create_claims(plan: &Plan<'_>, pod: &Pod, ord: i32) -> Result<(), Error> {
    let ns = plan.set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(plan.ctx.client.clone(), &ns);
    for mut claim in claims_for(plan.set, ord) {
        let name = claim.name_any();
        let key = kube::runtime::reflector::ObjectRef::new(&name).within(&ns);
        if let Some(existing) = plan.ctx.claims.get(&key) {
            if existing.metadata.deletion_timestamp.is_some() {
                return Err(Error::Manage(format!(
                    "pvc {name} is being deleted, pod {} cannot be created",
                    pod.name_any()
                )));
            }
            continue;
        }
        let refs = claim_owner_refs(plan.set, &claim, None, false);
        claim.metadata.owner_references = (!refs.is_empty()).then_some(refs);
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                plan.ctx
                    .recorder
                    .normal(
                        &regarding(plan.set),
                        "SuccessfulCreate",
                        format!(
                            "create Claim {name} Pod {} in StatefulSet {} success",
                            pod.name_any(),
                            plan.set.name_any()
                        ),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                let msg = api_message(&e);
                plan.ctx
                    .recorder
                    .warning(
                        &regarding(plan.set),
                        "FailedCreate",
                        format!(
                            "create Claim {name} for Pod {} in StatefulSet {} failed error: {msg}",
                            pod.name_any(),
                            plan.set.name_any()
                        ),
                    )
                    .await;
                return Err(Error::Manage(msg));
            }
        }
    }
    Ok(())
}

/// Keeps the claims' owner references in step with the retention policy.
async fn sync_claim_refs(
    plan: &Plan<'_>,
    pod: &Pod,
    ord: i32,
    condemned: bool,
) -> Result<(), Error> {
    let ns = plan.set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(plan.ctx.client.clone(), &ns);
    for claim in claims_for(plan.set, ord) {
        let key = kube::runtime::reflector::ObjectRef::new(&claim.name_any()).within(&ns);
        let Some(live) = plan.ctx.claims.get(&key) else {
            continue;
        };
        let want = claim_owner_refs(plan.set, &live, Some(pod), condemned);
        let have = live.metadata.owner_references.clone().unwrap_or_default();
        if want == have {
            continue;
        }
        let patch = json!({"metadata": {
            "ownerReferences": if want.is_empty() { serde_json::Value::Null } else { json!(want) },
            "resourceVersion": live.metadata.resource_version,
        }});
        match api
            .patch(
                &live.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn create_pod(plan: &Plan<'_>, pod: &Pod) -> Result<Option<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(
        plan.ctx.client.clone(),
        &plan.set.namespace().unwrap_or_default(),
    );
    let (set, name) = (plan.set.name_any(), pod.name_any());
    match api.create(&PostParams::default(), pod).await {
        Ok(p) => {
            plan.ctx
                .recorder
                .normal(
                    &regarding(plan.set),
                    "SuccessfulCreate",
                    format!("create Pod {name} in StatefulSet {set} successful"),
                )
                .await;
            Ok(Some(p))
        }
        // Created by an earlier sync the informer has not shown yet.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => {
            let msg = api_message(&e);
            plan.ctx
                .recorder
                .warning(
                    &regarding(plan.set),
                    "FailedCreate",
                    format!("create Pod {name} in StatefulSet {set} failed error: {msg}"),
                )
                .await;
            Err(Error::Manage(msg))
        }
    }
}

async fn delete_pod(plan: &Plan<'_>, pod: &Pod) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(
        plan.ctx.client.clone(),
        &plan.set.namespace().unwrap_or_default(),
    );
    let (set, name) = (plan.set.name_any(), pod.name_any());
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => {
            plan.ctx
                .recorder
                .normal(
                    &regarding(plan.set),
                    "SuccessfulDelete",
                    format!("delete Pod {name} in StatefulSet {set} successful"),
                )
                .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => {
            let msg = api_message(&e);
            plan.ctx
                .recorder
                .warning(
                    &regarding(plan.set),
                    "FailedDelete",
                    format!("delete Pod {name} in StatefulSet {set} failed error: {msg}"),
                )
                .await;
            Err(Error::Manage(msg))
        }
    }
}

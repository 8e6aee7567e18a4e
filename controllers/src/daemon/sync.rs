//! One sync of a DaemonSet (upstream `syncDaemonSet`): history, `manage` (a pod on every node
//! that should run one, none elsewhere), the rolling update, status and history cleanup.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use serde_json::json;

use super::nodes::{self, HASH_LABEL};
use super::{Ctx, Error, regarding};
use crate::deployment::util::{compute_hash, scaled_value};
use crate::history::{self, Created, Owner};
use crate::podutil::{controller_ref, is_available, is_ready, phase};
use crate::replicaset::selects;

const DEFAULT_HISTORY: i32 = 10;
/// upstream `BurstReplicas`.
const BURST: usize = 250;
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

fn key(ds: &DaemonSet) -> String {
    format!("{}/{}", ds.namespace().unwrap_or_default(), ds.name_any())
}

fn owner_of(ds: &DaemonSet) -> Owner<'_> {
    let spec = ds.spec.as_ref();
    Owner {
        api_version: "apps/v1",
        kind: "DaemonSet",
        meta: &ds.metadata,
        selector: spec.map(|s| &s.selector).unwrap_or(&EMPTY),
        template_labels: spec
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
    }
}

static EMPTY: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        match_expressions: None,
        match_labels: None,
    };

/// Upstream `constructHistory`: the hash of the current template, creating its revision (or
/// renumbering an equal older one).
async fn construct_history(ds: &DaemonSet, ctx: &Ctx) -> Result<String, Error> {
    let owner = owner_of(ds);
    let existing = history::owned_revisions(&ctx.revisions, &owner);
    let spec = ds.spec.clone().unwrap_or_default();
    let collision = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = compute_hash(&spec.template, collision);
    let data = history::template_patch(&spec.template);
    let next = history::next_revision(&existing);
    let mut candidate = history::new_revision(&owner, data, next, &hash, HASH_LABEL);
    candidate.metadata.annotations = ds.metadata.annotations.clone();
    let equal: Vec<&Arc<ControllerRevision>> = existing
        .iter()
        .filter(|r| history::equal_revision(r, &candidate))
        .collect();
    match equal.last() {
        Some(r) => {
            let max_other = existing
                .iter()
                .filter(|o| o.name_any() != r.name_any())
                .map(|o| o.revision)
                .max()
                .unwrap_or(0);
            if r.revision <= max_other {
                history::bump_revision(&ctx.client, r, max_other + 1).await?;
            }
            Ok(r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HASH_LABEL).cloned())
                .unwrap_or(hash))
        }
        None => match history::create_revision(&ctx.client, &candidate).await? {
            Created::Ok(_) => Ok(hash),
            Created::Collision => {
                let api: Api<DaemonSet> =
                    Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
                let patch = json!({"status": {"collisionCount": collision.unwrap_or(0) + 1}});
                api.patch_status(
                    &ds.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                Err(Error::Collision(ds.name_any()))
            }
        },
    }
}

/// The reconcile function.
pub async fn sync(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ctx = ctx.as_ref();
    if ds.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&key(&ds));
        return Ok(Action::await_change());
    }
    let hash = construct_history(&ds, ctx).await?;
    let nodes = ctx.nodes.state();
    let mut requeue: Option<Duration> = None;
    let mut result = Ok(());
    if ctx.expectations.satisfied(&key(&ds)) {
        let by_node = claim_pods(&ds, ctx).await?;
        result = manage(&ds, &nodes, &by_node, &hash, ctx, &mut requeue).await;
        let rolling = ds
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        if result.is_ok() && rolling && ctx.expectations.satisfied(&key(&ds)) {
            result = rolling_update(&ds, &nodes, &by_node, &hash, ctx).await;
        }
    }
    let by_node = claim_pods(&ds, ctx).await?;
    let min_ready = update_status(&ds, &nodes, &by_node, &hash, ctx).await?;
    cleanup_history(&ds, &by_node, &hash, ctx).await?;
    result?;
    if let Some(wait) = min_ready {
        requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// upstream `getNodesToDaemonPods`: the set's pods (adopting matching orphans) by node, not
/// counting pods being deleted.
async fn claim_pods(ds: &DaemonSet, ctx: &Ctx) -> Result<BTreeMap<String, Vec<Arc<Pod>>>, Error> {
    let ns = ds.namespace();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let selector = ds.spec.as_ref().map(|s| &s.selector).unwrap_or(&EMPTY);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns.as_deref().unwrap_or_default());
    let mut out: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in ctx.pods.state() {
        if pod.namespace() != ns || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let matches = selects(selector, pod.metadata.labels.as_ref())?;
        let pod = match controller_ref(&pod.metadata) {
            Some(r) if r.uid == uid && matches => pod,
            None if matches && ds.metadata.deletion_timestamp.is_none() => {
                let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                refs.push(OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "DaemonSet".into(),
                    name: ds.name_any(),
                    uid: uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                });
                let patch = json!({"metadata": {"ownerReferences": refs,
                    "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version}});
                match api
                    .patch(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(p) => Arc::new(p),
                    Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            _ => continue,
        };
        if let Some(node) = nodes::target_node(&pod) {
            out.entry(node).or_default().push(pod);
        }
    }
    for pods in out.values_mut() {
        // Oldest first (upstream `podByCreationTimestampAndPhase`).
        pods.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
    }
    Ok(out)
}

fn surge_allowed(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .filter(|u| u.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate")
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_surge.as_ref())
        .is_some_and(|s| match s {
            IntOrString::Int(i) => *i > 0,
            IntOrString::String(s) => s.trim_end_matches('%').parse::<i32>().is_ok_and(|v| v > 0),
        })
}

fn is_new(pod: &Pod, hash: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .map(String::as_str)
        == Some(hash)
}

/// Upstream `manage` + `podsShouldBeOnNode`.
async fn manage(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    ctx: &Ctx,
    requeue: &mut Option<Duration>,
) -> Result<(), Error> {
    let mut create_on: Vec<String> = Vec::new();
    let mut delete: Vec<Arc<Pod>> = Vec::new();
    let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    for node in nodes {
        let name = node.name_any();
        let (run, keep) = nodes::should_run(node, ds);
        let pods = by_node.get(&name);
        match pods {
            None if run => create_on.push(name),
            Some(pods) if keep => {
                let mut running = Vec::new();
                for p in pods {
                    match phase(p) {
                        "Failed" => {
                            let bkey =
                                format!("{}/{name}", ds.metadata.uid.clone().unwrap_or_default());
                            if let Some(wait) = in_backoff(ctx, &bkey) {
                                *requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
                                continue;
                            }
                            ctx.recorder
                                .warning(
                                    &regarding(ds),
                                    "FailedDaemonPod",
                                    format!(
                                        "Found failed daemon pod {}/{} on node {name}, will try to kill it",
                                        p.namespace().unwrap_or_default(),
                                        p.name_any()
                                    ),
                                )
                                .await;
                            delete.push(p.clone());
                        }
                        "Succeeded" => delete.push(p.clone()),
                        _ => running.push(p.clone()),
                    }
                }
                if running.len() > 1 {
                    if !surge_allowed(ds) {
                        delete.extend(running.into_iter().skip(1));
                    } else {
                        // Surge: keep the oldest new pod, and the oldest old pod only while the
                        // new one is not ready and the old one is.
                        let new = running.iter().find(|p| is_new(p, hash)).cloned();
                        let old = running.iter().find(|p| !is_new(p, hash)).cloned();
                        let keep_old = match (&new, &old) {
                            (Some(n), Some(o)) => !is_ready(n) && is_ready(o),
                            _ => false,
                        };
                        let kept: Vec<String> = new
                            .iter()
                            .chain(old.iter().filter(|_| keep_old || new.is_none()))
                            .map(|p| p.name_any())
                            .collect();
                        delete.extend(
                            running
                                .into_iter()
                                .filter(|p| !kept.contains(&p.name_any())),
                        );
                    }
                }
            }
            Some(pods) if !keep => delete.extend(pods.iter().cloned()),
            _ => {}
        }
    }
    // Pods pinned to nodes that do not exist.
    for (node, pods) in by_node {
        if !names.contains(node) {
            delete.extend(pods.iter().cloned());
        }
    }
    sync_nodes(ds, delete, create_on, hash, ctx).await
}

fn in_backoff(ctx: &Ctx, key: &str) -> Option<Duration> {
    let mut map = ctx.failed_backoff.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    match map.get_mut(key) {
        Some((n, at)) => {
            let delay = Duration::from_secs(1u64 << (*n).min(10)).min(BACKOFF_MAX);
            if now.duration_since(*at) < delay {
                return Some(delay - now.duration_since(*at));
            }
            *n += 1;
            *at = now;
            None
        }
        None => {
            map.insert(key.to_string(), (0, now));
            None
        }
    }
}

/// The new and the old pod on a node.
type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

/// Upstream `rollingUpdate`.
async fn rolling_update(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    ctx: &Ctx,
) -> Result<(), Error> {
    let now = Timestamp::now();
    let spec = ds.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let ru = spec
        .update_strategy
        .and_then(|u| u.rolling_update)
        .unwrap_or_default();
    let desired = nodes.iter().filter(|n| nodes::should_run(n, ds).0).count();
    let desired_i = i32::try_from(desired).unwrap_or(i32::MAX);
    let max_surge = scaled_value(ru.max_surge.as_ref(), desired_i, true, "0");
    let mut max_unavailable = scaled_value(ru.max_unavailable.as_ref(), desired_i, true, "1");
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let avail = |p: &Pod| is_available(p, min_ready, now);
    // upstream `findUpdatedPodsOnNode`: at most one new and one old pod, else None.
    let split = |pods: &[Arc<Pod>]| -> Option<NewAndOld> {
        let (mut new, mut old) = (None, None);
        for p in pods {
            let slot = if is_new(p, hash) { &mut new } else { &mut old };
            if slot.is_some() {
                return None;
            }
            *slot = Some(p.clone());
        }
        Some((new, old))
    };
    let node_of = |name: &str| nodes.iter().find(|n| n.name_any() == name);
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace = Vec::new();
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            match split(pods) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(n), None)) => {
                    if !avail(&n) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(o))) => {
                    if !avail(&o) {
                        replace.push(o);
                    } else if unavailable < max_unavailable {
                        candidates.push(o);
                    }
                }
            }
        }
        let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        replace.extend(candidates.into_iter().take(room));
        return sync_nodes(ds, replace, Vec::new(), hash, ctx).await;
    }
    let (mut delete, mut should_not_run, mut candidates, mut allowed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut surge, mut available) = (0, 0usize);
    for (name, pods) in by_node {
        let Some((new, old)) = split(pods) else {
            surge += 1;
            continue;
        };
        if old.as_ref().is_some_and(|o| avail(o)) || new.as_ref().is_some_and(|n| avail(n)) {
            available += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(o)) => {
                if !avail(&o) {
                    if node_of(name).is_none_or(|n| !nodes::should_run(n, ds).0) {
                        should_not_run.push(o);
                        continue;
                    }
                    allowed.push(name.clone());
                } else if surge < max_surge {
                    candidates.push(name.clone());
                }
            }
            (Some(n), Some(o)) => {
                if !avail(&n) {
                    surge += 1;
                } else {
                    delete.push(o);
                }
            }
        }
    }
    let deletable = available.saturating_sub(desired).min(should_not_run.len());
    delete.extend(should_not_run.into_iter().take(deletable));
    let room = usize::try_from((max_surge - surge).max(0)).unwrap_or(0);
    allowed.extend(candidates.into_iter().take(room));
    sync_nodes(ds, delete, allowed, hash, ctx).await
}

/// upstream `syncNodes`: deletes and creates with expectations, creations in slow-start batches.
async fn sync_nodes(
    ds: &DaemonSet,
    mut delete: Vec<Arc<Pod>>,
    mut create_on: Vec<String>,
    hash: &str,
    ctx: &Ctx,
) -> Result<(), Error> {
    delete.truncate(BURST);
    create_on.truncate(BURST);
    if delete.is_empty() && create_on.is_empty() {
        return Ok(());
    }
    let k = key(ds);
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let reg = regarding(ds);
    let mut first_err: Option<String> = None;
    ctx.expectations.expect_creations(&k, create_on.len());
    ctx.expectations
        .expect_deletions(&k, delete.iter().filter_map(|p| p.metadata.uid.clone()));
    let template = nodes::pod_template(ds, hash);
    let mut done = 0;
    let mut batch = 1;
    while done < create_on.len() && first_err.is_none() {
        let chunk: Vec<&String> = create_on.iter().skip(done).take(batch).collect();
        let results = join_all(chunk.iter().map(|node| {
            let pod = nodes::new_pod(ds, &template, node);
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod).await }
        }))
        .await;
        for r in results {
            match r {
                Ok(p) => {
                    ctx.recorder
                        .normal(
                            &reg,
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.name_any()),
                        )
                        .await;
                }
                Err(e) => {
                    ctx.expectations.creation_observed(&k);
                    let msg = message(&e);
                    ctx.recorder
                        .warning(&reg, "FailedCreate", format!("Error creating: {msg}"))
                        .await;
                    first_err.get_or_insert(msg);
                }
            }
        }
        done += chunk.len();
        batch *= 2;
    }
    for _ in done..create_on.len() {
        ctx.expectations.creation_observed(&k);
    }
    let results = join_all(delete.iter().map(|p| {
        let api = api.clone();
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: p.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        async move { api.delete(&p.name_any(), &dp).await }
    }))
    .await;
    for (p, r) in delete.iter().zip(results) {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        match r {
            Ok(_) => {
                ctx.recorder
                    .normal(
                        &reg,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", p.name_any()),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                ctx.expectations.deletion_observed(&k, &uid);
            }
            Err(e) => {
                ctx.expectations.deletion_observed(&k, &uid);
                let msg = message(&e);
                ctx.recorder
                    .warning(&reg, "FailedDelete", format!("Error deleting: {msg}"))
                    .await;
                first_err.get_or_insert(msg);
            }
        }
    }
    match first_err {
        Some(m) => Err(Error::Manage(m)),
        None => Ok(()),
    }
}

fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Upstream `updateDaemonSetStatus`; returns when a ready pod becomes available, if it will.
async fn update_status(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    ctx: &Ctx,
) -> Result<Option<Duration>, Error> {
    let now = Timestamp::now();
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (mut desired, mut current, mut mis, mut ready, mut available, mut updated) =
        (0, 0, 0, 0, 0, 0);
    let mut wait: Option<Duration> = None;
    for node in nodes {
        let (run, _) = nodes::should_run(node, ds);
        let pods = by_node.get(&node.name_any()).filter(|p| !p.is_empty());
        match (run, pods) {
            (true, None) => desired += 1,
            (true, Some(pods)) => {
                desired += 1;
                current += 1;
                let pod = &pods[0];
                if is_ready(pod) {
                    ready += 1;
                    if is_available(pod, min_ready, now) {
                        available += 1;
                    } else if let Some(s) =
                        crate::podutil::seconds_until_available(pod, min_ready, now)
                    {
                        let d = Duration::from_secs(s.unsigned_abs() + 1);
                        wait = Some(wait.map_or(d, |w| w.min(d)));
                    }
                }
                if is_new(pod, hash) {
                    updated += 1;
                }
            }
            (false, Some(_)) => mis += 1,
            (false, None) => {}
        }
    }
    let nz = |v: i32| (v != 0).then_some(v);
    let old = ds.status.clone().unwrap_or_default();
    let status = DaemonSetStatus {
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        current_number_scheduled: current,
        desired_number_scheduled: desired,
        number_available: nz(available),
        number_misscheduled: mis,
        number_ready: ready,
        number_unavailable: nz(desired - available),
        observed_generation: ds.metadata.generation,
        updated_number_scheduled: nz(updated),
    };
    let norm = |s: &DaemonSetStatus| DaemonSetStatus {
        number_available: s.number_available.filter(|v| *v != 0),
        number_unavailable: s.number_unavailable.filter(|v| *v != 0),
        updated_number_scheduled: s.updated_number_scheduled.filter(|v| *v != 0),
        ..s.clone()
    };
    if norm(&old) == status {
        return Ok(wait);
    }
    let api: Api<DaemonSet> =
        Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    let mut obj = ds.clone();
    obj.status = Some(status);
    match api
        .replace_status(&ds.name_any(), &PostParams::default(), &obj)
        .await
    {
        Ok(_) => Ok(wait),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(wait),
        Err(e) => Err(e.into()),
    }
}

/// Upstream `cleanupHistory`: old revisions no pod uses, beyond `revisionHistoryLimit`.
async fn cleanup_history(
    ds: &DaemonSet,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    ctx: &Ctx,
) -> Result<(), Error> {
    let revisions = history::owned_revisions(&ctx.revisions, &owner_of(ds));
    let live: HashSet<String> = by_node
        .values()
        .flatten()
        .filter_map(|p| p.metadata.labels.as_ref()?.get(HASH_LABEL).cloned())
        .chain(std::iter::once(hash.to_string()))
        .collect();
    let keep: HashSet<String> = revisions
        .iter()
        .filter(|r| {
            r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HASH_LABEL))
                .is_some_and(|h| live.contains(h))
        })
        .map(|r| r.name_any())
        .collect();
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(DEFAULT_HISTORY);
    history::truncate_history(&ctx.client, &revisions, &keep, limit).await?;
    Ok(())
}

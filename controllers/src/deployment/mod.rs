//! The Deployment controller (upstream `pkg/controller/deployment`): owns ReplicaSets named
//! `<deployment>-<pod-template-hash>`, rolls from old to new with RollingUpdate (maxSurge,
//! maxUnavailable, minReadySeconds) or Recreate, scales proportionally during a rollout, keeps
//! `revisionHistoryLimit` old ReplicaSets, and reports status with the Available and
//! Progressing conditions (upstream's reasons and messages, `progressDeadlineSeconds`).
//!
//! `kubectl rollout undo` is client-side (kubectl patches the template back), `pause` is
//! `spec.paused`, `restart` an annotation on the template: all arrive here as spec changes.

mod rollout;
pub mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::Recorder;
use crate::informer::{Change, Informer};
use crate::podutil::controller_ref;
use crate::replicaset::selects;
use util::*;

/// Longest `deployment.kubernetes.io/revision-history` (upstream `maxRevHistoryLengthInChars`).
const MAX_REV_HISTORY_CHARS: usize = 2000;

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The selector cannot be evaluated.
    #[error(transparent)]
    Selector(#[from] crate::replicaset::Error),
    /// A hash collision was recorded; the next sync uses the new collision count.
    #[error("hash collision for the new ReplicaSet of {0}")]
    Collision(String),
}

/// Shared state.
pub struct Ctx {
    client: Client,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
}

/// Runs the controller.
pub async fn run(
    client: Client,
    pods: Informer<Pod>,
    replicasets: Informer<ReplicaSet>,
) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::all(client.clone());
    let controller = Controller::new(
        api,
        kube::runtime::watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    let rs_store = replicasets.store();
    // A ReplicaSet change concerns its controlling Deployment, or (orphans) every Deployment
    // whose selector selects it (upstream `addReplicaSet`/`updateReplicaSet`/`deleteReplicaSet`).
    let dstore = store.clone();
    let rs_refs = replicasets.subscribe().flat_map(move |change| {
        let targets: Vec<Arc<ReplicaSet>> = match change {
            Change::Added(rs) | Change::Deleted(rs) => vec![rs],
            Change::Updated(old, new) => vec![old, new],
            Change::Resync => Vec::new(),
        };
        let mut refs = Vec::new();
        if targets.is_empty() {
            refs.extend(
                dstore
                    .state()
                    .iter()
                    .map(|d| ObjectRef::from_obj(d.as_ref())),
            );
        }
        for rs in targets {
            let ns = rs.namespace().unwrap_or_default();
            match controller_ref(&rs.metadata) {
                Some(r) if r.kind == "Deployment" => refs.push(ObjectRef::new(&r.name).within(&ns)),
                Some(_) => {}
                None => refs.extend(
                    dstore
                        .state()
                        .iter()
                        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
                        .filter(|d| {
                            d.spec.as_ref().is_some_and(|s| {
                                selects(&s.selector, rs.metadata.labels.as_ref()).unwrap_or(false)
                            })
                        })
                        .map(|d| ObjectRef::from_obj(d.as_ref())),
                ),
            }
        }
        futures::stream::iter(refs)
    });
    // A deleted pod can unblock a Recreate rollout (upstream `deletePod`).
    let rss = rs_store.clone();
    let pod_refs = pods.subscribe().filter_map(move |change| {
        let out = match change {
            Change::Deleted(p) => controller_ref(&p.metadata)
                .filter(|r| r.kind == "ReplicaSet")
                .and_then(|r| {
                    let ns = p.namespace().unwrap_or_default();
                    rss.get(&ObjectRef::new(&r.name).within(&ns))
                })
                .and_then(|rs| {
                    controller_ref(&rs.metadata)
                        .filter(|r| r.kind == "Deployment")
                        .map(|r| {
                            ObjectRef::new(&r.name).within(&rs.namespace().unwrap_or_default())
                        })
                }),
            _ => None,
        };
        futures::future::ready(out)
    });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        replicasets: rs_store,
        pods: pods.store(),
        recorder: Recorder::new(client, "deployment-controller"),
    });
    controller
        .reconcile_on(rs_refs)
        .reconcile_on(pod_refs)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "deployment reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy(d: Arc<Deployment>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(deployment = %d.name_any(), error = %err, "deployment sync failed");
    Action::requeue(Duration::from_millis(500))
}

/// One sync (upstream `syncDeployment`), with the working copies it updates as it writes.
pub(crate) struct Sync<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) d: Deployment,
    /// The ReplicaSets this Deployment controls.
    pub(crate) rss: Vec<ReplicaSet>,
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let mut s = Sync {
        ctx: &ctx,
        d: (*d).clone(),
        rss: Vec::new(),
    };
    let selector_empty = d.spec.as_ref().is_none_or(|sp| {
        sp.selector
            .match_labels
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
            && sp
                .selector
                .match_expressions
                .as_ref()
                .is_none_or(Vec::is_empty)
    });
    if selector_empty {
        s.ctx
            .recorder
            .warning(
                &s.regarding(),
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            )
            .await;
        if d.status.as_ref().and_then(|st| st.observed_generation) < d.metadata.generation {
            let mut st = d.status.clone().unwrap_or_default();
            st.observed_generation = d.metadata.generation;
            s.write_status(st).await?;
        }
        return Ok(Action::await_change());
    }
    s.rss = s.claim_replicasets().await?;
    if d.metadata.deletion_timestamp.is_some() {
        s.sync_status_only().await?;
        return Ok(Action::await_change());
    }
    s.check_paused_conditions().await?;
    let paused = d.spec.as_ref().and_then(|sp| sp.paused).unwrap_or(false);
    if paused || s.is_scaling_event() {
        s.sync_scale().await?;
        return Ok(Action::await_change());
    }
    if is_rolling(&s.d) {
        s.rollout_rolling().await
    } else {
        s.rollout_recreate().await
    }
}

impl Sync<'_> {
    fn ns(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    fn regarding(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            name: self.d.metadata.name.clone(),
            namespace: self.d.metadata.namespace.clone(),
            uid: self.d.metadata.uid.clone(),
            resource_version: self.d.metadata.resource_version.clone(),
            ..Default::default()
        }
    }

    fn selector(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        self.d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default()
    }

    /// upstream `getReplicaSetsForDeployment` (`ClaimReplicaSets`): adopt matching orphans,
    /// release owned ReplicaSets that no longer match.
    async fn claim_replicasets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let ns = self.ns();
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let selector = self.selector();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), &ns);
        let mut out = Vec::new();
        let mut fresh_checked = false;
        for rs in self.ctx.replicasets.state() {
            if rs.namespace().as_deref() != Some(ns.as_str()) {
                continue;
            }
            let matches = selects(&selector, rs.metadata.labels.as_ref())?;
            match controller_ref(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches || deleting {
                        out.push((*rs).clone());
                    } else {
                        let refs: Vec<OwnerReference> = rs
                            .metadata
                            .owner_references
                            .clone()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|r| r.uid != uid)
                            .collect();
                        let patch = json!({"metadata": {
                            "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
                            "uid": rs.metadata.uid, "resourceVersion": rs.metadata.resource_version}});
                        ignore_gone(
                            api.patch(
                                &rs.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(&patch),
                            )
                            .await,
                        )?;
                    }
                }
                Some(_) => {}
                None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                    if !fresh_checked {
                        let fresh: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &ns);
                        let ok = fresh.get_opt(&self.d.name_any()).await?.is_some_and(|f| {
                            f.metadata.uid == self.d.metadata.uid
                                && f.metadata.deletion_timestamp.is_none()
                        });
                        if !ok {
                            return Ok(out);
                        }
                        fresh_checked = true;
                    }
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(self.controller_ref());
                    let patch = json!({"metadata": {"ownerReferences": refs,
                        "uid": rs.metadata.uid, "resourceVersion": rs.metadata.resource_version}});
                    if let Some(adopted) = ignore_gone(
                        api.patch(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await,
                    )? {
                        out.push(adopted);
                    }
                }
                None => {}
            }
        }
        Ok(out)
    }

    fn controller_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: self.d.name_any(),
            uid: self.d.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Index of the new ReplicaSet (upstream `FindNewReplicaSet`: the oldest whose template
    /// equals the Deployment's, ignoring the hash label).
    pub(crate) fn new_rs_index(&self) -> Option<usize> {
        let template = self.d.spec.as_ref()?.template.clone();
        let mut idx: Vec<usize> = (0..self.rss.len()).collect();
        idx.sort_by(|&a, &b| by_creation(&self.rss[a], &self.rss[b]));
        idx.into_iter().find(|&i| {
            self.rss[i]
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        })
    }

    /// upstream `checkPausedConditions`.
    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        let cond = get_condition(&status, "Progressing").cloned();
        if cond.as_ref().and_then(|c| c.reason.as_deref()) == Some(reason::TIMED_OUT) {
            return Ok(());
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let paused_cond = cond.as_ref().and_then(|c| c.reason.as_deref()) == Some(reason::PAUSED);
        let now = Timestamp::now();
        let changed = if paused && !paused_cond {
            set_condition(
                &mut status,
                condition(
                    "Progressing",
                    "Unknown",
                    reason::PAUSED,
                    "Deployment is paused".into(),
                    now,
                ),
            );
            true
        } else if !paused && paused_cond {
            set_condition(
                &mut status,
                condition(
                    "Progressing",
                    "Unknown",
                    reason::RESUMED,
                    "Deployment is resumed".into(),
                    now,
                ),
            );
            true
        } else {
            false
        };
        if changed {
            self.write_status(status).await?;
        }
        Ok(())
    }

    /// upstream `isScalingEvent`: an active ReplicaSet's desired-replicas annotation differs
    /// from `spec.replicas`.
    fn is_scaling_event(&self) -> bool {
        let replicas = d_replicas(&self.d);
        self.rss
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .filter_map(desired_annotation)
            .any(|desired| desired != replicas)
    }

    /// upstream `getAllReplicaSetsAndSyncRevision`: brings the new ReplicaSet's annotations up
    /// to date (creating it when `create`), returns its index.
    pub(crate) async fn sync_revision(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let new_idx = self.new_rs_index();
        let max_old = self
            .rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .map(|(_, rs)| revision(&rs.metadata))
            .max()
            .unwrap_or(0);
        let new_revision = (max_old + 1).to_string();
        if let Some(i) = new_idx {
            let mut copy = self.rss[i].clone();
            let mut changed = set_new_rs_annotations(&self.d, &mut copy, &new_revision, true);
            let mrs = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if copy
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0)
                != mrs.unwrap_or(0)
            {
                if let Some(sp) = copy.spec.as_mut() {
                    sp.min_ready_seconds = mrs;
                }
                changed = true;
            }
            if changed {
                let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), &self.ns());
                self.rss[i] = api
                    .replace(&copy.name_any(), &PostParams::default(), &copy)
                    .await?;
            }
            let rev = self.rss[i]
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned()
                .unwrap_or_default();
            self.set_deployment_revision(&rev).await?;
            let mut status = self.d.status.clone().unwrap_or_default();
            if progress_deadline(&self.d).is_some()
                && get_condition(&status, "Progressing").is_none()
            {
                let msg = format!("Found new replica set \"{}\"", self.rss[i].name_any());
                set_condition(
                    &mut status,
                    condition(
                        "Progressing",
                        "True",
                        reason::FOUND_NEW_RS,
                        msg,
                        Timestamp::now(),
                    ),
                );
                self.write_status(status).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        self.create_new_rs(&new_revision).await
    }

    async fn create_new_rs(&mut self, new_revision: &str) -> Result<Option<usize>, Error> {
        let Some(spec) = self.d.spec.clone() else {
            return Ok(None);
        };
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        let tmeta = template.metadata.get_or_insert_with(Default::default);
        tmeta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = tmeta.labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{}", self.d.name_any(), hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns()),
                owner_references: Some(vec![self.controller_ref()]),
                labels,
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = self.rss.iter().chain(std::iter::once(&rs)).collect();
        let replicas = new_rs_new_replicas(&self.d, &all, &rs);
        if let Some(sp) = rs.spec.as_mut() {
            sp.replicas = Some(replicas);
        }
        set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), &self.ns());
        let created = match api.create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Ours already (a stale store)? Otherwise a hash collision: bump the count.
                if let Some(existing) = api.get_opt(&name).await? {
                    let ours = controller_ref(&existing.metadata)
                        .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                    let same = existing
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                    if ours && same {
                        self.rss.push(existing);
                        return Ok(Some(self.rss.len() - 1));
                    }
                }
                let mut status = self.d.status.clone().unwrap_or_default();
                status.collision_count = Some(collision.unwrap_or(0) + 1);
                self.write_status(status).await?;
                return Err(Error::Collision(self.d.name_any()));
            }
            Err(e) => {
                if progress_deadline(&self.d).is_some() {
                    let msg = match &e {
                        kube::Error::Api(s) => s.message.clone(),
                        other => other.to_string(),
                    };
                    let mut status = self.d.status.clone().unwrap_or_default();
                    let msg = format!("Failed to create new replica set \"{name}\": {msg}");
                    set_condition(
                        &mut status,
                        condition(
                            "Progressing",
                            "False",
                            "ReplicaSetCreateError",
                            msg,
                            Timestamp::now(),
                        ),
                    );
                    self.write_status(status).await?;
                }
                return Err(e.into());
            }
        };
        if replicas > 0 {
            self.ctx
                .recorder
                .normal(
                    &self.regarding(),
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {name} to {replicas}"),
                )
                .await;
        }
        self.set_deployment_revision(new_revision).await?;
        if progress_deadline(&self.d).is_some() {
            let mut status = self.d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set \"{name}\"");
            set_condition(
                &mut status,
                condition("Progressing", "True", reason::NEW_RS, msg, Timestamp::now()),
            );
            self.write_status(status).await?;
        }
        self.rss.push(created);
        Ok(Some(self.rss.len() - 1))
    }

    /// upstream `SetDeploymentRevision`, written as a metadata patch.
    async fn set_deployment_revision(&mut self, rev: &str) -> Result<(), Error> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if current.map(String::as_str) == Some(rev) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &self.ns());
        let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
        let updated = api
            .patch(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        self.d.metadata = updated.metadata;
        Ok(())
    }

    /// Writes `status` (with observedGeneration untouched) and keeps the working copy current.
    pub(crate) async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &self.ns());
        let mut obj = self.d.clone();
        obj.status = Some(status);
        let updated = api
            .replace_status(&self.d.name_any(), &PostParams::default(), &obj)
            .await?;
        self.d = updated;
        Ok(())
    }

    /// Scales one ReplicaSet (upstream `scaleReplicaSetAndRecordEvent`); returns whether it
    /// changed.
    pub(crate) async fn scale_rs(&mut self, i: usize, new_scale: i32) -> Result<bool, Error> {
        let old = rs_replicas(&self.rss[i]);
        let replicas = d_replicas(&self.d);
        let max = replicas + max_surge(&self.d);
        let desired_ok = desired_annotation(&self.rss[i]) == Some(replicas);
        let max_ok = self.rss[i]
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MAX_REPLICAS))
            .and_then(|v| v.parse::<i32>().ok())
            == Some(max);
        if old == new_scale && desired_ok && max_ok {
            return Ok(false);
        }
        let mut copy = self.rss[i].clone();
        if let Some(sp) = copy.spec.as_mut() {
            sp.replicas = Some(new_scale);
        }
        let ann = copy.metadata.annotations.get_or_insert_with(BTreeMap::new);
        ann.insert(DESIRED_REPLICAS.into(), replicas.to_string());
        ann.insert(MAX_REPLICAS.into(), max.to_string());
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), &self.ns());
        self.rss[i] = api
            .replace(&copy.name_any(), &PostParams::default(), &copy)
            .await?;
        if old != new_scale {
            let op = if old < new_scale { "up" } else { "down" };
            let name = self.rss[i].name_any();
            let msg = if old == 0 {
                format!("Scaled {op} replica set {name} to {new_scale}")
            } else {
                format!("Scaled {op} replica set {name} to {new_scale} from {old}")
            };
            self.ctx
                .recorder
                .normal(&self.regarding(), "ScalingReplicaSet", msg)
                .await;
        }
        Ok(old != new_scale)
    }
}

/// upstream `SetNewReplicaSetAnnotations`; returns whether anything changed.
fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in copyable_annotations(d) {
        if ann.get(k) != Some(v) {
            ann.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    let old_rev = ann.get(REVISION).cloned();
    let old_int: i64 = old_rev.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    let new_int: i64 = new_revision.parse().unwrap_or(0);
    if old_int < new_int {
        ann.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        // Rolling back to this ReplicaSet: keep its previous revisions for history.
        if let Some(old) = old_rev {
            let history = ann.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if history.is_empty() {
                ann.insert(REVISION_HISTORY.into(), old);
            } else {
                let mut revs: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_CHARS && start < revs.len() {
                    total -= revs[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_CHARS {
                    revs = revs.split_off(start);
                    revs.push(&old);
                    let joined = revs.join(",");
                    ann.insert(REVISION_HISTORY.into(), joined);
                }
            }
        }
    }
    if !exists {
        let replicas = d_replicas(d);
        ann.insert(DESIRED_REPLICAS.into(), replicas.to_string());
        ann.insert(MAX_REPLICAS.into(), (replicas + max_surge(d)).to_string());
        changed = true;
    }
    changed
}

fn ignore_gone<T>(r: Result<T, kube::Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 || s.code == 422 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

//! The disruption controller (upstream `pkg/controller/disruption`): keeps each
//! PodDisruptionBudget's status (expectedPods, currentHealthy, desiredHealthy,
//! disruptionsAllowed, the `DisruptionAllowed` condition, observedGeneration) so the
//! `pods/eviction` subresource and `kubectl drain` can honour it, and drops `disruptedPods`
//! entries whose deletion did not happen within two minutes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::informer::{Change, Informer};
use crate::podutil::{controller_ref, is_ready};
use crate::replicaset::selects;

/// upstream `DeletionTimeout`: a disrupted pod not deleted by then counts again.
const DELETION_TIMEOUT_SECS: i64 = 2 * 60;

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The selector cannot be evaluated.
    #[error(transparent)]
    Selector(#[from] crate::replicaset::Error),
    /// The expected pod count cannot be worked out.
    #[error("{0}")]
    Scale(String),
}

struct Ctx {
    client: Client,
    pods: Store<Pod>,
}

/// Runs the controller.
pub async fn run(client: Client, pods: Informer<Pod>) -> anyhow::Result<()> {
    let api: Api<PodDisruptionBudget> = Api::all(client.clone());
    let controller = Controller::new(
        api,
        kube::runtime::watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    let pod_refs = pods.subscribe().flat_map(move |change| {
        let pods: Vec<Arc<Pod>> = match change {
            Change::Added(p) | Change::Deleted(p) => vec![p],
            Change::Updated(o, n) => vec![o, n],
            Change::Resync => Vec::new(),
        };
        let mut refs: HashSet<ObjectRef<PodDisruptionBudget>> = HashSet::new();
        if pods.is_empty() {
            refs.extend(
                store
                    .state()
                    .iter()
                    .map(|p| ObjectRef::from_obj(p.as_ref())),
            );
        }
        for p in pods {
            for pdb in store.state() {
                if pdb.namespace() != p.namespace() {
                    continue;
                }
                let sel = pdb
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.clone())
                    .unwrap_or_default();
                if selects(&sel, p.metadata.labels.as_ref()).unwrap_or(false) {
                    refs.insert(ObjectRef::from_obj(pdb.as_ref()));
                }
            }
        }
        futures::stream::iter(refs)
    });
    let ctx = Arc::new(Ctx {
        client,
        pods: pods.store(),
    });
    controller
        .reconcile_on(pod_refs)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "disruption reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy(pdb: Arc<PodDisruptionBudget>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(pdb = %pdb.name_any(), error = %err, "disruption sync failed");
    Action::requeue(Duration::from_secs(2))
}

/// upstream `getScaledValueFromIntOrPercent` with round-up.
fn scaled_up(v: &IntOrString, total: i32) -> i32 {
    crate::deployment::util::scaled_value(Some(v), total, true, "0")
}

/// The scale of the workload controlling a pod (upstream `finders`): Deployment (through its
/// ReplicaSet), ReplicaSet, ReplicationController, StatefulSet. None: not a scalable owner.
async fn controller_scale(
    client: &Client,
    ns: &str,
    pod: &Pod,
) -> Result<Option<(String, i32)>, Error> {
    let Some(r) = controller_ref(&pod.metadata) else {
        return Ok(None);
    };
    let group = r.api_version.split('/').next().unwrap_or_default();
    match (group, r.kind.as_str()) {
        ("apps", "ReplicaSet") => {
            let Some(rs) = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get_opt(&r.name)
                .await?
            else {
                return Ok(None);
            };
            if rs.metadata.uid.as_deref() != Some(r.uid.as_str()) {
                return Ok(None);
            }
            if let Some(dr) = controller_ref(&rs.metadata).filter(|d| d.kind == "Deployment")
                && let Some(d) = Api::<Deployment>::namespaced(client.clone(), ns)
                    .get_opt(&dr.name)
                    .await?
                && d.metadata.uid.as_deref() == Some(dr.uid.as_str())
            {
                let n = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                return Ok(Some((dr.uid.clone(), n)));
            }
            let n = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            Ok(Some((r.uid.clone(), n)))
        }
        ("v1", "ReplicationController") => {
            Ok(Api::<ReplicationController>::namespaced(client.clone(), ns)
                .get_opt(&r.name)
                .await?
                .filter(|rc| rc.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .map(|rc| {
                    (
                        r.uid.clone(),
                        rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                }))
        }
        ("apps", "StatefulSet") => Ok(Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get_opt(&r.name)
            .await?
            .filter(|s| s.metadata.uid.as_deref() == Some(r.uid.as_str()))
            .map(|s| {
                (
                    r.uid.clone(),
                    s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            })),
        _ => Ok(None),
    }
}

/// upstream `getExpectedPodCount`: (expectedCount, desiredHealthy).
async fn expected(
    client: &Client,
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
) -> Result<(i32, i32), Error> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let ns = pdb.namespace().unwrap_or_default();
    if let Some(IntOrString::Int(min)) = &spec.min_available
        && spec.max_unavailable.is_none()
    {
        return Ok((i32::try_from(pods.len()).unwrap_or(i32::MAX), *min));
    }
    // maxUnavailable, or a minAvailable percentage: the controllers' scale counts.
    let mut seen = HashSet::new();
    let mut expected = 0;
    for p in pods {
        match controller_scale(client, &ns, p).await? {
            Some((uid, n)) => {
                if seen.insert(uid) {
                    expected += n;
                }
            }
            None => {
                return Err(Error::Scale(format!(
                    "found no controllers for pod \"{}\"",
                    p.name_any()
                )));
            }
        }
    }
    let desired = if let Some(mu) = &spec.max_unavailable {
        (expected - scaled_up(mu, expected)).max(0)
    } else if let Some(ma) = &spec.min_available {
        scaled_up(ma, expected)
    } else {
        expected
    };
    Ok((expected, desired))
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pdb.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = pdb.namespace();
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.clone());
    // A nil selector selects nothing; an empty one everything (policy/v1).
    let mut pods = Vec::new();
    if let Some(sel) = &selector {
        for p in ctx.pods.state() {
            if p.namespace() == ns && selects(sel, p.metadata.labels.as_ref())? {
                pods.push(p);
            }
        }
    }
    let now = Timestamp::now();
    let old = pdb.status.clone().unwrap_or_default();
    // upstream `buildDisruptedPodMap`: entries of pods still there, not yet deleted, younger
    // than the timeout.
    let mut disrupted = BTreeMap::new();
    let mut recheck: Option<i64> = None;
    for (name, t) in old.disrupted_pods.clone().unwrap_or_default() {
        let Some(p) = pods.iter().find(|p| p.name_any() == name) else {
            continue;
        };
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let expires = t.0.as_second() + DELETION_TIMEOUT_SECS;
        if expires <= now.as_second() {
            continue;
        }
        recheck = Some(recheck.map_or(expires, |r: i64| r.min(expires)));
        disrupted.insert(name, t);
    }
    let healthy = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !disrupted.contains_key(&p.name_any())
                && is_ready(p)
        })
        .count();
    let healthy = i32::try_from(healthy).unwrap_or(i32::MAX);
    let (mut status, failed) = match expected(&ctx.client, &pdb, &pods).await {
        Ok((expected, desired)) => {
            let allowed = if expected > 0 {
                (healthy - desired).max(0)
            } else {
                0
            };
            (
                PodDisruptionBudgetStatus {
                    current_healthy: healthy,
                    desired_healthy: desired,
                    expected_pods: expected,
                    disruptions_allowed: allowed,
                    ..Default::default()
                },
                None,
            )
        }
        Err(e) => (
            PodDisruptionBudgetStatus {
                current_healthy: healthy,
                ..Default::default()
            },
            Some(e.to_string()),
        ),
    };
    status.observed_generation = pdb.metadata.generation;
    status.disrupted_pods = (!disrupted.is_empty()).then_some(disrupted);
    let (cstatus, reason, message) = match &failed {
        Some(msg) => ("False", "SyncFailed", msg.clone()),
        None if status.disruptions_allowed > 0 => ("True", "SufficientPods", String::new()),
        None => ("False", "InsufficientPods", String::new()),
    };
    let prev = old
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionAllowed"));
    let transition = match prev {
        Some(p) if p.status == cstatus => p.last_transition_time.clone(),
        _ => Time(now),
    };
    status.conditions = Some(vec![Condition {
        type_: "DisruptionAllowed".into(),
        status: cstatus.into(),
        reason: reason.into(),
        message,
        observed_generation: pdb.metadata.generation,
        last_transition_time: transition,
    }]);
    if pdb.status.as_ref() != Some(&status) {
        let api: Api<PodDisruptionBudget> =
            Api::namespaced(ctx.client.clone(), &ns.unwrap_or_default());
        let mut obj = (*pdb).clone();
        obj.status = Some(status);
        match api
            .replace_status(&pdb.name_any(), &PostParams::default(), &obj)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if failed.is_some() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    if let Some(at) = recheck {
        let secs = (at - now.as_second()).max(0).unsigned_abs() + 1;
        return Ok(Action::requeue(Duration::from_secs(secs)));
    }
    Ok(Action::await_change())
}

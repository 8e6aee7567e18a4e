//! The PVC and PV protection controllers (upstream `pkg/controller/volume/pvcprotection` and
//! `pvprotection`): the StorageObjectInUseProtection admission plugin puts
//! `kubernetes.io/pvc-protection` on every claim and `kubernetes.io/pv-protection` on every
//! volume; once a claim is being deleted and no running pod of its namespace uses it (a volume:
//! once it is no longer Bound), the finalizer is removed and the deletion completes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

/// The claim finalizer.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The volume finalizer.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
}

/// Whether a pod (not finished) mounts the claim.
fn uses_claim(pod: &Pod, claim: &str) -> bool {
    let done = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    !done
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|vs| {
                vs.iter().any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == claim)
                })
            })
}

async fn reconcile_pvc(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pvc.metadata.deletion_timestamp.is_none()
        || !pvc.finalizers().iter().any(|f| f == PVC_PROTECTION)
    {
        return Ok(Action::await_change());
    }
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .any(|p| uses_claim(p, &name))
    {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let mut next = (*pvc).clone();
    next.metadata.finalizers = Some(
        pvc.finalizers()
            .iter()
            .filter(|f| *f != PVC_PROTECTION)
            .cloned()
            .collect(),
    );
    match api.replace(&name, &PostParams::default(), &next).await {
        Ok(_) => tracing::info!(namespace = %ns, claim = %name, "removed pvc-protection finalizer"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::requeue(Duration::ZERO)),
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

async fn reconcile_pv(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pv.metadata.deletion_timestamp.is_none()
        || !pv.finalizers().iter().any(|f| f == PV_PROTECTION)
    {
        return Ok(Action::await_change());
    }
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
        return Ok(Action::await_change());
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mut next = (*pv).clone();
    next.metadata.finalizers = Some(
        pv.finalizers()
            .iter()
            .filter(|f| *f != PV_PROTECTION)
            .cloned()
            .collect(),
    );
    match api
        .replace(&pv.name_any(), &PostParams::default(), &next)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::requeue(Duration::ZERO)),
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

fn error_policy<K>(_o: Arc<K>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "storage protection controller");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the PVC protection controller (claims, re-checked when pods change).
pub async fn run_pvc(client: Client) -> anyhow::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    Controller::new(claims, watcher::Config::default())
        .watches(pods, watcher::Config::default(), |pod: Pod| {
            let ns = pod.namespace().unwrap_or_default();
            pod.spec
                .and_then(|s| s.volumes)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.persistent_volume_claim)
                .map(|c| ObjectRef::<PersistentVolumeClaim>::new(&c.claim_name).within(&ns))
                .collect::<Vec<_>>()
        })
        .run(reconcile_pvc, error_policy, Arc::new(Ctx { client }))
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// Runs the PV protection controller.
pub async fn run_pv(client: Client) -> anyhow::Result<()> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    Controller::new(volumes, watcher::Config::default())
        .run(reconcile_pv, error_policy, Arc::new(Ctx { client }))
        .for_each(|_| async {})
        .await;
    Ok(())
}

//! The namespace controller (upstream `pkg/controller/namespace`): for a namespace being
//! deleted, deletes every namespaced object in it (discovery-driven, so custom resources too),
//! waits until nothing is left, then removes the `kubernetes` finalizer through `/finalize`,
//! after which the API server removes the namespace.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::discovery::{self, Resource};

/// The spec finalizer this controller owns (`v1.FinalizerKubernetes`).
pub const FINALIZER_KUBERNETES: &str = "kubernetes";

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Shared state of the reconciler.
pub struct Ctx {
    client: Client,
}

/// Runs the namespace controller until its watch stream ends.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Ctx { client }))
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "namespace reconcile");
            }
        })
        .await;
    Ok(())
}

fn has_kubernetes_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER_KUBERNETES))
}

/// One pass over a namespace.
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() || !has_kubernetes_finalizer(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let resources = discovery::resources(&ctx.client).await?;
    let remaining = delete_content(&ctx.client, &name, &resources).await?;
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "namespace content still being deleted");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    finalize(&ctx.client, &ns).await?;
    tracing::info!(namespace = %name, "namespace finalized");
    Ok(Action::await_change())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "namespace controller");
    Action::requeue(Duration::from_secs(2))
}

/// Whether an error means the resource cannot be acted on that way (upstream skips those).
fn unsupported(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 405 || s.code == 404)
}

/// `deleteAllContent`: deletes every namespaced object in `ns`; returns how many remain.
async fn delete_content(client: &Client, ns: &str, resources: &[Resource]) -> Result<usize, Error> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    let mut remaining = 0;
    for r in resources
        .iter()
        .filter(|r| r.namespaced && r.supports("list"))
    {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &r.ar);
        if r.supports("deletecollection") {
            match api.delete_collection(&dp, &ListParams::default()).await {
                Ok(_) => {}
                Err(e) if unsupported(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        } else if r.supports("delete") {
            let items = match api.list_metadata(&ListParams::default()).await {
                Ok(l) => l.items,
                Err(e) if unsupported(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            for item in items {
                match api.delete(&item.name_any(), &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(l) => remaining += l.items.len(),
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(remaining)
}

/// `finalizeNamespace`: PUT `/finalize` with `spec.finalizers` without `kubernetes`.
async fn finalize(client: &Client, ns: &Namespace) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut updated = ns.clone();
    updated.metadata.resource_version = None;
    if let Some(spec) = updated.spec.as_mut() {
        let kept: Vec<String> = spec
            .finalizers
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != FINALIZER_KUBERNETES)
            .collect();
        spec.finalizers = Some(kept);
    }
    match api
        .replace_subresource("finalize", &ns.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

//! The ServiceAccount controller (upstream `pkg/controller/serviceaccount/serviceaccounts_controller.go`):
//! every active namespace has a `default` ServiceAccount; one deleted is created again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

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

/// Runs the controller until its watch streams end.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let only_default =
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}"));
    Controller::new(namespaces, watcher::Config::default())
        .watches(accounts, only_default, |sa| {
            sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .run(reconcile, error_policy, Arc::new(Ctx { client }))
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "serviceaccount reconcile");
            }
        })
        .await;
    Ok(())
}

/// Whether a namespace accepts new objects (not being deleted).
pub fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    if api.get_opt(DEFAULT_SERVICE_ACCOUNT).await?.is_some() {
        return Ok(Action::await_change());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => tracing::info!(namespace = %name, "created ServiceAccount default"),
        // Already there (a racing copy) or the namespace started terminating: nothing to do.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "serviceaccount controller");
    Action::requeue(Duration::from_secs(2))
}

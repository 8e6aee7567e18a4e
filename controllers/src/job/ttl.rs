//! The TTL-after-finished controller (upstream `pkg/controller/ttlafterfinished`): deletes a
//! finished Job (with its pods, foreground) `ttlSecondsAfterFinished` after it completed or
//! failed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::{Client, ResourceExt};

struct Ctx {
    client: Client,
}

/// When the Job finished (the Complete/Failed condition's transition time).
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Runs the controller.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let api: Api<Job> = Api::all(client.clone());
    Controller::new(
        api,
        kube::runtime::watcher::Config::default().any_semantic(),
    )
    .run(reconcile, error_policy, Arc::new(Ctx { client }))
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "ttl-after-finished reconcile");
        }
    })
    .await;
    Ok(())
}

fn error_policy(_job: Arc<Job>, err: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %err, "ttl-after-finished");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(finished) = finish_time(&job) else {
        return Ok(Action::await_change());
    };
    let left = finished.as_second() + i64::from(ttl) - Timestamp::now().as_second();
    if left > 0 {
        return Ok(Action::requeue(Duration::from_secs(left.unsigned_abs())));
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: job.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &dp).await {
        Ok(_) => tracing::info!(job = %job.name_any(), "deleted finished Job after its TTL"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}

//! The ResourceQuota controller (upstream `pkg/controller/resourcequota`): keeps every quota's
//! `status.hard` equal to `spec.hard` and `status.used` equal to what the namespace's objects
//! charge (counted by `machinery::quota`, as the ResourceQuota admission plugin counts). It
//! reconciles a quota when it changes, when a pod, service, configmap, secret, claim or
//! replication controller of its namespace changes (so deleted objects give their usage back),
//! and every minute. The write is a PUT of `/status` at the resourceVersion read, so a charge
//! the admission plugin made in between makes it retry instead of being lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_machinery::quota;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be encoded or decoded.
    #[error("encoding failed: {0}")]
    Json(#[from] serde_json::Error),
}

struct Ctx {
    client: Client,
}

/// The (group, version, plural, kind) a quota resource name is counted from.
fn source_of(resource: &str) -> Option<(&'static str, &'static str, &'static str, &'static str)> {
    let pods = ("", "v1", "pods", "Pod");
    Some(match resource {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => pods,
        r if r.starts_with("requests.") && r != "requests.storage" => pods,
        r if r.starts_with("limits.") => pods,
        "services" | "services.nodeports" | "services.loadbalancers" => {
            ("", "v1", "services", "Service")
        }
        "configmaps" => ("", "v1", "configmaps", "ConfigMap"),
        "secrets" => ("", "v1", "secrets", "Secret"),
        "replicationcontrollers" => ("", "v1", "replicationcontrollers", "ReplicationController"),
        "resourcequotas" => ("", "v1", "resourcequotas", "ResourceQuota"),
        "persistentvolumeclaims" | "requests.storage" => {
            ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
        }
        r if r.ends_with(".storageclass.storage.k8s.io/requests.storage")
            || r.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims") =>
        {
            ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
        }
        r => match r.strip_prefix("count/")? {
            "pods" => pods,
            "services" => ("", "v1", "services", "Service"),
            "configmaps" => ("", "v1", "configmaps", "ConfigMap"),
            "secrets" => ("", "v1", "secrets", "Secret"),
            "persistentvolumeclaims" => {
                ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
            }
            "replicationcontrollers" => {
                ("", "v1", "replicationcontrollers", "ReplicationController")
            }
            "resourcequotas" => ("", "v1", "resourcequotas", "ResourceQuota"),
            "deployments.apps" => ("apps", "v1", "deployments", "Deployment"),
            "replicasets.apps" => ("apps", "v1", "replicasets", "ReplicaSet"),
            "statefulsets.apps" => ("apps", "v1", "statefulsets", "StatefulSet"),
            "daemonsets.apps" => ("apps", "v1", "daemonsets", "DaemonSet"),
            "jobs.batch" => ("batch", "v1", "jobs", "Job"),
            "cronjobs.batch" => ("batch", "v1", "cronjobs", "CronJob"),
            _ => return None,
        },
    })
}

/// The usage of every resource `hard` names, from the namespace's objects.
async fn compute_used(
    client: &Client,
    ns: &str,
    quota_obj: &Value,
    hard: &BTreeMap<String, (i128, bool)>,
) -> Result<BTreeMap<String, String>, Error> {
    let mut sources = Vec::new();
    for r in hard.keys() {
        if let Some(s) = source_of(r)
            && !sources.contains(&s)
        {
            sources.push(s);
        }
    }
    let mut total: BTreeMap<String, i128> = hard.keys().map(|k| (k.clone(), 0)).collect();
    for (group, version, plural, kind) in sources {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let ar = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version,
            kind: kind.into(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        for obj in api.list(&ListParams::default()).await?.items {
            let v = serde_json::to_value(&obj)?;
            if !quota::scopes_match(quota_obj, plural, &v) {
                continue;
            }
            for (k, x) in quota::usage(group, plural, &v) {
                if let Some(t) = total.get_mut(&k) {
                    *t += x;
                }
            }
        }
    }
    Ok(total
        .into_iter()
        .map(|(k, v)| {
            let binary = hard.get(&k).is_some_and(|h| h.1);
            (k, quota::format_milli(v, binary))
        })
        .collect())
}

async fn reconcile(q: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let resync = Action::requeue(Duration::from_secs(60));
    if q.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = q.namespace().unwrap_or_default();
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    // The current object: its resourceVersion guards the write against a concurrent charge.
    let Some(current) = api.get_opt(&q.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let value = serde_json::to_value(&current)?;
    let hard = quota::hard_of(&value, "/spec/hard");
    let used = compute_used(&ctx.client, &ns, &value, &hard).await?;
    let want_hard = value
        .pointer("/spec/hard")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let want = json!({"hard": want_hard, "used": used});
    let have = value.get("status").cloned().unwrap_or(Value::Null);
    let same = |a: &Value, b: &Value| {
        quota::hard_of(a, "/hard") == quota::hard_of(b, "/hard")
            && quota::hard_of(a, "/used") == quota::hard_of(b, "/used")
            && a.get("hard").and_then(Value::as_object).map(|m| m.len())
                == b.get("hard").and_then(Value::as_object).map(|m| m.len())
    };
    if same(&want, &have) {
        return Ok(resync);
    }
    let mut next = value;
    next["status"] = want;
    let next: ResourceQuota = serde_json::from_value(next)?;
    match api
        .replace_status(&current.name_any(), &PostParams::default(), &next)
        .await
    {
        Ok(_) => {}
        // A concurrent write (an admission charge): recompute at once.
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::requeue(Duration::ZERO)),
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    }
    Ok(resync)
}

fn error_policy(_q: Arc<ResourceQuota>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "resourcequota controller");
    Action::requeue(Duration::from_secs(2))
}

/// The quotas of an object's namespace.
fn quotas_in(store: &Store<ResourceQuota>, ns: Option<String>) -> Vec<ObjectRef<ResourceQuota>> {
    let Some(ns) = ns else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == Some(ns.as_str()))
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// Runs the controller until its watch streams end.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let quotas: Api<ResourceQuota> = Api::all(client.clone());
    let controller = Controller::new(quotas, watcher::Config::default());
    let store = controller.store();
    fn watch<K>(
        c: Controller<ResourceQuota>,
        client: &Client,
        store: &Store<ResourceQuota>,
    ) -> Controller<ResourceQuota>
    where
        K: Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let s = store.clone();
        c.watches(
            Api::<K>::all(client.clone()),
            watcher::Config::default(),
            move |o: K| quotas_in(&s, o.meta().namespace.clone()),
        )
    }
    let c = watch::<Pod>(controller, &client, &store);
    let c = watch::<Service>(c, &client, &store);
    let c = watch::<ConfigMap>(c, &client, &store);
    let c = watch::<Secret>(c, &client, &store);
    let c = watch::<PersistentVolumeClaim>(c, &client, &store);
    let c = watch::<ReplicationController>(c, &client, &store);
    c.run(reconcile, error_policy, Arc::new(Ctx { client }))
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "resourcequota reconcile");
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_resources_map_to_their_kinds() {
        assert_eq!(source_of("requests.cpu").map(|s| s.2), Some("pods"));
        assert_eq!(
            source_of("requests.storage").map(|s| s.2),
            Some("persistentvolumeclaims")
        );
        assert_eq!(
            source_of("count/deployments.apps").map(|s| s.2),
            Some("deployments")
        );
        assert_eq!(
            source_of("services.nodeports").map(|s| s.2),
            Some("services")
        );
        assert_eq!(source_of("count/widgets.example.com"), None);
    }
}

//! The root CA publisher (upstream `pkg/controller/certificates/rootcacertpublisher`): every
//! active namespace has a `kube-root-ca.crt` ConfigMap whose `ca.crt` is the cluster CA bundle,
//! kept equal to it (recreated when deleted, rewritten when edited).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::serviceaccount::is_active;

/// The ConfigMap's name.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// The key holding the bundle.
pub const DATA_KEY: &str = "ca.crt";
/// Upstream's description annotation on the ConfigMap.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    ca_pem: String,
}

/// Runs the publisher with the CA bundle `ca_pem` until its watch streams end.
pub async fn run(client: Client, ca_pem: String) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let maps: Api<ConfigMap> = Api::all(client.clone());
    let only_ours =
        watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}"));
    Controller::new(namespaces, watcher::Config::default())
        .watches(maps, only_ours, |cm| {
            cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .run(reconcile, error_policy, Arc::new(Ctx { client, ca_pem }))
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "root-ca-cert-publisher reconcile");
            }
        })
        .await;
    Ok(())
}

fn desired(ctx: &Ctx) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let data = BTreeMap::from([(DATA_KEY.to_string(), ctx.ca_pem.clone())]);
    let annotations = BTreeMap::from([(
        "kubernetes.io/description".to_string(),
        DESCRIPTION.to_string(),
    )]);
    (data, annotations)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let (data, annotations) = desired(&ctx);
    match api.get_opt(ROOT_CA_CONFIGMAP).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA_CONFIGMAP.to_string()),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => tracing::debug!(namespace = %name, "published kube-root-ca.crt"),
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(mut cm) => {
            let same_annotations = annotations
                .iter()
                .all(|(k, v)| cm.annotations().get(k) == Some(v));
            if cm.data.as_ref() == Some(&data) && same_annotations && cm.binary_data.is_none() {
                return Ok(Action::await_change());
            }
            // Upstream overwrites data and binaryData, keeping other metadata.
            cm.data = Some(data);
            cm.binary_data = None;
            cm.annotations_mut().extend(annotations);
            match api
                .replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &cm)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                    return Ok(Action::requeue(Duration::from_millis(200)));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Action::await_change())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "root-ca-cert-publisher");
    Action::requeue(Duration::from_secs(2))
}

//! The `kubernetes` ServiceCIDR and Service and the lease endpoint reconciler (upstream
//! `controller/kubernetesservice`, `controller/defaultservicecidr`, `reconcilers/lease.go` and
//! `reconcilers/endpointsadapter.go`).
//!
//! Every API server renews its lease (`/registry/masterleases/<advertise address>`, an
//! Endpoints-shaped record with an expiry, as upstream's keys are with an etcd TTL) every two
//! thirds of the TTL, then sets the `default/kubernetes` Endpoints and EndpointSlice to the
//! addresses of the unexpired leases, and deletes expired ones. The expiry is judged by the
//! reader's clock against the writer's: servers of one cluster are assumed to keep time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrokube_storage::{ListRequest, StorageError};
use serde_json::{Value, json};

use super::{ControlPlaneConfig, ReconcilerType, handle};
use crate::AppState;
use crate::error::ApiError;
use crate::registry::codec;
use crate::registry::request::{UpdateTarget, WriteOptions};
use crate::registry::store::now_rfc3339;

/// Upstream's names.
const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";
const PORT_NAME: &str = "https";
/// Where the leases live (upstream `/registry/masterleases/`).
pub const LEASE_PREFIX: &str = "/registry/masterleases/";
const EXPIRES: &str = "ferrokube.io/lease-expires-unix-ms";

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Creates the `kubernetes` ServiceCIDR from the flag if there is none, Ready (what the
/// first API server of a cluster does upstream; the others find it).
pub async fn ensure_service_cidr(state: &AppState, cfg: &ControlPlaneConfig) -> anyhow::Result<()> {
    let Some(h) = handle(state, "networking.k8s.io", "v1", "servicecidrs") else {
        return Ok(());
    };
    let cidrs: Vec<String> = cfg.networks.cidrs.iter().map(ToString::to_string).collect();
    let obj = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": NAME},
        "spec": {"cidrs": cidrs},
    });
    match state
        .store
        .create(&h, "", obj, &WriteOptions::default())
        .await
    {
        Ok(_) => tracing::info!(?cidrs, "created the kubernetes ServiceCIDR"),
        Err(e) if e.is_already_exists() => {
            let stored = state.store.get(&h, "", NAME).await?;
            let stored = codec::decode(&stored)?;
            let stored_cidrs = stored.pointer("/spec/cidrs").cloned().unwrap_or_default();
            if stored_cidrs != json!(cidrs) {
                tracing::warn!(
                    stored = %stored_cidrs,
                    flag = ?cidrs,
                    "--service-cluster-ip-range differs from the kubernetes ServiceCIDR; every API server of a cluster must use the same range"
                );
            }
        }
        Err(e) => return Err(anyhow::anyhow!("creating the kubernetes ServiceCIDR: {e}")),
    }
    let ready = |cur: Option<&Value>| -> Result<Value, ApiError> {
        let mut o = cur
            .cloned()
            .ok_or_else(|| ApiError::internal("the kubernetes ServiceCIDR is gone"))?;
        let is_ready = o
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        if !is_ready && let Some(m) = o.as_object_mut() {
            m.insert(
                "status".into(),
                json!({"conditions": [{"type": "Ready", "status": "True", "reason": "",
                    "message": "Kubernetes Service CIDR is ready", "lastTransitionTime": now_rfc3339()}]}),
            );
        }
        Ok(o)
    };
    let opts = WriteOptions {
        subresource: UpdateTarget::Status,
        ..WriteOptions::default()
    };
    state.store.update(&h, "", NAME, ready, &opts).await?;
    Ok(())
}

/// Creates the `default/kubernetes` Service when it does not exist (upstream
/// `CreateOrUpdateMasterServiceIfNeeded`: an existing one is left as it is).
async fn ensure_service(state: &AppState, cfg: &ControlPlaneConfig) -> Result<(), ApiError> {
    let Some(h) = handle(state, "", "v1", "services") else {
        return Ok(());
    };
    match state.store.get(&h, NAMESPACE, NAME).await {
        Ok(_) => return Ok(()),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let ip = cfg
        .networks
        .kubernetes_service_ips()
        .into_iter()
        .next()
        .unwrap_or_default();
    let svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "ports": [{"name": PORT_NAME, "protocol": "TCP", "port": 443, "targetPort": cfg.secure_port}],
            "clusterIP": ip,
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
    });
    match state
        .store
        .create(&h, NAMESPACE, svc, &WriteOptions::default())
        .await
    {
        Ok(_) => {
            tracing::info!(cluster_ip = %ip, "created the kubernetes Service");
            Ok(())
        }
        Err(e) if e.is_already_exists() => Ok(()),
        Err(e) => Err(e),
    }
}

fn lease_key(ip: &str) -> String {
    format!("{LEASE_PREFIX}{ip}")
}

/// Renews this server's lease (upstream `storageLeases.UpdateLease`).
async fn update_lease(state: &AppState, cfg: &ControlPlaneConfig) -> Result<(), StorageError> {
    let ip = cfg.advertise_address.to_string();
    let expires = unix_ms() + cfg.lease_ttl.as_millis() as u64;
    let record = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": ip, "annotations": {EXPIRES: expires.to_string()}},
        "subsets": [{"addresses": [{"ip": ip}]}],
    });
    let bytes = serde_json::to_vec(&record).map_err(|e| StorageError::Backend(e.to_string()))?;
    ferrokube_storage::guaranteed_update(&*state.store.storage, &lease_key(&ip), |_| {
        Ok::<_, StorageError>(bytes.clone().into())
    })
    .await?;
    Ok(())
}

/// The addresses of the live leases, sorted; expired leases are deleted on the way.
async fn list_leases(state: &AppState) -> Result<Vec<String>, StorageError> {
    let storage = &*state.store.storage;
    let page = storage
        .list(ListRequest {
            prefix: LEASE_PREFIX.into(),
            ..ListRequest::default()
        })
        .await?;
    let now = unix_ms();
    let mut ips = Vec::new();
    for kv in page.items {
        let rec: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        let expires = rec
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(EXPIRES))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if expires <= now {
            tracing::info!(key = %kv.key, "an API server's endpoint lease expired");
            if let Err(e) = storage.delete(&kv.key, Some(kv.mod_revision)).await {
                tracing::debug!(error = %e, "deleting an expired lease");
            }
            continue;
        }
        if let Some(ip) = rec
            .pointer("/subsets/0/addresses/0/ip")
            .and_then(Value::as_str)
        {
            ips.push(ip.to_string());
        }
    }
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// Sets the `kubernetes` Endpoints and EndpointSlice to `ips` (upstream `EndpointsAdapter.Sync`).
async fn sync_endpoints(
    state: &AppState,
    cfg: &ControlPlaneConfig,
    ips: &[String],
) -> Result<(), ApiError> {
    let port = i64::from(cfg.secure_port);
    if let Some(h) = handle(state, "", "v1", "endpoints") {
        let want_subsets = json!([{
            "addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
        }]);
        let mutate = |cur: Option<&Value>| -> Result<Value, ApiError> {
            let mut o = cur.cloned().unwrap_or_else(|| {
                json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": NAME, "namespace": NAMESPACE}})
            });
            if let Some(m) = o.as_object_mut() {
                m.insert("subsets".into(), want_subsets.clone());
                if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert(
                        "labels".into(),
                        json!({"endpointslice.kubernetes.io/skip-mirror": "true"}),
                    );
                }
            }
            Ok(o)
        };
        state
            .store
            .update(&h, NAMESPACE, NAME, mutate, &WriteOptions::default())
            .await?;
    }
    if let Some(h) = handle(state, "discovery.k8s.io", "v1", "endpointslices") {
        let family = if cfg.networks.default_family()
            == super::super::registry::service_alloc::net::Family::V6
        {
            "IPv6"
        } else {
            "IPv4"
        };
        let endpoints: Vec<Value> = ips
            .iter()
            .filter(|ip| (family == "IPv6") == ip.contains(':'))
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        let mutate = |cur: Option<&Value>| -> Result<Value, ApiError> {
            let mut o = cur.cloned().unwrap_or_else(|| {
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": NAME, "namespace": NAMESPACE}})
            });
            if let Some(m) = o.as_object_mut() {
                m.insert("addressType".into(), json!(family));
                m.insert("endpoints".into(), json!(endpoints));
                m.insert(
                    "ports".into(),
                    json!([{"name": PORT_NAME, "port": port, "protocol": "TCP"}]),
                );
                if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("labels".into(), json!({"kubernetes.io/service-name": NAME}));
                }
            }
            Ok(o)
        };
        state
            .store
            .update(&h, NAMESPACE, NAME, mutate, &WriteOptions::default())
            .await?;
    }
    Ok(())
}

/// One round: the Service, this server's lease, the endpoints.
async fn reconcile(state: &AppState, cfg: &ControlPlaneConfig) -> anyhow::Result<()> {
    ensure_service(state, cfg).await?;
    if cfg.reconciler == ReconcilerType::None {
        return Ok(());
    }
    update_lease(state, cfg).await?;
    let ips = list_leases(state).await?;
    // We just renewed our own lease: none listed means storage trouble, not an empty cluster
    // (upstream refuses to erase all endpoints in that case).
    if ips.is_empty() {
        anyhow::bail!(
            "no master IPs were listed in storage, refusing to erase all endpoints for the kubernetes service"
        );
    }
    sync_endpoints(state, cfg, &ips).await?;
    Ok(())
}

/// Runs until aborted: every two thirds of the lease TTL (upstream: 10 s for 15 s).
pub async fn run(state: std::sync::Arc<AppState>, cfg: ControlPlaneConfig) {
    let interval = (cfg.lease_ttl * 2 / 3).max(Duration::from_millis(300));
    loop {
        if let Err(e) = reconcile(&state, &cfg).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "unable to sync the kubernetes service"
            );
        }
        tokio::time::sleep(interval).await;
    }
}

/// Withdraws this server: its lease goes and the endpoints list the others.
pub async fn remove_own_endpoint(state: &AppState, cfg: &ControlPlaneConfig) {
    let key = lease_key(&cfg.advertise_address.to_string());
    match state.store.storage.delete(&key, None).await {
        Ok(_) | Err(StorageError::NotFound { .. }) => {}
        Err(e) => {
            tracing::warn!(error = %e, "removing this API server's endpoint lease");
            return;
        }
    }
    match list_leases(state).await {
        Ok(ips) if !ips.is_empty() => {
            if let Err(e) = sync_endpoints(state, cfg, &ips).await {
                tracing::warn!(error = %e, "updating the kubernetes endpoints on shutdown");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "listing endpoint leases on shutdown"),
    }
}

//! The API server's own bootstrap loops (upstream `pkg/controlplane/controller`), run in every
//! API server process against its own generic store:
//!
//! - [`kubernetes_service`]: the `kubernetes` ServiceCIDR from `--service-cluster-ip-range`,
//!   the `default/kubernetes` Service (first address of the range, port 443 → the secure port)
//!   and its Endpoints/EndpointSlice kept by the lease endpoint reconciler
//!   (`--endpoint-reconciler-type=lease`): each server renews a lease under
//!   `/registry/masterleases/<ip>`, every server lists the live ones.
//! - [`repair`]: upstream's ClusterIP and NodePort repair loops (leaked IPAddresses and node
//!   ports freed, missing ones re-reserved, duplicates and out-of-range ones reported as
//!   Events).
//!
//! They write through the generic store's one write path like any client; only the lease keys
//! and the node-port bitmap, which are no API objects, are read and written as raw keys.

pub mod kubernetes_service;
pub mod repair;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::AppState;
use crate::registry::ResourceHandle;
use crate::registry::request::WriteOptions;
use crate::registry::service_alloc::net::ServiceNetworks;
use crate::registry::store::now_rfc3339;

/// How the `kubernetes` Service's endpoints are kept (`--endpoint-reconciler-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcilerType {
    Lease,
    None,
}

/// What the bootstrap loops are configured with.
#[derive(Clone, Debug)]
pub struct ControlPlaneConfig {
    pub networks: ServiceNetworks,
    /// `--advertise-address`: this server's endpoint in the `kubernetes` Service.
    pub advertise_address: IpAddr,
    /// `--secure-port`: the endpoint's port (the Service's target port).
    pub secure_port: u16,
    pub reconciler: ReconcilerType,
    /// How long a server's endpoint lease lives without renewal (upstream 15 s).
    pub lease_ttl: Duration,
    /// How often the repair loops run (upstream 3 min).
    pub repair_interval: Duration,
}

impl ControlPlaneConfig {
    /// From the server's flags.
    pub fn from_options(opts: &crate::options::ServerOptions) -> anyhow::Result<Self> {
        let networks = ServiceNetworks::parse(
            &opts.service_cluster_ip_range,
            &opts.service_node_port_range,
        )
        .map_err(anyhow::Error::msg)?;
        let reconciler = match opts.endpoint_reconciler_type.as_str() {
            "lease" => ReconcilerType::Lease,
            "none" => ReconcilerType::None,
            other => anyhow::bail!(
                "--endpoint-reconciler-type: unsupported value {other:?} (supported: lease, none)"
            ),
        };
        let advertise_address = opts.advertise_address.unwrap_or_else(|| {
            if opts.bind_address.is_unspecified() {
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            } else {
                opts.bind_address
            }
        });
        Ok(ControlPlaneConfig {
            networks,
            advertise_address,
            secure_port: opts.secure_port,
            reconciler,
            lease_ttl: opts.debug_endpoint_lease_ttl.max(Duration::from_secs(1)),
            repair_interval: opts
                .debug_service_repair_interval
                .max(Duration::from_millis(200)),
        })
    }
}

/// The running bootstrap loops; [`ControlPlane::stop`] removes this server's endpoint lease,
/// so the others drop it at once (upstream `Controller.Stop`).
pub struct ControlPlane {
    cfg: ControlPlaneConfig,
    state: Arc<AppState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    /// Creates the bootstrap objects that must exist before the server is ready (the
    /// `kubernetes` ServiceCIDR); [`ControlPlane::start`] comes after it.
    pub async fn bootstrap(state: &AppState, cfg: &ControlPlaneConfig) -> anyhow::Result<()> {
        kubernetes_service::ensure_service_cidr(state, cfg).await
    }

    /// Starts the loops (the `kubernetes` Service and its endpoints, the repair loops), once
    /// [`ControlPlane::bootstrap`] is done.
    pub async fn start(state: Arc<AppState>, cfg: ControlPlaneConfig) -> anyhow::Result<Self> {
        let mut tasks = Vec::new();
        {
            let (state, cfg) = (state.clone(), cfg.clone());
            tasks.push(tokio::spawn(async move {
                kubernetes_service::run(state, cfg).await;
            }));
        }
        {
            let (state, cfg) = (state.clone(), cfg.clone());
            tasks.push(tokio::spawn(async move {
                repair::run(state, cfg).await;
            }));
        }
        Ok(ControlPlane { cfg, state, tasks })
    }

    /// Stops the loops and withdraws this server's endpoint.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        if self.cfg.reconciler == ReconcilerType::Lease {
            let removal = kubernetes_service::remove_own_endpoint(&self.state, &self.cfg);
            if tokio::time::timeout(Duration::from_secs(2), removal)
                .await
                .is_err()
            {
                tracing::warn!("removing this API server's endpoint timed out");
            }
        }
    }
}

/// A handle of the served resource table (group, version, plural).
fn handle(
    state: &AppState,
    group: &str,
    version: &str,
    plural: &str,
) -> Option<Arc<ResourceHandle>> {
    state.registry.get(group, version, plural).cloned()
}

/// Records a Warning Event about an object (upstream's repair controllers' event recorder).
/// Cluster-scoped objects get their events in `default`, as upstream.
async fn record_event(
    state: &AppState,
    component: &str,
    involved: &Value,
    reason: &str,
    message: &str,
) {
    let Some(h) = handle(state, "", "v1", "events") else {
        return;
    };
    let s = |p: &str| {
        involved
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let ns = match s("/metadata/namespace") {
        n if n.is_empty() => "default".to_string(),
        n => n,
    };
    let now = now_rfc3339();
    let name = format!(
        "{}.{:x}",
        s("/metadata/name"),
        uuid::Uuid::new_v4().as_u128() & 0xffff_ffff_ffff_ffff
    );
    let ev = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "apiVersion": s("/apiVersion"),
            "kind": s("/kind"),
            "namespace": s("/metadata/namespace"),
            "name": s("/metadata/name"),
            "uid": s("/metadata/uid"),
        },
        "reason": reason,
        "message": message,
        "type": "Warning",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    if let Err(e) = state
        .store
        .create(&h, &ns, ev, &WriteOptions::default())
        .await
    {
        tracing::warn!(reason, error = %e, "recording an event");
    }
}

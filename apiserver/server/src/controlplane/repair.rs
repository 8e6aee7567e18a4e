//! Upstream's service repair loops, run by every API server every `--debug-service-repair-
//! interval` (upstream 3 min):
//!
//! - ClusterIPs (`ipallocator/controller/repairip.go`): a Service address without its
//!   IPAddress is re-reserved (`ClusterIPNotAllocated`), an address held by two Services is
//!   reported (`ClusterIPAlreadyAllocated`), one outside every service CIDR too
//!   (`ClusterIPOutOfRange`); an IPAddress whose Service is gone is deleted once older than the
//!   grace period (`IPAddressNotAllocated`: leaked by an interrupted create), one naming a
//!   Service that holds another address too (`IPAddressWrongReference`).
//! - NodePorts (`portallocator/controller/repair.go`): the bitmap is rebuilt from the Services
//!   and written back by compare-and-swap against the snapshot it started from (so a port
//!   taken meanwhile is never lost); ports missing from it are re-reserved
//!   (`PortNotAllocated`), duplicates and out-of-range ports reported (`PortAlreadyAllocated`,
//!   `PortOutOfRange`), and a port no Service holds is freed after it was seen leaked by three
//!   consecutive runs.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_storage::{KeyValue, ListRequest, Storage, StorageError};
use serde_json::Value;

use super::{ControlPlaneConfig, record_event};
use crate::AppState;
use crate::registry::codec;
use crate::registry::service_alloc::ip::{self, MANAGED_BY};
use crate::registry::service_alloc::ports::{self, Bitmap};

const IP_COMPONENT: &str = "ipallocator-repair-controller";
const PORT_COMPONENT: &str = "portallocator-repair-controller";
/// Upstream `numRepairsBeforeLeakCleanup`.
const REPAIRS_BEFORE_LEAK_CLEANUP: u32 = 3;
/// Upstream frees a leaked IPAddress 60 s after its creation (the request timeout).
const IP_LEAK_GRACE: Duration = Duration::from_secs(60);

async fn list_all(storage: &dyn Storage, prefix: &str) -> Result<Vec<KeyValue>, StorageError> {
    let mut out = Vec::new();
    let mut start_after = None;
    loop {
        let page = storage
            .list(ListRequest {
                prefix: prefix.into(),
                start_after: start_after.clone(),
                limit: 5000,
                revision: 0,
                skip_count: false,
            })
            .await?;
        let more = page.more;
        start_after = page.items.last().map(|kv| kv.key.to_string());
        out.extend(page.items);
        if !more || start_after.is_none() {
            return Ok(out);
        }
    }
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn cluster_ips(svc: &Value) -> Vec<String> {
    if s(svc, "/spec/type") == "ExternalName" {
        return Vec::new();
    }
    let mut ips: Vec<String> = svc
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if ips.is_empty() && !s(svc, "/spec/clusterIP").is_empty() {
        ips.push(s(svc, "/spec/clusterIP").to_string());
    }
    ips.retain(|ip| ip != "None" && !ip.is_empty());
    ips
}

fn with_kind(mut v: Value, api_version: &str, kind: &str) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.entry("apiVersion").or_insert_with(|| api_version.into());
        m.entry("kind").or_insert_with(|| kind.into());
    }
    v
}

fn age(obj: &Value) -> Duration {
    let created = s(obj, "/metadata/creationTimestamp")
        .parse::<jiff::Timestamp>()
        .ok();
    match created {
        Some(t) => {
            let secs = jiff::Timestamp::now().as_second() - t.as_second();
            Duration::from_secs(secs.max(0) as u64)
        }
        None => Duration::MAX,
    }
}

/// The state the port repair keeps between runs: how often each leaked port was seen.
#[derive(Default)]
struct PortLeaks(HashMap<i64, u32>);

async fn services(state: &AppState) -> Result<Vec<Value>, StorageError> {
    let Some(h) = state.registry.get("", "v1", "services") else {
        return Ok(Vec::new());
    };
    let kvs = list_all(&*state.store.storage, &h.prefix).await?;
    Ok(kvs
        .iter()
        .filter_map(|kv| codec::decode(kv).ok())
        .map(|v| with_kind(v, "v1", "Service"))
        .collect())
}

/// One ClusterIP repair run.
async fn repair_ips(
    state: &AppState,
    cfg: &ControlPlaneConfig,
    grace: Duration,
) -> Result<(), StorageError> {
    let storage = &*state.store.storage;
    let svcs = services(state).await?;
    let mut addresses: BTreeMap<String, (Value, KeyValue)> = BTreeMap::new();
    for kv in list_all(storage, ip::PREFIX).await? {
        if let Ok(v) = codec::decode(&kv) {
            addresses.insert(
                kv.key[ip::PREFIX.len()..].to_string(),
                (with_kind(v, "networking.k8s.io/v1", "IPAddress"), kv),
            );
        }
    }
    let owner = |v: &Value| {
        (
            s(v, "/spec/parentRef/namespace").to_string(),
            s(v, "/spec/parentRef/name").to_string(),
        )
    };
    let by_name: HashMap<(String, String), &Value> = svcs
        .iter()
        .map(|v| {
            (
                (
                    s(v, "/metadata/namespace").to_string(),
                    s(v, "/metadata/name").to_string(),
                ),
                v,
            )
        })
        .collect();
    for svc in &svcs {
        let (ns, name) = (s(svc, "/metadata/namespace"), s(svc, "/metadata/name"));
        for addr in cluster_ips(svc) {
            let family = if addr.contains(':') { "IPv6" } else { "IPv4" };
            let parsed = addr.parse::<IpAddr>();
            let in_range = parsed
                .as_ref()
                .is_ok_and(|a| cfg.networks.cidrs.iter().any(|c| c.contains(a)));
            if !in_range {
                let msg = format!(
                    "Cluster IP [{family}]: {addr} is not within any configured Service CIDR; please recreate service"
                );
                record_event(state, IP_COMPONENT, svc, "ClusterIPOutOfRange", &msg).await;
                continue;
            }
            match addresses.get(&addr) {
                None => {
                    let msg = format!("Cluster IP [{family}]: {addr} is not allocated; repairing");
                    record_event(state, IP_COMPONENT, svc, "ClusterIPNotAllocated", &msg).await;
                    let obj = ip::ip_address_object(&addr, ns, name);
                    if let Ok(bytes) = codec::encode_for_storage(&obj) {
                        match storage.create(&ip::key(&addr), bytes).await {
                            Ok(_) | Err(StorageError::AlreadyExists { .. }) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Some((ipa, _)) if owner(ipa) != (ns.to_string(), name.to_string()) => {
                    let other = owner(ipa);
                    let holder = by_name
                        .get(&other)
                        .filter(|o| cluster_ips(o).contains(&addr));
                    if holder.is_some() {
                        let msg = format!(
                            "Cluster IP [{family}]:{addr} was assigned to multiple services; please recreate service"
                        );
                        record_event(state, IP_COMPONENT, svc, "ClusterIPAlreadyAllocated", &msg)
                            .await;
                    }
                    // A wrong reference (the named Service is gone or moved on) is fixed by
                    // the IPAddress pass below, after the grace period.
                }
                Some(_) => {}
            }
        }
    }
    for (addr, (ipa, kv)) in &addresses {
        if ipa
            .pointer("/metadata/labels/ipaddress.kubernetes.io~1managed-by")
            .and_then(Value::as_str)
            != Some(MANAGED_BY)
        {
            continue;
        }
        let (ns, name) = owner(ipa);
        let (reason, msg) = match by_name.get(&(ns.clone(), name.clone())) {
            None => {
                if age(ipa) <= grace {
                    continue;
                }
                (
                    "IPAddressNotAllocated",
                    format!(
                        "IPAddress: {addr} for Service {ns}/{name} appears to have leaked: cleaning up"
                    ),
                )
            }
            Some(svc) if !cluster_ips(svc).contains(addr) => {
                if age(ipa) <= grace {
                    continue;
                }
                (
                    "IPAddressWrongReference",
                    format!(
                        "IPAddress: {addr} for Service {ns}/{name} has a wrong reference; cleaning up"
                    ),
                )
            }
            Some(_) => continue,
        };
        tracing::warn!(ip = %addr, "{msg}");
        match storage.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) => record_event(state, IP_COMPONENT, ipa, reason, &msg).await,
            Err(StorageError::NotFound { .. } | StorageError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One NodePort repair run.
async fn repair_ports(
    state: &AppState,
    cfg: &ControlPlaneConfig,
    leaks: &mut PortLeaks,
) -> Result<(), StorageError> {
    let storage = &*state.store.storage;
    let range = &cfg.networks.node_ports;
    let snapshot = storage.get(ports::KEY).await?;
    let stored = Bitmap::decode(snapshot.as_ref(), range);
    let svcs = services(state).await?;
    let mut rebuilt = Bitmap::empty(range);
    for svc in &svcs {
        let mut mine: Vec<i64> = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                    .filter(|n| *n != 0)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(hc) = svc
            .pointer("/spec/healthCheckNodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            mine.push(hc);
        }
        mine.sort_unstable();
        mine.dedup();
        for port in mine {
            if !range.contains(port) {
                let msg = format!(
                    "Port {port} is not within the port range {}; please recreate service",
                    range.spec()
                );
                record_event(state, PORT_COMPONENT, svc, "PortOutOfRange", &msg).await;
                continue;
            }
            if rebuilt.has(port) {
                let msg = format!(
                    "Port {port} was assigned to multiple services; please recreate service"
                );
                record_event(state, PORT_COMPONENT, svc, "PortAlreadyAllocated", &msg).await;
                continue;
            }
            if !stored.has(port) {
                let msg = format!("Port {port} is not allocated; repairing");
                record_event(state, PORT_COMPONENT, svc, "PortNotAllocated", &msg).await;
            }
            rebuilt.set(port, true);
            leaks.0.remove(&port);
        }
    }
    // Ports the store holds that no Service has: leaked, or a create in flight. Keep them
    // until seen leaked by several consecutive runs.
    for port in stored.ports() {
        if rebuilt.has(port) {
            continue;
        }
        let seen = leaks.0.entry(port).or_insert(0);
        *seen += 1;
        if *seen >= REPAIRS_BEFORE_LEAK_CLEANUP {
            tracing::warn!(port, "the node port appears to have leaked: cleaning up");
            leaks.0.remove(&port);
        } else {
            rebuilt.set(port, true);
        }
    }
    leaks.0.retain(|p, _| stored.has(*p));
    if stored.ports() == rebuilt.ports() && snapshot.is_some() {
        return Ok(());
    }
    let bytes = rebuilt.encode().into();
    let result = match &snapshot {
        Some(kv) => storage.update(ports::KEY, bytes, kv.mod_revision).await,
        None => storage.create(ports::KEY, bytes).await,
    };
    match result {
        // Another writer won: the next run starts from its state.
        Ok(_) | Err(StorageError::Conflict { .. } | StorageError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs both repair loops until aborted (the first run right away, as upstream's
/// `RunUntil` does before the server reports ready).
pub async fn run(state: Arc<AppState>, cfg: ControlPlaneConfig) {
    let grace = IP_LEAK_GRACE.min(cfg.repair_interval * 2);
    let mut leaks = PortLeaks::default();
    loop {
        if let Err(e) = repair_ips(&state, &cfg, grace).await {
            tracing::warn!(error = %e, "unable to refresh the service IP block");
        }
        if let Err(e) = repair_ports(&state, &cfg, &mut leaks).await {
            tracing::warn!(error = %e, "unable to refresh the port allocations");
        }
        tokio::time::sleep(cfg.repair_interval).await;
    }
}

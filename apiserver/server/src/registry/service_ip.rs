//! The service registry's cluster IPs (the services strategy's [`Reservation`]), reserved as `networking.k8s.io/v1` IPAddress objects like upstream's
//! allocator (`pkg/registry/core/service/ipallocator`, IPAddress-based since the
//! MultiCIDRServiceAllocator graduated): the IPAddress named after the address is created with a
//! compare-and-swap "create if absent", so two services can never get the same address, even
//! through several API servers on one etcd. Deleting the service releases it.

use async_trait::async_trait;
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::FieldError;
use ferrokube_storage::{Storage, StorageError};
use serde_json::{Value, json};

use super::codec;
use super::store::now_rfc3339;
use super::strategy::Reservation;
use crate::error::{ApiError, ApiResult};

/// Upstream's default `--service-cluster-ip-range`.
const RANGE_BASE: u32 = (10 << 24) | (96 << 16);
const RANGE_BITS: u32 = 20;
/// Random candidates tried before giving up (the range has ~1M addresses).
const ATTEMPTS: usize = 64;

fn key(ip: &str) -> String {
    format!("/registry/ipaddresses/{ip}")
}

/// A random address of the range, excluding the network address and the first host address,
/// which upstream reserves for the `kubernetes` service.
fn candidate() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    let n = (u32::from_be_bytes([0, b[0], b[1], b[2]]) & ((1 << RANGE_BITS) - 1)).max(2);
    std::net::Ipv4Addr::from(RANGE_BASE | n).to_string()
}

fn in_range(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| u32::from(a) >> RANGE_BITS == RANGE_BASE >> RANGE_BITS)
}

/// Whether a service of this type gets a cluster IP (headless services say `None`).
fn wants_ip(svc: &Value) -> bool {
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ip = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    ty != "ExternalName" && ip != "None"
}

fn ip_address_object(ip: &str, namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip,
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now_rfc3339(),
            "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
            },
        },
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": namespace, "name": name}},
    })
}

fn set_ips(svc: &mut Value, ip: &str) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
    }
}

/// The service registry's cluster IP allocator (the [`Reservation`] of services).
pub struct ClusterIpAllocator;

#[async_trait]
impl Reservation for ClusterIpAllocator {
    /// The requested cluster IP (422 when taken, as upstream's "provided IP is already
    /// allocated"), else a free random one. With `dry_run` nothing is written and the answer shows
    /// an address that was free at the time.
    async fn reserve(
        &self,
        storage: &dyn Storage,
        svc: &mut Value,
        namespace: &str,
        name: &str,
        dry_run: bool,
    ) -> ApiResult<bool> {
        if !wants_ip(svc) {
            return Ok(false);
        }
        let requested = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let tries = if requested.is_empty() { ATTEMPTS } else { 1 };
        for _ in 0..tries {
            let ip = if requested.is_empty() {
                candidate()
            } else {
                requested.clone()
            };
            let taken = if dry_run {
                storage.get(&key(&ip)).await?.is_some()
            } else {
                let bytes = codec::encode_for_storage(&ip_address_object(&ip, namespace, name))?;
                match storage.create(&key(&ip), bytes).await {
                    Ok(_) => false,
                    Err(StorageError::AlreadyExists { .. }) => true,
                    Err(e) => return Err(ApiError::from_storage(e, "", "services", name)),
                }
            };
            if !taken {
                set_ips(svc, &ip);
                return Ok(!dry_run);
            }
            if !requested.is_empty() {
                let msg = if in_range(&ip) {
                    format!("failed to allocate IP {ip}: provided IP is already allocated")
                } else {
                    format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
                    )
                };
                let err = FieldError::invalid("spec.clusterIPs", json!([ip]), &msg);
                return Err(ApiError::invalid("", "Service", name, &[err]));
            }
        }
        Err(Status::internal_error("failed to allocate a service IP: range is full").into())
    }

    /// Only the IPAddress that names this service as its parent is removed.
    async fn release(&self, storage: &dyn Storage, svc: &Value) {
        let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str) else {
            return;
        };
        let (ns, name) = (
            svc.pointer("/metadata/namespace").and_then(Value::as_str),
            svc.pointer("/metadata/name").and_then(Value::as_str),
        );
        let Ok(Some(kv)) = storage.get(&key(ip)).await else {
            return;
        };
        let owned = codec::decode(&kv).is_ok_and(|o| {
            o.pointer("/spec/parentRef/namespace")
                .and_then(Value::as_str)
                == ns
                && o.pointer("/spec/parentRef/name").and_then(Value::as_str) == name
        });
        if owned && let Err(e) = storage.delete(&key(ip), Some(kv.mod_revision)).await {
            tracing::warn!(ip, error = %e, "releasing a service cluster IP");
        }
    }
}

//! Cluster IPs reserved as `networking.k8s.io/v1` IPAddress objects, like upstream's
//! IPAddress-backed allocator (`pkg/registry/core/service/ipallocator/ipallocator.go`): the
//! IPAddress named after the address is created with a compare-and-swap "create if absent", so
//! two services never get the same address, even through several API servers on one etcd.

use std::collections::HashSet;
use std::net::IpAddr;

use ferrokube_storage::{ListRequest, Storage, StorageError};
use serde_json::{Value, json};

use super::net::{Cidr, Family};
use crate::registry::codec;
use crate::registry::store::now_rfc3339;

/// The label values upstream's allocator sets (`networking.k8s.io/v1` `LabelManagedBy`).
pub const MANAGED_BY: &str = "ipallocator.k8s.io";
/// Storage prefix of IPAddress objects.
pub const PREFIX: &str = "/registry/ipaddresses/";
/// Random addresses tried before the allocator lists what is taken.
const RANDOM_TRIES: usize = 8;
/// Free addresses (from the list) tried before giving up as full.
const LISTED_TRIES: usize = 32;

/// Why an address could not be reserved (upstream `ipallocator` errors).
#[derive(Debug, thiserror::Error)]
pub enum IpError {
    /// `ErrAllocated`.
    #[error("provided IP is already allocated")]
    Allocated,
    /// `ErrNotInRange`: inside a service CIDR but not usable (network/broadcast address).
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    NotInRange { ip: String, range: String },
    /// `ErrMismatchedNetwork`: in no service CIDR.
    #[error("the provided network does not match the current range")]
    Mismatched,
    /// `ErrFull`.
    #[error("range is full")]
    Full,
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The storage key of an address's IPAddress.
pub fn key(ip: &str) -> String {
    format!("{PREFIX}{ip}")
}

/// The IPAddress reserving `ip` for a Service.
pub fn ip_address_object(ip: &str, namespace: &str, name: &str) -> Value {
    let family = Family::of(ip).unwrap_or(Family::V4).name();
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip,
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now_rfc3339(),
            "labels": {
                "ipaddress.kubernetes.io/ip-family": family,
                "ipaddress.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": namespace, "name": name}},
    })
}

/// Creates the IPAddress of `ip` (`Allocated` when it exists). With `dry_run` only checks.
async fn take(
    storage: &dyn Storage,
    ip: &str,
    namespace: &str,
    name: &str,
    dry_run: bool,
) -> Result<(), IpError> {
    if dry_run {
        return match storage.get(&key(ip)).await? {
            Some(_) => Err(IpError::Allocated),
            None => Ok(()),
        };
    }
    let bytes = codec::encode_for_storage(&ip_address_object(ip, namespace, name))
        .map_err(|e| StorageError::Backend(e.to_string()))?;
    match storage.create(&key(ip), bytes).await {
        Ok(_) => Ok(()),
        Err(StorageError::AlreadyExists { .. }) => Err(IpError::Allocated),
        Err(e) => Err(e.into()),
    }
}

/// Reserves the requested address (upstream `Allocate`).
pub async fn allocate(
    storage: &dyn Storage,
    cidrs: &[Cidr],
    requested: &str,
    namespace: &str,
    name: &str,
    dry_run: bool,
) -> Result<(), IpError> {
    let ip: IpAddr = requested.parse().map_err(|_| IpError::Mismatched)?;
    let Some(cidr) = cidrs.iter().find(|c| c.contains(&ip)) else {
        return Err(IpError::Mismatched);
    };
    if !cidr.usable(&ip) {
        return Err(IpError::NotInRange {
            ip: requested.to_string(),
            range: cidr.to_string(),
        });
    }
    take(storage, &ip.to_string(), namespace, name, dry_run).await
}

fn random_u128() -> u128 {
    u128::from_be_bytes(uuid::Uuid::new_v4().into_bytes())
}

/// Reserves a free address of `cidr` (upstream `AllocateNext`): random ones above the static
/// band first, then, when those keep colliding, free ones picked from the list of taken
/// addresses. The range's first address is the `kubernetes` Service's and never handed out.
pub async fn allocate_next(
    storage: &dyn Storage,
    cidr: &Cidr,
    namespace: &str,
    name: &str,
    dry_run: bool,
) -> Result<String, IpError> {
    let size = cidr.size();
    let offset = cidr.dynamic_offset();
    if size > offset + 1 {
        for _ in 0..RANDOM_TRIES {
            let n = offset.max(1) + random_u128() % (size - offset.max(1));
            let ip = cidr.nth(n).to_string();
            match take(storage, &ip, namespace, name, dry_run).await {
                Ok(()) => return Ok(ip),
                Err(IpError::Allocated) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    // Collisions: find free addresses from what is taken.
    let taken = taken_in(storage, cidr).await?;
    if (taken.len() as u128) >= size.saturating_sub(1) {
        return Err(IpError::Full);
    }
    let start = random_u128() % size;
    let mut tried = 0;
    // Upper band first, then the static band; skip the kubernetes Service's address.
    let order = (0..size)
        .map(|i| (start + i) % size)
        .filter(|n| *n >= offset)
        .chain(1..offset.min(size));
    for n in order.filter(|n| *n != 0) {
        let ip = cidr.nth(n).to_string();
        if taken.contains(&ip) {
            continue;
        }
        match take(storage, &ip, namespace, name, dry_run).await {
            Ok(()) => return Ok(ip),
            Err(IpError::Allocated) => {
                tried += 1;
                if tried >= LISTED_TRIES {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(IpError::Full)
}

/// The addresses of `cidr` that have an IPAddress.
async fn taken_in(storage: &dyn Storage, cidr: &Cidr) -> Result<HashSet<String>, StorageError> {
    let mut taken = HashSet::new();
    let mut start_after = None;
    loop {
        let page = storage
            .list(ListRequest {
                prefix: PREFIX.into(),
                start_after: start_after.clone(),
                limit: 10_000,
                revision: 0,
                skip_count: false,
            })
            .await?;
        for kv in &page.items {
            let ip = &kv.key[PREFIX.len()..];
            if ip.parse::<IpAddr>().is_ok_and(|a| cidr.contains(&a)) {
                taken.insert(ip.to_string());
            }
        }
        match (page.more, page.items.last()) {
            (true, Some(last)) => start_after = Some(last.key.to_string()),
            _ => return Ok(taken),
        }
    }
}

/// Removes the IPAddress of `ip` if it names this Service as its parent (upstream `Release`).
pub async fn release(storage: &dyn Storage, ip: &str, namespace: &str, name: &str) {
    let Ok(Some(kv)) = storage.get(&key(ip)).await else {
        return;
    };
    let owned = codec::decode(&kv).is_ok_and(|o| {
        o.pointer("/spec/parentRef/namespace")
            .and_then(Value::as_str)
            == Some(namespace)
            && o.pointer("/spec/parentRef/name").and_then(Value::as_str) == Some(name)
    });
    if owned && let Err(e) = storage.delete(&key(ip), Some(kv.mod_revision)).await {
        tracing::warn!(ip, error = %e, "releasing a service cluster IP");
    }
}

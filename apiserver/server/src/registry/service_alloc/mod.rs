//! The service registry's allocations (upstream `pkg/registry/core/service/storage/alloc.go`):
//! IP family defaulting (`initIPFamilyFields`), cluster IPs from `--service-cluster-ip-range`
//! as IPAddress objects ([`ip`]), node ports and health-check node ports from
//! `--service-node-port-range` in one compare-and-swapped bitmap ([`ports`]). Creates, updates
//! (type changes, added or removed ports) and deletes take and give back through the generic
//! store's [`Reservation`] hook, after validation, as upstream's `BeginCreate`/`BeginUpdate`.

pub mod ip;
pub mod net;
pub mod ports;

use async_trait::async_trait;
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::FieldError;
use ferrokube_storage::Storage;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::registry::strategy::{Held, Reservation};
use ip::IpError;
use net::{Family, ServiceNetworks};
use ports::{PortError, PortRequest};

/// The allocator of one API server, configured from its flags.
#[derive(Debug, Default)]
pub struct ServiceAllocator {
    pub networks: ServiceNetworks,
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn spec_mut(svc: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    svc.get_mut("spec").and_then(Value::as_object_mut)
}

fn service_type(svc: &Value) -> &str {
    match s(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    }
}

/// `needsClusterIP`: every type but ExternalName.
fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName"
}

/// NodePort and LoadBalancer services get node ports.
fn needs_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

/// `shouldAllocateNodePorts`: NodePort always, LoadBalancer unless
/// `allocateLoadBalancerNodePorts: false`.
fn allocates_node_ports(svc: &Value) -> bool {
    match service_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

/// `apiservice.NeedsHealthCheck`: LoadBalancer with `externalTrafficPolicy: Local`.
fn needs_health_check(svc: &Value) -> bool {
    service_type(svc) == "LoadBalancer" && s(svc, "/spec/externalTrafficPolicy") == "Local"
}

fn node_port_numbers(svc: &Value) -> Vec<i64> {
    let mut out: Vec<i64> = svc
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
        out.push(hc);
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn invalid(name: &str, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid("", "Service", name, &errs)
}

/// Upstream `patchAllocatedValues`: an update that leaves out what the server allocated (a
/// PUT or apply without `clusterIP` or `nodePort`) keeps it.
pub fn patch_allocated_values(new: &mut Value, old: &Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        for f in ["clusterIP", "clusterIPs"] {
            let missing = match new.pointer(&format!("/spec/{f}")) {
                None | Some(Value::Null) => true,
                Some(Value::String(x)) => x.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if missing
                && let (Some(v), Some(spec)) =
                    (old.pointer(&format!("/spec/{f}")).cloned(), spec_mut(new))
            {
                spec.insert(f.into(), v);
            }
        }
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        let used_new = node_port_numbers(new);
        let by_name: Vec<(String, i64)> = old
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            s(p, "/name").to_string(),
                            p.get("nodePort").and_then(Value::as_i64).unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(ps) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ps {
                if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                    continue;
                }
                let name = s(p, "/name").to_string();
                if let Some((_, np)) = by_name.iter().find(|(n, np)| *n == name && *np != 0)
                    && !used_new.contains(np)
                    && let Some(m) = p.as_object_mut()
                {
                    m.insert("nodePort".into(), json!(np));
                }
            }
        }
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && new
            .pointer("/spec/healthCheckNodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
        && let (Some(v), Some(spec)) = (
            old.pointer("/spec/healthCheckNodePort").cloned(),
            spec_mut(new),
        )
    {
        spec.insert("healthCheckNodePort".into(), v);
    }
}

/// Upstream `dropTypeDependentFields`: a type change that leaves fields of the old type as
/// they were (the client did not touch them) drops them, so `kubectl patch` of the type alone
/// works.
pub fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    if service_type(new) == service_type(old) {
        return;
    }
    let same = |f: &str, new: &Value| new.pointer(f) == old.pointer(f);
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if same(&format!("/spec/{f}"), new)
                && let Some(spec) = spec_mut(new)
            {
                spec.remove(f);
            }
        }
    }
    if needs_node_ports(old) && !allocates_node_ports(new) {
        let old_ports = node_port_numbers(old);
        if let Some(ps) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ps {
                let np = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
                if np != 0
                    && old_ports.contains(&np)
                    && let Some(m) = p.as_object_mut()
                {
                    m.remove("nodePort");
                }
            }
        }
    }
    if needs_health_check(old)
        && !needs_health_check(new)
        && same("/spec/healthCheckNodePort", new)
        && let Some(spec) = spec_mut(new)
    {
        spec.remove("healthCheckNodePort");
    }
}

impl ServiceAllocator {
    pub fn new(networks: ServiceNetworks) -> Self {
        ServiceAllocator { networks }
    }

    /// Upstream `initIPFamilyFields`: ipFamilyPolicy and ipFamilies from the request, the old
    /// object and the cluster's configured families.
    fn init_ip_families(
        &self,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), Vec<FieldError>> {
        if !needs_cluster_ip(svc) {
            return Ok(());
        }
        let headless_selectorless = s(svc, "/spec/clusterIP") == "None"
            && svc
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty());
        let mut policy = s(svc, "/spec/ipFamilyPolicy").to_string();
        if policy.is_empty() {
            policy = match old.map(|o| s(o, "/spec/ipFamilyPolicy")) {
                Some(p) if !p.is_empty() => p.to_string(),
                _ if headless_selectorless => "RequireDualStack".into(),
                _ => "SingleStack".into(),
            };
        }
        let mut ips = strings(svc, "/spec/clusterIPs");
        let mut families = strings(svc, "/spec/ipFamilies");
        let mut errs = Vec::new();
        if let Some(old) = old
            && policy == "SingleStack"
        {
            if strings(old, "/spec/clusterIPs") == ips && ips.len() > 1 {
                ips.truncate(1);
            }
            if strings(old, "/spec/ipFamilies") == families && families.len() > 1 {
                families.truncate(1);
            }
        }
        if policy == "SingleStack" {
            if ips.len() == 2 {
                errs.push(FieldError::invalid("spec.ipFamilyPolicy", policy.as_str(), "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"));
            }
            if families.len() == 2 {
                errs.push(FieldError::invalid("spec.ipFamilyPolicy", policy.as_str(), "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"));
            }
        }
        for (i, ip) in ips.iter().enumerate() {
            if ip == "None" {
                break;
            }
            let Some(fam) = Family::of(ip) else { continue };
            if i >= families.len() {
                if self.networks.cidr(fam).is_none() {
                    errs.push(FieldError::invalid(
                        format!("spec.clusterIPs[{i}]"),
                        json!(ips),
                        &format!("{} is not configured on this cluster", fam.name()),
                    ));
                } else {
                    families.push(fam.name().to_string());
                }
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let default = self.networks.default_family();
        let write = |svc: &mut Value, policy: &str, ips: Vec<String>, families: Vec<String>| {
            if let Some(spec) = spec_mut(svc) {
                spec.insert("ipFamilyPolicy".into(), json!(policy));
                spec.insert("ipFamilies".into(), json!(families));
                if !ips.is_empty() {
                    spec.insert("clusterIPs".into(), json!(ips));
                }
            }
        };
        if headless_selectorless {
            if families.is_empty() {
                families.push(default.name().into());
            }
            if families.len() < 2 && policy != "SingleStack" {
                let other = if families[0] == "IPv4" {
                    "IPv6"
                } else {
                    "IPv4"
                };
                families.push(other.into());
            }
            write(svc, &policy, ips, families);
            return Ok(());
        }
        if policy == "RequireDualStack" && !self.networks.dual_stack() {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy.as_str(),
                "this cluster is not configured for dual-stack services",
            ));
        }
        for (i, f) in families.iter().enumerate() {
            let configured = match f.as_str() {
                "IPv4" => self.networks.cidr(Family::V4).is_some(),
                "IPv6" => self.networks.cidr(Family::V6).is_some(),
                _ => true, // validation reports unknown families
            };
            if !configured {
                errs.push(FieldError::invalid(
                    format!("spec.ipFamilies[{i}]"),
                    f.as_str(),
                    "not configured on this cluster",
                ));
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        if families.is_empty() {
            families.push(default.name().into());
        }
        if policy != "SingleStack" && families.len() == 1 && self.networks.dual_stack() {
            let other = if families[0] == "IPv4" {
                Family::V6
            } else {
                Family::V4
            };
            families.push(other.name().into());
        }
        write(svc, &policy, ips, families);
        Ok(())
    }

    /// Reserves the cluster IPs `svc` asks for (requested ones, else free ones), one per
    /// family; `from` skips families an update already holds.
    async fn alloc_cluster_ips(
        &self,
        storage: &dyn Storage,
        svc: &mut Value,
        from: usize,
        dry_run: bool,
        held: &mut Held,
    ) -> ApiResult<()> {
        let (ns, name) = (
            s(svc, "/metadata/namespace").to_string(),
            s(svc, "/metadata/name").to_string(),
        );
        let families = strings(svc, "/spec/ipFamilies");
        let mut ips = strings(svc, "/spec/clusterIPs");
        if ips.is_empty() && !s(svc, "/spec/clusterIP").is_empty() {
            ips.push(s(svc, "/spec/clusterIP").to_string());
        }
        if ips.first().is_some_and(|ip| ip == "None") {
            return Ok(());
        }
        for (i, fam) in families.iter().enumerate().skip(from) {
            let fam = if fam == "IPv6" {
                Family::V6
            } else {
                Family::V4
            };
            let Some(cidr) = self.networks.cidr(fam) else {
                continue;
            };
            let requested = ips.get(i).filter(|s| !s.is_empty()).cloned();
            let result = match &requested {
                Some(ip) => ip::allocate(storage, &self.networks.cidrs, ip, &ns, &name, dry_run)
                    .await
                    .map(|()| ip.clone()),
                None => ip::allocate_next(storage, cidr, &ns, &name, dry_run).await,
            };
            match result {
                Ok(ip) => {
                    if !dry_run {
                        held.taken.push(format!("ip/{ip}"));
                    }
                    if i < ips.len() {
                        ips[i] = ip;
                    } else {
                        ips.push(ip);
                    }
                }
                Err(IpError::Storage(e)) => {
                    return Err(ApiError::from_storage(e, "", "services", &name));
                }
                Err(IpError::Full) => {
                    return Err(Status::internal_error(
                        "failed to allocate a serviceIP: range is full",
                    )
                    .into());
                }
                Err(e) => {
                    let ip = requested.unwrap_or_default();
                    let err = FieldError::invalid(
                        "spec.clusterIPs",
                        json!(ips),
                        &format!("failed to allocate IP {ip}: {e}"),
                    );
                    return Err(invalid(&name, vec![err]));
                }
            }
        }
        if let Some(spec) = spec_mut(svc) {
            if let Some(first) = ips.first() {
                spec.insert("clusterIP".into(), json!(first));
            }
            spec.insert("clusterIPs".into(), json!(ips));
        }
        Ok(())
    }

    /// Node ports (upstream `initNodePorts`/`updateNodePorts`) and the health-check node port:
    /// what the new object needs that `old` did not hold is reserved in one compare-and-swap;
    /// what `old` held that the new object does not is freed on commit.
    async fn alloc_node_ports(
        &self,
        storage: &dyn Storage,
        svc: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
        held: &mut Held,
    ) -> ApiResult<()> {
        let name = s(svc, "/metadata/name").to_string();
        let old_ports = old.map(node_port_numbers).unwrap_or_default();
        let allocate = allocates_node_ports(svc);
        // (port index or None for the health check, request)
        let mut requests: Vec<(Option<usize>, PortRequest)> = Vec::new();
        // Ports sharing a `port` number (TCP and UDP) share a node port.
        let mut by_port: Vec<(i64, Option<usize>)> = Vec::new();
        if needs_node_ports(svc) {
            let ports = svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, p) in ports.iter().enumerate() {
                let np = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                if np == 0 && !allocate {
                    continue;
                }
                if np != 0 {
                    let dup_in_request = requests
                        .iter()
                        .any(|(_, r)| *r == PortRequest::Specific(np));
                    if !old_ports.contains(&np) && !dup_in_request {
                        requests.push((Some(i), PortRequest::Specific(np)));
                    }
                    continue;
                }
                // Another port with the same number already asked: share its node port.
                if by_port.iter().any(|(pn, _)| *pn == port) {
                    by_port.push((port, Some(i)));
                    continue;
                }
                by_port.push((port, Some(i)));
                requests.push((Some(i), PortRequest::Next));
            }
        }
        if needs_health_check(svc) {
            let hc = svc
                .pointer("/spec/healthCheckNodePort")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if hc == 0 {
                requests.push((None, PortRequest::Next));
            } else if !old_ports.contains(&hc) {
                requests.push((None, PortRequest::Specific(hc)));
            }
        }
        let wanted: Vec<PortRequest> = requests.iter().map(|(_, r)| *r).collect();
        let got = match ports::allocate(storage, &self.networks.node_ports, &wanted, dry_run).await
        {
            Ok(got) => got,
            Err((_, PortError::Storage(e))) => {
                return Err(ApiError::from_storage(e, "", "services", &name));
            }
            Err((i, PortError::Full)) => {
                let what = if requests[i].0.is_none() {
                    "a HealthCheck NodePort"
                } else {
                    "a nodePort"
                };
                return Err(Status::internal_error(&format!(
                    "failed to allocate {what}: range is full"
                ))
                .into());
            }
            Err((i, e)) => {
                let err = match requests[i] {
                    (Some(pi), PortRequest::Specific(np)) => FieldError::invalid(
                        format!("spec.ports[{pi}].nodePort"),
                        np,
                        &e.to_string(),
                    ),
                    (_, PortRequest::Specific(np)) => {
                        return Err(Status::internal_error(&format!(
                            "failed to allocate requested HealthCheck NodePort {np}: {e}"
                        ))
                        .into());
                    }
                    _ => {
                        return Err(Status::internal_error(&format!(
                            "failed to allocate a nodePort: {e}"
                        ))
                        .into());
                    }
                };
                return Err(invalid(&name, vec![err]));
            }
        };
        if !dry_run {
            held.taken.extend(got.iter().map(|p| format!("port/{p}")));
        }
        // Write the allocated ports into the object.
        for ((idx, req), port) in requests.iter().zip(&got) {
            if *req != PortRequest::Next {
                continue;
            }
            match idx {
                Some(i) => {
                    let number = svc
                        .pointer(&format!("/spec/ports/{i}/port"))
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let sharing: Vec<usize> = by_port
                        .iter()
                        .filter(|(pn, _)| *pn == number)
                        .filter_map(|(_, j)| *j)
                        .collect();
                    for j in sharing {
                        if let Some(p) = svc
                            .pointer_mut(&format!("/spec/ports/{j}"))
                            .and_then(Value::as_object_mut)
                            && p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) == 0
                        {
                            p.insert("nodePort".into(), json!(port));
                        }
                    }
                }
                None => {
                    if let Some(spec) = spec_mut(svc) {
                        spec.insert("healthCheckNodePort".into(), json!(port));
                    }
                }
            }
        }
        let now = node_port_numbers(svc);
        held.freed.extend(
            old_ports
                .iter()
                .filter(|p| !now.contains(p))
                .map(|p| format!("port/{p}")),
        );
        Ok(())
    }

    async fn free(&self, storage: &dyn Storage, obj: &Value, tokens: &[String]) {
        let (ns, name) = (s(obj, "/metadata/namespace"), s(obj, "/metadata/name"));
        let mut ports = Vec::new();
        for t in tokens {
            if let Some(ip) = t.strip_prefix("ip/") {
                ip::release(storage, ip, ns, name).await;
            } else if let Some(p) = t.strip_prefix("port/").and_then(|p| p.parse::<i64>().ok()) {
                ports.push(p);
            }
        }
        ports::release(storage, &self.networks.node_ports, &ports).await;
    }
}

#[async_trait]
impl Reservation for ServiceAllocator {
    async fn reserve(
        &self,
        storage: &dyn Storage,
        svc: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult<Held> {
        let name = s(svc, "/metadata/name").to_string();
        self.init_ip_families(svc, old)
            .map_err(|e| invalid(&name, e))?;
        let mut held = Held::default();
        let result = self
            .reserve_all(storage, svc, old, dry_run, &mut held)
            .await;
        if let Err(e) = result {
            self.free(storage, svc, &held.taken).await;
            return Err(e);
        }
        Ok(held)
    }

    async fn commit(&self, storage: &dyn Storage, obj: &Value, held: Held) {
        self.free(storage, obj, &held.freed).await;
    }

    async fn revert(&self, storage: &dyn Storage, obj: &Value, held: Held) {
        self.free(storage, obj, &held.taken).await;
    }

    async fn release(&self, storage: &dyn Storage, svc: &Value) {
        let mut tokens: Vec<String> = if needs_cluster_ip(svc) {
            strings(svc, "/spec/clusterIPs")
                .into_iter()
                .filter(|ip| ip != "None")
                .map(|ip| format!("ip/{ip}"))
                .collect()
        } else {
            Vec::new()
        };
        tokens.extend(
            node_port_numbers(svc)
                .into_iter()
                .map(|p| format!("port/{p}")),
        );
        self.free(storage, svc, &tokens).await;
    }
}

impl ServiceAllocator {
    async fn reserve_all(
        &self,
        storage: &dyn Storage,
        svc: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
        held: &mut Held,
    ) -> ApiResult<()> {
        match old {
            None => {
                if needs_cluster_ip(svc) {
                    self.alloc_cluster_ips(storage, svc, 0, dry_run, held)
                        .await?;
                }
            }
            Some(old) => {
                let old_ips = strings(old, "/spec/clusterIPs");
                let headless = old_ips.first().is_some_and(|ip| ip == "None");
                if !needs_cluster_ip(old) && needs_cluster_ip(svc) {
                    // ExternalName → a type with cluster IPs.
                    self.alloc_cluster_ips(storage, svc, 0, dry_run, held)
                        .await?;
                } else if needs_cluster_ip(old) && !needs_cluster_ip(svc) {
                    held.freed.extend(
                        old_ips
                            .iter()
                            .filter(|ip| *ip != "None")
                            .map(|ip| format!("ip/{ip}")),
                    );
                } else if !headless && needs_cluster_ip(svc) {
                    let fams = strings(svc, "/spec/ipFamilies").len();
                    let old_fams = strings(old, "/spec/ipFamilies").len();
                    if old_fams == 1 && fams == 2 {
                        // Upgrade to dual stack: the secondary family.
                        self.alloc_cluster_ips(storage, svc, 1, dry_run, held)
                            .await?;
                    } else if old_fams == 2 && fams == 1 {
                        // Downgrade: the secondary address goes.
                        if let Some(ip) = old_ips.get(1) {
                            held.freed.push(format!("ip/{ip}"));
                        }
                        if let Some(spec) = spec_mut(svc) {
                            let first: Vec<String> = old_ips.into_iter().take(1).collect();
                            spec.insert("clusterIPs".into(), json!(first));
                        }
                    }
                }
            }
        }
        self.alloc_node_ports(storage, svc, old, dry_run, held)
            .await
    }
}

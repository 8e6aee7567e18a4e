//! The EndpointSlice and Endpoints controllers (upstream `pkg/controller/endpointslice` and
//! `pkg/controller/endpoint`): for every Service with a selector, slices (at most 100 endpoints
//! each, grouped by the ports they resolve to) listing the selected pods that have an IP, with
//! ready/serving/terminating conditions and named target ports resolved per pod; and the legacy
//! `Endpoints` object with ready and not-ready addresses.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::informer::{Change, Informer};
use crate::podutil::{is_ready, is_terminal};

/// `discovery.k8s.io` label naming the Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the managing controller.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// upstream `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    pods: Store<Pod>,
}

fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
    else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Runs both controllers (one Service watch, the shared pod informer).
pub async fn run(client: Client, pods: Informer<Pod>) -> anyhow::Result<()> {
    let services: Api<Service> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let controller = Controller::new(services, watcher::Config::default().any_semantic());
    let store = controller.store();
    let pod_refs = pods.subscribe().flat_map(move |change| {
        let pods: Vec<Arc<Pod>> = match change {
            Change::Added(p) | Change::Deleted(p) => vec![p],
            Change::Updated(o, n) => vec![o, n],
            Change::Resync => Vec::new(),
        };
        let mut refs: HashSet<ObjectRef<Service>> = HashSet::new();
        if pods.is_empty() {
            refs.extend(
                store
                    .state()
                    .iter()
                    .map(|s| ObjectRef::from_obj(s.as_ref())),
            );
        }
        for p in pods {
            for svc in store.state() {
                if svc.namespace() == p.namespace() && selects(&svc, &p) {
                    refs.insert(ObjectRef::from_obj(svc.as_ref()));
                }
            }
        }
        futures::stream::iter(refs)
    });
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let ctx = Arc::new(Ctx {
        client,
        pods: pods.store(),
    });
    controller
        .owns(slices, managed)
        .reconcile_on(pod_refs)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "endpointslice reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy(svc: Arc<Service>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(service = %svc.name_any(), error = %err, "endpointslice sync failed");
    Action::requeue(Duration::from_secs(1))
}

/// upstream `podutil.FindPort`: the container port a Service port targets on this pod.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
        }
    }
}

/// One pod's endpoint and its resolved ports (None when a named port is missing: upstream
/// leaves such a port out for that pod).
struct PodEndpoint {
    endpoint: Endpoint,
    ports: Vec<SlicePort>,
}

fn pod_ip(pod: &Pod) -> Option<String> {
    let st = pod.status.as_ref()?;
    st.pod_ips
        .as_ref()
        .and_then(|ips| ips.first().map(|i| i.ip.clone()))
        .or_else(|| st.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
}

fn endpoints_for(svc: &Service, pods: &[Arc<Pod>]) -> Vec<PodEndpoint> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut out = Vec::new();
    for pod in pods {
        if is_terminal(pod) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = publish_not_ready || is_ready(pod);
        let pspec = pod.spec.clone().unwrap_or_default();
        let hostname = match (&pspec.hostname, &pspec.subdomain) {
            (Some(h), Some(sd)) if *sd == svc.name_any() => Some(h.clone()),
            _ => None,
        };
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|sp| {
                find_port(pod, sp).map(|port| SlicePort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(port),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        out.push(PodEndpoint {
            endpoint: Endpoint {
                addresses: vec![ip],
                conditions: Some(EndpointConditions {
                    ready: Some(ready && !terminating),
                    serving: Some(ready),
                    terminating: Some(terminating),
                }),
                hostname,
                node_name: pspec.node_name.clone(),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ports,
        });
    }
    out
}

/// Desired slices: endpoints grouped by their port list, chunked by 100, each group sorted
/// by pod name so the result is stable.
fn desired_slices(svc: &Service, eps: Vec<PodEndpoint>) -> Vec<(Vec<SlicePort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<String, (Vec<SlicePort>, Vec<Endpoint>)> = BTreeMap::new();
    for e in eps {
        let key = serde_json::to_string(&e.ports).unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (e.ports.clone(), Vec::new()))
            .1
            .push(e.endpoint);
    }
    let mut out = Vec::new();
    for (_, (ports, mut endpoints)) in groups {
        endpoints.sort_by(|a, b| {
            let n = |e: &Endpoint| e.target_ref.as_ref().and_then(|r| r.name.clone());
            n(a).cmp(&n(b))
        });
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    if out.is_empty()
        && svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some()
    {
        // upstream keeps one placeholder slice (no endpoints, no ports).
        out.push((Vec::new(), Vec::new()));
    }
    out
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| k.as_str() != SERVICE_NAME_LABEL && k.as_str() != MANAGED_BY_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    labels
}

fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn address_type(svc: &Service) -> String {
    match svc
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        Some(f) if f == "IPv6" => "IPv6".into(),
        _ => "IPv4".into(),
    }
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let has_selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty());
    if svc.metadata.deletion_timestamp.is_some() || !has_selector {
        return Ok(Action::await_change());
    }
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && selects(&svc, p))
        .collect();
    sync_slices(&svc, &ctx, &pods).await?;
    sync_endpoints(&svc, &ctx, &pods).await?;
    Ok(Action::await_change())
}

async fn sync_slices(svc: &Service, ctx: &Ctx, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let lp = ListParams::default().labels(&format!(
        "{SERVICE_NAME_LABEL}={},{MANAGED_BY_LABEL}={MANAGED_BY}",
        svc.name_any()
    ));
    let mut existing = api.list(&lp).await?.items;
    existing.sort_by_key(|a| a.name_any());
    let desired = desired_slices(svc, endpoints_for(svc, pods));
    let labels = slice_labels(svc);
    let addr = address_type(svc);
    let pp = PostParams::default();
    let mut unused: Vec<EndpointSlice> = existing;
    for (ports, endpoints) in desired {
        let ports_opt = (!ports.is_empty()).then_some(ports);
        // Reuse a slice with the same ports when there is one (less churn), else any.
        let pos = unused
            .iter()
            .position(|s| s.ports == ports_opt)
            .or_else(|| (!unused.is_empty()).then_some(0));
        match pos.map(|i| unused.remove(i)) {
            Some(mut slice) => {
                let same = slice.endpoints == endpoints
                    && slice.ports == ports_opt
                    && slice.address_type == addr
                    && labels.iter().all(|(k, v)| slice.labels().get(k) == Some(v));
                if same {
                    continue;
                }
                slice.endpoints = endpoints;
                slice.ports = ports_opt;
                slice.labels_mut().extend(labels.clone());
                if slice.address_type != addr {
                    // addressType is immutable: replace the slice.
                    ignore_missing(
                        api.delete(&slice.name_any(), &DeleteParams::default())
                            .await
                            .map(|_| ()),
                    )?;
                    continue;
                }
                match api.replace(&slice.name_any(), &pp, &slice).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{}-", svc.name_any())),
                        namespace: Some(ns.clone()),
                        labels: Some(labels.clone()),
                        owner_references: Some(vec![owner(svc)]),
                        ..Default::default()
                    },
                    address_type: addr.clone(),
                    endpoints,
                    ports: ports_opt,
                };
                api.create(&pp, &slice).await?;
            }
        }
    }
    for s in unused {
        ignore_missing(
            api.delete(&s.name_any(), &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
    }
    Ok(())
}

fn ignore_missing(r: Result<(), kube::Error>) -> Result<(), Error> {
    match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The legacy Endpoints object (upstream endpoints controller): one subset per port set.
async fn sync_endpoints(svc: &Service, ctx: &Ctx, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let ns = svc.namespace().unwrap_or_default();
    let mut subsets: BTreeMap<String, EndpointSubset> = BTreeMap::new();
    for e in endpoints_for(svc, pods) {
        if e.endpoint.conditions.as_ref().and_then(|c| c.terminating) == Some(true) {
            continue;
        }
        let ports: Vec<EndpointPort> = e
            .ports
            .iter()
            .map(|p| EndpointPort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port: p.port.unwrap_or(0),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let subset = subsets.entry(key).or_insert_with(|| EndpointSubset {
            ports: (!ports.is_empty()).then_some(ports),
            ..Default::default()
        });
        let addr = EndpointAddress {
            ip: e.endpoint.addresses[0].clone(),
            hostname: e.endpoint.hostname.clone(),
            node_name: e.endpoint.node_name.clone(),
            target_ref: e.endpoint.target_ref.clone(),
        };
        let ready = e.endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true);
        let list = if ready {
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        list.get_or_insert_with(Vec::new).push(addr);
    }
    let mut subsets: Vec<EndpointSubset> = subsets.into_values().collect();
    for s in &mut subsets {
        for l in [&mut s.addresses, &mut s.not_ready_addresses]
            .into_iter()
            .flatten()
        {
            l.sort_by(|a, b| a.ip.cmp(&b.ip));
        }
    }
    let subsets = (!subsets.is_empty()).then_some(subsets);
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let name = svc.name_any();
    let mut labels: BTreeMap<String, String> = svc.labels().clone();
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let pp = PostParams::default();
    match api.get_opt(&name).await? {
        Some(mut ep) => {
            if ep.subsets == subsets && labels.iter().all(|(k, v)| ep.labels().get(k) == Some(v)) {
                return Ok(());
            }
            ep.subsets = subsets;
            ep.labels_mut().extend(labels);
            match api.replace(&name, &pp, &ep).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(ns),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets,
            };
            match api.create(&pp, &ep).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

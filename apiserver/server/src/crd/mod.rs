//! Serving CustomResourceDefinitions (upstream's apiextensions-apiserver controllers and CRD
//! handler, in one place):
//!
//! - a feed of every stored CRD from the watch cache (so API servers sharing one etcd all see
//!   new CRDs, and the serving state is rebuilt from storage at startup);
//! - [`sync`]: the custom resources of every established CRD become registry handles (one
//!   per served version, with the schema-driven [`strategy::CustomResourceStrategy`]), the
//!   discovery and OpenAPI documents are rebuilt (new ETags), and each CRD's status
//!   (`acceptedNames`, `NamesAccepted`, `Established`, `Terminating`, `storedVersions`) is
//!   written through `/status` when it differs from what upstream's controllers would set;
//! - the `customresourcecleanup.apiextensions.k8s.io` finalizer: a CRD being deleted has its
//!   custom resources deleted through the one write path, then loses the finalizer and goes.
//!
//! Everything a custom resource write does runs in `registry/store/write.rs` like any
//! built-in; this module only decides what is served.

pub mod conversion;
pub mod strategy;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrokube_machinery::crd::CompiledSchema;
use ferrokube_machinery::customresource::{self, Crd, CrdVersion, ScaleSpec, columns, jsonpath};
use ferrokube_machinery::resources::{self, ResourceInfo};
use serde_json::Value;
use tokio::sync::Notify;

use crate::AppState;
use crate::auth::rbac_feed::{self, Sink};
use crate::error::ApiResult;
use crate::registry::request::{DeleteOptions, ListOptions, UpdateTarget, WriteOptions};
use crate::registry::store::now_rfc3339;
use crate::registry::{ResourceHandle, codec};

/// The CRD resource's storage prefix.
const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// The scale paths of a version, parsed.
pub struct ScalePaths {
    pub spec_replicas: jsonpath::Path,
    pub status_replicas: jsonpath::Path,
    pub label_selector: Option<jsonpath::Path>,
}

/// What a served custom resource version carries beyond its table entry.
pub struct CustomVersion {
    /// The CRD's name (`<plural>.<group>`).
    pub crd_name: String,
    pub version: CrdVersion,
    /// `additionalPrinterColumns`, or `Age`.
    pub columns: Vec<columns::PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// `selectableFields`: the field label (`spec.color`) and its path.
    pub selectable: Vec<(String, jsonpath::Path)>,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
    /// The schema the write stages apply (pruning, defaulting, validation, CEL), compiled once
    /// per CRD: this version's, or with a conversion webhook the storage version's (the
    /// stages see objects in the storage version then).
    pub schema: Option<Arc<CompiledSchema>>,
    /// This version's own schema (request defaulting before a webhook conversion).
    pub own_schema: Option<Arc<CompiledSchema>>,
    /// The storage version's schema when it has defaults: stored objects are defaulted when
    /// read (upstream defaults on decoding from storage).
    pub read_defaults: Option<Arc<CompiledSchema>>,
    /// `conversion: Webhook`: the CRD's converter.
    pub webhook: Option<Arc<conversion::WebhookConverter>>,
    /// `group/<storage version>`.
    pub storage_api_version: String,
}

/// The compiled schemas of a CRD's versions, by version name.
type Schemas = HashMap<String, Arc<CompiledSchema>>;

fn compile_schemas(crd: &Crd) -> Schemas {
    let mut out = HashMap::new();
    for v in &crd.versions {
        let Some(text) = &v.schema else { continue };
        let Some(s) = text.value() else {
            tracing::warn!(crd = %crd.name, version = %v.name, "CRD schema text does not parse");
            continue;
        };
        match CompiledSchema::compile(&s, "openAPIV3Schema") {
            Ok(c) => {
                out.insert(v.name.clone(), Arc::new(c));
            }
            Err(errs) => {
                // The CRD strategy refuses such schemas; one stored before is served
                // without validation rather than not at all.
                tracing::warn!(crd = %crd.name, version = %v.name, errors = errs.len(),
                    "CRD schema does not compile");
            }
        }
    }
    out
}

impl CustomVersion {
    fn new(
        crd: &Crd,
        v: &CrdVersion,
        schemas: &Schemas,
        webhook: Option<Arc<conversion::WebhookConverter>>,
    ) -> CustomVersion {
        let scale = v.scale.as_ref().and_then(|s: &ScaleSpec| {
            Some(ScalePaths {
                spec_replicas: jsonpath::Path::parse(&s.spec_replicas_path).ok()?,
                status_replicas: jsonpath::Path::parse(&s.status_replicas_path).ok()?,
                label_selector: s
                    .label_selector_path
                    .as_deref()
                    .and_then(|p| jsonpath::Path::parse(p).ok()),
            })
        });
        let selectable: Vec<(String, jsonpath::Path)> = v
            .selectable_fields
            .iter()
            .filter_map(|f| {
                let p = jsonpath::Path::parse(f).ok()?;
                Some((f.trim_start_matches('.').to_string(), p))
            })
            .collect();
        let own_schema = schemas.get(&v.name).cloned();
        let storage_schema = schemas.get(crd.storage_version()).cloned();
        let schema = if webhook.is_some() {
            storage_schema.clone()
        } else {
            own_schema.clone()
        };
        let read_defaults = storage_schema.filter(|s| s.root().has_defaults());
        CustomVersion {
            crd_name: crd.name.clone(),
            version: v.clone(),
            columns: columns::effective(&v.columns),
            scale,
            selectable,
            terminating: crd.deleting,
            schema,
            own_schema,
            read_defaults,
            webhook,
            storage_api_version: crd.storage_api_version(),
        }
    }

    /// Whether stored bytes already in the served version can be sent as they are.
    pub fn serves_stored_bytes(&self) -> bool {
        self.read_defaults.is_none()
    }

    /// Stored objects to `api_version` (this version): the storage version's defaults, then
    /// the conversion (`apiVersion` rewritten, or the webhook), then with a webhook this
    /// version's defaults (upstream defaults after conversion).
    pub async fn from_storage(&self, objs: &mut [&mut Value], api_version: &str) -> ApiResult<()> {
        if let Some(d) = &self.read_defaults {
            for o in objs.iter_mut() {
                d.apply_defaults(o);
            }
        }
        match &self.webhook {
            Some(w) => {
                w.convert(objs, api_version).await?;
                if let Some(s) = &self.own_schema {
                    for o in objs.iter_mut() {
                        s.apply_defaults(o);
                    }
                }
            }
            None => {
                for o in objs.iter_mut() {
                    set_api_version(o, api_version);
                }
            }
        }
        Ok(())
    }

    /// An object of this version to the storage version. With a webhook, this version's
    /// pruning and defaults run first (the request's version, as upstream's decoding does).
    pub async fn to_storage(&self, obj: &mut Value) -> ApiResult<()> {
        match &self.webhook {
            Some(w) => {
                if let Some(s) = &self.own_schema {
                    s.prune(obj);
                    s.apply_defaults(obj);
                }
                w.convert(&mut [obj], &self.storage_api_version).await
            }
            None => {
                set_api_version(obj, &self.storage_api_version);
                Ok(())
            }
        }
    }
}

/// `conversion: None` (upstream `nopConverter`): only `apiVersion` changes.
fn set_api_version(obj: &mut Value, api_version: &str) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(api_version.to_string()));
    }
}

/// The stored CRDs, by name, parsed once when the feed (or this module's own status write)
/// delivers them.
#[derive(Default)]
pub struct CrdSet {
    crds: Mutex<BTreeMap<String, Arc<Crd>>>,
    changed: Notify,
}

impl Sink for CrdSet {
    fn reset(&self) {
        self.crds.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.changed.notify_one();
    }

    fn apply(&self, key: &str, obj: Option<&Value>) {
        let name = key.strip_prefix(PREFIX).unwrap_or(key).to_string();
        let parsed = obj.and_then(Crd::parse);
        {
            let mut crds = self.crds.lock().unwrap_or_else(|e| e.into_inner());
            match parsed {
                Some(mut c) => {
                    if let Some(old) = crds.get(&name) {
                        c.share_schemas(old);
                    }
                    crds.insert(name, Arc::new(c))
                }
                None => crds.remove(&name),
            };
        }
        self.changed.notify_one();
    }
}

/// `metadata.resourceVersion` as a number (0 when absent).
fn resource_version(crd: &Crd) -> u64 {
    crd.raw
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl CrdSet {
    fn snapshot(&self) -> Vec<Arc<Crd>> {
        self.crds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Records a CRD this module just wrote, unless the feed already delivered it or a later
    /// version (the feed's event for this write then changes nothing).
    fn record_written(&self, crd: &Arc<Crd>) {
        let mut crds = self.crds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cur) = crds.get(&crd.name)
            && resource_version(cur) >= resource_version(crd)
        {
            return;
        }
        crds.insert(crd.name.clone(), crd.clone());
    }

    /// The CRD of `name` held now.
    fn current(&self, name: &str) -> Option<Arc<Crd>> {
        self.crds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
}

/// Whether the handles built for `old` serve `new` unchanged: same spec, accepted names and
/// deletion state (status conditions, `storedVersions` and metadata do not matter).
fn same_serving(old: &Crd, new: &Crd) -> bool {
    old.accepted == new.accepted && old.deleting == new.deleting && old.same_spec(new)
}

/// The controller's memory between passes.
#[derive(Default)]
struct Controller {
    /// Handles reused while a CRD's serving does not change ([`same_serving`]).
    handles: HashMap<String, (Arc<Crd>, Vec<Arc<ResourceHandle>>)>,
    /// The handles published last (discovery and OpenAPI are rebuilt only when they change).
    published: Vec<Arc<ResourceHandle>>,
    /// CRDs whose cleanup runs now.
    cleaning: Arc<Mutex<HashSet<String>>>,
}

/// Loads the stored CRDs, serves the established ones, then keeps serving in step with
/// storage in a background task.
pub async fn start(state: &Arc<AppState>) -> anyhow::Result<()> {
    let set = Arc::new(CrdSet::default());
    rbac_feed::feed(state.store.cache.clone(), PREFIX.to_string(), set.clone()).await?;
    let mut ctl = Controller::default();
    sync(state, &set, &mut ctl).await;
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            set.changed.notified().await;
            sync(&state, &set, &mut ctl).await;
        }
    });
    Ok(())
}

/// The handles of one CRD's served versions (each version's schema compiled once).
fn handles_of(state: &AppState, crd: &Crd) -> Vec<Arc<ResourceHandle>> {
    let infos = crd.resource_infos();
    let multi = crd.versions.len() > 1;
    let schemas = compile_schemas(crd);
    let webhook = crd.webhook_conversion.then(|| {
        Arc::new(conversion::WebhookConverter::new(
            crd,
            state.aggregator.client.clone(),
        ))
    });
    infos
        .into_iter()
        .map(|(info, v)| {
            let custom = Arc::new(CustomVersion::new(crd, v, &schemas, webhook.clone()));
            let mut h = ResourceHandle::with_strategy(
                info,
                Arc::new(strategy::CustomResourceStrategy::new(custom.clone())),
            );
            if multi {
                h.storage_api_version = Some(crd.storage_api_version());
            }
            h.custom = Some(custom);
            Arc::new(h)
        })
        .collect()
}

/// One pass: fix statuses, serve what is established, run cleanups. A CRD whose status this
/// pass writes (`NamesAccepted` and `Established` together, as upstream's naming and
/// establishing controllers end up) is served in the same pass, from the written object,
/// without waiting for the feed to bring the write back.
async fn sync(state: &Arc<AppState>, set: &CrdSet, ctl: &mut Controller) {
    let mut crds = set.snapshot();
    let crd_handle = state
        .registry
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .cloned();
    if let Some(crd_handle) = &crd_handle {
        let now = now_rfc3339();
        let mut written = Vec::new();
        {
            let refs: Vec<&Crd> = crds.iter().map(|c| c.as_ref()).collect();
            for (i, crd) in crds.iter().enumerate() {
                if let Some(status) = customresource::status::desired(crd, &refs, &now)
                    && let Some(obj) = write_status(state, crd_handle, &crd.name, status).await
                    && let Some(mut parsed) = Crd::parse_owned(obj)
                {
                    parsed.share_schemas(set.current(&crd.name).as_deref().unwrap_or(crd));
                    written.push((i, Arc::new(parsed)));
                }
            }
        }
        for (i, crd) in written {
            set.record_written(&crd);
            crds[i] = crd;
        }
    }

    let mut served: Vec<Arc<ResourceHandle>> = Vec::new();
    let mut next = HashMap::new();
    for crd in crds.iter().filter(|c| c.established) {
        let handles = match ctl.handles.remove(&crd.name) {
            Some((old, h)) if Arc::ptr_eq(&old, crd) || same_serving(&old, crd) => h,
            _ => handles_of(state, crd),
        };
        served.extend(handles.iter().cloned());
        next.insert(crd.name.clone(), (crd.clone(), handles));
    }
    ctl.handles = next;
    let unchanged = served.len() == ctl.published.len()
        && served
            .iter()
            .zip(&ctl.published)
            .all(|(a, b)| Arc::ptr_eq(a, b));
    if !unchanged {
        state.registry.set_custom(served.clone());
        let mut table: Vec<ResourceInfo> = resources::builtin_resources().to_vec();
        table.extend(served.iter().map(|h| h.info.clone()));
        state.discovery.rebuild(table);
        state.openapi.set_custom(served.clone());
        ctl.published = served;
    }

    for crd in &crds {
        if crd.deleting
            && crd
                .finalizers
                .iter()
                .any(|f| f == customresource::CLEANUP_FINALIZER)
        {
            start_cleanup(state, ctl, crd);
        }
    }
}

/// Writes a CRD's status through `/status`; the stored object when it was written.
async fn write_status(
    state: &AppState,
    h: &ResourceHandle,
    name: &str,
    status: Value,
) -> Option<Value> {
    let opts = WriteOptions {
        subresource: UpdateTarget::Status,
        field_manager: "kube-apiserver".into(),
        ..WriteOptions::default()
    };
    let r = state
        .store
        .update(
            h,
            "",
            name,
            |current| {
                let Some(current) = current else {
                    return Err(ferrokube_machinery::status::Status::not_found(
                        "apiextensions.k8s.io",
                        "customresourcedefinitions",
                        name,
                    )
                    .into());
                };
                let mut obj = current.clone();
                obj["status"] = status.clone();
                Ok(obj)
            },
            &opts,
        )
        .await;
    match r {
        Ok((obj, _)) => {
            tracing::debug!(crd = name, "CRD status written");
            Some(obj)
        }
        Err(e) if e.is_not_found() || e.is_conflict() => None,
        Err(e) => {
            tracing::warn!(crd = name, error = %e, "writing CRD status failed");
            None
        }
    }
}

/// Starts deleting a CRD's custom resources (once per CRD at a time).
fn start_cleanup(state: &Arc<AppState>, ctl: &Controller, crd: &Crd) {
    {
        let mut cleaning = ctl.cleaning.lock().unwrap_or_else(|e| e.into_inner());
        if !cleaning.insert(crd.name.clone()) {
            return;
        }
    }
    let state = state.clone();
    let cleaning = ctl.cleaning.clone();
    let crd = crd.clone();
    tokio::spawn(async move {
        loop {
            match cleanup_once(&state, &crd).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(crd = %crd.name, error = %e, "CRD cleanup"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cleaning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&crd.name);
    });
}

/// One round of the cleanup: deletes every custom resource; once none is left, removes the
/// finalizer. `Ok(true)` when done.
async fn cleanup_once(state: &Arc<AppState>, crd: &Crd) -> crate::error::ApiResult<bool> {
    let Some(crd_handle) = state
        .registry
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .cloned()
    else {
        return Ok(true);
    };
    // The objects, read under the storage version (also when it is not served).
    let storage = crd
        .versions
        .iter()
        .find(|v| v.storage)
        .or(crd.versions.first());
    if let Some(v) = storage {
        let mut copy = crd.clone();
        for x in &mut copy.versions {
            x.served = x.name == v.name;
        }
        if let Some(h) = handles_of(state, &copy).into_iter().next() {
            let list = state.store.list(&h, "", &ListOptions::default()).await?;
            if !list.items.is_empty() {
                for kv in &list.items {
                    let obj = codec::decode(kv)?;
                    let ns = obj
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let name = obj
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    match state
                        .store
                        .delete(&h, ns, name, &DeleteOptions::default())
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
                return Ok(false);
            }
        }
    }
    let name = crd.name.clone();
    let r = state
        .store
        .update(
            &crd_handle,
            "",
            &name,
            |current| {
                let Some(current) = current else {
                    return Err(ferrokube_machinery::status::Status::not_found(
                        "apiextensions.k8s.io",
                        "customresourcedefinitions",
                        &name,
                    )
                    .into());
                };
                let mut obj = current.clone();
                if let Some(f) = obj
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    f.retain(|x| x.as_str() != Some(customresource::CLEANUP_FINALIZER));
                }
                Ok(obj)
            },
            &WriteOptions::default(),
        )
        .await;
    match r {
        Ok(_) => {
            tracing::info!(crd = %crd.name, "custom resources deleted; CRD finalized");
            Ok(true)
        }
        Err(e) if e.is_not_found() => Ok(true),
        Err(e) => Err(e),
    }
}

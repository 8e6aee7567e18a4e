//! The registry: one [`ResourceHandle`] per served resource (built from the machinery's one
//! resource table), the generic store that implements every verb over `Storage`, and the
//! per-resource strategies.

pub mod codec;
pub mod managed;
pub mod namespace;
pub mod request;
pub mod reviews;
pub mod service_alloc;
pub mod store;
pub mod strategies;
pub mod strategy;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ferrokube_machinery::resources::ResourceInfo;

use service_alloc::ServiceAllocator;
use strategy::Strategy;

/// A served resource: its table entry, its strategy and its storage prefix.
pub struct ResourceHandle {
    pub info: ResourceInfo,
    pub strategy: Arc<dyn Strategy>,
    /// `/registry/<segment>/`
    pub prefix: String,
    /// For kinds served at several versions over one storage version (HPA autoscaling/v1 and
    /// v2, core and events.k8s.io Events): the `apiVersion` objects are stored as. Objects are
    /// converted on the way in and out ([`codec::to_storage`], [`codec::to_served`]); `None`
    /// for everything else, which is stored as served and spliced out without decoding.
    pub storage_api_version: Option<String>,
    /// For a custom resource: what its CRD version declares (schema, printer columns, scale
    /// paths, selectable fields); `None` for built-ins.
    pub custom: Option<Arc<crate::crd::CustomVersion>>,
}

impl ResourceHandle {
    /// Builds the handle of a table entry (services allocate with `services`).
    pub fn new(info: ResourceInfo, services: &Arc<ServiceAllocator>) -> Self {
        let prefix = format!("/registry/{}/", strategies::storage_segment(&info));
        let strategy = strategies::strategy_for(&info, services);
        ResourceHandle {
            info,
            strategy,
            prefix,
            storage_api_version: None,
            custom: None,
        }
    }

    /// A handle with its own strategy (custom resources).
    pub fn with_strategy(info: ResourceInfo, strategy: Arc<dyn Strategy>) -> Self {
        let prefix = format!("/registry/{}/", strategies::storage_segment(&info));
        ResourceHandle {
            info,
            strategy,
            prefix,
            storage_api_version: None,
            custom: None,
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.info.namespaced() {
            format!("{}{namespace}/{name}", self.prefix)
        } else {
            format!("{}{name}", self.prefix)
        }
    }

    /// The key prefix of a list (one namespace, or all).
    pub fn list_prefix(&self, namespace: &str) -> String {
        if self.info.namespaced() && !namespace.is_empty() {
            format!("{}{namespace}/", self.prefix)
        } else {
            self.prefix.clone()
        }
    }

    /// Whether the resource has the `status` subresource (spec/status split).
    pub fn has_status(&self) -> bool {
        self.info.subresource("status").is_some()
    }
}

/// The key of a handle: group, version, plural.
type Gvr = (String, String, String);

/// Every served resource, by group, version and plural: the built-ins, fixed at startup, and
/// the custom resources of established CRDs, replaced as a whole when CRDs change.
pub struct Registry {
    by_gvr: HashMap<Gvr, Arc<ResourceHandle>>,
    all: Vec<Arc<ResourceHandle>>,
    custom: RwLock<Arc<HashMap<Gvr, Arc<ResourceHandle>>>>,
}

impl Registry {
    /// Builds the registry from resource table entries, with kube-apiserver's default service
    /// networks.
    pub fn new(resources: &[ResourceInfo]) -> Self {
        Self::with_services(resources, Arc::new(ServiceAllocator::default()))
    }

    /// Builds the registry; services allocate with `services` (the server's flags).
    pub fn with_services(resources: &[ResourceInfo], services: Arc<ServiceAllocator>) -> Self {
        let mut by_gvr = HashMap::new();
        let mut all = Vec::new();
        for info in resources {
            let mut h = ResourceHandle::new(info.clone(), &services);
            if let Some(storage) = &info.storage {
                let shared = resources
                    .iter()
                    .filter(|o| o.kind == info.kind && o.storage.as_ref() == Some(storage))
                    .count();
                if shared > 1 {
                    h.storage_api_version = Some(if storage.group.is_empty() {
                        storage.version.to_string()
                    } else {
                        format!("{}/{}", storage.group, storage.version)
                    });
                }
            }
            let h = Arc::new(h);
            by_gvr.insert(
                (
                    info.group.to_string(),
                    info.version.to_string(),
                    info.plural.to_string(),
                ),
                h.clone(),
            );
            all.push(h);
        }
        Registry {
            by_gvr,
            all,
            custom: RwLock::default(),
        }
    }

    /// The handle at a group, version and plural, built-in or custom (what requests are
    /// served by).
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceHandle>> {
        if let Some(h) = self.get(group, version, plural) {
            return Some(h.clone());
        }
        let key = (group.to_string(), version.to_string(), plural.to_string());
        self.custom_handles().get(&key).cloned()
    }

    /// The custom resources served now.
    pub fn custom_handles(&self) -> Arc<HashMap<Gvr, Arc<ResourceHandle>>> {
        self.custom
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the served custom resources. Built-in group-version-resources are never
    /// shadowed.
    pub fn set_custom(&self, handles: Vec<Arc<ResourceHandle>>) {
        let mut map = HashMap::new();
        for h in handles {
            let key = (
                h.info.group.to_string(),
                h.info.version.to_string(),
                h.info.plural.to_string(),
            );
            if !self.by_gvr.contains_key(&key) {
                map.insert(key, h);
            }
        }
        *self.custom.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
    }

    /// The handle of a built-in resource at a group, version and plural.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceHandle>> {
        self.by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// Every handle, in table order.
    pub fn all(&self) -> &[Arc<ResourceHandle>] {
        &self.all
    }

    /// The namespaces resource (namespaced creates check that the namespace exists).
    pub fn namespaces(&self) -> Option<&Arc<ResourceHandle>> {
        self.get("", "v1", "namespaces")
    }
}

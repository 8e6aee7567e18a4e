//! Admission (upstream `k8s.io/apiserver/pkg/admission`): an ordered chain of plugins, each with
//! a mutating hook ([`AdmissionPlugin::admit`]) and a validating hook
//! ([`AdmissionPlugin::validate`]). The generic store calls the chain at two fixed points of the
//! one write path: mutating admission after defaulting, validating admission after validation,
//! just before storage — for create, update, every patch, apply and delete. Mutating admission
//! always runs before validating admission (DESIGN invariant 4).
//!
//! Plugins read other objects through a [`StoreReader`] or the [`ApiHandle`] (never `Storage`
//! from handlers), as upstream's plugins read listers: the watch cache as it is, with a live
//! lookup only when it has nothing (or, NamespaceLifecycle, when it is known to be stale) — a
//! consistent read would cost every write a round trip to etcd for its current revision.

mod api;
mod certificates;
pub mod context;
mod default_ingress_class;
mod default_storage_class;
mod limit_ranger;
mod namespace_lifecycle;
mod node_restriction;
mod node_taint;
mod plugins;
mod pod;
mod pod_security;
pub mod policy;
mod priority;
mod pvc_resize;
pub mod reinvocation;
mod resource_quota;
mod runtime_class;
mod service_account;
mod storage_protection;
mod tolerations;
pub mod webhook;

use std::sync::Arc;

use serde_json::Value;

use crate::UserInfo;
use crate::error::ApiResult;
use crate::registry::ResourceHandle;
pub use crate::registry::request::Warnings;

pub use api::ApiHandle;
pub use namespace_lifecycle::NamespaceLifecycle;
pub use plugins::{AdmissionConfig, DEFAULT_ON, ORDERED, PluginSelection, build_chain};
pub use priority::ensure_system_priority_classes;
pub use reader::StoreReader;

/// `admission.Operation`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// As AdmissionReview and CEL's `request.operation` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    /// The kind of the request's `options` (`CreateOptions`, ...; none for connect).
    pub fn options_kind(self) -> &'static str {
        match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
            Operation::Connect => "",
        }
    }
}

/// `admission.Attributes`: what is being written, by whom.
pub struct Attributes<'a> {
    pub operation: Operation,
    /// The resource (group, version, plural, kind in `handle.info`).
    pub handle: &'a ResourceHandle,
    /// `""`, `status`, `scale`, `finalize`.
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub user: &'a UserInfo,
    pub dry_run: bool,
    /// The stored object (updates and deletes).
    pub old: Option<&'a Value>,
    /// Where plugins put warnings for the client.
    pub warnings: &'a Warnings,
    /// The request's reinvocation state (mutating webhooks and policies).
    pub reinvocation: reinvocation::Reinvocation,
}

impl Attributes<'_> {
    /// Whether this is the main resource `group`/`plural` (no subresource).
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.handle.info.plural == plural && self.handle.info.group == group
    }

    /// upstream `admission.NewForbidden`: 403 `<resource> "<name>" is forbidden: <msg>`.
    pub fn forbidden(&self, msg: &str) -> crate::error::ApiError {
        let info = &self.handle.info;
        ferrokube_machinery::status::Status::forbidden(&info.group, &info.plural, self.name, msg)
            .into()
    }
}

/// One admission plugin. Both hooks default to admitting everything.
#[async_trait::async_trait]
pub trait AdmissionPlugin: Send + Sync {
    /// The plugin's name (`--enable-admission-plugins`).
    fn name(&self) -> &'static str;

    /// Mutating admission: may change the object.
    async fn admit(&self, _a: &Attributes<'_>, _obj: &mut Value) -> ApiResult<()> {
        Ok(())
    }

    /// Validating admission: sees the final object; `old` is the stored one.
    async fn validate(
        &self,
        _a: &Attributes<'_>,
        _obj: &Value,
        _old: Option<&Value>,
    ) -> ApiResult<()> {
        Ok(())
    }
}

/// The plugins in order.
#[derive(Clone, Default)]
pub struct AdmissionChain {
    plugins: Vec<Arc<dyn AdmissionPlugin>>,
}

impl AdmissionChain {
    /// A chain of plugins, called in this order.
    pub fn new(plugins: Vec<Arc<dyn AdmissionPlugin>>) -> Self {
        AdmissionChain { plugins }
    }

    /// The default chain: NamespaceLifecycle.
    pub fn default_plugins(reader: StoreReader, namespaces: Arc<ResourceHandle>) -> Self {
        AdmissionChain::new(vec![Arc::new(NamespaceLifecycle::new(reader, namespaces))])
    }

    /// Appends a plugin at the end of the chain.
    pub fn push(&mut self, plugin: Arc<dyn AdmissionPlugin>) {
        self.plugins.push(plugin);
    }

    /// The plugins' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }

    /// Runs every plugin's mutating hook in order; the first error stops the chain. When a
    /// webhook or mutating policy changed the object, the chain runs once more (upstream's
    /// `reinvoker`): built-in plugins all again, webhooks and policies as their
    /// `reinvocationPolicy` says ([`reinvocation`]).
    pub async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        for p in &self.plugins {
            p.admit(a, obj).await?;
        }
        if a.reinvocation.should_reinvoke() && !a.reinvocation.is_reinvoke() {
            a.reinvocation.set_is_reinvoke();
            for p in &self.plugins {
                p.admit(a, obj).await?;
            }
        }
        Ok(())
    }

    /// Runs every plugin's validating hook in order; the first error stops the chain.
    pub async fn validate(&self, a: &Attributes<'_>, obj: &Value) -> ApiResult<()> {
        for p in &self.plugins {
            p.validate(a, obj, a.old).await?;
        }
        Ok(())
    }
}

mod reader {
    use std::sync::Arc;

    use ferrokube_storage::watch_cache::WatchCache;
    use ferrokube_storage::{KeyValue, Storage};
    use serde_json::Value;

    use crate::error::ApiResult;
    use crate::registry::{ResourceHandle, codec};

    /// Read-only access to stored objects for admission plugins: [`StoreReader::cached`] is
    /// upstream's lister (the watch cache as it is, no consistency wait), [`StoreReader::get`]
    /// its live lookup (the backend itself).
    #[derive(Clone)]
    pub struct StoreReader {
        storage: Arc<dyn Storage>,
        cache: Option<Arc<WatchCache>>,
    }

    impl StoreReader {
        /// A reader over the store's backend only (every read is a live lookup).
        pub fn new(storage: Arc<dyn Storage>) -> Self {
            StoreReader {
                storage,
                cache: None,
            }
        }

        /// A reader over the store's backend and the watch cache that follows it.
        pub fn with_cache(storage: Arc<dyn Storage>, cache: Arc<WatchCache>) -> Self {
            StoreReader {
                storage,
                cache: Some(cache),
            }
        }

        /// The current object, read from the backend (a live lookup: on etcd, a round trip).
        pub async fn get(
            &self,
            h: &ResourceHandle,
            namespace: &str,
            name: &str,
        ) -> ApiResult<Option<Value>> {
            match self.get_stored(h, namespace, name).await? {
                Some(kv) => Ok(Some(codec::decode_served(h, &kv).await?)),
                None => Ok(None),
            }
        }

        /// [`StoreReader::get`] as stored (bytes in the storage version, no resourceVersion):
        /// for a plugin that reads one field of a single-version kind without building the
        /// whole object.
        pub async fn get_stored(
            &self,
            h: &ResourceHandle,
            namespace: &str,
            name: &str,
        ) -> ApiResult<Option<KeyValue>> {
            Ok(self.storage.get(&h.key(namespace, name)).await?)
        }

        /// [`StoreReader::cached`] as stored (see [`StoreReader::get_stored`]).
        pub fn cached_stored(
            &self,
            h: &ResourceHandle,
            namespace: &str,
            name: &str,
        ) -> Option<KeyValue> {
            self.cache
                .as_ref()?
                .get_if_filled(&h.key(namespace, name))
                .flatten()
        }

        /// upstream's lister `Get`: the object as the watch cache holds it now, without
        /// waiting for the backend's current revision, so it may lag a write by a moment.
        /// `None` when the cache has no such object, or there is no cache, it is not
        /// following the backend or has not filled the object's range yet (upstream's
        /// `HasSynced` false): callers then make a live lookup ([`StoreReader::get`]).
        pub async fn cached(
            &self,
            h: &ResourceHandle,
            namespace: &str,
            name: &str,
        ) -> ApiResult<Option<Value>> {
            match self.cached_stored(h, namespace, name) {
                Some(kv) => Ok(Some(codec::decode_served(h, &kv).await?)),
                None => Ok(None),
            }
        }

        /// The lister first, a live lookup when it has nothing (upstream's admission plugins
        /// and namespace matcher: an object created a moment ago is found).
        pub async fn lookup(
            &self,
            h: &ResourceHandle,
            namespace: &str,
            name: &str,
        ) -> ApiResult<Option<Value>> {
            match self.cached(h, namespace, name).await? {
                Some(v) => Ok(Some(v)),
                None => self.get(h, namespace, name).await,
            }
        }

        /// The objects of one namespace (all when `namespace` is empty), at most `limit`.
        pub async fn list(
            &self,
            h: &ResourceHandle,
            namespace: &str,
            limit: usize,
        ) -> ApiResult<Vec<Value>> {
            let resp = self
                .storage
                .list(ferrokube_storage::ListRequest {
                    prefix: h.list_prefix(namespace),
                    start_after: None,
                    limit,
                    revision: 0,
                    skip_count: false,
                })
                .await?;
            let mut out = Vec::with_capacity(resp.items.len());
            for kv in &resp.items {
                let mut v = codec::decode(kv)?;
                codec::to_served(h, &mut v).await?;
                out.push(v);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests;

//! NamespaceLifecycle (upstream `plugin/namespace/lifecycle`): nothing is created in a namespace
//! that does not exist (404) or is being terminated (403). Namespaces that may never be deleted
//! stay a namespace strategy rule (`Strategy::forbid_delete`).
//!
//! As upstream, the namespace is read from the watch cache (its lister) without waiting for the
//! backend's current revision, so a create costs no storage read. A live lookup (the backend)
//! happens only when the cache does not have the namespace (one created a moment ago) or when
//! this server deleted the namespace within [`FORCE_LIVE_LOOKUP_TTL`] and the cache still shows
//! it active (upstream's `forceLiveLookupCache`). Unlike upstream, a missing namespace is looked
//! up at once instead of after a 50 ms second look at the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferrokube_machinery::status::{Status, StatusCause};
use ferrokube_storage::{KeyValue, Revision};
use serde_json::Value;

use super::{AdmissionPlugin, Attributes, Operation, StoreReader};
use crate::error::{ApiError, ApiResult};
use crate::registry::ResourceHandle;

/// How long a namespace deleted through this server is looked up live (upstream's
/// `forceLiveLookupTTL`).
pub const FORCE_LIVE_LOOKUP_TTL: Duration = Duration::from_secs(30);
/// How many such namespaces are remembered (upstream's LRU size); the oldest goes first.
const FORCE_LIVE_LOOKUP_CAPACITY: usize = 100;
/// How many namespaces' phases are remembered by revision before the memo starts over.
const PHASE_MEMO_CAPACITY: usize = 4096;

/// The NamespaceLifecycle plugin.
pub struct NamespaceLifecycle {
    reader: StoreReader,
    namespaces: Arc<ResourceHandle>,
    /// Namespaces deleted through this server lately.
    force_live_lookup: Mutex<RecentDeletes>,
    /// Whether a namespace is terminating, by its key and revision: the stored namespace is
    /// decoded once per version instead of once per create (its bytes hold the managed fields
    /// and finalizers before `status`).
    phases: Mutex<HashMap<Arc<str>, (Revision, bool)>>,
}

/// Namespace → (when the entry expires, insertion sequence number: the smallest goes first
/// when full).
#[derive(Default)]
struct RecentDeletes {
    next: u64,
    entries: HashMap<String, (Instant, u64)>,
}

impl NamespaceLifecycle {
    /// The plugin, reading namespaces through `reader`.
    pub fn new(reader: StoreReader, namespaces: Arc<ResourceHandle>) -> Self {
        NamespaceLifecycle {
            reader,
            namespaces,
            force_live_lookup: Mutex::default(),
            phases: Mutex::default(),
        }
    }

    /// [`is_terminating`], decoded once per namespace version.
    fn terminating(&self, ns: &KeyValue) -> ApiResult<bool> {
        // A panic while holding the lock leaves a map that is still valid.
        let lock = || self.phases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(rev, t)) = lock().get(&ns.key)
            && rev == ns.mod_revision
        {
            return Ok(t);
        }
        let t = is_terminating(ns)?;
        let mut phases = lock();
        if phases.len() >= PHASE_MEMO_CAPACITY {
            phases.clear();
        }
        phases.insert(ns.key.clone(), (ns.mod_revision, t));
        Ok(t)
    }

    fn recent_deletes(&self) -> MutexGuard<'_, RecentDeletes> {
        // A panic while holding the lock leaves a map that is still valid.
        self.force_live_lookup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a namespace being deleted (bounded: expired entries go, then the oldest).
    fn remember_delete(&self, name: &str) {
        let now = Instant::now();
        let mut recent = self.recent_deletes();
        recent.entries.retain(|_, (expires, _)| *expires > now);
        if recent.entries.len() >= FORCE_LIVE_LOOKUP_CAPACITY
            && !recent.entries.contains_key(name)
            && let Some(oldest) = recent
                .entries
                .iter()
                .min_by_key(|(_, (_, seq))| *seq)
                .map(|(k, _)| k.clone())
        {
            recent.entries.remove(&oldest);
        }
        let seq = recent.next;
        recent.next += 1;
        recent
            .entries
            .insert(name.to_owned(), (now + FORCE_LIVE_LOOKUP_TTL, seq));
    }

    /// Whether `name` was deleted through this server within the TTL.
    fn recently_deleted(&self, name: &str) -> bool {
        let now = Instant::now();
        self.recent_deletes()
            .entries
            .get(name)
            .is_some_and(|(expires, _)| *expires > now)
    }
}

/// The one field the plugin reads of a namespace. Decoded from the stored bytes into this
/// (every other field skipped, nothing allocated for it) rather than into a JSON tree: the
/// plugin runs on every namespaced create.
#[derive(serde::Deserialize)]
struct PhaseOnly {
    #[serde(default)]
    status: Option<StatusPhase>,
}

#[derive(serde::Deserialize)]
struct StatusPhase {
    #[serde(default)]
    phase: Option<String>,
}

/// Whether the stored namespace is terminating (`status.phase`).
fn is_terminating(ns: &KeyValue) -> ApiResult<bool> {
    let ns: PhaseOnly = serde_json::from_slice(&ns.value).map_err(ApiError::Encoding)?;
    Ok(ns.status.and_then(|s| s.phase).as_deref() == Some("Terminating"))
}

#[async_trait::async_trait]
impl AdmissionPlugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        _obj: &Value,
        _old: Option<&Value>,
    ) -> ApiResult<()> {
        if a.is("", "namespaces") {
            // Creates into a namespace being deleted must see it terminating, even before
            // the watch cache does.
            if a.operation == Operation::Delete && a.subresource.is_empty() {
                self.remember_delete(a.name);
            }
            return Ok(());
        }
        if a.operation != Operation::Create || !a.handle.info.namespaced() {
            return Ok(());
        }
        // Namespaces have one version: the stored bytes are the served object.
        let cached = self
            .reader
            .cached_stored(&self.namespaces, "", a.namespace)
            .map(|ns| self.terminating(&ns))
            .transpose()?;
        let terminating = match cached {
            // The cache is trusted unless it misses the namespace, or shows one this server
            // deleted lately as still active.
            Some(t) if t || !self.recently_deleted(a.namespace) => t,
            _ => match self
                .reader
                .get_stored(&self.namespaces, "", a.namespace)
                .await?
            {
                Some(ns) => is_terminating(&ns)?,
                None => return Err(Status::not_found("", "namespaces", a.namespace).into()),
            },
        };
        if terminating {
            let info = &a.handle.info;
            let mut status = Status::forbidden(
                &info.group,
                &info.plural,
                a.name,
                &format!(
                    "unable to create new content in namespace {} because it is being terminated",
                    a.namespace
                ),
            );
            if let Some(d) = status.details.as_mut() {
                d.causes.push(StatusCause {
                    reason: "NamespaceTerminating".into(),
                    message: format!("namespace {} is being terminated", a.namespace),
                    field: "metadata.namespace".into(),
                });
            }
            return Err(status.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ferrokube_machinery::resources::builtin_resources;
    use ferrokube_storage::Storage;
    use ferrokube_storage::memory::MemoryStore;
    use ferrokube_storage::watch_cache::{WatchCache, WatchCacheOptions};
    use serde_json::json;

    use super::*;
    use crate::UserInfo;
    use crate::admission::Warnings;
    use crate::registry::Registry;

    async fn put_namespace(store: &MemoryStore, name: &str, phase: &str) {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name}, "status": {"phase": phase}});
        store
            .create(
                &format!("/registry/namespaces/{name}"),
                serde_json::to_vec(&ns).expect("json").into(),
            )
            .await
            .expect("stored");
    }

    /// A lagging watch cache, modelled by a cache over one store and live lookups of another:
    /// what the cache has is believed without a storage read, what it lacks is looked up live,
    /// and a namespace deleted through this server is looked up live while the cache still
    /// shows it active.
    #[tokio::test]
    async fn reads_the_cache_and_looks_up_live_on_miss_or_recent_delete() {
        let cached = MemoryStore::new();
        put_namespace(&cached, "t", "Active").await;
        let live = MemoryStore::new();
        put_namespace(&live, "t", "Terminating").await;
        put_namespace(&live, "new", "Active").await;
        let cache = WatchCache::start(cached.clone(), "/registry/", WatchCacheOptions::default())
            .await
            .expect("watch cache");
        // What this test reads is the filled cache (an unfilled range is a live lookup, see
        // `a_lister_miss_on_an_unfilled_cache_is_a_live_lookup`).
        assert!(
            cache.wait_filled(std::time::Duration::from_secs(5)).await,
            "cache filled"
        );
        let registry = Registry::new(builtin_resources());
        let ns = registry.namespaces().cloned().expect("namespaces");
        let cms = registry
            .get("", "v1", "configmaps")
            .cloned()
            .expect("configmaps");
        let plugin = NamespaceLifecycle::new(StoreReader::with_cache(live, cache), ns.clone());
        let (user, warnings) = (UserInfo::default(), Warnings::default());
        let attrs = |handle, operation, namespace, name| Attributes {
            operation,
            handle,
            subresource: "",
            namespace,
            name,
            user: &user,
            dry_run: false,
            old: None,
            warnings: &warnings,
            reinvocation: Default::default(),
        };
        let obj = json!({});
        let create_in = |namespace| attrs(&cms, Operation::Create, namespace, "c");

        plugin
            .validate(&create_in("t"), &obj, None)
            .await
            .expect("active in the cache: no live lookup");
        plugin
            .validate(&create_in("new"), &obj, None)
            .await
            .expect("not in the cache yet: found by the live lookup");
        let e = plugin
            .validate(&create_in("gone"), &obj, None)
            .await
            .expect_err("nowhere");
        let s = e.to_status();
        assert_eq!(
            (s.code, s.message.as_str()),
            (404, "namespaces \"gone\" not found")
        );

        plugin
            .validate(&attrs(&ns, Operation::Delete, "", "t"), &obj, None)
            .await
            .expect("deleting a namespace is not this plugin's to refuse");
        let e = plugin
            .validate(&create_in("t"), &obj, None)
            .await
            .expect_err("deleted through this server: looked up live");
        let s = e.to_status();
        assert_eq!(s.code, 403);
        assert_eq!(
            s.message,
            "configmaps \"c\" is forbidden: unable to create new content in namespace t because it is being terminated"
        );
        let cause = &s.details.expect("details").causes[0];
        assert_eq!(
            (cause.reason.as_str(), cause.field.as_str()),
            ("NamespaceTerminating", "metadata.namespace")
        );
        assert_eq!(cause.message, "namespace t is being terminated");
        // Only the namespace deleted is looked up live.
        plugin
            .validate(&create_in("new"), &obj, None)
            .await
            .expect("other namespaces unaffected");
    }

    #[test]
    fn recent_deletes_are_bounded() {
        let registry = Registry::new(builtin_resources());
        let ns = registry.namespaces().cloned().expect("namespaces");
        let plugin = NamespaceLifecycle::new(StoreReader::new(MemoryStore::new()), ns);
        for i in 0..(FORCE_LIVE_LOOKUP_CAPACITY + 50) {
            plugin.remember_delete(&format!("ns-{i}"));
        }
        assert_eq!(
            plugin.recent_deletes().entries.len(),
            FORCE_LIVE_LOOKUP_CAPACITY
        );
        assert!(plugin.recently_deleted(&format!("ns-{}", FORCE_LIVE_LOOKUP_CAPACITY + 49)));
        assert!(!plugin.recently_deleted("ns-0"), "the oldest went first");
    }
}

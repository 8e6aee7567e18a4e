//! The generic store: every verb over `Storage` for any resource, with the strategy hooks called
//! in a fixed order (upstream's `pkg/registry/generic/registry/store.go`). Handlers call this and
//! never `Storage` directly (DESIGN invariant 3).

use std::sync::Arc;

use ferrokube_machinery::continue_token;
use ferrokube_machinery::selectors::FieldSelector;
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::{FieldError, validate_object_meta};
use ferrokube_storage::watch_cache::{CacheWatchOptions, CacheWatchStream, WatchCache};
use ferrokube_storage::{KeyValue, ListRequest, Revision, Storage, StorageError};
use serde_json::{Map, Value};

use super::ResourceHandle;
use crate::admission::AdmissionChain;
use crate::error::{ApiError, ApiResult};

mod assign;
mod deletion;
mod write;
pub use super::request::{
    DeleteOptions, FieldValidation, ListOptions, ManagedFieldsMode, Propagation, UpdateTarget,
    WriteOptions,
};
pub use deletion::{Deleted, FINALIZER_FOREGROUND, FINALIZER_ORPHAN};
pub(crate) use write::generate_name;
pub use write::{HEAVY_BYTES, Mutation, decode_error, type_check};

/// A page of a list: matching items as stored, plus list metadata.
pub struct ListResult {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// Options of watch.
#[derive(Default, Debug, Clone)]
pub struct WatchOptions {
    /// `resourceVersion` (empty: from now, after the initial state).
    pub resource_version: String,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `allowWatchBookmarks`: progress notifications on an idle watch, this often.
    pub progress_interval: Option<std::time::Duration>,
}

/// A started watch: the initial state (synthetic ADDED events) and the stream of what
/// follows, or the Status that ends the watch at once (410 for a compacted revision, sent as
/// an ERROR event as upstream does).
pub struct WatchResult {
    pub initial: Vec<KeyValue>,
    /// The revision of the initial state (for the initial-events-end bookmark).
    pub initial_revision: Option<Revision>,
    pub stream: Result<CacheWatchStream, Status>,
}

/// The generic store over one storage backend, its watch cache and the admission chain.
pub struct GenericStore {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) cache: Arc<WatchCache>,
    pub(crate) admission: AdmissionChain,
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn meta_mut(obj: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the object is not a JSON object"))?;
    let m = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    m.as_object_mut()
        .ok_or_else(|| ApiError::internal("metadata"))
}

/// RFC 3339 at second precision, as metav1.Time.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Everything but metadata and status: what a generation bump compares.
fn spec_part(obj: &Value) -> Vec<(&String, &Value)> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .collect()
        })
        .unwrap_or_default()
}

impl GenericStore {
    /// The store over a backend and its watch cache, with an admission chain.
    pub fn new(
        storage: Arc<dyn Storage>,
        cache: Arc<WatchCache>,
        admission: AdmissionChain,
    ) -> Self {
        GenericStore {
            storage,
            cache,
            admission,
        }
    }

    /// The backend's current revision.
    pub async fn current_revision(&self) -> ApiResult<Revision> {
        Ok(self.storage.current_revision().await?)
    }

    fn validate_meta(h: &ResourceHandle, obj: &Value) -> Vec<FieldError> {
        let empty = Value::Object(Map::new());
        validate_object_meta(
            obj.get("metadata").unwrap_or(&empty),
            h.info.namespaced(),
            h.strategy.name_rule(),
            "metadata",
        )
    }

    /// Releases what a deleted (or never stored) object reserved.
    async fn release_reservation(&self, h: &ResourceHandle, obj: &Value) {
        if let Some(r) = h.strategy.reservation() {
            r.release(&*self.storage, obj).await;
        }
    }

    /// Get of the latest version: a consistent read served from the watch cache once it has
    /// seen the store's current revision (as lists are), so a GET costs no storage read
    /// transaction. When the cache cannot answer (it did not reach that revision in time —
    /// tens of milliseconds when the store's revision may outrun the cache, as with other
    /// tenants of an etcd that sends no progress notifications — or it stopped) the store
    /// answers.
    pub async fn get(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
    ) -> ApiResult<KeyValue> {
        let key = h.key(namespace, name);
        let current = self.storage.current_revision().await?;
        let found = match self.cache.get_fresh(&key, current).await {
            Some(kv) => kv,
            None => self.storage.get(&key).await?,
        };
        match found {
            Some(kv) => Ok(kv),
            None => Err(Status::not_found(&h.info.group, &h.info.plural, name).into()),
        }
    }

    /// upstream's lister `Get` for admission plugins: the object as the watch cache holds it
    /// now, with no wait for the backend's current revision (it may lag a write by a moment).
    /// `None` when the cache has no such object, is not following the backend or has not
    /// filled the object's range yet: callers then make a live lookup ([`Self::get_live`]).
    pub async fn get_cached(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
    ) -> ApiResult<Option<KeyValue>> {
        Ok(self.cache.get_if_filled(&h.key(namespace, name)).flatten())
    }

    /// A live lookup: the object as the backend holds it (one read, no watch-cache wait).
    pub async fn get_live(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
    ) -> ApiResult<Option<KeyValue>> {
        Ok(self.storage.get(&h.key(namespace, name)).await?)
    }

    /// Checks a field selector against what the resource supports.
    pub fn check_field_selector(h: &ResourceHandle, sel: &FieldSelector) -> ApiResult<()> {
        for r in sel.requirements() {
            let f = r.field.as_str();
            if f == "metadata.name" || (f == "metadata.namespace" && h.info.namespaced()) {
                continue;
            }
            if !h.strategy.has_field_label(f) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {f}"
                )));
            }
        }
        Ok(())
    }

    /// Whether a stored object matches the list's selectors.
    pub fn matches(h: &ResourceHandle, opts: &ListOptions, obj: &Value) -> bool {
        if !opts.label_selector.is_empty() {
            let labels = obj.get("metadata").and_then(|m| m.get("labels"));
            if !opts.label_selector.matches_json(labels) {
                return false;
            }
        }
        if !opts.field_selector.is_empty() {
            let fields = h.strategy.field_set(obj);
            let get = |f: &str| -> Option<String> {
                match f {
                    "metadata.name" => Some(meta_str(obj, "name").to_string()),
                    "metadata.namespace" => Some(meta_str(obj, "namespace").to_string()),
                    _ => fields.iter().find(|(k, _)| *k == f).map(|(_, v)| v.clone()),
                }
            };
            if !opts.field_selector.matches(&get) {
                return false;
            }
        }
        true
    }

    fn filter(
        h: &ResourceHandle,
        opts: &ListOptions,
        kvs: Vec<KeyValue>,
    ) -> ApiResult<Vec<KeyValue>> {
        if opts.label_selector.is_empty() && opts.field_selector.is_empty() {
            return Ok(kvs);
        }
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let obj: Value = serde_json::from_slice(&kv.value).map_err(ApiError::Encoding)?;
            if Self::matches(h, opts, &obj) {
                out.push(kv);
            }
        }
        Ok(out)
    }

    /// List with upstream's resourceVersion, pagination and selector semantics.
    pub async fn list(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        Self::check_field_selector(h, &opts.field_selector)?;
        let prefix = h.list_prefix(namespace);
        let filtered = !opts.label_selector.is_empty() || !opts.field_selector.is_empty();
        if let Some(token) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            if opts
                .resource_version
                .as_deref()
                .is_some_and(|rv| !rv.is_empty())
            {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (rv, start) = continue_token::decode_continue(token)
                .map_err(|e| ApiError::bad_request(format!("invalid continue token: {e}")))?;
            let start_after = format!("{prefix}{}", start.trim_end_matches('\0'));
            return self
                .list_from_storage(h, &prefix, opts, Some(start_after), rv, filtered)
                .await;
        }
        let rv_param = opts.resource_version.as_deref().unwrap_or("");
        let rv_match = opts.resource_version_match.as_deref().unwrap_or("");
        match (rv_param, rv_match) {
            (rv, "Exact") => {
                let rev: Revision = rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version \"{rv}\""))
                })?;
                self.list_from_storage(h, &prefix, opts, None, rev, filtered)
                    .await
            }
            _ => {
                // "" is a consistent list: the cache once it has seen the store's current
                // revision. "0" is any state the cache has; N at least revision N.
                let (min, current) = match rv_param {
                    "" => {
                        let current = self.storage.current_revision().await?;
                        (current, current)
                    }
                    "0" => (0, 0),
                    rv => {
                        let min: Revision = rv.parse().map_err(|_| {
                            ApiError::bad_request(format!("invalid resource version \"{rv}\""))
                        })?;
                        let current = self.storage.current_revision().await?;
                        if min > current {
                            return Err(StorageError::FutureRevision {
                                requested: min,
                                current,
                            }
                            .into());
                        }
                        (min, current)
                    }
                };
                match self.cache.list_fresh(&prefix, min).await {
                    Some((all, rev)) => {
                        let matched = Self::filter(h, opts, all)?;
                        Ok(paginate(matched, &prefix, opts.limit, rev, !filtered))
                    }
                    // The cache did not get there in time (tens of milliseconds when the
                    // store's revision may outrun it): the store at its current revision,
                    // with the same pagination and selectors (upstream's fallback to etcd).
                    None => {
                        self.list_from_storage(h, &prefix, opts, None, current, filtered)
                            .await
                    }
                }
            }
        }
    }

    async fn list_from_storage(
        &self,
        h: &ResourceHandle,
        prefix: &str,
        opts: &ListOptions,
        mut start_after: Option<String>,
        revision: Revision,
        filtered: bool,
    ) -> ApiResult<ListResult> {
        let mut items = Vec::new();
        let want = opts.limit;
        loop {
            let page = match self
                .storage
                .list(ListRequest {
                    prefix: prefix.to_string(),
                    start_after: start_after.clone(),
                    limit: if want == 0 {
                        0
                    } else {
                        want.saturating_sub(items.len()).max(1)
                    },
                    revision,
                    skip_count: false,
                })
                .await
            {
                Ok(p) => p,
                Err(StorageError::Compacted { .. }) if opts.continue_token.is_some() => {
                    return Err(self.expired_continue(prefix, start_after.as_deref()).await);
                }
                Err(e) => return Err(e.into()),
            };
            let last_key = page.items.last().map(|kv| kv.key.to_string());
            let page_more = page.more;
            let remaining = page.remaining;
            items.extend(Self::filter(h, opts, page.items)?);
            let full = want > 0 && items.len() >= want;
            if !page_more || full || last_key.is_none() {
                let continue_token = if page_more {
                    items
                        .last()
                        .map(|kv| token_after(&kv.key, prefix, page.revision))
                } else {
                    None
                };
                let remaining = (page_more && !filtered).then_some(remaining);
                return Ok(ListResult {
                    items,
                    revision: page.revision,
                    continue_token,
                    remaining,
                });
            }
            start_after = last_key;
        }
    }

    /// Watch (upstream `Store.Watch` over the cacher): from a resourceVersion, or from now /
    /// from a list's state with synthetic ADDED events for the initial state. Selectors are
    /// applied by the caller per event (they see transitions).
    pub async fn watch(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        list: &ListOptions,
        opts: &WatchOptions,
    ) -> ApiResult<WatchResult> {
        Self::check_field_selector(h, &list.field_selector)?;
        let prefix = h.list_prefix(namespace);
        let cache_opts = CacheWatchOptions {
            progress_interval: opts.progress_interval,
        };
        let parse_rv = |rv: &str| -> ApiResult<Revision> {
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{rv}\"")))
        };
        let rv = opts.resource_version.as_str();
        let from_rv = opts.send_initial_events == Some(false)
            || (opts.send_initial_events.is_none() && !rv.is_empty() && rv != "0");
        if from_rv {
            let after = if rv.is_empty() {
                self.storage.current_revision().await?
            } else {
                parse_rv(rv)?
            };
            let stream = match self.cache.watch(&prefix, after, cache_opts).await {
                Ok(s) => Ok(s),
                Err(e @ StorageError::Compacted { .. }) => Err(ApiError::from(e).to_status()),
                Err(e) => return Err(e.into()),
            };
            return Ok(WatchResult {
                initial: Vec::new(),
                initial_revision: None,
                stream,
            });
        }
        let min = match rv {
            "" => self.storage.current_revision().await?,
            "0" => 0,
            other => parse_rv(other)?,
        };
        let w = self
            .cache
            .watch_with_initial(&prefix, min, cache_opts)
            .await?;
        Ok(WatchResult {
            initial: w.items,
            initial_revision: Some(w.revision),
            stream: Ok(w.stream),
        })
    }

    /// 410 for a continue token whose revision is compacted, with upstream's message and an
    /// inconsistent continue token at the current revision.
    async fn expired_continue(&self, prefix: &str, start_after: Option<&str>) -> ApiError {
        let current = self.storage.current_revision().await.unwrap_or(0);
        let mut status = Status::resource_expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        );
        if let Some(s) = start_after {
            status.metadata.continue_ = token_after(s, prefix, current);
        }
        status.into()
    }
}

/// The continue token that resumes a list after `key`.
fn token_after(key: &str, prefix: &str, rev: Revision) -> String {
    let rel = key.strip_prefix(prefix).unwrap_or(key);
    continue_token::encode_continue(rev, &format!("{rel}\0"))
}

/// One page of an in-memory, key-ordered result.
fn paginate(
    mut items: Vec<KeyValue>,
    prefix: &str,
    limit: usize,
    rev: Revision,
    count_remaining: bool,
) -> ListResult {
    if limit == 0 || items.len() <= limit {
        return ListResult {
            items,
            revision: rev,
            continue_token: None,
            remaining: None,
        };
    }
    let rest = items.split_off(limit);
    let continue_token = items.last().map(|kv| token_after(&kv.key, prefix, rev));
    ListResult {
        items,
        revision: rev,
        continue_token,
        remaining: count_remaining.then_some(rest.len() as u64),
    }
}

//! The generic store: every verb over `Storage` for any resource, with the strategy hooks called
//! in a fixed order (upstream's `pkg/registry/generic/registry/store.go`). Handlers call this and
//! never `Storage` directly (DESIGN invariant 3).

use std::sync::Arc;

use ferrokube_machinery::continue_token;
use ferrokube_machinery::selectors::{FieldSelector, LabelSelector};
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::{FieldError, validate_object_meta};
use ferrokube_storage::watch_cache::WatchCache;
use ferrokube_storage::{KeyValue, ListRequest, Revision, Storage, StorageError};
use serde_json::{Map, Value, json};

use super::ResourceHandle;
use super::codec;
use crate::error::{ApiError, ApiResult};

mod assign;
mod deletion;
pub use deletion::{Deleted, FINALIZER_FOREGROUND, FINALIZER_ORPHAN, Propagation};

/// Query options of list and watch.
#[derive(Default, Debug, Clone)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// Options of delete.
#[derive(Default, Debug, Clone)]
pub struct DeleteOptions {
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`.
    pub propagation: Option<Propagation>,
    /// The deprecated `orphanDependents`.
    pub orphan_dependents: Option<bool>,
}

/// A page of a list: matching items as stored, plus list metadata.
pub struct ListResult {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// The generic store over one storage backend and its watch cache.
pub struct GenericStore {
    pub storage: Arc<dyn Storage>,
    pub cache: Arc<WatchCache>,
}

/// What a PUT writes: the main resource, or its status subresource.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UpdateTarget {
    Main,
    Status,
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

/// `generateName` + five random characters from upstream's alphabet.
fn generate_name(base: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base = if base.len() > 58 { &base[..58] } else { base };
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{base}{suffix}")
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
    /// Checks that a namespace exists for a namespaced create.
    async fn ensure_namespace(
        &self,
        h: &ResourceHandle,
        name: &str,
        namespace: &str,
    ) -> ApiResult<()> {
        let key = format!("/registry/namespaces/{namespace}");
        match self.storage.get(&key).await? {
            Some(kv) => {
                let ns = codec::decode(&kv)?;
                if ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
                    return Err(Status::forbidden(
                        h.info.group,
                        h.info.plural,
                        name,
                        &format!("unable to create new content in namespace {namespace} because it is being terminated"),
                    )
                    .into());
                }
                Ok(())
            }
            None => Err(Status::not_found("", "namespaces", namespace).into()),
        }
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

    /// Create (POST). `obj` has been decoded and checked against the URL.
    pub async fn create(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let strategy = &h.strategy;
        codec::to_storage(h, &mut obj)?;
        {
            let m = meta_mut(&mut obj)?;
            if m.get("resourceVersion")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                return Err(ApiError::internal(
                    "resourceVersion should not be set on objects to be created",
                ));
            }
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if name.is_empty()
                && let Some(base) = m
                    .get("generateName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            {
                m.insert("name".into(), Value::String(generate_name(base)));
            }
            m.insert(
                "uid".into(),
                Value::String(uuid::Uuid::new_v4().to_string()),
            );
            m.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
            if strategy.tracks_generation() {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if h.has_status() {
            // The status of a new object is the server's to set (strategies may seed it).
            if let Some(map) = obj.as_object_mut() {
                map.remove("status");
            }
        }
        // Upstream defaults at decode time, before the strategy and admission see the object.
        ferrokube_machinery::defaults::apply_own(&mut obj);
        strategy.prepare_for_create(&mut obj);
        super::managed::record(h, None, &mut obj, UpdateTarget::Main);
        let mut errs = Self::validate_meta(h, &obj);
        errs.extend(strategy.validate(&obj));
        let name = meta_str(&obj, "name").to_string();
        if !errs.is_empty() {
            return Err(ApiError::invalid(h.info.group, h.info.kind, &name, &errs));
        }
        if h.info.namespaced() {
            self.ensure_namespace(h, &name, namespace).await?;
        }
        let key = h.key(namespace, &name);
        if dry_run && self.storage.get(&key).await?.is_some() {
            return Err(Status::already_exists(h.info.group, h.info.plural, &name).into());
        }
        let reserved = match h.strategy.reservation() {
            Some(r) => {
                r.reserve(&*self.storage, &mut obj, namespace, &name, dry_run)
                    .await?
            }
            None => false,
        };
        let bytes = codec::encode_for_storage(&obj)?;
        if dry_run {
            codec::to_served(h, &mut obj)?;
            return Ok(obj);
        }
        let kv = match self.storage.create(&key, bytes).await {
            Ok(kv) => kv,
            Err(e) => {
                if reserved {
                    self.release_reservation(h, &obj).await;
                }
                return Err(ApiError::from_storage(
                    e,
                    h.info.group,
                    h.info.plural,
                    &name,
                ));
            }
        };
        codec::set_rv(&mut obj, kv.mod_revision);
        codec::to_served(h, &mut obj)?;
        Ok(obj)
    }

    /// Releases what a deleted (or never stored) object reserved.
    async fn release_reservation(&self, h: &ResourceHandle, obj: &Value) {
        if let Some(r) = h.strategy.reservation() {
            r.release(&*self.storage, obj).await;
        }
    }

    /// Get of the latest version (consistent read from storage).
    pub async fn get(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
    ) -> ApiResult<KeyValue> {
        match self.storage.get(&h.key(namespace, name)).await? {
            Some(kv) => Ok(kv),
            None => Err(Status::not_found(h.info.group, h.info.plural, name).into()),
        }
    }

    /// Update (PUT) of the main resource or its status.
    pub async fn update(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        mut obj: Value,
        target: UpdateTarget,
        dry_run: bool,
    ) -> ApiResult<(Value, bool)> {
        let key = h.key(namespace, name);
        let requested_rv = meta_str(&obj, "resourceVersion").to_string();
        codec::to_storage(h, &mut obj)?;
        loop {
            let current = self.storage.get(&key).await?;
            let Some(current) = current else {
                if target == UpdateTarget::Main && h.strategy.allow_create_on_update() {
                    if let Ok(m) = meta_mut(&mut obj) {
                        m.remove("resourceVersion");
                    }
                    return self
                        .create(h, namespace, obj, dry_run)
                        .await
                        .map(|o| (o, true));
                }
                return Err(Status::not_found(h.info.group, h.info.plural, name).into());
            };
            if !requested_rv.is_empty() && requested_rv != current.mod_revision.to_string() {
                return Err(Status::conflict(
                    h.info.group,
                    h.info.plural,
                    name,
                    ferrokube_machinery::status::OPTIMISTIC_LOCK_ERROR_MSG,
                )
                .into());
            }
            let old = codec::decode(&current)?;
            let mut new = obj.clone();
            self.prepare_update(h, &mut new, &old, target)?;
            super::managed::record(h, Some(&old), &mut new, target);
            let mut errs = Self::validate_meta(h, &new);
            errs.extend(match target {
                UpdateTarget::Main => h.strategy.validate_update(&new, &old),
                UpdateTarget::Status => h.strategy.validate_status_update(&new, &old),
            });
            errs.extend(deletion::finalizer_update_errors(&new, &old));
            if !errs.is_empty() {
                return Err(ApiError::invalid(h.info.group, h.info.kind, name, &errs));
            }
            if deletion::should_delete_during_update(h, &new, &old) {
                match self
                    .delete_during_update(h, &key, name, new, current.mod_revision, dry_run)
                    .await?
                {
                    Some(mut out) => {
                        codec::to_served(h, &mut out)?;
                        return Ok((out, false));
                    }
                    None if requested_rv.is_empty() => continue,
                    None => {
                        return Err(Status::conflict(
                            h.info.group,
                            h.info.plural,
                            name,
                            ferrokube_machinery::status::OPTIMISTIC_LOCK_ERROR_MSG,
                        )
                        .into());
                    }
                }
            }
            let bytes = codec::encode_for_storage(&new)?;
            if bytes == current.value {
                // Nothing changed: no write, the resourceVersion stays.
                let mut old = old;
                codec::to_served(h, &mut old)?;
                return Ok((old, false));
            }
            if dry_run {
                // Nothing is written: the answer keeps the current resourceVersion, as upstream's
                // dry-run storage does (so `kubectl diff` shows no resourceVersion change).
                codec::set_rv(&mut new, current.mod_revision);
                codec::to_served(h, &mut new)?;
                return Ok((new, false));
            }
            match self.storage.update(&key, bytes, current.mod_revision).await {
                Ok(kv) => {
                    codec::set_rv(&mut new, kv.mod_revision);
                    codec::to_served(h, &mut new)?;
                    return Ok((new, false));
                }
                Err(StorageError::Conflict { .. }) if requested_rv.is_empty() => continue,
                Err(e) => return Err(ApiError::from_storage(e, h.info.group, h.info.plural, name)),
            }
        }
    }

    /// `BeforeUpdate`: system metadata from the old object, spec/status split, generation.
    fn prepare_update(
        &self,
        h: &ResourceHandle,
        new: &mut Value,
        old: &Value,
        target: UpdateTarget,
    ) -> ApiResult<()> {
        let old_meta = meta(old).cloned().unwrap_or_default();
        if h.has_status() {
            let (Some(n), Some(o)) = (new.as_object_mut(), old.as_object()) else {
                return Err(ApiError::bad_request("the object is not a JSON object"));
            };
            match target {
                UpdateTarget::Main => {
                    match o.get("status") {
                        Some(s) => n.insert("status".into(), s.clone()),
                        None => n.remove("status"),
                    };
                }
                UpdateTarget::Status => {
                    // Only the status changes through /status.
                    let status = n.remove("status");
                    let mut merged = o.clone();
                    match status {
                        Some(s) => merged.insert("status".into(), s),
                        None => merged.remove("status"),
                    };
                    *n = merged;
                }
            }
        }
        ferrokube_machinery::defaults::apply_own(new);
        if target == UpdateTarget::Main {
            h.strategy.prepare_for_update(new, old);
        }
        let bump = h.strategy.tracks_generation() && spec_part(new) != spec_part(old);
        let m = meta_mut(new)?;
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
        // Namespaced objects keep their namespace; name changes were rejected by the handler.
        m.remove("resourceVersion");
        if bump {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            m.insert("generation".into(), json!(g + 1));
        }
        Ok(())
    }

    /// Checks a field selector against what the resource supports.
    pub fn check_field_selector(h: &ResourceHandle, sel: &FieldSelector) -> ApiResult<()> {
        for r in sel.requirements() {
            let f = r.field.as_str();
            if f == "metadata.name" || (f == "metadata.namespace" && h.info.namespaced()) {
                continue;
            }
            if !h.strategy.field_labels().contains(&f) {
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
                let min = match rv_param {
                    "" => self.storage.current_revision().await?,
                    "0" => 0,
                    rv => rv.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid resource version \"{rv}\""))
                    })?,
                };
                if min > 0 {
                    let current = self.storage.current_revision().await?;
                    if min > current {
                        return Err(StorageError::FutureRevision {
                            requested: min,
                            current,
                        }
                        .into());
                    }
                }
                let (all, rev) = self.cache.list(&prefix, min).await?;
                let matched = Self::filter(h, opts, all)?;
                Ok(paginate(matched, &prefix, opts.limit, rev, !filtered))
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
                })
                .await
            {
                Ok(p) => p,
                Err(StorageError::Compacted { .. }) if opts.continue_token.is_some() => {
                    return Err(self.expired_continue(prefix, start_after.as_deref()).await);
                }
                Err(e) => return Err(e.into()),
            };
            let last_key = page.items.last().map(|kv| kv.key.clone());
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

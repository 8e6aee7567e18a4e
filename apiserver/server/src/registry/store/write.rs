//! The one write path (DESIGN §2 "One write path"; upstream `rest.BeforeCreate`,
//! `rest.BeforeUpdate`, `Store.Create`, `Store.Update` and `storage.GuaranteedUpdate`).
//!
//! Every write runs the same named stages, written once here:
//! type check → system metadata → defaulting → **mutating admission** → strategy prepare →
//! managedFields → validation → **validating admission** → storage compare-and-swap.
//!
//! Updates of every kind (PUT, `/status`, every patch type, apply, `/scale`, `/finalize`) and
//! the writes a delete makes (graceful deletion, finalizers) run on ONE guaranteed-update loop,
//! [`GenericStore::guaranteed_update`]: read the current object, compute the change (the
//! caller's mutation function and the stages, or the delete plan), compare-and-swap; a lost
//! race re-reads and recomputes. A resourceVersion the client pinned that is not the current one
//! is a 409 (upstream's optimistic-lock message); an unpinned write never sees a conflict.

use ferrokube_machinery::status::{OPTIMISTIC_LOCK_ERROR_MSG, Status};
use ferrokube_machinery::validation::types;
use ferrokube_storage::KeyValue;
use serde_json::{Map, Value, json};

use super::deletion::{self, DeletePlan};
use super::{GenericStore, meta, meta_mut, meta_str, now_rfc3339, spec_part};
use crate::admission::{Attributes, Operation};
use crate::error::{ApiError, ApiResult};
use crate::registry::request::{DeleteOptions, UpdateTarget, WriteOptions};
use crate::registry::{ResourceHandle, codec, managed};

/// Objects (current or incoming) beyond this size have their mutation (patch, apply) run off
/// the async runtime's worker threads, so that one big patch does not stall other requests.
pub const HEAVY_BYTES: usize = 64 * 1024;

/// How many lost compare-and-swap races an unpinned write retries before giving up with 409
/// (upstream retries without bound; a bound keeps a pathological livelock finite).
const MAX_ATTEMPTS: usize = 1000;

/// A mutation of the current object (`None`: it does not exist) into the new one, both in the
/// version the request is served at (upstream `rest.UpdatedObjectInfo.UpdatedObject`).
pub type Mutation<'a> = dyn FnMut(Option<&Value>) -> ApiResult<Value> + Send + 'a;

/// What the guaranteed-update loop is asked to do on each attempt.
pub(super) enum Change<'a, 'm> {
    Update {
        mutate: &'a mut Mutation<'m>,
        opts: &'a WriteOptions,
    },
    Delete {
        opts: &'a DeleteOptions,
    },
    /// A narrow change a subresource owns (binding): `mutate` gets the stored object and
    /// returns it changed; no strategy stage runs (see `assign.rs`).
    Assign {
        mutate: &'a mut (dyn FnMut(Value) -> ApiResult<Value> + Send + 'm),
        dry_run: bool,
    },
}

/// The outcome of one attempt's computation.
pub(super) enum Plan {
    /// Nothing to write; the object as it is (stored form, resourceVersion set).
    Unchanged(Value),
    /// Create the object (it does not exist).
    Create(Value),
    /// Write the object over the revision it was computed from.
    Write(Value, i64),
    /// Remove the object at the revision it was computed from.
    Remove(Value, i64),
}

/// The outcome of the loop (objects in the stored form, resourceVersion set).
pub(super) enum Done {
    Unchanged(Value),
    Created(Value),
    Updated(Value),
    Removed(Value),
}

fn conflict(h: &ResourceHandle, name: &str) -> ApiError {
    Status::conflict(
        &h.info.group,
        &h.info.plural,
        name,
        OPTIMISTIC_LOCK_ERROR_MSG,
    )
    .into()
}

/// 400 for a wrongly typed create/update body, as upstream's `transformDecodeError`.
pub fn decode_error(h: &ResourceHandle, e: &types::TypeError) -> ApiError {
    let info = &h.info;
    ApiError::bad_request(format!(
        "{kind} in version \"{v}\" cannot be handled as a {kind}: {msg}",
        kind = info.kind,
        v = info.version,
        msg = e.json_message(),
    ))
}

/// The type check stage: the object (in the served version) against its kind's schema.
/// Quantities given as numbers become strings.
pub fn type_check(h: &ResourceHandle, obj: &mut Value) -> Result<(), types::TypeError> {
    types::check_object(&h.info, obj)
}

impl GenericStore {
    fn attributes<'a>(
        h: &'a ResourceHandle,
        operation: Operation,
        namespace: &'a str,
        name: &'a str,
        opts: &'a WriteOptions,
        old: Option<&'a Value>,
    ) -> Attributes<'a> {
        Attributes {
            operation,
            handle: h,
            subresource: opts.subresource.subresource(),
            namespace,
            name,
            user: &opts.user,
            dry_run: opts.dry_run,
            old,
            warnings: &opts.warnings,
            reinvocation: Default::default(),
        }
    }

    /// Create (POST): the stages, then storage. `obj` has been decoded and checked against the
    /// URL; it comes back stored, in the served version.
    pub async fn create(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        type_check(h, &mut obj).map_err(|e| decode_error(h, &e))?;
        self.create_checked(h, namespace, obj, opts).await
    }

    /// [`GenericStore::create`] of an object that passed [`type_check`] as it is (the POST
    /// handler checks the body as it decodes it; a second walk found nothing new).
    pub async fn create_checked(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        if h.custom.as_ref().is_some_and(|c| c.terminating) {
            // Upstream's CRD handler refuses the create verb of a terminating CRD.
            let mut s = Status::method_not_supported(&h.info.group, &h.info.plural, "create");
            s.message = "create not allowed while custom resource definition is terminating".into();
            return Err(s.into());
        }
        // A name made from `generateName` may collide (five random characters: ~0.35% of
        // 100,000 creates of one base); upstream (RetryGenerateName, GA) then tries again
        // with a fresh name, up to 8 attempts in all, before answering 409.
        let generated =
            meta_str(&obj, "name").is_empty() && !meta_str(&obj, "generateName").is_empty();
        let mut attempt = 1;
        loop {
            let mut candidate = if generated && attempt < MAX_NAME_GENERATION_ATTEMPTS {
                obj.clone()
            } else {
                std::mem::take(&mut obj)
            };
            let name = self
                .before_create(h, namespace, &mut candidate, opts)
                .await?;
            match self
                .store_new(h, namespace, &name, candidate, opts.dry_run)
                .await
            {
                Ok(mut out) => {
                    codec::to_served(h, &mut out).await?;
                    return Ok(out);
                }
                Err(e)
                    if generated
                        && e.is_already_exists()
                        && attempt < MAX_NAME_GENERATION_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Update through a mutation function (PUT, `/status`, patches, apply, `/scale`,
    /// `/finalize`): `mutate` gets the current object (or `None`) and returns the new one; it
    /// runs again when another writer wins the race. `mutate` decides whether a missing object
    /// may be created (returns it) or not (returns the 404). Returns the object as stored and
    /// whether it was created.
    pub async fn update<F>(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        mut mutate: F,
        opts: &WriteOptions,
    ) -> ApiResult<(Value, bool)>
    where
        F: FnMut(Option<&Value>) -> ApiResult<Value> + Send,
    {
        let change = Change::Update {
            mutate: &mut mutate,
            opts,
        };
        let (mut out, created) = match self.guaranteed_update(h, namespace, name, change).await? {
            Done::Created(o) => (o, true),
            Done::Unchanged(o) | Done::Updated(o) | Done::Removed(o) => (o, false),
        };
        codec::to_served(h, &mut out).await?;
        Ok((out, created))
    }

    /// THE guaranteed-update loop (upstream `GuaranteedUpdate`): every update and every write
    /// a delete makes goes through here.
    pub(super) async fn guaranteed_update(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        mut change: Change<'_, '_>,
    ) -> ApiResult<Done> {
        let key = h.key(namespace, name);
        let dry_run = match &change {
            Change::Update { opts, .. } => opts.dry_run,
            Change::Delete { opts } => opts.dry_run,
            Change::Assign { dry_run, .. } => *dry_run,
        };
        for _ in 0..MAX_ATTEMPTS {
            let current = self.storage.get(&key).await?;
            let plan = match &mut change {
                Change::Update { mutate, opts } => {
                    self.plan_update(h, namespace, name, current.as_ref(), &mut **mutate, opts)
                        .await?
                }
                Change::Assign { mutate, .. } => match current.as_ref() {
                    None => {
                        return Err(Status::not_found(&h.info.group, &h.info.plural, name).into());
                    }
                    Some(kv) => {
                        let mut new = mutate(codec::decode(kv)?)?;
                        meta_mut(&mut new)?.remove("resourceVersion");
                        Plan::Write(new, kv.mod_revision)
                    }
                },
                Change::Delete { opts } => match current.as_ref() {
                    None => {
                        return Err(Status::not_found(&h.info.group, &h.info.plural, name).into());
                    }
                    Some(kv) => match self.plan_delete(h, namespace, name, kv, opts).await? {
                        DeletePlan::Keep(o) => Plan::Unchanged(o),
                        DeletePlan::Write(o) => Plan::Write(o, kv.mod_revision),
                        DeletePlan::Remove(o) => Plan::Remove(o, kv.mod_revision),
                    },
                },
            };
            match plan {
                Plan::Unchanged(o) => return Ok(Done::Unchanged(o)),
                Plan::Create(o) => match self.store_new(h, namespace, name, o, dry_run).await {
                    Ok(o) => return Ok(Done::Created(o)),
                    // Created concurrently: the next attempt updates it.
                    Err(e) if e.is_already_exists() && !dry_run => continue,
                    Err(e) => return Err(e),
                },
                Plan::Write(mut o, rev) => {
                    // What the change takes or frees beyond the object's key (node ports of
                    // a changed service type), after validation as upstream's `BeginUpdate`.
                    let held = match (h.strategy.reservation(), current.as_ref()) {
                        (Some(r), Some(kv)) => {
                            let old = codec::decode(kv)?;
                            Some((
                                r,
                                r.reserve(&*self.storage, &mut o, Some(&old), dry_run)
                                    .await?,
                            ))
                        }
                        _ => None,
                    };
                    let bytes = codec::encode_for_storage(&o)?;
                    if current.as_ref().is_some_and(|kv| kv.value == bytes) {
                        // Nothing changed: no write, the resourceVersion stays.
                        codec::set_rv(&mut o, rev);
                        return Ok(Done::Unchanged(o));
                    }
                    if dry_run {
                        // Nothing is written: the answer keeps the current resourceVersion, as
                        // upstream's dry-run storage does (`kubectl diff` shows no change).
                        codec::set_rv(&mut o, rev);
                        return Ok(Done::Updated(o));
                    }
                    let result = self.storage.update(&key, bytes, rev).await;
                    if let Some((r, held)) = held {
                        match &result {
                            Ok(_) => r.commit(&*self.storage, &o, held).await,
                            Err(_) => r.revert(&*self.storage, &o, held).await,
                        }
                    }
                    match result {
                        Ok(kv) => {
                            codec::set_rv(&mut o, kv.mod_revision);
                            return Ok(Done::Updated(o));
                        }
                        Err(e) => {
                            let e = ApiError::from_storage(e, &h.info.group, &h.info.plural, name);
                            if e.is_conflict() || e.is_not_found() {
                                continue;
                            }
                            return Err(e);
                        }
                    }
                }
                Plan::Remove(mut o, rev) => {
                    codec::set_rv(&mut o, rev);
                    if dry_run {
                        return Ok(Done::Removed(o));
                    }
                    match self.storage.delete(&key, Some(rev)).await {
                        Ok(_) => {
                            self.release_reservation(h, &o).await;
                            return Ok(Done::Removed(o));
                        }
                        Err(e) => {
                            let e = ApiError::from_storage(e, &h.info.group, &h.info.plural, name);
                            if e.is_conflict() || e.is_not_found() {
                                continue;
                            }
                            return Err(e);
                        }
                    }
                }
            }
        }
        Err(conflict(h, name))
    }

    /// One attempt of an update: the mutation, the precondition, the stages.
    async fn plan_update(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        current: Option<&KeyValue>,
        mutate: &mut Mutation<'_>,
        opts: &WriteOptions,
    ) -> ApiResult<Plan> {
        let old = match current {
            Some(kv) => Some(codec::decode(kv)?),
            None => None,
        };
        let served_old = match &old {
            Some(o) if h.storage_api_version.is_some() => {
                let mut s = o.clone();
                codec::to_served(h, &mut s).await?;
                Some(s)
            }
            other => other.clone(),
        };
        let heavy = opts.body_bytes.max(current.map_or(0, |kv| kv.value.len())) > HEAVY_BYTES;
        let mut new = run_mutation(mutate, served_old.as_ref(), heavy)?;
        type_check(h, &mut new).map_err(|e| decode_error(h, &e))?;
        let (Some(old), Some(current)) = (old, current) else {
            // The object does not exist and the mutation created it (PUT of a resource that
            // allows create-on-update, apply): a create, with every create stage.
            if let Ok(m) = meta_mut(&mut new) {
                m.remove("resourceVersion");
            }
            let new_name = self.before_create(h, namespace, &mut new, opts).await?;
            if new_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({new_name}) does not match the name on the URL ({name})"
                )));
            }
            return Ok(Plan::Create(new));
        };
        let requested_rv = meta_str(&new, "resourceVersion");
        if !requested_rv.is_empty() && requested_rv != current.mod_revision.to_string() {
            return Err(conflict(h, name));
        }
        codec::to_storage(h, &mut new).await?;
        self.before_update(h, namespace, name, &mut new, &old, opts)
            .await?;
        if deletion::should_delete_during_update(h, &new, &old) {
            return Ok(Plan::Remove(new, current.mod_revision));
        }
        Ok(Plan::Write(new, current.mod_revision))
    }

    /// `BeforeCreate` and admission: every stage of a create up to storage. Returns the name
    /// (which `generateName` may have made).
    pub(super) async fn before_create(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        obj: &mut Value,
        opts: &WriteOptions,
    ) -> ApiResult<String> {
        codec::to_storage(h, obj).await?;
        // System metadata.
        set_create_metadata(h, obj)?;
        if h.has_status()
            && let Some(map) = obj.as_object_mut()
        {
            // The status of a new object is the server's to set (strategies may seed it).
            map.remove("status");
        }
        // Defaulting (upstream defaults at decode time, before the strategy and admission).
        ferrokube_machinery::defaults::apply_own(obj);
        let name = meta_str(obj, "name").to_string();
        // Mutating admission.
        let attrs = Self::attributes(h, Operation::Create, namespace, &name, opts, None);
        self.admission.admit(&attrs, obj).await?;
        // Strategy prepare.
        h.strategy.prepare_for_create(obj);
        // managedFields.
        managed::record(h, None, obj, opts);
        // Validation.
        let mut errs = Self::validate_meta(h, obj);
        errs.extend(h.strategy.validate(obj));
        if !errs.is_empty() {
            return Err(ApiError::invalid(&h.info.group, &h.info.kind, &name, &errs));
        }
        // Validating admission.
        self.admission.validate(&attrs, obj).await?;
        Ok(name)
    }

    /// `BeforeUpdate` and admission: every stage of an update up to storage.
    async fn before_update(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        new: &mut Value,
        old: &Value,
        opts: &WriteOptions,
    ) -> ApiResult<()> {
        let target = opts.subresource;
        // System metadata and the spec/status split.
        split_subresource(h, new, old, target)?;
        // Defaulting.
        ferrokube_machinery::defaults::apply_own(new);
        // Mutating admission.
        let attrs = Self::attributes(h, Operation::Update, namespace, name, opts, Some(old));
        self.admission.admit(&attrs, new).await?;
        // Strategy prepare, then what the client may never change.
        if matches!(target, UpdateTarget::Main | UpdateTarget::Scale) {
            h.strategy.prepare_for_update(new, old);
        }
        keep_system_metadata(h, new, old)?;
        // managedFields.
        managed::record(h, Some(old), new, opts);
        // Validation.
        let mut errs = Self::validate_meta(h, new);
        errs.extend(match target {
            UpdateTarget::Status | UpdateTarget::Approval => {
                h.strategy.validate_status_update(new, old)
            }
            _ => h.strategy.validate_update(new, old),
        });
        errs.extend(deletion::finalizer_update_errors(new, old));
        if !errs.is_empty() {
            return Err(ApiError::invalid(&h.info.group, &h.info.kind, name, &errs));
        }
        // Validating admission.
        self.admission.validate(&attrs, new).await
    }

    /// Stores a new object (after [`Self::before_create`]): reservation, then storage. The
    /// object comes back in the stored form with its resourceVersion.
    pub(super) async fn store_new(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let key = h.key(namespace, name);
        if dry_run && self.storage.get(&key).await?.is_some() {
            return Err(Status::already_exists(&h.info.group, &h.info.plural, name).into());
        }
        let reservation = h.strategy.reservation();
        let held = match reservation {
            Some(r) => Some(r.reserve(&*self.storage, &mut obj, None, dry_run).await?),
            None => None,
        };
        let bytes = codec::encode_for_storage(&obj)?;
        if dry_run {
            return Ok(obj);
        }
        let result = self.storage.create(&key, bytes).await;
        if let (Some(r), Some(held)) = (reservation, held) {
            match &result {
                Ok(_) => r.commit(&*self.storage, &obj, held).await,
                Err(_) => r.revert(&*self.storage, &obj, held).await,
            }
        }
        match result {
            Ok(kv) => {
                codec::set_rv(&mut obj, kv.mod_revision);
                Ok(obj)
            }
            Err(e) => Err(ApiError::from_storage(
                e,
                &h.info.group,
                &h.info.plural,
                name,
            )),
        }
    }

    /// Validating admission of a delete (upstream calls it before the object is removed or
    /// marked for deletion).
    pub(super) async fn admit_delete(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        old: &Value,
        opts: &DeleteOptions,
    ) -> ApiResult<()> {
        let attrs = Attributes {
            operation: Operation::Delete,
            handle: h,
            subresource: "",
            namespace,
            name,
            user: &opts.user,
            dry_run: opts.dry_run,
            old: Some(old),
            warnings: &opts.warnings,
            reinvocation: Default::default(),
        };
        self.admission.validate(&attrs, old).await
    }
}

/// Runs a mutation, off the async worker when the objects involved are large.
fn run_mutation(
    mutate: &mut Mutation<'_>,
    current: Option<&Value>,
    heavy: bool,
) -> ApiResult<Value> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi_thread =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if heavy && multi_thread {
        tokio::task::block_in_place(|| mutate(current))
    } else {
        mutate(current)
    }
}

/// Creates tried with generated names before a collision is answered with 409 (upstream's
/// `maxNameGenerationCreateAttempts`).
const MAX_NAME_GENERATION_ATTEMPTS: usize = 8;

/// `generateName` + five random characters from upstream's alphabet. The base keeps at most
/// 58 bytes (upstream `maxGeneratedNameLength`), cut on a character boundary.
pub(crate) fn generate_name(base: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    const MAX_BASE: usize = 58;
    let mut end = base.len().min(MAX_BASE);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}{suffix}", &base[..end])
}

/// System metadata of a new object: uid, creationTimestamp, generateName, generation.
fn set_create_metadata(h: &ResourceHandle, obj: &mut Value) -> ApiResult<()> {
    let m = meta_mut(obj)?;
    if m.get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name = m.get("name").and_then(Value::as_str).unwrap_or("");
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
    if h.strategy.tracks_generation() {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    Ok(())
}

/// The spec/status split of an update: the main resource keeps the stored status, `/status`
/// changes only the status, `/finalize` only what its mutation changed.
fn split_subresource(
    h: &ResourceHandle,
    new: &mut Value,
    old: &Value,
    target: UpdateTarget,
) -> ApiResult<()> {
    let (Some(n), Some(o)) = (new.as_object_mut(), old.as_object()) else {
        return Err(ApiError::bad_request("the object is not a JSON object"));
    };
    if !h.has_status() && target != UpdateTarget::Finalize {
        return Ok(());
    }
    match target {
        UpdateTarget::Main | UpdateTarget::Scale | UpdateTarget::Finalize => {
            match o.get("status") {
                Some(s) => n.insert("status".into(), s.clone()),
                None => n.remove("status"),
            };
        }
        UpdateTarget::Status | UpdateTarget::Approval => {
            // Only the status changes through /status (and a CSR's /approval).
            let status = n.remove("status");
            let mut merged: Map<String, Value> = o.clone();
            match status {
                Some(s) => merged.insert("status".into(), s),
                None => merged.remove("status"),
            };
            *n = merged;
        }
    }
    Ok(())
}

/// What an update never changes (uid, creationTimestamp, deletion fields, generation), and the
/// generation bump when anything but metadata and status changed.
fn keep_system_metadata(h: &ResourceHandle, new: &mut Value, old: &Value) -> ApiResult<()> {
    let old_meta = meta(old).cloned().unwrap_or_default();
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
    // Name changes were rejected by the handler or the mutation.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_name_cuts_on_a_char_boundary() {
        let base = format!("{}é", "a".repeat(57));
        let n = generate_name(&base);
        assert!(n.starts_with(&"a".repeat(57)), "{n}");
        assert_eq!(n.len(), 57 + 5, "{n}");
        let n = generate_name(&"b".repeat(70));
        assert_eq!(n.len(), 58 + 5);
        let n = generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9);
    }
}

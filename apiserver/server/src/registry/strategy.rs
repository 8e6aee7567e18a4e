//! Per-resource strategies: the only place resource-specific behaviour lives (DESIGN §2).
//! The generic store calls the hooks in a fixed order, like upstream's `rest.BeforeCreate` /
//! `rest.BeforeUpdate`: `prepare_for_create|update` (may mutate) → `validate|validate_update`
//! (read only) → storage.

use ferrokube_machinery::validation::{
    FieldError, NameRule, validate_builtin, validate_builtin_update,
};
use ferrokube_storage::Storage;
use serde_json::Value;

use crate::error::ApiResult;

/// Field values a field selector can match, for one object.
pub type FieldSet<'a> = Vec<(&'a str, String)>;

/// What deleting an owner does to its dependents when DeleteOptions do not say
/// (upstream `rest.GarbageCollectionPolicy`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GcPolicy {
    /// Background: the owner goes now, the garbage collector deletes the dependents.
    DeleteDependents,
    /// The `orphan` finalizer is added: dependents lose their ownerReference.
    OrphanDependents,
    /// The resource takes no part in garbage collection.
    Unsupported,
}

/// Resource-specific hooks. Every method has the generic default; a strategy overrides what its
/// resource does differently.
pub trait Strategy: Send + Sync {
    /// How `metadata.name` is validated.
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1123Subdomain
    }

    /// Whether `metadata.generation` is maintained (set to 1 on create, bumped when anything
    /// but metadata and status changes).
    fn tracks_generation(&self) -> bool {
        true
    }

    /// Whether PUT of a missing object creates it.
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Defaulting and server-set fields on create (after system metadata is set).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Server-set fields on update; `old` is the stored object.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Validation on create (metadata is validated generically before this): upstream's
    /// per-kind rules for built-in kinds (machinery `validate_builtin`), nothing for others.
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_builtin(obj)
    }

    /// Validation on update of the main resource: the create rules plus upstream's
    /// immutability rules (`validate_builtin_update`).
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_builtin_update(new, old)
    }

    /// Validation on update through `/status`. Upstream's status strategies validate only
    /// metadata and status fields, never the (unchanged) spec, so controllers are not blocked
    /// by spec rules; ferrokube checks no status fields yet.
    fn validate_status_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Removes the fields the resource's schema does not know and returns their paths
    /// (`spec.foo`) for field validation. Built-ins are pruned by the handlers' typed-schema
    /// walk; custom resources by their CRD version's schema.
    fn prune(&self, _obj: &mut Value) -> Vec<String> {
        Vec::new()
    }

    /// Field-selector attributes beyond `metadata.name` / `metadata.namespace`.
    fn field_set(&self, _obj: &Value) -> FieldSet<'_> {
        Vec::new()
    }

    /// Whether DELETE answers with the deleted object instead of a Success Status.
    fn return_deleted_object(&self) -> bool {
        false
    }

    /// What a new object reserves beyond its own key (services: a cluster IP), taken by the
    /// generic store after validation and released when the object is deleted.
    fn reservation(&self) -> Option<&dyn Reservation> {
        None
    }

    /// Whether field selectors may name `label` (beyond the metadata fields).
    fn has_field_label(&self, _label: &str) -> bool {
        false
    }

    /// `DefaultGarbageCollectionPolicy`: the propagation used when DeleteOptions set none.
    fn default_gc_policy(&self) -> GcPolicy {
        GcPolicy::DeleteDependents
    }

    /// `CheckGracefulDelete`: the grace period (seconds) a delete of `obj` gets, given the one
    /// requested; `None` for resources deleted without grace.
    fn graceful_delete_period(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Why `name` may never be deleted (a 403 message), if so.
    fn forbid_delete(&self, _name: &str) -> Option<&'static str> {
        None
    }

    /// Changes made when a delete starts (e.g. a namespace's phase becomes Terminating).
    fn begin_delete(&self, _obj: &mut Value) {}

    /// Whether resource-specific finalizers (e.g. a namespace's `spec.finalizers`) still hold
    /// the object once it is being deleted.
    fn delete_held(&self, _obj: &Value) -> bool {
        false
    }
}

/// Something an object holds outside its own key (upstream's service REST storage allocating
/// cluster IPs and node ports): reserved before the object is written, released after it is
/// deleted. Unlike the other hooks it does IO, through the same `Storage` as the generic store
/// that calls it. A write is a small transaction (upstream `metaTransaction`): what
/// [`Reservation::reserve`] took is given back by [`Reservation::revert`] when the object
/// cannot be stored, and what it frees is freed by [`Reservation::commit`] once it is.
#[async_trait::async_trait]
pub trait Reservation: Send + Sync {
    /// Reserves for a new (`old: None`) or updated object and records the result in it.
    /// Writes nothing on `dry_run` (but refuses what a real write would refuse).
    async fn reserve(
        &self,
        storage: &dyn Storage,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult<Held>;

    /// The object was stored: frees what the write gave up.
    async fn commit(&self, storage: &dyn Storage, obj: &Value, held: Held);

    /// The object was not stored: gives back what the write took.
    async fn revert(&self, storage: &dyn Storage, obj: &Value, held: Held);

    /// Releases what a deleted `obj` held (best effort: failures are logged).
    async fn release(&self, storage: &dyn Storage, obj: &Value);
}

/// What one write reserved and what it gives up, as tokens the [`Reservation`] understands.
#[derive(Debug, Default)]
pub struct Held {
    /// Taken by this write (given back if the write fails).
    pub taken: Vec<String>,
    /// Held before and no longer needed (freed once the write succeeds).
    pub freed: Vec<String>,
}

impl Held {
    /// Whether the write neither took nor freed anything.
    pub fn is_empty(&self) -> bool {
        self.taken.is_empty() && self.freed.is_empty()
    }
}

/// The strategy of resources with no special behaviour.
pub struct DefaultStrategy {
    /// See [`Strategy::tracks_generation`].
    pub generation: bool,
    /// See [`Strategy::allow_create_on_update`].
    pub create_on_update: bool,
}

impl Strategy for DefaultStrategy {
    fn tracks_generation(&self) -> bool {
        self.generation
    }
    fn allow_create_on_update(&self) -> bool {
        self.create_on_update
    }
}

/// Reads a string at a dotted path (`spec.nodeName`), empty when absent.
pub fn str_at(obj: &Value, path: &[&str]) -> String {
    let mut cur = obj;
    for p in path {
        match cur.get(p) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Sets `obj[path] = value` when absent, creating intermediate objects.
pub fn default_at(obj: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    if let Some(map) = cur.as_object_mut() {
        map.entry(last.to_string()).or_insert(value);
    }
}

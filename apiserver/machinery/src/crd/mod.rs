//! Custom resource schemas: the engine the CRD strategy calls (upstream
//! `k8s.io/apiextensions-apiserver/pkg/apiserver/schema`, `.../validation`, `.../schema/cel`).
//!
//! One [`CompiledSchema`] per CRD version is built once from `openAPIV3Schema` (structural checks,
//! regexes and CEL rules compiled, CEL cost estimated) and then shared (`Arc`) by every request:
//! [`CompiledSchema::prune`] drops unknown fields, [`CompiledSchema::apply_defaults`] fills
//! `default:` values and [`CompiledSchema::validate`] runs OpenAPI value validation plus
//! `x-kubernetes-validations` rules, ratcheting against the old object on update.
//!
//! No IO, no server types: errors are [`FieldError`]s the server maps into a 422 `Status`.
//!
//! How the CRD strategy uses it (upstream `customresource/strategy.go` order):
//! - CRD create/update: [`CompiledSchema::compile`] each version's `openAPIV3Schema` with path
//!   `spec.versions[i].schema.openAPIV3Schema` (errors go into the CRD's 422), and
//!   [`CompiledSchema::check_scale_paths`] with `spec.versions[i].subresources.scale`; keep the
//!   result in an `Arc` per served version.
//! - CR create/update: [`CompiledSchema::prune`] (its paths are the `unknown field "..."`
//!   warnings or the Strict 400), then [`CompiledSchema::apply_defaults`], then
//!   [`CompiledSchema::validate`] with `None` (create) or `Some(old)` (update, ratcheting and
//!   transition rules).
//! - CR read (from storage): [`CompiledSchema::apply_defaults`].
//!
//! Where to start reading: [`schema`] (the compiled tree), then [`validate`].

mod checks;
mod defaults;
mod formats;
mod listtype;
mod prune;
mod rules;
pub mod schema;
mod structural;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cel;
#[cfg(test)]
mod tests_large;
#[cfg(test)]
mod tests_structural;

use serde_json::Value;

pub use crate::validation::FieldError;
pub use schema::{ListType, MapType, SchemaNode, SchemaType};

/// Bounds on what a CRD schema may be (hostile-input rules; upstream has none for depth, so
/// these are far above any real CRD: cert-manager and Prometheus stay under 20 levels).
pub mod limits {
    /// Deepest nesting of schema nodes accepted in `openAPIV3Schema`.
    pub const MAX_SCHEMA_DEPTH: usize = 64;
    /// Most schema nodes in one version's schema (the Prometheus CRDs have about 20,000).
    pub const MAX_SCHEMA_NODES: usize = 200_000;
    /// Longest `pattern` accepted (bytes), and the compiled program's size limit.
    pub const MAX_PATTERN_LEN: usize = 4096;
    /// `regex` size limit for one compiled pattern.
    pub const MAX_REGEX_SIZE: usize = 1 << 20;
    /// Upstream `PerCallLimit`: the runtime cost budget of one rule evaluation.
    pub const PER_CALL_COST_LIMIT: u64 = 1_000_000;
    /// Upstream `StaticEstimatedCostLimit`: the estimated cost one rule may have.
    pub const STATIC_ESTIMATED_COST_LIMIT: u64 = 10_000_000;
    /// Upstream `StaticEstimatedCRDCostLimit`: the estimated cost of all rules of a CRD version.
    pub const STATIC_ESTIMATED_CRD_COST_LIMIT: u64 = 100_000_000;
    /// Upstream `RuntimeCELCostBudget`: the runtime budget of all rules for one object.
    pub const RUNTIME_CEL_COST_BUDGET: u64 = 10_000_000;
    /// Upstream `MaxRequestSizeBytes` (3 MiB), used to bound unbounded lists/strings in estimates.
    pub const MAX_REQUEST_SIZE_BYTES: u64 = 3 * 1024 * 1024;
}

/// The `scale` subresource paths of a CRD version (`.spec.replicas` style JSON paths).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScalePaths {
    /// `specReplicasPath`, e.g. `.spec.replicas`.
    pub spec_replicas_path: String,
    /// `statusReplicasPath`, e.g. `.status.replicas`.
    pub status_replicas_path: String,
    /// `labelSelectorPath`, e.g. `.status.selector`.
    pub label_selector_path: Option<String>,
}

/// One CRD version's schema, compiled once and shared by every request (`Send + Sync`).
#[derive(Debug)]
pub struct CompiledSchema {
    root: SchemaNode,
    estimated_cost: u64,
}

impl CompiledSchema {
    /// Structural-schema checks, regexes and CEL rules compiled with cost estimation.
    ///
    /// `path` is the field path of the schema in the CRD, e.g.
    /// `spec.versions[0].schema.openAPIV3Schema`; errors carry paths below it with upstream's
    /// messages.
    pub fn compile(schema: &Value, path: &str) -> Result<Self, Vec<FieldError>> {
        let (root, estimated_cost) = structural::check_and_build(schema, path)?;
        // The schema as given is not kept: OpenAPI publishing reads the CRD's own (shared)
        // copy, and 200 CRDs' schemas held twice cost tens of MiB.
        Ok(CompiledSchema {
            root,
            estimated_cost,
        })
    }

    /// The compiled root node (list types and map keys for SSA, printer-column types).
    pub fn root(&self) -> &SchemaNode {
        &self.root
    }

    /// The summed estimated CEL cost of all rules of this version.
    pub fn estimated_cost(&self) -> u64 {
        self.estimated_cost
    }

    /// Removes fields the schema does not know (upstream `structuralpruning.PruneWithOptions`
    /// with `ReturnPruned`), keeping `apiVersion`, `kind` and `metadata` at the root and in
    /// embedded resources. Returns the removed fields' paths (`spec.foo`, `spec.items[0].bar`)
    /// for `fieldValidation=Warn|Strict`, in document order.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        prune::prune(&self.root, obj)
    }

    /// Fills `default:` values (upstream `structuraldefaulting.Default`), on create, update and
    /// read, and drops `null` values of non-nullable fields that have a default.
    pub fn apply_defaults(&self, obj: &mut Value) {
        defaults::apply(&self.root, obj);
    }

    /// OpenAPI value validation plus `x-kubernetes-validations` rules. With `old` (an update),
    /// transition rules run and ratcheting applies: an error on a value equal to the old one
    /// is dropped.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        validate::validate(&self.root, obj, old)
    }

    /// Whether the schema has a `status` property (the status subresource's field).
    pub fn has_status(&self) -> bool {
        self.root.property("status").is_some()
    }

    /// Checks the `scale` subresource paths against this schema as upstream's CRD validation
    /// does (`specReplicasPath` must point to an integer under `.spec`, ...). `fld` is the CRD
    /// field path of the `scale` block.
    pub fn check_scale_paths(&self, scale: &ScalePaths, fld: &str) -> Vec<FieldError> {
        checks::check_scale_paths(&self.root, scale, fld)
    }
}

/// Reads a simple JSON path (`.spec.replicas`, as in `specReplicasPath`) from an object.
pub fn get_json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let rest = path.strip_prefix('.')?;
    let mut cur = obj;
    for seg in rest.split('.') {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

/// Sets a simple JSON path (`.spec.replicas`), creating intermediate objects. Returns false
/// when a non-object value is in the way.
pub fn set_json_path(obj: &mut Value, path: &str, value: Value) -> bool {
    let Some(rest) = path.strip_prefix('.') else {
        return false;
    };
    let segs: Vec<&str> = rest.split('.').collect();
    let mut cur = obj;
    for (i, seg) in segs.iter().enumerate() {
        let Some(map) = cur.as_object_mut() else {
            return false;
        };
        if i + 1 == segs.len() {
            map.insert((*seg).to_string(), value);
            return true;
        }
        cur = map
            .entry((*seg).to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    false
}

/// Whether `s` is a valid value of the OpenAPI string `format` (unknown formats pass), as
/// custom resource validation checks it.
pub fn check_string_format(format: &str, s: &str) -> bool {
    formats::check_format(format, s)
}

// A compiled schema is shared across request tasks.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledSchema>();
    assert_send_sync::<crate::cel::Program>();
};

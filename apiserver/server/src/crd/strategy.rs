//! The strategies of CustomResourceDefinitions themselves and of custom resources.
//!
//! [`CustomResourceStrategy`] is schema-driven, not typed (upstream
//! `apiextensions-apiserver/pkg/registry/customresource/strategy.go`): the generic store's
//! stages handle metadata, the status/spec split of `/status` and the generation bump; this
//! strategy adds what the CRD version declares (selectable fields).
//!
//! [`CrdStrategy`] adds the `customresourcecleanup.apiextensions.k8s.io` finalizer when a
//! CRD's deletion starts (upstream's CRD REST `Delete`) and validates the CRD's names and
//! versions (upstream `validation.ValidateCustomResourceDefinition`, the parts serving relies
//! on).

use std::sync::Arc;

use ferrokube_machinery::crd::{CompiledSchema, ScalePaths};
use ferrokube_machinery::customresource::{CLEANUP_FINALIZER, jsonpath};
use ferrokube_machinery::validation::FieldError;
use serde_json::{Value, json};

use super::CustomVersion;
use crate::registry::strategy::{FieldSet, Strategy};

/// The strategy of one served custom resource version.
pub struct CustomResourceStrategy {
    version: Arc<CustomVersion>,
}

impl CustomResourceStrategy {
    pub fn new(version: Arc<CustomVersion>) -> Self {
        CustomResourceStrategy { version }
    }
}

/// A selectable field's value as a field selector compares it (strings, numbers, booleans).
fn field_value(p: &jsonpath::Path, obj: &Value) -> String {
    match p.first(obj) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

impl Strategy for CustomResourceStrategy {
    /// Prune, then default (upstream does both when decoding the request).
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(s) = &self.version.schema {
            s.prune(obj);
            s.apply_defaults(obj);
        }
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        self.prepare_for_create(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        match &self.version.schema {
            Some(s) => s.validate(obj, None),
            None => Vec::new(),
        }
    }

    /// With the old object: transition rules and ratcheting.
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        match &self.version.schema {
            Some(s) => s.validate(new, Some(old)),
            None => Vec::new(),
        }
    }

    /// Upstream's status strategy validates the whole object against the schema too.
    fn validate_status_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        self.validate_update(new, old)
    }

    /// Field validation of a request body: in the served version, so under its own schema.
    fn prune(&self, obj: &mut Value) -> Vec<String> {
        match &self.version.own_schema {
            Some(s) => s.prune(obj),
            None => Vec::new(),
        }
    }

    fn field_set(&self, obj: &Value) -> FieldSet<'_> {
        self.version
            .selectable
            .iter()
            .map(|(label, p)| (label.as_str(), field_value(p, obj)))
            .collect()
    }

    fn has_field_label(&self, label: &str) -> bool {
        self.version.selectable.iter().any(|(l, _)| l == label)
    }
}

/// The strategy of `customresourcedefinitions`.
pub struct CrdStrategy;

impl Strategy for CrdStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_crd(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_crd(new);
        let scope = |o: &Value| o.pointer("/spec/scope").cloned();
        if scope(new) != scope(old) {
            errs.push(FieldError::invalid(
                "spec.scope",
                scope(new).unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        errs
    }

    fn begin_delete(&self, obj: &mut Value) {
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        let fins = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = fins.as_array_mut()
            && !list.iter().any(|f| f.as_str() == Some(CLEANUP_FINALIZER))
        {
            list.push(json!(CLEANUP_FINALIZER));
        }
    }
}

/// The CRD rules serving depends on, with upstream's messages.
fn validate_crd(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
    let group = s("/spec/group");
    let plural = s("/spec/names/plural");
    let name = s("/metadata/name");
    if name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if s("/spec/names/kind").is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    match s("/spec/scope") {
        "Namespaced" | "Cluster" => {}
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!(versions),
            "must have exactly one version marked as storage version",
        ));
        return errs;
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let Some(schema) = v.pointer("/schema/openAPIV3Schema") else {
            continue;
        };
        let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
        match CompiledSchema::compile(schema, &path) {
            Ok(compiled) => {
                if let Some(scale) = v.pointer("/subresources/scale") {
                    let s = |k: &str| scale.get(k).and_then(Value::as_str).unwrap_or("");
                    let paths = ScalePaths {
                        spec_replicas_path: s("specReplicasPath").to_string(),
                        status_replicas_path: s("statusReplicasPath").to_string(),
                        label_selector_path: scale
                            .get("labelSelectorPath")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    };
                    errs.extend(compiled.check_scale_paths(
                        &paths,
                        &format!("spec.versions[{i}].subresources.scale"),
                    ));
                }
            }
            Err(e) => errs.extend(e),
        }
    }
    if !versions
        .iter()
        .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
    {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.clone()),
            "must have at least one version marked as served",
        ));
    }
    errs
}

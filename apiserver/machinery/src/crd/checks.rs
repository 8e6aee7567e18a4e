//! Checks of a built schema node that need its children: list types and map keys
//! (`ValidateCustomResourceDefinitionOpenAPISchema`, `validateMapListKeysMapSet`), defaults
//! validated against their own schema, and the `scale` subresource paths.

use serde_json::{Map, Value};

use super::limits::MAX_SCHEMA_DEPTH;
use super::schema::{ListType, MapType, SchemaNode, SchemaType};
use super::structural::Ctx;
use super::{FieldError, ScalePaths};
use crate::validation::Path;

/// Upstream list-type checks (`ValidateCustomResourceDefinitionOpenAPISchema`,
/// `validateMapListKeysMapSet`).
pub(super) fn list_map_checks(
    node: &SchemaNode,
    m: &Map<String, Value>,
    path: &Path,
    cx: &mut Ctx,
) {
    let keys = &node.list_map_keys;
    if !keys.is_empty() {
        match node.list_type {
            None => cx.errs.push(FieldError::required(
                path.child("x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some(ListType::Map) => {}
            Some(other) => cx.errs.push(FieldError::invalid(
                path.child("x-kubernetes-list-type"),
                if other == ListType::Set {
                    "set"
                } else {
                    "atomic"
                },
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
        }
    }
    let Some(lt) = node.list_type else { return };
    let items = node.items.as_deref();
    let raw_items = m.get("items").and_then(Value::as_object);
    if lt == ListType::Map {
        if keys.is_empty() {
            cx.errs.push(FieldError::required(
                path.child("x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match items {
            None => cx.errs.push(FieldError::required(
                path.child("items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(is) if is.type_ != Some(SchemaType::Object) => cx.errs.push(FieldError::invalid(
                path.child("items").child("type"),
                is.ty().name(),
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
            Some(is) => {
                let mut seen: Vec<&str> = Vec::new();
                for k in keys {
                    match is.properties.get(k) {
                        Some(p) => {
                            if matches!(p.type_, Some(SchemaType::Array | SchemaType::Object)) {
                                cx.errs.push(FieldError::invalid(
                                    path.child("items").child("properties").key(k).child("type"),
                                    "object",
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                            let required = is.validation.required.iter().any(|r| r == k);
                            if !required && p.default.is_none() {
                                cx.errs.push(FieldError::required(
                                    path.child("items").child("properties").key(k).child("default"),
                                    "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                                ));
                            }
                            if p.nullable {
                                cx.errs.push(FieldError::forbidden(
                                    path.child("items").child("properties").key(k).child("nullable"),
                                    "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                                ));
                            }
                        }
                        None => cx.errs.push(FieldError::invalid(
                            path.child("x-kubernetes-list-map-keys"),
                            Value::from(keys.clone()),
                            "entries must all be names of item properties",
                        )),
                    }
                    if seen.contains(&k.as_str()) {
                        cx.errs.push(FieldError::invalid(
                            path.child("x-kubernetes-list-map-keys"),
                            Value::from(keys.clone()),
                            "must not contain duplicate entries",
                        ));
                    }
                    seen.push(k);
                }
            }
        }
    }
    if lt != ListType::Atomic
        && let Some(is) = items
        && is.nullable
    {
        let name = if lt == ListType::Set { "set" } else { "map" };
        cx.errs.push(FieldError::forbidden(
            path.child("items").child("nullable"),
            &format!("cannot be nullable when x-kubernetes-list-type is {name}"),
        ));
    }
    if lt == ListType::Set
        && let (Some(is), Some(raw)) = (items, raw_items)
    {
        match is.type_ {
            Some(SchemaType::Array) if is.list_type.is_some_and(|t| t != ListType::Atomic) => {
                cx.errs.push(FieldError::invalid(
                    path.child("items").child("x-kubernetes-list-type"),
                    raw.get("x-kubernetes-list-type")
                        .cloned()
                        .unwrap_or(Value::Null),
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                ))
            }
            Some(SchemaType::Object) if is.map_type != Some(MapType::Atomic) => {
                cx.errs.push(FieldError::invalid(
                    path.child("items").child("x-kubernetes-map-type"),
                    Value::Null,
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                ))
            }
            _ => {}
        }
    }
}

/// Defaults must validate against their own schema (upstream `validateStructuralDefaults`).
pub(super) fn check_defaults(
    node: &SchemaNode,
    path: &Path,
    errs: &mut Vec<FieldError>,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    if let Some(d) = &node.default {
        let mut pruned = d.clone();
        let unknown = super::prune::prune_at(node, &mut pruned, false);
        let dp = path.child("default");
        for u in unknown {
            errs.push(FieldError::invalid(
                dp.child(&u),
                Value::Null,
                "must not have unknown fields",
            ));
        }
        for e in super::validate::validate_value(node, d, &dp.to_string()) {
            errs.push(e);
        }
    }
    for (k, p) in &node.properties {
        check_defaults(p, &path.child("properties").key(k), errs, depth + 1);
    }
    if let Some(ap) = &node.additional_properties {
        check_defaults(ap, &path.child("additionalProperties"), errs, depth + 1);
    }
    if let Some(is) = &node.items {
        check_defaults(is, &path.child("items"), errs, depth + 1);
    }
}

/// Upstream's `scale` subresource path checks (syntax; the path must lie under `.spec` /
/// `.status`, and where the schema declares it, be an integer / string).
pub(super) fn check_scale_paths(
    root: &SchemaNode,
    scale: &ScalePaths,
    fld: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let base = Path::new(fld);
    let mut one = |p: &str, name: &str, prefixes: &[&str], under: &str, want: SchemaType| {
        let fp = base.child(name);
        if p.is_empty() {
            errs.push(FieldError::required(&fp, ""));
            return;
        }
        if !p.starts_with('.') {
            errs.push(FieldError::invalid(
                &fp,
                p,
                "must be a simple json path starting with .",
            ));
            return;
        }
        if !prefixes.iter().any(|pre| p.starts_with(pre)) {
            errs.push(FieldError::invalid(
                &fp,
                p,
                &format!("should be a json path under {under}"),
            ));
            return;
        }
        let segs: Vec<&str> = p[1..].split('.').collect();
        if let Some(node) = root.lookup(&segs)
            && node.type_.is_some_and(|t| t != want)
            && !node.preserve_unknown_fields
        {
            errs.push(FieldError::invalid(
                &fp,
                p,
                &format!("should point to a field of type {}", want.name()),
            ));
        }
    };
    one(
        &scale.spec_replicas_path,
        "specReplicasPath",
        &[".spec."],
        ".spec",
        SchemaType::Integer,
    );
    one(
        &scale.status_replicas_path,
        "statusReplicasPath",
        &[".status."],
        ".status",
        SchemaType::Integer,
    );
    if let Some(l) = scale
        .label_selector_path
        .as_deref()
        .filter(|l| !l.is_empty())
    {
        one(
            l,
            "labelSelectorPath",
            &[".spec.", ".status."],
            "either .spec or .status",
            SchemaType::String,
        );
    }
    errs
}

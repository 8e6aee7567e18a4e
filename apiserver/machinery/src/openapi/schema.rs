//! Definitions: every schema reachable from the resources, generated once with schemars from
//! k8s-openapi's `JsonSchema` impls, shaped like upstream's `swagger.json` and with the
//! [`facts`](super::facts) merged in.
//!
//! Definitions are kept in the v2 shape (`#/definitions/` refs, `$ref` with sibling
//! `description`); [`to_v3`] rewrites a schema for `#/components/schemas/` the way upstream's v3
//! documents are written (`allOf: [{$ref}]` when a reference carries siblings).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{authentication, autoscaling, core, policy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::{SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use super::facts::Facts;
use crate::resources::ResourceInfo;

/// Where v2 references point.
pub const V2_PREFIX: &str = "#/definitions/";
/// Where v3 references point.
pub const V3_PREFIX: &str = "#/components/schemas/";

/// Definition names used by the generated operations.
pub mod names {
    pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
    pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
    pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
    pub const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
    pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
    pub const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
    pub const API_GROUP: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup";
    pub const API_GROUP_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList";
    pub const API_VERSIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions";
}

/// A schemars generator configured for OpenAPI v2 definitions: `#/definitions/`, no `$schema`,
/// no transforms (k8s-openapi's schemas are already OpenAPI-shaped).
pub fn generator() -> SchemaGenerator {
    SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "/definitions".into();
            s.meta_schema = None;
            s.transforms.clear();
        })
        .into_generator()
}

/// Registers the types every document needs (meta types and the kinds served at subresources)
/// with the generator.
pub fn add_common(generator: &mut SchemaGenerator) {
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::WatchEvent<()>>();
    generator.subschema_for::<meta::ListMeta>();
    generator.subschema_for::<meta::APIResourceList>();
    generator.subschema_for::<meta::APIGroup>();
    generator.subschema_for::<meta::APIGroupList>();
    generator.subschema_for::<meta::APIVersions>();
    generator.subschema_for::<autoscaling::v1::Scale>();
    generator.subschema_for::<policy::v1::Eviction>();
    generator.subschema_for::<core::v1::Binding>();
    generator.subschema_for::<authentication::v1::TokenRequest>();
}

/// Generates a resource's schema into the generator; returns the definition name, or None when
/// the resource has no schema.
pub fn add_resource(generator: &mut SchemaGenerator, resource: &ResourceInfo) -> Option<String> {
    let schema_fn = resource.schema?;
    let value = schema_fn(generator).to_value();
    if let Some(name) = ref_target(&value, V2_PREFIX) {
        return Some(name.to_string());
    }
    generator
        .definitions_mut()
        .insert(resource.schema_name.to_string(), value);
    Some(resource.schema_name.to_string())
}

/// The definition name a `{"$ref": ...}` schema points to.
pub fn ref_target<'a>(value: &'a Value, prefix: &str) -> Option<&'a str> {
    value.get("$ref")?.as_str()?.strip_prefix(prefix)
}

/// The list definition upstream publishes for a kind (`io.k8s.api.core.v1.PodList`);
/// k8s-openapi models lists generically, so it is written here.
pub fn list_definition(resource: &ResourceInfo, item_definition: &str) -> (String, Value) {
    let name = match item_definition.rsplit_once('.') {
        Some((package, _)) => format!("{package}.{}", resource.list_kind),
        None => resource.list_kind.to_string(),
    };
    let schema = json!({
        "description": format!("{} is a list of {} objects.", resource.list_kind, resource.kind),
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string"
            },
            "items": {
                "description": format!("List of {}.", resource.plural),
                "items": { "$ref": format!("{V2_PREFIX}{item_definition}") },
                "type": "array"
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string"
            },
            "metadata": {
                "$ref": format!("{V2_PREFIX}{}", names::LIST_META),
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
            }
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [
            { "group": resource.group, "kind": resource.list_kind, "version": resource.version }
        ]
    });
    (name, schema)
}

/// Shapes one definition like upstream and merges its facts.
pub fn finish_definition(name: &str, schema: &mut Value, facts: &Facts) {
    match name {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            normalize_scalar(schema, Some("int-or-string"));
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => normalize_scalar(schema, None),
        _ => {}
    }
    let Some(def_facts) = facts.definition(name) else {
        return;
    };
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    for (k, v) in &def_facts.extensions {
        obj.insert(k.clone(), v.clone());
    }
    let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, field_facts) in &def_facts.fields {
        if let Some(prop) = props.get_mut(field).and_then(Value::as_object_mut) {
            for (k, v) in &field_facts.extensions {
                prop.insert(k.clone(), v.clone());
            }
        }
    }
}

/// IntOrString and Quantity are published as strings (with `format: int-or-string` for the
/// former), as upstream does.
fn normalize_scalar(schema: &mut Value, format: Option<&str>) {
    let description = schema.get("description").cloned();
    let mut obj = Map::new();
    if let Some(d) = description {
        obj.insert("description".into(), d);
    }
    if let Some(f) = format {
        obj.insert("format".into(), f.into());
    }
    obj.insert("type".into(), "string".into());
    *schema = Value::Object(obj);
}

/// Every definition name referenced (with `prefix`) anywhere inside `value`.
pub fn collect_refs(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                if k == "$ref" {
                    if let Some(name) = v.as_str().and_then(|s| s.strip_prefix(prefix)) {
                        out.insert(name.to_string());
                    }
                } else {
                    collect_refs(v, prefix, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, prefix, out)),
        _ => {}
    }
}

/// The closure of `roots` under references among `definitions` (v2 prefix).
pub fn reachable(
    definitions: &BTreeMap<String, Value>,
    roots: impl IntoIterator<Item = String>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = roots.into_iter().collect();
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(def) = definitions.get(&name) {
            let mut refs = BTreeSet::new();
            collect_refs(def, V2_PREFIX, &mut refs);
            stack.extend(refs.into_iter().filter(|r| !seen.contains(r)));
        }
    }
    seen
}

/// Rewrites a v2 schema for a v3 document: refs to `#/components/schemas/`, and a reference
/// with siblings (`description`, extensions) wrapped in `allOf` as upstream writes it.
pub fn to_v3(value: &Value) -> Value {
    match value {
        Value::Object(obj) => {
            let target = obj.get("$ref").and_then(Value::as_str).map(|r| {
                r.strip_prefix(V2_PREFIX)
                    .map_or_else(|| r.to_string(), |n| format!("{V3_PREFIX}{n}"))
            });
            let mut out = Map::new();
            for (k, v) in obj {
                if k != "$ref" {
                    out.insert(k.clone(), to_v3(v));
                }
            }
            match target {
                Some(t) if out.is_empty() => {
                    out.insert("$ref".into(), t.into());
                }
                Some(t) => {
                    out.insert("allOf".into(), json!([{ "$ref": t }]));
                }
                None => {}
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v3).collect()),
        other => other.clone(),
    }
}

/// Recursively sorts object keys (upstream's documents are written with sorted keys).
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(obj) => {
            let mut entries: Vec<(String, Value)> = obj.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

//! Custom resources as the API server serves them from `CustomResourceDefinition`s: the parsed
//! definition ([`Crd`]), the resource-table entries of its served versions
//! ([`Crd::resource_infos`]), upstream's naming and establishing conditions ([`status`]),
//! `additionalPrinterColumns` tables ([`columns`]) and the JSONPath subset they use
//! ([`jsonpath`]). Pure: no IO.
//!
//! The resource-table entries of a CRD hold shared copies of its names
//! ([`crate::resources::TableStr`]), freed with the last entry that uses them: nothing is
//! leaked, so creating and deleting CRDs with ever-new names cannot grow the process.

pub mod columns;
pub mod jsonpath;
pub mod openapi;
pub mod status;

use std::sync::Arc;

use serde_json::Value;

use crate::resources::{GroupVersion, ResourceInfo, Scope, SubresourceInfo, TableList, TableStr};

/// The finalizer that makes deleting a CRD delete its custom resources first.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The verbs of a custom resource (upstream's CRD handler serves all of them).
pub const VERBS: &[&str] = &[
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];

const SUB_VERBS: &[&str] = &["get", "patch", "update"];

/// The subresources of a custom resource version: `scale` and `status` (served with the
/// resource's own kind), in upstream's order.
fn subresources(status: bool, scale: bool) -> &'static [SubresourceInfo] {
    const SCALE: SubresourceInfo =
        SubresourceInfo::new("scale", "Scale", "autoscaling", "v1", SUB_VERBS);
    const STATUS: SubresourceInfo = SubresourceInfo::parent_kind("status", SUB_VERBS);
    match (status, scale) {
        (true, true) => &[SCALE, STATUS],
        (true, false) => &[STATUS],
        (false, true) => &[SCALE],
        (false, false) => &[],
    }
}

/// `spec.names` / `status.acceptedNames`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

impl Names {
    fn parse(v: Option<&Value>) -> Names {
        let s = |k: &str| {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let list = |k: &str| -> Vec<String> {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        Names {
            plural: s("plural"),
            singular: s("singular"),
            kind: s("kind"),
            list_kind: s("listKind"),
            short_names: list("shortNames"),
            categories: list("categories"),
        }
    }

    /// The names with upstream's defaults (singular = lower-case kind, listKind = kind+List).
    pub fn defaulted(mut self) -> Names {
        if self.singular.is_empty() {
            self.singular = self.kind.to_ascii_lowercase();
        }
        if self.list_kind.is_empty() && !self.kind.is_empty() {
            self.list_kind = format!("{}List", self.kind);
        }
        self
    }

    /// The JSON form (`acceptedNames`), empty fields left out as upstream's omitempty.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("plural".into(), Value::String(self.plural.clone()));
        if !self.singular.is_empty() {
            m.insert("singular".into(), Value::String(self.singular.clone()));
        }
        if !self.short_names.is_empty() {
            m.insert("shortNames".into(), serde_json::json!(self.short_names));
        }
        m.insert("kind".into(), Value::String(self.kind.clone()));
        if !self.list_kind.is_empty() {
            m.insert("listKind".into(), Value::String(self.list_kind.clone()));
        }
        if !self.categories.is_empty() {
            m.insert("categories".into(), serde_json::json!(self.categories));
        }
        Value::Object(m)
    }
}

/// `subresources.scale` of a version.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleSpec {
    /// `.spec.replicas`-style JSON path.
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// A version's `openAPIV3Schema` as compact JSON text. As a `serde_json::Value` a schema of
/// 50 properties takes ~50 KiB (an index map per node), as text ~5 KiB; it is needed as a
/// value only when the version's handles or OpenAPI documents are built.
#[derive(Debug, PartialEq, Eq)]
pub struct SchemaText(Box<str>);

impl SchemaText {
    /// The text of a schema.
    pub fn new(schema: &Value) -> SchemaText {
        // Serializing a `Value` cannot fail (its map keys are strings).
        SchemaText(
            serde_json::to_string(schema)
                .unwrap_or_default()
                .into_boxed_str(),
        )
    }

    /// The schema as a value; `None` only if the text does not parse back, which cannot
    /// happen for a stored schema (accepted values are at most `limits::MAX_DEPTH` deep,
    /// within serde_json's own limit).
    pub fn value(&self) -> Option<Value> {
        serde_json::from_str(&self.0).ok()
    }
}

/// One entry of `spec.versions`.
#[derive(Clone, Debug)]
pub struct CrdVersion {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    /// `schema.openAPIV3Schema`, held once and shared by everything built from this
    /// version (handles, OpenAPI documents); [`Crd::raw`] does not repeat it.
    pub schema: Option<Arc<SchemaText>>,
    pub status: bool,
    pub scale: Option<ScaleSpec>,
    pub columns: Vec<columns::PrinterColumn>,
    /// `selectableFields[].jsonPath`.
    pub selectable_fields: Vec<String>,
    pub deprecated: bool,
    pub deprecation_warning: Option<String>,
}

/// A parsed CustomResourceDefinition (what serving needs).
#[derive(Clone, Debug)]
pub struct Crd {
    /// `metadata.name` (`<plural>.<group>`).
    pub name: String,
    pub uid: String,
    pub creation_timestamp: String,
    pub group: String,
    pub scope: Scope,
    /// `spec.names` with defaults.
    pub names: Names,
    /// `status.acceptedNames`, if any.
    pub accepted: Option<Names>,
    pub versions: Vec<CrdVersion>,
    /// `spec.conversion.strategy: Webhook`.
    pub webhook_conversion: bool,
    /// `Established` is True in the stored status.
    pub established: bool,
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    pub finalizers: Vec<String>,
    /// The stored object without the versions' `schema.openAPIV3Schema` (each is held once,
    /// in [`CrdVersion::schema`]) and without `metadata.managedFields` and
    /// `metadata.annotations` (field sets and `last-applied-configuration` repeat the whole
    /// spec; serving reads neither).
    pub raw: Value,
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The condition of `type` in a CRD's status.
pub fn condition<'a>(crd: &'a Value, type_: &str) -> Option<&'a Value> {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn condition_true(crd: &Value, type_: &str) -> bool {
    condition(crd, type_)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True")
}

impl Crd {
    /// Parses a stored CRD; `None` when it is not usable (no group, names or versions).
    pub fn parse(v: &Value) -> Option<Crd> {
        Crd::parse_owned(v.clone())
    }

    /// [`Crd::parse`] of an owned object: the schemas move out of it, nothing is copied.
    pub fn parse_owned(mut obj: Value) -> Option<Crd> {
        let mut schemas: Vec<Option<Arc<SchemaText>>> = Vec::new();
        if let Some(vs) = obj
            .pointer_mut("/spec/versions")
            .and_then(Value::as_array_mut)
        {
            for ver in vs {
                let schema = ver
                    .get_mut("schema")
                    .and_then(Value::as_object_mut)
                    .and_then(|s| s.remove("openAPIV3Schema"))
                    .map(|s| Arc::new(SchemaText::new(&s)));
                schemas.push(schema);
            }
        }
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            meta.remove("annotations");
        }
        let v = &obj;
        let group = str_at(v, "/spec/group").to_string();
        let names = Names::parse(v.pointer("/spec/names")).defaulted();
        if group.is_empty() || names.plural.is_empty() || names.kind.is_empty() {
            return None;
        }
        let scope = match str_at(v, "/spec/scope") {
            "Cluster" => Scope::Cluster,
            _ => Scope::Namespaced,
        };
        let versions: Vec<CrdVersion> = v
            .pointer("/spec/versions")
            .and_then(Value::as_array)?
            .iter()
            .zip(schemas)
            .filter_map(|(ver, schema)| parse_version(ver, schema))
            .collect();
        if versions.is_empty() {
            return None;
        }
        let accepted = v
            .pointer("/status/acceptedNames")
            .filter(|a| {
                a.get("plural")
                    .and_then(Value::as_str)
                    .is_some_and(|p| !p.is_empty())
            })
            .map(|a| Names::parse(Some(a)));
        let finalizers = v
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let name = str_at(v, "/metadata/name").to_string();
        let uid = str_at(v, "/metadata/uid").to_string();
        let creation_timestamp = str_at(v, "/metadata/creationTimestamp").to_string();
        let webhook_conversion = str_at(v, "/spec/conversion/strategy") == "Webhook";
        let established = condition_true(v, "Established");
        let deleting = v.pointer("/metadata/deletionTimestamp").is_some();
        Some(Crd {
            name,
            uid,
            creation_timestamp,
            group,
            scope,
            names,
            accepted,
            versions,
            webhook_conversion,
            established,
            deleting,
            finalizers,
            raw: obj,
        })
    }

    /// Makes this CRD share the schemas of `old` where they are equal (a status write or a
    /// metadata change parses the CRD again: the schemas then stay one copy in memory).
    pub fn share_schemas(&mut self, old: &Crd) {
        for v in &mut self.versions {
            let Some(o) = old.versions.iter().find(|o| o.name == v.name) else {
                continue;
            };
            if let (Some(new), Some(prev)) = (&v.schema, &o.schema)
                && !Arc::ptr_eq(new, prev)
                && new == prev
            {
                v.schema = Some(prev.clone());
            }
        }
    }

    /// Whether `spec` (schemas included) is the same as `other`'s.
    pub fn same_spec(&self, other: &Crd) -> bool {
        self.raw.get("spec") == other.raw.get("spec")
            && self.versions.len() == other.versions.len()
            && self
                .versions
                .iter()
                .zip(&other.versions)
                .all(|(a, b)| a.schema == b.schema)
    }

    /// The storage version's name.
    pub fn storage_version(&self) -> &str {
        self.versions
            .iter()
            .find(|v| v.storage)
            .or(self.versions.first())
            .map_or("", |v| v.name.as_str())
    }

    /// The `apiVersion` objects are stored as.
    pub fn storage_api_version(&self) -> String {
        format!("{}/{}", self.group, self.storage_version())
    }

    /// The resource-table entries of the served versions, under the accepted names.
    pub fn resource_infos(&self) -> Vec<(ResourceInfo, &CrdVersion)> {
        let names = self.accepted.as_ref().unwrap_or(&self.names);
        // One shared copy of each name for all the versions' entries; they go away with the
        // last entry (no leak per CRD, see the module docs).
        let group = TableStr::shared(&self.group);
        let kind = TableStr::shared(&names.kind);
        let list_kind = TableStr::shared(&names.list_kind);
        let plural = TableStr::shared(&names.plural);
        let singular = TableStr::shared(&names.singular);
        let short_names = TableList::shared(&names.short_names);
        let categories = TableList::shared(&names.categories);
        let storage = GroupVersion {
            group: group.clone(),
            version: TableStr::shared(self.storage_version()),
        };
        self.versions
            .iter()
            .filter(|v| v.served)
            .map(|v| {
                let version = if v.name == *storage.version {
                    storage.version.clone()
                } else {
                    TableStr::shared(&v.name)
                };
                let info = ResourceInfo {
                    group: group.clone(),
                    version,
                    kind: kind.clone(),
                    list_kind: list_kind.clone(),
                    plural: plural.clone(),
                    singular: singular.clone(),
                    scope: self.scope,
                    verbs: VERBS,
                    short_names: short_names.clone(),
                    categories: categories.clone(),
                    subresources: subresources(v.status, v.scale.is_some()),
                    virtual_only: false,
                    schema_name: TableStr::shared(&schema_name(&self.group, &v.name, &names.kind)),
                    schema: None,
                    storage: Some(storage.clone()),
                };
                (info, v)
            })
            .collect()
    }
}

/// Upstream's OpenAPI definition name of a custom kind: the group reversed, then version and
/// kind (`com.example.stable.v1.CronTab` for `stable.example.com`).
pub fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

fn parse_version(v: &Value, schema: Option<Arc<SchemaText>>) -> Option<CrdVersion> {
    let name = v.get("name").and_then(Value::as_str)?.to_string();
    let subs = v.get("subresources");
    let scale = subs.and_then(|s| s.get("scale")).map(|s| ScaleSpec {
        spec_replicas_path: str_at(s, "/specReplicasPath").to_string(),
        status_replicas_path: str_at(s, "/statusReplicasPath").to_string(),
        label_selector_path: s
            .get("labelSelectorPath")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    });
    let cols = v
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(columns::PrinterColumn::parse).collect())
        .unwrap_or_default();
    let selectable_fields = v
        .get("selectableFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Some(CrdVersion {
        name,
        served: v.get("served").and_then(Value::as_bool).unwrap_or(false),
        storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
        schema,
        status: subs.and_then(|s| s.get("status")).is_some(),
        scale,
        columns: cols,
        selectable_fields,
        deprecated: v
            .get("deprecated")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        deprecation_warning: v
            .get("deprecationWarning")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests;

//! Object and list responses as meta.k8s.io Tables (`kubectl get`) and PartialObjectMetadata,
//! from the printers in the machinery crate.

use ferrokube_machinery::customresource::columns;
use ferrokube_machinery::printers;
use serde_json::{Map, Value, json};

use crate::negotiate::IncludeObject;
use crate::registry::ResourceHandle;

/// The `rows[].object` of one object, made from the object itself (nothing cloned); a
/// PartialObjectMetadata is of the Table's meta.k8s.io version, as upstream sets it.
fn row_object(mut obj: Value, include: IncludeObject, meta_version: &str) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(obj),
        IncludeObject::Metadata => Some(partial_metadata_of(
            obj.get_mut("metadata").map(Value::take),
            meta_version,
        )),
    }
}

/// An object reduced to a PartialObjectMetadata of meta.k8s.io `version` (v1 or v1beta1).
pub fn partial_metadata(obj: &Value, version: &str) -> Value {
    partial_metadata_of(obj.get("metadata").cloned(), version)
}

/// A PartialObjectMetadata of meta.k8s.io `version` around `metadata` (`{}` when absent).
fn partial_metadata_of(metadata: Option<Value>, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": metadata.unwrap_or_else(|| json!({})),
    })
}

/// A Table of the given objects; `list_meta` is the ListMeta of the list (or of the object).
/// The objects are consumed: a row's `object` is made of its object's own parts.
pub fn to_table(
    h: &ResourceHandle,
    objects: Vec<Value>,
    list_meta: Value,
    meta_version: &str,
    include: IncludeObject,
    with_columns: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    if let Some(custom) = &h.custom {
        let columns = if with_columns {
            columns::definitions(&custom.columns)
        } else {
            Vec::new()
        };
        let rows: Vec<Value> = objects
            .into_iter()
            .map(|o| {
                let mut row = Map::new();
                row.insert(
                    "cells".into(),
                    Value::Array(columns::cells(&custom.columns, &o, now)),
                );
                if let Some(obj) = row_object(o, include, meta_version) {
                    row.insert("object".into(), obj);
                }
                Value::Object(row)
            })
            .collect();
        return table(meta_version, list_meta, columns, rows);
    }
    let columns: Vec<Value> = if with_columns {
        printers::columns(&h.info.group, &h.info.plural)
            .iter()
            .map(|c| c.to_json())
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|o| {
            let mut row = Map::new();
            row.insert(
                "cells".into(),
                Value::Array(printers::cells(&h.info.group, &h.info.plural, &o, now)),
            );
            if let Some(obj) = row_object(o, include, meta_version) {
                row.insert("object".into(), obj);
            }
            Value::Object(row)
        })
        .collect();
    table(meta_version, list_meta, columns, rows)
}

/// The Table document. Its parts are moved in: `json!` would serialize them into a copy (a
/// 10,000-row table is tens of MB of values).
fn table(meta_version: &str, list_meta: Value, columns: Vec<Value>, rows: Vec<Value>) -> Value {
    let mut t = Map::with_capacity(5);
    t.insert("kind".into(), Value::String("Table".into()));
    t.insert(
        "apiVersion".into(),
        Value::String(format!("meta.k8s.io/{meta_version}")),
    );
    t.insert("metadata".into(), list_meta);
    t.insert("columnDefinitions".into(), Value::Array(columns));
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
}

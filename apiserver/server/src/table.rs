//! Object and list responses as meta.k8s.io Tables (`kubectl get`) and PartialObjectMetadata,
//! from the printers in the machinery crate.

use ferrokube_machinery::customresource::columns;
use ferrokube_machinery::printers;
use serde_json::{Map, Value, json};

use crate::negotiate::IncludeObject;
use crate::registry::ResourceHandle;

/// The `rows[].object` of one object.
fn row_object(obj: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(obj.clone()),
        IncludeObject::Metadata => Some(partial_metadata(obj)),
    }
}

/// An object reduced to meta.k8s.io/v1 PartialObjectMetadata.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A Table of the given objects; `list_meta` is the ListMeta of the list (or of the object).
pub fn to_table(
    h: &ResourceHandle,
    objects: &[Value],
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
            .iter()
            .map(|o| {
                let mut row = Map::new();
                row.insert(
                    "cells".into(),
                    Value::Array(columns::cells(&custom.columns, o, now)),
                );
                if let Some(obj) = row_object(o, include) {
                    row.insert("object".into(), obj);
                }
                Value::Object(row)
            })
            .collect();
        return json!({
            "kind": "Table",
            "apiVersion": format!("meta.k8s.io/{meta_version}"),
            "metadata": list_meta,
            "columnDefinitions": columns,
            "rows": rows,
        });
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
        .iter()
        .map(|o| {
            let mut row = Map::new();
            row.insert(
                "cells".into(),
                Value::Array(printers::cells(&h.info.group, &h.info.plural, o, now)),
            );
            if let Some(obj) = row_object(o, include) {
                row.insert("object".into(), obj);
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{meta_version}"),
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

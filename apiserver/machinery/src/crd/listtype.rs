//! `x-kubernetes-list-type` semantics: uniqueness of `set` and `map` lists (upstream
//! `apiextensions-apiserver/pkg/apiserver/schema/listtype/validation.go`) and correlating old
//! and new items for ratcheting and transition rules (map lists by key, sets by value).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::FieldError;
use super::schema::{ListType, SchemaNode};
use crate::validation::Path;

/// A hashable identity of a scalar JSON value (numbers by value).
fn scalar_key(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => format!("n{i}"),
            None => format!("n{}", n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => format!("s{s}"),
        other => format!("j{other}"),
    }
}

/// The key of a map-list item: its key fields (missing ones as null), in key order.
fn map_key(item: &Value, keys: &[String]) -> Option<String> {
    let m = item.as_object()?;
    let mut out = String::new();
    for k in keys {
        out.push_str(&scalar_key(m.get(k).unwrap_or(&Value::Null)));
        out.push('\u{0}');
    }
    Some(out)
}

fn key_object(item: &Value, keys: &[String]) -> Value {
    let mut m = Map::new();
    if let Some(o) = item.as_object() {
        for k in keys {
            if let Some(v) = o.get(k) {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(m)
}

/// Duplicate items in `set` lists and duplicate keys in `map` lists.
pub(super) fn validate_list_type(
    node: &SchemaNode,
    items: &[Value],
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    match node.list_type() {
        ListType::Atomic => {}
        ListType::Set => {
            let mut seen: HashMap<String, ()> = HashMap::with_capacity(items.len());
            for (i, it) in items.iter().enumerate() {
                let k = if it.is_object() || it.is_array() {
                    format!("j{it}")
                } else {
                    scalar_key(it)
                };
                if seen.insert(k, ()).is_some() {
                    errs.push(FieldError::duplicate(path.index(i), it.clone()));
                }
            }
        }
        ListType::Map => {
            let mut seen: HashMap<String, ()> = HashMap::with_capacity(items.len());
            for (i, it) in items.iter().enumerate() {
                let Some(k) = map_key(it, &node.list_map_keys) else {
                    continue;
                };
                if seen.insert(k, ()).is_some() {
                    errs.push(FieldError::duplicate(
                        path.index(i),
                        key_object(it, &node.list_map_keys),
                    ));
                }
            }
        }
    }
}

/// For each new item, the old item it corresponds to: by key in `map` lists, by value in
/// `set` lists; atomic lists correlate nothing (upstream ratchets them only as a whole).
pub(super) fn correlate<'a>(
    node: &SchemaNode,
    items: &[Value],
    old: Option<&'a Vec<Value>>,
) -> Option<Vec<Option<&'a Value>>> {
    let old = old?;
    match node.list_type() {
        ListType::Atomic => None,
        ListType::Set => {
            let idx: HashMap<String, &Value> = old.iter().map(|o| (format!("{o}"), o)).collect();
            Some(
                items
                    .iter()
                    .map(|i| idx.get(&format!("{i}")).copied())
                    .collect(),
            )
        }
        ListType::Map => {
            let keys = &node.list_map_keys;
            let idx: HashMap<String, &Value> = old
                .iter()
                .filter_map(|o| map_key(o, keys).map(|k| (k, o)))
                .collect();
            Some(
                items
                    .iter()
                    .map(|i| map_key(i, keys).and_then(|k| idx.get(&k).copied()))
                    .collect(),
            )
        }
    }
}

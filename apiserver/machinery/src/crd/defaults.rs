//! Defaulting (upstream `structuraldefaulting.Default` and
//! `PruneNonNullableNullsWithoutDefaults`): a property missing from an object gets its
//! `default`; a `null` in a non-nullable property is replaced by its default, or dropped when
//! it has none. Runs on create, update and read.

use serde_json::Value;

use super::schema::SchemaNode;

const MAX_DEFAULT_DEPTH: usize = 128;

pub(super) fn apply(root: &SchemaNode, obj: &mut Value) {
    walk(root, obj, 0);
}

fn walk(node: &SchemaNode, v: &mut Value, depth: usize) {
    if depth > MAX_DEFAULT_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, ps) in &node.properties {
                match m.get(k) {
                    None => {
                        if let Some(d) = &ps.default {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    Some(Value::Null) if !ps.nullable => match &ps.default {
                        Some(d) => {
                            m.insert(k.clone(), d.clone());
                        }
                        None => {
                            m.remove(k);
                        }
                    },
                    Some(_) => {}
                }
            }
            for (k, cv) in m.iter_mut() {
                if let Some(cs) = node.field(k) {
                    walk(cs, cv, depth + 1);
                }
            }
            if let Some(ap) = &node.additional_properties
                && !ap.nullable
                && let Some(d) = &ap.default
            {
                for cv in m.values_mut() {
                    if cv.is_null() {
                        *cv = d.clone();
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = &node.items {
                for it in items.iter_mut() {
                    if it.is_null()
                        && !is.nullable
                        && let Some(d) = &is.default
                    {
                        *it = d.clone();
                    }
                    walk(is, it, depth + 1);
                }
            }
        }
        _ => {}
    }
}

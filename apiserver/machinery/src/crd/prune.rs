//! Pruning of unknown fields (upstream `structuralpruning.PruneWithOptions` with
//! `ReturnPruned`): fields not declared in the schema are removed, except below
//! `x-kubernetes-preserve-unknown-fields`, and `apiVersion`, `kind` and `metadata` at the root
//! and in embedded resources. `metadata` there is pruned to `ObjectMeta`'s fields.

use serde_json::{Map, Value};

use super::schema::SchemaNode;

/// The fields of `ObjectMeta` (unknown ones are pruned and reported like upstream's decoder).
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const MAX_PRUNE_DEPTH: usize = 128;

pub(super) fn prune(root: &SchemaNode, obj: &mut Value) -> Vec<String> {
    prune_at(root, obj, true)
}

/// Prunes `v` against `node`; `resource_root` keeps `apiVersion`/`kind`/`metadata`.
pub(super) fn prune_at(node: &SchemaNode, v: &mut Value, resource_root: bool) -> Vec<String> {
    let mut out = Vec::new();
    walk(node, v, "", resource_root, &mut out, 0);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_meta(meta: &mut Value, path: &str, out: &mut Vec<String>) {
    if let Value::Object(m) = meta {
        m.retain(|k, _| {
            let keep = OBJECT_META_FIELDS.contains(&k.as_str());
            if !keep {
                out.push(join(&join(path, "metadata"), k));
            }
            keep
        });
    }
}

fn walk(
    node: &SchemaNode,
    v: &mut Value,
    path: &str,
    resource: bool,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_PRUNE_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            let resource = resource || node.embedded_resource;
            let keep_unknown = node.preserve_unknown_fields
                || node.allows_additional && node.additional_properties.is_none();
            let mut removed: Vec<String> = Vec::new();
            for (k, cv) in m.iter_mut() {
                if resource && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    if k == "metadata" {
                        prune_meta(cv, path, out);
                    }
                    continue;
                }
                match node.field(k) {
                    Some(cs) => walk(cs, cv, &join(path, k), false, out, depth + 1),
                    None if keep_unknown => {}
                    None => removed.push(k.clone()),
                }
            }
            if !removed.is_empty() {
                let mut kept = Map::with_capacity(m.len() - removed.len());
                for (k, cv) in std::mem::take(m) {
                    if removed.contains(&k) {
                        out.push(join(path, &k));
                    } else {
                        kept.insert(k, cv);
                    }
                }
                *m = kept;
            }
        }
        Value::Array(items) => {
            if let Some(is) = &node.items {
                for (i, it) in items.iter_mut().enumerate() {
                    walk(is, it, &format!("{path}[{i}]"), false, out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

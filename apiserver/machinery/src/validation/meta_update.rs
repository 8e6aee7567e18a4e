//! `ValidateObjectMetaUpdate`: what an update may not change in `metadata`.

use serde_json::Value;

use super::field::{FieldError, Path};
use super::meta::{validate_annotations, validate_labels, validate_owner_references};

/// Upstream `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE_ERROR_MSG: &str = "field is immutable";

/// Upstream `ValidateImmutableField`: `Invalid value: <new>: field is immutable` when changed.
pub fn validate_immutable_field(
    new: Option<&Value>,
    old: Option<&Value>,
    path: &Path,
) -> Vec<FieldError> {
    let norm = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
    let (n, o) = (norm(new), norm(old));
    if n == o {
        return Vec::new();
    }
    vec![FieldError::invalid(
        path.clone(),
        n.unwrap_or(Value::Null),
        FIELD_IMMUTABLE_ERROR_MSG,
    )]
}

/// Treats `""` like an absent field.
fn blank(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| v.as_str() != Some(""))
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Upstream `ValidateObjectMetaUpdate` on the JSON `metadata` of the new and old object, with
/// `path` normally `"metadata"`: no new finalizers once deleting, `resourceVersion` required,
/// `generation` not decremented, `name`, `namespace`, `uid`, `creationTimestamp`,
/// `deletionTimestamp`, `deletionGracePeriodSeconds` immutable, then labels, annotations and
/// ownerReferences as on create.
pub fn validate_object_meta_update(new: &Value, old: &Value, path: &str) -> Vec<FieldError> {
    let p = Path::new(path);
    let mut errs = Vec::new();
    let is_deleting = old.get("deletionTimestamp").is_some_and(|v| !v.is_null());
    if is_deleting {
        let old_f = strings(old.get("finalizers"));
        let mut extra: Vec<&str> = strings(new.get("finalizers"))
            .into_iter()
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            let quoted: Vec<String> = extra.iter().map(|f| super::go_quote(f)).collect();
            errs.push(FieldError::forbidden(
                p.child("finalizers"),
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }
    let rv = new
        .get("resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if rv.is_empty() {
        errs.push(FieldError::invalid(
            p.child("resourceVersion"),
            rv,
            "must be specified for an update",
        ));
    }
    let gen_of = |m: &Value| m.get("generation").and_then(Value::as_i64).unwrap_or(0);
    if gen_of(new) < gen_of(old) {
        errs.push(FieldError::invalid(
            p.child("generation"),
            gen_of(new),
            "must not be decremented",
        ));
    }
    for f in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let (n, o) = (new.get(f), old.get(f));
        // Empty strings and absent fields are the same thing on the wire.
        errs.extend(validate_immutable_field(blank(n), blank(o), &p.child(f)));
    }
    errs.extend(validate_labels(new.get("labels"), &p.child("labels")));
    errs.extend(validate_annotations(
        new.get("annotations"),
        &p.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        new.get("ownerReferences"),
        &p.child("ownerReferences"),
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn unchanged_is_valid() {
        let old = json!({"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "5", "generation": 2});
        assert!(validate_object_meta_update(&old, &old, "metadata").is_empty());
    }

    #[test]
    fn immutable_and_rv() {
        let old = json!({"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "5", "generation": 2, "creationTimestamp": "2024-01-01T00:00:00Z"});
        let new = json!({"name": "b", "namespace": "ns", "uid": "u2", "generation": 1});
        assert_eq!(
            msgs(&validate_object_meta_update(&new, &old, "metadata")),
            vec![
                "metadata.resourceVersion: Invalid value: \"\": must be specified for an update",
                "metadata.generation: Invalid value: 1: must not be decremented",
                "metadata.name: Invalid value: \"b\": field is immutable",
                "metadata.uid: Invalid value: \"u2\": field is immutable",
                "metadata.creationTimestamp: Invalid value: null: field is immutable",
            ]
        );
    }

    #[test]
    fn no_new_finalizers_while_deleting() {
        let old = json!({"name": "a", "resourceVersion": "1", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x"]});
        let new = json!({"name": "a", "resourceVersion": "1", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x", "z", "y"]});
        assert_eq!(
            msgs(&validate_object_meta_update(&new, &old, "metadata")),
            vec![
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"y\", \"z\"}"
            ]
        );
    }
}

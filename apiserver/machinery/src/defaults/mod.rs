//! Defaulting of the built-in kinds, as upstream applies it when a request body is decoded
//! (`SetDefaults_*` in `pkg/apis/<group>/<version>/defaults.go`, applied by the generated
//! `zz_generated.defaults.go` to every place a type occurs, e.g. every PodTemplateSpec), plus the
//! zero values upstream's typed structs always serialize (`resources: {}`, `status: {}`).
//!
//! One file per API group; everything works on `serde_json::Value` so the server never needs
//! typed structs. [`apply`] runs on every create and update (the patched object included), like
//! upstream's decode-time defaulting. What the default admission plugins add to a new pod
//! (service account, token volume, priority, tolerations) is done by those plugins in the
//! server's `admission` module.
//!
//! Not done: defaults behind alpha feature gates, quantity canonicalisation
//! (`SetDefaults_ResourceList`).

mod apps;
pub mod batch;
pub mod core;
mod other;

use serde_json::{Map, Value, json};

/// Applies upstream's defaults for `group/version, kind` to `obj` (the whole object).
pub fn apply(group: &str, version: &str, kind: &str, obj: &mut Value) {
    match (group, version) {
        ("", "v1") => core::apply(kind, obj),
        ("apps", "v1") => apps::apply(kind, obj),
        ("batch", "v1") => batch::apply(kind, obj),
        _ => other::apply(group, version, kind, obj),
    }
}

/// [`apply`] for the object's own `apiVersion` and `kind` (objects of a kind served at several
/// versions are defaulted in the version they are in, e.g. the storage version).
pub fn apply_own(obj: &mut Value) {
    let av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (group, version) = av.rsplit_once('/').unwrap_or(("", av.as_str()));
    apply(group, version, &kind, obj);
}

/// Whether a field is unset the way a Go pointer or empty string is (absent, null or `""`).
fn unset(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null)) || v.and_then(Value::as_str) == Some("")
}

/// Sets `obj.key = value` when the field is unset (absent, null or `""`).
pub(crate) fn def(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut()
        && unset(m.get(key))
    {
        m.insert(key.to_string(), value);
    }
}

/// Like [`def`], but a zero number also counts as unset (a non-pointer Go integer).
pub(crate) fn def_nonzero(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        let zero = m.get(key).and_then(Value::as_f64) == Some(0.0);
        if zero || unset(m.get(key)) {
            m.insert(key.to_string(), value);
        }
    }
}

/// The object at `obj.key`, created empty when unset (a Go struct or pointer being defaulted).
pub(crate) fn obj_at<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let m = obj.as_object_mut()?;
    let entry = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if entry.is_null() {
        *entry = json!({});
    }
    entry.is_object().then_some(entry)
}

/// The object at `obj.key` when present (never created).
pub(crate) fn get_mut<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    obj.get_mut(key).filter(|v| v.is_object())
}

/// Each item of the array at `obj.key`.
pub(crate) fn each(obj: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = obj.get_mut(key).and_then(Value::as_array_mut) {
        items.iter_mut().filter(|v| v.is_object()).for_each(&mut f);
    }
}

/// A string field, empty when absent.
pub(crate) fn s<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Sets a zero-valued `status` when the object has none (upstream serializes typed structs, so
/// a new Deployment reads back `status: {}` and a ReplicaSet `status: {replicas: 0}`).
pub(crate) fn zero_status(obj: &mut Value, zero: Value) {
    if let Some(m) = obj.as_object_mut() {
        let st = m
            .entry("status")
            .or_insert_with(|| Value::Object(Map::new()));
        if st.is_null() {
            *st = Value::Object(Map::new());
        }
        if let (Some(st), Value::Object(z)) = (st.as_object_mut(), zero) {
            for (k, v) in z {
                st.entry(k).or_insert(v);
            }
        }
    }
}

#[cfg(test)]
mod tests;

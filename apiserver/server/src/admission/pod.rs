//! Small helpers the pod-related plugins share.

use serde_json::Value;

/// Whether the object is a mirror pod (annotation `kubernetes.io/config.mirror`), which
/// upstream's pod plugins leave alone.
pub fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
}

/// A string field (`""` when absent or not a string).
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The container lists of a pod spec with upstream's display prefix, init containers first
/// where upstream visits them so (`VisitContainers`).
pub const CONTAINER_LISTS: [(&str, &str); 3] = [
    ("initContainers", "init container"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeral container"),
];

/// Mutable access to the regular and init containers of a pod spec.
pub fn containers_mut<'a>(
    spec: &'a mut Value,
    field: &str,
) -> impl Iterator<Item = &'a mut Value> + use<'a> {
    spec.get_mut(field)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

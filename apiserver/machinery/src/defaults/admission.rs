//! What upstream's default admission plugins add to a new Pod, where that is deterministic and
//! needs no other object:
//! - ServiceAccount (`plugin/pkg/admission/serviceaccount`): `serviceAccountName: default`
//!   (and the mirrored deprecated `serviceAccount`). Not done: the `kube-api-access-<random>`
//!   projected volume and its volumeMounts, which need the service account token machinery
//!   (TokenRequest, the `kube-root-ca.crt` ConfigMap) that the node agent would have to serve,
//!   and the check that the service account exists.
//! - Priority (`plugin/pkg/admission/priority`): `priority: 0` and
//!   `preemptionPolicy: PreemptLowerPriority` when no class is named (no global default class
//!   exists here); the two built-in system classes resolve to their values.
//! - DefaultTolerationSeconds (`plugin/pkg/admission/defaulttolerationseconds`): tolerations of
//!   `node.kubernetes.io/not-ready` and `.../unreachable` (NoExecute) for 300 s.
//!
//! Mirror pods (annotation `kubernetes.io/config.mirror`) are left alone, as upstream does.

use serde_json::{Value, json};

use super::{def, obj_at, s};

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Applies the admission defaults to a Pod being created.
pub fn pod_create(obj: &mut Value) {
    let mirror = obj
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some();
    let Some(spec) = obj_at(obj, "spec") else {
        return;
    };
    if !mirror
        && s(spec, "serviceAccountName").is_empty()
        && let Some(m) = spec.as_object_mut()
    {
        m.insert("serviceAccountName".into(), json!("default"));
        m.insert("serviceAccount".into(), json!("default"));
    }
    let priority = match s(spec, "priorityClassName") {
        "" => Some(0),
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    };
    if let Some(p) = priority {
        def(spec, "priority", json!(p));
        def(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
    let tolerations = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerated = |key: &str| {
        tolerations.iter().any(|t| {
            let k = s(t, "key");
            let effect = s(t, "effect");
            let key_ok = k == key || (k.is_empty() && s(t, "operator") == "Exists");
            key_ok && (effect.is_empty() || effect == "NoExecute")
        })
    };
    let mut add = Vec::new();
    for key in [NOT_READY, UNREACHABLE] {
        if !tolerated(key) {
            add.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300
            }));
        }
    }
    if !add.is_empty()
        && let Some(m) = spec.as_object_mut()
    {
        let list = m.entry("tolerations").or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        if let Some(l) = list.as_array_mut() {
            l.extend(add);
        }
    }
}

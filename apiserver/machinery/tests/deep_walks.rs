//! The depth invariant (`limits::MAX_DEPTH`): every value the server accepts is at most 127
//! arrays/objects deep — decoders and patches refuse deeper ones with an error — so the
//! recursive walks over user data (validation, pruning, unknown-field checks, defaults,
//! conversion, printers, managed fields, strategic merge) are bounded by it. This runs each walk
//! over values at the bound, in every position a user controls (annotations are strings; labels
//! maps of strings; `spec.template...` free-form under CRD-like fields; managedFields' FieldsV1),
//! on a 2 MiB stack like a tokio worker's.

use ferrokube_machinery::limits::MAX_DEPTH;
use ferrokube_machinery::managedfields::{self, ApplyRequest, Writer};
use ferrokube_machinery::patch::{merge_patch, strategic_merge_patch};
use ferrokube_machinery::validation::unknown_fields;
use ferrokube_machinery::{conversion, defaults, printers, resources, validation};
use serde_json::{Value, json};

/// `{"a": {"a": ... [1] ...}}` with `levels` containers in all.
fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for i in 0..levels {
        v = if i % 2 == 0 {
            Value::Array(vec![v])
        } else {
            let mut m = serde_json::Map::new();
            m.insert("a".into(), v);
            Value::Object(m)
        };
    }
    v
}

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    let r = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .map(|h| h.join());
    assert!(matches!(r, Ok(Ok(()))), "walk failed or overflowed");
}

#[test]
fn walks_over_max_depth_values_fit_a_small_stack() {
    on_small_stack(|| {
        // Inside a pod, the deepest user-controlled places: an unknown field (pruned), a
        // container's command list, and the pod's own metadata.
        let deep = nested(MAX_DEPTH - 6);
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "i", "unknown": deep.clone()}],
                "extra": deep.clone()},
        });
        let info = resources::find("", "v1", "pods");
        if let Some(info) = info {
            let _ = unknown_fields::unknown_in_value(info, &pod);
            let _ = unknown_fields::check_json(info, pod.to_string().as_bytes());
            let mut pruned = pod.clone();
            unknown_fields::prune(info, &mut pruned);
        }
        let _ = validation::validate_builtin(&pod);
        defaults::apply("", "v1", "Pod", &mut pod);
        let _ = conversion::convert(&mut pod.clone(), "v1");
        let _ = printers::cells("", "pods", &pod, jiff::Timestamp::UNIX_EPOCH);
        let t = managedfields::root_type("", "v1", "Pod");
        let req = ApplyRequest {
            writer: Writer {
                manager: "m",
                api_version: "v1",
                subresource: "",
                now: "2026-01-01T00:00:00Z",
            },
            force: false,
            has_status: true,
            defaulted: None,
        };
        let live = managedfields::apply(None, pod.clone(), &t, &req).unwrap_or(pod.clone());
        let _ = managedfields::apply(Some(&live), pod.clone(), &t, &req);
        let mut other = live.clone();
        managedfields::update(Some(&live), &mut other, &t, &req.writer, true);
        let _ = strategic_merge_patch(
            &pod,
            &json!({"spec": {"extra": deep.clone()}}),
            "io.k8s.api.core.v1.Pod",
        );
        let mut m = pod.clone();
        merge_patch(&mut m, &json!({"spec": {"extra": deep}}));
        // A client-sent managedFields entry nested to the bound.
        let mut fields = json!({});
        for _ in 0..MAX_DEPTH - 4 {
            fields = json!({"f:a": fields});
        }
        let mut with_mf = pod.clone();
        with_mf["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Update",
            "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": fields}]);
        let _ = managedfields::decode(&with_mf);
        managedfields::update(Some(&live), &mut with_mf, &t, &req.writer, true);
    });
}

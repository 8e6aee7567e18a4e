//! `apps/v1` defaults: `pkg/apis/apps/v1/defaults.go`.

use serde_json::{Value, json};

use super::core::{pod_template_spec, pvc};
use super::{def, each, get_mut, obj_at, s, zero_status};

/// Defaults of an apps/v1 kind.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Deployment" => deployment(obj),
        "ReplicaSet" => {
            if let Some(spec) = obj_at(obj, "spec") {
                def(spec, "replicas", json!(1));
                template(spec);
            }
            zero_status(obj, json!({"replicas": 0}));
        }
        "StatefulSet" => statefulset(obj),
        "DaemonSet" => daemonset(obj),
        _ => {}
    }
}

fn template(spec: &mut Value) {
    if let Some(t) = get_mut(spec, "template") {
        pod_template_spec(t);
    }
}

/// `SetDefaults_Deployment`.
fn deployment(obj: &mut Value) {
    if let Some(spec) = obj_at(obj, "spec") {
        def(spec, "replicas", json!(1));
        if let Some(st) = obj_at(spec, "strategy") {
            def(st, "type", json!("RollingUpdate"));
            if s(st, "type") == "RollingUpdate"
                && let Some(ru) = obj_at(st, "rollingUpdate")
            {
                def(ru, "maxUnavailable", json!("25%"));
                def(ru, "maxSurge", json!("25%"));
            }
        }
        def(spec, "revisionHistoryLimit", json!(10));
        def(spec, "progressDeadlineSeconds", json!(600));
        template(spec);
    }
    zero_status(obj, json!({}));
}

/// `SetDefaults_StatefulSet`, with the MaxUnavailableStatefulSet gate on (beta, on by default
/// since 1.35): a RollingUpdate strategy gets `maxUnavailable: 1`.
fn statefulset(obj: &mut Value) {
    if let Some(spec) = obj_at(obj, "spec") {
        def(spec, "podManagementPolicy", json!("OrderedReady"));
        if let Some(us) = obj_at(spec, "updateStrategy") {
            if s(us, "type").is_empty() {
                def(us, "type", json!("RollingUpdate"));
                obj_at(us, "rollingUpdate");
            }
            if s(us, "type") == "RollingUpdate"
                && let Some(ru) = get_mut(us, "rollingUpdate")
            {
                def(ru, "partition", json!(0));
                def(ru, "maxUnavailable", json!(1));
            }
        }
        if let Some(p) = obj_at(spec, "persistentVolumeClaimRetentionPolicy") {
            def(p, "whenDeleted", json!("Retain"));
            def(p, "whenScaled", json!("Retain"));
        }
        def(spec, "replicas", json!(1));
        def(spec, "revisionHistoryLimit", json!(10));
        template(spec);
        each(spec, "volumeClaimTemplates", pvc);
    }
    zero_status(obj, json!({"replicas": 0, "availableReplicas": 0}));
}

/// `SetDefaults_DaemonSet`.
fn daemonset(obj: &mut Value) {
    if let Some(spec) = obj_at(obj, "spec") {
        if let Some(us) = obj_at(spec, "updateStrategy") {
            def(us, "type", json!("RollingUpdate"));
            if s(us, "type") == "RollingUpdate"
                && let Some(ru) = obj_at(us, "rollingUpdate")
            {
                def(ru, "maxUnavailable", json!(1));
                def(ru, "maxSurge", json!(0));
            }
        }
        def(spec, "revisionHistoryLimit", json!(10));
        template(spec);
    }
    zero_status(
        obj,
        json!({
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0
        }),
    );
}

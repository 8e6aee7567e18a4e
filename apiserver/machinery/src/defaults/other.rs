//! Defaults of the smaller groups: autoscaling (`pkg/apis/autoscaling/v2/defaults.go`),
//! networking, rbac, storage, scheduling, discovery, admissionregistration, policy.

use serde_json::{Value, json};

use super::{def, each, get_mut, obj_at, s, zero_status};

/// Defaults of a kind outside core, apps and batch.
pub fn apply(group: &str, version: &str, kind: &str, obj: &mut Value) {
    match (group, version, kind) {
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => hpa_v2(obj),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            if let Some(spec) = obj_at(obj, "spec") {
                def(spec, "minReplicas", json!(1));
            }
            zero_status(obj, json!({"currentReplicas": 0, "desiredReplicas": 0}));
        }
        ("networking.k8s.io", "v1", "NetworkPolicy") => network_policy(obj),
        ("networking.k8s.io", "v1", "Ingress") => zero_status(obj, json!({"loadBalancer": {}})),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding" | "ClusterRoleBinding") => {
            if let Some(r) = obj_at(obj, "roleRef") {
                def(r, "apiGroup", json!("rbac.authorization.k8s.io"));
            }
            // SetDefaults_Subject; a ServiceAccount's group is "" (omitted when serialized).
            each(obj, "subjects", |sub| {
                if matches!(s(sub, "kind"), "User" | "Group") {
                    def(sub, "apiGroup", json!("rbac.authorization.k8s.io"));
                }
            });
        }
        ("storage.k8s.io", "v1", "StorageClass") => {
            def(obj, "reclaimPolicy", json!("Delete"));
            def(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("storage.k8s.io", "v1", "CSIDriver") => {
            if let Some(spec) = obj_at(obj, "spec") {
                def(spec, "attachRequired", json!(true));
                def(spec, "podInfoOnMount", json!(false));
                def(spec, "storageCapacity", json!(false));
                def(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
                def(spec, "volumeLifecycleModes", json!(["Persistent"]));
                def(spec, "requiresRepublish", json!(false));
                def(spec, "seLinuxMount", json!(false));
            }
        }
        ("scheduling.k8s.io", "v1", "PriorityClass") => {
            def(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("discovery.k8s.io", "v1", "EndpointSlice") => each(obj, "ports", |p| {
            def(p, "name", json!(""));
            def(p, "protocol", json!("TCP"));
        }),
        ("policy", "v1", "PodDisruptionBudget") => zero_status(
            obj,
            json!({
                "disruptionsAllowed": 0,
                "currentHealthy": 0,
                "desiredHealthy": 0,
                "expectedPods": 0
            }),
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
        ) => {
            let mutating = kind == "MutatingWebhookConfiguration";
            each(obj, "webhooks", |w| webhook(w, mutating));
        }
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy") => {
            if let Some(spec) = obj_at(obj, "spec") {
                def(spec, "failurePolicy", json!("Fail"));
                if let Some(m) = get_mut(spec, "matchConstraints") {
                    match_resources(m);
                }
            }
        }
        ("admissionregistration.k8s.io", "v1beta1", "MutatingAdmissionPolicy") => {
            if let Some(spec) = obj_at(obj, "spec") {
                def(spec, "failurePolicy", json!("Fail"));
                if let Some(m) = get_mut(spec, "matchConstraints") {
                    match_resources(m);
                }
            }
        }
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding")
        | ("admissionregistration.k8s.io", "v1beta1", "MutatingAdmissionPolicyBinding") => {
            if let Some(spec) = obj_at(obj, "spec")
                && let Some(m) = get_mut(spec, "matchResources")
            {
                match_resources(m);
            }
        }
        _ => {}
    }
}

/// `SetDefaults_HorizontalPodAutoscaler` (v2), including the behavior defaults
/// (`GenerateHPAScaleUpRules` / `GenerateHPAScaleDownRules`) when `behavior` is given.
fn hpa_v2(obj: &mut Value) {
    if let Some(spec) = obj_at(obj, "spec") {
        def(spec, "minReplicas", json!(1));
        if spec
            .get("metrics")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            spec.as_object_mut().map(|m| {
                m.insert(
                    "metrics".into(),
                    json!([{
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80}
                        }
                    }]),
                )
            });
        }
        if let Some(b) = get_mut(spec, "behavior") {
            if let Some(up) = obj_at(b, "scaleUp") {
                def(up, "stabilizationWindowSeconds", json!(0));
                def(up, "selectPolicy", json!("Max"));
                def(
                    up,
                    "policies",
                    json!([
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                        {"type": "Percent", "value": 100, "periodSeconds": 15}
                    ]),
                );
            }
            if let Some(down) = obj_at(b, "scaleDown") {
                // The stabilization window stays unset: the controller's flag decides it.
                def(down, "selectPolicy", json!("Max"));
                def(
                    down,
                    "policies",
                    json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
                );
            }
        }
    }
    zero_status(obj, json!({"desiredReplicas": 0}));
}

/// `SetDefaults_NetworkPolicy` and `SetDefaults_NetworkPolicyPort`.
fn network_policy(obj: &mut Value) {
    let Some(spec) = obj_at(obj, "spec") else {
        return;
    };
    for dir in ["ingress", "egress"] {
        each(spec, dir, |rule| {
            each(rule, "ports", |p| def(p, "protocol", json!("TCP")));
        });
    }
    let empty = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if empty {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.as_object_mut()
            .map(|m| m.insert("policyTypes".into(), types));
    }
}

/// `SetDefaults_ValidatingWebhook` / `SetDefaults_MutatingWebhook`.
/// `SetDefaults_MatchResources` (+ `SetDefaults_Rule` on its rules).
fn match_resources(m: &mut Value) {
    if !m.is_object() {
        return;
    }
    def(m, "matchPolicy", json!("Equivalent"));
    obj_at(m, "namespaceSelector");
    obj_at(m, "objectSelector");
    each(m, "resourceRules", |r| def(r, "scope", json!("*")));
    each(m, "excludeResourceRules", |r| def(r, "scope", json!("*")));
}

fn webhook(w: &mut Value, mutating: bool) {
    def(w, "failurePolicy", json!("Fail"));
    def(w, "matchPolicy", json!("Equivalent"));
    obj_at(w, "namespaceSelector");
    obj_at(w, "objectSelector");
    def(w, "timeoutSeconds", json!(10));
    if mutating {
        def(w, "reinvocationPolicy", json!("Never"));
    }
    each(w, "rules", |r| def(r, "scope", json!("*")));
    if let Some(cc) = get_mut(w, "clientConfig")
        && let Some(svc) = get_mut(cc, "service")
    {
        def(svc, "port", json!(443));
    }
}

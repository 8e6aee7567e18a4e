//! Which validator a built-in object gets, by the group of its `apiVersion` and its `kind`
//! (the request handlers set both to the served resource's before any hook runs). Objects of
//! other groups (custom resources) get no kind-specific validation here.

use serde_json::Value;

use super::core::{
    validate_config_map, validate_config_map_update, validate_event, validate_node, validate_pvc,
    validate_pvc_update, validate_secret, validate_secret_update, validate_service,
    validate_service_update,
};
use super::field::FieldError;
use super::misc::{
    validate_hpa, validate_ingress, validate_lease, validate_pdb, validate_role,
    validate_role_binding, validate_role_binding_update,
};
use super::pod::{validate_pod, validate_pod_template_spec, validate_pod_update};
use super::workloads::{
    validate_cron_job, validate_daemon_set, validate_daemon_set_update, validate_deployment,
    validate_deployment_update, validate_job, validate_job_update, validate_replica_set,
    validate_replica_set_update, validate_stateful_set, validate_stateful_set_update,
};
use crate::admission_policy::validation as policy;

fn group_kind(obj: &Value) -> (&str, &str) {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = av.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    (group, kind)
}

/// Create-time validation of a built-in kind (object metadata is validated separately).
pub fn validate_builtin(obj: &Value) -> Vec<FieldError> {
    match group_kind(obj) {
        ("", "Pod") => validate_pod(obj),
        ("", "PodTemplate") => validate_pod_template_spec(
            obj.get("template").unwrap_or(&Value::Null),
            &super::Path::new("template"),
        ),
        ("", "Service") => validate_service(obj),
        ("", "ConfigMap") => validate_config_map(obj),
        ("", "Secret") => validate_secret(obj),
        ("", "PersistentVolumeClaim") => validate_pvc(obj),
        ("", "Node") => validate_node(obj),
        ("", "Event") => validate_event(obj),
        ("apps", "Deployment") => validate_deployment(obj),
        ("apps", "ReplicaSet") => validate_replica_set(obj),
        ("apps", "StatefulSet") => validate_stateful_set(obj),
        ("apps", "DaemonSet") => validate_daemon_set(obj),
        ("batch", "Job") => validate_job(obj),
        ("batch", "CronJob") => validate_cron_job(obj),
        ("networking.k8s.io", "Ingress") => validate_ingress(obj),
        ("policy", "PodDisruptionBudget") => validate_pdb(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => validate_hpa(obj),
        ("rbac.authorization.k8s.io", "Role") => validate_role(obj, true),
        ("rbac.authorization.k8s.io", "ClusterRole") => validate_role(obj, false),
        ("rbac.authorization.k8s.io", "RoleBinding") => validate_role_binding(obj, true),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => validate_role_binding(obj, false),
        ("coordination.k8s.io", "Lease") => validate_lease(obj),
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
        ) => policy::validate_webhook_configuration(obj),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            policy::validate_policy(obj)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            policy::validate_binding(obj)
        }
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy") => {
            policy::validate_mutating_policy(obj)
        }
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding") => {
            policy::validate_mutating_binding(obj)
        }
        _ => Vec::new(),
    }
}

/// Update validation of a built-in kind: the create rules on the new object plus upstream's
/// immutability rules against the stored object.
pub fn validate_builtin_update(new: &Value, old: &Value) -> Vec<FieldError> {
    match group_kind(new) {
        ("", "Pod") => validate_pod_update(new, old),
        ("", "Service") => validate_service_update(new, old),
        ("", "ConfigMap") => validate_config_map_update(new, old),
        ("", "Secret") => validate_secret_update(new, old),
        ("", "PersistentVolumeClaim") => validate_pvc_update(new, old),
        ("apps", "Deployment") => validate_deployment_update(new, old),
        ("apps", "ReplicaSet") => validate_replica_set_update(new, old),
        ("apps", "StatefulSet") => validate_stateful_set_update(new, old),
        ("apps", "DaemonSet") => validate_daemon_set_update(new, old),
        ("batch", "Job") => validate_job_update(new, old),
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            validate_role_binding_update(new, old, true)
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            validate_role_binding_update(new, old, false)
        }
        _ => validate_builtin(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dispatch_by_group_and_kind() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}});
        assert_eq!(validate_builtin(&d)[0].field, "spec.selector");
        // A custom resource that happens to be called Deployment is not validated as one.
        let cr = json!({"apiVersion": "example.com/v1", "kind": "Deployment", "spec": {}});
        assert!(validate_builtin(&cr).is_empty());
        let p = json!({"apiVersion": "v1", "kind": "Pod", "spec": {}});
        assert_eq!(validate_builtin(&p)[0].field, "spec.containers");
        let old = json!({"apiVersion": "v1", "kind": "Pod",
            "spec": {"containers": [{"name": "a", "image": "i"}]}});
        let new = json!({"apiVersion": "v1", "kind": "Pod",
            "spec": {"containers": [{"name": "b", "image": "i"}]}});
        assert_eq!(validate_builtin_update(&new, &old)[0].field, "spec");
    }
}

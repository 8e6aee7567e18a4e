//! The strategies of the built-in resources and their storage key prefixes. Resource-specific
//! behaviour is written here and nowhere else.

use std::sync::Arc;

use ferrokube_machinery::resources::ResourceInfo;
use ferrokube_machinery::validation::NameRule;
use serde_json::{Value, json};

use super::service_alloc::{self, ServiceAllocator};
use super::strategy::{
    DefaultStrategy, FieldSet, GcPolicy, Reservation, Strategy, default_at, str_at,
};

/// The etcd key segment upstream stores a resource under (`/registry/<segment>/...`).
pub fn storage_segment(info: &ResourceInfo) -> String {
    match (&*info.group, &*info.plural) {
        ("", "nodes") => "minions".into(),
        ("", "services") => "services/specs".into(),
        ("", "endpoints") => "services/endpoints".into(),
        ("", "replicationcontrollers") => "controllers".into(),
        ("networking.k8s.io", "ingresses") => "ingress".into(),
        ("apiextensions.k8s.io", p) | ("apiregistration.k8s.io", p) => {
            format!("{}/{p}", info.group)
        }
        // Core events and events.k8s.io events are one resource upstream.
        ("events.k8s.io", "events") => "events".into(),
        (_, p) => p.into(),
    }
}

/// The strategy for a resource.
pub fn strategy_for(info: &ResourceInfo, services: &Arc<ServiceAllocator>) -> Arc<dyn Strategy> {
    let has_status = info.subresource("status").is_some();
    match (&*info.group, &*info.plural) {
        ("", "pods") => Arc::new(PodStrategy),
        ("", "namespaces") => Arc::new(NamespaceStrategy),
        ("", "events") | ("events.k8s.io", "events") => Arc::new(EventStrategy),
        ("", "secrets") => Arc::new(SecretStrategy),
        ("", "nodes") => Arc::new(NodeStrategy),
        ("", "endpoints") => Arc::new(DefaultStrategy {
            generation: false,
            create_on_update: true,
        }),
        ("coordination.k8s.io", "leases") => Arc::new(DefaultStrategy {
            generation: false,
            create_on_update: true,
        }),
        ("", "services") => Arc::new(ServiceStrategy(services.clone())),
        ("rbac.authorization.k8s.io", _) => Arc::new(RbacStrategy),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            Arc::new(crate::crd::strategy::CrdStrategy)
        }
        // Upstream registers these with `ReturnDeletedObject: true` and no other hook.
        ("", "serviceaccounts") | ("storage.k8s.io", "storageclasses") => {
            Arc::new(ReturnDeletedStrategy)
        }
        ("apps", "deployments") => Arc::new(DeploymentStrategy),
        ("", "persistentvolumes")
        | ("", "persistentvolumeclaims")
        | ("", "resourcequotas")
        | ("certificates.k8s.io", "certificatesigningrequests") => Arc::new(DefaultStrategy {
            generation: false,
            create_on_update: false,
        }),
        ("", "replicationcontrollers") => Arc::new(ReplicasStrategy {
            orphan_by_default: true,
        }),
        ("apps", "replicasets") => Arc::new(ReplicasStrategy {
            orphan_by_default: false,
        }),
        ("batch", "jobs") => Arc::new(JobStrategy),
        ("apps", "statefulsets") | ("apps", "daemonsets") | ("", "podtemplates") => {
            Arc::new(TemplateStrategy)
        }
        _ => Arc::new(DefaultStrategy {
            generation: has_status,
            create_on_update: false,
        }),
    }
}

struct PodStrategy;

/// A resource with no special behaviour whose DELETE answers with the deleted object
/// (upstream `ReturnDeletedObject: true`), and no generation (it has no status).
struct ReturnDeletedStrategy;

impl Strategy for ReturnDeletedStrategy {
    fn tracks_generation(&self) -> bool {
        false
    }
    fn return_deleted_object(&self) -> bool {
        true
    }
}

impl Strategy for PodStrategy {
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Pods keep their QoS class for life.
        if let (Some(q), Some(status)) = (old.pointer("/status/qosClass"), new.get_mut("status"))
            && let Some(s) = status.as_object_mut()
        {
            s.insert("qosClass".into(), q.clone());
        }
    }

    fn return_deleted_object(&self) -> bool {
        true
    }

    /// Upstream `podStrategy.CheckGracefulDelete`: the requested period, else the pod's
    /// terminationGracePeriodSeconds; 0 for a pod not bound to a node or already terminated.
    fn graceful_delete_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        let mut period = requested.unwrap_or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        });
        if str_at(obj, &["spec", "nodeName"]).is_empty() {
            period = 0;
        }
        if matches!(
            str_at(obj, &["status", "phase"]).as_str(),
            "Failed" | "Succeeded"
        ) {
            period = 0;
        }
        Some(period.max(0))
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            let mut status = json!({"phase": "Pending", "qosClass": qos_class(m.get("spec"))});
            // Upstream `applySchedulingGatedCondition`: a pod created with scheduling gates
            // says why it waits.
            let gated = m
                .get("spec")
                .and_then(|s| s.get("schedulingGates"))
                .and_then(Value::as_array)
                .is_some_and(|g| !g.is_empty());
            if gated {
                status["conditions"] = json!([{
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "SchedulingGated",
                    "message": "Scheduling is blocked due to non-empty scheduling gates",
                }]);
            }
            m.insert("status".into(), status);
        }
    }

    // Validation: the trait's default (machinery `validate_pod` / `validate_pod_update`).

    fn field_set(&self, obj: &Value) -> FieldSet<'_> {
        vec![
            ("spec.nodeName", str_at(obj, &["spec", "nodeName"])),
            (
                "spec.restartPolicy",
                str_at(obj, &["spec", "restartPolicy"]),
            ),
            (
                "spec.schedulerName",
                str_at(obj, &["spec", "schedulerName"]),
            ),
            (
                "spec.serviceAccountName",
                str_at(obj, &["spec", "serviceAccountName"]),
            ),
            ("spec.hostNetwork", {
                let v = str_at(obj, &["spec", "hostNetwork"]);
                if v.is_empty() { "false".into() } else { v }
            }),
            ("status.phase", str_at(obj, &["status", "phase"])),
            ("status.podIP", str_at(obj, &["status", "podIP"])),
            (
                "status.nominatedNodeName",
                str_at(obj, &["status", "nominatedNodeName"]),
            ),
        ]
    }

    fn has_field_label(&self, label: &str) -> bool {
        [
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ]
        .contains(&label)
    }
}

/// Upstream's QoS classification (Guaranteed / Burstable / BestEffort).
fn qos_class(spec: Option<&Value>) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.and_then(|s| s.get(*k)).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        let has = |m: Option<&serde_json::Map<String, Value>>, k: &str| {
            m.is_some_and(|m| m.contains_key(k))
        };
        if has(req, "cpu") || has(req, "memory") || has(lim, "cpu") || has(lim, "memory") {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(r));
            let q = req.and_then(|m| m.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Roles, ClusterRoles and their bindings: path-segment names (`system:...`), no generation,
/// create on update (upstream `pkg/registry/rbac/*/strategy.go`).
struct RbacStrategy;

impl Strategy for RbacStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn tracks_generation(&self) -> bool {
        false
    }
    fn allow_create_on_update(&self) -> bool {
        true
    }
}

struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1123Label
    }
    fn tracks_generation(&self) -> bool {
        false
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"phase": "Active"}));
            m.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
        }
        // Upstream labels every namespace with its own name.
        let name = str_at(obj, &["metadata", "name"]);
        default_at(obj, &["metadata", "labels"], json!({}));
        if let Some(labels) = obj
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
        }
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers change only through /finalize.
        if let (Some(m), Some(spec)) = (new.as_object_mut(), old.get("spec")) {
            m.insert("spec".into(), spec.clone());
        }
        let name = str_at(new, &["metadata", "name"]);
        default_at(new, &["metadata", "labels"], json!({}));
        if let Some(labels) = new
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
        }
    }
    fn field_set(&self, obj: &Value) -> FieldSet<'_> {
        vec![("status.phase", str_at(obj, &["status", "phase"]))]
    }
    /// Upstream admission plugin NamespaceLifecycle: immortal namespaces.
    fn forbid_delete(&self, name: &str) -> Option<&'static str> {
        matches!(name, "default" | "kube-system" | "kube-public")
            .then_some("this namespace may not be deleted")
    }
    /// Upstream namespace `REST.Delete`: the first delete only starts termination.
    fn begin_delete(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            let status = m.entry("status").or_insert_with(|| json!({}));
            if let Some(s) = status.as_object_mut() {
                s.insert("phase".into(), json!("Terminating"));
            }
        }
    }
    /// The namespace stays while `spec.finalizers` (e.g. `kubernetes`) is not empty.
    fn delete_held(&self, obj: &Value) -> bool {
        obj.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }
    fn has_field_label(&self, label: &str) -> bool {
        ["status.phase"].contains(&label)
    }
}

struct EventStrategy;

impl Strategy for EventStrategy {
    fn tracks_generation(&self) -> bool {
        false
    }
    fn field_set(&self, obj: &Value) -> FieldSet<'_> {
        let io = |f: &str| {
            let v = str_at(obj, &["involvedObject", f]);
            if v.is_empty() {
                str_at(obj, &["regarding", f])
            } else {
                v
            }
        };
        vec![
            ("involvedObject.kind", io("kind")),
            ("involvedObject.namespace", io("namespace")),
            ("involvedObject.name", io("name")),
            ("involvedObject.uid", io("uid")),
            ("involvedObject.apiVersion", io("apiVersion")),
            ("involvedObject.resourceVersion", io("resourceVersion")),
            ("involvedObject.fieldPath", io("fieldPath")),
            ("reason", str_at(obj, &["reason"])),
            ("reportingComponent", str_at(obj, &["reportingComponent"])),
            ("source", str_at(obj, &["source", "component"])),
            ("type", str_at(obj, &["type"])),
        ]
    }
    fn has_field_label(&self, label: &str) -> bool {
        [
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
        .contains(&label)
    }
}

struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn tracks_generation(&self) -> bool {
        false
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        default_at(obj, &["type"], json!("Opaque"));
        merge_string_data(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_at(new, &["type"], json!("Opaque"));
        merge_string_data(new);
    }
    fn field_set(&self, obj: &Value) -> FieldSet<'_> {
        vec![("type", str_at(obj, &["type"]))]
    }
    fn has_field_label(&self, label: &str) -> bool {
        ["type"].contains(&label)
    }
}

struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn tracks_generation(&self) -> bool {
        false
    }
    fn field_set(&self, obj: &Value) -> FieldSet<'_> {
        let v = str_at(obj, &["spec", "unschedulable"]);
        vec![(
            "spec.unschedulable",
            if v.is_empty() { "false".into() } else { v },
        )]
    }
    fn has_field_label(&self, label: &str) -> bool {
        ["spec.unschedulable"].contains(&label)
    }
}

struct ReplicasStrategy {
    /// Upstream `rcStrategy.DefaultGarbageCollectionPolicy`: core/v1 ReplicationControllers
    /// orphan their pods unless told otherwise (back compatibility).
    orphan_by_default: bool,
}

impl Strategy for ReplicasStrategy {
    fn default_gc_policy(&self) -> GcPolicy {
        if self.orphan_by_default {
            GcPolicy::OrphanDependents
        } else {
            GcPolicy::DeleteDependents
        }
    }
    fn field_set(&self, obj: &Value) -> FieldSet<'_> {
        let v = str_at(obj, &["status", "replicas"]);
        vec![("status.replicas", if v.is_empty() { "0".into() } else { v })]
    }
    fn has_field_label(&self, label: &str) -> bool {
        ["status.replicas"].contains(&label)
    }
}

struct JobStrategy;

impl Strategy for JobStrategy {
    /// Upstream keeps batch/v1 Jobs orphaning their pods unless told otherwise.
    fn default_gc_policy(&self) -> GcPolicy {
        GcPolicy::OrphanDependents
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        ferrokube_machinery::defaults::batch::job_generate_selector(obj);
    }
    fn field_set(&self, obj: &Value) -> FieldSet<'_> {
        let v = str_at(obj, &["status", "succeeded"]);
        vec![(
            "status.successful",
            if v.is_empty() { "0".into() } else { v },
        )]
    }
    fn has_field_label(&self, label: &str) -> bool {
        ["status.successful"].contains(&label)
    }
}

/// Services: allocation of cluster IPs and node ports by the API server's
/// [`ServiceAllocator`] (the generic store's reservation hook).
struct ServiceStrategy(Arc<ServiceAllocator>);

impl Strategy for ServiceStrategy {
    fn reservation(&self) -> Option<&dyn Reservation> {
        Some(&*self.0)
    }
    /// Upstream's services registry sets `ReturnDeletedObject`.
    fn return_deleted_object(&self) -> bool {
        true
    }
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035Label
    }
    fn tracks_generation(&self) -> bool {
        false
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        // A requested cluster IP is mirrored into clusterIPs; the generic store reserves it (or
        // a free one), the IP families and node ports after validation (`reservation`).
        let ip = str_at(obj, &["spec", "clusterIP"]);
        if !ip.is_empty() {
            default_at(obj, &["spec", "clusterIPs"], json!([ip]));
        }
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"loadBalancer": {}}));
        }
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // What the server allocated stays unless the client changes it (validation rejects a
        // cluster IP change); fields of an abandoned type go.
        service_alloc::patch_allocated_values(new, old);
        service_alloc::drop_type_dependent_fields(new, old);
    }
    // Validation (cluster IP immutability included): the trait's default.
}

struct DeploymentStrategy;

// Deployment defaults are machinery `defaults::apps` (applied by the generic store).
impl Strategy for DeploymentStrategy {}

/// `stringData` is write-only: its entries are merged into `data` (base64) as upstream does.
fn merge_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(sd)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in sd {
            if let Some(s) = v.as_str() {
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
}

/// Workloads with no server-side behaviour beyond defaulting (machinery `defaults`, applied by
/// the generic store).
struct TemplateStrategy;

impl Strategy for TemplateStrategy {}

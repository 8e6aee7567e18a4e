//! Printers for the smaller groups: `policy` (PDBs), `autoscaling` (HPAs), RBAC bindings,
//! certificates, coordination (leases), scheduling and node (priority and runtime classes) and
//! `apiregistration.k8s.io` (API services, served by the aggregator's own table).

use jiff::Timestamp;
use serde_json::{Value, json};

use super::control;
use super::format::{
    age, human_duration_nanos, int, int_or_string, list, name, opt_int, opt_text, text,
};
use super::{AGE, CellFn, ColumnDefinition, NAME, Printer, col, wide};

pub(super) fn lookup(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [ColumnDefinition], CellFn) = match (group, resource) {
        ("policy", "poddisruptionbudgets") => (PDB, pdb),
        ("autoscaling", "horizontalpodautoscalers") => (HPA, hpa),
        ("rbac.authorization.k8s.io", "rolebindings") => (ROLE_BINDING, binding),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => (CLUSTER_ROLE_BINDING, binding),
        ("certificates.k8s.io", "certificatesigningrequests") => (CSR, csr),
        ("certificates.k8s.io", "clustertrustbundles") => {
            (CLUSTER_TRUST_BUNDLE, cluster_trust_bundle)
        }
        ("coordination.k8s.io", "leases") => (LEASE, lease),
        ("coordination.k8s.io", "leasecandidates") => (LEASE_CANDIDATE, lease_candidate),
        ("scheduling.k8s.io", "priorityclasses") => (PRIORITY_CLASS, priority_class),
        ("node.k8s.io", "runtimeclasses") => (RUNTIME_CLASS, runtime_class),
        ("apiregistration.k8s.io", "apiservices") => (API_SERVICE, api_service),
        _ => return control::lookup(group, resource),
    };
    Some(Printer { columns, cells })
}

const PDB: &[ColumnDefinition] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

fn pdb(p: &Value, now: Timestamp) -> Vec<Value> {
    let field = |ptr: &str| {
        p.pointer(ptr)
            .filter(|v| !v.is_null())
            .map(int_or_string)
            .unwrap_or_else(|| "N/A".to_owned())
    };
    vec![
        json!(name(p)),
        json!(field("/spec/minAvailable")),
        json!(field("/spec/maxUnavailable")),
        json!(int(p, "/status/disruptionsAllowed")),
        json!(age(p, now)),
    ]
}

const HPA: &[ColumnDefinition] = &[
    NAME,
    col(
        "Reference",
        "string",
        "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
    ),
    col(
        "Targets",
        "string",
        "metrics contains the specifications for which to use to calculate the desired replica count.",
    ),
    col(
        "MinPods",
        "string",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
    ),
    col(
        "MaxPods",
        "string",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
    ),
    col(
        "Replicas",
        "string",
        "currentReplicas is current number of replicas of pods managed by this autoscaler.",
    ),
    AGE,
];

fn q(v: Option<&Value>) -> Option<String> {
    v.filter(|v| !v.is_null()).map(int_or_string)
}

/// One `formatHPAMetrics` entry for an `autoscaling/v2` metric spec and its status.
fn hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    let unknown = || "<unknown>".to_owned();
    let kind = spec.get("type").and_then(Value::as_str).unwrap_or_default();
    let (key, named) = match kind {
        "External" => ("external", false),
        "Pods" => ("pods", false),
        "Object" => ("object", false),
        "Resource" => ("resource", true),
        "ContainerResource" => ("containerResource", true),
        _ => return "<unknown type>".to_owned(),
    };
    let target = spec.pointer(&format!("/{key}/target"));
    let current = status
        .and_then(|s| s.get(key))
        .filter(|v| v.is_object())
        .and_then(|s| s.get("current"));
    let target_avg = q(target.and_then(|t| t.get("averageValue")));
    let prefix = if named {
        format!(
            "{}: ",
            spec.pointer(&format!("/{key}/name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
        )
    } else {
        String::new()
    };
    if kind == "Pods" {
        let cur = current
            .map(|c| q(c.get("averageValue")).unwrap_or_default())
            .unwrap_or_else(unknown);
        return format!("{cur}/{}", target_avg.unwrap_or_default());
    }
    if let Some(avg) = target_avg {
        let cur = current
            .and_then(|c| q(c.get("averageValue")))
            .unwrap_or_else(unknown);
        return if named {
            format!("{prefix}{cur}/{avg}")
        } else {
            format!("{cur}/{avg} (avg)")
        };
    }
    if named {
        let cur = current
            .and_then(|c| c.get("averageUtilization").and_then(Value::as_i64))
            .map(|u| format!("{u}%"))
            .unwrap_or_else(unknown);
        let tgt = target
            .and_then(|t| t.get("averageUtilization").and_then(Value::as_i64))
            .map(|u| format!("{u}%"))
            .unwrap_or_else(|| "<auto>".to_owned());
        return format!("{prefix}{cur}/{tgt}");
    }
    let cur = current
        .map(|c| q(c.get("value")).unwrap_or_default())
        .unwrap_or_else(unknown);
    format!(
        "{cur}/{}",
        q(target.and_then(|t| t.get("value"))).unwrap_or_default()
    )
}

/// `formatHPAMetrics`; `autoscaling/v1` objects (CPU target percentage) are read as the single
/// Resource metric they convert to.
fn hpa_targets(h: &Value) -> String {
    let (specs, statuses): (Vec<Value>, Vec<Value>) = if let Some(pct) =
        opt_int(h, "/spec/targetCPUUtilizationPercentage")
    {
        let spec = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": pct}}});
        let status = opt_int(h, "/status/currentCPUUtilizationPercentage")
            .map(|c| vec![json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}})])
            .unwrap_or_default();
        (vec![spec], status)
    } else {
        (
            list(h, "/spec/metrics").to_vec(),
            list(h, "/status/currentMetrics").to_vec(),
        )
    };
    if specs.is_empty() {
        return "<none>".to_owned();
    }
    const MAX: usize = 2;
    let entries: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| hpa_metric(s, statuses.get(i)))
        .collect();
    let joined = entries
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if entries.len() > MAX {
        format!("{joined} + {} more...", entries.len() - MAX)
    } else {
        joined
    }
}

fn hpa(h: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(h)),
        json!(format!(
            "{}/{}",
            text(h, "/spec/scaleTargetRef/kind"),
            text(h, "/spec/scaleTargetRef/name")
        )),
        json!(hpa_targets(h)),
        json!(
            opt_int(h, "/spec/minReplicas")
                .map(|m| m.to_string())
                .unwrap_or_else(|| "<unset>".to_owned())
        ),
        json!(int(h, "/spec/maxReplicas")),
        json!(int(h, "/status/currentReplicas")),
        json!(age(h, now)),
    ]
}

const ROLE_BINDING: &[ColumnDefinition] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
    ),
];

const CLUSTER_ROLE_BINDING: &[ColumnDefinition] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can only reference a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
    ),
];

fn binding(b: &Value, now: Timestamp) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in list(b, "/subjects") {
        let field = |k: &str| {
            s.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match field("kind").as_str() {
            "ServiceAccount" => sas.push(format!("{}/{}", field("namespace"), field("name"))),
            "User" => users.push(field("name")),
            "Group" => groups.push(field("name")),
            _ => {}
        }
    }
    vec![
        json!(name(b)),
        json!(format!(
            "{}/{}",
            text(b, "/roleRef/kind"),
            text(b, "/roleRef/name")
        )),
        json!(age(b, now)),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

const CSR: &[ColumnDefinition] = &[
    NAME,
    AGE,
    col("SignerName", "string", "Requested signer for the request."),
    col(
        "Requestor",
        "string",
        "Name of the user who created the CertificateSigningRequest.",
    ),
    col(
        "RequestedDuration",
        "string",
        "expirationSeconds is the requested duration of validity of the issued certificate.",
    ),
    col("Condition", "string", "Conditions applied to the request."),
];

/// `extractCSRStatus`: Denied > Approved > Pending, then `,Failed` and `,Issued`.
fn csr_status(c: &Value) -> String {
    let has = |t: &str| {
        list(c, "/status/conditions")
            .iter()
            .any(|x| x.get("type").and_then(Value::as_str) == Some(t))
    };
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_owned();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !text(c, "/status/certificate").is_empty() {
        status.push_str(",Issued");
    }
    status
}

fn csr(c: &Value, now: Timestamp) -> Vec<Value> {
    let signer = text(c, "/spec/signerName");
    let duration = opt_int(c, "/spec/expirationSeconds")
        .map(|s| human_duration_nanos(i128::from(s) * 1_000_000_000))
        .unwrap_or_else(|| "<none>".to_owned());
    vec![
        json!(name(c)),
        json!(age(c, now)),
        json!(if signer.is_empty() {
            "<none>".to_owned()
        } else {
            signer
        }),
        json!(text(c, "/spec/username")),
        json!(duration),
        json!(csr_status(c)),
    ]
}

const CLUSTER_TRUST_BUNDLE: &[ColumnDefinition] = &[
    NAME,
    col(
        "SignerName",
        "string",
        "signerName indicates the associated signer, if any.",
    ),
];

fn cluster_trust_bundle(b: &Value, _now: Timestamp) -> Vec<Value> {
    let signer = text(b, "/spec/signerName");
    vec![
        json!(name(b)),
        json!(if signer.is_empty() {
            "<none>".to_owned()
        } else {
            signer
        }),
    ]
}

const LEASE: &[ColumnDefinition] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

fn lease(l: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(l)),
        json!(text(l, "/spec/holderIdentity")),
        json!(age(l, now)),
    ]
}

const LEASE_CANDIDATE: &[ColumnDefinition] = &[
    NAME,
    col(
        "LeaseName",
        "string",
        "LeaseName is the name of the lease for which this candidate is contending.",
    ),
    col(
        "BinaryVersion",
        "string",
        "BinaryVersion is the binary version.",
    ),
    col(
        "EmulationVersion",
        "string",
        "EmulationVersion is the emulation version.",
    ),
    AGE,
];

fn lease_candidate(l: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(l)),
        json!(text(l, "/spec/leaseName")),
        json!(text(l, "/spec/binaryVersion")),
        json!(text(l, "/spec/emulationVersion")),
        json!(age(l, now)),
    ]
}

const PRIORITY_CLASS: &[ColumnDefinition] = &[
    NAME,
    col(
        "Value",
        "integer",
        "value represents the integer value of this priority class.",
    ),
    col(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority.",
    ),
];

fn priority_class(p: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(p)),
        json!(int(p, "/value")),
        json!(
            p.get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        json!(age(p, now)),
        json!(opt_text(p, "/preemptionPolicy").unwrap_or_default()),
    ]
}

const RUNTIME_CLASS: &[ColumnDefinition] = &[
    NAME,
    col(
        "Handler",
        "string",
        "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
    ),
    AGE,
];

fn runtime_class(r: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(r)),
        json!(text(r, "/handler")),
        json!(age(r, now)),
    ]
}

const API_SERVICE: &[ColumnDefinition] = &[
    NAME,
    col(
        "Service",
        "string",
        "The reference to the service that hosts this API endpoint.",
    ),
    col("Available", "string", "Whether this service is available."),
    AGE,
];

fn api_service(a: &Value, now: Timestamp) -> Vec<Value> {
    let service = match a.pointer("/spec/service").filter(|s| s.is_object()) {
        Some(s) => format!(
            "{}/{}",
            s.get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            s.get("name").and_then(Value::as_str).unwrap_or_default()
        ),
        None => "Local".to_owned(),
    };
    let available = list(a, "/status/conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"));
    let status = match available {
        None => "Unknown".to_owned(),
        Some(c) => {
            let st = c.get("status").and_then(Value::as_str).unwrap_or_default();
            let reason = c.get("reason").and_then(Value::as_str).unwrap_or_default();
            if st == "True" || reason.is_empty() {
                st.to_owned()
            } else {
                format!("{st} ({reason})")
            }
        }
    };
    vec![
        json!(name(a)),
        json!(service),
        json!(status),
        json!(age(a, now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::cells;
    use super::super::test_support::{names, now};
    use serde_json::json;

    #[test]
    fn hpa_v2_and_v1() {
        assert_eq!(
            names("autoscaling", "horizontalpodautoscalers"),
            [
                "Name",
                "Reference",
                "Targets",
                "MinPods",
                "MaxPods",
                "Replicas",
                "Age"
            ]
        );
        let v2 = json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 10, "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}]},
            "status": {"currentReplicas": 3, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "90m"}}}]}});
        assert_eq!(
            cells("autoscaling", "horizontalpodautoscalers", &v2, now()),
            vec![
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 45%/80%, memory: <unknown>/500Mi + 1 more..."),
                json!("2"),
                json!(10),
                json!(3),
                json!("<unknown>")
            ]
        );
        let v1 = json!({"metadata": {"name": "old"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "old"},
            "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}});
        assert_eq!(
            cells("autoscaling", "horizontalpodautoscalers", &v1, now())[2..6],
            [
                json!("cpu: <unknown>/50%"),
                json!("<unset>"),
                json!(4),
                json!(0)
            ]
        );
    }

    #[test]
    fn pdb_binding_csr_and_apiservice() {
        let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            cells("policy", "poddisruptionbudgets", &pdb, now()),
            vec![
                json!("web"),
                json!("50%"),
                json!("N/A"),
                json!(1),
                json!("<unknown>")
            ]
        );
        let rb = json!({"metadata": {"name": "admins", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "roleRef": {"kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "ops"}, {"kind": "User", "name": "bob"},
                         {"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"}]});
        assert_eq!(
            cells("rbac.authorization.k8s.io", "rolebindings", &rb, now()),
            vec![
                json!("admins"),
                json!("ClusterRole/admin"),
                json!("60m"),
                json!("alice, bob"),
                json!("ops"),
                json!("ci/deployer")
            ]
        );
        let csr = json!({"metadata": {"name": "node-csr"}, "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "username": "system:node:n1", "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}});
        assert_eq!(
            cells(
                "certificates.k8s.io",
                "certificatesigningrequests",
                &csr,
                now()
            )[2..6],
            [
                json!("kubernetes.io/kube-apiserver-client-kubelet"),
                json!("system:node:n1"),
                json!("24h"),
                json!("Approved,Issued")
            ]
        );
        let local = json!({"metadata": {"name": "v1.apps"}, "spec": {},
            "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
        assert_eq!(
            cells("apiregistration.k8s.io", "apiservices", &local, now())[1..3],
            [json!("Local"), json!("True")]
        );
        let broken = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"}, "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}});
        assert_eq!(
            cells("apiregistration.k8s.io", "apiservices", &broken, now())[1..3],
            [
                json!("kube-system/metrics-server"),
                json!("False (MissingEndpoints)")
            ]
        );
    }

    #[test]
    fn lease_priority_and_runtime_classes() {
        let lease =
            json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "cp-1_abc"}});
        assert_eq!(
            cells("coordination.k8s.io", "leases", &lease, now())[1],
            json!("cp-1_abc")
        );
        let pc = json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            cells("scheduling.k8s.io", "priorityclasses", &pc, now()),
            vec![
                json!("system-node-critical"),
                json!(2000001000),
                json!(false),
                json!("<unknown>"),
                json!("PreemptLowerPriority")
            ]
        );
        let rc = json!({"metadata": {"name": "gvisor"}, "handler": "runsc"});
        assert_eq!(
            cells("node.k8s.io", "runtimeclasses", &rc, now())[1],
            json!("runsc")
        );
    }
}

//! Printers for control-plane configuration groups: admission registration, API priority and
//! fairness (`flowcontrol.apiserver.k8s.io`), storage versions, dynamic resource allocation
//! (`resource.k8s.io`) and storage version migrations.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::format::{
    age, format_label_selector, len_at, list, list_with_more, name, opt_text, text,
};
use super::{AGE, CellFn, ColumnDefinition, NAME, Printer, col};

pub(super) fn lookup(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [ColumnDefinition], CellFn) = match (group, resource) {
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations" | "validatingwebhookconfigurations",
        ) => (WEBHOOK_CONFIGURATION, webhook_configuration),
        ("admissionregistration.k8s.io", "validatingadmissionpolicies") => {
            (VALIDATING_POLICY, validating_policy)
        }
        ("admissionregistration.k8s.io", "mutatingadmissionpolicies") => {
            (MUTATING_POLICY, mutating_policy)
        }
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings" | "mutatingadmissionpolicybindings",
        ) => (POLICY_BINDING, policy_binding),
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => (FLOW_SCHEMA, flow_schema),
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => {
            (PRIORITY_LEVEL, priority_level)
        }
        ("internal.apiserver.k8s.io", "storageversions") => (STORAGE_VERSION, storage_version),
        ("resource.k8s.io", "deviceclasses" | "resourceclaimtemplates") => (NAME_AGE, name_age),
        ("resource.k8s.io", "resourceclaims") => (RESOURCE_CLAIM, resource_claim),
        ("resource.k8s.io", "resourceslices") => (RESOURCE_SLICE, resource_slice),
        ("storagemigration.k8s.io", "storageversionmigrations") => {
            (STORAGE_VERSION_MIGRATION, storage_version_migration)
        }
        _ => return None,
    };
    Some(Printer { columns, cells })
}

const WEBHOOK_CONFIGURATION: &[ColumnDefinition] = &[
    NAME,
    col(
        "Webhooks",
        "integer",
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
];

fn webhook_configuration(w: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(w)),
        json!(len_at(w, "/webhooks")),
        json!(age(w, now)),
    ]
}

const PARAM_KIND_DOC: &str =
    "ParamKind specifies the kind of resources used to parameterize this policy";

const VALIDATING_POLICY: &[ColumnDefinition] = &[
    NAME,
    col(
        "Validations",
        "integer",
        "Validations indicates the number of validation rules defined in this configuration",
    ),
    col("ParamKind", "string", PARAM_KIND_DOC),
    AGE,
];

const MUTATING_POLICY: &[ColumnDefinition] = &[
    NAME,
    col(
        "Mutations",
        "integer",
        "Mutation indicates the number of mutations rules defined in this configuration",
    ),
    col("ParamKind", "string", PARAM_KIND_DOC),
    AGE,
];

fn param_kind(p: &Value) -> String {
    match p.pointer("/spec/paramKind").filter(|k| k.is_object()) {
        Some(_) => format!(
            "{}/{}",
            text(p, "/spec/paramKind/apiVersion"),
            text(p, "/spec/paramKind/kind")
        ),
        None => "<unset>".to_owned(),
    }
}

fn validating_policy(p: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(p)),
        json!(len_at(p, "/spec/validations")),
        json!(param_kind(p)),
        json!(age(p, now)),
    ]
}

fn mutating_policy(p: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(p)),
        json!(len_at(p, "/spec/mutations")),
        json!(param_kind(p)),
        json!(age(p, now)),
    ]
}

const POLICY_BINDING: &[ColumnDefinition] = &[
    NAME,
    col(
        "PolicyName",
        "string",
        "PolicyName indicates the policy definition which the policy binding binded to",
    ),
    col(
        "ParamRef",
        "string",
        "ParamRef indicates the param resource which sets the configration param",
    ),
    AGE,
];

fn policy_binding(b: &Value, now: Timestamp) -> Vec<Value> {
    let param = match b.pointer("/spec/paramRef").filter(|p| p.is_object()) {
        None => "<unset>".to_owned(),
        Some(p) => {
            let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
            if !field("name").is_empty() {
                let ns = if field("namespace").is_empty() {
                    "*"
                } else {
                    field("namespace")
                };
                format!("{ns}/{}", field("name"))
            } else if p.get("selector").is_some_and(Value::is_object) {
                format_label_selector(p.get("selector"))
            } else {
                "<unset>".to_owned()
            }
        }
    };
    vec![
        json!(name(b)),
        json!(text(b, "/spec/policyName")),
        json!(param),
        json!(age(b, now)),
    ]
}

const FLOW_SCHEMA: &[ColumnDefinition] = &[
    NAME,
    col(
        "PriorityLevel",
        "string",
        "`name` is the name of the priority level configuration being referenced Required.",
    ),
    col(
        "MatchingPrecedence",
        "string",
        "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request.",
    ),
    col(
        "DistinguisherMethod",
        "string",
        "`distinguisherMethod` defines how to compute the flow distinguisher for requests that match this schema.",
    ),
    AGE,
    col(
        "MissingPL",
        "string",
        "references a broken or non-existent PriorityLevelConfiguration",
    ),
];

fn flow_schema(f: &Value, now: Timestamp) -> Vec<Value> {
    let dangling = list(f, "/status/conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Dangling"))
        .and_then(|c| c.get("status").and_then(Value::as_str))
        .unwrap_or("?");
    vec![
        json!(name(f)),
        json!(text(f, "/spec/priorityLevelConfiguration/name")),
        json!(
            f.pointer("/spec/matchingPrecedence")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        ),
        json!(opt_text(f, "/spec/distinguisherMethod/type").unwrap_or("<none>")),
        json!(age(f, now)),
        json!(dangling),
    ]
}

const PRIORITY_LEVEL: &[ColumnDefinition] = &[
    NAME,
    col(
        "Type",
        "string",
        "`type` indicates whether this priority level is subject to limitation on request execution.",
    ),
    col(
        "NominalConcurrencyShares",
        "string",
        "`nominalConcurrencyShares` (NCS) contributes to the computation of the NominalConcurrencyLimit (NominalCL) of this level.",
    ),
    col(
        "Queues",
        "string",
        "`queues` is the number of queues for this priority level.",
    ),
    col(
        "HandSize",
        "string",
        "`handSize` is a small positive number that configures the shuffle sharding of requests into queues.",
    ),
    col(
        "QueueLengthLimit",
        "string",
        "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time.",
    ),
    AGE,
];

fn priority_level(p: &Value, now: Timestamp) -> Vec<Value> {
    let none = || json!("<none>");
    let limited = p.pointer("/spec/limited").filter(|l| l.is_object());
    let ncs = limited.map(|l| {
        json!(
            l.get("nominalConcurrencyShares")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        )
    });
    let queuing = limited
        .and_then(|l| l.pointer("/limitResponse/queuing"))
        .filter(|q| q.is_object());
    let qfield = |k: &str| {
        queuing
            .map(|q| json!(q.get(k).and_then(Value::as_i64).unwrap_or(0)))
            .unwrap_or_else(none)
    };
    vec![
        json!(name(p)),
        json!(text(p, "/spec/type")),
        ncs.unwrap_or_else(none),
        qfield("queues"),
        qfield("handSize"),
        qfield("queueLengthLimit"),
        json!(age(p, now)),
    ]
}

const STORAGE_VERSION: &[ColumnDefinition] = &[
    NAME,
    col(
        "CommonEncodingVersion",
        "string",
        "If all API server instances agree on the same encoding storage version, then this field is set to that version.",
    ),
    col(
        "StorageVersions",
        "string",
        "The reported versions per API server instance.",
    ),
    AGE,
];

fn storage_version(sv: &Value, now: Timestamp) -> Vec<Value> {
    let versions: Vec<String> = list(sv, "/status/storageVersions")
        .iter()
        .map(|v| {
            let f = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
            format!("{}={}", f("apiServerID"), f("encodingVersion"))
        })
        .collect();
    vec![
        json!(name(sv)),
        json!(opt_text(sv, "/status/commonEncodingVersion").unwrap_or("<unset>")),
        json!(list_with_more(&versions, 3)),
        json!(age(sv, now)),
    ]
}

const NAME_AGE: &[ColumnDefinition] = &[NAME, AGE];

fn name_age(o: &Value, now: Timestamp) -> Vec<Value> {
    vec![json!(name(o)), json!(age(o, now))]
}

const RESOURCE_CLAIM: &[ColumnDefinition] = &[
    NAME,
    col(
        "State",
        "string",
        "A summary of the current state (allocated, pending, reserved, etc.).",
    ),
    AGE,
];

fn resource_claim(c: &Value, now: Timestamp) -> Vec<Value> {
    let deleting = c
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let mut states = Vec::new();
    if deleting {
        states.push("deleted");
    }
    if c.pointer("/status/allocation")
        .is_some_and(Value::is_object)
    {
        states.push("allocated");
        if !list(c, "/status/reservedFor").is_empty() {
            states.push("reserved");
        }
    } else if !deleting {
        states.push("pending");
    }
    vec![json!(name(c)), json!(states.join(",")), json!(age(c, now))]
}

const RESOURCE_SLICE: &[ColumnDefinition] = &[
    NAME,
    col(
        "Node",
        "string",
        "NodeName identifies the node which provides the resources in this pool.",
    ),
    col(
        "Driver",
        "string",
        "Driver identifies the DRA driver providing the capacity information.",
    ),
    col("Pool", "string", "Name is used to identify the pool."),
    AGE,
];

fn resource_slice(s: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(s)),
        json!(text(s, "/spec/nodeName")),
        json!(text(s, "/spec/driver")),
        json!(text(s, "/spec/pool/name")),
        json!(age(s, now)),
    ]
}

const STORAGE_VERSION_MIGRATION: &[ColumnDefinition] = &[
    ColumnDefinition {
        name: "Name",
        type_: "string",
        format: "",
        description: super::NAME_DOC,
        priority: 0,
    },
    col("Resource", "string", "Fully qualified resource to migrate"),
];

fn storage_version_migration(m: &Value, _now: Timestamp) -> Vec<Value> {
    let version = text(m, "/spec/resource/version");
    let resource = text(m, "/spec/resource/resource");
    let group = text(m, "/spec/resource/group");
    let gvr = if version.is_empty() {
        format!("{resource}.{group}")
    } else {
        format!("{resource}.{version}.{group}")
    };
    vec![json!(name(m)), json!(gvr)]
}

#[cfg(test)]
mod tests {
    use super::super::cells;
    use super::super::test_support::now;
    use serde_json::json;

    #[test]
    fn admission_and_flowcontrol_rows() {
        let wh = json!({"metadata": {"name": "cert-manager"}, "webhooks": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(
            cells(
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                &wh,
                now()
            )[1],
            json!(2)
        );
        let vap = json!({"metadata": {"name": "p"}, "spec": {"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "validations": [{"expression": "true"}]}});
        assert_eq!(
            cells(
                "admissionregistration.k8s.io",
                "validatingadmissionpolicies",
                &vap,
                now()
            )[1..3],
            [json!(1), json!("v1/ConfigMap")]
        );
        let binding = json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "paramRef": {"name": "cfg"}}});
        assert_eq!(
            cells(
                "admissionregistration.k8s.io",
                "validatingadmissionpolicybindings",
                &binding,
                now()
            )[1..3],
            [json!("p"), json!("*/cfg")]
        );
        let fs = json!({"metadata": {"name": "exempt"}, "spec": {"priorityLevelConfiguration": {"name": "exempt"},
            "matchingPrecedence": 1}, "status": {"conditions": [{"type": "Dangling", "status": "False"}]}});
        assert_eq!(
            cells("flowcontrol.apiserver.k8s.io", "flowschemas", &fs, now()),
            vec![
                json!("exempt"),
                json!("exempt"),
                json!(1),
                json!("<none>"),
                json!("<unknown>"),
                json!("False")
            ]
        );
        let pl = json!({"metadata": {"name": "workload-low"}, "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 100, "limitResponse": {"type": "Queue", "queuing": {"queues": 128, "handSize": 6, "queueLengthLimit": 50}}}}});
        assert_eq!(
            cells(
                "flowcontrol.apiserver.k8s.io",
                "prioritylevelconfigurations",
                &pl,
                now()
            )[1..6],
            [
                json!("Limited"),
                json!(100),
                json!(128),
                json!(6),
                json!(50)
            ]
        );
        let exempt = json!({"metadata": {"name": "exempt"}, "spec": {"type": "Exempt"}});
        assert_eq!(
            cells(
                "flowcontrol.apiserver.k8s.io",
                "prioritylevelconfigurations",
                &exempt,
                now()
            )[2..6],
            [
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn resource_claim_states() {
        let pending = json!({"metadata": {"name": "gpu"}});
        assert_eq!(
            cells("resource.k8s.io", "resourceclaims", &pending, now())[1],
            json!("pending")
        );
        let reserved = json!({"metadata": {"name": "gpu", "deletionTimestamp": "2025-06-01T11:00:00Z"},
            "status": {"allocation": {}, "reservedFor": [{"resource": "pods", "name": "p"}]}});
        assert_eq!(
            cells("resource.k8s.io", "resourceclaims", &reserved, now())[1],
            json!("deleted,allocated,reserved")
        );
    }
}

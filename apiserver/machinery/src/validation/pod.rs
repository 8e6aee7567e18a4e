//! Pods and pod templates: upstream `pkg/apis/core/validation/validation.go` (`ValidatePod`,
//! `ValidatePodSpec`, `validateContainers`, `validateInitContainers`, `validateContainerPorts`,
//! `ValidateResourceRequirements`, `validateVolumeMounts`, `ValidatePodTemplateSpec`,
//! `ValidatePodUpdate`). All functions work on the JSON (v1) form and tolerate absent
//! defaulted fields (an absent `imagePullPolicy` or `restartPolicy` is not reported).

use std::collections::HashSet;

use serde_json::Value;

use super::field::{FieldError, Path};
use super::helpers::{
    arr, get, int, is_valid_port_name, is_valid_port_num, nonnegative, obj, parse_quantity,
    quantity_text, s,
};
use super::meta::{validate_annotations, validate_labels};
use super::names::{is_dns1123_label, is_dns1123_subdomain};

/// The message of upstream's `ValidatePodUpdate` when a non-updatable spec field changed.
pub const POD_UPDATE_FORBIDDEN_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn dns_label_errs(value: &str, path: Path) -> Vec<FieldError> {
    is_dns1123_label(value)
        .into_iter()
        .map(|m| FieldError::invalid(path.clone(), value, &m))
        .collect()
}

/// `validateVolumes`: names required, DNS labels, unique. Returns the volume names.
fn validate_volumes(spec: &Value, path: &Path) -> (HashSet<String>, Vec<FieldError>) {
    let mut names = HashSet::new();
    let mut errs = Vec::new();
    for (i, v) in arr(spec, "volumes").iter().enumerate() {
        let p = path.index(i);
        let name = s(v, "name");
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            errs.extend(dns_label_errs(name, p.child("name")));
        }
        if !name.is_empty() && !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(p.child("name"), name));
        }
    }
    (names, errs)
}

fn validate_ports(ctr: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, port) in arr(ctr, "ports").iter().enumerate() {
        let p = path.index(i);
        let name = s(port, "name");
        if !name.is_empty() {
            for m in is_valid_port_name(name) {
                errs.push(FieldError::invalid(p.child("name"), name, &m));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        match int(port, "containerPort") {
            None | Some(0) => errs.push(FieldError::required(p.child("containerPort"), "")),
            Some(n) => {
                for m in is_valid_port_num(n) {
                    errs.push(FieldError::invalid(p.child("containerPort"), n, &m));
                }
            }
        }
        if let Some(h) = int(port, "hostPort").filter(|h| *h != 0) {
            for m in is_valid_port_num(h) {
                errs.push(FieldError::invalid(p.child("hostPort"), h, &m));
            }
        }
        errs.extend(validate_protocol(port, &p));
    }
    errs
}

/// A `protocol` field: absent is fine (defaulted), otherwise TCP, UDP or SCTP.
pub fn validate_protocol(port: &Value, path: &Path) -> Vec<FieldError> {
    match port.get("protocol").and_then(Value::as_str) {
        None | Some("TCP") | Some("UDP") | Some("SCTP") => Vec::new(),
        Some("") => vec![FieldError::required(path.child("protocol"), "")],
        Some(p) => vec![FieldError::not_supported(
            path.child("protocol"),
            p,
            &["SCTP", "TCP", "UDP"],
        )],
    }
}

fn validate_resources(ctr: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let res = get(ctr, "resources");
    let limits = obj(res, "limits");
    for part in ["limits", "requests"] {
        let pp = path.child(part);
        let Some(m) = obj(res, part) else { continue };
        for (k, v) in m {
            let Some(q) = quantity_text(v) else { continue };
            let Some(n) = parse_quantity(&q) else {
                continue;
            };
            if n < 0.0 {
                errs.push(FieldError::invalid(
                    pp.key(k),
                    q.as_str(),
                    super::helpers::IS_NEGATIVE_ERROR_MSG,
                ));
            }
            if part == "requests"
                && let Some(l) = limits.and_then(|l| l.get(k)).and_then(quantity_text)
                && parse_quantity(&l).is_some_and(|l| n > l)
            {
                errs.push(FieldError::invalid(
                    pp.clone(),
                    q.as_str(),
                    &format!("must be less than or equal to {k} limit of {l}"),
                ));
            }
        }
    }
    errs
}

fn validate_container(
    ctr: &Value,
    path: &Path,
    volumes: &HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let name = s(ctr, "name");
    if name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        errs.extend(dns_label_errs(name, path.child("name")));
    }
    if s(ctr, "image").is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    match ctr.get("imagePullPolicy").and_then(Value::as_str) {
        None | Some("Always") | Some("IfNotPresent") | Some("Never") => {}
        Some("") => errs.push(FieldError::required(path.child("imagePullPolicy"), "")),
        Some(p) => errs.push(FieldError::not_supported(
            path.child("imagePullPolicy"),
            p,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    match ctr.get("terminationMessagePolicy").and_then(Value::as_str) {
        None | Some("File") | Some("FallbackToLogsOnError") => {}
        Some(p) => errs.push(FieldError::not_supported(
            path.child("terminationMessagePolicy"),
            p,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_ports(ctr, &path.child("ports")));
    for (i, e) in arr(ctr, "env").iter().enumerate() {
        if s(e, "name").is_empty() {
            errs.push(FieldError::required(
                path.child("env").index(i).child("name"),
                "",
            ));
        }
    }
    for (i, m) in arr(ctr, "volumeMounts").iter().enumerate() {
        let p = path.child("volumeMounts").index(i);
        let n = s(m, "name");
        if n.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else if !volumes.contains(n) {
            errs.push(FieldError::not_found(p.child("name"), n));
        }
        if s(m, "mountPath").is_empty() {
            errs.push(FieldError::required(p.child("mountPath"), ""));
        }
    }
    errs.extend(validate_resources(ctr, &path.child("resources")));
}

/// Upstream `ValidatePodSpec` (the parts ferrokube checks) at `path` (`spec` for a pod,
/// `spec.template.spec` for a template).
pub fn validate_pod_spec(spec: &Value, path: &Path) -> Vec<FieldError> {
    let (volumes, mut errs) = validate_volumes(spec, &path.child("volumes"));
    let cpath = path.child("containers");
    let containers = arr(spec, "containers");
    let mut names: HashSet<&str> = HashSet::new();
    if containers.is_empty() {
        errs.push(FieldError::required(cpath.clone(), ""));
    }
    for (i, c) in containers.iter().enumerate() {
        let p = cpath.index(i);
        validate_container(c, &p, &volumes, &mut errs);
        let n = s(c, "name");
        if !n.is_empty() && !names.insert(n) {
            errs.push(FieldError::duplicate(p.child("name"), n));
        }
    }
    let ipath = path.child("initContainers");
    for (i, c) in arr(spec, "initContainers").iter().enumerate() {
        let p = ipath.index(i);
        validate_container(c, &p, &volumes, &mut errs);
        let n = s(c, "name");
        if !n.is_empty() && !names.insert(n) {
            errs.push(FieldError::duplicate(p.child("name"), n));
        }
    }
    match spec.get("restartPolicy").and_then(Value::as_str) {
        None | Some("Always") | Some("OnFailure") | Some("Never") => {}
        Some("") => errs.push(FieldError::required(path.child("restartPolicy"), "")),
        Some(p) => errs.push(FieldError::not_supported(
            path.child("restartPolicy"),
            p,
            &["Always", "OnFailure", "Never"],
        )),
    }
    match spec.get("dnsPolicy").and_then(Value::as_str) {
        None
        | Some("ClusterFirst")
        | Some("ClusterFirstWithHostNet")
        | Some("Default")
        | Some("None") => {}
        Some(p) => errs.push(FieldError::not_supported(
            path.child("dnsPolicy"),
            p,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        )),
    }
    errs.extend(validate_labels(
        spec.get("nodeSelector"),
        &path.child("nodeSelector"),
    ));
    let sa = s(spec, "serviceAccountName");
    if !sa.is_empty() {
        for m in is_dns1123_subdomain(sa) {
            errs.push(FieldError::invalid(
                path.child("serviceAccountName"),
                sa,
                &m,
            ));
        }
    }
    for f in ["hostname", "subdomain"] {
        let v = s(spec, f);
        if !v.is_empty() {
            errs.extend(dns_label_errs(v, path.child(f)));
        }
    }
    if let Some(a) = int(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&a)
    {
        errs.push(FieldError::invalid(
            path.child("activeDeadlineSeconds"),
            a,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    for (i, t) in arr(spec, "tolerations").iter().enumerate() {
        let p = path.child("tolerations").index(i);
        match s(t, "operator") {
            "" | "Equal" => {}
            "Exists" => {
                if !s(t, "value").is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        t.clone(),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            o => errs.push(FieldError::not_supported(
                p.child("operator"),
                o,
                &["Equal", "Exists"],
            )),
        }
        match s(t, "effect") {
            "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            e => errs.push(FieldError::not_supported(
                p.child("effect"),
                e,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
    }
    errs.extend(nonnegative(spec, "terminationGracePeriodSeconds", path));
    errs
}

/// Upstream `ValidatePod` minus object metadata (validated generically): the spec, plus the
/// pod-only rule that images have no surrounding whitespace.
pub fn validate_pod(pod: &Value) -> Vec<FieldError> {
    let spec_path = Path::new("spec");
    let spec = get(pod, "spec");
    let mut errs = validate_pod_spec(spec, &spec_path);
    for (i, c) in arr(spec, "containers").iter().enumerate() {
        let img = s(c, "image");
        if img.len() != img.trim().len() {
            errs.push(FieldError::invalid(
                spec_path.child("containers").index(i).child("image"),
                img,
                "must not have leading or trailing whitespace",
            ));
        }
    }
    errs
}

/// Upstream `ValidatePodTemplateSpec` at `path` (e.g. `spec.template`): template labels and
/// annotations, then the pod spec.
pub fn validate_pod_template_spec(template: &Value, path: &Path) -> Vec<FieldError> {
    let meta = get(template, "metadata");
    let mp = path.child("metadata");
    let mut errs = validate_labels(meta.get("labels"), &mp.child("labels"));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        &mp.child("annotations"),
    ));
    errs.extend(validate_pod_spec(
        get(template, "spec"),
        &path.child("spec"),
    ));
    errs
}

/// The spec with the fields `ValidatePodUpdate` lets change blanked out.
fn munged_spec(spec: &Value, old_tolerations: Option<&Value>) -> Value {
    let mut m = spec.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove("activeDeadlineSeconds");
        o.remove("terminationGracePeriodSeconds");
        // Checked apart: gates may only be removed.
        o.remove("schedulingGates");
        // Tolerations may only be added to: compare the old prefix.
        match (
            o.get("tolerations").and_then(Value::as_array),
            old_tolerations,
        ) {
            (Some(new), Some(Value::Array(old))) if new.len() >= old.len() => {
                let prefix = Value::Array(new[..old.len()].to_vec());
                o.insert("tolerations".into(), prefix);
            }
            (Some(new), None) if !new.is_empty() => {
                o.remove("tolerations");
            }
            _ => {}
        }
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = o.get_mut(list) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
    }
    m
}

/// Upstream `ValidatePodUpdate` (spec part): only images, `activeDeadlineSeconds`,
/// toleration additions and `terminationGracePeriodSeconds` may change.
pub fn validate_pod_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_pod(new);
    let (ns, os) = (get(new, "spec"), get(old, "spec"));
    let mut old_m = munged_spec(os, None);
    if let (Some(o), Some(t)) = (old_m.as_object_mut(), os.get("tolerations")) {
        o.insert("tolerations".into(), t.clone());
    }
    if munged_spec(ns, os.get("tolerations")) != old_m {
        errs.push(FieldError::forbidden("spec", POD_UPDATE_FORBIDDEN_MSG));
    }
    errs.extend(only_deleted_scheduling_gates(ns, os));
    errs
}

/// Upstream `validateOnlyDeletedSchedulingGates`: scheduling gates may be removed, never added.
fn only_deleted_scheduling_gates(new: &Value, old: &Value) -> Vec<FieldError> {
    let names = |spec: &Value| -> Vec<String> {
        spec.get("schedulingGates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|g| {
                g.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    // A set: both lists come from the client, and a quadratic scan of two long ones would be a
    // way to burn the server's CPU.
    let before: std::collections::HashSet<String> = names(old).into_iter().collect();
    names(new)
        .into_iter()
        .enumerate()
        .filter(|(_, n)| !before.contains(n))
        .map(|(i, n)| {
            FieldError::forbidden(
                format!("spec.schedulingGates[{i}].name"),
                &format!("only deletion is allowed, but found new scheduling gate '{n}'"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn scheduling_gates_may_only_be_removed() {
        let pod = |gates: Value| json!({"spec": {"containers": [{"name": "c", "image": "i"}], "schedulingGates": gates}});
        let one = pod(json!([{"name": "g1"}]));
        assert_eq!(
            msgs(&validate_pod_update(
                &pod(json!([{"name": "g1"}, {"name": "g2"}])),
                &one
            )),
            vec![
                "spec.schedulingGates[1].name: Forbidden: only deletion is allowed, but found new scheduling gate 'g2'"
            ]
        );
        assert!(validate_pod_update(&pod(json!([])), &one).is_empty());
        assert!(validate_pod_update(&pod(json!(null)), &one).is_empty());
    }

    #[test]
    fn containers() {
        let pod = json!({"spec": {"containers": [
            {"name": "", "image": "nginx"},
            {"name": "a", "image": "nginx", "imagePullPolicy": "Sometimes",
             "ports": [{"containerPort": 70000, "protocol": "ICMP"}]},
            {"name": "a", "image": ""},
        ]}});
        assert_eq!(
            msgs(&validate_pod(&pod)),
            vec![
                "spec.containers[0].name: Required value",
                "spec.containers[1].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                "spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[1].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[2].image: Required value",
                "spec.containers[2].name: Duplicate value: \"a\"",
            ]
        );
        assert_eq!(
            msgs(&validate_pod(&json!({"spec": {}}))),
            vec!["spec.containers: Required value"]
        );
    }

    #[test]
    fn spec_fields() {
        let pod = json!({"spec": {"restartPolicy": "Sometimes",
            "volumes": [{"name": "v"}],
            "containers": [{"name": "c", "image": "i",
                "volumeMounts": [{"name": "w", "mountPath": "/x"}],
                "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}});
        assert_eq!(
            msgs(&validate_pod(&pod)),
            vec![
                "spec.containers[0].volumeMounts[0].name: Not found: \"w\"",
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
    }

    #[test]
    fn template_paths() {
        let t = json!({"metadata": {"labels": {"app": "-x-"}}, "spec": {"containers": [{"image": "i"}]}});
        let errs = validate_pod_template_spec(&t, &Path::new("spec").child("template"));
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.template.metadata.labels",
                "spec.template.spec.containers[0].name"
            ]
        );
    }

    #[test]
    fn updates() {
        let old = json!({"spec": {"containers": [{"name": "c", "image": "a"}],
            "tolerations": [{"key": "k", "operator": "Exists"}]}});
        let image = json!({"spec": {"containers": [{"name": "c", "image": "b"}],
            "activeDeadlineSeconds": 30,
            "tolerations": [{"key": "k", "operator": "Exists"}, {"key": "j", "operator": "Exists"}]}});
        assert!(validate_pod_update(&image, &old).is_empty());
        let renamed = json!({"spec": {"containers": [{"name": "d", "image": "a"}],
            "tolerations": [{"key": "k", "operator": "Exists"}]}});
        assert_eq!(
            msgs(&validate_pod_update(&renamed, &old)),
            vec![format!("spec: Forbidden: {POD_UPDATE_FORBIDDEN_MSG}")]
        );
        let removed = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        assert_eq!(validate_pod_update(&removed, &old).len(), 1);
    }
}

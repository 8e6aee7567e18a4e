//! Core (v1) kinds other than pods: upstream `pkg/apis/core/validation/validation.go`
//! (`ValidateService`, `ValidateServiceUpdate`, `ValidateConfigMap`, `ValidateSecret`,
//! `ValidatePersistentVolumeClaim`, `ValidateNode` taints) and `events.go`
//! (`legacyValidateEvent`).

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use super::field::{FieldError, Path};
use super::helpers::{
    arr, get, int, is_valid_port_name, is_valid_port_num, obj, parse_quantity, quantity_text, s,
    validate_label_selector,
};
use super::meta::validate_labels;
use super::meta_update::FIELD_IMMUTABLE_ERROR_MSG;
use super::names::{
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, max_len_error, regex_error,
};
use super::pod::validate_protocol;

/// Upstream `core.MaxSecretSize` (also the ConfigMap limit): 1 MiB.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Upstream `IsConfigMapKey` (also used for Secret keys).
pub fn is_config_map_key(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push(max_len_error(253));
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if key == "." {
        errs.push("must not be '.'".into());
    } else if key == ".." {
        errs.push("must not be '..'".into());
    } else if key.starts_with("..") {
        errs.push("must not start with '..'".into());
    }
    errs
}

fn is_valid_ip(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok()
}

/// Upstream `ValidateService` (spec part).
pub fn validate_service(svc: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(svc, "spec");
    let mut errs = Vec::new();
    let ty = s(spec, "type");
    let headless = s(spec, "clusterIP") == "None";
    let ports = arr(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(sp.child("ports"), ""));
    }
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = sp.child("ports").index(i);
        let name = s(port, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else if !name.is_empty() {
            for m in is_dns1123_label(name) {
                errs.push(FieldError::invalid(p.child("name"), name, &m));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        let n = int(port, "port").unwrap_or(0);
        for m in is_valid_port_num(n) {
            errs.push(FieldError::invalid(p.child("port"), n, &m));
        }
        errs.extend(validate_protocol(port, &p));
        match port.get("targetPort") {
            Some(Value::Number(t)) => {
                let t = t.as_i64().unwrap_or(0);
                if t != 0 {
                    for m in is_valid_port_num(t) {
                        errs.push(FieldError::invalid(p.child("targetPort"), t, &m));
                    }
                }
            }
            Some(Value::String(t)) => {
                for m in is_valid_port_name(t) {
                    errs.push(FieldError::invalid(p.child("targetPort"), t.as_str(), &m));
                }
            }
            _ => {}
        }
        if let Some(np) = int(port, "nodePort").filter(|n| *n != 0) {
            if ty == "ClusterIP" || ty.is_empty() {
                errs.push(FieldError::forbidden(
                    p.child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else {
                for m in is_valid_port_num(np) {
                    errs.push(FieldError::invalid(p.child("nodePort"), np, &m));
                }
            }
        }
    }
    match ty {
        "" | "ClusterIP" | "NodePort" | "LoadBalancer" => {}
        "ExternalName" => {
            let en = s(spec, "externalName");
            if en.is_empty() {
                errs.push(FieldError::required(sp.child("externalName"), ""));
            }
        }
        t => errs.push(FieldError::not_supported(
            sp.child("type"),
            t,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    let mut ips: Vec<&str> = arr(spec, "clusterIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let primary = s(spec, "clusterIP");
    if !primary.is_empty() && ips.first() != Some(&primary) {
        ips.insert(0, primary);
    }
    for (i, ip) in ips.iter().enumerate() {
        if (*ip == "None" && i == 0) || ip.is_empty() {
            continue;
        }
        if !is_valid_ip(ip) {
            errs.push(FieldError::invalid(
                sp.child("clusterIPs").index(i),
                *ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        None | Some("None") | Some("ClientIP") => {}
        Some(a) => errs.push(FieldError::not_supported(
            sp.child("sessionAffinity"),
            a,
            &["ClientIP", "None"],
        )),
    }
    errs.extend(validate_labels(spec.get("selector"), &sp.child("selector")));
    errs
}

/// Upstream `ValidateServiceUpdate`: the primary cluster IP may not change (except to or from
/// ExternalName).
pub fn validate_service_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_service(new);
    let primary = |v: &Value| {
        let spec = get(v, "spec");
        let ip = s(spec, "clusterIP");
        if ip.is_empty() {
            arr(spec, "clusterIPs")
                .first()
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        } else {
            ip.to_string()
        }
    };
    let (n, o) = (primary(new), primary(old));
    let external = |v: &Value| s(get(v, "spec"), "type") == "ExternalName";
    if !external(new) && !external(old) && !o.is_empty() && !n.is_empty() && n != o {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            Value::Array(vec![Value::String(n)]),
            "may not change once set",
        ));
    }
    errs
}

/// Upstream `ValidateConfigMap` (keys, duplicates across data/binaryData, total size).
pub fn validate_config_map(cm: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (bag, other, dup_msg) in [
        (
            "data",
            "binaryData",
            "duplicate of key present in binaryData",
        ),
        ("binaryData", "data", "duplicate of key present in data"),
    ] {
        let Some(m) = obj(cm, bag) else { continue };
        for (k, v) in m {
            let p = Path::new(bag).key(k);
            for msg in is_config_map_key(k) {
                errs.push(FieldError::invalid(p.clone(), k.as_str(), &msg));
            }
            if obj(cm, other).is_some_and(|o| o.contains_key(k)) {
                errs.push(FieldError::invalid(p, k.as_str(), dup_msg));
            }
            total += v.as_str().map_or(0, str::len);
        }
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
    errs
}

/// Upstream's rule for objects with `immutable: true` (ConfigMaps and Secrets).
fn immutable_data(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    let msg = "field is immutable when `immutable` is set";
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", msg));
    }
    for f in ["data", "binaryData"] {
        if new.get(f) != old.get(f) {
            errs.push(FieldError::forbidden(f, msg));
        }
    }
    errs
}

/// Upstream `ValidateConfigMapUpdate`.
pub fn validate_config_map_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = immutable_data(new, old);
    errs.extend(validate_config_map(new));
    errs
}

/// Upstream `ValidateSecret`: keys, size and the per-type required keys.
pub fn validate_secret(secret: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let dp = Path::new("data");
    let data = obj(secret, "data");
    let mut total = 0usize;
    if let Some(d) = data {
        for (k, v) in d {
            for msg in is_config_map_key(k) {
                errs.push(FieldError::invalid(dp.key(k), k.as_str(), &msg));
            }
            // Stored base64: the decoded size is about three quarters.
            total += v.as_str().map_or(0, |s| s.len() / 4 * 3);
        }
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let require = |k: &str, errs: &mut Vec<FieldError>| {
        if !has(k) {
            errs.push(FieldError::required(dp.key(k), ""));
        }
    };
    match s(secret, "type") {
        "kubernetes.io/service-account-token" => {
            let ann = get(get(secret, "metadata"), "annotations");
            if s(ann, "kubernetes.io/service-account.name").is_empty() {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => require(".dockercfg", &mut errs),
        "kubernetes.io/dockerconfigjson" => require(".dockerconfigjson", &mut errs),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            require("username", &mut errs);
            require("password", &mut errs);
        }
        "kubernetes.io/ssh-auth" => require("ssh-privatekey", &mut errs),
        "kubernetes.io/tls" => {
            require("tls.key", &mut errs);
            require("tls.crt", &mut errs);
        }
        _ => {}
    }
    errs
}

/// Upstream `ValidateSecretUpdate`: the type is immutable, so is the data of immutable secrets.
pub fn validate_secret_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (n, o) = (s(new, "type"), s(old, "type"));
    if n != o {
        errs.push(FieldError::invalid("type", n, FIELD_IMMUTABLE_ERROR_MSG));
    }
    errs.extend(immutable_data(new, old));
    errs.extend(validate_secret(new));
    errs
}

/// Upstream `ValidatePersistentVolumeClaimSpec`.
pub fn validate_pvc(pvc: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(pvc, "spec");
    let mut errs = Vec::new();
    let modes = arr(spec, "accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required(
            sp.child("accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !matches!(
            m,
            "ReadOnlyMany" | "ReadWriteMany" | "ReadWriteOnce" | "ReadWriteOncePod"
        ) {
            errs.push(FieldError::not_supported(
                sp.child("accessModes"),
                m,
                &[
                    "ReadOnlyMany",
                    "ReadWriteMany",
                    "ReadWriteOnce",
                    "ReadWriteOncePod",
                ],
            ));
        }
    }
    let sel = get(spec, "selector");
    if !sel.is_null() {
        errs.extend(validate_label_selector(sel, &sp.child("selector")));
    }
    let storage_path = sp.child("resources").key("storage");
    match get(get(get(spec, "resources"), "requests"), "storage") {
        Value::Null => errs.push(FieldError::required(storage_path, "")),
        v => {
            if let Some(q) = quantity_text(v)
                && let Some(n) = parse_quantity(&q)
            {
                if n < 0.0 {
                    errs.push(FieldError::invalid(
                        storage_path.clone(),
                        q.as_str(),
                        super::helpers::IS_NEGATIVE_ERROR_MSG,
                    ));
                }
                if n <= 0.0 {
                    errs.push(FieldError::invalid(
                        storage_path,
                        q.as_str(),
                        "must be greater than zero",
                    ));
                }
            }
        }
    }
    match spec.get("volumeMode").and_then(Value::as_str) {
        None | Some("Block") | Some("Filesystem") => {}
        Some(m) => errs.push(FieldError::not_supported(
            sp.child("volumeMode"),
            m,
            &["Block", "Filesystem"],
        )),
    }
    errs
}

/// Upstream `ValidatePersistentVolumeClaimUpdate`: the spec is immutable except
/// `resources.requests` (bound claims) and `volumeAttributesClassName`.
pub fn validate_pvc_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_pvc(new);
    let bound = new.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    let strip = |v: &Value| {
        let mut spec = get(v, "spec").clone();
        if let Some(m) = spec.as_object_mut() {
            m.remove("volumeAttributesClassName");
            if bound {
                m.remove("resources");
            }
        }
        spec
    };
    if strip(new) != strip(old) {
        errs.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    errs
}

/// Upstream `ValidateNode` (taints).
pub fn validate_node(node: &Value) -> Vec<FieldError> {
    let tp = Path::new("spec").child("taints");
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, t) in arr(get(node, "spec"), "taints").iter().enumerate() {
        let p = tp.index(i);
        let key = s(t, "key");
        for m in is_qualified_name(key) {
            errs.push(FieldError::invalid(p.child("key"), key, &m));
        }
        let effect = s(t, "effect");
        match effect {
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            "" => errs.push(FieldError::required(p.child("effect"), "")),
            e => errs.push(FieldError::not_supported(
                p.child("effect"),
                e,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
        if !seen.insert((key, effect)) {
            errs.push(FieldError::duplicate(p, format!("{key}:{effect}")));
        }
    }
    errs
}

/// Upstream `legacyValidateEvent` for core/v1 Events.
pub fn validate_event(ev: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = s(get(ev, "metadata"), "namespace");
    let io_ns = s(get(ev, "involvedObject"), "namespace");
    let mismatch = || {
        FieldError::invalid(
            Path::new("involvedObject").child("namespace"),
            io_ns,
            "does not match event.namespace",
        )
    };
    let event_time = ev.get("eventTime").is_some_and(|t| !t.is_null());
    if !event_time {
        if io_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != io_ns {
            errs.push(mismatch());
        }
    } else {
        if io_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let rc = s(ev, "reportingComponent");
        if rc.is_empty() {
            errs.push(FieldError::required("reportingComponent", ""));
        } else {
            for m in is_qualified_name(rc) {
                errs.push(FieldError::invalid("reportingComponent", rc, &m));
            }
        }
        for f in ["reportingInstance", "action", "reason"] {
            let v = s(ev, f);
            if v.is_empty() {
                errs.push(FieldError::required(f, ""));
            } else if v.len() > 128 {
                errs.push(FieldError::invalid(
                    f,
                    "",
                    "can have at most 128 characters",
                ));
            }
        }
        if s(ev, "message").len() > 4096 {
            errs.push(FieldError::invalid(
                "message",
                "",
                "can have at most 4096 characters",
            ));
        }
    }
    for m in is_dns1123_subdomain(ns) {
        errs.push(FieldError::invalid("namespace", ns, &m));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn services() {
        let svc = json!({"spec": {"type": "Magic", "clusterIP": "banana",
            "ports": [{"port": 0, "name": "a"}, {"port": 80}]}});
        assert_eq!(
            msgs(&validate_service(&svc)),
            vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[1].name: Required value",
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                "spec.clusterIPs[0]: Invalid value: \"banana\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ]
        );
        assert_eq!(
            msgs(&validate_service(&json!({"spec": {}}))),
            vec!["spec.ports: Required value"]
        );
        let old = json!({"spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 80}]}});
        let new = json!({"spec": {"clusterIP": "10.0.0.2", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 80}]}});
        assert_eq!(
            msgs(&validate_service_update(&new, &old)),
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.2\"}: may not change once set"
            ]
        );
    }

    #[test]
    fn config_maps_and_secrets() {
        let cm = json!({"data": {"a b": "x", "k": "v"}, "binaryData": {"k": "dg=="}});
        let fields: Vec<String> = validate_config_map(&cm)
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(fields, vec!["data[a b]", "data[k]", "binaryData[k]"]);
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(
            msgs(&validate_secret(&tls)),
            vec!["data[tls.key]: Required value"]
        );
        let old = json!({"immutable": true, "data": {"a": "b"}});
        let new = json!({"immutable": true, "data": {"a": "c"}});
        assert_eq!(
            msgs(&validate_config_map_update(&new, &old)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
    }

    #[test]
    fn claims_nodes_events() {
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "0"}}}});
        assert_eq!(
            msgs(&validate_pvc(&pvc)),
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
            ]
        );
        let node = json!({"spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}});
        assert_eq!(validate_node(&node)[0].field, "spec.taints[0].effect");
        let ev =
            json!({"metadata": {"namespace": "default"}, "involvedObject": {"namespace": "other"}});
        assert_eq!(
            msgs(&validate_event(&ev)),
            vec![
                "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"
            ]
        );
    }
}

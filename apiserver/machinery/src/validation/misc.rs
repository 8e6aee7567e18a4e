//! Ingress (`pkg/apis/networking/validation`), PodDisruptionBudget (`pkg/apis/policy/validation`),
//! HorizontalPodAutoscaler (`pkg/apis/autoscaling/validation`), RBAC (`pkg/apis/rbac/validation`)
//! and Lease (`pkg/apis/coordination/validation`).

use serde_json::Value;

use super::field::{FieldError, Path};
use super::helpers::{
    arr, get, int, int_or_percent, is_valid_port_name, is_valid_port_num, s,
    validate_label_selector,
};
use super::names::{is_dns1035_label, is_dns1123_subdomain, validate_path_segment_name};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn validate_ingress_backend(b: &Value, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let svc = b.get("service").filter(|v| !v.is_null());
    let res = b.get("resource").filter(|v| !v.is_null());
    match (svc, res) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            p.clone(),
            "",
            "cannot set both resource and service backends",
        )),
        (None, Some(r)) => {
            let rp = p.child("resource");
            for f in ["kind", "name"] {
                if s(r, f).is_empty() {
                    errs.push(FieldError::required(rp.child(f), ""));
                }
            }
        }
        (Some(svc), None) => {
            let name = s(svc, "name");
            let sp = p.child("service");
            if name.is_empty() {
                errs.push(FieldError::required(sp.child("name"), ""));
            } else {
                for m in is_dns1035_label(name) {
                    errs.push(FieldError::invalid(sp.child("name"), name, &m));
                }
            }
            let port = get(svc, "port");
            let pname = s(port, "name");
            let pnum = int(port, "number").unwrap_or(0);
            match (!pname.is_empty(), pnum != 0) {
                (true, true) => errs.push(FieldError::invalid(
                    p.clone(),
                    "",
                    "cannot set both port name & port number",
                )),
                (true, false) => {
                    for m in is_valid_port_name(pname) {
                        errs.push(FieldError::invalid(
                            sp.child("port").child("name"),
                            pname,
                            &m,
                        ));
                    }
                }
                (false, true) => {
                    for m in is_valid_port_num(pnum) {
                        errs.push(FieldError::invalid(
                            sp.child("port").child("number"),
                            pnum,
                            &m,
                        ));
                    }
                }
                (false, false) => errs.push(FieldError::required(
                    p.clone(),
                    "port name or number is required",
                )),
            }
        }
        (None, None) => errs.push(FieldError::invalid(
            p.clone(),
            "",
            "resource or service backend is required",
        )),
    }
    errs
}

fn validate_ingress_path(path: &Value, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(pt) = path.get("pathType").and_then(Value::as_str) else {
        errs.push(FieldError::required(
            p.child("pathType"),
            "pathType must be specified",
        ));
        return errs;
    };
    let pth = s(path, "path");
    match pt {
        "Exact" | "Prefix" => {
            if !pth.starts_with('/') {
                errs.push(FieldError::invalid(
                    p.child("path"),
                    pth,
                    "must be an absolute path",
                ));
            }
            for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                if pth.contains(seq) {
                    errs.push(FieldError::invalid(
                        p.child("path"),
                        pth,
                        &format!("must not contain '{seq}'"),
                    ));
                }
            }
            for suf in ["/..", "/."] {
                if pth.ends_with(suf) {
                    errs.push(FieldError::invalid(
                        p.child("path"),
                        pth,
                        &format!("cannot end with '{suf}'"),
                    ));
                }
            }
        }
        "ImplementationSpecific" => {
            if !pth.is_empty() && !pth.starts_with('/') {
                errs.push(FieldError::invalid(
                    p.child("path"),
                    pth,
                    "must be an absolute path",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            p.child("pathType"),
            other,
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    errs.extend(validate_ingress_backend(
        get(path, "backend"),
        &p.child("backend"),
    ));
    errs
}

/// Upstream `ValidateIngressSpec`.
pub fn validate_ingress(ing: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(ing, "spec");
    let mut errs = Vec::new();
    let rules = arr(spec, "rules");
    let default_backend = spec.get("defaultBackend").filter(|v| !v.is_null());
    if rules.is_empty() && default_backend.is_none() {
        errs.push(FieldError::invalid(
            sp.clone(),
            Value::Null,
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        errs.extend(validate_ingress_backend(b, &sp.child("defaultBackend")));
    }
    for (i, r) in rules.iter().enumerate() {
        let rp = sp.child("rules").index(i);
        let host = s(r, "host");
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.push(FieldError::invalid(
                    rp.child("host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            } else {
                let check = host.strip_prefix("*.").unwrap_or(host);
                for m in is_dns1123_subdomain(check) {
                    errs.push(FieldError::invalid(rp.child("host"), host, &m));
                }
            }
        }
        if let Some(http) = r.get("http").filter(|v| !v.is_null()) {
            let hp = rp.child("http");
            let paths = arr(http, "paths");
            if paths.is_empty() {
                errs.push(FieldError::required(hp.child("paths"), ""));
            }
            for (j, p) in paths.iter().enumerate() {
                errs.extend(validate_ingress_path(p, &hp.child("paths").index(j)));
            }
        }
    }
    for (i, t) in arr(spec, "tls").iter().enumerate() {
        for (j, h) in arr(t, "hosts").iter().enumerate() {
            let h = h.as_str().unwrap_or("");
            let check = h.strip_prefix("*.").unwrap_or(h);
            for m in is_dns1123_subdomain(check) {
                errs.push(FieldError::invalid(
                    sp.child("tls").index(i).child("hosts").index(j),
                    h,
                    &m,
                ));
            }
        }
    }
    if let Some(c) = spec.get("ingressClassName").and_then(Value::as_str) {
        for m in is_dns1123_subdomain(c) {
            errs.push(FieldError::invalid(sp.child("ingressClassName"), c, &m));
        }
    }
    errs
}

/// Upstream `ValidatePodDisruptionBudgetSpec`.
pub fn validate_pdb(pdb: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(pdb, "spec");
    let mut errs = Vec::new();
    let set = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
    if set("minAvailable") && set("maxUnavailable") {
        errs.push(FieldError::invalid(
            sp.clone(),
            spec.clone(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    errs.extend(int_or_percent(spec, "minAvailable", &sp));
    errs.extend(int_or_percent(spec, "maxUnavailable", &sp));
    let sel = get(spec, "selector");
    if !sel.is_null() {
        errs.extend(validate_label_selector(sel, &sp.child("selector")));
    }
    match spec
        .get("unhealthyPodEvictionPolicy")
        .and_then(Value::as_str)
    {
        None | Some("AlwaysAllow") | Some("IfHealthyBudget") => {}
        Some(p) => errs.push(FieldError::not_supported(
            sp.child("unhealthyPodEvictionPolicy"),
            p,
            &["AlwaysAllow", "IfHealthyBudget"],
        )),
    }
    errs
}

/// Upstream `ValidateHorizontalPodAutoscalerSpec` (replica bounds and the target reference).
pub fn validate_hpa(hpa: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(hpa, "spec");
    let mut errs = Vec::new();
    let min = int(spec, "minReplicas");
    let max = int(spec, "maxReplicas").unwrap_or(0);
    if let Some(m) = min
        && m < 1
    {
        errs.push(FieldError::invalid(
            sp.child("minReplicas"),
            m,
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        errs.push(FieldError::invalid(
            sp.child("maxReplicas"),
            max,
            "must be greater than 0",
        ));
    }
    if let Some(m) = min
        && max < m
    {
        errs.push(FieldError::invalid(
            sp.child("maxReplicas"),
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let r = get(spec, "scaleTargetRef");
    let rp = sp.child("scaleTargetRef");
    for f in ["kind", "name"] {
        let v = s(r, f);
        if v.is_empty() {
            errs.push(FieldError::required(rp.child(f), ""));
        } else {
            for m in validate_path_segment_name(v, false) {
                errs.push(FieldError::invalid(rp.child(f), v, &m));
            }
        }
    }
    errs
}

fn strings(v: &Value, key: &str) -> Vec<Value> {
    arr(v, key).to_vec()
}

fn validate_policy_rule(rule: &Value, namespaced: bool, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if arr(rule, "verbs").is_empty() {
        errs.push(FieldError::required(
            p.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = strings(rule, "nonResourceURLs");
    if !urls.is_empty() {
        if namespaced {
            errs.push(FieldError::invalid(
                p.child("nonResourceURLs"),
                Value::Array(urls.clone()),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !arr(rule, "apiGroups").is_empty()
            || !arr(rule, "resources").is_empty()
            || !arr(rule, "resourceNames").is_empty()
        {
            errs.push(FieldError::invalid(
                p.child("nonResourceURLs"),
                Value::Array(urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return errs;
    }
    if arr(rule, "apiGroups").is_empty() {
        errs.push(FieldError::required(
            p.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if arr(rule, "resources").is_empty() {
        errs.push(FieldError::required(
            p.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
    errs
}

/// Upstream `ValidateRole` / `ValidateClusterRole` (rules).
pub fn validate_role(role: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, r) in arr(role, "rules").iter().enumerate() {
        errs.extend(validate_policy_rule(
            r,
            namespaced,
            &Path::new("rules").index(i),
        ));
    }
    errs
}

/// Upstream `ValidateRoleBinding` / `ValidateClusterRoleBinding`.
pub fn validate_role_binding(rb: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rr = get(rb, "roleRef");
    let rp = Path::new("roleRef");
    let group = s(rr, "apiGroup");
    if group != RBAC_GROUP {
        errs.push(FieldError::not_supported(
            rp.child("apiGroup"),
            group,
            &[RBAC_GROUP],
        ));
    }
    let kind = s(rr, "kind");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        errs.push(FieldError::not_supported(rp.child("kind"), kind, kinds));
    }
    let name = s(rr, "name");
    if name.is_empty() {
        errs.push(FieldError::required(rp.child("name"), ""));
    } else {
        for m in validate_path_segment_name(name, false) {
            errs.push(FieldError::invalid(rp.child("name"), name, &m));
        }
    }
    for (i, sub) in arr(rb, "subjects").iter().enumerate() {
        let p = Path::new("subjects").index(i);
        let n = s(sub, "name");
        if n.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        let g = s(sub, "apiGroup");
        match s(sub, "kind") {
            "ServiceAccount" => {
                if !n.is_empty() {
                    for m in is_dns1123_subdomain(n) {
                        errs.push(FieldError::invalid(p.child("name"), n, &m));
                    }
                }
                if !g.is_empty() {
                    errs.push(FieldError::not_supported(p.child("apiGroup"), g, &[""]));
                }
                if !namespaced && s(sub, "namespace").is_empty() {
                    errs.push(FieldError::required(p.child("namespace"), ""));
                }
            }
            "User" | "Group" => {
                if g != RBAC_GROUP {
                    errs.push(FieldError::not_supported(
                        p.child("apiGroup"),
                        g,
                        &[RBAC_GROUP],
                    ));
                }
            }
            k => errs.push(FieldError::not_supported(
                p.child("kind"),
                k,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    errs
}

/// Upstream `ValidateRoleBindingUpdate`: `roleRef` may not change.
pub fn validate_role_binding_update(new: &Value, old: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errs = validate_role_binding(new, namespaced);
    if new.get("roleRef") != old.get("roleRef") {
        errs.push(FieldError::invalid(
            "roleRef",
            get(new, "roleRef").clone(),
            "cannot change roleRef",
        ));
    }
    errs
}

/// Upstream `ValidateLeaseSpec`.
pub fn validate_lease(lease: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(lease, "spec");
    let mut errs = Vec::new();
    if let Some(d) = int(spec, "leaseDurationSeconds")
        && d <= 0
    {
        errs.push(FieldError::invalid(
            sp.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = int(spec, "leaseTransitions")
        && t < 0
    {
        errs.push(FieldError::invalid(
            sp.child("leaseTransitions"),
            t,
            "must be greater than or equal to 0",
        ));
    }
    let strategy = s(spec, "strategy");
    if !s(spec, "preferredHolder").is_empty() && strategy.is_empty() {
        errs.push(FieldError::forbidden(
            sp.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
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
    fn ingress() {
        let ing = json!({"spec": {"rules": [{"host": "Bad_Host", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {}}}},
            {"path": "x", "backend": {}},
            {"path": "x", "pathType": "Exact", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
        ]}}]}});
        let errs = validate_ingress(&ing);
        assert_eq!(
            msgs(&errs)[1..].to_vec(),
            vec![
                "spec.rules[0].http.paths[0].backend: Required value: port name or number is required",
                "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[2].path: Invalid value: \"x\": must be an absolute path",
            ]
        );
        assert_eq!(errs[0].field, "spec.rules[0].host");
    }

    #[test]
    fn policy_autoscaling_lease() {
        let pdb = json!({"spec": {"minAvailable": 1, "maxUnavailable": "120%"}});
        let f: Vec<String> = validate_pdb(&pdb).iter().map(|e| e.field.clone()).collect();
        assert_eq!(f, vec!["spec", "spec.maxUnavailable"]);
        let hpa = json!({"spec": {"minReplicas": 5, "maxReplicas": 2,
            "scaleTargetRef": {"kind": "Deployment", "name": "web"}}});
        assert_eq!(
            msgs(&validate_hpa(&hpa)),
            vec![
                "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"
            ]
        );
        let lease = json!({"spec": {"leaseDurationSeconds": -1, "leaseTransitions": -2}});
        assert_eq!(
            msgs(&validate_lease(&lease)),
            vec![
                "spec.leaseDurationSeconds: Invalid value: -1: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -2: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn rbac() {
        let role = json!({"rules": [{"apiGroups": [""], "resources": ["pods"]},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]});
        assert_eq!(
            msgs(&validate_role(&role, true)),
            vec![
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[1].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
            ]
        );
        let rb = json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Roll", "name": "r"},
            "subjects": [{"kind": "User", "name": "u", "apiGroup": RBAC_GROUP}]});
        assert_eq!(
            msgs(&validate_role_binding(&rb, true)),
            vec![
                "roleRef.kind: Unsupported value: \"Roll\": supported values: \"Role\", \"ClusterRole\""
            ]
        );
        let mut other = rb.clone();
        other["roleRef"]["kind"] = json!("Role");
        assert_eq!(
            validate_role_binding_update(&other, &rb, true)
                .last()
                .map(|e| e.detail.clone()),
            Some("cannot change roleRef".to_string())
        );
    }
}

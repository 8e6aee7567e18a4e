//! Validation of the admissionregistration.k8s.io objects that carry CEL (upstream
//! `pkg/apis/admissionregistration/validation/validation.go`): webhook `matchConditions`,
//! ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding. Expressions are compiled
//! here, so a policy that does not compile is a 422 when written, not a surprise later.

use serde_json::Value;

use super::{Env, MAX_MATCH_CONDITIONS, compile};
use crate::validation::{FieldError, Path, is_dns1123_subdomain, is_qualified_name};

/// Upstream `maxAuditAnnotations`.
const MAX_AUDIT_ANNOTATIONS: usize = 20;
/// Upstream `maxAuditAnnotationValueExpressionLength`.
const MAX_AUDIT_VALUE_EXPRESSION_LEN: usize = 5 * 1024;
const CEL_RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn items<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn compile_error(path: &Path, expr: &str, env: Env<'_>, want_bool: bool) -> Option<FieldError> {
    compile(expr, env, want_bool)
        .err()
        .map(|detail| FieldError::invalid(path, expr, &detail))
}

/// Upstream `validateMatchConditions`.
pub fn validate_match_conditions(list: &[Value], params: bool, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if list.len() > MAX_MATCH_CONDITIONS {
        errs.push(FieldError::too_many(
            path,
            Some(list.len()),
            Some(MAX_MATCH_CONDITIONS),
        ));
        return errs;
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let p = path.index(i);
        let expr = s(c, "expression").trim();
        if expr.is_empty() {
            errs.push(FieldError::required(p.child("expression"), ""));
        } else {
            let env = Env {
                params,
                variables: None,
            };
            errs.extend(compile_error(&p.child("expression"), expr, env, true));
        }
        let name = s(c, "name");
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            for msg in is_qualified_name(name) {
                errs.push(FieldError::invalid(p.child("name"), name, &msg));
            }
            if names.contains(&name) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            } else {
                names.push(name);
            }
        }
    }
    errs
}

/// The `matchConditions` of every webhook of a Validating/MutatingWebhookConfiguration.
pub fn validate_webhook_configuration(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, w) in items(obj, "webhooks").iter().enumerate() {
        let p = Path::new("webhooks").index(i).child("matchConditions");
        errs.extend(validate_match_conditions(
            items(w, "matchConditions"),
            false,
            &p,
        ));
    }
    errs
}

fn is_cel_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !CEL_RESERVED.contains(&name)
}

fn validate_failure_policy(v: Option<&Value>, path: &Path) -> Option<FieldError> {
    match v.and_then(Value::as_str) {
        None => Some(FieldError::required(path, "")),
        Some("Fail" | "Ignore") => None,
        Some(o) => Some(FieldError::not_supported(path, o, &["Fail", "Ignore"])),
    }
}

/// Upstream `validateRuleWithOperations` (the required parts).
fn validate_rule(r: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    const OPS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
    let ops = items(r, "operations");
    if ops.is_empty() {
        errs.push(FieldError::required(path.child("operations"), ""));
    }
    for (i, o) in ops.iter().enumerate() {
        let o = o.as_str().unwrap_or("");
        if !OPS.contains(&o) {
            errs.push(FieldError::not_supported(
                path.child("operations").index(i),
                o,
                OPS,
            ));
        }
    }
    for k in ["apiGroups", "apiVersions", "resources"] {
        if items(r, k).is_empty() {
            errs.push(FieldError::required(path.child(k), ""));
        }
    }
    errs
}

/// Upstream `validateMatchResources`.
fn validate_match_resources(m: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match m.get("matchPolicy").and_then(Value::as_str) {
        None => errs.push(FieldError::required(path.child("matchPolicy"), "")),
        Some("Exact" | "Equivalent") => {}
        Some(o) => errs.push(FieldError::not_supported(
            path.child("matchPolicy"),
            o,
            &["Equivalent", "Exact"],
        )),
    }
    for k in ["namespaceSelector", "objectSelector"] {
        if m.get(k).is_none_or(Value::is_null) {
            errs.push(FieldError::required(path.child(k), ""));
        }
    }
    for k in ["resourceRules", "excludeResourceRules"] {
        for (i, r) in items(m, k).iter().enumerate() {
            errs.extend(validate_rule(r, &path.child(k).index(i)));
        }
    }
    errs
}

/// Upstream `ValidateValidatingAdmissionPolicy` (the spec; metadata is checked apart).
pub fn validate_policy(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    errs.extend(validate_failure_policy(
        spec.get("failurePolicy"),
        &sp.child("failurePolicy"),
    ));
    let params = match spec.get("paramKind").filter(|p| !p.is_null()) {
        Some(pk) => {
            let p = sp.child("paramKind");
            if s(pk, "apiVersion").is_empty() {
                errs.push(FieldError::required(p.child("apiVersion"), ""));
            }
            if s(pk, "kind").is_empty() {
                errs.push(FieldError::required(p.child("kind"), ""));
            }
            true
        }
        None => false,
    };
    match spec.get("matchConstraints").filter(|m| !m.is_null()) {
        None => errs.push(FieldError::required(sp.child("matchConstraints"), "")),
        Some(m) => {
            errs.extend(validate_match_resources(m, &sp.child("matchConstraints")));
            if items(m, "resourceRules").is_empty() {
                errs.push(FieldError::required(
                    sp.child("matchConstraints").child("resourceRules"),
                    "",
                ));
            }
        }
    }
    errs.extend(validate_match_conditions(
        items(spec, "matchConditions"),
        params,
        &sp.child("matchConditions"),
    ));
    let names = validate_variables(spec, &sp, params, &mut errs);
    let env = Env {
        params,
        variables: Some(&names),
    };
    let validations = items(spec, "validations");
    let audits = items(spec, "auditAnnotations");
    if validations.is_empty() && audits.is_empty() {
        let msg = "validations or auditAnnotations must contain at least one item";
        errs.push(FieldError::required(sp.child("validations"), msg));
        errs.push(FieldError::required(sp.child("auditAnnotations"), msg));
        return errs;
    }
    for (i, v) in validations.iter().enumerate() {
        let p = sp.child("validations").index(i);
        let expr = s(v, "expression");
        if expr.trim().is_empty() {
            errs.push(FieldError::required(
                p.child("expression"),
                "expression is not specified",
            ));
        } else {
            errs.extend(compile_error(&p.child("expression"), expr, env, true));
        }
        let me = s(v, "messageExpression");
        if !me.is_empty() && me.trim().is_empty() {
            errs.push(FieldError::invalid(
                p.child("messageExpression"),
                me,
                "must be non-empty if specified",
            ));
        } else if !me.trim().is_empty() {
            errs.extend(compile_error(&p.child("messageExpression"), me, env, false));
        }
        let msg = s(v, "message");
        if !msg.is_empty() && msg.trim().is_empty() {
            errs.push(FieldError::invalid(
                p.child("message"),
                msg,
                "message must be non-empty if specified",
            ));
        } else if msg.trim().contains(['\n', '\r']) {
            errs.push(FieldError::invalid(
                p.child("message"),
                msg,
                "message must not contain line breaks",
            ));
        }
        if let Some(r) = v.get("reason").and_then(Value::as_str) {
            const REASONS: &[&str] = &["Forbidden", "Invalid", "RequestEntityTooLarge"];
            if !REASONS.contains(&r) {
                errs.push(FieldError::not_supported(p.child("reason"), r, REASONS));
            }
        }
    }
    if audits.len() > MAX_AUDIT_ANNOTATIONS {
        errs.push(FieldError::invalid(
            sp.child("auditAnnotations"),
            Value::Array(audits.to_vec()),
            &format!("must not have more than {MAX_AUDIT_ANNOTATIONS} auditAnnotations"),
        ));
    }
    let policy_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut keys: Vec<&str> = Vec::new();
    for (i, a) in audits.iter().enumerate() {
        let p = sp.child("auditAnnotations").index(i);
        let key = s(a, "key");
        if policy_name.is_empty() {
            errs.push(FieldError::invalid(
                p.child("key"),
                key,
                "requires metadata.name be non-empty",
            ));
        } else {
            for msg in is_qualified_name(&format!("{policy_name}/{key}")) {
                errs.push(FieldError::invalid(p.child("key"), key, &msg));
            }
        }
        let ve = s(a, "valueExpression").trim();
        if ve.is_empty() {
            errs.push(FieldError::required(
                p.child("valueExpression"),
                "valueExpression is not specified",
            ));
        } else if ve.len() > MAX_AUDIT_VALUE_EXPRESSION_LEN {
            errs.push(FieldError::required(
                p.child("valueExpression"),
                &format!("must not exceed {MAX_AUDIT_VALUE_EXPRESSION_LEN} bytes in length"),
            ));
        } else {
            errs.extend(compile_error(&p.child("valueExpression"), ve, env, false));
        }
        if keys.contains(&key) {
            errs.push(FieldError::duplicate(p.child("key"), key));
        }
        keys.push(key);
    }
    errs
}

/// Upstream `ValidateValidatingAdmissionPolicyBinding` (the spec).
pub fn validate_binding(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    let policy = s(spec, "policyName");
    if policy.is_empty() {
        errs.push(FieldError::required(sp.child("policyName"), ""));
    } else {
        for msg in is_dns1123_subdomain(policy) {
            errs.push(FieldError::invalid(sp.child("policyName"), policy, &msg));
        }
    }
    if let Some(pr) = spec.get("paramRef").filter(|p| !p.is_null()) {
        errs.extend(validate_param_ref(pr, &sp.child("paramRef")));
    }
    if let Some(m) = spec.get("matchResources").filter(|m| !m.is_null()) {
        errs.extend(validate_match_resources(m, &sp.child("matchResources")));
    }
    let p = sp.child("validationActions");
    let actions = items(spec, "validationActions");
    let mut seen: Vec<&str> = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        let a = a.as_str().unwrap_or("");
        const ACTIONS: &[&str] = &["Audit", "Deny", "Warn"];
        if !ACTIONS.contains(&a) {
            errs.push(FieldError::not_supported(p.index(i), a, ACTIONS));
        }
        if seen.contains(&a) {
            errs.push(FieldError::duplicate(p.index(i), a));
        }
        seen.push(a);
    }
    if seen.contains(&"Deny") && seen.contains(&"Warn") {
        errs.push(FieldError::invalid(
            &p,
            Value::Array(actions.to_vec()),
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        ));
    }
    if seen.is_empty() {
        errs.push(FieldError::required(
            &p,
            "at least one validation action is required",
        ));
    }
    errs
}

/// Upstream `validateParamKind` / the variables of a policy: returns whether `params` is
/// declared and the variable names, pushing errors.
fn validate_variables(
    spec: &Value,
    sp: &Path,
    params: bool,
    errs: &mut Vec<FieldError>,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, v) in items(spec, "variables").iter().enumerate() {
        let p = sp.child("variables").index(i);
        let name = s(v, "name");
        if name.trim().is_empty() {
            errs.push(FieldError::required(
                p.child("name"),
                "name is not specified",
            ));
        } else if !is_cel_identifier(name) {
            errs.push(FieldError::invalid(
                p.child("name"),
                name,
                "name is not a valid CEL identifier",
            ));
        }
        let expr = s(v, "expression");
        if expr.trim().is_empty() {
            errs.push(FieldError::required(
                p.child("expression"),
                "expression is not specified",
            ));
        } else {
            let env = Env {
                params,
                variables: Some(&names),
            };
            errs.extend(compile_error(&p.child("expression"), expr, env, false));
        }
        names.push(name.to_string());
    }
    names
}

/// Upstream `ValidateMutatingAdmissionPolicy` (v1beta1; the spec).
pub fn validate_mutating_policy(obj: &Value) -> Vec<FieldError> {
    use super::mutating::{PatchType, compile_mutation};
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    let params = match spec.get("paramKind").filter(|p| !p.is_null()) {
        Some(pk) => {
            let p = sp.child("paramKind");
            if s(pk, "apiVersion").is_empty() {
                errs.push(FieldError::required(p.child("apiVersion"), ""));
            }
            if s(pk, "kind").is_empty() {
                errs.push(FieldError::required(p.child("kind"), ""));
            }
            true
        }
        None => false,
    };
    match spec.get("matchConstraints").filter(|m| !m.is_null()) {
        None => errs.push(FieldError::required(sp.child("matchConstraints"), "")),
        Some(m) => {
            errs.extend(validate_match_resources(m, &sp.child("matchConstraints")));
            if items(m, "resourceRules").is_empty() {
                errs.push(FieldError::required(
                    sp.child("matchConstraints").child("resourceRules"),
                    "",
                ));
            }
        }
    }
    errs.extend(validate_failure_policy(
        spec.get("failurePolicy"),
        &sp.child("failurePolicy"),
    ));
    match spec.get("reinvocationPolicy").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(sp.child("reinvocationPolicy"), "")),
        Some("Never" | "IfNeeded") => {}
        Some(o) => errs.push(FieldError::not_supported(
            sp.child("reinvocationPolicy"),
            o,
            &["IfNeeded", "Never"],
        )),
    }
    errs.extend(validate_match_conditions(
        items(spec, "matchConditions"),
        params,
        &sp.child("matchConditions"),
    ));
    let names = validate_variables(spec, &sp, params, &mut errs);
    let env = Env {
        params,
        variables: Some(&names),
    };
    let mutations = items(spec, "mutations");
    if mutations.is_empty() {
        errs.push(FieldError::required(
            sp.child("mutations"),
            "mutations must contain at least one item",
        ));
    }
    for (i, m) in mutations.iter().enumerate() {
        let p = sp.child("mutations").index(i);
        let pt = s(m, "patchType");
        if pt.is_empty() {
            errs.push(FieldError::required(p.child("patchType"), ""));
            continue;
        }
        let Some(pt) = PatchType::parse(pt) else {
            errs.push(FieldError::not_supported(
                p.child("patchType"),
                pt,
                &["ApplyConfiguration", "JSONPatch"],
            ));
            continue;
        };
        let (field, other) = match pt {
            PatchType::ApplyConfiguration => ("applyConfiguration", "jsonPatch"),
            PatchType::JsonPatch => ("jsonPatch", "applyConfiguration"),
        };
        let type_name = match pt {
            PatchType::ApplyConfiguration => "ApplyConfiguration",
            PatchType::JsonPatch => "JSONPatch",
        };
        if m.get(other).is_some_and(|v| !v.is_null()) {
            errs.push(FieldError::forbidden(
                p.child(other),
                &format!("must not be specified when patchType is {type_name}"),
            ));
        }
        match m.get(field).filter(|v| !v.is_null()) {
            None => errs.push(FieldError::required(
                p.child(field),
                &format!("must be specified when patchType is {type_name}"),
            )),
            Some(x) => {
                let expr = s(x, "expression");
                let ep = p.child(field).child("expression");
                if expr.trim().is_empty() {
                    errs.push(FieldError::required(ep, ""));
                } else if let Err(detail) = compile_mutation(expr, env, pt) {
                    errs.push(FieldError::invalid(&ep, expr, &detail));
                }
            }
        }
    }
    errs
}

/// Upstream `ValidateMutatingAdmissionPolicyBinding` (v1beta1; the spec): as a
/// ValidatingAdmissionPolicyBinding without `validationActions`.
pub fn validate_mutating_binding(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    let policy = s(spec, "policyName");
    if policy.is_empty() {
        errs.push(FieldError::required(sp.child("policyName"), ""));
    } else {
        for msg in is_dns1123_subdomain(policy) {
            errs.push(FieldError::invalid(sp.child("policyName"), policy, &msg));
        }
    }
    if let Some(pr) = spec.get("paramRef").filter(|p| !p.is_null()) {
        errs.extend(validate_param_ref(pr, &sp.child("paramRef")));
    }
    if let Some(m) = spec.get("matchResources").filter(|m| !m.is_null()) {
        errs.extend(validate_match_resources(m, &sp.child("matchResources")));
    }
    errs
}

/// Upstream `validateParamRef`.
fn validate_param_ref(pr: &Value, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = s(pr, "name");
    let selector = pr.get("selector").filter(|v| !v.is_null());
    if !name.is_empty() && selector.is_some() {
        let msg = "name and selector are mutually exclusive";
        errs.push(FieldError::forbidden(p.child("name"), msg));
        errs.push(FieldError::forbidden(p.child("selector"), msg));
    }
    if name.is_empty() && selector.is_none() {
        errs.push(FieldError::required(
            p,
            "one of name or selector must be specified",
        ));
    }
    match pr.get("parameterNotFoundAction").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(p.child("parameterNotFoundAction"), "")),
        Some("Deny" | "Allow") => {}
        Some(o) => errs.push(FieldError::not_supported(
            p.child("parameterNotFoundAction"),
            o,
            &["Deny", "Allow"],
        )),
    }
    errs
}

//! The review resources: created, answered, never stored. TokenReview asks the server's
//! token authenticators; SubjectAccessReview, LocalSubjectAccessReview and
//! SelfSubjectAccessReview ask the `--authorization-mode` union (the same one the filter chain
//! uses); SelfSubjectRulesReview lists the requester's RBAC (and ABAC) rules;
//! SelfSubjectReview echoes the requester (`kubectl auth whoami`).

use std::collections::BTreeMap;

use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::FieldError;
use serde_json::{Value, json};

use crate::UserInfo;
use crate::auth::{Attributes, Decision};
use crate::endpoints::Scope;
use crate::error::{ApiError, ApiResult};

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.username, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = Value::String(u.uid.clone());
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

fn invalid(scope: &Scope, field: &str, value: Value, msg: &str) -> ApiError {
    ApiError::invalid(
        &scope.handle.info.group,
        &scope.handle.info.kind,
        "",
        &[FieldError::invalid(field, value, msg)],
    )
}

/// The subject of a (Local)SubjectAccessReview spec.
fn spec_user(spec: &Value) -> UserInfo {
    let list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), list(Some(v)))).collect())
        .unwrap_or_default();
    UserInfo {
        username: spec
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        uid: spec
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        groups: list(spec.get("groups")),
        extra,
    }
}

/// Asks the authorizer about a spec's resource or non-resource attributes.
async fn access_review(scope: &Scope, user: &UserInfo, spec: &Value) -> ApiResult<Value> {
    let ra = spec.get("resourceAttributes").filter(|v| v.is_object());
    let nra = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    if ra.is_some() == nra.is_some() {
        return Err(invalid(
            scope,
            "spec.resourceAttributes",
            Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    let s = |v: Option<&Value>, k: &str| -> String {
        v.and_then(|o| o.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (verb, path, ns, group, version, resource, sub, name) = match ra {
        Some(_) => (
            s(ra, "verb"),
            String::new(),
            s(ra, "namespace"),
            s(ra, "group"),
            s(ra, "version"),
            s(ra, "resource"),
            s(ra, "subresource"),
            s(ra, "name"),
        ),
        None => (
            s(nra, "verb"),
            s(nra, "path"),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ),
    };
    let a = Attributes {
        user,
        verb: &verb,
        resource_request: ra.is_some(),
        path: &path,
        namespace: &ns,
        api_group: &group,
        api_version: &version,
        resource: &resource,
        subresource: &sub,
        name: &name,
    };
    let v = scope.state.auth.authz.authorize(&a).await;
    let mut out = json!({"allowed": v.decision == Decision::Allow});
    if v.decision == Decision::Deny {
        out["denied"] = json!(true);
    }
    if !v.reason.is_empty() {
        out["reason"] = json!(v.reason);
    }
    if let Some(e) = v.error {
        out["evaluationError"] = json!(e);
    }
    Ok(out)
}

/// Answers a review: the request object with its `status` filled in.
pub async fn review(scope: &Scope, mut obj: Value) -> ApiResult<Value> {
    let user = &scope.user;
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match &*scope.handle.info.kind {
        "SelfSubjectReview" => json!({"userInfo": user_json(user)}),
        "SelfSubjectAccessReview" => access_review(scope, user, &spec).await?,
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let subject = spec_user(&spec);
            if subject.username.is_empty() && subject.groups.is_empty() {
                return Err(invalid(
                    scope,
                    "spec.user",
                    json!(""),
                    "at least one of user or group must be specified",
                ));
            }
            if scope.handle.info.kind == "LocalSubjectAccessReview" {
                let ns = scope.info.namespace.as_str();
                let asked = spec
                    .pointer("/resourceAttributes/namespace")
                    .and_then(Value::as_str);
                if spec.get("resourceAttributes").is_some() && asked != Some(ns) {
                    return Err(invalid(
                        scope,
                        "spec.resourceAttributes.namespace",
                        json!(asked.unwrap_or("")),
                        "must match metadata.namespace",
                    ));
                }
            }
            access_review(scope, &subject, &spec).await?
        }
        "SelfSubjectRulesReview" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            let (resource_rules, non_resource_rules, incomplete) = rules_review(scope, user, ns);
            json!({
                "resourceRules": resource_rules,
                "nonResourceRules": non_resource_rules,
                "incomplete": incomplete,
            })
        }
        "TokenReview" => {
            let token = spec.get("token").and_then(Value::as_str).unwrap_or("");
            let audiences = scope
                .state
                .auth
                .service_accounts
                .as_ref()
                .map(|s| s.audiences.clone())
                .unwrap_or_default();
            match scope
                .state
                .auth
                .authn
                .authenticate_token(&scope.state, token)
                .await
            {
                Some(u) => {
                    let u = crate::auth::authn::with_authenticated_group(u);
                    json!({"authenticated": true, "user": user_json(&u), "audiences": audiences})
                }
                None => {
                    json!({"authenticated": false, "user": {}, "error": "invalid bearer token"})
                }
            }
        }
        other => {
            return Err(Status::method_not_supported(
                &scope.handle.info.group,
                &scope.handle.info.plural,
                &format!("create {other}"),
            )
            .into());
        }
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("creationTimestamp".into(), Value::Null);
        }
    }
    Ok(obj)
}

/// The rules of `user` in `ns` as SelfSubjectRulesReview lists them.
fn rules_review(scope: &Scope, user: &UserInfo, ns: &str) -> (Vec<Value>, Vec<Value>, bool) {
    let (mut res, mut non_res) = (Vec::new(), Vec::new());
    for r in scope.state.auth.rbac.rules_for(user, ns) {
        if r.non_resource_urls.is_empty() {
            let mut v =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                v["resourceNames"] = json!(r.resource_names);
            }
            res.push(v);
        } else {
            non_res.push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        }
    }
    let incomplete = scope.state.auth.authz.rules_incomplete(user);
    (res, non_res, incomplete)
}

//! The review resources (TokenReview, SubjectAccessReview and friends): created, answered,
//! never stored. Their answers follow the server's current authentication and authorization:
//! x509 client certificates only (no token authenticator yet), and every authenticated
//! request allowed. When RBAC and token authentication land these call the same authorizer
//! and authenticators as the filter chain.

use ferrokube_machinery::status::Status;
use serde_json::{Value, json};

use super::ResourceHandle;
use crate::UserInfo;
use crate::error::{ApiError, ApiResult};

/// Answers a review: the request object with its `status` filled in.
pub fn review(h: &ResourceHandle, mut obj: Value, user: &UserInfo) -> ApiResult<Value> {
    let status = match h.info.kind {
        "SelfSubjectReview" => json!({"userInfo": user_json(user)}),
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let subject_authenticated = match h.info.kind {
                "SelfSubjectAccessReview" => {
                    user.groups.iter().any(|g| g == "system:authenticated")
                }
                _ => {
                    let spec = obj.get("spec").cloned().unwrap_or_default();
                    let has_subject = spec
                        .get("user")
                        .and_then(Value::as_str)
                        .is_some_and(|u| !u.is_empty())
                        || spec
                            .get("groups")
                            .and_then(Value::as_array)
                            .is_some_and(|g| !g.is_empty());
                    if !has_subject {
                        return Err(ApiError::invalid(
                            h.info.group,
                            h.info.kind,
                            "",
                            &[ferrokube_machinery::validation::FieldError::invalid(
                                "spec.user",
                                Value::String(String::new()),
                                "at least one of user or group must be specified",
                            )],
                        ));
                    }
                    spec.get("groups")
                        .and_then(Value::as_array)
                        .is_some_and(|g| g.iter().any(|g| g == "system:authenticated"))
                        || spec
                            .get("user")
                            .and_then(Value::as_str)
                            .is_some_and(|u| !u.is_empty() && u != "system:anonymous")
                }
            };
            if subject_authenticated {
                json!({"allowed": true, "reason": "every authenticated request is allowed (no authorization mode configured yet)"})
            } else {
                json!({"allowed": false})
            }
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        "TokenReview" => json!({
            "authenticated": false,
            "user": {},
            "error": "token authentication is not enabled on this server",
        }),
        other => {
            return Err(Status::method_not_supported(
                h.info.group,
                h.info.plural,
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

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.username, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = Value::String(u.uid.clone());
    }
    v
}

//! The `metav1.Status` wire type and constructors mirroring `k8s.io/apimachinery/pkg/api/errors`.
//!
//! Every error a client sees is one of these (DESIGN invariant 6). Messages, reasons, codes and
//! `details` follow upstream, e.g. `Status::not_found("apps", "deployments", "web")` gives
//! `deployments.apps "web" not found` with `details.kind = "deployments"`, `details.group = "apps"`.
//! The JSON omits empty fields exactly like Go's `omitempty` (but always writes `"metadata":{}`).

use serde::{Deserialize, Serialize};

use crate::validation::{FieldError, aggregate_message};

/// Upstream `OptimisticLockErrorMsg`, the detail of a resourceVersion conflict.
pub const OPTIMISTIC_LOCK_ERROR_MSG: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// `status` value of a failed request.
pub const STATUS_FAILURE: &str = "Failure";
/// `status` value of a successful request.
pub const STATUS_SUCCESS: &str = "Success";

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

/// `metav1.ListMeta` as it appears in a Status (always serialized, usually `{}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusListMeta {
    /// Deprecated selfLink.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    /// Resource version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Continue token.
    #[serde(default, rename = "continue", skip_serializing_if = "String::is_empty")]
    pub continue_: String,
    /// Remaining item count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_item_count: Option<i64>,
}

/// One cause of a failure (`metav1.StatusCause`); `reason` is the field error type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusCause {
    /// Machine-readable cause, e.g. `FieldValueInvalid`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The field path, e.g. `metadata.name`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
}

/// `metav1.StatusDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    /// Name of the object concerned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// API group of the resource.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The resource plural (for most errors) or the Kind (for `Invalid`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// UID of the object concerned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Individual causes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    /// Seconds the client should wait before retrying.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub retry_after_seconds: i32,
}

/// `metav1.Status`: the body of every error response and of some deletes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always `Status`.
    pub kind: String,
    /// Always `v1`.
    pub api_version: String,
    /// List metadata (normally empty).
    #[serde(default)]
    pub metadata: StatusListMeta,
    /// `Failure` or `Success`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Machine-readable reason, e.g. `NotFound`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Extra data about the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    /// The HTTP status code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub code: u16,
}

/// `schema.GroupResource.String()`: `resource` or `resource.group`.
fn qualified(group: &str, name: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

fn details(group: &str, kind: &str, name: &str) -> Option<StatusDetails> {
    Some(StatusDetails {
        name: name.to_string(),
        group: group.to_string(),
        kind: kind.to_string(),
        ..Default::default()
    })
}

impl Status {
    /// A failure with the given code, reason and message and no details.
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Status {
            kind: "Status".to_string(),
            api_version: "v1".to_string(),
            metadata: StatusListMeta::default(),
            status: STATUS_FAILURE.to_string(),
            message: message.into(),
            reason: reason.to_string(),
            details: None,
            code,
        }
    }

    fn with_details(mut self, d: Option<StatusDetails>) -> Self {
        self.details = d;
        self
    }

    /// `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":200}`.
    pub fn success() -> Self {
        let mut s = Self::failure(200, "", "");
        s.status = STATUS_SUCCESS.to_string();
        s
    }

    /// A success naming the deleted object, as upstream's delete returns for some resources.
    pub fn success_with_details(group: &str, resource: &str, name: &str, uid: &str) -> Self {
        let mut d = details(group, resource, name);
        if let Some(d) = d.as_mut() {
            d.uid = uid.to_string();
        }
        Self::success().with_details(d)
    }

    /// `NewNotFound`: 404 `NotFound`, `pods "x" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let msg = format!("{} \"{}\" not found", qualified(group, resource), name);
        Self::failure(404, "NotFound", msg).with_details(details(group, resource, name))
    }

    /// `NewAlreadyExists`: 409 `AlreadyExists`, `pods "x" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let msg = format!("{} \"{}\" already exists", qualified(group, resource), name);
        Self::failure(409, "AlreadyExists", msg).with_details(details(group, resource, name))
    }

    /// `NewConflict`: 409 `Conflict`, `Operation cannot be fulfilled on pods "x": <detail>`.
    /// Use [`OPTIMISTIC_LOCK_ERROR_MSG`] as `detail` for a resourceVersion mismatch.
    pub fn conflict(group: &str, resource: &str, name: &str, detail: &str) -> Self {
        let msg = format!(
            "Operation cannot be fulfilled on {} \"{}\": {}",
            qualified(group, resource),
            name,
            detail
        );
        Self::failure(409, "Conflict", msg).with_details(details(group, resource, name))
    }

    /// `NewInvalid`: 422 `Invalid`, `Kind.group "name" is invalid: <errors>` with one cause per
    /// field error (`details.kind` is the Kind here, not the resource).
    pub fn invalid(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Self {
        let causes = errs
            .iter()
            .map(|e| StatusCause {
                reason: e.type_.reason().to_string(),
                message: e.error_body(),
                field: e.field.clone(),
            })
            .collect();
        let qk = qualified(group, kind);
        let msg = match aggregate_message(errs) {
            None => format!("{qk} \"{name}\" is invalid"),
            Some(agg) => format!("{qk} \"{name}\" is invalid: {agg}"),
        };
        Self::failure(422, "Invalid", msg).with_details(Some(StatusDetails {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
            causes,
            ..Default::default()
        }))
    }

    /// `NewBadRequest`: 400 `BadRequest`.
    pub fn bad_request(msg: &str) -> Self {
        Self::failure(400, "BadRequest", msg)
    }

    /// `NewMethodNotSupported`: 405 `MethodNotAllowed`,
    /// `<action> is not supported on resources of kind "pods"`.
    pub fn method_not_supported(group: &str, resource: &str, action: &str) -> Self {
        let msg = format!(
            "{action} is not supported on resources of kind \"{}\"",
            qualified(group, resource)
        );
        Self::failure(405, "MethodNotAllowed", msg).with_details(details(group, resource, ""))
    }

    /// 406 `NotAcceptable`. Upstream's negotiation message is
    /// `only the following media types are accepted: <list>` (see [`Status::not_acceptable_types`]).
    pub fn not_acceptable(msg: &str) -> Self {
        Self::failure(406, "NotAcceptable", msg)
    }

    /// 406 with upstream's negotiation message for the given accepted media types.
    pub fn not_acceptable_types(accepted: &[&str]) -> Self {
        Self::not_acceptable(&format!(
            "only the following media types are accepted: {}",
            accepted.join(", ")
        ))
    }

    /// 415 `UnsupportedMediaType` for a request body of `content_type`, with upstream's message
    /// listing the body types ferrokube decodes (as upstream: JSON, YAML and protobuf).
    pub fn unsupported_media_type(content_type: &str) -> Self {
        let _ = content_type;
        Self::unsupported_media_type_accepting(&[
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
        ])
    }

    /// 415 with upstream's negotiation message for an explicit list (e.g. the patch types).
    pub fn unsupported_media_type_accepting(accepted: &[&str]) -> Self {
        Self::failure(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// `NewRequestEntityTooLargeError`: 413, `Request entity too large: <msg>`.
    pub fn request_entity_too_large(msg: &str) -> Self {
        Self::failure(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: {msg}"),
        )
    }

    /// `NewResourceExpired`: 410 `Expired` (a compacted resourceVersion or expired continue).
    pub fn expired(msg: &str) -> Self {
        Self::failure(410, "Expired", msg)
    }

    /// Same as [`Status::expired`] (upstream's name).
    pub fn resource_expired(msg: &str) -> Self {
        Self::expired(msg)
    }

    /// `NewGone`: 410 `Gone`.
    pub fn gone(msg: &str) -> Self {
        Self::failure(410, "Gone", msg)
    }

    /// `NewForbidden`: 403 `Forbidden`, `pods "x" is forbidden: <reason>`
    /// (`pods is forbidden: ...` without a name, `forbidden: ...` without a resource).
    pub fn forbidden(group: &str, resource: &str, name: &str, reason_msg: &str) -> Self {
        let msg = if group.is_empty() && resource.is_empty() {
            format!("forbidden: {reason_msg}")
        } else if name.is_empty() {
            format!("{} is forbidden: {reason_msg}", qualified(group, resource))
        } else {
            format!(
                "{} \"{name}\" is forbidden: {reason_msg}",
                qualified(group, resource)
            )
        };
        Self::failure(403, "Forbidden", msg).with_details(details(group, resource, name))
    }

    /// `NewUnauthorized`: 401 `Unauthorized` (`not authorized` when `msg` is empty). The
    /// authentication filter upstream uses the message `Unauthorized`.
    pub fn unauthorized(msg: &str) -> Self {
        let msg = if msg.is_empty() {
            "not authorized"
        } else {
            msg
        };
        Self::failure(401, "Unauthorized", msg)
    }

    /// `NewInternalError`: 500 `InternalError`, `Internal error occurred: <msg>`, one cause.
    pub fn internal_error(msg: &str) -> Self {
        Self::failure(
            500,
            "InternalError",
            format!("Internal error occurred: {msg}"),
        )
        .with_details(Some(StatusDetails {
            causes: vec![StatusCause {
                message: msg.to_string(),
                ..Default::default()
            }],
            ..Default::default()
        }))
    }

    /// `NewTimeoutError`: 504 `Timeout`, `Timeout: <msg>`, with `retryAfterSeconds`.
    pub fn timeout(msg: &str, retry_after: i32) -> Self {
        Self::failure(504, "Timeout", format!("Timeout: {msg}")).with_details(Some(StatusDetails {
            retry_after_seconds: retry_after,
            ..Default::default()
        }))
    }

    /// `NewServerTimeout`: 500 `ServerTimeout`, `The <operation> operation against <resource>
    /// could not be completed at this time, please try again.` (`details.name` is the operation).
    pub fn server_timeout(group: &str, resource: &str, operation: &str, retry_after: i32) -> Self {
        let msg = format!(
            "The {operation} operation against {} could not be completed at this time, please try again.",
            qualified(group, resource)
        );
        let mut d = details(group, resource, operation);
        if let Some(d) = d.as_mut() {
            d.retry_after_seconds = retry_after;
        }
        Self::failure(500, "ServerTimeout", msg).with_details(d)
    }

    /// The watch cache's / storage's 410 for a compacted revision:
    /// `too old resource version: <requested> (<oldest>)`.
    pub fn too_old_resource_version(requested: i64, oldest: i64) -> Self {
        Self::expired(&format!("too old resource version: {requested} ({oldest})"))
    }

    /// Upstream `storage.NewTooLargeResourceVersionError`: 504 `Timeout`,
    /// `Timeout: Too large resource version: <requested>, current: <current>`, with the
    /// `ResourceVersionTooLarge` cause clients (reflectors) look for.
    pub fn too_large_resource_version(requested: i64, current: i64, retry_after: i32) -> Self {
        let mut s = Self::timeout(
            &format!("Too large resource version: {requested}, current: {current}"),
            retry_after,
        );
        if let Some(d) = s.details.as_mut() {
            d.causes = vec![StatusCause {
                reason: "ResourceVersionTooLarge".to_string(),
                message: "Too large resource version".to_string(),
                field: String::new(),
            }];
        }
        s
    }

    /// `NewTooManyRequests`: 429 `TooManyRequests` with `retryAfterSeconds`.
    pub fn too_many_requests(msg: &str, retry_after: i32) -> Self {
        Self::failure(429, "TooManyRequests", msg).with_details(Some(StatusDetails {
            retry_after_seconds: retry_after,
            ..Default::default()
        }))
    }

    /// `NewServiceUnavailable`: 503 `ServiceUnavailable`.
    pub fn service_unavailable(msg: &str) -> Self {
        Self::failure(503, "ServiceUnavailable", msg)
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and numbers cannot fail; fall back to a minimal body anyway.
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","code":500}"#
                .to_vec()
        })
    }

    /// True for reason `NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.reason == "NotFound"
    }

    /// True for reason `AlreadyExists`.
    pub fn is_already_exists(&self) -> bool {
        self.reason == "AlreadyExists"
    }

    /// True for reason `Conflict`.
    pub fn is_conflict(&self) -> bool {
        self.reason == "Conflict"
    }

    /// True for reason `Invalid`.
    pub fn is_invalid(&self) -> bool {
        self.reason == "Invalid"
    }

    /// True for reason `Expired` or `Gone` (both 410).
    pub fn is_gone(&self) -> bool {
        self.code == 410
    }

    /// True when `status` is `Success`.
    pub fn is_success(&self) -> bool {
        self.status == STATUS_SUCCESS
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &Status) -> String {
        String::from_utf8(s.to_json()).expect("utf8")
    }

    #[test]
    fn not_found_wire() {
        assert_eq!(
            json(&Status::not_found("", "pods", "foo")),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"foo\" not found","reason":"NotFound","details":{"name":"foo","kind":"pods"},"code":404}"#
        );
        let s = Status::not_found("apps", "deployments", "web");
        assert_eq!(s.message, "deployments.apps \"web\" not found");
        let d = s.details.expect("details");
        assert_eq!((d.group.as_str(), d.kind.as_str()), ("apps", "deployments"));
    }

    #[test]
    fn messages_and_codes() {
        let cases: Vec<(Status, u16, &str, &str)> = vec![
            (
                Status::already_exists("", "configmaps", "x"),
                409,
                "AlreadyExists",
                "configmaps \"x\" already exists",
            ),
            (
                Status::conflict("", "configmaps", "x", OPTIMISTIC_LOCK_ERROR_MSG),
                409,
                "Conflict",
                "Operation cannot be fulfilled on configmaps \"x\": the object has been modified; please apply your changes to the latest version and try again",
            ),
            (Status::bad_request("bad"), 400, "BadRequest", "bad"),
            (
                Status::method_not_supported("", "bindings", "list"),
                405,
                "MethodNotAllowed",
                "list is not supported on resources of kind \"bindings\"",
            ),
            (
                Status::not_acceptable_types(&["application/json", "application/yaml"]),
                406,
                "NotAcceptable",
                "only the following media types are accepted: application/json, application/yaml",
            ),
            (
                Status::unsupported_media_type("text/plain"),
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
            ),
            (
                Status::request_entity_too_large("limit is 3145728"),
                413,
                "RequestEntityTooLarge",
                "Request entity too large: limit is 3145728",
            ),
            (
                Status::expired("too old resource version: 1 (5)"),
                410,
                "Expired",
                "too old resource version: 1 (5)",
            ),
            (Status::gone("gone"), 410, "Gone", "gone"),
            (
                Status::forbidden(
                    "",
                    "pods",
                    "p",
                    "User \"u\" cannot get resource \"pods\" in API group \"\" in the namespace \"ns\"",
                ),
                403,
                "Forbidden",
                "pods \"p\" is forbidden: User \"u\" cannot get resource \"pods\" in API group \"\" in the namespace \"ns\"",
            ),
            (
                Status::forbidden("apps", "deployments", "", "r"),
                403,
                "Forbidden",
                "deployments.apps is forbidden: r",
            ),
            (
                Status::forbidden("", "", "", "r"),
                403,
                "Forbidden",
                "forbidden: r",
            ),
            (
                Status::unauthorized(""),
                401,
                "Unauthorized",
                "not authorized",
            ),
            (
                Status::unauthorized("Unauthorized"),
                401,
                "Unauthorized",
                "Unauthorized",
            ),
            (
                Status::internal_error("boom"),
                500,
                "InternalError",
                "Internal error occurred: boom",
            ),
            (
                Status::timeout("request did not complete within 60s", 2),
                504,
                "Timeout",
                "Timeout: request did not complete within 60s",
            ),
            (
                Status::too_many_requests("slow down", 1),
                429,
                "TooManyRequests",
                "slow down",
            ),
            (
                Status::service_unavailable("down"),
                503,
                "ServiceUnavailable",
                "down",
            ),
        ];
        for (s, code, reason, msg) in cases {
            assert_eq!(
                (s.code, s.reason.as_str(), s.message.as_str()),
                (code, reason, msg)
            );
            assert_eq!(s.status, "Failure");
        }
    }

    #[test]
    fn storage_errors() {
        let s = Status::server_timeout("", "pods", "create", 2);
        assert_eq!(
            s.message,
            "The create operation against pods could not be completed at this time, please try again."
        );
        assert_eq!((s.code, s.reason.as_str()), (500, "ServerTimeout"));
        assert_eq!(s.details.as_ref().map(|d| d.name.as_str()), Some("create"));
        let s = Status::too_old_resource_version(1, 5);
        assert_eq!(
            (s.code, s.reason.as_str(), s.message.as_str()),
            (410, "Expired", "too old resource version: 1 (5)")
        );
        assert_eq!(
            json(&Status::too_large_resource_version(9, 3, 1)),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Timeout: Too large resource version: 9, current: 3","reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},"code":504}"#
        );
    }

    #[test]
    fn invalid_wire() {
        let errs = vec![
            FieldError::invalid("metadata.name", "Foo", "bad name"),
            FieldError::required("spec.containers", ""),
        ];
        let s = Status::invalid("apps", "Deployment", "Foo", &errs);
        assert_eq!(s.code, 422);
        assert_eq!(
            s.message,
            "Deployment.apps \"Foo\" is invalid: [metadata.name: Invalid value: \"Foo\": bad name, spec.containers: Required value]"
        );
        let v: serde_json::Value = serde_json::from_slice(&s.to_json()).expect("json");
        assert_eq!(v["details"]["kind"], "Deployment");
        assert_eq!(v["details"]["group"], "apps");
        assert_eq!(v["details"]["causes"][0]["reason"], "FieldValueInvalid");
        assert_eq!(
            v["details"]["causes"][0]["message"],
            "Invalid value: \"Foo\": bad name"
        );
        assert_eq!(v["details"]["causes"][0]["field"], "metadata.name");
        assert_eq!(v["details"]["causes"][1]["message"], "Required value");

        let one = Status::invalid("", "ConfigMap", "x", &errs[..1]);
        assert_eq!(
            one.message,
            "ConfigMap \"x\" is invalid: metadata.name: Invalid value: \"Foo\": bad name"
        );
        assert_eq!(
            Status::invalid("", "ConfigMap", "x", &[]).message,
            "ConfigMap \"x\" is invalid"
        );
    }

    #[test]
    fn retry_after_and_causes_wire() {
        assert_eq!(
            json(&Status::timeout("x", 2)),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Timeout: x","reason":"Timeout","details":{"retryAfterSeconds":2},"code":504}"#
        );
        assert_eq!(
            json(&Status::internal_error("boom")),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Internal error occurred: boom","reason":"InternalError","details":{"causes":[{"message":"boom"}]},"code":500}"#
        );
    }

    #[test]
    fn success_wire_and_roundtrip() {
        assert_eq!(
            json(&Status::success()),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":200}"#
        );
        let s = Status::success_with_details("", "pods", "p", "u-1");
        let back: Status = serde_json::from_slice(&s.to_json()).expect("parse");
        assert_eq!(back, s);
        assert!(back.is_success());
    }
}

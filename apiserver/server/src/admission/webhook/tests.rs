use serde_json::json;

use super::*;

#[test]
fn verify_response_checks_presence_uid_kind_and_patch_pairs() {
    let ok = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": "u1", "allowed": true}});
    assert!(verify_response("u1", false, &ok).is_ok());
    let e = verify_response("u2", false, &ok).expect_err("uid");
    assert_eq!(e.to_string(), r#"expected response.uid="u2", got "u1""#);
    let e = verify_response("u1", false, &json!({"apiVersion": "admission.k8s.io/v1"}))
        .expect_err("absent");
    assert_eq!(e.to_string(), "webhook response was absent");
    let wrong = json!({"apiVersion": "v1", "kind": "Status", "response": {"uid": "u1"}});
    assert!(
        verify_response("u1", false, &wrong)
            .expect_err("kind")
            .to_string()
            .starts_with("expected webhook response of admission.k8s.io/v1")
    );
    let patch_only = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                            "response": {"uid": "u1", "allowed": true, "patch": "W10="}});
    assert_eq!(
        verify_response("u1", true, &patch_only)
            .expect_err("patchType")
            .to_string(),
        "webhook returned response.patch but not response.patchType"
    );
    assert!(verify_response("u1", false, &patch_only).is_err());
}

#[test]
fn denial_status_defaults_to_403_and_bounds_codes() {
    assert_eq!(denial_status(None).code, 403);
    let s = denial_status(Some(json!({"code": 200, "message": "m"})));
    assert_eq!((s.code, s.message.as_str()), (403, "m"));
    let s = denial_status(Some(json!({"code": 422, "reason": "Invalid"})));
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let long = "x".repeat(MAX_MESSAGE * 2);
    assert_eq!(
        denial_status(Some(json!({"message": long}))).message.len(),
        MAX_MESSAGE
    );
}

#[test]
fn denied_message_is_upstreams() {
    let e = ApiError::webhook_denied(
        "",
        "configmaps",
        "bad",
        "deny.example.com",
        Some(json!({"message": "name is not allowed"})),
    )
    .to_status();
    assert_eq!(e.code, 403);
    assert_eq!(e.reason, "Forbidden");
    assert_eq!(
        e.message,
        r#"configmaps "bad" is forbidden: admission webhook "deny.example.com" denied the request: name is not allowed"#
    );
    let e = ApiError::webhook_denied("apps", "deployments", "", "w", None).to_status();
    assert_eq!(
        e.message,
        r#"deployments.apps "Unknown" is forbidden: admission webhook "w" denied the request without explanation"#
    );
}

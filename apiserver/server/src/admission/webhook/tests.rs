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

#[test]
fn rules_match_operations_resources_subresources_scope_and_equivalent_versions() {
    use crate::UserInfo;
    use crate::registry::request::Warnings;
    let reg = Registry::new(ferrokube_machinery::resources::builtin_resources());
    let cms = reg.get("", "v1", "configmaps").expect("configmaps").clone();
    let hpa = reg
        .get("autoscaling", "v2", "horizontalpodautoscalers")
        .expect("hpa v2")
        .clone();
    let user = UserInfo::default();
    let w = Warnings::default();
    let attrs = |h: &'static str, op: Operation, sub: &'static str, ns: &'static str| {
        let handle = if h == "cm" { &cms } else { &hpa };
        Attributes {
            operation: op,
            handle,
            subresource: sub,
            namespace: ns,
            name: "x",
            user: &user,
            dry_run: false,
            old: None,
            warnings: &w,
            reinvocation: Default::default(),
        }
    };
    let hook = |rules: Value, policy: &str| {
        Hook::compile(
            "c",
            &json!({"name": "h", "clientConfig": {"url": "https://h/"}, "rules": rules,
                    "matchPolicy": policy}),
        )
    };
    let cm_rule = |resources: Value, scope: &str| {
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": resources, "scope": scope}])
    };
    let h = hook(cm_rule(json!(["configmaps"]), "*"), "Exact");
    assert!(
        h.matches_rules(&attrs("cm", Operation::Create, "", "default"), &[])
            .is_some()
    );
    assert!(
        h.matches_rules(&attrs("cm", Operation::Update, "", "default"), &[])
            .is_none()
    );
    assert!(
        h.matches_rules(&attrs("cm", Operation::Create, "status", "default"), &[])
            .is_none()
    );
    let h = hook(cm_rule(json!(["*/*"]), "*"), "Exact");
    assert!(
        h.matches_rules(&attrs("cm", Operation::Create, "status", "default"), &[])
            .is_some()
    );
    let h = hook(cm_rule(json!(["configmaps/*"]), "*"), "Exact");
    assert!(
        h.matches_rules(&attrs("cm", Operation::Create, "", "default"), &[])
            .is_some()
    );
    let h = hook(cm_rule(json!(["*"]), "Cluster"), "Exact");
    assert!(
        h.matches_rules(&attrs("cm", Operation::Create, "", "default"), &[])
            .is_none()
    );
    let h = hook(cm_rule(json!(["*"]), "Namespaced"), "Exact");
    assert!(
        h.matches_rules(&attrs("cm", Operation::Create, "", "default"), &[])
            .is_some()
    );
    // matchPolicy: a rule naming autoscaling/v1 matches a v2 request only when Equivalent.
    let v1_rule = json!([{"operations": ["*"], "apiGroups": ["autoscaling"],
                          "apiVersions": ["v1"], "resources": ["horizontalpodautoscalers"]}]);
    let a = attrs("hpa", Operation::Create, "", "default");
    assert_eq!(
        hook(v1_rule.clone(), "Equivalent").matches_rules(&a, &["v1"]),
        Some("v1".to_string())
    );
    assert_eq!(hook(v1_rule, "Exact").matches_rules(&a, &["v1"]), None);
}

use serde_json::json;

use super::validation::{validate_binding, validate_policy, validate_webhook_configuration};
use super::*;

fn request() -> Json {
    json!({"operation": "CREATE", "name": "web", "namespace": "default",
           "userInfo": {"username": "alice", "groups": ["dev"]}})
}

fn inputs(obj: Json, params: Option<Json>) -> Inputs {
    Inputs::from_json(
        Some(&obj),
        None,
        &request(),
        Some(
            &json!({"metadata": {"name": "default", "labels": {"env": "test"}, "managedFields": []}}),
        ),
        params.as_ref(),
    )
}

fn deployment(replicas: i64) -> Json {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": replicas}})
}

#[test]
fn replicas_rule_denies_with_upstreams_message_and_reason() {
    let p = CompiledPolicy::compile(&json!({
        "validations": [{"expression": "object.spec.replicas <= 5"}]
    }));
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.validate(&inputs(deployment(5), None)), Verdict::default());
    let v = p.validate(&inputs(deployment(6), None));
    assert_eq!(
        v.denials,
        [Denial {
            message: "failed expression: object.spec.replicas <= 5".into(),
            reason: Some("Invalid".into()),
            index: 0
        }]
    );
}

#[test]
fn message_expression_params_variables_and_namespace() {
    let p = CompiledPolicy::compile(&json!({
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
        "variables": [{"name": "max", "expression": "int(params.data.maxReplicas)"},
                      {"name": "over", "expression": "object.spec.replicas > variables.max"}],
        "validations": [{"expression": "!variables.over",
                         "messageExpression": "'at most ' + string(variables.max) + ' in ' + namespaceObject.metadata.labels.env",
                         "reason": "Forbidden"}]
    }));
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let params = json!({"data": {"maxReplicas": "3"}});
    let v = p.validate(&inputs(deployment(4), Some(params.clone())));
    assert_eq!(v.denials[0].message, "at most 3 in test");
    assert_eq!(v.denials[0].reason.as_deref(), Some("Forbidden"));
    assert!(
        p.validate(&inputs(deployment(3), Some(params)))
            .denials
            .is_empty()
    );
    // A variable that fails is reported through the expression using it.
    let v = p.validate(&inputs(deployment(3), Some(json!({"data": {}}))));
    assert!(
        v.denials[0]
            .message
            .contains("composited variable \"max\" fails to evaluate"),
        "{v:?}"
    );
}

#[test]
fn match_conditions_skip_and_errors_follow_failure_policy() {
    let mc = MatchConditions::compile(
        Some(&json!([{"name": "not-alice", "expression": "request.userInfo.username != 'alice'"}])),
        false,
    );
    assert_eq!(
        mc.evaluate(&inputs(deployment(1), None), FailurePolicy::Fail),
        MatchResult::NoMatch(Some("not-alice".into()))
    );
    let bad = MatchConditions::compile(
        Some(&json!([{"name": "x", "expression": "object.nope == 1"}])),
        false,
    );
    let r = bad.evaluate(&inputs(deployment(1), None), FailurePolicy::Fail);
    assert_eq!(
        r,
        MatchResult::Error(
            "expression 'object.nope == 1' resulted in error: no such key: nope".into()
        )
    );
    assert_eq!(
        bad.evaluate(&inputs(deployment(1), None), FailurePolicy::Ignore),
        MatchResult::NoMatch(None)
    );
}

#[test]
fn runaway_cost_is_stopped_and_reported() {
    let p = CompiledPolicy::compile(&json!({
        "validations": [{"expression":
            "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, [1,2,3,4,5,6,7,8,9,10].all(f, a+b+c+d+e+f > 0))))))"}]
    }));
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let v = p.validate(&inputs(deployment(1), None));
    assert_eq!(v.denials.len(), 1, "{v:?}");
    assert!(
        v.denials[0]
            .message
            .ends_with("resulted in error: operation cancelled: actual cost limit exceeded"),
        "{v:?}"
    );
    assert_eq!(v.denials[0].reason, None);
}

#[test]
fn policies_and_bindings_are_validated_with_compiled_expressions() {
    let errs = validate_policy(&json!({"metadata": {"name": "p"}, "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {"matchPolicy": "Equivalent", "namespaceSelector": {}, "objectSelector": {},
            "resourceRules": [{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]},
        "variables": [{"name": "a", "expression": "variables.b"}],
        "validations": [{"expression": "object.spec.replicas <="}, {"expression": "1 + 1"}]
    }}));
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.variables[0].expression",
            "spec.validations[0].expression",
            "spec.validations[1].expression"
        ],
        "{errs:?}"
    );
    assert!(errs[0].detail.contains("undefined field 'b'"));
    assert!(
        errs[1]
            .detail
            .starts_with("compilation failed: ERROR: <input>:")
    );
    assert_eq!(errs[2].detail, "must evaluate to bool");

    let errs = validate_binding(
        &json!({"spec": {"policyName": "p", "validationActions": ["Deny", "Warn"],
        "paramRef": {"name": "x"}}}),
    );
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.paramRef.parameterNotFoundAction",
            "spec.validationActions"
        ]
    );

    let many: Vec<Json> = (0..65)
        .map(|i| json!({"name": format!("c{i}"), "expression": "true"}))
        .collect();
    let errs = validate_webhook_configuration(&json!({"webhooks": [
        {"name": "a", "matchConditions": [{"name": "x", "expression": "true"}, {"name": "x", "expression": "object.("}]},
        {"name": "b", "matchConditions": many}
    ]}));
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "webhooks[0].matchConditions[1].expression",
            "webhooks[0].matchConditions[1].name",
            "webhooks[1].matchConditions"
        ],
        "{errs:?}"
    );
}

#[test]
fn hostile_expressions_are_refused_not_run() {
    let deep = format!("{}true{}", "(".repeat(5000), ")".repeat(5000));
    assert!(compile(&deep, Env::default(), true).is_err());
    let huge = "1 == 1 && ".repeat(20_000) + "true";
    assert!(compile(&huge, Env::default(), true).is_err());
    // Three authorization checks exceed the per-call limit (upstream allows two).
    let three = "authorizer.path('/a').check('get').allowed() && authorizer.path('/b').check('get').allowed() && authorizer.path('/c').check('get').allowed()";
    let p = compile(three, Env::default(), true).expect("compiles");
    assert!(p.estimated_cost() > PER_CALL_LIMIT);
}

/// Allows `get` on pods in `ns1` (and `/healthz`) for the requester; the service account
/// `kube-system/ctrl` may do everything.
struct Stub;

impl crate::cel::Authorize for Stub {
    fn check(&self, c: &crate::cel::AuthzCheck) -> crate::cel::AuthzDecision {
        let allowed = c.service_account == Some(("kube-system".into(), "ctrl".into()))
            || (c.verb == "get"
                && c.resource == "pods"
                && c.group.is_empty()
                && c.namespace == "ns1")
            || c.path.as_deref() == Some("/healthz");
        crate::cel::AuthzDecision {
            allowed,
            decision: if allowed { "allow" } else { "noOpinion" }.into(),
            reason: if allowed { "stub allows" } else { "" }.into(),
            error: (c.verb == "explode").then(|| "webhook down".to_string()),
        }
    }
}

#[test]
fn authorizer_library_asks_the_authorizer() {
    let mut inputs = Inputs::from_json(
        Some(&json!({"metadata": {"name": "x"}})),
        None,
        &json!({}),
        None,
        None,
    );
    let request = crate::cel::AuthzCheck {
        group: "apps".into(),
        resource: "deployments".into(),
        namespace: "ns1".into(),
        ..Default::default()
    };
    inputs.authorizer = crate::cel::AuthzValue::root(std::sync::Arc::new(Stub), Some(request));
    fn denials(inputs: &Inputs, src: &str) -> Vec<Denial> {
        let policy = CompiledPolicy::compile(&json!({
            "validations": [{"expression": src}]
        }));
        assert!(policy.errors.is_empty(), "{:?}", policy.errors);
        policy.validate(inputs).denials
    }
    let run = |src: &str| denials(&inputs, src);
    assert!(
        run("authorizer.group('').resource('pods').namespace('ns1').check('get').allowed()")
            .is_empty()
    );
    assert_eq!(
        run("authorizer.group('').resource('pods').namespace('ns2').check('get').allowed()").len(),
        1
    );
    assert!(run("authorizer.path('/healthz').check('get').allowed()").is_empty());
    assert!(run("authorizer.group('').resource('pods').namespace('ns1').check('get').reason() == 'stub allows'").is_empty());
    assert!(run("authorizer.serviceAccount('kube-system', 'ctrl').group('x').resource('y').check('delete').allowed()").is_empty());
    assert!(run("!authorizer.requestResource.check('update').allowed()").is_empty());
    assert!(run("authorizer.group('').resource('pods').check('explode').errored() && authorizer.group('').resource('pods').check('explode').error() == 'webhook down'").is_empty());
    // Without an authorizer bound, a check is an evaluation error (a denial under Fail).
    inputs.authorizer = crate::cel::Value::Null;
    let d = denials(
        &inputs,
        "authorizer.path('/healthz').check('get').allowed()",
    );
    assert_eq!(d.len(), 1);
}

fn deployment_target() -> typecheck::Target {
    let info = crate::resources::find("apps", "v1", "deployments").expect("deployments");
    let (name, defs) = crate::openapi::resource_schema(info).expect("schema");
    typecheck::Target {
        gvk: "apps/v1, Kind=Deployment".into(),
        object: crate::cel::CelType::from_schema(
            &json!({"$ref": format!("#/definitions/{name}")}),
            Some(&defs),
            "Deployment",
        ),
    }
}

#[test]
fn type_check_against_the_deployment_schema_as_upstreams_e2e() {
    let target = [deployment_target()];
    let ok = json!({"validations": [
        {"expression": "object.spec.replicas > 1"},
        {"expression": "object.spec.template.spec.containers.all(c, c.image != '' && c.name.size() < 64)"},
        {"expression": "object.metadata.labels['app'] == 'web' && has(object.spec.selector.matchLabels)"},
        {"expression": "variables.odd", "messageExpression": "'replicas: ' + string(variables.replicas)"},
    ], "variables": [
        {"name": "replicas", "expression": "object.spec.replicas"},
        {"name": "odd", "expression": "variables.replicas % 2 == 1"},
    ]});
    assert_eq!(typecheck::check_policy(&ok, &target, None), vec![]);

    let confused = json!({"validations": [{
        "expression": "object.spec.replicas > '1'",
        "messageExpression": "'wants replicas > 1, got ' + object.spec.replicas",
    }, {
        "expression": "object.spec.maxRetries < 10",
    }, {
        "expression": "variables.replicas == 'three'",
    }], "variables": [{"name": "replicas", "expression": "object.spec.replicas"}]});
    let w = typecheck::check_policy(&confused, &target, None);
    let fields: Vec<&str> = w.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.validations[0].expression",
            "spec.validations[0].messageExpression",
            "spec.validations[1].expression",
            "spec.validations[2].expression",
        ]
    );
    assert!(w[0].1.starts_with("apps/v1, Kind=Deployment: ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'"), "{}", w[0].1);
    assert!(
        w[1].1
            .contains("found no matching overload for '_+_' applied to '(string, int)'")
    );
    assert!(w[2].1.contains("undefined field 'maxRetries'"));
    assert!(w[3].1.contains("'_==_' applied to '(int, string)'"));
    // No kinds resolved (wildcards): nothing is checked.
    assert_eq!(typecheck::check_policy(&confused, &[], None), vec![]);
}

//! `x-kubernetes-validations` on custom resources: messages, transition rules, ratcheting and
//! cost limits.

use serde_json::{Value, json};

use super::CompiledSchema;
use super::tests::{messages, must_compile};

const P: &str = "spec.versions[0].schema.openAPIV3Schema";

fn gateway_like() -> CompiledSchema {
    must_compile(json!({
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.metadata.name.size() <= 20", "message": "name too long"}
        ],
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas",
                     "fieldPath": ".minReplicas"},
                    {"rule": "!has(self.tls) || self.listeners.exists(l, l.protocol == 'HTTPS')",
                     "messageExpression": "'tls needs an HTTPS listener, have ' + string(size(self.listeners))",
                     "reason": "FieldValueForbidden"},
                    {"rule": "self.className == oldSelf.className", "message": "className is immutable"},
                    {"rule": "!oldSelf.hasValue() || oldSelf.value().minReplicas <= self.minReplicas + 5",
                     "optionalOldSelf": true, "message": "cannot shrink that fast"}
                ],
                "properties": {
                    "className": {"type": "string", "maxLength": 63},
                    "minReplicas": {"type": "integer"},
                    "maxReplicas": {"type": "integer"},
                    "tls": {"type": "object", "properties": {"mode": {"type": "string", "maxLength": 10}}},
                    "memory": {"type": "string", "maxLength": 20,
                        "x-kubernetes-validations": [{"rule": "quantity(self).isLessThan(quantity('1Gi'))", "message": "too much memory"}]},
                    "listeners": {
                        "type": "array", "maxItems": 64,
                        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "required": ["name"], "properties": {
                            "name": {"type": "string", "maxLength": 253},
                            "protocol": {"type": "string", "maxLength": 10},
                            "hostname": {"type": "string", "maxLength": 253,
                                "x-kubernetes-validations": [{"rule": "self.matches('^[a-z0-9.-]+$')"}]}
                        }},
                        "x-kubernetes-validations": [
                            {"rule": "self.all(l1, self.exists_one(l2, l1.name == l2.name))", "message": "names must be unique"}
                        ]
                    }
                }
            }
        }
    }))
}

fn gw(spec: Value) -> Value {
    json!({"apiVersion": "gw.example/v1", "kind": "Gateway", "metadata": {"name": "g", "namespace": "n", "labels": {"a": "b"}}, "spec": spec})
}

fn base() -> Value {
    json!({"className": "c", "minReplicas": 1, "maxReplicas": 3, "listeners": [{"name": "a", "protocol": "HTTP", "hostname": "x.example"}]})
}

#[test]
fn rules_pass_and_fail_with_upstream_shapes() {
    let s = gateway_like();
    assert_eq!(
        messages(&s.validate(&gw(base()), None)),
        Vec::<String>::new()
    );

    let mut spec = base();
    spec["minReplicas"] = json!(5);
    assert_eq!(
        messages(&s.validate(&gw(spec), None)),
        vec![
            "spec.minReplicas: Invalid value: \"object\": minReplicas must not exceed maxReplicas"
        ]
    );

    let mut spec = base();
    spec["tls"] = json!({"mode": "x"});
    assert_eq!(
        messages(&s.validate(&gw(spec), None)),
        vec!["spec: Forbidden: tls needs an HTTPS listener, have 1"]
    );

    let mut spec = base();
    spec["listeners"][0]["hostname"] = json!("Bad_Host");
    assert_eq!(
        messages(&s.validate(&gw(spec), None)),
        vec![
            "spec.listeners[0].hostname: Invalid value: \"string\": failed rule: self.matches('^[a-z0-9.-]+$')"
        ]
    );

    let mut spec = base();
    spec["memory"] = json!("2Gi");
    assert_eq!(
        messages(&s.validate(&gw(spec), None)),
        vec!["spec.memory: Invalid value: \"string\": too much memory"]
    );

    let mut obj = gw(base());
    obj["metadata"]["name"] = json!("a-very-long-name-over-twenty");
    assert_eq!(
        messages(&s.validate(&obj, None)),
        vec!["<nil>: Invalid value: \"object\": name too long"]
    );
}

#[test]
fn transition_rules_run_only_on_update() {
    let s = gateway_like();
    let old = gw(base());
    let mut spec = base();
    spec["className"] = json!("other");
    let new = gw(spec);
    // On create there is no oldSelf: the transition rule does not run.
    assert!(s.validate(&new, None).is_empty());
    assert_eq!(
        messages(&s.validate(&new, Some(&old))),
        vec!["spec: Invalid value: \"object\": className is immutable"]
    );
    // optionalOldSelf: runs on create (oldSelf = none) and on update.
    let mut old_spec = base();
    old_spec["minReplicas"] = json!(1);
    old_spec["maxReplicas"] = json!(100);
    let mut new_spec = old_spec.clone();
    new_spec["minReplicas"] = json!(0);
    assert!(
        s.validate(&gw(new_spec.clone()), Some(&gw(old_spec.clone())))
            .is_empty()
    );
    old_spec["minReplicas"] = json!(50);
    assert_eq!(
        messages(&s.validate(&gw(new_spec), Some(&gw(old_spec)))),
        vec!["spec: Invalid value: \"object\": cannot shrink that fast"]
    );
}

#[test]
fn ratcheting_skips_unchanged_invalid_subtrees() {
    let s = gateway_like();
    let mut bad = base();
    bad["listeners"][0]["hostname"] = json!("Bad_Host");
    bad["minReplicas"] = json!(1);
    let old = gw(bad.clone());
    let mut new = bad.clone();
    new["listeners"] =
        json!([{"name": "a", "protocol": "HTTP", "hostname": "Bad_Host"}, {"name": "b"}]);
    // listeners[0] is unchanged (correlated by key), so its invalid hostname is not re-rejected.
    assert!(s.validate(&gw(new), Some(&old)).is_empty());
}

#[test]
fn compile_time_rule_errors() {
    let bad = |rules: Value| {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"a": {"type": "string"}, "l": {"type": "array", "items": {"type": "string"}}},
            "x-kubernetes-validations": rules}}});
        match CompiledSchema::compile(&schema, P) {
            Ok(_) => panic!("accepted {schema}"),
            Err(e) => messages(&e),
        }
    };
    let r = bad(json!([{"rule": ""}]));
    assert_eq!(
        r,
        vec![format!(
            "{P}.properties[spec].x-kubernetes-validations[0].rule: Required value: rule is not specified"
        )]
    );
    let r = bad(json!([{"rule": "self.a ==", "message": "m"}]));
    assert!(
        r[0].starts_with(&format!(
            "{P}.properties[spec].x-kubernetes-validations[0].rule: Invalid value: "
        )),
        "{r:?}"
    );
    assert!(
        r[0].contains("compilation failed: ERROR: <input>:1:1: Syntax error"),
        "{r:?}"
    );
    let r = bad(json!([{"rule": "true", "reason": "Nope"}]));
    assert!(r[0].ends_with("supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""), "{r:?}");
    let r = bad(json!([{"rule": "true", "fieldPath": ".nope"}]));
    assert_eq!(
        r,
        vec![format!(
            "{P}.properties[spec].x-kubernetes-validations[0].fieldPath: Invalid value: \".nope\": fieldPath must be a valid path"
        )]
    );
    let r = bad(json!([{"rule": "true", "optionalOldSelf": true}]));
    assert_eq!(
        r,
        vec![format!(
            "{P}.properties[spec].x-kubernetes-validations[0].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule"
        )]
    );
}

#[test]
fn old_self_refused_under_atomic_lists() {
    let schema = json!({"type": "object", "properties": {"l": {"type": "array", "items": {"type": "object",
        "properties": {"x": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}});
    let r = messages(&CompiledSchema::compile(&schema, P).unwrap_err());
    assert_eq!(
        r,
        vec![format!(
            "{P}.properties[l].items.x-kubernetes-validations[0].rule: Invalid value: \"self == oldSelf\": oldSelf cannot be used on the uncorrelatable portion of the schema within {P}.properties[l]"
        )]
    );
}

#[test]
fn estimated_cost_over_limit_refused_at_crd_time() {
    // Unbounded list of unbounded strings with a quadratic rule: refused with upstream's text.
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "l": {"type": "array", "items": {"type": "string"},
              "x-kubernetes-validations": [{"rule": "self.all(x, self.all(y, x.contains(y)))"}]}}}}});
    let r = messages(&CompiledSchema::compile(&schema, P).unwrap_err());
    assert!(
        r.iter().any(|m| m == &format!("{P}.properties[spec].properties[l].x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)")),
        "{r:?}"
    );
    // The same rule with bounds is fine.
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "l": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 10},
              "x-kubernetes-validations": [{"rule": "self.all(x, self.all(y, x.contains(y)))"}]}}}}});
    assert!(CompiledSchema::compile(&schema, P).is_ok());
}

#[test]
fn runtime_cost_limit_stops_rules() {
    // Dyn-typed content (preserve-unknown) bypasses tight static bounds: the per-call limit stops it.
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "n": {"type": "array", "maxItems": 3000, "items": {"type": "integer"}}},
        "x-kubernetes-validations": [{"rule": "self.n.all(a, self.n.all(b, a + b >= 0))"}]}}});
    // Static estimate 3000*3000*~5 is over the per-rule limit: refused at CRD time...
    assert!(CompiledSchema::compile(&schema, P).is_err());
    // ...while with maxItems 1000 it is admitted (estimate under 10M) but a full list still
    // runs into the 1M per-call runtime limit.
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "n": {"type": "array", "maxItems": 1000, "items": {"type": "integer"}}},
        "x-kubernetes-validations": [{"rule": "self.n.all(a, self.n.all(b, a + b >= 0))"}]}}});
    let s = must_compile(schema);
    let n: Vec<i64> = (0..1000).collect();
    let t = std::time::Instant::now();
    let r = messages(&s.validate(&json!({"spec": {"n": n}}), None));
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        r,
        vec![
            "spec: Invalid value: \"object\": 'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: self.n.all(a, self.n.all(b, a + b >= 0))"
        ]
    );
}

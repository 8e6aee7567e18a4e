//! Structural-schema checks on the CRD, with upstream's messages.

use serde_json::{Value, json};

use super::CompiledSchema;
use super::tests::messages;

const P: &str = "spec.versions[0].schema.openAPIV3Schema";

fn refusal(schema: Value) -> Vec<String> {
    match CompiledSchema::compile(&schema, P) {
        Ok(_) => panic!("schema accepted: {schema}"),
        Err(e) => messages(&e),
    }
}

fn has(schema: Value, want: &str) {
    let got = refusal(schema);
    assert!(got.iter().any(|g| g == want), "want {want:?}, got {got:?}");
}

#[test]
fn structural_rules() {
    has(
        json!({"properties": {}}),
        &format!("{P}.type: Required value: must not be empty at the root"),
    );
    has(
        json!({"type": "string"}),
        &format!("{P}.type: Invalid value: \"string\": must be object at the root"),
    );
    has(
        json!({"type": "object", "properties": {"spec": {"properties": {}}}}),
        &format!(
            "{P}.properties[spec].type: Required value: must not be empty for specified object fields"
        ),
    );
    has(
        json!({"type": "object", "properties": {"l": {"type": "array"}}}),
        &format!("{P}.properties[l].items: Required value: must be specified"),
    );
    has(
        json!({"type": "object", "properties": {"l": {"type": "array", "items": {}}}}),
        &format!(
            "{P}.properties[l].items.type: Required value: must not be empty for specified array items"
        ),
    );
    has(
        json!({"type": "object", "properties": {"a": {"$ref": "#/x"}}}),
        &format!("{P}.properties[a].$ref: Forbidden: $ref is not supported"),
    );
    has(
        json!({"type": "object", "properties": {"a": {"type": "null"}}}),
        &format!(
            "{P}.properties[a].type: Forbidden: type cannot be set to null, use nullable as an alternative"
        ),
    );
    has(
        json!({"type": "object", "properties": {"a": {"type": "foo"}}}),
        &format!(
            "{P}.properties[a].type: Unsupported value: \"foo\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""
        ),
    );
    has(
        json!({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}}),
        &format!(
            "{P}.properties[a].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
        ),
    );
    has(
        json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}}}}),
        &format!(
            "{P}.properties[a].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
        ),
    );
    has(
        json!({"type": "object", "additionalProperties": {"type": "string"}}),
        &format!("{P}.additionalProperties: Forbidden: must not be used at the root"),
    );
    has(
        json!({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string"}]}}}),
        &format!("{P}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural"),
    );
    has(
        json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
        &format!(
            "{P}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
        ),
    );
    has(
        json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {}}}}),
        &format!(
            "{P}.properties[metadata].default: Forbidden: must not be set in top-level metadata"
        ),
    );
    has(
        json!({"type": "object", "properties": {"e": {"type": "string", "x-kubernetes-embedded-resource": true}}}),
        &format!(
            "{P}.properties[e].type: Invalid value: \"string\": must be object if x-kubernetes-embedded-resource is true"
        ),
    );
    has(
        json!({"type": "object", "properties": {"a": {"type": "string", "x-kubernetes-preserve-unknown-fields": false}}}),
        &format!(
            "{P}.properties[a].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"
        ),
    );
    has(
        json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}}),
        &format!(
            "{P}.properties[a].pattern: Invalid value: \"(\": must be a valid regular expression, but isn't: unclosed group"
        ),
    );
    has(
        json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"k": {"type": "string"}}}}}}),
        &format!(
            "{P}.properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
        ),
    );
    has(
        json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"], "items": {"type": "object", "properties": {"k": {"type": "string"}}}}}}),
        &format!(
            "{P}.properties[l].items.properties[k].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
        ),
    );
    has(
        json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}}}}),
        &format!(
            "{P}.properties[l].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\""
        ),
    );
    has(
        json!({"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}}),
        &format!(
            "{P}.properties[a].default: Invalid value: \"string\": {P}.properties[a].default in body must be of type integer: \"string\""
        ),
    );
}

#[test]
fn int_or_string_patterns_accepted() {
    let s = CompiledSchema::compile(
        &json!({"type": "object", "properties": {
            "a": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "b": {"x-kubernetes-int-or-string": true, "pattern": "^[0-9]+%?$"}}}),
        P,
    );
    assert!(s.is_ok(), "{:?}", s.err());
}

#[test]
fn hostile_schemas_are_bounded() {
    // 200 levels of nesting: refused with a message, no stack overflow.
    let mut deep = json!({"type": "string"});
    for _ in 0..200 {
        deep = json!({"type": "object", "properties": {"a": deep}});
    }
    let got = refusal(deep);
    assert!(
        got.iter()
            .any(|m| m.contains("must not be nested more than 64 levels")),
        "{got:?}"
    );
    // An oversized regex is refused at CRD time, not compiled per request.
    let huge = format!("^({})$", "a{1000}".repeat(100));
    let got = refusal(
        json!({"type": "object", "properties": {"a": {"type": "string", "pattern": huge}}}),
    );
    assert!(
        got[0].contains("must be a valid regular expression, but isn't"),
        "{got:?}"
    );
}

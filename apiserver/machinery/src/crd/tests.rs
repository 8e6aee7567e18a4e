//! Validation, pruning and defaulting of custom resources, with upstream's messages.

use serde_json::{Value, json};

use super::*;

const P: &str = "spec.versions[0].schema.openAPIV3Schema";

pub(super) fn must_compile(schema: Value) -> CompiledSchema {
    match CompiledSchema::compile(&schema, P) {
        Ok(s) => s,
        Err(errs) => panic!(
            "schema refused: {}",
            crate::validation::aggregate_message(&errs).unwrap_or_default()
        ),
    }
}

pub(super) fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

fn widget() -> CompiledSchema {
    must_compile(json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                    "size": {"type": "string", "enum": ["small", "large"]},
                    "name": {"type": "string", "maxLength": 5, "minLength": 2, "pattern": "^[a-z]+$"},
                    "ratio": {"type": "number", "multipleOf": 0.5, "exclusiveMaximum": true, "maximum": 5},
                    "port": {"x-kubernetes-int-or-string": true},
                    "when": {"type": "string", "format": "date-time"},
                    "id": {"type": "string", "format": "uuid"},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "x-kubernetes-list-type": "set"},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "required": ["name"], "properties": {
                            "name": {"type": "string"}, "port": {"type": "integer", "format": "int32"}}}
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 2},
                    "nullableThing": {"type": "string", "nullable": true},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }
            },
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }
    }))
}

fn cr(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

#[test]
fn valid_object_passes() {
    let s = widget();
    let obj = cr(
        json!({"size": "small", "replicas": 3, "name": "abc", "ratio": 1.5, "port": "http",
        "when": "2024-05-01T10:00:00Z", "id": "123e4567-e89b-12d3-a456-426614174000", "tags": ["a", "b"],
        "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 1}], "labels": {"x": "y"}, "nullableThing": null,
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}, "free": {"any": [1]}}),
    );
    assert_eq!(messages(&s.validate(&obj, None)), Vec::<String>::new());
}

#[test]
fn upstream_messages() {
    let s = widget();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"size": "small", "replicas": "string"}),
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
        ),
        (json!({}), "spec.size: Required value"),
        (
            json!({"size": "x"}),
            "spec.size: Unsupported value: \"x\": supported values: \"small\", \"large\"",
        ),
        (
            json!({"size": "small", "replicas": 0}),
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        ),
        (
            json!({"size": "small", "replicas": 11}),
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
        ),
        (
            json!({"size": "small", "name": "abcdef"}),
            "spec.name: Too long: may not be more than 5 bytes",
        ),
        (
            json!({"size": "small", "name": "a"}),
            "spec.name: Invalid value: \"a\": spec.name in body should be at least 2 chars long",
        ),
        (
            json!({"size": "small", "name": "AB"}),
            "spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'",
        ),
        (
            json!({"size": "small", "ratio": 1.2}),
            "spec.ratio: Invalid value: 1.2: spec.ratio in body should be a multiple of 0.5",
        ),
        (
            json!({"size": "small", "ratio": 5}),
            "spec.ratio: Invalid value: 5: spec.ratio in body should be less than 5",
        ),
        (
            json!({"size": "small", "port": true}),
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
        ),
        (
            json!({"size": "small", "when": "yesterday"}),
            "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
        ),
        (
            json!({"size": "small", "id": "nope"}),
            "spec.id: Invalid value: \"nope\": spec.id in body must be of type uuid: \"nope\"",
        ),
        (
            json!({"size": "small", "tags": ["a", "b", "c"]}),
            "spec.tags: Too many: 3: must have at most 2 items",
        ),
        (
            json!({"size": "small", "tags": ["a", "a"]}),
            "spec.tags[1]: Duplicate value: \"a\"",
        ),
        (
            json!({"size": "small", "ports": [{"name": "a"}, {"name": "a"}]}),
            "spec.ports[1]: Duplicate value: map[string]string{\"name\":\"a\"}",
        ),
        (
            json!({"size": "small", "ports": [{"port": 1}]}),
            "spec.ports[0].name: Required value",
        ),
        (
            json!({"size": "small", "labels": {"a": "1", "b": "2", "c": "3"}}),
            "spec.labels: Too many: 3: must have at most 2 items",
        ),
        (
            json!({"size": "small", "labels": {"a": 1}}),
            "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
        ),
        (
            json!({"size": "small", "name": null}),
            "spec.name: Invalid value: \"null\": spec.name in body must be of type string: \"null\"",
        ),
        (
            json!({"size": "small", "template": {"metadata": {}}}),
            "spec.template.apiVersion: Required value: must not be empty",
        ),
    ];
    for (spec, want) in cases {
        let got = messages(&s.validate(&cr(spec.clone()), None));
        assert!(
            got.iter().any(|g| g == want),
            "spec {spec}: want {want:?}, got {got:?}"
        );
    }
}

#[test]
fn ratcheting_keeps_unchanged_invalid_values() {
    let s = widget();
    let old = cr(json!({"size": "small", "replicas": 50, "name": "abc"}));
    // Unchanged invalid replicas, another field changed: accepted.
    let new = cr(json!({"size": "small", "replicas": 50, "name": "abd"}));
    assert!(s.validate(&new, Some(&old)).is_empty());
    // Changing the invalid value to another invalid value is refused.
    let new = cr(json!({"size": "small", "replicas": 51, "name": "abc"}));
    assert_eq!(s.validate(&new, Some(&old)).len(), 1);
    // On create the same object is refused.
    assert_eq!(s.validate(&old, None).len(), 1);
}

#[test]
fn pruning_reports_unknown_fields_in_order() {
    let s = widget();
    let mut obj = cr(
        json!({"size": "small", "bogus": 1, "ports": [{"name": "a", "extra": true}],
        "free": {"kept": 1}, "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1}, "kept": 2}}),
    );
    obj["status"] = json!({"ready": true, "other": 1});
    obj["metadata"]["unknownMeta"] = json!(1);
    obj["topLevel"] = json!(1);
    let pruned = s.prune(&mut obj);
    assert_eq!(
        pruned,
        vec![
            "metadata.unknownMeta",
            "spec.ports[0].extra",
            "spec.template.metadata.junk",
            "spec.bogus",
            "status.other",
            "topLevel"
        ]
    );
    assert!(obj["spec"].get("bogus").is_none());
    assert_eq!(obj["spec"]["free"]["kept"], 1);
    assert_eq!(obj["spec"]["template"]["kept"], 2);
    assert_eq!(obj["apiVersion"], "example.com/v1");
}

#[test]
fn defaults_fill_missing_and_replace_null() {
    let s = must_compile(
        json!({"type": "object", "properties": {"spec": {"type": "object", "default": {},
        "properties": {
            "replicas": {"type": "integer", "default": 1},
            "mode": {"type": "string", "default": "auto"},
            "n": {"type": "string", "nullable": true, "default": "x"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "integer", "default": 80}}}}
        }}}}),
    );
    let mut obj = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {}});
    s.apply_defaults(&mut obj);
    assert_eq!(
        obj["spec"],
        json!({"replicas": 1, "mode": "auto", "n": "x"})
    );
    let mut obj =
        json!({"spec": {"replicas": 3, "mode": null, "n": null, "items": [{}, {"p": 1}]}});
    s.apply_defaults(&mut obj);
    assert_eq!(
        obj["spec"],
        json!({"replicas": 3, "mode": "auto", "n": null, "items": [{"p": 80}, {"p": 1}]})
    );
}

#[test]
fn junctors_and_not() {
    let s = must_compile(
        json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "n": {"type": "integer", "not": {"enum": [13]}}},
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}}}),
    );
    assert!(s.validate(&json!({"spec": {"a": "x"}}), None).is_empty());
    let both = messages(&s.validate(&json!({"spec": {"a": "x", "b": "y"}}), None));
    assert!(
        both.iter()
            .any(|m| m.ends_with("spec in body must validate one and only one schema (oneOf)")),
        "{both:?}"
    );
    let n = messages(&s.validate(&json!({"spec": {"a": "x", "n": 13}}), None));
    assert_eq!(
        n,
        vec!["spec.n: Invalid value: 13: spec.n in body must not validate the schema (not)"]
    );
}

#[test]
fn scale_paths_checked() {
    let s = widget();
    let ok = ScalePaths {
        spec_replicas_path: ".spec.replicas".into(),
        status_replicas_path: ".status.replicas".into(),
        label_selector_path: Some(".status.selector".into()),
    };
    assert!(
        s.check_scale_paths(&ok, "spec.versions[0].subresources.scale")
            .is_empty()
    );
    let bad = ScalePaths {
        spec_replicas_path: ".status.replicas".into(),
        status_replicas_path: "status.replicas".into(),
        label_selector_path: None,
    };
    assert_eq!(
        messages(&s.check_scale_paths(&bad, "spec.versions[0].subresources.scale")),
        vec![
            "spec.versions[0].subresources.scale.specReplicasPath: Invalid value: \".status.replicas\": should be a json path under .spec",
            "spec.versions[0].subresources.scale.statusReplicasPath: Invalid value: \"status.replicas\": must be a simple json path starting with ."
        ]
    );
    let mut obj = json!({"spec": {"replicas": 2}});
    assert_eq!(get_json_path(&obj, ".spec.replicas"), Some(&json!(2)));
    assert!(set_json_path(&mut obj, ".status.replicas", json!(3)));
    assert_eq!(obj["status"]["replicas"], 3);
}

#[test]
fn hostile_values_are_bounded() {
    let s = widget();
    // Deeply nested preserve-unknown content is neither recursed without bound nor a crash.
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!({"a": deep});
    }
    let mut obj = cr(json!({"size": "small", "free": deep}));
    assert!(s.validate(&obj, None).is_empty());
    assert!(s.prune(&mut obj).is_empty());
    // A large set is checked in linear time.
    let many: Vec<String> = (0..50_000).map(|i| i.to_string()).collect();
    let big = must_compile(
        json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}),
    );
    let t = std::time::Instant::now();
    assert!(big.validate(&json!({"l": many}), None).is_empty());
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
}

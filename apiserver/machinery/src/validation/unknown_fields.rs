//! Unknown and duplicate fields of a request body, found the way upstream's strict decoder
//! (`sigs.k8s.io/json` `UnmarshalStrict` into the typed struct) finds them: in document order,
//! with the field path upstream prints (`spec.template.spec.containers[0].foo`), against the
//! kind's schema (the k8s-openapi schemars definitions of [`super::schema_table`]).
//!
//! Schema rules: a definition with `properties` accepts only those fields; one with
//! `additionalProperties` (a map) checks each value against it; anything else (IntOrString,
//! Quantity, RawExtension, FieldsV1, `x-kubernetes-preserve-unknown-fields`) is free-form.
//! Unknown fields are not looked into; duplicates are reported at their second occurrence.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::schema_table::schemas;
use crate::openapi::schema;
use crate::resources::ResourceInfo;

/// One problem upstream's strict decoding reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `unknown field "<path>"`.
    Unknown(String),
    /// `duplicate field "<path>"`.
    Duplicate(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unknown(p) => write!(f, "unknown field \"{p}\""),
            Problem::Duplicate(p) => write!(f, "duplicate field \"{p}\""),
        }
    }
}

/// A document as written: object members in order with duplicates kept.
#[derive(Debug)]
pub enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

macro_rules! scalar {
    ($($name:ident: $t:ty),*) => {
        $(fn $name<E>(self, _: $t) -> Result<Node, E> { Ok(Node::Scalar) })*
    };
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str,
        visit_i128: i128, visit_u128: u128, visit_bytes: &[u8]);
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            members.push((k, map.next_value::<Node>()?));
        }
        Ok(Node::Object(members))
    }
}

fn root_schema(info: &ResourceInfo) -> Option<&'static Value> {
    let s = schemas();
    s.definition(s.root_name(info)?)
}

/// Follows `$ref`s to the schema that describes a value.
fn resolve(mut schema: &'static Value) -> &'static Value {
    let defs = schemas();
    for _ in 0..16 {
        match schema::ref_target(schema, schema::V2_PREFIX).and_then(|n| defs.definition(n)) {
            Some(next) => schema = next,
            None => break,
        }
    }
    schema
}

enum Shape {
    Struct(&'static serde_json::Map<String, Value>),
    Map(&'static Value),
    List(&'static Value),
    Free,
}

fn shape(schema: &'static Value) -> Shape {
    let schema = resolve(schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return Shape::Free;
    }
    if let Some(p) = schema.get("properties").and_then(Value::as_object) {
        return Shape::Struct(p);
    }
    if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        return Shape::Map(a);
    }
    if let Some(i) = schema.get("items").filter(|i| i.is_object()) {
        return Shape::List(i);
    }
    Shape::Free
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(node: &Node, schema: Option<&'static Value>, path: &str, out: &mut Vec<Problem>) {
    let shape = schema.map_or(Shape::Free, shape);
    match node {
        Node::Object(members) => {
            let mut seen = HashSet::new();
            for (k, v) in members {
                let p = join(path, k);
                if !seen.insert(k.as_str()) {
                    out.push(Problem::Duplicate(p.clone()));
                }
                let child = match shape {
                    Shape::Struct(props) => match props.get(k) {
                        Some(s) => Some(s),
                        None => {
                            out.push(Problem::Unknown(p));
                            continue;
                        }
                    },
                    Shape::Map(values) => Some(values),
                    _ => None,
                };
                walk(v, child, &p, out);
            }
        }
        Node::Array(items) => {
            let child = match shape {
                Shape::List(i) => Some(i),
                _ => None,
            };
            for (i, item) in items.iter().enumerate() {
                walk(item, child, &format!("{path}[{i}]"), out);
            }
        }
        Node::Scalar => {}
    }
}

/// Problems of a JSON body for `info`'s kind (empty when the kind has no schema or the body
/// does not parse: decoding reports that).
pub fn check_json(info: &ResourceInfo, body: &[u8]) -> Vec<Problem> {
    match serde_json::from_slice::<Node>(body) {
        Ok(n) => check_node(info, &n),
        Err(_) => Vec::new(),
    }
}

/// Problems of a YAML body for `info`'s kind.
pub fn check_yaml(info: &ResourceInfo, body: &[u8]) -> Vec<Problem> {
    match serde_yaml::from_slice::<Node>(body) {
        Ok(n) => check_node(info, &n),
        Err(_) => Vec::new(),
    }
}

fn check_node(info: &ResourceInfo, node: &Node) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(root) = root_schema(info) {
        walk(node, Some(root), "", &mut out);
    }
    out
}

/// Duplicate fields of a JSON document, without a schema (patch bodies).
pub fn duplicates_json(body: &[u8]) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Ok(n) = serde_json::from_slice::<Node>(body) {
        walk(&n, None, "", &mut out);
    }
    out
}

/// Unknown fields of a decoded object (a patched result: it can have no duplicates).
pub fn unknown_in_value(info: &ResourceInfo, obj: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(root) = root_schema(info) {
        walk(&to_node(obj), Some(root), "", &mut out);
    }
    out
}

fn to_node(v: &Value) -> Node {
    match v {
        Value::Object(m) => Node::Object(m.iter().map(|(k, v)| (k.clone(), to_node(v))).collect()),
        Value::Array(a) => Node::Array(a.iter().map(to_node).collect()),
        _ => Node::Scalar,
    }
}

/// Drops unknown fields (and null struct fields) from a decoded object, as decoding into
/// upstream's typed structs and encoding them again does.
pub fn prune(info: &ResourceInfo, obj: &mut Value) {
    if let Some(root) = root_schema(info) {
        prune_value(obj, root);
    }
}

/// Whether `v` is an empty list or map where the schema says list or map: a Go slice or map
/// field, which upstream's `omitempty` drops when it is empty (`ports: []` after a patch removed
/// the last port reads back without `ports`).
fn empty_collection(v: &Value, schema: &'static Value) -> bool {
    match (shape(schema), v) {
        (Shape::List(_), Value::Array(a)) => a.is_empty(),
        (Shape::Map(_), Value::Object(m)) => m.is_empty(),
        _ => false,
    }
}

fn prune_value(v: &mut Value, schema: &'static Value) {
    let required: Vec<&str> = resolve(schema)
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match (shape(schema), v) {
        (Shape::Struct(props), Value::Object(m)) => {
            // A null struct field decodes to Go's zero value, which upstream omits when encoding
            // (e.g. a template's `creationTimestamp: null`); so are empty optional slices and
            // maps (required ones are the Go fields without `omitempty`, kept as sent).
            m.retain(|k, v| {
                props.get(k).is_some_and(|s| {
                    !v.is_null() && (required.contains(&k.as_str()) || !empty_collection(v, s))
                })
            });
            for (k, child) in m.iter_mut() {
                if let Some(s) = props.get(k) {
                    prune_value(child, s);
                }
            }
        }
        (Shape::Map(values), Value::Object(m)) => {
            m.values_mut().for_each(|c| prune_value(c, values));
        }
        (Shape::List(items), Value::Array(a)) => a.iter_mut().for_each(|c| prune_value(c, items)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    fn pods() -> &'static ResourceInfo {
        find("", "v1", "pods").expect("pods")
    }

    #[test]
    fn unknown_and_duplicate_fields_in_document_order() {
        let body = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","name":"b","foo":1,
            "labels":{"x":"y"},"annotations":{"k":"v"}},
            "spec":{"foo":{"bar":1},"containers":[{"name":"c","image":"i","imagee":"x",
            "ports":[{"containerPort":80,"bogus":true}],
            "resources":{"limits":{"cpu":"1"}},"livenessProbe":{"httpGet":{"port":"http"}}}],
            "overhead":{"cpu":"1"}}}"#;
        let got: Vec<String> = check_json(pods(), body)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                r#"duplicate field "metadata.name""#,
                r#"unknown field "metadata.foo""#,
                r#"unknown field "spec.foo""#,
                r#"unknown field "spec.containers[0].imagee""#,
                r#"unknown field "spec.containers[0].ports[0].bogus""#,
            ]
        );
    }

    #[test]
    fn prune_drops_empty_optional_lists_and_maps() {
        let mut v = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "labels": {}, "finalizers": []},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [], "args": [],
                "resources": {}}], "volumes": []}});
        prune(pods(), &mut v);
        // `resources: {}` is a struct (kept, as upstream prints it); `containers` is required.
        assert_eq!(
            v,
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
                "spec": {"containers": [{"name": "c", "image": "i", "resources": {}}]}})
        );
        let mut v = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a"}, "spec": {"containers": []}});
        prune(pods(), &mut v);
        assert_eq!(v["spec"]["containers"], serde_json::json!([]));
    }

    #[test]
    fn prune_drops_unknown_fields_only() {
        let mut v = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "foo": 1, "creationTimestamp": null,
                "managedFields": [{"fieldsV1": {"f:x": {}}}]},
            "spec": {"foo": 1, "containers": [{"name": "c", "x": 1, "env": [{"name": "A", "value": "1"}]}]}});
        prune(pods(), &mut v);
        assert_eq!(
            v,
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "a", "managedFields": [{"fieldsV1": {"f:x": {}}}]},
                "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}})
        );
        assert!(unknown_in_value(pods(), &v).is_empty());
    }

    #[test]
    fn every_builtin_kind_accepts_its_own_example_shape() {
        // Deployment with IntOrString, Quantity and nested templates; a CRD with free-form JSON.
        let d = find("apps", "v1", "deployments").expect("deployments");
        let body = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
            "spec":{"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":"25%"}},
            "template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c",
            "resources":{"requests":{"memory":"1Gi"}}}]}},"replica":3}}"#;
        let got: Vec<String> = check_json(d, body)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, [r#"unknown field "spec.replica""#]);
        let yaml = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  foo: 1\n";
        let got: Vec<String> = check_yaml(pods(), yaml)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, [r#"unknown field "spec.foo""#]);
        if let Some(crd) = find("apiextensions.k8s.io", "v1", "customresourcedefinitions") {
            let body = br#"{"spec":{"versions":[{"name":"v1","schema":{"openAPIV3Schema":{
                "type":"object","properties":{"spec":{"type":"object","default":{"x":1},
                "x-kubernetes-preserve-unknown-fields":true}}}}}]}}"#;
            assert_eq!(check_json(crd, body), Vec::new());
        }
    }
}

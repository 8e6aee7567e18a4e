//! The type check every stored object passes (issue 7: "every stored object is well-typed"):
//! the object is walked against its kind's schema (the same k8s-openapi schemars definitions
//! that drive OpenAPI, field validation and pruning) and a value of the wrong JSON type — a
//! string where a map is expected, a number where a string is expected, a fraction where an
//! integer is expected, an array where an object is expected — is reported the way upstream's
//! decoders report it, so that nothing a typed client cannot decode is ever stored.
//!
//! Two renderings of one [`TypeError`], as upstream has two decoders on the write path:
//! [`TypeError::json_message`] is `sigs.k8s.io/json`'s (`json: cannot unmarshal string into Go
//! struct field ObjectMeta.metadata.labels of type map[string]string`: create and update bodies,
//! JSON and merge patches), [`TypeError::unstructured_message`] is the unstructured converter's
//! (`cannot restore map from string`: strategic merge patches).
//!
//! Quantities given as JSON numbers are rewritten as strings (upstream's `resource.Quantity`
//! accepts both and always encodes a string). `null` is accepted anywhere (Go decodes it to the
//! zero value). The walk is bounded by [`MAX_DEPTH`].

use std::fmt;

use base64::Engine;
use serde_json::{Map, Value};

use super::schema_table::schemas;
use crate::openapi::schema::{V2_PREFIX, ref_target};
use crate::resources::ResourceInfo;

/// How deep the walk goes before refusing the object.
pub const MAX_DEPTH: usize = 512;

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const QUANTITY_REGEX_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// The JSON type of a value found where another was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    String,
    /// A number, with its literal (Go prints it when an integer was expected).
    Number(String),
    Bool,
    Object,
    Array,
}

impl Found {
    fn of(v: &Value) -> Found {
        match v {
            Value::String(_) => Found::String,
            Value::Number(n) => Found::Number(n.to_string()),
            Value::Bool(_) => Found::Bool,
            Value::Array(_) => Found::Array,
            // `null` is never a type error; the walk does not ask.
            Value::Object(_) | Value::Null => Found::Object,
        }
    }

    /// The Go kind the unstructured converter sees.
    fn unstructured_kind(&self) -> &'static str {
        match self {
            Found::String => "string",
            Found::Number(n) if n.contains(['.', 'e', 'E']) => "float64",
            Found::Number(_) => "int64",
            Found::Bool => "bool",
            Found::Object => "map",
            Found::Array => "slice",
        }
    }
}

/// What was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A value of the wrong JSON type; `expected` is the Go type upstream names.
    Mismatch { found: Found, expected: String },
    /// A number where an integer of `expected` bits is required (fraction or out of range).
    NotInteger { literal: String, expected: String },
    /// A quantity that is neither a string nor a number.
    Quantity,
    /// A `format: byte` string that is not base64.
    Base64 { offset: usize },
    /// A `date-time` string that is not RFC 3339.
    Time { value: String },
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// The first type error of an object, in document order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    /// The JSON field path without list indexes or map keys, as Go's decoder prints it
    /// (`spec.template.spec.containers.image`).
    pub path: String,
    /// The Go name of the innermost struct holding the field (`Container`); empty at the root.
    pub go_struct: String,
    pub problem: Problem,
}

impl TypeError {
    /// The message of upstream's JSON decoder (`sigs.k8s.io/json`).
    pub fn json_message(&self) -> String {
        let into = if self.go_struct.is_empty() && self.path.is_empty() {
            "Go value".to_string()
        } else {
            format!("Go struct field {}.{}", self.go_struct, self.path)
        };
        match &self.problem {
            Problem::Mismatch { found, expected } => {
                let found = match found {
                    Found::String => "string",
                    Found::Number(_) => "number",
                    Found::Bool => "bool",
                    Found::Object => "object",
                    Found::Array => "array",
                };
                format!("json: cannot unmarshal {found} into {into} of type {expected}")
            }
            Problem::NotInteger { literal, expected } => {
                format!("json: cannot unmarshal number {literal} into {into} of type {expected}")
            }
            Problem::Quantity => QUANTITY_REGEX_MSG.to_string(),
            Problem::Base64 { offset } => format!("illegal base64 data at input byte {offset}"),
            Problem::Time { value } => format!(
                "parsing time {value:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {value:?} as \"2006\""
            ),
            Problem::TooDeep => "json: exceeded max depth".to_string(),
        }
    }

    /// The message of upstream's unstructured converter (`FromUnstructuredWithValidation`),
    /// which strategic merge patches go through.
    pub fn unstructured_message(&self) -> String {
        match &self.problem {
            Problem::Mismatch { found, expected } => {
                let st = found.unstructured_kind();
                if expected.starts_with("map[") {
                    format!("cannot restore map from {st}")
                } else if expected.starts_with("[]") {
                    format!("cannot restore slice from {st}")
                } else if is_struct_type(expected) {
                    format!("cannot restore struct from: {st}")
                } else {
                    format!("cannot convert {st} to {expected}")
                }
            }
            Problem::NotInteger { literal, expected } => {
                let st = Found::Number(literal.clone()).unstructured_kind();
                format!("cannot convert {st} to {expected}")
            }
            _ => self.json_message(),
        }
    }
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json_message())
    }
}

fn is_struct_type(go_type: &str) -> bool {
    go_type.contains('.') && !go_type.starts_with("map[") && !go_type.starts_with("[]")
}

/// Checks (and normalizes) an object of `info`'s kind. Kinds without a built-in schema
/// (custom resources) pass unchanged.
pub fn check_object(info: &ResourceInfo, obj: &mut Value) -> Result<(), TypeError> {
    let Some(def) = schemas().root_name(info) else {
        return Ok(());
    };
    check_definition(def, obj)
}

/// Checks (and normalizes) a value against a named definition
/// (`io.k8s.api.core.v1.Pod`); unknown names pass.
pub fn check_definition(definition: &str, obj: &mut Value) -> Result<(), TypeError> {
    let Some((name, schema)) = schemas().entry(definition) else {
        return Ok(());
    };
    let mut w = Walker {
        path: Vec::new(),
        structs: Vec::new(),
    };
    w.value(obj, Some(name), schema, 0)
}

/// What a schema says a value is.
enum Shape {
    Struct(&'static Map<String, Value>),
    Map(&'static Value),
    List(&'static Value),
    IntOrString,
    Quantity,
    String { byte: bool, time: bool },
    Integer(&'static str),
    Number,
    Bool,
    Free,
}

/// Follows `$ref`s; returns the last definition name seen and the schema.
fn resolve(
    mut name: Option<&'static str>,
    mut schema: &'static Value,
) -> (Option<&'static str>, &'static Value) {
    let defs = schemas();
    for _ in 0..16 {
        match ref_target(schema, V2_PREFIX).and_then(|n| defs.entry(n)) {
            Some((n, next)) => {
                name = Some(n);
                schema = next;
            }
            None => break,
        }
    }
    (name, schema)
}

fn shape(name: Option<&str>, schema: &'static Value) -> Shape {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return Shape::Free;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return if name == Some(QUANTITY) {
            Shape::Quantity
        } else {
            Shape::IntOrString
        };
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
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => Shape::String {
            byte: format == "byte",
            time: format == "date-time",
        },
        Some("integer") => Shape::Integer(if format == "int32" { "int32" } else { "int64" }),
        Some("number") => Shape::Number,
        Some("boolean") => Shape::Bool,
        _ => Shape::Free,
    }
}

/// The Go type upstream names for a schema (`[]v1.Container`, `map[string]string`, `int32`).
fn go_type(name: Option<&'static str>, schema: &'static Value, depth: usize) -> String {
    let (name, schema) = resolve(name, schema);
    if depth > 8 {
        return "interface {}".into();
    }
    let named = |n: &str| {
        let mut parts = n.rsplit('.');
        let ty = parts.next().unwrap_or(n);
        match parts.next() {
            Some(pkg) => format!("{pkg}.{ty}"),
            None => ty.to_string(),
        }
    };
    match shape(name, schema) {
        Shape::Struct(_) | Shape::IntOrString | Shape::Quantity => {
            name.map(named).unwrap_or_else(|| "struct".into())
        }
        Shape::Map(v) => format!("map[string]{}", go_type(None, v, depth + 1)),
        Shape::List(i) => format!("[]{}", go_type(None, i, depth + 1)),
        Shape::String { byte: true, .. } => "[]uint8".into(),
        Shape::String { time: true, .. } => name.map(named).unwrap_or_else(|| "string".into()),
        Shape::String { .. } => "string".into(),
        Shape::Integer(bits) => bits.into(),
        Shape::Number => "float64".into(),
        Shape::Bool => "bool".into(),
        Shape::Free => "interface {}".into(),
    }
}

struct Walker {
    /// JSON field names from the root (Go's `FieldStack`).
    path: Vec<String>,
    /// Go struct names, innermost last (for the field being decoded).
    structs: Vec<String>,
}

impl Walker {
    fn error(&self, problem: Problem) -> TypeError {
        TypeError {
            path: self.path.join("."),
            go_struct: self.structs.last().cloned().unwrap_or_default(),
            problem,
        }
    }

    fn mismatch(&self, v: &Value, name: Option<&'static str>, schema: &'static Value) -> TypeError {
        self.error(Problem::Mismatch {
            found: Found::of(v),
            expected: go_type(name, schema, 0),
        })
    }

    fn value(
        &mut self,
        v: &mut Value,
        name: Option<&'static str>,
        schema: &'static Value,
        depth: usize,
    ) -> Result<(), TypeError> {
        if depth > MAX_DEPTH {
            return Err(self.error(Problem::TooDeep));
        }
        if v.is_null() {
            return Ok(());
        }
        let (name, schema) = resolve(name, schema);
        match shape(name, schema) {
            Shape::Free => Ok(()),
            Shape::Struct(props) => {
                let Value::Object(members) = v else {
                    return Err(self.mismatch(v, name, schema));
                };
                let short = name
                    .map(|n| n.rsplit('.').next().unwrap_or(n).to_string())
                    .unwrap_or_default();
                self.structs.push(short);
                for (k, child) in members.iter_mut() {
                    let Some(s) = props.get(k) else { continue };
                    self.path.push(k.clone());
                    let r = self.value(child, None, s, depth + 1);
                    self.path.pop();
                    r?;
                }
                self.structs.pop();
                Ok(())
            }
            Shape::Map(values) => {
                let Value::Object(members) = v else {
                    return Err(self.mismatch(v, name, schema));
                };
                for child in members.values_mut() {
                    self.value(child, None, values, depth + 1)?;
                }
                Ok(())
            }
            Shape::List(items) => {
                let Value::Array(elems) = v else {
                    return Err(self.mismatch(v, name, schema));
                };
                for child in elems.iter_mut() {
                    self.value(child, None, items, depth + 1)?;
                }
                Ok(())
            }
            Shape::IntOrString => match v {
                Value::String(_) => Ok(()),
                Value::Number(n) => int_in_range(n, "int32").then_some(()).ok_or_else(|| {
                    self.error(Problem::NotInteger {
                        literal: n.to_string(),
                        expected: "int32".into(),
                    })
                }),
                other => Err(self.error(Problem::Mismatch {
                    found: Found::of(other),
                    expected: "int32".into(),
                })),
            },
            Shape::Quantity => match v {
                Value::String(_) => Ok(()),
                Value::Number(n) => {
                    *v = Value::String(quantity_from_number(n));
                    Ok(())
                }
                _ => Err(self.error(Problem::Quantity)),
            },
            Shape::String { byte, time } => {
                let Value::String(s) = v else {
                    let expected = if time {
                        "string".to_string()
                    } else {
                        go_type(name, schema, 0)
                    };
                    return Err(self.error(Problem::Mismatch {
                        found: Found::of(v),
                        expected,
                    }));
                };
                // Go's base64 decoder skips `\r` and `\n` (wrapped PEM-like data is accepted).
                if byte
                    && let Err(e) = base64::engine::general_purpose::STANDARD.decode(
                        s.bytes()
                            .filter(|b| *b != b'\r' && *b != b'\n')
                            .collect::<Vec<u8>>(),
                    )
                {
                    let offset = match e {
                        base64::DecodeError::InvalidByte(o, _)
                        | base64::DecodeError::InvalidLastSymbol(o, _) => o,
                        _ => s.len().saturating_sub(s.len() % 4),
                    };
                    return Err(self.error(Problem::Base64 { offset }));
                }
                if time && !s.is_empty() && s.parse::<jiff::Timestamp>().is_err() {
                    return Err(self.error(Problem::Time { value: s.clone() }));
                }
                Ok(())
            }
            Shape::Integer(bits) => match v {
                Value::Number(n) if int_in_range(n, bits) => Ok(()),
                Value::Number(n) => Err(self.error(Problem::NotInteger {
                    literal: n.to_string(),
                    expected: bits.into(),
                })),
                other => Err(self.mismatch(other, name, schema)),
            },
            Shape::Number => match v {
                Value::Number(_) => Ok(()),
                other => Err(self.mismatch(other, name, schema)),
            },
            Shape::Bool => match v {
                Value::Bool(_) => Ok(()),
                other => Err(self.mismatch(other, name, schema)),
            },
        }
    }
}

fn int_in_range(n: &serde_json::Number, bits: &str) -> bool {
    match n.as_i64() {
        Some(i) if bits == "int32" => i32::try_from(i).is_ok(),
        Some(_) => true,
        None => false,
    }
}

/// A number as the string upstream's `Quantity` would encode (integers as written, fractions
/// in milli-units when exact, else the shortest decimal).
fn quantity_from_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    let milli = f * 1000.0;
    if milli.fract() == 0.0 && milli.abs() < 9.0e15 {
        let m = milli as i64;
        if m % 1000 == 0 {
            return (m / 1000).to_string();
        }
        return format!("{m}m");
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin_resources;
    use serde_json::json;

    fn info(group: &str, plural: &str) -> &'static ResourceInfo {
        builtin_resources()
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .expect("resource in table")
    }

    fn pod_err(mut v: Value) -> TypeError {
        check_object(info("", "pods"), &mut v).expect_err("type error")
    }

    #[test]
    fn labels_as_string_is_refused_with_upstream_messages() {
        let e = pod_err(json!({"metadata": {"name": "p", "labels": "invalid"}}));
        assert_eq!(
            e.json_message(),
            "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type map[string]string"
        );
        assert_eq!(e.unstructured_message(), "cannot restore map from string");
        let e = pod_err(json!({"metadata": {"labels": {"a": 1}}}));
        assert_eq!(
            e.json_message(),
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"
        );
    }

    #[test]
    fn nested_fields_name_the_innermost_struct_and_the_full_path() {
        let e = pod_err(json!({"spec": {"containers": [{"name": "c", "image": {"a": "b"}}]}}));
        assert_eq!(
            e.json_message(),
            "json: cannot unmarshal object into Go struct field Container.spec.containers.image of type string"
        );
        let e = pod_err(json!({"metadata": []}));
        assert_eq!(
            e.json_message(),
            "json: cannot unmarshal array into Go struct field Pod.metadata of type v1.ObjectMeta"
        );
        assert_eq!(
            e.unstructured_message(),
            "cannot restore struct from: slice"
        );
        let e = pod_err(json!({"spec": {"containers": {"name": "c"}}}));
        assert_eq!(e.unstructured_message(), "cannot restore slice from map");
        assert!(e.json_message().ends_with("of type []v1.Container"), "{e}");
    }

    #[test]
    fn integers_bools_and_int_or_string() {
        let mut d = json!({"spec": {"replicas": "3"}});
        let e = check_object(info("apps", "deployments"), &mut d).expect_err("string replicas");
        assert_eq!(
            e.json_message(),
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
        );
        let mut d = json!({"spec": {"replicas": 1.5}});
        let e = check_object(info("apps", "deployments"), &mut d).expect_err("fraction");
        assert_eq!(
            e.json_message(),
            "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"
        );
        let mut d = json!({"spec": {"replicas": 4_000_000_000_i64}});
        assert!(check_object(info("apps", "deployments"), &mut d).is_err());
        let e = pod_err(json!({"spec": {"hostNetwork": "yes"}}));
        assert!(
            e.json_message()
                .ends_with("PodSpec.spec.hostNetwork of type bool")
        );
        let mut svc = json!({"spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}]}});
        assert!(check_object(info("", "services"), &mut svc).is_ok());
        let mut svc = json!({"spec": {"ports": [{"port": 80, "targetPort": true}]}});
        assert!(check_object(info("", "services"), &mut svc).is_err());
    }

    #[test]
    fn quantities_become_strings_and_null_is_accepted() {
        let mut p = json!({"metadata": {"labels": null}, "spec": {"containers": [{"name": "c",
            "resources": {"limits": {"cpu": 1, "memory": "1Gi"}, "requests": {"cpu": 0.5}}}]}});
        check_object(info("", "pods"), &mut p).expect("well typed");
        assert_eq!(
            p.pointer("/spec/containers/0/resources/limits/cpu"),
            Some(&json!("1"))
        );
        assert_eq!(
            p.pointer("/spec/containers/0/resources/requests/cpu"),
            Some(&json!("500m"))
        );
        let e = pod_err(
            json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": true}}}]}}),
        );
        assert_eq!(e.json_message(), QUANTITY_REGEX_MSG);
    }

    #[test]
    fn secrets_bytes_times_and_free_form_fields() {
        let mut s = json!({"data": {"a": "aGVs\nbG8="}});
        assert!(check_object(info("", "secrets"), &mut s).is_ok());
        let mut s = json!({"data": {"a": "not base64!"}});
        let e = check_object(info("", "secrets"), &mut s).expect_err("bad base64");
        assert!(
            e.json_message()
                .starts_with("illegal base64 data at input byte")
        );
        let e = pod_err(json!({"metadata": {"creationTimestamp": "yesterday"}}));
        assert!(e.json_message().starts_with("parsing time \"yesterday\""));
        let e = pod_err(json!({"metadata": {"creationTimestamp": 5}}));
        assert!(
            e.json_message()
                .ends_with("metadata.creationTimestamp of type string")
        );
        // managedFields' fieldsV1 and unknown fields are free-form (pruning handles the latter).
        let mut p =
            json!({"metadata": {"managedFields": [{"fieldsV1": {"f:x": {}}}]}, "bogus": [1]});
        assert!(check_object(info("", "pods"), &mut p).is_ok());
    }

    #[test]
    fn depth_is_bounded() {
        let schema = schemas()
            .definition("io.k8s.api.core.v1.Pod")
            .expect("the Pod schema");
        let mut w = Walker {
            path: vec!["spec".into()],
            structs: vec!["Pod".into()],
        };
        let e = w
            .value(&mut json!({}), None, schema, MAX_DEPTH + 1)
            .expect_err("too deep");
        assert_eq!(e.problem, Problem::TooDeep);
    }
}

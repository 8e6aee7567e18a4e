//! OpenAPI value validation of a custom resource (upstream `k8s.io/kube-openapi/pkg/validation/
//! validate` as called by `apiextensions-apiserver/pkg/apiserver/validation`), with the
//! `field.Error` mapping of `kubeOpenAPIResultToFieldErrors`, list-type uniqueness
//! (`listtype.ValidateListSetsAndMaps`), embedded-resource checks, and ratcheting: on update, a
//! subtree equal to its correlated old value is not validated again.

use serde_json::{Map, Value};

use super::formats::check_format;
use super::listtype::validate_list_type;
use super::schema::{SchemaNode, SchemaType};
use super::{FieldError, rules};
use crate::validation::Path;

/// Nesting deeper than this is not walked (a body is already bounded by the decoder's depth).
const MAX_VALUE_DEPTH: usize = 128;

pub(super) fn validate(root: &SchemaNode, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    walk(root, obj, old, "", &mut errs, 0, true);
    rules::validate_rules(root, obj, old, &mut errs);
    errs
}

/// Validates `v` against `node` alone (defaults on the CRD); paths are prefixed with `prefix`.
pub(super) fn validate_value(node: &SchemaNode, v: &Value, prefix: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    walk(node, v, None, prefix, &mut errs, 0, false);
    errs
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The JSON type name of a value (what upstream prints in type errors).
pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// Go's `%v` of a float64 bound: `1` for 1.0, `1.5`, `1e+21`.
pub(super) fn go_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i64)
    } else if f.abs() >= 1e21 {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            _ => s,
        }
    } else {
        f.to_string()
    }
}

fn msg_name(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

fn type_error(path: &str, types: &str, v: &Value) -> FieldError {
    let t = json_type(v);
    FieldError::type_invalid(
        path,
        t,
        &format!(
            "{} in body must be of type {types}: \"{t}\"",
            msg_name(path)
        ),
    )
}

/// Whether `v` has the node's type (nullable and int-or-string considered).
fn check_type(node: &SchemaNode, v: &Value, path: &str, errs: &mut Vec<FieldError>) -> bool {
    if v.is_null() {
        if node.nullable {
            return false; // valid, and nothing more to check
        }
        if node.type_.is_none() && !node.int_or_string {
            return false;
        }
    }
    if node.int_or_string {
        if is_integer(v) || v.is_string() {
            return true;
        }
        errs.push(type_error(path, "integer,string", v));
        return false;
    }
    let ok = match node.ty() {
        SchemaType::Untyped => return !v.is_null(),
        SchemaType::Object => v.is_object(),
        SchemaType::Array => v.is_array(),
        SchemaType::String => v.is_string(),
        SchemaType::Integer => is_integer(v),
        SchemaType::Number => v.is_number(),
        SchemaType::Boolean => v.is_boolean(),
    };
    if !ok {
        errs.push(type_error(path, node.ty().name(), v));
    }
    ok
}

fn walk(
    node: &SchemaNode,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
    depth: usize,
    root: bool,
) {
    if depth > MAX_VALUE_DEPTH {
        return;
    }
    if old.is_some_and(|o| o == v) {
        return; // ratcheting: an unchanged value is not re-validated
    }
    if !check_type(node, v, path, errs) {
        return;
    }
    value_checks(node, v, path, errs, depth);
    match v {
        Value::Object(m) => {
            let old_m = old.and_then(Value::as_object);
            for req in &node.validation.required {
                if !m.contains_key(req) {
                    errs.push(FieldError::required(join(path, req), ""));
                }
            }
            for (k, cv) in m {
                if (root || node.embedded_resource) && k == "metadata" {
                    continue;
                }
                if let Some(cs) = node.field(k) {
                    let co = old_m.and_then(|o| o.get(k));
                    walk(cs, cv, co, &join(path, k), errs, depth + 1, false);
                }
            }
            if node.embedded_resource {
                embedded_checks(m, path, errs);
            }
        }
        Value::Array(items) => {
            if let Some(is) = &node.items {
                let olds = super::listtype::correlate(node, items, old.and_then(Value::as_array));
                for (i, item) in items.iter().enumerate() {
                    let co = olds.as_ref().and_then(|o| o[i]);
                    walk(
                        is,
                        item,
                        co,
                        &format!("{path}[{i}]"),
                        errs,
                        depth + 1,
                        false,
                    );
                }
            }
            validate_list_type(node, items, &Path::from(path), errs);
        }
        _ => {}
    }
}

/// Upstream `objectmeta.Validate` for `x-kubernetes-embedded-resource` objects.
fn embedded_checks(m: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    let p = Path::from(path);
    match m.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(
            p.child("apiVersion"),
            "must not be empty",
        )),
        Some(av) => {
            let ok = match av.split_once('/') {
                None => true,
                Some((g, ver)) => !g.is_empty() && !ver.is_empty() && !ver.contains('/'),
            };
            if !ok {
                errs.push(FieldError::invalid(
                    p.child("apiVersion"),
                    av,
                    "must be of the form <group>/<version>",
                ));
            }
        }
    }
    match m.get("kind").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(p.child("kind"), "must not be empty")),
        Some(_) => {}
    }
    if let Some(meta) = m.get("metadata") {
        match meta {
            Value::Object(mm) => {
                if let Some(name) = mm.get("name").and_then(Value::as_str) {
                    for msg in crate::validation::is_dns1123_subdomain(name) {
                        errs.push(FieldError::invalid(
                            p.child("metadata").child("name"),
                            name,
                            &msg,
                        ));
                    }
                }
            }
            other => errs.push(FieldError::invalid(
                p.child("metadata"),
                other.clone(),
                "must be an object",
            )),
        }
    }
}

fn num_msg(path: &str, what: &str, bound: f64) -> String {
    format!(
        "{} in body should be {what} {}",
        msg_name(path),
        go_float(bound)
    )
}

fn value_checks(
    node: &SchemaNode,
    v: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
    depth: usize,
) {
    let vv = &node.validation;
    let name = msg_name(path);
    match v {
        Value::String(s) => {
            let chars = || s.chars().count() as u64;
            if let Some(max) = vv.max_length
                && s.len() as u64 > max
                && chars() > max
            {
                errs.push(FieldError::too_long(path, max as usize));
            }
            if let Some(min) = vv.min_length
                && chars() < min
            {
                errs.push(FieldError::invalid(
                    path,
                    s.as_str(),
                    &format!("{name} in body should be at least {min} chars long"),
                ));
            }
            if let Some(p) = &vv.pattern
                && !p.regex.is_match(s)
            {
                errs.push(FieldError::invalid(
                    path,
                    s.as_str(),
                    &format!("{name} in body should match '{}'", p.source),
                ));
            }
            if let Some(f) = &vv.format
                && !check_format(f, s)
            {
                errs.push(FieldError::type_invalid(
                    path,
                    s.as_str(),
                    &format!(
                        "{name} in body must be of type {f}: {}",
                        crate::validation::go_quote(s)
                    ),
                ));
            }
        }
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if let Some(max) = vv.maximum
                && ((vv.exclusive_maximum && f >= max) || f > max)
            {
                let what = if vv.exclusive_maximum {
                    "less than"
                } else {
                    "less than or equal to"
                };
                errs.push(FieldError::invalid(
                    path,
                    v.clone(),
                    &num_msg(path, what, max),
                ));
            }
            if let Some(min) = vv.minimum
                && ((vv.exclusive_minimum && f <= min) || f < min)
            {
                let what = if vv.exclusive_minimum {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                errs.push(FieldError::invalid(
                    path,
                    v.clone(),
                    &num_msg(path, what, min),
                ));
            }
            if let Some(m) = vv.multiple_of.filter(|m| *m > 0.0) {
                let q = f / m;
                if (q - q.round()).abs() > 1e-9 * q.abs().max(1.0) {
                    errs.push(FieldError::invalid(
                        path,
                        v.clone(),
                        &format!("{name} in body should be a multiple of {}", go_float(m)),
                    ));
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = vv.max_items
                && n > max
            {
                errs.push(FieldError::too_many(
                    path,
                    Some(n as usize),
                    Some(max as usize),
                ));
            }
            if let Some(min) = vv.min_items
                && n < min
            {
                errs.push(FieldError::invalid(
                    path,
                    n,
                    &format!("{name} in body should have at least {min} items"),
                ));
            }
        }
        Value::Object(m) => {
            let n = m.len() as u64;
            if let Some(max) = vv.max_properties
                && n > max
            {
                errs.push(FieldError::too_many(
                    path,
                    Some(n as usize),
                    Some(max as usize),
                ));
            }
            if let Some(min) = vv.min_properties
                && n < min
            {
                errs.push(FieldError::invalid(
                    path,
                    n,
                    &format!("{name} in body should have at least {min} properties"),
                ));
            }
        }
        _ => {}
    }
    if let Some(values) = &vv.enum_values
        && !values.iter().any(|e| json_eq(e, v))
    {
        let shown: Vec<String> = values
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let refs: Vec<&str> = shown.iter().map(String::as_str).collect();
        errs.push(FieldError::not_supported(path, v.clone(), &refs));
    }
    junctors(node, v, path, errs, depth);
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

/// Validates `v` against a junctor branch, returning its errors (not recorded).
fn branch_errors(node: &SchemaNode, v: &Value, path: &str, depth: usize) -> Vec<FieldError> {
    let mut e = Vec::new();
    walk_nested(node, v, path, &mut e, depth + 1);
    e
}

/// A junctor branch: value validations plus nested properties/items, no type of its own
/// (structural schemas forbid one).
fn walk_nested(node: &SchemaNode, v: &Value, path: &str, errs: &mut Vec<FieldError>, depth: usize) {
    if depth > MAX_VALUE_DEPTH {
        return;
    }
    if node.type_.is_some() && !check_type(node, v, path, errs) {
        return;
    }
    value_checks(node, v, path, errs, depth);
    match v {
        Value::Object(m) => {
            for req in &node.validation.required {
                if !m.contains_key(req) {
                    errs.push(FieldError::required(join(path, req), ""));
                }
            }
            for (k, cv) in m {
                if let Some(cs) = node.properties.get(k) {
                    walk_nested(cs, cv, &join(path, k), errs, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = &node.items {
                for (i, item) in items.iter().enumerate() {
                    walk_nested(is, item, &format!("{path}[{i}]"), errs, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn junctors(node: &SchemaNode, v: &Value, path: &str, errs: &mut Vec<FieldError>, depth: usize) {
    let vv = &node.validation;
    let name = msg_name(path);
    // x-kubernetes-int-or-string's own anyOf [integer, string] carries no value checks.
    let int_or_string_any_of = node.int_or_string;
    let mut all_failed = false;
    for b in &vv.all_of {
        let e = branch_errors(b, v, path, depth);
        if !e.is_empty() {
            all_failed = true;
            errs.extend(e);
        }
    }
    if all_failed {
        errs.push(FieldError::invalid(
            path,
            v.clone(),
            &format!("{name} in body must validate all the schemas (allOf)"),
        ));
    }
    if !vv.any_of.is_empty() && !int_or_string_any_of {
        let mut firsts = Vec::new();
        let mut ok = false;
        for b in &vv.any_of {
            let e = branch_errors(b, v, path, depth);
            if e.is_empty() {
                ok = true;
                break;
            }
            if firsts.is_empty() {
                firsts = e;
            }
        }
        if !ok {
            errs.push(FieldError::invalid(
                path,
                v.clone(),
                &format!("{name} in body must validate at least one schema (anyOf)"),
            ));
            errs.extend(firsts);
        }
    }
    if !vv.one_of.is_empty() {
        let valid = vv
            .one_of
            .iter()
            .filter(|b| branch_errors(b, v, path, depth).is_empty())
            .count();
        if valid != 1 {
            errs.push(FieldError::invalid(
                path,
                v.clone(),
                &format!("{name} in body must validate one and only one schema (oneOf)"),
            ));
        }
    }
    if let Some(not) = &vv.not
        && branch_errors(not, v, path, depth).is_empty()
    {
        errs.push(FieldError::invalid(
            path,
            v.clone(),
            &format!("{name} in body must not validate the schema (not)"),
        ));
    }
}

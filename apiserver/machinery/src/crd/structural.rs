//! Structural-schema checks on a CRD's `openAPIV3Schema` and building the compiled tree, with
//! upstream's messages (`apiextensions-apiserver/pkg/apis/apiextensions/validation` and
//! `pkg/apiserver/schema/validation.go`). One walk does both: every node is checked, its
//! regex and CEL rules compiled, and its CEL cost multiplied by how often it can run.

use serde_json::{Map, Value};

use super::FieldError;
use super::checks::{check_defaults, list_map_checks};
use super::limits::{
    MAX_PATTERN_LEN, MAX_REGEX_SIZE, MAX_SCHEMA_DEPTH, MAX_SCHEMA_NODES,
    STATIC_ESTIMATED_CRD_COST_LIMIT,
};
use super::rules::{self, cost_error_message};
use super::schema::{ListType, MapType, Pattern, SchemaNode, SchemaType, ValueValidation};
use crate::validation::Path;

const OPENAPI_V3_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// What a node inherits from where it sits.
#[derive(Clone)]
struct Scope {
    level: Level,
    /// Inside `allOf`/`anyOf`/`oneOf`/`not` (value validation only).
    nested: bool,
    inside_meta: bool,
    defaults_forbidden: Option<String>,
    /// The path above which `oldSelf` cannot be correlated (atomic lists, atomic maps).
    forbid_old_self: Option<String>,
    /// How many times a rule here can run for one object (product of list/map sizes above).
    cardinality: u64,
    depth: usize,
}

pub(super) struct Ctx {
    pub errs: Vec<FieldError>,
    nodes: usize,
    pub total_cost: u64,
    pub expensive: Vec<(String, u64)>,
}

/// Checks `schema` and builds its compiled tree; all errors at once.
pub(super) fn check_and_build(
    schema: &Value,
    path: &str,
) -> Result<(SchemaNode, u64), Vec<FieldError>> {
    let mut cx = Ctx {
        errs: Vec::new(),
        nodes: 0,
        total_cost: 0,
        expensive: Vec::new(),
    };
    let scope = Scope {
        level: Level::Root,
        nested: false,
        inside_meta: false,
        defaults_forbidden: None,
        forbid_old_self: None,
        cardinality: 1,
        depth: 0,
    };
    let root = build(schema, &Path::new(path), &scope, &mut cx);
    if cx.total_cost > STATIC_ESTIMATED_CRD_COST_LIMIT && cx.errs.is_empty() {
        cx.expensive.sort_by_key(|e| std::cmp::Reverse(e.1));
        for (p, _) in cx.expensive.iter().take(4) {
            cx.errs.push(FieldError::forbidden(
                p,
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        cx.errs.push(FieldError::forbidden(
            path,
            &cost_error_message(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                cx.total_cost,
                STATIC_ESTIMATED_CRD_COST_LIMIT,
            ),
        ));
    }
    if cx.errs.is_empty() {
        check_defaults(&root, &Path::new(path), &mut cx.errs, 0);
    }
    if cx.errs.is_empty() {
        Ok((root, cx.total_cost))
    } else {
        Err(cx.errs)
    }
}

fn u64_of(m: &Map<String, Value>, k: &str) -> Option<u64> {
    m.get(k).and_then(Value::as_u64)
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn bool_of(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).and_then(Value::as_bool).unwrap_or(false)
}

/// Upstream's estimate of how many items of a list/map fit in one request when unbounded.
fn unbounded_cardinality(item_min_size: u64) -> u64 {
    super::limits::MAX_REQUEST_SIZE_BYTES / (item_min_size + 1)
}

/// The smallest JSON serialization of a value of this schema (upstream `estimateMinSizeJSON`).
pub(super) fn min_json_size(s: &SchemaNode) -> u64 {
    match s.ty() {
        SchemaType::Boolean => 4,
        SchemaType::Integer | SchemaType::Number => 1,
        SchemaType::String => 2,
        SchemaType::Array | SchemaType::Object => 2,
        SchemaType::Untyped => 1,
    }
}

fn build(v: &Value, path: &Path, sc: &Scope, cx: &mut Ctx) -> SchemaNode {
    let mut node = SchemaNode::default();
    cx.nodes += 1;
    if cx.nodes > MAX_SCHEMA_NODES {
        if cx.nodes == MAX_SCHEMA_NODES + 1 {
            cx.errs.push(FieldError::forbidden(
                path,
                &format!("schema must not have more than {MAX_SCHEMA_NODES} nodes"),
            ));
        }
        return node;
    }
    if sc.depth > MAX_SCHEMA_DEPTH {
        cx.errs.push(FieldError::forbidden(
            path,
            &format!("schema must not be nested more than {MAX_SCHEMA_DEPTH} levels"),
        ));
        return node;
    }
    let Some(m) = v.as_object() else {
        cx.errs.push(FieldError::invalid(
            path,
            v.clone(),
            "must be a JSON schema object",
        ));
        return node;
    };
    let errs_before = cx.errs.len();

    // specStandardValidatorV3.validate
    let ty = match m.get("type") {
        None => None,
        Some(Value::String(t)) if t == "null" => {
            cx.errs.push(FieldError::forbidden(
                path.child("type"),
                "type cannot be set to null, use nullable as an alternative",
            ));
            None
        }
        Some(Value::String(t)) => match SchemaType::parse(t) {
            Some(SchemaType::Untyped) => None,
            Some(t) => Some(t),
            None => {
                cx.errs.push(FieldError::not_supported(
                    path.child("type"),
                    t.as_str(),
                    OPENAPI_V3_TYPES,
                ));
                None
            }
        },
        Some(other) => {
            cx.errs.push(FieldError::invalid(
                path.child("type"),
                other.clone(),
                "must be a string",
            ));
            None
        }
    };
    node.type_ = ty;
    if m.contains_key("default")
        && let Some(reason) = &sc.defaults_forbidden
    {
        let detail = if reason.is_empty() {
            "must not be set".to_string()
        } else {
            format!("must not be set {reason}")
        };
        cx.errs
            .push(FieldError::forbidden(path.child("default"), &detail));
    }
    for (key, msg) in [
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ] {
        let present = match m.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty() || key == "$ref",
            Some(Value::Object(o)) => {
                !o.is_empty() || key == "additionalItems" || key == "dependencies"
            }
            Some(_) => true,
        };
        if present {
            cx.errs.push(FieldError::forbidden(path.child(key), msg));
        }
    }
    if matches!(m.get("items"), Some(Value::Array(_))) {
        cx.errs.push(FieldError::forbidden(
            path.child("items"),
            "items must be a schema object and not an array",
        ));
    }
    if sc.inside_meta && bool_of(m, "x-kubernetes-embedded-resource") {
        cx.errs.push(FieldError::forbidden(
            path.child("x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
    if bool_of(m, "uniqueItems") {
        cx.errs.push(FieldError::forbidden(
            path.child("uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }

    node.nullable = bool_of(m, "nullable");
    node.default = m.get("default").cloned();
    node.int_or_string = bool_of(m, "x-kubernetes-int-or-string");
    node.embedded_resource = bool_of(m, "x-kubernetes-embedded-resource");
    match m.get("x-kubernetes-preserve-unknown-fields") {
        Some(Value::Bool(true)) => node.preserve_unknown_fields = true,
        Some(Value::Bool(false)) => cx.errs.push(FieldError::invalid(
            path.child("x-kubernetes-preserve-unknown-fields"),
            false,
            "must be true or undefined",
        )),
        _ => {}
    }
    if node.int_or_string && node.preserve_unknown_fields {
        cx.errs.push(FieldError::invalid(
            path.child("x-kubernetes-preserve-unknown-fields"),
            true,
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if node.int_or_string && node.embedded_resource {
        cx.errs.push(FieldError::invalid(
            path.child("x-kubernetes-embedded-resource"),
            true,
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }

    // value validations
    node.validation = value_validation(m, path, sc, cx);

    // x-kubernetes-map-type / list-type / list-map-keys
    if let Some(mt) = m.get("x-kubernetes-map-type") {
        let s = mt.as_str().unwrap_or_default();
        if ty != Some(SchemaType::Object) {
            type_must_be(
                cx,
                path,
                ty,
                "must be object if x-kubernetes-map-type is specified",
            );
        }
        match s {
            "atomic" => node.map_type = Some(MapType::Atomic),
            "granular" => node.map_type = Some(MapType::Granular),
            _ => cx.errs.push(FieldError::not_supported(
                path.child("x-kubernetes-map-type"),
                s,
                &["atomic", "granular"],
            )),
        }
    }
    if let Some(lt) = m.get("x-kubernetes-list-type") {
        let s = lt.as_str().unwrap_or_default();
        if ty != Some(SchemaType::Array) {
            type_must_be(
                cx,
                path,
                ty,
                "must be array if x-kubernetes-list-type is specified",
            );
        }
        match s {
            "atomic" => node.list_type = Some(ListType::Atomic),
            "set" => node.list_type = Some(ListType::Set),
            "map" => node.list_type = Some(ListType::Map),
            _ => cx.errs.push(FieldError::not_supported(
                path.child("x-kubernetes-list-type"),
                s,
                &["atomic", "set", "map"],
            )),
        }
    }
    if let Some(Value::Array(keys)) = m.get("x-kubernetes-list-map-keys") {
        node.list_map_keys = keys
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
    }

    // children
    let child_depth = sc.depth + 1;
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, pv) in props {
            let mut sub = Scope {
                level: Level::Field,
                nested: sc.nested,
                depth: child_depth,
                ..sc.clone()
            };
            let meta_field = matches!(k.as_str(), "metadata" | "kind" | "apiVersion");
            if (sc.level == Level::Root || node.embedded_resource) && meta_field && !sc.nested {
                sub.inside_meta = true;
                if sc.level == Level::Root {
                    sub.defaults_forbidden = Some(format!("in top-level {k}"));
                }
            }
            let child = build(pv, &path.child("properties").key(k), &sub, cx);
            node.properties.insert(k.clone(), child);
        }
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            node.allows_additional = *b;
            if !*b && !node.properties.is_empty() {
                cx.errs.push(FieldError::forbidden(
                    path.child("additionalProperties"),
                    "additionalProperties and properties are mutual exclusive",
                ));
            }
        }
        Some(ap @ Value::Object(_)) => {
            if !node.properties.is_empty() {
                cx.errs.push(FieldError::forbidden(
                    path.child("additionalProperties"),
                    "additionalProperties and properties are mutual exclusive",
                ));
            }
            if sc.nested {
                cx.errs.push(FieldError::forbidden(
                    path.child("additionalProperties"),
                    "must be undefined to be structural",
                ));
            } else if sc.level == Level::Root {
                cx.errs.push(FieldError::forbidden(
                    path.child("additionalProperties"),
                    "must not be used at the root",
                ));
            }
            if node.embedded_resource {
                cx.errs.push(FieldError::forbidden(
                    path.child("additionalProperties"),
                    "must not be used if x-kubernetes-embedded-resource is set",
                ));
            }
            let max = node
                .validation
                .max_properties
                .unwrap_or_else(|| unbounded_cardinality(raw_min_json_size(ap) + 3));
            let mut sub = Scope {
                level: Level::Field,
                depth: child_depth,
                cardinality: sc.cardinality.saturating_mul(max.max(1)),
                ..sc.clone()
            };
            if sc.inside_meta {
                sub.defaults_forbidden =
                    Some("inside additionalProperties applying to object metadata".into());
            }
            let vs = build(ap, &path.child("additionalProperties"), &sub, cx);
            node.allows_additional = true;
            node.additional_properties = Some(Box::new(vs));
        }
        _ => {}
    }
    if let Some(items @ Value::Object(_)) = m.get("items") {
        let max = node
            .validation
            .max_items
            .unwrap_or_else(|| unbounded_cardinality(raw_min_json_size(items)));
        let mut sub = Scope {
            level: Level::Item,
            depth: child_depth,
            cardinality: sc.cardinality.saturating_mul(max.max(1)),
            ..sc.clone()
        };
        if node.list_type != Some(ListType::Map) && sub.forbid_old_self.is_none() {
            sub.forbid_old_self = Some(path.to_string());
        }
        let is = build(items, &path.child("items"), &sub, cx);
        node.items = Some(Box::new(is));
    }
    structural_invariants(&mut node, m, path, sc, cx);
    list_map_checks(&node, m, path, cx);

    // CEL rules, only when the schema is otherwise fine at this level and below
    if let Some(raw_rules) = m.get("x-kubernetes-validations") {
        if sc.nested {
            cx.errs.push(FieldError::forbidden(
                path.child("x-kubernetes-validations"),
                "must be empty to be structural",
            ));
        } else if cx.errs.len() == errs_before {
            let compiled = rules::compile_rules(
                &node,
                raw_rules,
                path,
                sc.cardinality,
                sc.forbid_old_self.as_deref(),
                sc.level == Level::Root,
                cx,
            );
            node.rules = compiled;
        }
    }
    node
}

/// [`min_json_size`] from the raw schema (before the node is built).
fn raw_min_json_size(v: &Value) -> u64 {
    let t = v
        .get("type")
        .and_then(Value::as_str)
        .and_then(SchemaType::parse);
    let n = SchemaNode {
        type_: t,
        ..Default::default()
    };
    min_json_size(&n)
}

fn type_must_be(cx: &mut Ctx, path: &Path, ty: Option<SchemaType>, msg: &str) {
    match ty {
        None => cx.errs.push(FieldError::required(path.child("type"), msg)),
        Some(t) => cx
            .errs
            .push(FieldError::invalid(path.child("type"), t.name(), msg)),
    }
}

fn value_validation(
    m: &Map<String, Value>,
    path: &Path,
    sc: &Scope,
    cx: &mut Ctx,
) -> ValueValidation {
    let mut vv = ValueValidation {
        format: str_of(m, "format")
            .filter(|f| !f.is_empty())
            .map(str::to_string),
        maximum: m.get("maximum").and_then(Value::as_f64),
        exclusive_maximum: bool_of(m, "exclusiveMaximum"),
        minimum: m.get("minimum").and_then(Value::as_f64),
        exclusive_minimum: bool_of(m, "exclusiveMinimum"),
        max_length: u64_of(m, "maxLength"),
        min_length: u64_of(m, "minLength"),
        max_items: u64_of(m, "maxItems"),
        min_items: u64_of(m, "minItems"),
        multiple_of: m.get("multipleOf").and_then(Value::as_f64),
        enum_values: m.get("enum").and_then(Value::as_array).cloned(),
        max_properties: u64_of(m, "maxProperties"),
        min_properties: u64_of(m, "minProperties"),
        required: m
            .get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    if let Some(mo) = vv.multiple_of
        && mo <= 0.0
    {
        cx.errs.push(FieldError::invalid(
            path.child("multipleOf"),
            mo,
            "must be positive",
        ));
    }
    if let Some(p) = str_of(m, "pattern").filter(|p| !p.is_empty()) {
        match compile_pattern(p) {
            Ok(re) => {
                vv.pattern = Some(Pattern {
                    source: p.to_string(),
                    regex: re,
                })
            }
            Err(e) => cx.errs.push(FieldError::invalid(
                path.child("pattern"),
                p,
                &format!("must be a valid regular expression, but isn't: {e}"),
            )),
        }
    }
    let nested_scope = |depth: usize| Scope {
        nested: true,
        depth,
        ..sc.clone()
    };
    let d = sc.depth + 1;
    for (key, out) in [("allOf", 0usize), ("oneOf", 1), ("anyOf", 2)] {
        if let Some(list) = m.get(key).and_then(Value::as_array) {
            if key == "anyOf" && is_int_or_string_any_of(list) {
                continue;
            }
            let built: Vec<SchemaNode> = list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let p = path.child(key).index(i);
                    let n = build(s, &p, &nested_scope(d), cx);
                    nested_checks(s, &p, cx, sc.level);
                    n
                })
                .collect();
            match out {
                0 => vv.all_of = built,
                1 => vv.one_of = built,
                _ => vv.any_of = built,
            }
        }
    }
    if let Some(not) = m.get("not") {
        let p = path.child("not");
        let n = build(not, &p, &nested_scope(d), cx);
        nested_checks(not, &p, cx, sc.level);
        vv.not = Some(Box::new(n));
    }
    vv
}

/// `anyOf: [{type: integer}, {type: string}]`, the one place a junctor may name types.
fn is_int_or_string_any_of(list: &[Value]) -> bool {
    let only_type = |v: &Value, t: &str| {
        v.as_object()
            .is_some_and(|m| m.len() == 1 && m.get("type").and_then(Value::as_str) == Some(t))
    };
    list.len() == 2 && only_type(&list[0], "integer") && only_type(&list[1], "string")
}

/// Compiles a `pattern` with bounded size (the `regex` crate is linear-time).
pub(super) fn compile_pattern(p: &str) -> Result<regex::Regex, String> {
    if p.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern longer than {MAX_PATTERN_LEN} bytes"));
    }
    regex::RegexBuilder::new(p)
        .size_limit(MAX_REGEX_SIZE)
        .dfa_size_limit(MAX_REGEX_SIZE)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(n) => {
                format!("compiled regex exceeds size limit of {n} bytes")
            }
            other => {
                let text = other.to_string();
                let last = text.lines().last().unwrap_or_default().trim();
                last.strip_prefix("error: ").unwrap_or(last).to_string()
            }
        })
}

/// Upstream `validateNestedValueValidation`: what a junctor may not say.
fn nested_checks(v: &Value, path: &Path, cx: &mut Ctx, level: Level) {
    let Some(m) = v.as_object() else { return };
    let nonempty_str = |k: &str| str_of(m, k).is_some_and(|s| !s.is_empty());
    if nonempty_str("type") {
        cx.errs.push(FieldError::forbidden(
            path.child("type"),
            "must be empty to be structural",
        ));
    }
    if m.contains_key("default") {
        cx.errs.push(FieldError::forbidden(
            path.child("default"),
            "must be undefined to be structural",
        ));
    }
    if nonempty_str("title") {
        cx.errs.push(FieldError::forbidden(
            path.child("title"),
            "must be empty to be structural",
        ));
    }
    if nonempty_str("description") {
        cx.errs.push(FieldError::forbidden(
            path.child("description"),
            "must be empty to be structural",
        ));
    }
    if bool_of(m, "nullable") {
        cx.errs.push(FieldError::forbidden(
            path.child("nullable"),
            "must be false to be structural",
        ));
    }
    if m.contains_key("externalDocs") {
        cx.errs.push(FieldError::forbidden(
            path.child("externalDocs"),
            "must be undefined to be structural",
        ));
    }
    for k in [
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
    ] {
        if bool_of(m, k) {
            cx.errs.push(FieldError::forbidden(
                path.child(k),
                "must be false to be structural",
            ));
        }
    }
    if m.get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        cx.errs.push(FieldError::forbidden(
            path.child("x-kubernetes-list-map-keys"),
            "must be empty to be structural",
        ));
    }
    for k in ["x-kubernetes-list-type", "x-kubernetes-map-type"] {
        if m.contains_key(k) {
            cx.errs.push(FieldError::forbidden(
                path.child(k),
                "must be undefined to be structural",
            ));
        }
    }
    if m.get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key("metadata"))
        && level == Level::Root
    {
        cx.errs.push(FieldError::forbidden(
            path.child("properties").key("metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// Upstream `validateStructuralInvariants` for one (non-junctor) node.
fn structural_invariants(
    node: &mut SchemaNode,
    m: &Map<String, Value>,
    path: &Path,
    sc: &Scope,
    cx: &mut Ctx,
) {
    if sc.nested {
        return;
    }
    let ty = node.type_;
    if ty == Some(SchemaType::Array) && !m.get("items").is_some_and(Value::is_object) {
        cx.errs.push(FieldError::required(
            path.child("items"),
            "must be specified",
        ));
    }
    if node.embedded_resource && ty != Some(SchemaType::Object) {
        type_must_be(
            cx,
            path,
            ty,
            "must be object if x-kubernetes-embedded-resource is true",
        );
    } else if ty.is_none() && !node.int_or_string && !node.preserve_unknown_fields {
        let msg = match sc.level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        cx.errs.push(FieldError::required(path.child("type"), msg));
    }
    if sc.level == Level::Root
        && let Some(t) = ty.filter(|t| *t != SchemaType::Object)
    {
        cx.errs.push(FieldError::invalid(
            path.child("type"),
            t.name(),
            "must be object at the root",
        ));
    }
    let check_meta = sc.level == Level::Root || node.embedded_resource;
    if check_meta {
        for k in ["kind", "apiVersion"] {
            if let Some(p) = node.properties.get(k)
                && p.type_ != Some(SchemaType::String)
            {
                cx.errs.push(FieldError::invalid(
                    path.child("properties").key(k).child("type"),
                    p.ty().name(),
                    "must be string",
                ));
            }
        }
    }
    if let Some(meta) = node.properties.get("metadata") {
        let mp = path.child("properties").key("metadata");
        if check_meta && meta.type_ != Some(SchemaType::Object) {
            cx.errs.push(FieldError::invalid(
                mp.child("type"),
                meta.ty().name(),
                "must be object",
            ));
        }
        if sc.level == Level::Root
            && let Some(raw) = m
                .get("properties")
                .and_then(|p| p.get("metadata"))
                .and_then(Value::as_object)
        {
            let allowed = raw.iter().all(|(k, v)| match k.as_str() {
                "type" | "default" => true,
                "properties" => v
                    .as_object()
                    .is_some_and(|p| p.keys().all(|k| k == "name" || k == "generateName")),
                _ => false,
            });
            if !allowed {
                cx.errs.push(FieldError::forbidden(
                        mp,
                        "must not specify anything other than name and generateName, but metadata is implicitly specified",
                    ));
            }
        }
    }
    if node.embedded_resource && !node.preserve_unknown_fields && node.properties.is_empty() {
        cx.errs.push(FieldError::required(
            path.child("properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
    if node.int_or_string && ty.is_none() {
        node.type_ = None;
    }
}

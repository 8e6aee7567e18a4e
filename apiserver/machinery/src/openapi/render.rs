//! Renders the neutral operation model and the definitions as upstream-shaped OpenAPI v2
//! (`swagger.json`) and v3 (`/openapi/v3/<gv>`) JSON values.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::ops::{Op, PathItem, Payload};
use super::params::{In, Param};
use super::schema::{self, V2_PREFIX, V3_PREFIX};

/// The `info` of every document.
pub fn info() -> Value {
    json!({ "title": "Kubernetes", "version": "v1.35.0" })
}

fn security_scheme() -> Value {
    json!({
        "BearerToken": {
            "description": "Bearer Token authentication",
            "in": "header",
            "name": "authorization",
            "type": "apiKey"
        }
    })
}

fn gvk_value(gvk: &(String, String, String)) -> Value {
    json!({ "group": gvk.0, "kind": gvk.2, "version": gvk.1 })
}

fn param_v2(p: &Param) -> Value {
    let mut o = Map::new();
    o.insert("description".into(), p.description.clone().into());
    o.insert(
        "in".into(),
        if p.location == In::Path {
            "path"
        } else {
            "query"
        }
        .into(),
    );
    o.insert("name".into(), p.name.into());
    if p.required {
        o.insert("required".into(), true.into());
    }
    o.insert("type".into(), p.ty.as_str().into());
    o.insert("uniqueItems".into(), true.into());
    Value::Object(o)
}

fn param_v3(p: &Param) -> Value {
    let mut o = Map::new();
    o.insert("description".into(), p.description.clone().into());
    o.insert(
        "in".into(),
        if p.location == In::Path {
            "path"
        } else {
            "query"
        }
        .into(),
    );
    o.insert("name".into(), p.name.into());
    if p.required {
        o.insert("required".into(), true.into());
    }
    o.insert(
        "schema".into(),
        json!({ "type": p.ty.as_str(), "uniqueItems": true }),
    );
    Value::Object(o)
}

fn payload_schema(p: &Payload, prefix: &str) -> Value {
    match p {
        Payload::Def(d) => json!({ "$ref": format!("{prefix}{d}") }),
        Payload::String => json!({ "type": "string" }),
    }
}

fn op_v2(op: &Op) -> Value {
    let mut o = Map::new();
    if !op.consumes.is_empty() {
        o.insert("consumes".into(), json!(op.consumes));
    }
    o.insert("description".into(), op.description.clone().into());
    o.insert("operationId".into(), op.operation_id.clone().into());
    let mut params: Vec<Value> = Vec::new();
    if let Some((body, required)) = &op.body {
        let mut b = Map::new();
        b.insert("in".into(), "body".into());
        b.insert("name".into(), "body".into());
        if *required {
            b.insert("required".into(), true.into());
        }
        b.insert("schema".into(), payload_schema(body, V2_PREFIX));
        params.push(Value::Object(b));
    }
    params.extend(op.params.iter().map(param_v2));
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }
    o.insert("produces".into(), json!(op.produces));
    let mut responses = Map::new();
    for r in &op.responses {
        let mut rv = Map::new();
        rv.insert("description".into(), r.description.into());
        if let Some(p) = &r.payload {
            rv.insert("schema".into(), payload_schema(p, V2_PREFIX));
        }
        responses.insert(r.code.into(), Value::Object(rv));
    }
    o.insert("responses".into(), Value::Object(responses));
    o.insert("schemes".into(), json!(["https"]));
    o.insert("tags".into(), json!([op.tag]));
    if !op.action.is_empty() {
        o.insert("x-kubernetes-action".into(), op.action.into());
    }
    if let Some(gvk) = &op.gvk {
        o.insert("x-kubernetes-group-version-kind".into(), gvk_value(gvk));
    }
    Value::Object(o)
}

fn op_v3(op: &Op) -> Value {
    let mut o = Map::new();
    o.insert("description".into(), op.description.clone().into());
    o.insert("operationId".into(), op.operation_id.clone().into());
    if !op.params.is_empty() {
        o.insert(
            "parameters".into(),
            op.params.iter().map(param_v3).collect(),
        );
    }
    if let Some((body, required)) = &op.body {
        let mut content = Map::new();
        let media: &[&str] = if op.consumes.is_empty() {
            &["*/*"]
        } else {
            op.consumes
        };
        for m in media {
            content.insert(
                (*m).into(),
                json!({ "schema": payload_schema(body, V3_PREFIX) }),
            );
        }
        let mut rb = Map::new();
        rb.insert("content".into(), Value::Object(content));
        if *required {
            rb.insert("required".into(), true.into());
        }
        o.insert("requestBody".into(), Value::Object(rb));
    }
    let mut responses = Map::new();
    for r in &op.responses {
        let mut rv = Map::new();
        if let Some(p) = &r.payload {
            let mut content = Map::new();
            for m in op.produces {
                content.insert(
                    (*m).into(),
                    json!({ "schema": payload_schema(p, V3_PREFIX) }),
                );
            }
            rv.insert("content".into(), Value::Object(content));
        }
        rv.insert("description".into(), r.description.into());
        responses.insert(r.code.into(), Value::Object(rv));
    }
    o.insert("responses".into(), Value::Object(responses));
    o.insert("tags".into(), json!([op.tag]));
    if !op.action.is_empty() {
        o.insert("x-kubernetes-action".into(), op.action.into());
    }
    if let Some(gvk) = &op.gvk {
        o.insert("x-kubernetes-group-version-kind".into(), gvk_value(gvk));
    }
    Value::Object(o)
}

fn path_item(item: &PathItem, v3: bool) -> Value {
    let mut o = Map::new();
    for op in &item.ops {
        o.insert(
            op.method.as_str().into(),
            if v3 { op_v3(op) } else { op_v2(op) },
        );
    }
    if !item.params.is_empty() {
        let ps = item
            .params
            .iter()
            .map(if v3 { param_v3 } else { param_v2 })
            .collect();
        o.insert("parameters".into(), ps);
    }
    Value::Object(o)
}

/// Definition names referenced by the operations of `items` (v2 prefix).
pub fn operation_refs<'a>(items: impl IntoIterator<Item = &'a PathItem>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for item in items {
        for op in &item.ops {
            let payloads = op
                .body
                .iter()
                .map(|(p, _)| p)
                .chain(op.responses.iter().filter_map(|r| r.payload.as_ref()));
            for p in payloads {
                if let Payload::Def(d) = p {
                    out.insert(d.clone());
                }
            }
        }
    }
    out
}

/// The whole v2 document (keys sorted like upstream's `swagger.json`).
pub fn v2<'a>(
    items: impl IntoIterator<Item = &'a PathItem>,
    definitions: &BTreeMap<String, Value>,
) -> Value {
    let mut paths = Map::new();
    for item in items {
        paths.insert(item.path.clone(), path_item(item, false));
    }
    let defs: Map<String, Value> = definitions
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    schema::sorted(json!({
        "definitions": defs,
        "info": info(),
        "paths": paths,
        "security": [{ "BearerToken": [] }],
        "securityDefinitions": security_scheme(),
        "swagger": "2.0"
    }))
}

/// One v3 document: the given paths and the definitions they reach.
pub fn v3<'a>(
    items: impl IntoIterator<Item = &'a PathItem> + Clone,
    definitions: &BTreeMap<String, Value>,
) -> Value {
    let roots = operation_refs(items.clone());
    let mut paths = Map::new();
    for item in items {
        paths.insert(item.path.clone(), path_item(item, true));
    }
    let mut schemas = Map::new();
    for name in schema::reachable(definitions, roots) {
        if let Some(def) = definitions.get(&name) {
            schemas.insert(name, schema::to_v3(def));
        }
    }
    schema::sorted(json!({
        "components": { "schemas": schemas, "securitySchemes": security_scheme() },
        "info": info(),
        "openapi": "3.0.0",
        "paths": paths,
        "security": [{ "BearerToken": [] }]
    }))
}

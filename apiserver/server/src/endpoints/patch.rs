//! PATCH: json, merge and strategic merge patches (upstream `handlers/patch.go`). A patch is a
//! mutation function given to the store's one update path (decode → options → store →
//! encode): the store applies it to the current object and retries it when another writer
//! wins the race; a resourceVersion in the patch pins the write (409 when stale).

use axum::body::Body;
use axum::response::Response;
use ferrokube_machinery::openapi::facts;
use ferrokube_machinery::patch::{PatchError, json_patch, merge_patch, strategic_merge_patch};
use ferrokube_machinery::status::Status;
use http::{StatusCode, header};
use serde_json::Value;

use super::{Scope, read_body};
use crate::error::{ApiError, ApiResult};
use crate::registry::store::type_check;
use ferrokube_machinery::validation::FieldError;

/// The patch types (by Content-Type).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PatchType {
    Json,
    Merge,
    Strategic,
}

fn patch_type(scope: &Scope) -> ApiResult<PatchType> {
    let ct = scope
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        _ => Err(Status::unsupported_media_type(ct).into()),
    }
}

/// The patch types a resource without a built-in schema (custom resources) accepts: upstream
/// answers a strategic merge patch on them with 415 listing these.
const NON_STRATEGIC_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

/// The OpenAPI definition a strategic merge patch of this request is driven by: the resource's
/// kind (from the resource table's group/version/kind), or `autoscaling/v1` Scale for `/scale`.
/// `None` when the kind has no built-in schema (custom resources): upstream answers 415.
fn strategic_definition(scope: &Scope) -> Option<&'static str> {
    if scope.info.subresource == "scale" {
        return Some("io.k8s.api.autoscaling.v1.Scale");
    }
    let info = &scope.handle.info;
    facts().definition_for_gvk(&info.group, &info.version, &info.kind)
}

/// Rejects a strategic merge patch of a resource without a built-in schema (415, as upstream).
fn check_supported(scope: &Scope, kind: PatchType) -> ApiResult<Option<&'static str>> {
    if kind != PatchType::Strategic {
        return Ok(None);
    }
    match strategic_definition(scope) {
        Some(d) => Ok(Some(d)),
        None => Err(Status::unsupported_media_type_accepting(NON_STRATEGIC_TYPES).into()),
    }
}

/// Maps patch failures like upstream's handler: malformed JSON patch → 400, failed JSON patch
/// operation → 422; strategic merge errors as `interpretStrategicMergePatchError` (400, 422, or
/// the plain error, which upstream's `ErrorToAPIStatus` turns into a 500 without a reason).
fn patch_error(e: PatchError) -> ApiError {
    match e {
        PatchError::Malformed(m) | PatchError::StrategicBadRequest(m) => ApiError::bad_request(m),
        PatchError::StrategicUnprocessable(m) => Status::failure(422, "Invalid", m).into(),
        PatchError::Strategic(m) => Status::failure(500, "", m).into(),
        e @ PatchError::TooManyOperations { .. } => {
            Status::request_entity_too_large(&e.to_string()).into()
        }
        other => Status::failure(422, "Invalid", other.to_string()).into(),
    }
}

fn apply(
    kind: PatchType,
    definition: Option<&str>,
    doc: &mut Value,
    patch: &Value,
) -> ApiResult<()> {
    match kind {
        PatchType::Json => json_patch(doc, patch).map_err(patch_error),
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("the patch is not a JSON object"));
            }
            merge_patch(doc, patch);
            Ok(())
        }
        PatchType::Strategic => {
            let Some(definition) = definition else {
                return Err(Status::unsupported_media_type_accepting(NON_STRATEGIC_TYPES).into());
            };
            *doc = strategic_merge_patch(doc, patch, definition).map_err(patch_error)?;
            Ok(())
        }
    }
}

fn parse_patch(bytes: &[u8]) -> ApiResult<Value> {
    ferrokube_machinery::decode::parse_json_or_yaml(bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// `%+v` of a decoded JSON value as Go prints an unstructured map (`map[a:1 b:[x y]]`, keys
/// sorted): upstream's strategic merge patch errors quote the patch this way.
fn go_fmt(v: &Value, out: &mut String, depth: usize) {
    if depth > 64 {
        out.push_str("...");
        return;
    }
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_fmt(x, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_fmt(&m[k], out, depth + 1);
            }
            out.push(']');
        }
    }
}

/// A patch whose result is wrongly typed (upstream `patch.go`: the decode of the patched
/// object fails, answered 422 on the `patch` field with the patched JSON — or, for strategic
/// merge patches, the patch map — and the decoder's message).
fn patched_type_error(
    kind: PatchType,
    patch: &Value,
    patched: &Value,
    e: &ferrokube_machinery::validation::types::TypeError,
) -> ApiError {
    let (value, detail) = match kind {
        PatchType::Strategic => {
            let mut s = String::new();
            go_fmt(patch, &mut s, 0);
            (s, e.unstructured_message())
        }
        PatchType::Json | PatchType::Merge => (
            serde_json::to_string(patched).unwrap_or_default(),
            e.json_message(),
        ),
    };
    let err = FieldError::invalid("patch", Value::String(value), &detail);
    Status::invalid("", "", "", &[err]).into()
}

/// Handles patch of the object or its status: the patch is the mutation of the one update
/// path (upstream `patchMechanism.applyPatchToCurrentObject`); the store re-runs it on the
/// current object when another writer wins the race.
pub async fn patch(scope: &Scope, body: Body) -> ApiResult<Response> {
    let kind = patch_type(scope)?;
    let definition = check_supported(scope, kind)?;
    let validation = super::field_validation::directive(scope, "PatchOptions")?;
    let raw = read_body(body, scope.state.max_body_bytes).await?;
    let opts = scope.write_options(validation, raw.len())?;
    let patch = parse_patch(&raw)?;
    let (ns, name) = (&scope.info.namespace, &scope.info.name);
    let h = &scope.handle;
    let mut warnings = Vec::new();
    let (out, _) = scope
        .state
        .store
        .update(
            h,
            ns,
            name,
            |current| {
                let Some(current) = current else {
                    return Err(Status::not_found(&h.info.group, &h.info.plural, name).into());
                };
                let mut doc = current.clone();
                apply(kind, definition, &mut doc, &patch)?;
                scope.check_type(&mut doc)?;
                type_check(h, &mut doc).map_err(|e| patched_type_error(kind, &patch, &doc, &e))?;
                warnings = super::field_validation::check_patched(
                    scope,
                    validation,
                    &raw,
                    kind == PatchType::Json,
                    &mut doc,
                )?;
                if doc.pointer("/metadata/name").and_then(Value::as_str) != Some(&**name) {
                    return Err(ApiError::bad_request(
                        "metadata.name cannot be changed by a patch",
                    ));
                }
                Ok(doc)
            },
            &opts,
        )
        .await?;
    let resp = scope.object_response(StatusCode::OK, &out)?;
    let warnings = [warnings, opts.warnings.take()].concat();
    Ok(super::field_validation::with_warnings(resp, &warnings))
}

/// PATCH of the scale subresource: the patch applies to the Scale view of the current object;
/// its `spec.replicas` (and a pinned resourceVersion) is written into the object.
pub async fn patch_scale(scope: &Scope, body: Body) -> ApiResult<Response> {
    let kind = patch_type(scope)?;
    let definition = check_supported(scope, kind)?;
    let raw = read_body(body, scope.state.max_body_bytes).await?;
    let opts = scope.write_options(Default::default(), raw.len())?;
    let patch = parse_patch(&raw)?;
    super::scale::write_scale(scope, &opts, |scale| apply(kind, definition, scale, &patch)).await
}

//! PATCH: json, merge and strategic merge patches (upstream `handlers/patch.go`). The patched
//! object goes through the same update path as a PUT, with the read version as precondition,
//! and the whole patch is retried when another writer wins the race.

use axum::body::Body;
use axum::response::Response;
use ferrokube_machinery::openapi::facts;
use ferrokube_machinery::patch::{PatchError, json_patch, merge_patch, strategic_merge_patch};
use ferrokube_machinery::status::Status;
use http::{StatusCode, header};
use serde_json::Value;

use super::{Scope, read_body};
use crate::error::{ApiError, ApiResult};
use crate::registry::codec;
use crate::registry::store::UpdateTarget;

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
    facts().definition_for_gvk(info.group, info.version, info.kind)
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
    serde_json::from_slice(bytes)
        .or_else(|_| serde_yaml::from_slice::<Value>(bytes).map_err(|e| e.to_string()))
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Handles patch of the object or its status.
pub async fn patch(scope: &Scope, body: Body) -> ApiResult<Response> {
    let kind = patch_type(scope)?;
    let definition = check_supported(scope, kind)?;
    let dry_run = scope.query.dry_run()?;
    let validation = super::field_validation::directive(scope, "PatchOptions")?;
    let raw = read_body(body, scope.state.max_body_bytes).await?;
    let patch = parse_patch(&raw)?;
    let target = if scope.info.subresource == "status" {
        UpdateTarget::Status
    } else {
        UpdateTarget::Main
    };
    let (ns, name) = (&scope.info.namespace, &scope.info.name);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let current = scope.state.store.get(&scope.handle, ns, name).await?;
        let mut doc = codec::decode_served(&scope.handle, &current)?;
        apply(kind, definition, &mut doc, &patch)?;
        scope.check_type(&mut doc)?;
        let warnings = super::field_validation::check_patched(
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
        let patched_rv = doc
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let pinned_by_client = patched_rv != current.mod_revision.to_string();
        crate::auth::escalation::check(scope, &doc).await?;
        match scope
            .state
            .store
            .update(&scope.handle, ns, name, doc, target, dry_run)
            .await
        {
            Ok((out, _)) => {
                let resp = scope.object_response(StatusCode::OK, &out)?;
                return Ok(super::field_validation::with_warnings(resp, &warnings));
            }
            Err(ApiError::Status(s)) if s.code == 409 && !pinned_by_client && attempts < 5 => {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}

/// PATCH of the scale subresource: patch the Scale view, then write spec.replicas.
pub async fn patch_scale(scope: &Scope, body: Body) -> ApiResult<Response> {
    let kind = patch_type(scope)?;
    let definition = check_supported(scope, kind)?;
    let patch = parse_patch(&read_body(body, scope.state.max_body_bytes).await?)?;
    let current = scope
        .state
        .store
        .get(&scope.handle, &scope.info.namespace, &scope.info.name)
        .await?;
    let mut scale = super::scale::scale_of(&scope.handle, &codec::decode(&current)?);
    apply(kind, definition, &mut scale, &patch)?;
    super::scale::write_scale(scope, scale).await
}

//! PATCH with `application/apply-patch+yaml`: server-side apply (upstream
//! `handlers/patch.go` `applyPatcher` + `fieldmanager.FieldManager.Apply`). The applied
//! configuration (YAML or JSON) is merged into the live object by
//! `machinery::managedfields::apply`, which also computes the new `metadata.managedFields` or
//! the conflicts (409); a missing object is created through the normal create path.

use axum::body::Body;
use axum::response::Response;
use ferrokube_machinery::managedfields::{self, ApplyRequest, Writer};
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::FieldError;
use http::{StatusCode, header};
use serde_json::Value;

use super::{Scope, read_body};
use crate::error::{ApiError, ApiResult};
use crate::registry::codec;
use crate::registry::managed::{WRITE_CONTEXT, WriteContext};
use crate::registry::store::{UpdateTarget, now_rfc3339};

/// The apply patch media type.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// True when the request is an apply patch.
pub fn is_apply(scope: &Scope) -> bool {
    scope
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|e| e.trim().eq_ignore_ascii_case(APPLY_PATCH))
}

/// `force` is only for apply patches (upstream `ValidatePatchOptions`).
pub fn check_non_apply(scope: &Scope) -> ApiResult<()> {
    if scope.query.get("force").is_some() {
        return Err(invalid_options(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        )));
    }
    Ok(())
}

fn invalid_options(err: FieldError) -> ApiError {
    ApiError::invalid("meta.k8s.io", "PatchOptions", "", &[err])
}

fn parse_config(bytes: &[u8]) -> ApiResult<Value> {
    let v: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(_) => serde_yaml::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: the applied configuration is not an object",
        ));
    }
    Ok(v)
}

/// Handles an apply patch of the object or its status.
pub async fn apply(scope: &Scope, body: Body) -> ApiResult<Response> {
    let dry_run = scope.query.dry_run()?;
    let manager = match scope.query.get("fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => {
            return Err(invalid_options(FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )));
        }
    };
    if manager.chars().count() > 128 {
        return Err(invalid_options(FieldError::too_long("fieldManager", 128)));
    }
    let force = scope.query.flag("force");
    let mut config = parse_config(&read_body(body, scope.state.max_body_bytes).await?)?;
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    scope.check_type(&mut config)?;
    let name = &scope.info.name;
    match config.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if n == name => {}
        Some("") | None => {
            if let Some(m) = config.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("name".into(), Value::String(name.clone()));
            }
        }
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    let (target, subresource) = if scope.info.subresource == "status" {
        (UpdateTarget::Status, "status")
    } else {
        (UpdateTarget::Main, "")
    };
    let info = &scope.handle.info;
    let t = managedfields::root_type(info.group, info.version, info.kind);
    let api_version = info.api_version();
    let ns = &scope.info.namespace;
    let ctx = WriteContext {
        manager: manager.clone(),
        applied: true,
    };
    // What the stored object would look like on create (defaulted list keys).
    let mut defaulted = config.clone();
    ferrokube_machinery::defaults::apply_own(&mut defaulted);
    scope.handle.strategy.prepare_for_create(&mut defaulted);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let now = now_rfc3339();
        let req = ApplyRequest {
            writer: Writer {
                manager: &manager,
                api_version: &api_version,
                subresource,
                now: &now,
            },
            force,
            has_status: scope.handle.has_status(),
            defaulted: Some(&defaulted),
        };
        let live = match scope.state.store.get(&scope.handle, ns, name).await {
            Ok(kv) => Some(codec::decode_served(&scope.handle, &kv)?),
            Err(ApiError::Status(s)) if s.code == 404 && target == UpdateTarget::Main => None,
            Err(e) => return Err(e),
        };
        let pinned = config
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        let mut new = managedfields::apply(live.as_ref(), config.clone(), &t, &req)
            .map_err(|c| ApiError::from(c.to_status()))?;
        crate::auth::escalation::check(scope, &new).await?;
        if live.is_none() {
            if pinned {
                return Err(Status::not_found(info.group, info.plural, name).into());
            }
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let created = WRITE_CONTEXT
                .scope(
                    ctx.clone(),
                    scope.state.store.create(&scope.handle, ns, new, dry_run),
                )
                .await;
            match created {
                Ok(out) => return scope.object_response(StatusCode::CREATED, &out),
                Err(ApiError::Status(s)) if s.code == 409 && attempts < 5 => continue,
                Err(e) => return Err(e),
            }
        }
        let updated = WRITE_CONTEXT
            .scope(
                ctx.clone(),
                scope
                    .state
                    .store
                    .update(&scope.handle, ns, name, new, target, dry_run),
            )
            .await;
        match updated {
            Ok((out, _)) => return scope.object_response(StatusCode::OK, &out),
            Err(ApiError::Status(s)) if s.code == 409 && !pinned && attempts < 5 => continue,
            Err(e) => return Err(e),
        }
    }
}

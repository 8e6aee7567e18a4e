//! PUT: replace an object or its status (upstream `handlers/update.go`): decode → options →
//! store (the body is the mutation's result) → encode.

use axum::body::Body;
use axum::response::Response;
use ferrokube_machinery::status::Status;
use http::StatusCode;
use serde_json::Value;

use super::Scope;
use super::field_validation::{directive, read_object, with_warnings};
use crate::error::{ApiError, ApiResult};
use crate::registry::store::UpdateTarget;

/// Handles update.
pub async fn update(scope: &Scope, body: Body) -> ApiResult<Response> {
    let validation = directive(scope, "UpdateOptions")?;
    let (obj, warnings) = read_object(scope, body, "UpdateOptions").await?;
    check_name(scope, &obj)?;
    let opts = scope.write_options(validation, 0)?;
    let h = &scope.handle;
    let may_create = opts.subresource == UpdateTarget::Main && h.strategy.allow_create_on_update();
    let (out, created) = scope
        .state
        .store
        .update(
            h,
            &scope.info.namespace,
            &scope.info.name,
            |current| match current {
                Some(_) => Ok(obj.clone()),
                None if may_create => Ok(obj.clone()),
                None => {
                    Err(Status::not_found(&h.info.group, &h.info.plural, &scope.info.name).into())
                }
            },
            &opts,
        )
        .await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let resp = scope.object_response(code, &out)?;
    let warnings = [warnings, opts.warnings.take()].concat();
    Ok(with_warnings(resp, &warnings))
}

/// The body's name must be the URL's.
pub fn check_name(scope: &Scope, obj: &Value) -> ApiResult<()> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        return Err(ApiError::from(Status::bad_request(
            "name is required in the body on update",
        )));
    }
    if name != scope.info.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            scope.info.name
        )));
    }
    Ok(())
}

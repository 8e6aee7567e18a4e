//! PUT: replace an object or its status (upstream `handlers/update.go`).

use axum::body::Body;
use axum::response::Response;
use ferrokube_machinery::status::Status;
use http::StatusCode;
use serde_json::Value;

use super::Scope;
use crate::error::{ApiError, ApiResult};
use crate::registry::store::UpdateTarget;

/// Handles update.
pub async fn update(scope: &Scope, body: Body) -> ApiResult<Response> {
    let dry_run = scope.query.dry_run()?;
    let (obj, warnings) =
        super::field_validation::read_object(scope, body, "UpdateOptions").await?;
    check_name(scope, &obj)?;
    crate::auth::escalation::check(scope, &obj).await?;
    let target = if scope.info.subresource == "status" {
        UpdateTarget::Status
    } else {
        UpdateTarget::Main
    };
    let (out, created) = scope
        .state
        .store
        .update(
            &scope.handle,
            &scope.info.namespace,
            &scope.info.name,
            obj,
            target,
            dry_run,
        )
        .await?;
    let resp = scope.object_response(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &out,
    )?;
    Ok(super::field_validation::with_warnings(resp, &warnings))
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

//! POST: create an object (upstream `handlers/create.go`): decode → options → store → encode.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::Scope;
use super::field_validation::{directive, read_object, with_warnings};
use crate::error::ApiResult;

/// Handles create.
pub async fn create(scope: &Scope, body: Body) -> ApiResult<Response> {
    let validation = directive(scope, "CreateOptions")?;
    let (obj, warnings) = read_object(scope, body, "CreateOptions").await?;
    let opts = scope.write_options(validation, 0)?;
    if scope.handle.info.virtual_only {
        let out = crate::registry::reviews::review(scope, obj).await?;
        return scope.object_response(StatusCode::CREATED, &out);
    }
    // `read_object` type-checked the body.
    let created = scope
        .state
        .store
        .create_checked(&scope.handle, &scope.info.namespace, obj, &opts)
        .await;
    let warnings = [warnings, opts.warnings.take()].concat();
    // Admission warnings reach the client with a refusal too (kubectl prints both).
    let resp = match created {
        Ok(created) => scope.object_response(StatusCode::CREATED, &created)?,
        Err(e) => e.into_response(),
    };
    Ok(with_warnings(resp, &warnings))
}

//! POST: create an object (upstream `handlers/create.go`).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;

use super::Scope;
use crate::error::ApiResult;

/// Handles create.
pub async fn create(scope: &Scope, body: Body) -> ApiResult<Response> {
    let dry_run = scope.query.dry_run()?;
    let (mut obj, warnings) =
        super::field_validation::read_object(scope, body, "CreateOptions").await?;
    if scope.handle.info.virtual_only {
        let out = crate::registry::reviews::review(scope, obj).await?;
        return scope.object_response(StatusCode::CREATED, &out);
    }
    crate::auth::csr::prepare_create(scope, &mut obj);
    crate::auth::escalation::check(scope, &obj).await?;
    let created = scope
        .state
        .store
        .create(&scope.handle, &scope.info.namespace, obj, dry_run)
        .await?;
    let resp = scope.object_response(StatusCode::CREATED, &created)?;
    Ok(super::field_validation::with_warnings(resp, &warnings))
}

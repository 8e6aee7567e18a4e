//! GET of one object (and of its `status` subresource).

use axum::response::Response;
use http::StatusCode;

use super::{Scope, json_response};
use crate::error::ApiResult;
use crate::negotiate::Output;
use crate::registry::codec;
use crate::registry::store::GenericStore;

/// Handles get.
pub async fn get(scope: &Scope) -> ApiResult<Response> {
    let output = scope.output()?;
    let kv = scope
        .state
        .store
        .get(&scope.handle, &scope.info.namespace, &scope.info.name)
        .await?;
    if output == Output::Json {
        return Ok(json_response(
            StatusCode::OK,
            GenericStore::object_bytes(&kv).to_vec(),
        ));
    }
    let obj = codec::decode(&kv)?;
    scope.object_response(StatusCode::OK, &obj)
}

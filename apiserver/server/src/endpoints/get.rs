//! GET of one object (and of its `status` subresource).

use axum::response::Response;
use http::StatusCode;

use super::{Scope, json_response};
use crate::error::ApiResult;
use crate::negotiate::Output;
use crate::registry::codec;

/// Handles get.
pub async fn get(scope: &Scope) -> ApiResult<Response> {
    let output = scope.output()?;
    let kv = scope
        .state
        .store
        .get(&scope.handle, &scope.info.namespace, &scope.info.name)
        .await?;
    if output == Output::Json {
        let mut out = Vec::with_capacity(kv.value.len() + 32);
        codec::write_served(&scope.handle, &mut out, &kv).await?;
        return Ok(json_response(StatusCode::OK, out));
    }
    let obj = codec::decode_served(&scope.handle, &kv).await?;
    scope.object_response(StatusCode::OK, &obj)
}

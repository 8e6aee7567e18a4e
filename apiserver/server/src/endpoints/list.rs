//! GET of a collection (upstream `handlers/get.go` `ListResource`).

use axum::response::Response;
use ferrokube_storage::KeyValue;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::{Scope, json_response};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::Output;
use crate::registry::codec;
use crate::registry::store::ListResult;
use crate::table;

/// The ListMeta of a list result.
pub fn list_meta(r: &ListResult) -> Value {
    let mut m = Map::new();
    m.insert(
        "resourceVersion".into(),
        Value::String(r.revision.to_string()),
    );
    if let Some(c) = &r.continue_token {
        m.insert("continue".into(), Value::String(c.clone()));
    }
    if let Some(n) = r.remaining {
        m.insert("remainingItemCount".into(), json!(n));
    }
    Value::Object(m)
}

/// Handles list.
pub async fn list(scope: &Scope) -> ApiResult<Response> {
    let output = scope.output()?;
    let opts = scope.query.list_options()?;
    let result = scope
        .state
        .store
        .list(&scope.handle, &scope.info.namespace, &opts)
        .await?;
    let info = &scope.handle.info;
    match output {
        Output::Json => {
            // Items are spliced from their stored bytes: no parse and re-encode per item.
            let mut out = Vec::with_capacity(
                result
                    .items
                    .iter()
                    .map(|kv| kv.value.len() + 32)
                    .sum::<usize>()
                    + 256,
            );
            out.extend_from_slice(b"{\"kind\":");
            out.extend_from_slice(
                &serde_json::to_vec(&info.list_kind).map_err(ApiError::Encoding)?,
            );
            out.extend_from_slice(b",\"apiVersion\":");
            out.extend_from_slice(
                &serde_json::to_vec(&info.api_version()).map_err(ApiError::Encoding)?,
            );
            out.extend_from_slice(b",\"metadata\":");
            out.extend_from_slice(
                &serde_json::to_vec(&list_meta(&result)).map_err(ApiError::Encoding)?,
            );
            out.extend_from_slice(b",\"items\":[");
            // Items that cannot be spliced are converted together (one webhook call).
            let h = &scope.handle;
            let pending: Vec<KeyValue> = result
                .items
                .iter()
                .filter(|kv| !codec::splices(h, kv))
                .cloned()
                .collect();
            let mut converted = codec::decode_served_many(h, &pending).await?.into_iter();
            for (i, kv) in result.items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if codec::splices(h, kv) {
                    codec::write_with_rv(&mut out, &kv.value, kv.mod_revision);
                } else if let Some(v) = converted.next() {
                    serde_json::to_writer(&mut out, &v).map_err(ApiError::Encoding)?;
                }
            }
            out.extend_from_slice(b"]}");
            Ok(json_response(StatusCode::OK, out))
        }
        other => {
            let items = codec::decode_served_many(&scope.handle, &result.items).await?;
            let body = match other {
                Output::Table(v) => table::to_table(
                    &scope.handle,
                    &items,
                    list_meta(&result),
                    v,
                    scope.query.include_object(),
                    true,
                ),
                Output::PartialMetadata(v) => json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": format!("meta.k8s.io/{v}"),
                    "metadata": list_meta(&result),
                    "items": items.iter().map(table::partial_metadata).collect::<Vec<_>>(),
                }),
                _ => json!({
                    "kind": info.list_kind,
                    "apiVersion": info.api_version(),
                    "metadata": list_meta(&result),
                    "items": items,
                }),
            };
            if other == Output::Yaml {
                return scope.object_response(StatusCode::OK, &body);
            }
            Ok(json_response(
                StatusCode::OK,
                serde_json::to_vec(&body).map_err(ApiError::Encoding)?,
            ))
        }
    }
}

//! DELETE of one object and of a collection (upstream `handlers/delete.go`).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Scope, json_response, read_body};
use crate::error::{ApiError, ApiResult};
use crate::registry::codec;
use crate::registry::store::DeleteOptions;

/// Reads DeleteOptions from the body (optional) and the query.
async fn delete_options(scope: &Scope, body: Body) -> ApiResult<DeleteOptions> {
    let bytes = read_body(body, scope.state.max_body_bytes).await?;
    let mut opts = DeleteOptions {
        dry_run: scope.query.dry_run()?,
        ..Default::default()
    };
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let v: Value = if bytes.starts_with(b"k8s\0") {
            // client-go's typed clients (helm's release storage) send protobuf DeleteOptions.
            ferrokube_machinery::protobuf::decode_object(&bytes)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
        };
        if let Some(p) = v.get("preconditions") {
            opts.precondition_uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
            opts.precondition_rv = p
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
            for x in d {
                match x.as_str() {
                    Some("All") => opts.dry_run = true,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: {:?}: supported values: \"All\"",
                            other.unwrap_or_default()
                        )));
                    }
                }
            }
        }
        if let Some(pp) = v.get("propagationPolicy").and_then(Value::as_str) {
            check_propagation(pp)?;
        }
    }
    if let Some(pp) = scope.query.get("propagationPolicy") {
        check_propagation(pp)?;
    }
    Ok(opts)
}

fn check_propagation(pp: &str) -> ApiResult<()> {
    match pp {
        "Orphan" | "Background" | "Foreground" => Ok(()),
        other => Err(ApiError::bad_request(format!(
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        ))),
    }
}

/// The Success Status upstream returns for most deletes.
fn success(scope: &Scope, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": scope.info.name,
            "group": scope.handle.info.group,
            "kind": scope.handle.info.plural,
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        }
    })
}

/// Handles delete.
pub async fn delete(scope: &Scope, body: Body) -> ApiResult<Response> {
    let opts = delete_options(scope, body).await?;
    let deleted = scope
        .state
        .store
        .delete(
            &scope.handle,
            &scope.info.namespace,
            &scope.info.name,
            &opts,
        )
        .await?;
    if scope.handle.strategy.return_deleted_object() {
        return scope.object_response(StatusCode::OK, &deleted);
    }
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_vec(&success(scope, &deleted)).map_err(ApiError::Encoding)?,
    ))
}

/// Handles deletecollection: deletes every object the selectors match; returns them as a list.
pub async fn delete_collection(scope: &Scope, body: Body) -> ApiResult<Response> {
    let opts = delete_options(scope, body).await?;
    let list_opts = scope.query.list_options()?;
    let listed = scope
        .state
        .store
        .list(&scope.handle, &scope.info.namespace, &list_opts)
        .await?;
    let mut items = Vec::with_capacity(listed.items.len());
    for kv in &listed.items {
        let obj = codec::decode(kv)?;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match scope
            .state
            .store
            .delete(&scope.handle, &ns, &name, &opts)
            .await
        {
            Ok(o) => items.push(o),
            // Deleted concurrently: nothing left to do for it.
            Err(ApiError::Status(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let info = &scope.handle.info;
    let list = json!({
        "kind": info.list_kind,
        "apiVersion": info.api_version(),
        "metadata": {"resourceVersion": listed.revision.to_string()},
        "items": items,
    });
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_vec(&list).map_err(ApiError::Encoding)?,
    ))
}

//! DELETE of one object and of a collection (upstream `handlers/delete.go`).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Scope, json_response, read_body};
use crate::error::{ApiError, ApiResult};
use crate::registry::codec;
use crate::registry::store::{DeleteOptions, Deleted, Propagation};

/// Reads DeleteOptions from the body (optional) and the query.
async fn delete_options(scope: &Scope, body: Body) -> ApiResult<DeleteOptions> {
    let bytes = read_body(body, scope.state.max_body_bytes).await?;
    let mut opts = DeleteOptions {
        dry_run: scope.query.dry_run()?,
        user: scope.user.clone(),
        warnings: scope.warnings.clone(),
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
            opts.propagation = Some(check_propagation(pp)?);
        }
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            opts.grace_period = Some(g);
        }
        if let Some(o) = v.get("orphanDependents").and_then(Value::as_bool) {
            opts.orphan_dependents = Some(o);
        }
    }
    if let Some(pp) = scope.query.get("propagationPolicy") {
        opts.propagation = Some(check_propagation(pp)?);
    }
    if let Some(g) = scope.query.get("gracePeriodSeconds") {
        opts.grace_period =
            Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds \"{g}\""))
            })?);
    }
    if let Some(o) = scope.query.get("orphanDependents") {
        opts.orphan_dependents = Some(o == "true");
    }
    // Upstream `ValidateDeleteOptions`.
    if let (Some(_), Some(p)) = (opts.orphan_dependents, opts.propagation) {
        return Err(ApiError::bad_request(format!(
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: \"{p:?}\": orphanDependents and deletionPropagation cannot be both set"
        )));
    }
    Ok(opts)
}

fn check_propagation(pp: &str) -> ApiResult<Propagation> {
    match pp {
        "Orphan" => Ok(Propagation::Orphan),
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
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
    let deleted = match deleted {
        // Not deleted yet (graceful deletion, finalizers): upstream answers with the object.
        Deleted::Kept(obj) => return scope.object_response(StatusCode::OK, &obj),
        Deleted::Now(obj) => obj,
    };
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
            Ok(Deleted::Now(o) | Deleted::Kept(o)) => items.push(o),
            // Deleted concurrently: nothing left to do for it.
            Err(e) if e.is_not_found() => {}
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

/// PUT `namespaces/{name}/finalize`: replaces `spec.finalizers` only.
pub async fn finalize(scope: &Scope, body: Body) -> ApiResult<Response> {
    let validation = super::field_validation::directive(scope, "UpdateOptions")?;
    let obj = scope.read_object(body).await?;
    super::update::check_name(scope, &obj)?;
    let opts = scope.write_options(validation, 0)?;
    let out = crate::registry::namespace::finalize(
        &scope.state.store,
        &scope.handle,
        &scope.info.name,
        &obj,
        &opts,
    )
    .await?;
    scope.object_response(StatusCode::OK, &out)
}

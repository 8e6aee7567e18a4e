//! The `scale` subresource (autoscaling/v1 Scale) of workloads with `spec.replicas`.

use axum::body::Body;
use axum::response::Response;
use ferrokube_machinery::selectors::LabelSelector;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Scope, json_response, read_body};
use crate::error::{ApiError, ApiResult};
use crate::negotiate;
use crate::registry::ResourceHandle;
use crate::registry::codec;
use crate::registry::store::WriteOptions;
use ferrokube_machinery::status::Status;

/// The Scale view of a custom resource, from its CRD's scale paths (upstream
/// `customresource.scaleFromCustomResource`: missing replicas read as 0).
fn custom_scale_of(paths: &crate::crd::ScalePaths, obj: &Value) -> Value {
    let int = |p: &ferrokube_machinery::customresource::jsonpath::Path| {
        p.first(obj).and_then(Value::as_i64).unwrap_or(0)
    };
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let mut status = json!({"replicas": int(&paths.status_replicas)});
    if let Some(sel) = paths
        .label_selector
        .as_ref()
        .and_then(|p| p.first(obj))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        status["selector"] = Value::String(sel.to_string());
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": int(&paths.spec_replicas)},
        "status": status,
    })
}

/// Writes `replicas` where the object keeps its desired replicas.
fn set_replicas(h: &ResourceHandle, obj: &mut Value, replicas: i64) -> ApiResult<()> {
    let Some(paths) = h.custom.as_ref().and_then(|c| c.scale.as_ref()) else {
        obj["spec"]["replicas"] = json!(replicas);
        return Ok(());
    };
    let fields = paths
        .spec_replicas
        .fields()
        .ok_or_else(|| ApiError::internal("specReplicasPath is not a field path"))?;
    let Some((last, parents)) = fields.split_last() else {
        return Err(ApiError::internal("empty specReplicasPath"));
    };
    let mut cur = obj;
    for p in parents {
        let Some(m) = cur.as_object_mut() else {
            return Err(ApiError::bad_request(format!("{p} is not an object")));
        };
        cur = m.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    match cur.as_object_mut() {
        Some(m) => {
            m.insert(last.to_string(), json!(replicas));
            Ok(())
        }
        None => Err(ApiError::bad_request(format!(
            "{last} has no object parent"
        ))),
    }
}

/// The Scale view of an object.
pub fn scale_of(h: &ResourceHandle, obj: &Value) -> Value {
    if let Some(paths) = h.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        return custom_scale_of(paths, obj);
    }
    let selector = obj
        .pointer("/spec/selector")
        .map(|s| match s {
            Value::Object(_) => LabelSelector::from_json(s)
                .map(|l| l.to_string())
                .unwrap_or_default(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        })
        .unwrap_or_default();
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let mut status =
        json!({"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0))});
    if !selector.is_empty() {
        status["selector"] = Value::String(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": status,
    })
}

/// GET …/scale.
pub async fn get(scope: &Scope) -> ApiResult<Response> {
    let kv = scope
        .state
        .store
        .get(&scope.handle, &scope.info.namespace, &scope.info.name)
        .await?;
    let scale = scale_of(&scope.handle, &codec::decode(&kv)?);
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_vec(&scale).map_err(ApiError::Encoding)?,
    ))
}

/// PUT …/scale.
pub async fn update(scope: &Scope, body: Body) -> ApiResult<Response> {
    let ct = scope
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = negotiate::body_format(ct)?;
    let raw = read_body(body, scope.state.max_body_bytes).await?;
    let scale = negotiate::decode_body(format, &raw)?;
    let opts = scope.write_options(Default::default(), raw.len())?;
    write_scale(scope, &opts, |s| {
        *s = scale.clone();
        Ok(())
    })
    .await
}

/// Writes a Scale into the object through the store's update path: `modify` turns the Scale
/// view of the current object into the requested one (a PUT body, a patched view); its
/// `spec.replicas` is written and its resourceVersion, when the client set one, pins the write.
pub async fn write_scale(
    scope: &Scope,
    opts: &WriteOptions,
    mut modify: impl FnMut(&mut Value) -> ApiResult<()> + Send,
) -> ApiResult<Response> {
    let h = &scope.handle;
    let name = &scope.info.name;
    let (out, _) = scope
        .state
        .store
        .update(
            h,
            &scope.info.namespace,
            name,
            |current| {
                let Some(current) = current else {
                    return Err(Status::not_found(&h.info.group, &h.info.plural, name).into());
                };
                let mut scale = scale_of(h, current);
                modify(&mut scale)?;
                let replicas = scale
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| ApiError::bad_request("spec.replicas is required"))?;
                if replicas < 0 {
                    return Err(ApiError::invalid(
                        "autoscaling",
                        "Scale",
                        name,
                        &[ferrokube_machinery::validation::FieldError::invalid(
                            "spec.replicas",
                            json!(replicas),
                            "must be greater than or equal to 0",
                        )],
                    ));
                }
                let mut obj = current.clone();
                if let Some(rv) = scale
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
                }
                set_replicas(h, &mut obj, replicas)?;
                Ok(obj)
            },
            opts,
        )
        .await?;
    let scale = scale_of(h, &out);
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_vec(&scale).map_err(ApiError::Encoding)?,
    ))
}

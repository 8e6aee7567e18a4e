//! `POST pods/{name}/binding` (upstream `pkg/registry/core/pod/storage/storage.go`,
//! `BindingREST.Create` → `assignPod` → `setPodNodeAndMetadata`): sets `spec.nodeName` in one
//! guaranteed update, copies the Binding's annotations onto the pod and sets
//! `PodScheduled=True`. A pod already bound, being deleted or gated answers 409 Conflict on
//! `pods/binding`. Registered only for the `binding` subresource, which only pods have.

use axum::body::Body;
use axum::response::Response;
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::FieldError;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::{Scope, json_response, read_body};
use crate::error::{ApiError, ApiResult};
use crate::negotiate;
use crate::registry::store::now_rfc3339;

/// Why a binding cannot be applied to the pod (each becomes upstream's 409 on `pods/binding`).
#[derive(Debug, thiserror::Error)]
enum AssignError {
    /// The pod has a deletionTimestamp.
    #[error("pod {0} is being deleted, cannot be assigned to a host")]
    Deleting(String),
    /// The pod is bound already.
    #[error("pod {0} is already assigned to node \"{1}\"")]
    Assigned(String, String),
    /// Scheduling gates remain.
    #[error("pod {0} has non-empty .spec.schedulingGates")]
    Gated(String),
    /// uid precondition.
    #[error("Precondition failed: UID in precondition: {0}, UID in object meta: {1}")]
    Uid(String, String),
    /// resourceVersion precondition.
    #[error(
        "Precondition failed: ResourceVersion in precondition: {0}, ResourceVersion in object meta: {1}"
    )]
    ResourceVersion(String, String),
}

fn conflict(name: &str, e: AssignError) -> ApiError {
    Status::conflict("", "pods/binding", name, &e.to_string()).into()
}

/// Upstream `ValidatePodBinding`.
fn validate(binding: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let kind = binding
        .pointer("/target/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !kind.is_empty() && kind != "Node" {
        errs.push(FieldError::not_supported(
            "target.kind",
            kind,
            &["Node", "<empty>"],
        ));
    }
    if binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        errs.push(FieldError::required("target.name", ""));
    }
    errs
}

/// The pod with the binding applied (the mutation inside the guaranteed update).
fn assign(
    mut pod: Value,
    name: &str,
    node: &str,
    uid: &str,
    annotations: &Map<String, Value>,
) -> Result<Value, AssignError> {
    let meta = pod.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if meta.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Err(AssignError::Deleting(name.into()));
    }
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !bound.is_empty() {
        return Err(AssignError::Assigned(name.into(), bound.into()));
    }
    if pod
        .pointer("/spec/schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty())
    {
        return Err(AssignError::Gated(name.into()));
    }
    let pod_uid = meta.get("uid").and_then(Value::as_str).unwrap_or("");
    if !uid.is_empty() && uid != pod_uid {
        return Err(AssignError::Uid(uid.into(), pod_uid.into()));
    }
    let generation = meta.get("generation").cloned();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("nodeName".into(), json!(node));
    }
    if !annotations.is_empty()
        && let Some(m) = pod.get_mut("metadata").and_then(Value::as_object_mut)
    {
        let anns = m.entry("annotations").or_insert_with(|| json!({}));
        if let Some(anns) = anns.as_object_mut() {
            for (k, v) in annotations {
                anns.insert(k.clone(), v.clone());
            }
        }
    }
    // podutil.UpdatePodCondition: PodScheduled=True; lastTransitionTime only moves when the
    // status changes.
    let status = pod
        .as_object_mut()
        .map(|o| o.entry("status").or_insert_with(|| json!({})));
    if let Some(Value::Object(status)) = status {
        let conds = status.entry("conditions").or_insert_with(|| json!([]));
        if let Value::Array(conds) = conds {
            let mut cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                                   "lastTransitionTime": now_rfc3339()});
            if let Some(g) = generation {
                cond["observedGeneration"] = g;
            }
            match conds
                .iter_mut()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
            {
                Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => {}
                Some(c) => *c = cond,
                None => conds.push(cond),
            }
        }
    }
    Ok(pod)
}

/// Handles `POST …/pods/{name}/binding`.
pub async fn create(scope: &Scope, body: Body) -> ApiResult<Response> {
    let ct = scope
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = negotiate::body_format(ct)?;
    let bytes = read_body(body, scope.state.max_body_bytes).await?;
    let binding = negotiate::decode_body(format, &bytes)?;
    if !binding.is_object() {
        return Err(ApiError::bad_request("the body is not a JSON object"));
    }
    let name = &scope.info.name;
    let bname = binding
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if bname != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Binding object",
        ));
    }
    let errs = validate(&binding);
    if !errs.is_empty() {
        return Err(ApiError::invalid("", "Binding", name, &errs));
    }
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let uid = binding
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let want_rv = binding
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let annotations = binding
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !want_rv.is_empty() {
        let kv = scope
            .state
            .store
            .get(&scope.handle, &scope.info.namespace, name)
            .await?;
        let current = kv.mod_revision.to_string();
        if current != want_rv {
            return Err(conflict(
                name,
                AssignError::ResourceVersion(want_rv, current),
            ));
        }
    }
    let mut refused: Option<AssignError> = None;
    let result = scope
        .state
        .store
        .guaranteed_update_unchecked(
            &scope.handle,
            &scope.info.namespace,
            name,
            scope.query.dry_run()?,
            |pod| match assign(pod, name, &node, &uid, &annotations) {
                Ok(p) => Ok(p),
                Err(e) => {
                    let err = conflict(name, AssignError::Deleting(String::new()));
                    refused = Some(e);
                    Err(err)
                }
            },
        )
        .await;
    if let Some(e) = refused {
        return Err(conflict(name, e));
    }
    result?;
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    });
    Ok(json_response(
        StatusCode::CREATED,
        serde_json::to_vec(&status).map_err(ApiError::Encoding)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigns_once() {
        let pod = json!({"metadata": {"name": "p", "uid": "u1", "generation": 1},
                         "spec": {"containers": []}});
        let anns = Map::new();
        let bound = assign(pod, "p", "node-1", "u1", &anns).unwrap_or_default();
        assert_eq!(bound.pointer("/spec/nodeName"), Some(&json!("node-1")));
        assert_eq!(
            bound.pointer("/status/conditions/0/type"),
            Some(&json!("PodScheduled"))
        );
        let again = assign(bound, "p", "node-2", "", &anns);
        assert_eq!(
            again.err().map(|e| e.to_string()).as_deref(),
            Some("pod p is already assigned to node \"node-1\"")
        );
    }

    #[test]
    fn uid_precondition() {
        let pod = json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {}});
        assert!(matches!(
            assign(pod, "p", "n", "other", &Map::new()),
            Err(AssignError::Uid(..))
        ));
    }
}

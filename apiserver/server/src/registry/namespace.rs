//! The namespace's `/finalize` subresource (upstream `pkg/registry/core/namespace/storage`
//! `FinalizeREST`): only `spec.finalizers` changes, through the generic store's one update
//! path; a namespace being deleted whose last finalizer goes is removed
//! (`ShouldDeleteDuringUpdate` with the namespace strategy's `delete_held`).

use ferrokube_machinery::status::Status;
use serde_json::{Value, json};

use super::ResourceHandle;
use super::request::{UpdateTarget, WriteOptions};
use super::store::GenericStore;
use crate::error::ApiResult;

/// PUT `namespaces/{name}/finalize` with the decoded body; returns the namespace as stored
/// (or as it was when the update removed it).
pub async fn finalize(
    store: &GenericStore,
    h: &ResourceHandle,
    name: &str,
    body: &Value,
    opts: &WriteOptions,
) -> ApiResult<Value> {
    let requested_rv = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let fins = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let opts = WriteOptions {
        subresource: UpdateTarget::Finalize,
        ..opts.clone()
    };
    let (out, _) = store
        .update(
            h,
            "",
            name,
            |current| {
                let Some(current) = current else {
                    return Err(Status::not_found(&h.info.group, &h.info.plural, name).into());
                };
                let mut new = current.clone();
                if let Some(m) = new.as_object_mut() {
                    let spec = m.entry("spec").or_insert_with(|| json!({}));
                    if let Some(s) = spec.as_object_mut() {
                        if fins.as_array().is_some_and(|a| a.is_empty()) {
                            s.remove("finalizers");
                        } else {
                            s.insert("finalizers".into(), fins.clone());
                        }
                    }
                }
                if let (Some(rv), Some(m)) = (
                    &requested_rv,
                    new.get_mut("metadata").and_then(Value::as_object_mut),
                ) {
                    m.insert("resourceVersion".into(), Value::String(rv.clone()));
                }
                Ok(new)
            },
            &opts,
        )
        .await?;
    Ok(out)
}

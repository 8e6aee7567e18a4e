//! PersistentVolumeClaimResize (upstream `plugin/pkg/admission/storage/persistentvolume/resize`):
//! a claim's storage request may grow only when its StorageClass allows volume expansion.

use ferrokube_machinery::quota::milli_of;
use serde_json::Value;

use super::api::{ApiHandle, STORAGE_CLASSES};
use super::pod::s;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;

/// The PersistentVolumeClaimResize plugin.
pub struct PersistentVolumeClaimResize {
    pub api: ApiHandle,
}

#[async_trait::async_trait]
impl AdmissionPlugin for PersistentVolumeClaimResize {
    fn name(&self) -> &'static str {
        "PersistentVolumeClaimResize"
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        if a.operation != Operation::Update
            || !a.subresource.is_empty()
            || !a.is("", "persistentvolumeclaims")
        {
            return Ok(());
        }
        let Some(old) = old else {
            return Ok(());
        };
        let size = |v: &Value| {
            v.pointer("/spec/resources/requests/storage")
                .and_then(milli_of)
        };
        let (Some(new), Some(before)) = (size(obj), size(old)) else {
            return Ok(());
        };
        if new <= before {
            return Ok(());
        }
        let class = s(obj, "/spec/storageClassName");
        let allowed = if class.is_empty() {
            false
        } else {
            self.api
                .lookup(STORAGE_CLASSES, "", class)
                .await?
                .and_then(|c| c.get("allowVolumeExpansion").and_then(Value::as_bool))
                == Some(true)
        };
        if !allowed {
            return Err(a.forbidden(
                "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
            ));
        }
        Ok(())
    }
}

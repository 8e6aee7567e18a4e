//! StorageObjectInUseProtection (upstream `plugin/pkg/admission/storage/storageobjectinuseprotection`):
//! new PersistentVolumeClaims get the `kubernetes.io/pvc-protection` finalizer and new
//! PersistentVolumes `kubernetes.io/pv-protection`; the protection controllers
//! (`controllers/src/storageprotection.rs`) remove them once nothing uses the object.

use serde_json::{Value, json};

use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;

/// The StorageObjectInUseProtection plugin.
pub struct StorageObjectInUseProtection;

#[async_trait::async_trait]
impl AdmissionPlugin for StorageObjectInUseProtection {
    fn name(&self) -> &'static str {
        "StorageObjectInUseProtection"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        if a.operation != Operation::Create || !a.subresource.is_empty() {
            return Ok(());
        }
        let finalizer = if a.is("", "persistentvolumeclaims") {
            "kubernetes.io/pvc-protection"
        } else if a.is("", "persistentvolumes") {
            "kubernetes.io/pv-protection"
        } else {
            return Ok(());
        };
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let list = meta.entry("finalizers").or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        if let Some(l) = list.as_array_mut()
            && !l.iter().any(|f| f.as_str() == Some(finalizer))
        {
            l.push(json!(finalizer));
        }
        Ok(())
    }
}

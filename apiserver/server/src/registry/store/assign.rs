//! A narrow guaranteed update for subresources that own one precise change of an object and, like
//! upstream, write it with `Storage.GuaranteedUpdate` directly instead of the strategy's update
//! path (upstream `pkg/registry/core/pod/storage/storage.go`, `BindingREST.setPodNodeAndMetadata`:
//! the pod spec is otherwise immutable, so the strategy would reject the change).

use ferrokube_machinery::status::Status;
use ferrokube_storage::StorageError;
use serde_json::Value;

use super::{GenericStore, meta_mut};
use crate::error::{ApiError, ApiResult};
use crate::registry::{ResourceHandle, codec};

impl GenericStore {
    /// Reads the object, applies `mutate` to it and writes the result with compare-and-swap,
    /// calling `mutate` again on the fresh object after a conflict. `mutate` sees and returns the
    /// stored form; no strategy hook, managedFields entry or validation runs, so callers keep the
    /// object well-typed. With `dry_run` nothing is written.
    pub async fn guaranteed_update_unchecked<F>(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        dry_run: bool,
        mut mutate: F,
    ) -> ApiResult<Value>
    where
        F: FnMut(Value) -> ApiResult<Value>,
    {
        let key = h.key(namespace, name);
        loop {
            let Some(current) = self.storage.get(&key).await? else {
                return Err(Status::not_found(h.info.group, h.info.plural, name).into());
            };
            let old = codec::decode(&current)?;
            let mut new = mutate(old)?;
            meta_mut(&mut new)?.remove("resourceVersion");
            let bytes = codec::encode_for_storage(&new)?;
            if dry_run || bytes == current.value {
                codec::set_rv(&mut new, current.mod_revision);
                codec::to_served(h, &mut new)?;
                return Ok(new);
            }
            match self.storage.update(&key, bytes, current.mod_revision).await {
                Ok(kv) => {
                    codec::set_rv(&mut new, kv.mod_revision);
                    codec::to_served(h, &mut new)?;
                    return Ok(new);
                }
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_storage(e, h.info.group, h.info.plural, name)),
            }
        }
    }
}

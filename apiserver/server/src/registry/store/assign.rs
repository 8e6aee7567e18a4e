//! A narrow guaranteed update for subresources that own one precise change of an object and, like
//! upstream, write it with `Storage.GuaranteedUpdate` directly instead of the strategy's update
//! path (upstream `pkg/registry/core/pod/storage/storage.go`, `BindingREST.setPodNodeAndMetadata`:
//! the pod spec is otherwise immutable, so the strategy would reject the change).

use serde_json::Value;

use super::GenericStore;
use super::write::{Change, Done};
use crate::error::ApiResult;
use crate::registry::{ResourceHandle, codec};

impl GenericStore {
    /// Reads the object, applies `mutate` to it and writes the result with compare-and-swap,
    /// calling `mutate` again on the fresh object after a conflict — on the one guaranteed-update loop
    /// (`write.rs`). `mutate` sees and returns the
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
        F: FnMut(Value) -> ApiResult<Value> + Send,
    {
        let change = Change::Assign {
            mutate: &mut mutate,
            dry_run,
        };
        let mut out = match self.guaranteed_update(h, namespace, name, change).await? {
            Done::Unchanged(o) | Done::Updated(o) | Done::Created(o) | Done::Removed(o) => o,
        };
        codec::to_served(h, &mut out).await?;
        Ok(out)
    }
}

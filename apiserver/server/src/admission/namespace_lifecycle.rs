//! NamespaceLifecycle (upstream `plugin/namespace/lifecycle`): nothing is created in a namespace
//! that does not exist (404) or is being terminated (403). Namespaces that may never be deleted
//! stay a namespace strategy rule (`Strategy::forbid_delete`).

use std::sync::Arc;

use ferrokube_machinery::status::Status;
use serde_json::Value;

use super::{AdmissionPlugin, Attributes, Operation, StoreReader};
use crate::error::ApiResult;
use crate::registry::ResourceHandle;

/// The NamespaceLifecycle plugin.
pub struct NamespaceLifecycle {
    reader: StoreReader,
    namespaces: Arc<ResourceHandle>,
}

impl NamespaceLifecycle {
    /// The plugin, reading namespaces through `reader`.
    pub fn new(reader: StoreReader, namespaces: Arc<ResourceHandle>) -> Self {
        NamespaceLifecycle { reader, namespaces }
    }
}

#[async_trait::async_trait]
impl AdmissionPlugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        _obj: &Value,
        _old: Option<&Value>,
    ) -> ApiResult<()> {
        if a.operation != Operation::Create || !a.handle.info.namespaced() {
            return Ok(());
        }
        let Some(ns) = self.reader.get(&self.namespaces, "", a.namespace).await? else {
            return Err(Status::not_found("", "namespaces", a.namespace).into());
        };
        if ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
            let info = &a.handle.info;
            return Err(Status::forbidden(
                &info.group,
                &info.plural,
                a.name,
                &format!(
                    "unable to create new content in namespace {} because it is being terminated",
                    a.namespace
                ),
            )
            .into());
        }
        Ok(())
    }
}

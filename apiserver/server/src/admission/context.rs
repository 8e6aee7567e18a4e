//! What the policy and webhook plugins look up beside their configurations: the API (for
//! params and the CEL `authorizer`), the namespace of a request (`namespaceObject`,
//! `namespaceSelector`) and the other served versions of a resource (`matchPolicy:
//! Equivalent`). One is built per server and shared by the four plugins.

use std::collections::HashMap;
use std::sync::Arc;

use ferrokube_machinery::status::Status;
use serde_json::Value;

use crate::admission::{ApiHandle, Attributes, StoreReader};
use crate::error::ApiResult;
use crate::registry::{Registry, ResourceHandle};

pub struct AdmissionContext {
    pub api: ApiHandle,
    pub reader: StoreReader,
    namespaces: Option<Arc<ResourceHandle>>,
    /// Served versions of each (group, plural).
    versions: HashMap<(String, String), Vec<Arc<ResourceHandle>>>,
}

impl AdmissionContext {
    pub fn new(api: ApiHandle, reader: StoreReader, registry: &Registry) -> Self {
        let mut versions: HashMap<(String, String), Vec<Arc<ResourceHandle>>> = HashMap::new();
        for h in registry.all() {
            versions
                .entry((h.info.group.to_string(), h.info.plural.to_string()))
                .or_default()
                .push(h.clone());
        }
        AdmissionContext {
            api,
            reader,
            namespaces: registry.namespaces().cloned(),
            versions,
        }
    }

    /// The request's resource in its other served versions.
    pub fn other_versions(&self, a: &Attributes<'_>) -> Vec<&Arc<ResourceHandle>> {
        let info = &a.handle.info;
        self.versions
            .get(&(info.group.to_string(), info.plural.to_string()))
            .map(|v| {
                v.iter()
                    .filter(|h| h.info.version != info.version)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The handle a request is seen through in `version`: its own, or the matched version's
    /// (`matchPolicy: Equivalent`).
    pub fn view<'h>(&'h self, a: &'h Attributes<'_>, version: &str) -> &'h ResourceHandle {
        let info = &a.handle.info;
        if version == info.version {
            return a.handle;
        }
        self.versions
            .get(&(info.group.to_string(), info.plural.to_string()))
            .and_then(|v| v.iter().find(|h| h.info.version == version))
            .map_or(a.handle, |h| &**h)
    }

    /// The CEL `authorizer` for the request's user (null when the server state is not up).
    pub fn authorizer(&self, a: &Attributes<'_>) -> ferrokube_machinery::cel::Value {
        self.api
            .state()
            .map_or(ferrokube_machinery::cel::Value::Null, |s| {
                super::policy::authz::authorizer_value(a, s.auth.authz.clone())
            })
    }

    /// The namespace of the request (`None` for cluster-scoped requests and Namespaces); a
    /// namespace that does not exist is upstream's NotFound. As upstream's matcher: the
    /// namespace lister, a live lookup when it has nothing.
    pub async fn namespace(&self, a: &Attributes<'_>) -> ApiResult<Option<Value>> {
        let info = &a.handle.info;
        if a.namespace.is_empty() || (info.group.is_empty() && info.plural == "namespaces") {
            return Ok(None);
        }
        let Some(h) = &self.namespaces else {
            return Ok(None);
        };
        match self.reader.lookup(h, "", a.namespace).await? {
            Some(ns) => Ok(Some(ns)),
            None => Err(Status::not_found("", "namespaces", a.namespace).into()),
        }
    }
}

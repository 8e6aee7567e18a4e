//! [`ApiHandle`]: how admission plugins read other objects (upstream plugins use informers and
//! a loopback client). Reads of lists come from the watch cache (as upstream's listers, they
//! may lag a write by a moment), single objects from it too with a live lookup on a miss
//! ([`ApiHandle::lookup`]); writes (ResourceQuota usage) go through the generic store, so a
//! plugin's own writes run the one write path too.

use std::sync::{Arc, OnceLock, Weak};

use serde_json::Value;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::registry::store::ListOptions;
use crate::registry::{ResourceHandle, codec};

/// A late-bound handle on the running server (set once the `AppState` exists; the chain is
/// built before it).
#[derive(Clone, Default)]
pub struct ApiHandle(Arc<OnceLock<Weak<AppState>>>);

impl ApiHandle {
    /// Binds the handle to the server state (once; later calls are ignored).
    pub fn bind(&self, state: &Arc<AppState>) {
        let _ = self.0.set(Arc::downgrade(state));
    }

    /// The server state (500 when not bound or shutting down).
    pub fn state(&self) -> ApiResult<Arc<AppState>> {
        self.0
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| ApiError::internal("admission: the API server state is not available"))
    }

    /// The handle of a resource by group, version and plural.
    pub fn handle(
        state: &AppState,
        group: &str,
        version: &str,
        plural: &str,
    ) -> ApiResult<Arc<ResourceHandle>> {
        state
            .registry
            .get(group, version, plural)
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("admission: no resource {group}/{plural}")))
    }

    /// One object as upstream's plugins read it: the lister (the watch cache as it is, no
    /// consistency wait), then a live lookup of the backend when the cache has nothing (an
    /// object created a moment ago). A create costs no storage read when the cache has it.
    pub async fn lookup(
        &self,
        (group, version, plural): (&str, &str, &str),
        namespace: &str,
        name: &str,
    ) -> ApiResult<Option<Value>> {
        let state = self.state()?;
        let h = Self::handle(&state, group, version, plural)?;
        let kv = match state.store.get_cached(&h, namespace, name).await? {
            Some(kv) => Some(kv),
            None => state.store.get_live(&h, namespace, name).await?,
        };
        match kv {
            Some(kv) => Ok(Some(codec::decode_served(&h, &kv).await?)),
            None => Ok(None),
        }
    }

    /// Every object of a resource in `namespace` (all namespaces for `""` or cluster-scoped
    /// resources) from the watch cache, in the served version `version`.
    pub async fn list(
        &self,
        (group, version, plural): (&str, &str, &str),
        namespace: &str,
    ) -> ApiResult<Vec<Value>> {
        let state = self.state()?;
        let h = Self::handle(&state, group, version, plural)?;
        let opts = ListOptions {
            resource_version: Some("0".into()),
            ..ListOptions::default()
        };
        let res = state.store.list(&h, namespace, &opts).await?;
        codec::decode_served_many(&h, &res.items).await
    }
}

/// `core/v1` resources plugins read.
pub const SERVICE_ACCOUNTS: (&str, &str, &str) = ("", "v1", "serviceaccounts");
pub const LIMIT_RANGES: (&str, &str, &str) = ("", "v1", "limitranges");
pub const NAMESPACES: (&str, &str, &str) = ("", "v1", "namespaces");
pub const RESOURCE_QUOTAS: (&str, &str, &str) = ("", "v1", "resourcequotas");
pub const PRIORITY_CLASSES: (&str, &str, &str) = ("scheduling.k8s.io", "v1", "priorityclasses");
pub const STORAGE_CLASSES: (&str, &str, &str) = ("storage.k8s.io", "v1", "storageclasses");
pub const RUNTIME_CLASSES: (&str, &str, &str) = ("node.k8s.io", "v1", "runtimeclasses");
pub const INGRESS_CLASSES: (&str, &str, &str) = ("networking.k8s.io", "v1", "ingressclasses");

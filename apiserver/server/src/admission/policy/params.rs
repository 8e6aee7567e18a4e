//! Upstream `generic.CollectParams`: the param objects a binding's `paramRef` selects, of the
//! policy's `paramKind` (any served kind, built-in or custom), read through the generic store
//! (a get by name) or the watch cache (a selector).

use std::sync::Arc;

use ferrokube_machinery::resources::Scope;
use serde_json::Value;

use crate::AppState;
use crate::admission::ApiHandle;
use crate::auth::rbac_feed::selector_matches;
use crate::registry::store::ListOptions;
use crate::registry::{ResourceHandle, codec};

/// Most param objects one selector may bring (each is one evaluation of the policy).
const MAX_PARAMS: usize = 1000;

/// The handle serving `apiVersion`/`kind`.
pub(super) fn resolve(
    state: &AppState,
    api_version: &str,
    kind: &str,
) -> Option<Arc<ResourceHandle>> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let builtin = state.registry.all().iter().find(|h| {
        !h.info.virtual_only
            && h.info.kind == kind
            && h.info.group == group
            && h.info.version == version
    });
    if let Some(h) = builtin {
        return Some(h.clone());
    }
    state
        .registry
        .custom_handles()
        .values()
        .find(|h| h.info.kind == kind && h.info.group == group && h.info.version == version)
        .cloned()
}

/// The params to evaluate the policy with: `[None]` without paramKind or paramRef, the
/// selected objects otherwise (empty: nothing to evaluate, `parameterNotFoundAction: Allow`).
/// `Err` is a configuration error (upstream's text).
pub(super) async fn collect(
    api: &ApiHandle,
    param_kind: Option<&Value>,
    param_ref: Option<&Value>,
    request_namespace: &str,
) -> Result<Vec<Option<Value>>, String> {
    let (Some(kind), Some(pr)) = (param_kind, param_ref) else {
        return Ok(vec![None]);
    };
    let av = kind.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let k = kind.get("kind").and_then(Value::as_str).unwrap_or("");
    let state = api.state().map_err(|e| e.to_string())?;
    let Some(h) = resolve(&state, av, k) else {
        return Err(format!(
            "paramKind kind `&ParamKind{{APIVersion:{av},Kind:{k},}}` not known"
        ));
    };
    let s = |key: &str| pr.get(key).and_then(Value::as_str).unwrap_or("");
    let namespaced = h.info.scope == Scope::Namespaced;
    let ns = if namespaced {
        let ns = if s("namespace").is_empty() {
            request_namespace
        } else {
            s("namespace")
        };
        if ns.is_empty() {
            return Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into());
        }
        ns
    } else {
        if !s("namespace").is_empty() {
            return Err(
                "paramRef.namespace must not be provided for a cluster-scoped `paramKind`".into(),
            );
        }
        ""
    };
    let params: Vec<Option<Value>> = if !s("name").is_empty() {
        match state.store.get(&h, ns, s("name")).await {
            Ok(kv) => vec![Some(
                codec::decode_served(&h, &kv)
                    .await
                    .map_err(|e| e.to_string())?,
            )],
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.to_string()),
        }
    } else if let Some(sel) = pr.get("selector").filter(|v| !v.is_null()) {
        let opts = ListOptions {
            resource_version: Some("0".into()),
            ..ListOptions::default()
        };
        let res = state
            .store
            .list(&h, ns, &opts)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for kv in &res.items {
            let v = codec::decode_served(&h, kv)
                .await
                .map_err(|e| e.to_string())?;
            let labels = crate::admission::webhook::config::labels_of(Some(&v));
            if selector_matches(sel, &labels) {
                out.push(Some(v));
                if out.len() >= MAX_PARAMS {
                    break;
                }
            }
        }
        out
    } else {
        return Err("one of name or selector must be provided".into());
    };
    if params.is_empty() && s("parameterNotFoundAction") == "Deny" {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(params)
}

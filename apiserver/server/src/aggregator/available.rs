//! The availability controller (upstream `kube-aggregator/pkg/controllers/status`): every
//! APIService's `Available` condition, checked when APIServices change and every
//! [`RECHECK`]. A remote APIService is available when its service resolves and its backend
//! answers `GET /apis/{group}/{version}` with a resource list, which is kept for discovery.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Body;
use serde_json::{Value, json};

use super::{Aggregator, ApiService, identity_headers};
use crate::AppState;
use crate::registry::ResourceHandle;
use crate::registry::request::{UpdateTarget, WriteOptions};
use crate::webhook_client::{CallError, read_limited};

/// How often every APIService is re-checked.
const RECHECK: Duration = Duration::from_secs(10);
/// How long one discovery check may take (upstream: 5 s).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest discovery document taken from a backend.
const MAX_DISCOVERY_BYTES: usize = 4 * 1024 * 1024;

/// The condition computed for one APIService.
#[derive(Debug, PartialEq)]
struct Condition {
    status: bool,
    reason: &'static str,
    message: String,
}

/// Starts the loop (it ends when the server state is dropped).
pub fn spawn(state: &Arc<AppState>, h: Arc<ResourceHandle>) {
    let weak: Weak<AppState> = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            let Some(state) = weak.upgrade() else { return };
            let agg = state.aggregator.clone();
            check_all(&state, &h).await;
            drop(state);
            tokio::select! {
                _ = agg.changed.notified() => {
                    // Coalesce bursts of APIService changes.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
    });
}

async fn check_all(state: &Arc<AppState>, h: &ResourceHandle) {
    let agg = &state.aggregator;
    let checks = agg.all().into_iter().map(|svc| async move {
        let cond = check(agg, &svc).await;
        write_condition(state, h, &svc.name, cond).await;
    });
    futures::future::join_all(checks).await;
}

async fn check(agg: &Aggregator, svc: &ApiService) -> Condition {
    let Some(cfg) = &svc.client else {
        return Condition {
            status: true,
            reason: "Local",
            message: "Local APIServices are always available".into(),
        };
    };
    let path = format!("/apis/{}/{}", svc.group, svc.version);
    let url = cfg.display_url(&path);
    let mut req = http::Request::get(path.as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Body::empty())
        .unwrap_or_default();
    identity_headers(
        req.headers_mut(),
        &crate::UserInfo {
            username: "system:kube-aggregator".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        },
    );
    let fetched = tokio::time::timeout(CHECK_TIMEOUT, async {
        let resp = agg.client.proxy(cfg, req, CHECK_TIMEOUT).await?;
        let code = resp.status();
        let body = read_limited(resp.into_body(), MAX_DISCOVERY_BYTES).await?;
        if !code.is_success() {
            return Err(CallError::Status {
                code: code.as_u16(),
            });
        }
        serde_json::from_slice::<Value>(&body).map_err(CallError::Decode)
    })
    .await
    .unwrap_or(Err(CallError::Timeout { url: url.clone() }));
    match fetched {
        Ok(doc) if doc.get("resources").is_some_and(Value::is_array) => {
            agg.set_discovered(&svc.name, Some(doc));
            Condition {
                status: true,
                reason: "Passed",
                message: "all checks passed".into(),
            }
        }
        Ok(_) => {
            agg.set_discovered(&svc.name, None);
            Condition {
                status: false,
                reason: "FailedDiscoveryCheck",
                message: format!("failing or missing response from {url}: not an APIResourceList"),
            }
        }
        Err(CallError::Resolve(msg)) => {
            agg.set_discovered(&svc.name, None);
            let reason = if msg.contains("not found") {
                "ServiceNotFound"
            } else {
                "MissingEndpoints"
            };
            Condition {
                status: false,
                reason,
                message: msg,
            }
        }
        Err(e) => {
            agg.set_discovered(&svc.name, None);
            Condition {
                status: false,
                reason: "FailedDiscoveryCheck",
                message: format!("failing or missing response from {url}: {e}"),
            }
        }
    }
}

/// Writes the condition through `/status` when it changed (transition time only when the
/// status flips).
async fn write_condition(state: &AppState, h: &ResourceHandle, name: &str, c: Condition) {
    let status = if c.status { "True" } else { "False" };
    let Ok(kv) = state.store.get(h, "", name).await else {
        return;
    };
    let Ok(current) = crate::registry::codec::decode(&kv) else {
        return;
    };
    let old = current
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("Available"))
        })
        .cloned();
    let same =
        |k: &str, v: &str| old.as_ref().and_then(|o| o.get(k)).and_then(Value::as_str) == Some(v);
    if same("status", status) && same("reason", c.reason) && same("message", &c.message) {
        return;
    }
    let now = crate::registry::store::now_rfc3339();
    let transition = match &old {
        Some(o) if same("status", status) => o
            .get("lastTransitionTime")
            .cloned()
            .unwrap_or_else(|| json!(now)),
        _ => json!(now),
    };
    let cond = json!({
        "type": "Available",
        "status": status,
        "lastTransitionTime": transition,
        "reason": c.reason,
        "message": c.message,
    });
    let opts = WriteOptions {
        subresource: UpdateTarget::Status,
        field_manager: "kube-apiserver".into(),
        ..WriteOptions::default()
    };
    let r = state
        .store
        .update(
            h,
            "",
            name,
            |cur| {
                let Some(cur) = cur else {
                    return Err(ferrokube_machinery::status::Status::not_found(
                        "apiregistration.k8s.io",
                        "apiservices",
                        name,
                    )
                    .into());
                };
                let mut new = cur.clone();
                let mut conds: Vec<Value> = cur
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter(|x| x.get("type").and_then(Value::as_str) != Some("Available"))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                conds.push(cond.clone());
                new["status"] = json!({"conditions": conds});
                if let Some(m) = new.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                Ok(new)
            },
            &opts,
        )
        .await;
    if let Err(e) = r
        && !e.is_not_found()
    {
        tracing::warn!(apiservice = name, error = %e, "writing the Available condition");
    }
}

//! The filter chain, composed in ONE function ([`build_chain`]) in upstream's order
//! (`DefaultBuildHandlerChain`), outermost first:
//! panic → 500 Status · request-id/tracing/metrics · RequestInfo · authentication ·
//! authorization (fail closed) · timeout.
//! Each filter is an axum middleware layer; none knows about particular resources.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use ferrokube_machinery::request_info::{RequestInfo, parse_request_info};
use ferrokube_machinery::status::Status;
use futures::FutureExt;
use tower::ServiceBuilder;

use crate::error::status_response;
use crate::serve::PeerIdentity;
use crate::{AppState, UserInfo};

/// Wraps the router in the filter chain.
pub fn build_chain(router: Router, state: Arc<AppState>) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(from_fn(catch_panic))
            .layer(from_fn_with_state(state.clone(), observe))
            .layer(from_fn(request_info))
            .layer(from_fn(authenticate))
            .layer(from_fn(authorize))
            .layer(from_fn(timeout)),
    )
}

/// A panic in a handler becomes a 500 Status instead of a dropped connection.
async fn catch_panic(req: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!("handler panicked");
            status_response(&Status::internal_error(
                "an internal error occurred (handler panic)",
            ))
        }
    }
}

/// Request id, a tracing span and the request metrics.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let id = uuid::Uuid::new_v4();
    let resp = next.run(req).await;
    let (verb, group, resource) = resp
        .extensions()
        .get::<RequestInfo>()
        .map(|i| {
            let res = if i.subresource.is_empty() {
                i.resource.clone()
            } else {
                format!("{}/{}", i.resource, i.subresource)
            };
            (i.verb.clone(), i.api_group.clone(), res)
        })
        .unwrap_or_else(|| (method.as_str().to_lowercase(), String::new(), String::new()));
    let code = resp.status().as_u16();
    let elapsed = start.elapsed();
    state
        .metrics
        .observe(&verb, &group, &resource, code, elapsed);
    tracing::debug!(%id, %method, %path, code, elapsed_us = elapsed.as_micros() as u64, "request");
    resp
}

/// Parses the RequestInfo once; handlers and later filters read it from the extensions.
async fn request_info(mut req: Request, next: Next) -> Response {
    let info = parse_request_info(req.method().as_str(), req.uri().path(), req.uri().query());
    req.extensions_mut().insert(info.clone());
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(info);
    resp
}

/// Paths anyone may read without credentials (upstream's system:public-info-viewer).
fn is_public(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz", "/version"]
        .iter()
        .any(|p| {
            path == *p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// Authentication: the x509 client certificate verified at TLS accept. A request without one
/// gets 401, except for the public health and version paths.
async fn authenticate(mut req: Request, next: Next) -> Response {
    let user = req
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.clone());
    match user {
        Some(u) => {
            req.extensions_mut().insert(u);
        }
        None if is_public(req.uri().path()) => {
            req.extensions_mut().insert(UserInfo {
                username: "system:anonymous".into(),
                uid: String::new(),
                groups: vec!["system:unauthenticated".into()],
            });
        }
        None => return status_response(&Status::unauthorized("Unauthorized")),
    }
    next.run(req).await
}

/// An authorizer's answer. There is no default: all NoOpinion means deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    NoOpinion,
}

/// Until RBAC lands the only authorizer allows every authenticated user.
fn authorize_authenticated(user: &UserInfo, _info: &RequestInfo) -> Decision {
    if user.groups.iter().any(|g| g == "system:authenticated") {
        Decision::Allow
    } else {
        Decision::NoOpinion
    }
}

/// The union of authorizers, failing closed.
fn decide(user: &UserInfo, info: &RequestInfo) -> Decision {
    let authorizers: [fn(&UserInfo, &RequestInfo) -> Decision; 1] = [authorize_authenticated];
    for a in authorizers {
        match a(user, info) {
            Decision::NoOpinion => continue,
            d => return d,
        }
    }
    Decision::Deny
}

async fn authorize(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let allowed = match (
        req.extensions().get::<UserInfo>(),
        req.extensions().get::<RequestInfo>(),
    ) {
        (Some(u), Some(i)) => decide(u, i) == Decision::Allow || is_public(&path),
        _ => false,
    };
    if allowed {
        return next.run(req).await;
    }
    let user = req
        .extensions()
        .get::<UserInfo>()
        .map(|u| u.username.clone())
        .unwrap_or_default();
    let mut s = Status::failure(
        403,
        "Forbidden",
        format!(
            "forbidden: User \"{user}\" cannot {} path \"{path}\"",
            req.method().as_str().to_lowercase()
        ),
    );
    s.details = None;
    status_response(&s)
}

/// Long-running requests (watch, and streaming subresources) are not timed out here.
fn is_long_running(info: &RequestInfo) -> bool {
    info.verb == "watch"
        || matches!(
            info.subresource.as_str(),
            "log" | "exec" | "attach" | "portforward" | "proxy"
        )
}

/// Non-long-running requests get a 504 Timeout Status after 60 s (upstream's default).
async fn timeout(req: Request, next: Next) -> Response {
    let long = req
        .extensions()
        .get::<RequestInfo>()
        .is_some_and(is_long_running);
    if long {
        return next.run(req).await;
    }
    match tokio::time::timeout(Duration::from_secs(60), next.run(req)).await {
        Ok(r) => r,
        Err(_) => status_response(&Status::timeout(
            "the request did not complete within the allowed duration",
            0,
        )),
    }
}

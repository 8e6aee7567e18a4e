//! The filter chain, composed in ONE function ([`build_chain`]) in upstream's order
//! (`DefaultBuildHandlerChain`), outermost first:
//! panic → 500 Status · request-id/tracing/metrics · RequestInfo · authentication ·
//! impersonation · authorization (fail closed) · timeout. The security filters delegate to
//! [`crate::auth`].
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

use crate::auth::authn::Authenticated;
use crate::auth::{Attributes, Decision, forbidden_status, impersonation};
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
            .layer(from_fn_with_state(state.clone(), authenticate))
            .layer(from_fn_with_state(state.clone(), impersonate))
            .layer(from_fn_with_state(state.clone(), authorize))
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

/// Authentication: the union of authenticators (`auth::authn`). Credentials that fail give
/// 401; no credentials at all give `system:anonymous` when `--anonymous-auth` allows it.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.clone());
    let outcome = state
        .auth
        .authn
        .authenticate(&state, req.headers(), peer.as_deref())
        .await;
    match outcome {
        Authenticated::User(u) | Authenticated::Anonymous(u) => {
            req.headers_mut().remove(http::header::AUTHORIZATION);
            req.extensions_mut().insert(u);
        }
        Authenticated::Refused => return status_response(&Status::unauthorized("Unauthorized")),
    }
    next.run(req).await
}

/// Impersonation (`Impersonate-*` headers), each value authorized with the `impersonate` verb.
async fn impersonate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    if !impersonation::requested(req.headers()) {
        return next.run(req).await;
    }
    let Some(actor) = req.extensions().get::<UserInfo>().cloned() else {
        return status_response(&Status::unauthorized("Unauthorized"));
    };
    match impersonation::impersonate(&state.auth.authz, &actor, req.headers()).await {
        Ok(user) => {
            impersonation::strip(req.headers_mut());
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(s) => status_response(&s),
    }
}

/// Authorization: the `--authorization-mode` union, failing closed (403 with upstream's
/// message; 500 when an authorizer could not evaluate and none allowed).
async fn authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let (Some(user), Some(info)) = (
        req.extensions().get::<UserInfo>(),
        req.extensions().get::<RequestInfo>(),
    ) else {
        return status_response(&Status::internal_error(
            "request is missing user or request info",
        ));
    };
    let attrs = Attributes::from_request(user, info);
    let verdict = state.auth.authz.authorize(&attrs).await;
    if verdict.decision == Decision::Allow {
        return next.run(req).await;
    }
    if let Some(e) = verdict.error {
        return status_response(&Status::internal_error(&e));
    }
    status_response(&forbidden_status(&attrs, &verdict.reason))
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

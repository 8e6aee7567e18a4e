//! The filter chain, composed in ONE function ([`build_chain`]) in upstream's order
//! (`DefaultBuildHandlerChain`), outermost first:
//! panic → 500 Status · request-id/tracing/metrics · RequestInfo · authentication ·
//! max-in-flight (429) · authorization (fail closed) · timeout.
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
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

use crate::error::status_response;
use crate::metrics::RequestLabels;
use crate::serve::PeerIdentity;
use crate::{AppState, UserInfo};

/// Wraps the router in the filter chain. The order is upstream's `DefaultBuildHandlerChain`
/// read from the outside in; a new filter goes where upstream has it.
pub fn build_chain(router: Router, state: Arc<AppState>) -> Router {
    router.layer(
        ServiceBuilder::new()
            // Outermost: a panic anywhere below becomes a 500 Status.
            .layer(from_fn(catch_panic))
            // Request id, tracing span, request metrics (labels from the resource table only).
            .layer(from_fn_with_state(state.clone(), observe))
            // RequestInfo, parsed once for everything below.
            .layer(from_fn(request_info))
            // Authentication: 401 here, before anything keyed by the request is recorded.
            .layer(from_fn(authenticate))
            // (audit and impersonation go here, as upstream places them)
            // Max-in-flight: after authentication (system:masters is exempt), before
            // authorization, like upstream's WithMaxInFlightLimit.
            .layer(from_fn_with_state(state.clone(), max_in_flight))
            // Authorization: union of authorizers, fail closed.
            .layer(from_fn(authorize))
            // Innermost: 504 after 60 s for requests that are not long-running.
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

/// Request id, a tracing span and the request metrics. A request that did not authenticate
/// (or is anonymous) only increments a counter by response code class: nothing it chose
/// (path, group, resource) ever becomes a label.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let id = uuid::Uuid::new_v4();
    let resp = next.run(req).await;
    let code = resp.status().as_u16();
    let elapsed = start.elapsed();
    if resp.extensions().get::<Anonymous>().is_some() {
        state.metrics.observe_anonymous(code);
    } else {
        let labels = resp
            .extensions()
            .get::<RequestInfo>()
            .map(|i| metric_labels(&state, i))
            .unwrap_or_default();
        state.metrics.observe(&labels, code, elapsed);
    }
    tracing::debug!(%id, %method, %path, code, elapsed_us = elapsed.as_micros() as u64, "request");
    resp
}

/// Subresources that may appear as a metric label; any other becomes `other`.
const METRIC_SUBRESOURCES: &[&str] = &[
    "status",
    "scale",
    "log",
    "exec",
    "attach",
    "portforward",
    "proxy",
    "binding",
    "eviction",
    "ephemeralcontainers",
    "resize",
    "token",
    "approval",
    "finalize",
];

/// The metric labels of a request: verb from a fixed set, group and resource only when the
/// resource table knows them (else `other`), non-resource paths with empty group/resource.
fn metric_labels(state: &AppState, info: &RequestInfo) -> RequestLabels {
    let verb = crate::metrics::clean_verb(&info.verb);
    if !info.is_resource_request {
        return RequestLabels {
            verb,
            ..RequestLabels::default()
        };
    }
    let Some(handle) = state
        .registry
        .get(&info.api_group, &info.api_version, &info.resource)
    else {
        return RequestLabels {
            verb,
            group: "other".into(),
            resource: "other".into(),
        };
    };
    let resource = match info.subresource.as_str() {
        "" => handle.info.plural.to_string(),
        sub if METRIC_SUBRESOURCES.contains(&sub) => format!("{}/{sub}", handle.info.plural),
        _ => format!("{}/other", handle.info.plural),
    };
    RequestLabels {
        verb,
        group: handle.info.group.to_string(),
        resource,
    }
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

/// Marks a response to a request without an authenticated user (refused with 401, or anonymous
/// on a public path): [`observe`] records it only in a bounded counter.
#[derive(Clone, Copy, Debug)]
struct Anonymous;

/// Authentication: the x509 client certificate verified at TLS accept. A request without one
/// gets 401, except for the public health and version paths.
async fn authenticate(req: Request, next: Next) -> Response {
    let anonymous = req
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.as_ref())
        .is_none();
    let mut resp = authenticate_inner(req, next).await;
    if anonymous {
        resp.extensions_mut().insert(Anonymous);
    }
    resp
}

async fn authenticate_inner(mut req: Request, next: Next) -> Response {
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

/// Upstream's `user.SystemPrivilegedGroup`: never rate limited.
const SYSTEM_MASTERS: &str = "system:masters";

/// The in-flight limits of `--max-requests-inflight` and `--max-mutating-requests-inflight`
/// (None: unlimited, the flag set to 0).
pub struct InFlightLimits {
    read_only: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

impl InFlightLimits {
    /// Limits of `read_only` and `mutating` requests in flight; 0 means unlimited.
    pub fn new(read_only: usize, mutating: usize) -> Self {
        let sem =
            |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))));
        Self {
            read_only: sem(read_only),
            mutating: sem(mutating),
        }
    }
}

/// Upstream's `WithMaxInFlightLimit`: `get`, `list` and `watch` count against the read-only
/// limit, every other verb against the mutating one; long-running requests are not counted.
/// Beyond a limit the answer is 429 with `Retry-After: 1`, except for system:masters.
async fn max_in_flight(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(info) = req.extensions().get::<RequestInfo>() else {
        return next.run(req).await;
    };
    if is_long_running(info) {
        return next.run(req).await;
    }
    let mutating = !matches!(info.verb.as_str(), "get" | "list" | "watch");
    let limits = &state.inflight;
    let Some(sem) = (if mutating {
        &limits.mutating
    } else {
        &limits.read_only
    }) else {
        return next.run(req).await;
    };
    match sem.clone().try_acquire_owned() {
        Ok(permit) => {
            let _gauge = state.metrics.inflight(mutating);
            let resp = next.run(req).await;
            drop(permit);
            resp
        }
        Err(_) => {
            let privileged = req
                .extensions()
                .get::<UserInfo>()
                .is_some_and(|u| u.groups.iter().any(|g| g == SYSTEM_MASTERS));
            if privileged {
                return next.run(req).await;
            }
            state.metrics.dropped(mutating);
            status_response(&Status::too_many_requests(
                "Too many requests, please try again later.",
                1,
            ))
        }
    }
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

/// Long-running requests (watch and proxy verbs, streaming subresources: upstream's
/// `BasicLongRunningRequestCheck`) are neither timed out nor counted in flight.
fn is_long_running(info: &RequestInfo) -> bool {
    matches!(info.verb.as_str(), "watch" | "proxy")
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

//! The filter chain, composed in ONE function ([`build_chain`]) in upstream's order
//! (`DefaultBuildHandlerChain`), outermost first:
//! panic → 500 Status · request-id/audit-id/tracing/metrics · RequestInfo · authentication ·
//! audit · impersonation · max-in-flight (429) · authorization (fail closed) ·
//! timeout. The security filters delegate to [`crate::auth`]; none knows about particular
//! resources.
//!
//! The filters run as three axum middleware layers (before audit, audit, after audit), each
//! calling its filters in order: every layer costs each request a clone of the services
//! below it and a boxed future, which nine layers made ~4% of a create's CPU.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use ferrokube_machinery::request_info::{RequestInfo, parse_request_info};
use ferrokube_machinery::status::Status;
use futures::FutureExt;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

use crate::auth::authn::Authenticated;
use crate::auth::{Attributes, Decision, forbidden_status, impersonation};
use crate::error::status_response;
use crate::metrics::RequestLabels;
use crate::serve::PeerIdentity;
use crate::{AppState, UserInfo};

/// Wraps the router in the filter chain. The order is upstream's `DefaultBuildHandlerChain`
/// read from the outside in; a new filter goes where upstream has it.
pub fn build_chain(router: Router, state: Arc<AppState>) -> Router {
    router.layer(
        ServiceBuilder::new()
            // Panic → 500, observe, RequestInfo, authentication.
            .layer(from_fn_with_state(state.clone(), before_audit))
            // Audit: the policy's level for the (authenticated) user; events per stage.
            .layer(from_fn_with_state(state.clone(), crate::audit::filter))
            // Impersonation, max-in-flight, authorization, timeout.
            .layer(from_fn_with_state(state, after_audit)),
    )
}

/// The filters outside audit, outermost first.
async fn before_audit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // Outermost: a panic anywhere below becomes a 500 Status.
    catch_panic(observe(state, req, next)).await
}

/// The filters inside audit, outermost first.
async fn after_audit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // Impersonation: Impersonate-* headers, each authorized with `impersonate`.
    let req = match impersonate(&state, req).await {
        Ok(req) => req,
        Err(refused) => return *refused,
    };
    // Max-in-flight: after authentication (system:masters is exempt), before authorization,
    // like upstream's WithMaxInFlightLimit. Held until the response is ready.
    let _in_flight = match max_in_flight(&state, &req) {
        Ok(held) => held,
        Err(refused) => return *refused,
    };
    // Authorization: the --authorization-mode union, fail closed.
    // (Its future holds the extensions only: a request's body is not `Sync`.)
    if let Err(refused) = authorize(&state, req.extensions()).await {
        return *refused;
    }
    // Innermost: 504 after 60 s for requests that are not long-running.
    timeout(req, next).await
}

/// A panic in a handler becomes a 500 Status instead of a dropped connection.
async fn catch_panic(inner: impl Future<Output = Response>) -> Response {
    match AssertUnwindSafe(inner).catch_unwind().await {
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
/// Then RequestInfo and authentication.
async fn observe(state: Arc<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let logged = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    // upstream `WithAuditInit`: every response carries its Audit-ID.
    let id = crate::audit::AuditId::from_headers(req.headers());
    let header = http::HeaderValue::from_str(&id.0).ok();
    req.extensions_mut().insert(id.clone());
    let id = id.0;
    // RequestInfo, parsed once for everything below.
    let info = parse_request_info(req.method().as_str(), req.uri().path(), req.uri().query());
    req.extensions_mut().insert(info.clone());
    // Authentication (union of authenticators): 401 here; before it nothing keyed by the
    // request is recorded.
    let mut resp = authenticate(&state, req, next).await;
    resp.extensions_mut().insert(info);
    if let Some(h) = header {
        resp.headers_mut().insert("Audit-ID", h);
    }
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
    if let Some((method, path)) = logged {
        tracing::debug!(%id, %method, %path, code, elapsed_us = elapsed.as_micros() as u64, "request");
    }
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
        .lookup(&info.api_group, &info.api_version, &info.resource)
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

/// Marks a response to a request without an authenticated user (refused with 401, or served
/// as system:anonymous): [`observe`] records it only in a bounded counter.
#[derive(Clone, Copy, Debug)]
struct Anonymous;

/// Authentication: the union of authenticators (`auth::authn`). Credentials that fail give
/// 401; no credentials at all give `system:anonymous` when `--anonymous-auth` allows it.
async fn authenticate(state: &Arc<AppState>, req: Request, next: Next) -> Response {
    let (mut resp, anonymous) = authenticate_inner(state.clone(), req, next).await;
    if anonymous {
        resp.extensions_mut().insert(Anonymous);
    }
    resp
}

async fn authenticate_inner(
    state: Arc<AppState>,
    mut req: Request,
    next: Next,
) -> (Response, bool) {
    let peer = req
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.clone());
    let outcome = state
        .auth
        .authn
        .authenticate(&state, req.headers(), peer.as_deref())
        .await;
    let anonymous = match outcome {
        Authenticated::User(u) => {
            req.headers_mut().remove(http::header::AUTHORIZATION);
            req.extensions_mut().insert(u);
            false
        }
        Authenticated::Anonymous(u) => {
            req.headers_mut().remove(http::header::AUTHORIZATION);
            req.extensions_mut().insert(u);
            true
        }
        Authenticated::Refused => {
            if let Some(write) = crate::audit::failed_authentication(&state, &req, peer.is_some()) {
                Box::pin(write).await;
            }
            return (status_response(&Status::unauthorized("Unauthorized")), true);
        }
    };
    (next.run(req).await, anonymous)
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

/// A filter's answer instead of passing the request on (boxed: refusals are rare, and a
/// `Response` in every `Result` would size the filters' futures).
type Refused = Box<Response>;

fn refuse(s: &Status) -> Refused {
    Box::new(status_response(s))
}

/// What a request counted in flight holds until its response is ready: the permit and the
/// in-flight gauge.
type InFlight<'a> = Option<(
    tokio::sync::OwnedSemaphorePermit,
    crate::metrics::InflightGuard<'a>,
)>;

/// Upstream's `WithMaxInFlightLimit`: `get`, `list` and `watch` count against the read-only
/// limit, every other verb against the mutating one; long-running requests are not counted.
/// Beyond a limit the answer is 429 with `Retry-After: 1`, except for system:masters.
fn max_in_flight<'a>(state: &'a AppState, req: &Request) -> Result<InFlight<'a>, Refused> {
    let Some(info) = req.extensions().get::<RequestInfo>() else {
        return Ok(None);
    };
    if is_long_running(info) {
        return Ok(None);
    }
    let mutating = !matches!(info.verb.as_str(), "get" | "list" | "watch");
    let limits = &state.inflight;
    let Some(sem) = (if mutating {
        &limits.mutating
    } else {
        &limits.read_only
    }) else {
        return Ok(None);
    };
    match sem.clone().try_acquire_owned() {
        Ok(permit) => Ok(Some((permit, state.metrics.inflight(mutating)))),
        Err(_) => {
            let privileged = req
                .extensions()
                .get::<UserInfo>()
                .is_some_and(|u| u.groups.iter().any(|g| g == SYSTEM_MASTERS));
            if privileged {
                return Ok(None);
            }
            state.metrics.dropped(mutating);
            Err(refuse(&Status::too_many_requests(
                "Too many requests, please try again later.",
                1,
            )))
        }
    }
}

/// Impersonation (`Impersonate-*` headers), each value authorized with the `impersonate` verb:
/// the request as the impersonated user, or the refusal.
async fn impersonate(state: &AppState, mut req: Request) -> Result<Request, Refused> {
    if !impersonation::requested(req.headers()) {
        return Ok(req);
    }
    let Some(actor) = req.extensions().get::<UserInfo>().cloned() else {
        return Err(refuse(&Status::unauthorized("Unauthorized")));
    };
    match Box::pin(impersonation::impersonate(
        &state.auth.authz,
        &actor,
        req.headers(),
    ))
    .await
    {
        Ok(user) => {
            impersonation::strip(req.headers_mut());
            if let Some(a) = req.extensions().get::<crate::audit::AuditHandle>() {
                a.set_impersonated(&user);
            }
            req.extensions_mut().insert(user);
            Ok(req)
        }
        Err(s) => Err(refuse(&s)),
    }
}

/// Authorization: the `--authorization-mode` union, failing closed (403 with upstream's
/// message; 500 when an authorizer could not evaluate and none allowed).
async fn authorize(state: &AppState, req: &http::Extensions) -> Result<(), Refused> {
    let (Some(user), Some(info)) = (req.get::<UserInfo>(), req.get::<RequestInfo>()) else {
        return Err(refuse(&Status::internal_error(
            "request is missing user or request info",
        )));
    };
    let attrs = Attributes::from_request(user, info);
    let verdict = state.auth.authz.authorize(&attrs).await;
    // upstream `WithAuthorization`'s audit annotations.
    if let Some(a) = req.get::<crate::audit::AuditHandle>() {
        let decision = if verdict.decision == Decision::Allow {
            "allow"
        } else {
            "forbid"
        };
        a.annotate("authorization.k8s.io/decision", decision);
        a.annotate("authorization.k8s.io/reason", &verdict.reason);
    }
    if verdict.decision == Decision::Allow {
        return Ok(());
    }
    if let Some(e) = verdict.error {
        return Err(refuse(&Status::internal_error(&e)));
    }
    Err(refuse(&forbidden_status(&attrs, &verdict.reason)))
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

//! The router: non-resource paths (health, version, metrics, discovery, OpenAPI) and the
//! resource handler, dispatched on the RequestInfo parsed once by the filter chain.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use ferrokube_machinery::request_info::RequestInfo;
use ferrokube_machinery::status::Status;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::json;

use crate::endpoints::{self, Query, Scope};
use crate::error::{ApiError, status_response};
use crate::metrics::write_metric;
use crate::{AppState, UserInfo, aggregator, discovery, filters, openapi};

/// The whole HTTP application: router plus filter chain.
pub fn router(state: Arc<AppState>) -> Router {
    let r = Router::new().fallback(dispatch).with_state(state.clone());
    filters::build_chain(r, state)
}

fn text(code: StatusCode, body: String) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn not_found() -> Response {
    let mut s = Status::not_found("", "", "");
    s.message = "the server could not find the requested resource".into();
    s.details = None;
    status_response(&s)
}

/// `/healthz`, `/livez`, `/readyz` with their named checks and `?verbose`.
fn health(state: &AppState, path: &str, query: &Query) -> Option<Response> {
    let base = ["/healthz", "/livez", "/readyz"]
        .into_iter()
        .find(|p| path == *p || path.starts_with(&format!("{p}/")))?;
    let ready = base != "/readyz" || state.ready.load(Ordering::Acquire);
    let checks: Vec<(&str, bool)> = vec![
        ("ping", true),
        ("log", true),
        // Real: the store's writer thread alive (embedded, named `storage`) or etcd answering
        // a linearizable read (named `etcd`, upstream's name).
        (state.backend.check_name(), state.backend.healthy()),
        ("poststarthook/start-apiserver-informers", ready),
        (
            "poststarthook/bootstrap-namespaces",
            state.ready.load(Ordering::Acquire),
        ),
    ];
    if let Some(check) = path.strip_prefix(&format!("{base}/")) {
        return Some(match checks.iter().find(|(n, _)| *n == check) {
            Some((_, true)) => text(StatusCode::OK, "ok".into()),
            Some((n, false)) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("[-]{n} failed: reason withheld\n"),
            ),
            None => not_found(),
        });
    }
    let ok = checks.iter().all(|(_, ok)| *ok);
    let kind = &base[1..];
    if query.get("verbose").is_some() || !ok {
        let mut out = String::new();
        for (n, c) in &checks {
            let _ = writeln!(
                out,
                "[{}]{n} {}",
                if *c { "+" } else { "-" },
                if *c { "ok" } else { "failed: reason withheld" }
            );
        }
        let _ = writeln!(out, "{kind} check {}", if ok { "passed" } else { "failed" });
        return Some(text(
            if ok {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
            out,
        ));
    }
    Some(text(StatusCode::OK, "ok".into()))
}

/// `/version`: major and minor are plain integers (the conformance test requires it).
fn version() -> Response {
    let v = json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34",
        "gitVersion": "v1.35.0-ferrokube.1",
        "gitCommit": option_env!("FERROKUBE_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "2026-11-23T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    });
    endpoints::raw_json_response(
        StatusCode::OK,
        serde_json::to_vec_pretty(&v).unwrap_or_default(),
    )
}

fn metrics(state: &AppState) -> Response {
    let mut out = String::new();
    state.metrics.render(&mut out);
    let s = state.backend.metrics();
    write_metric(
        &mut out,
        "ferrokube_storage_current_revision",
        "gauge",
        "Current storage revision.",
        s.current_revision,
    );
    write_metric(
        &mut out,
        "ferrokube_storage_compacted_revision",
        "gauge",
        "Highest compacted revision.",
        s.compacted_revision,
    );
    write_metric(
        &mut out,
        "ferrokube_storage_compactions_total",
        "counter",
        "Completed compactions.",
        s.compaction_runs,
    );
    write_metric(
        &mut out,
        "ferrokube_storage_compaction_last_duration_seconds",
        "gauge",
        "Duration of the last compaction.",
        s.last_compaction_duration.as_secs_f64(),
    );
    write_metric(
        &mut out,
        "ferrokube_storage_compaction_versions_removed_total",
        "counter",
        "History versions removed by compaction.",
        s.compaction_versions_removed,
    );
    write_metric(
        &mut out,
        "ferrokube_storage_reclaims_total",
        "counter",
        "Times the store file was rewritten to give free space back.",
        s.reclaim_runs,
    );
    write_metric(
        &mut out,
        "apiserver_storage_size_bytes",
        "gauge",
        "Size of the storage database file in bytes.",
        s.db_size_bytes,
    );
    write_metric(
        &mut out,
        "ferrokube_storage_write_batches_total",
        "counter",
        "Group-commit write transactions.",
        s.write_batches,
    );
    write_metric(
        &mut out,
        "ferrokube_storage_write_ops_total",
        "counter",
        "Write operations submitted.",
        s.write_ops,
    );
    write_metric(
        &mut out,
        "ferrokube_storage_fsyncs_total",
        "counter",
        "Flushes to disk: write-ahead log frames (one per write batch) and durable commits.",
        s.fsyncs,
    );
    let c = state.store.cache.metrics();
    write_metric(
        &mut out,
        "ferrokube_watch_cache_filled",
        "gauge",
        "1 once the watch cache holds every stored object (until then, reads of what it has not filled yet go to the store).",
        u64::from(c.filled),
    );
    write_metric(
        &mut out,
        "ferrokube_watch_cache_watchers",
        "gauge",
        "Watchers registered with the watch cache.",
        c.watchers,
    );
    write_metric(
        &mut out,
        "ferrokube_watch_cache_events_dispatched_total",
        "counter",
        "Event deliveries queued to watchers.",
        c.events_dispatched,
    );
    write_metric(
        &mut out,
        "ferrokube_watch_cache_slow_watchers_terminated_total",
        "counter",
        "Watchers terminated for falling behind.",
        c.slow_watchers_terminated,
    );
    write_metric(
        &mut out,
        "ferrokube_watch_cache_objects",
        "gauge",
        "Objects held by the watch cache.",
        c.items,
    );
    let mut r = text(StatusCode::OK, out);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let Some(info) = req.extensions().get::<RequestInfo>().cloned() else {
        return ApiError::internal("request info missing").into_response();
    };
    let query = Query::parse(req.uri().query());
    // Group-versions an APIService routes to a backend are proxied whole (discovery too).
    if req.uri().path().starts_with("/apis/")
        && let Some(svc) = state.aggregator.route(req.uri().path())
    {
        return aggregator::proxy(&state.aggregator, &svc, req).await;
    }
    if !info.is_resource_request {
        let path = req.uri().path().trim_end_matches('/').to_string();
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return status_response(&Status::method_not_supported("", "", req.method().as_str()));
        }
        if let Some(r) = health(&state, &path, &query) {
            return r;
        }
        return match path.as_str() {
            "/version" => version(),
            "/metrics" => metrics(&state),
            "/debug/ferrokube/snapshot" => {
                let user = req
                    .extensions()
                    .get::<UserInfo>()
                    .cloned()
                    .unwrap_or_default();
                crate::backend::serve_snapshot(&state, &user).await
            }
            "/.well-known/openid-configuration" | "/openid/v1/jwks" => {
                let Some(sa) = state.auth.service_accounts.as_ref() else {
                    return not_found();
                };
                let (doc, ct) = if path == "/openid/v1/jwks" {
                    (sa.jwks(), "application/jwk-set+json")
                } else {
                    (sa.openid_configuration(), "application/json")
                };
                let mut r = endpoints::json_response(
                    StatusCode::OK,
                    serde_json::to_vec(&doc).unwrap_or_default(),
                );
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
                r
            }
            p if p.starts_with("/openapi/") => {
                openapi::serve(&state, p, req.headers(), &query).await
            }
            "/apis" if state.aggregator.has_remote() => {
                aggregator::discovery::serve_apis(&state, req.headers())
                    .await
                    .unwrap_or_else(not_found)
            }
            p => discovery::serve(&state.discovery, p, req.headers())
                .or_else(|| aggregator::discovery::serve_group(&state.aggregator, p))
                .unwrap_or_else(not_found),
        };
    }
    let Some(handle) = state
        .registry
        .lookup(&info.api_group, &info.api_version, &info.resource)
    else {
        return not_found();
    };
    let user = req
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_default();
    let audit = req.extensions().get::<crate::audit::AuditHandle>().cloned();
    let (parts, body) = req.into_parts();
    let warnings = crate::registry::request::Warnings::for_request(audit);
    let scope = Scope {
        state: state.clone(),
        handle,
        info,
        query,
        headers: parts.headers,
        http_version: parts.version,
        user,
        warnings: warnings.clone(),
    };
    let resp = endpoints::serve(scope, Body::new(body)).await;
    endpoints::with_warnings(resp, &warnings.take())
}

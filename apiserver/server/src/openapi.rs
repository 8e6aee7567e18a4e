//! `/openapi/v2` (JSON, or gnostic protobuf when asked) and `/openapi/v3` (index and per
//! group-version documents, hash-addressed and immutably cacheable). The documents are built
//! once, off the startup path, from the same resource table as everything else.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use ferrokube_machinery::media::parse_accept;
use ferrokube_machinery::openapi::{self, OpenApiDocs};
use ferrokube_machinery::resources;
use ferrokube_machinery::status::Status;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::AppState;
use crate::endpoints::Query;
use crate::error::status_response;

const V2_PROTO: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
const V2_PROTO_ALT: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The lazily built documents.
#[derive(Default)]
pub struct OpenApiState {
    docs: tokio::sync::OnceCell<Arc<OpenApiDocs>>,
}

impl OpenApiState {
    async fn get(&self) -> Option<Arc<OpenApiDocs>> {
        self.docs
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(|| {
                    let start = std::time::Instant::now();
                    let docs = openapi::build(resources::builtin_resources());
                    tracing::info!(
                        elapsed_ms = start.elapsed().as_millis() as u64,
                        "built OpenAPI documents"
                    );
                    Arc::new(docs)
                })
                .await
            })
            .await
            .ok()
            .cloned()
    }
}

/// Starts building the documents so the first client does not wait.
pub fn build_in_background(state: Arc<AppState>) {
    tokio::spawn(async move {
        state.openapi.get().await;
    });
}

fn accepts(headers: &HeaderMap, wanted: &[&str]) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|a| {
            parse_accept(a)
                .iter()
                .any(|m| wanted.contains(&m.essence().as_str()) && m.q > 0.0)
        })
        .unwrap_or(false)
}

fn accepts_json(headers: &HeaderMap) -> bool {
    match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(a) if a.trim().is_empty() => true,
        Some(_) => accepts(headers, &["application/json", "*/*", "application/*"]),
    }
}

fn bytes_response(
    body: Vec<u8>,
    content_type: &str,
    etag: Option<&str>,
    headers: &HeaderMap,
    immutable: bool,
) -> Response {
    let not_modified = etag.is_some_and(|e| {
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            == Some(e)
    });
    let mut r = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Some(e) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        h.insert(header::ETAG, e);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, immutable"
        } else {
            "no-cache, private"
        }),
    );
    r
}

fn not_acceptable() -> Response {
    status_response(&Status::not_acceptable(
        "only the following media types are accepted: application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    ))
}

/// Serves `/openapi/...`.
pub async fn serve(state: &AppState, path: &str, headers: &HeaderMap, query: &Query) -> Response {
    let Some(docs) = state.openapi.get().await else {
        return status_response(&Status::service_unavailable(
            "the OpenAPI documents are not built yet",
        ));
    };
    if path == "/openapi/v2" {
        let etag = format!("\"{}\"", openapi::v3_hash(&docs.v2_json));
        if accepts(headers, &[V2_PROTO, V2_PROTO_ALT]) {
            let proto_etag = format!("\"{}\"", openapi::v3_hash(&docs.v2_proto));
            return bytes_response(
                docs.v2_proto.clone(),
                V2_PROTO,
                Some(&proto_etag),
                headers,
                false,
            );
        }
        if !accepts_json(headers) {
            return not_acceptable();
        }
        return bytes_response(
            docs.v2_json.clone(),
            "application/json",
            Some(&etag),
            headers,
            false,
        );
    }
    if path == "/openapi/v3" {
        if !accepts_json(headers) {
            return not_acceptable();
        }
        return bytes_response(
            docs.v3_index.clone(),
            "application/json",
            None,
            headers,
            false,
        );
    }
    if let Some(key) = path.strip_prefix("/openapi/v3/") {
        let Some(doc) = docs.v3.get(key) else {
            let mut s = Status::not_found("", "", "");
            s.message = "the server could not find the requested resource".into();
            s.details = None;
            return status_response(&s);
        };
        if !accepts_json(headers) {
            return not_acceptable();
        }
        let etag = format!("\"{}\"", doc.hash);
        let immutable = query.get("hash") == Some(doc.hash.as_str());
        return bytes_response(
            doc.json.clone(),
            "application/json",
            Some(&etag),
            headers,
            immutable,
        );
    }
    let mut s = Status::not_found("", "", "");
    s.message = "the server could not find the requested resource".into();
    s.details = None;
    status_response(&s)
}

//! `/openapi/v2` (JSON, or gnostic protobuf when asked) and `/openapi/v3` (index and per
//! group-version documents, hash-addressed and immutably cacheable). The documents are built
//! once, on the first request for one (~0.7 s; not at startup, where the build's transient
//! memory would show in idle RSS), from the same resource table as everything else. Custom
//! resources are added on top: when CRDs change, their group-versions' v3 documents and the
//! index are rendered again at once (new hashes), `/openapi/v2` on its next request.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock, RwLock};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferrokube_machinery::customresource;
use ferrokube_machinery::openapi::{self, OpenApiDocs, Spec};
use ferrokube_machinery::resources;
use ferrokube_machinery::status::Status;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::AppState;
use crate::endpoints::Query;
use crate::error::status_response;
use crate::registry::ResourceHandle;

const V2_PROTO: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
const V2_PROTO_ALT: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// One document as served: gzip-compressed bytes (the whole set is ~13 MB as JSON and
/// protobuf, ~1.5 MB compressed) and its ETag, both computed once.
#[derive(Clone)]
struct Doc {
    gz: Bytes,
    etag: String,
}

impl Doc {
    fn new(bytes: &[u8], hash: &str) -> Self {
        let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 6), Compression::default());
        // Writing into a Vec cannot fail.
        let gz = enc
            .write_all(bytes)
            .and_then(|()| enc.finish())
            .unwrap_or_default();
        Doc {
            gz: Bytes::from(gz),
            etag: format!("\"{hash}\""),
        }
    }
}

/// The documents ready to serve.
struct Served {
    v2_json: Doc,
    v2_proto: Doc,
    v3_index: Bytes,
    /// Per key: the document and its hash (the `?hash=` that makes it immutable).
    v3: BTreeMap<String, (Doc, String)>,
}

impl Served {
    fn from_docs(docs: OpenApiDocs) -> Self {
        let v3 = docs
            .v3
            .into_iter()
            .map(|(k, d)| {
                let doc = Doc::new(&d.json, &d.hash);
                (k, (doc, d.hash))
            })
            .collect();
        Served {
            v2_json: Doc::new(&docs.v2_json, &openapi::v3_hash(&docs.v2_json)),
            v2_proto: Doc::new(&docs.v2_proto, &openapi::v3_hash(&docs.v2_proto)),
            v3_index: Bytes::from(docs.v3_index),
            v3,
        }
    }
}

/// The built-in documents, and the few built-in definitions custom resources' documents
/// reach. The whole built-in spec (tens of MB as JSON values) is not kept: `/openapi/v2`
/// with custom resources renders it again, once per set of CRDs, on request.
struct Base {
    common: Spec,
    served: Served,
}

/// The built-in definitions a custom resource's v3 document can reach: meta/v1 and friends,
/// and `autoscaling/v1` `Scale` (the scale subresource).
fn custom_reachable(name: &str) -> bool {
    name.starts_with("io.k8s.apimachinery.") || name.starts_with("io.k8s.api.autoscaling.v1.")
}

/// A v3 document of custom resources and what it was rendered from.
struct CustomDoc {
    doc: Doc,
    hash: String,
    /// The handles of the key's resources (addresses; the previous [`Custom`] keeps them
    /// alive while the next is built, so an address cannot be reused in between).
    from: Vec<usize>,
}

/// The documents with custom resources added.
struct Custom {
    /// The v3 documents of the custom group-versions and groups.
    v3: BTreeMap<String, CustomDoc>,
    v3_index: Bytes,
    /// The custom resources, for `/openapi/v2` (rendered on first request).
    handles: Vec<Arc<ResourceHandle>>,
    v2: OnceLock<Arc<(Doc, Doc)>>,
}

/// The lazily built documents.
#[derive(Default)]
pub struct OpenApiState {
    docs: tokio::sync::OnceCell<Arc<Base>>,
    /// `None` while no custom resource is served.
    custom: RwLock<Option<Arc<Custom>>>,
    /// The latest custom resource set not yet rendered, and whether a builder runs: one
    /// build at a time, always of the latest set (a burst of CRD changes costs one or two
    /// builds, not one each).
    pending: std::sync::Mutex<Pending>,
    /// Wakes requests waiting for a set to be rendered.
    rendered: tokio::sync::Notify,
}

/// The builder's queue.
#[derive(Default)]
struct Pending {
    /// The latest set not yet taken by the builder.
    next: Option<Vec<Arc<ResourceHandle>>>,
    /// A builder task runs.
    busy: bool,
    /// Sets published so far, and the number of the last one rendered.
    published: u64,
    rendered: u64,
}

impl OpenApiState {
    async fn get(&self) -> Option<Arc<Base>> {
        self.docs
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(|| {
                    let start = std::time::Instant::now();
                    let spec = Spec::from_resources(resources::builtin_resources());
                    let served = Served::from_docs(spec.docs());
                    let common = spec.definitions_only(custom_reachable);
                    tracing::info!(
                        elapsed_ms = start.elapsed().as_millis() as u64,
                        "built OpenAPI documents"
                    );
                    Arc::new(Base { common, served })
                })
                .await
            })
            .await
            .ok()
            .cloned()
    }

    fn custom(&self) -> Option<Arc<Custom>> {
        self.custom
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The custom documents once the latest published set is rendered (a request right
    /// after a CRD change sees it; the wait is bounded).
    async fn custom_current(&self) -> Option<Arc<Custom>> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let target = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .published;
        loop {
            let notified = self.rendered.notified();
            let done = {
                let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                p.rendered >= target
            };
            if done {
                return self.custom();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.custom();
            }
        }
    }

    /// Publishes the custom resources served now (replacing the previous set); the documents
    /// are rendered in the background, only those of group-versions that changed.
    pub fn set_custom(self: &Arc<Self>, handles: Vec<Arc<ResourceHandle>>) {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.next = Some(handles);
            p.published += 1;
            if p.busy {
                return;
            }
            p.busy = true;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let (handles, generation) = {
                    let mut p = this.pending.lock().unwrap_or_else(|e| e.into_inner());
                    match p.next.take() {
                        Some(h) => (h, p.published),
                        None => {
                            p.busy = false;
                            return;
                        }
                    }
                };
                // `None`: the build failed, the previous documents stay.
                let custom = if handles.is_empty() {
                    Some(None)
                } else if let Some(base) = this.get().await {
                    let prev = this.custom();
                    let built = tokio::task::spawn_blocking(move || {
                        build_custom(&base, prev.as_deref(), handles)
                    })
                    .await;
                    match built {
                        Ok(c) => Some(Some(Arc::new(c))),
                        Err(e) => {
                            tracing::warn!(error = %e, "building custom resource OpenAPI failed");
                            None
                        }
                    }
                } else {
                    None
                };
                if let Some(custom) = custom {
                    *this.custom.write().unwrap_or_else(|e| e.into_inner()) = custom;
                }
                this.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .rendered = generation;
                this.rendered.notify_waiters();
            }
        });
    }
}

/// Adds custom resources' definitions and paths to `spec`.
fn add_custom(spec: &mut Spec, handles: &[&Arc<ResourceHandle>]) {
    for h in handles {
        let schema = h
            .custom
            .as_ref()
            .and_then(|c| c.version.schema.as_ref())
            .and_then(|s| s.value());
        let [(item, item_def), (list, list_def)] =
            customresource::openapi::definitions(&h.info, schema.as_ref());
        spec.add_definitions([(item.clone(), item_def), (list.clone(), list_def)]);
        spec.add_resource_paths(&h.info, &item, &list);
    }
}

/// Renders the documents of the custom resources: a group-version whose resources are the
/// same handles as in `prev` keeps its document (and hash); the others are rendered on the
/// few built-in definitions they reach. A custom resource in a built-in group-version is
/// rendered on the whole built-in spec.
fn build_custom(base: &Base, prev: Option<&Custom>, handles: Vec<Arc<ResourceHandle>>) -> Custom {
    let start = std::time::Instant::now();
    let mut by_key: BTreeMap<String, Vec<&Arc<ResourceHandle>>> = BTreeMap::new();
    for h in &handles {
        by_key
            .entry(openapi::gv_key(&h.info.group, &h.info.version))
            .or_default()
            .push(h);
        by_key
            .entry(format!("apis/{}", h.info.group))
            .or_default()
            .push(h);
    }
    let mut full: Option<Spec> = None;
    let mut rendered = 0usize;
    let mut v3 = BTreeMap::new();
    for (key, hs) in by_key {
        let from: Vec<usize> = hs.iter().map(|h| Arc::as_ptr(h) as usize).collect();
        if let Some(old) = prev.and_then(|p| p.v3.get(&key))
            && old.from == from
        {
            let reuse = CustomDoc {
                doc: old.doc.clone(),
                hash: old.hash.clone(),
                from,
            };
            v3.insert(key, reuse);
            continue;
        }
        let mut spec = if base.served.v3.contains_key(&key) {
            full.get_or_insert_with(|| Spec::from_resources(resources::builtin_resources()))
                .clone()
        } else {
            base.common.clone()
        };
        add_custom(&mut spec, &hs);
        if let Some(doc) = spec.v3(&key) {
            let json = serde_json::to_vec(&doc).unwrap_or_default();
            let hash = openapi::v3_hash(&json);
            let doc = Doc::new(&json, &hash);
            v3.insert(key, CustomDoc { doc, hash, from });
            rendered += 1;
        }
    }
    let mut hashes: BTreeMap<&str, &str> = base
        .served
        .v3
        .iter()
        .map(|(k, (_, h))| (k.as_str(), h.as_str()))
        .collect();
    hashes.extend(v3.iter().map(|(k, d)| (k.as_str(), d.hash.as_str())));
    let v3_index = Bytes::from(openapi::v3_index(hashes));
    tracing::debug!(
        elapsed_ms = start.elapsed().as_millis() as u64,
        resources = handles.len(),
        rendered,
        "built custom resource OpenAPI documents"
    );
    Custom {
        v3,
        v3_index,
        handles,
        v2: OnceLock::new(),
    }
}

/// `/openapi/v2` with the custom resources, rendered once per set of CRDs (on the built-in
/// spec built again for it).
async fn custom_v2(custom: &Arc<Custom>) -> Option<Arc<(Doc, Doc)>> {
    if let Some(d) = custom.v2.get() {
        return Some(d.clone());
    }
    let c = custom.clone();
    let docs = tokio::task::spawn_blocking(move || {
        let mut spec = Spec::from_resources(resources::builtin_resources());
        let refs: Vec<&Arc<ResourceHandle>> = c.handles.iter().collect();
        add_custom(&mut spec, &refs);
        let v2 = spec.v2();
        drop(spec);
        let json = serde_json::to_vec(&v2).unwrap_or_default();
        let proto = openapi::proto::encode_document(&v2);
        Arc::new((
            Doc::new(&json, &openapi::v3_hash(&json)),
            Doc::new(&proto, &openapi::v3_hash(&proto)),
        ))
    })
    .await
    .ok()?;
    Some(custom.v2.get_or_init(|| docs).clone())
}

/// Whether the client takes `Content-Encoding: gzip` (Go clients always do).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let zero_q = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !zero_q
        })
}

/// Whether Accept names one of `wanted` with q > 0. Parsed leniently like upstream's goautoneg:
/// the gnostic media type contains `@`, which is not an RFC 7230 token character, so the strict
/// parser of resource requests would drop it.
fn accepts(headers: &HeaderMap, wanted: &[&str]) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|a| {
            a.split(',').any(|clause| {
                let mut parts = clause.split(';');
                let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let zero_q = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                wanted.contains(&essence.as_str()) && !zero_q
            })
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

fn doc_response(doc: &Doc, content_type: &str, headers: &HeaderMap, immutable: bool) -> Response {
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(doc.etag.as_str());
    let gzip = accepts_gzip(headers);
    let mut r = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        (StatusCode::OK, doc.gz.clone()).into_response()
    } else {
        let mut plain = Vec::new();
        if let Err(e) = GzDecoder::new(&doc.gz[..]).read_to_end(&mut plain) {
            return status_response(&Status::internal_error(&format!(
                "decompressing the OpenAPI document: {e}"
            )));
        }
        (StatusCode::OK, plain).into_response()
    };
    let h = r.headers_mut();
    if gzip && !not_modified {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(e) = HeaderValue::from_str(&doc.etag) {
        h.insert(header::ETAG, e);
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
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
    let custom = state.openapi.custom_current().await;
    let docs = &docs.served;
    if path == "/openapi/v2" {
        let v2 = match &custom {
            Some(c) => custom_v2(c).await,
            None => None,
        };
        let (json, proto) = match &v2 {
            Some(d) => (&d.0, &d.1),
            None => (&docs.v2_json, &docs.v2_proto),
        };
        if accepts(headers, &[V2_PROTO, V2_PROTO_ALT]) {
            return doc_response(proto, V2_PROTO_ALT, headers, false);
        }
        if !accepts_json(headers) {
            return not_acceptable();
        }
        return doc_response(json, "application/json", headers, false);
    }
    if path == "/openapi/v3" {
        if !accepts_json(headers) {
            return not_acceptable();
        }
        let index = match &custom {
            Some(c) => c.v3_index.clone(),
            None => docs.v3_index.clone(),
        };
        let mut r = (StatusCode::OK, index).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        return r;
    }
    if let Some(key) = path.strip_prefix("/openapi/v3/") {
        let found = custom
            .as_ref()
            .and_then(|c| c.v3.get(key))
            .map(|d| (&d.doc, &d.hash))
            .or_else(|| docs.v3.get(key).map(|(d, h)| (d, h)));
        let Some((doc, hash)) = found else {
            let mut s = Status::not_found("", "", "");
            s.message = "the server could not find the requested resource".into();
            s.details = None;
            return status_response(&s);
        };
        if !accepts_json(headers) {
            return not_acceptable();
        }
        let immutable = query.get("hash") == Some(hash.as_str());
        return doc_response(doc, "application/json", headers, immutable);
    }
    let mut s = Status::not_found("", "", "");
    s.message = "the server could not find the requested resource".into();
    s.details = None;
    status_response(&s)
}

//! Discovery endpoints: legacy documents (`/api`, `/apis`, `/apis/{g}`, `/api/v1`,
//! `/apis/{g}/{v}`) and aggregated discovery v2/v2beta1 on `/api` and `/apis` when the client
//! asks for it in `Accept`, with ETag / If-None-Match. Documents are built from the resource
//! table when first asked for and kept as bytes, and built again (with the custom resources of
//! the established CRDs) whenever CRDs change, which changes their ETags.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferrokube_machinery::discovery::{self, AggregatedVersion};
use ferrokube_machinery::media::parse_accept;
use ferrokube_machinery::resources::ResourceInfo;
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// A pre-encoded document and its ETag.
struct Doc {
    body: Bytes,
    etag: String,
}

impl Doc {
    /// The body ends with a newline, as upstream's serializer writes discovery documents.
    fn new(v: &serde_json::Value) -> Doc {
        let mut body = serde_json::to_vec(v).unwrap_or_default();
        body.push(b'\n');
        let etag = discovery::etag(&body);
        Doc {
            body: body.into(),
            etag,
        }
    }
}

/// Every discovery document of one resource table, encoded when first served; swapped as a
/// whole when the resource table changes.
pub struct DiscoveryDocs {
    docs: RwLock<Arc<Docs>>,
}

struct Docs {
    resources: Cow<'static, [ResourceInfo]>,
    legacy: OnceLock<HashMap<String, Doc>>,
    /// By `[legacy group][v2, v2beta1]`.
    aggregated: [[OnceLock<Doc>; 2]; 2],
}

impl DiscoveryDocs {
    /// The documents of the built-in resource table (nothing is built yet: a start does not
    /// pay for documents no client may ask for).
    pub fn new(resources: &'static [ResourceInfo]) -> DiscoveryDocs {
        DiscoveryDocs {
            docs: RwLock::new(Arc::new(Docs::of(Cow::Borrowed(resources)))),
        }
    }

    /// Replaces the documents with those of a new resource table.
    pub fn rebuild(&self, resources: Vec<ResourceInfo>) {
        let docs = Arc::new(Docs::of(Cow::Owned(resources)));
        *self.docs.write().unwrap_or_else(|e| e.into_inner()) = docs;
    }

    fn current(&self) -> Arc<Docs> {
        self.docs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Docs {
    fn of(resources: Cow<'static, [ResourceInfo]>) -> Docs {
        Docs {
            resources,
            legacy: OnceLock::new(),
            aggregated: Default::default(),
        }
    }

    fn aggregated(&self, legacy_group: bool, v: AggregatedVersion) -> &Doc {
        let version = match v {
            AggregatedVersion::V2 => 0,
            AggregatedVersion::V2Beta1 => 1,
        };
        self.aggregated[usize::from(legacy_group)][version]
            .get_or_init(|| Doc::new(&discovery::aggregated(&self.resources, legacy_group, v)))
    }

    fn legacy(&self) -> &HashMap<String, Doc> {
        self.legacy.get_or_init(|| legacy_docs(&self.resources))
    }
}

/// The legacy documents by path.
fn legacy_docs(resources: &[ResourceInfo]) -> HashMap<String, Doc> {
    let mut legacy = HashMap::new();
    legacy.insert("/api".to_string(), Doc::new(&discovery::api_versions("")));
    legacy.insert(
        "/apis".to_string(),
        Doc::new(&discovery::api_group_list(resources)),
    );
    let mut gvs: Vec<(&str, &str)> = resources.iter().map(|r| (&*r.group, &*r.version)).collect();
    gvs.sort();
    gvs.dedup();
    for (g, v) in gvs {
        if let Some(doc) = discovery::api_resource_list(resources, g, v) {
            let path = if g.is_empty() {
                format!("/api/{v}")
            } else {
                format!("/apis/{g}/{v}")
            };
            legacy.insert(path, Doc::new(&doc));
        }
        if !g.is_empty()
            && !legacy.contains_key(&format!("/apis/{g}"))
            && let Some(doc) = discovery::api_group(resources, g)
        {
            legacy.insert(format!("/apis/{g}"), Doc::new(&doc));
        }
    }
    legacy
}

/// The aggregated version a client's Accept asks for, if any (first acceptable wins).
fn wants_aggregated(headers: &HeaderMap) -> Option<AggregatedVersion> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())?;
    for mt in parse_accept(accept) {
        if mt.essence() == "application/json"
            && mt.param("g") == Some("apidiscovery.k8s.io")
            && mt.param("as") == Some("APIGroupDiscoveryList")
        {
            match mt.param("v") {
                Some("v2") => return Some(AggregatedVersion::V2),
                Some("v2beta1") => return Some(AggregatedVersion::V2Beta1),
                _ => {}
            }
        } else if mt.essence() == "application/json" && mt.param("as").is_none() {
            return None;
        }
    }
    None
}

fn respond(doc: &Doc, content_type: &'static str, headers: &HeaderMap) -> Response {
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == doc.etag);
    let mut r = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, doc.body.clone()).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&doc.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

/// Serves a discovery path, or None when the path is not a discovery document.
pub fn serve(docs: &DiscoveryDocs, path: &str, headers: &HeaderMap) -> Option<Response> {
    let docs = docs.current();
    if (path == "/api" || path == "/apis")
        && let Some(v) = wants_aggregated(headers)
    {
        let doc = docs.aggregated(path == "/api", v);
        let ct = match v {
            AggregatedVersion::V2 => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
            AggregatedVersion::V2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        };
        return Some(respond(doc, ct, headers));
    }
    let doc = docs.legacy().get(path)?;
    Some(respond(doc, "application/json", headers))
}

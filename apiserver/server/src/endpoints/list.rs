//! GET of a collection (upstream `handlers/get.go` `ListResource`).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use ferrokube_storage::KeyValue;
use http::{HeaderValue, StatusCode, header};
use http_body::Frame;
use serde_json::{Map, Value, json};

use super::{Scope, json_response};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::Output;
use crate::registry::codec;
use crate::registry::store::ListResult;
use crate::table;

/// The ListMeta of a list result.
pub fn list_meta(r: &ListResult) -> Value {
    let mut m = Map::new();
    m.insert(
        "resourceVersion".into(),
        Value::String(r.revision.to_string()),
    );
    if let Some(c) = &r.continue_token {
        m.insert("continue".into(), Value::String(c.clone()));
    }
    if let Some(n) = r.remaining {
        m.insert("remainingItemCount".into(), json!(n));
    }
    Value::Object(m)
}

/// Handles list.
pub async fn list(scope: &Scope) -> ApiResult<Response> {
    let output = scope.output()?;
    let opts = scope.query.list_options()?;
    let result = scope
        .state
        .store
        .list(&scope.handle, &scope.info.namespace, &opts)
        .await?;
    let info = &scope.handle.info;
    if let Output::PartialMetadata(v) = output
        && let Some(pieces) = metadata_pieces(&scope.handle, &result.items)
    {
        // Each item's metadata is cut out of its stored bytes: nothing is decoded.
        let api_version = format!("meta.k8s.io/{v}");
        let head = list_head("PartialObjectMetadataList", &api_version, &result)?;
        let mut body = ListBody::new(head, pieces);
        body.partial_version = v;
        return Ok(body.into_response());
    }
    match output {
        Output::Json => {
            let head = list_head(&info.list_kind, &info.api_version(), &result)?;
            // Items that cannot be spliced are converted together (one webhook call) and
            // encoded here, so that nothing can fail once the body has started.
            let h = &scope.handle;
            let pending: Vec<KeyValue> = result
                .items
                .iter()
                .filter(|kv| !codec::splices(h, kv))
                .cloned()
                .collect();
            let mut converted = codec::decode_served_many(h, &pending).await?.into_iter();
            let mut pieces = Vec::with_capacity(result.items.len());
            for kv in result.items {
                if codec::splices(h, &kv) {
                    pieces.push(Piece::Spliced(kv));
                } else if let Some(v) = converted.next() {
                    pieces.push(Piece::Encoded(
                        serde_json::to_vec(&v).map_err(ApiError::Encoding)?,
                    ));
                }
            }
            Ok(ListBody::new(head, pieces).into_response())
        }
        other => {
            let items = codec::decode_served_many(&scope.handle, &result.items).await?;
            let body = match other {
                Output::Table(v) => table::to_table(
                    &scope.handle,
                    items,
                    list_meta(&result),
                    v,
                    scope.query.include_object(),
                    true,
                ),
                Output::PartialMetadata(v) => {
                    let items: Vec<Value> = items
                        .iter()
                        .map(|o| table::partial_metadata(o, v))
                        .collect();
                    let api_version = format!("meta.k8s.io/{v}");
                    list_value("PartialObjectMetadataList", api_version, &result, items)
                }
                _ => list_value(&info.list_kind, info.api_version(), &result, items),
            };
            if other == Output::Yaml {
                return scope.object_response(StatusCode::OK, &body);
            }
            Ok(json_response(
                StatusCode::OK,
                serde_json::to_vec(&body).map_err(ApiError::Encoding)?,
            ))
        }
    }
}

/// A list document with `items` moved in (`json!` would serialize them into a copy).
fn list_value(kind: &str, api_version: String, result: &ListResult, items: Vec<Value>) -> Value {
    let mut l = Map::with_capacity(4);
    l.insert("kind".into(), Value::String(kind.into()));
    l.insert("apiVersion".into(), Value::String(api_version));
    l.insert("metadata".into(), list_meta(result));
    l.insert("items".into(), Value::Array(items));
    Value::Object(l)
}

/// `{"kind":…,"apiVersion":…,"metadata":<ListMeta>,"items":[` of a JSON list.
fn list_head(kind: &str, api_version: &str, result: &ListResult) -> ApiResult<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"{\"kind\":");
    head.extend_from_slice(&serde_json::to_vec(kind).map_err(ApiError::Encoding)?);
    head.extend_from_slice(b",\"apiVersion\":");
    head.extend_from_slice(&serde_json::to_vec(api_version).map_err(ApiError::Encoding)?);
    head.extend_from_slice(b",\"metadata\":");
    head.extend_from_slice(&serde_json::to_vec(&list_meta(result)).map_err(ApiError::Encoding)?);
    head.extend_from_slice(b",\"items\":[");
    Ok(head)
}

/// The items of a PartialObjectMetadataList as pieces cut from their stored bytes, or None when
/// one of them cannot be (not stored in the served version, or not in the stored layout):
/// the list is then decoded as a whole.
fn metadata_pieces(h: &crate::registry::ResourceHandle, items: &[KeyValue]) -> Option<Vec<Piece>> {
    items
        .iter()
        .map(|kv| {
            if !codec::splices(h, kv) {
                return None;
            }
            let range = codec::metadata_range(&kv.value)?;
            Some(Piece::Metadata(kv.clone(), range))
        })
        .collect()
}

/// One item of a JSON list: stored bytes (the resourceVersion is spliced in as they are
/// written), an object converted and encoded beforehand, or the metadata of stored bytes
/// (at the range) as a PartialObjectMetadata.
enum Piece {
    Spliced(KeyValue),
    Encoded(Vec<u8>),
    Metadata(KeyValue, std::ops::Range<usize>),
}

/// A JSON list written out in chunks of about [`LIST_CHUNK`] bytes as the connection takes them
/// (upstream streams its list encoding too, without a Content-Length once past its buffer):
/// encoding overlaps sending, each item's bytes are read once, and a 10,000-item list never sits
/// in one multi-megabyte buffer. A list that fits one chunk is sent whole instead.
struct ListBody {
    /// A chunk made before the body was handed over (the first one).
    pending: Option<Vec<u8>>,
    head: Vec<u8>,
    items: std::vec::IntoIter<Piece>,
    /// The meta.k8s.io version of the PartialObjectMetadata a [`Piece::Metadata`] becomes.
    partial_version: &'static str,
    first: bool,
    done: bool,
}

const LIST_CHUNK: usize = 64 * 1024;

impl ListBody {
    fn new(head: Vec<u8>, pieces: Vec<Piece>) -> Self {
        ListBody {
            pending: None,
            head,
            items: pieces.into_iter(),
            partial_version: "v1",
            first: true,
            done: false,
        }
    }

    /// The response: whole with a Content-Length when it fits one chunk, else streamed.
    fn into_response(mut self) -> Response {
        let first = self.next_chunk().unwrap_or_default();
        if self.done {
            return json_response(StatusCode::OK, first);
        }
        self.pending = Some(first);
        let mut resp = Response::new(Body::new(self));
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }

    /// The next chunk, the last one closing the list; None after that one.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        if self.done {
            return None;
        }
        let mut out = std::mem::take(&mut self.head);
        out.reserve(LIST_CHUNK);
        while out.len() < LIST_CHUNK {
            match self.items.next() {
                Some(piece) => {
                    if !std::mem::take(&mut self.first) {
                        out.push(b',');
                    }
                    match piece {
                        Piece::Spliced(kv) => {
                            codec::write_with_rv(&mut out, &kv.value, kv.mod_revision)
                        }
                        Piece::Encoded(v) => out.extend_from_slice(&v),
                        Piece::Metadata(kv, range) => codec::write_partial_metadata(
                            &mut out,
                            self.partial_version,
                            &kv.value,
                            range,
                            kv.mod_revision,
                        ),
                    }
                }
                None => {
                    out.extend_from_slice(b"]}\n");
                    self.done = true;
                    break;
                }
            }
        }
        Some(out)
    }
}

impl http_body::Body for ListBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.next_chunk()
                .map(|chunk| Ok(Frame::data(Bytes::from(chunk)))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn kv(value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: "/registry/configmaps/default/a".into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            create_revision: rev,
            mod_revision: rev,
        }
    }

    #[tokio::test]
    async fn partial_metadata_items_are_cut_from_stored_bytes() {
        use crate::registry::codec::{decode, encode_for_storage, metadata_range};
        let big = "x".repeat(LIST_CHUNK / 3);
        let stored: Vec<KeyValue> = (0..9)
            .map(|i| {
                let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("o{i}"), "labels": {"l": "}\"{"},
                        "managedFields": [{"manager": "m", "fieldsV1": {"f:data": {}}}]},
                    "data": {"k": big}});
                let mut kv = kv("", 100 + i);
                kv.value = encode_for_storage(&obj).unwrap();
                kv
            })
            .collect();
        let pieces = stored
            .iter()
            .map(|kv| Piece::Metadata(kv.clone(), metadata_range(&kv.value).unwrap()))
            .collect();
        let mut body = ListBody::new(b"{\"items\":[".to_vec(), pieces);
        body.partial_version = "v1";
        let mut got = Vec::new();
        while let Some(chunk) = body.next_chunk() {
            got.extend_from_slice(&chunk);
        }
        let got: Value = serde_json::from_slice(&got).expect("valid JSON");
        // What decoding each object and keeping its metadata gives.
        let want: Vec<Value> = stored
            .iter()
            .map(|kv| table::partial_metadata(&decode(kv).unwrap(), "v1"))
            .collect();
        assert_eq!(got, json!({"items": want}));
    }

    #[tokio::test]
    async fn a_streamed_list_is_the_whole_list_in_chunks() {
        let big = "x".repeat(LIST_CHUNK / 3);
        for n in [0usize, 1, 2, 7, 40] {
            let mut pieces = Vec::new();
            let mut want = String::from("{\"kind\":\"L\",\"items\":[");
            for i in 0..n {
                if i > 0 {
                    want.push(',');
                }
                if i % 5 == 4 {
                    let v = format!("{{\"converted\":{i}}}");
                    want.push_str(&v);
                    pieces.push(Piece::Encoded(v.into_bytes()));
                } else {
                    let stored =
                        format!("{{\"metadata\":{{\"name\":\"o{i}\"}},\"data\":\"{big}\"}}");
                    let rev = 10 + i as i64;
                    want.push_str(&format!(
                        "{{\"metadata\":{{\"resourceVersion\":\"{rev}\",\"name\":\"o{i}\"}},\"data\":\"{big}\"}}"
                    ));
                    pieces.push(Piece::Spliced(kv(&stored, rev)));
                }
            }
            want.push_str("]}\n");
            let mut body = ListBody::new(b"{\"kind\":\"L\",\"items\":[".to_vec(), pieces);
            // As the handler: the first chunk made before the body is handed over.
            body.pending = body.next_chunk();
            let mut body = std::pin::pin!(body);
            let mut got = Vec::new();
            let mut frames = 0;
            while let Some(f) = body.frame().await {
                let data = f.unwrap().into_data().unwrap();
                frames += 1;
                got.extend_from_slice(&data);
            }
            assert_eq!(String::from_utf8(got).unwrap(), want, "{n} items");
            // Chunks of about LIST_CHUNK: a 40-item list of ~22 KB items is many frames.
            assert!(
                frames >= want.len() / (LIST_CHUNK + big.len() + 200),
                "{frames} frames"
            );
        }
    }
}

//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded into the
//! JSON the rest of the server works on.
//!
//! The body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` envelope
//! `{typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2, contentEncoding = 3, contentType = 4}`;
//! `raw` is the typed message (for example `k8s.io.api.core.v1.ConfigMap`) whose own TypeMeta is
//! empty, so apiVersion and kind come from the envelope. Messages are walked with the generated
//! table in `schema.txt` (see `hack/gen-proto-schema.py`); no protoc, no generated Rust types.

mod decode;
mod schema;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::media::MediaType;
use wire::{Reader, WireValue};

pub use decode::{go_duration, rfc3339};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8] = b"k8s\x00";

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtobufError {
    #[error("provided object is not a Kubernetes protobuf message (missing the k8s\\0 prefix)")]
    MissingMagic,
    #[error("the protobuf message is truncated")]
    Truncated,
    #[error("malformed protobuf message: {0}")]
    Malformed(String),
    #[error("invalid UTF-8 in a protobuf string field")]
    InvalidUtf8,
    #[error("invalid embedded JSON: {0}")]
    InvalidJson(String),
    #[error("content encoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error("no kind \"{kind}\" is registered for version \"{api_version}\"")]
    UnknownKind { api_version: String, kind: String },
    /// Messages nested deeper than [`crate::limits::MAX_PROTOBUF_DEPTH`], or a decoded object
    /// deeper than [`crate::limits::MAX_DEPTH`].
    #[error("malformed protobuf message: nested more than {0} levels deep")]
    TooDeep(usize),
}

/// True when a `Content-Type` header is the Kubernetes protobuf media type.
pub fn is_protobuf_content_type(content_type: &str) -> bool {
    MediaType::parse(content_type).is_some_and(|m| m.essence() == CONTENT_TYPE)
}

/// Decodes a whole protobuf body into a JSON object with `apiVersion` and `kind` set.
///
/// Bounded: nothing is allocated from a length prefix (length-delimited fields are slices of the
/// body, checked against its end), messages nest at most [`crate::limits::MAX_PROTOBUF_DEPTH`]
/// deep and the result at most [`crate::limits::MAX_DEPTH`].
pub fn decode_object(body: &[u8]) -> Result<Value, ProtobufError> {
    let v = decode_object_at(body, 0)?;
    if crate::limits::check_depth(&v, crate::limits::MAX_DEPTH).is_err() {
        crate::limits::drop_flat(v);
        return Err(ProtobufError::TooDeep(crate::limits::MAX_DEPTH));
    }
    Ok(v)
}

/// [`decode_object`] of an envelope nested in `depth` messages (a RawExtension's).
fn decode_object_at(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut r = Reader::new(rest);
    while let Some((tag, v)) = r.next_field()? {
        let WireValue::Bytes(b) = v else { continue };
        match tag {
            1 => {
                let mut tm = Reader::new(b);
                while let Some((t, v)) = tm.next_field()? {
                    match (t, v) {
                        (1, WireValue::Bytes(s)) => api_version = utf8(s)?,
                        (2, WireValue::Bytes(s)) => kind = utf8(s)?,
                        _ => {}
                    }
                }
            }
            2 => raw = b,
            3 if !b.is_empty() => return Err(ProtobufError::ContentEncoding(utf8(b)?)),
            _ => {}
        }
    }
    let schema = schema::schema();
    let name =
        schema
            .message_for(&api_version, &kind)
            .ok_or_else(|| ProtobufError::UnknownKind {
                api_version: api_version.clone(),
                kind: kind.clone(),
            })?;
    let body = decode::message(schema, name, raw, depth)?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version));
    out.insert("kind".into(), Value::String(kind));
    if let Value::Object(fields) = body {
        for (k, v) in fields {
            if k != "apiVersion" && k != "kind" {
                out.insert(k, v);
            }
        }
    }
    Ok(Value::Object(out))
}

fn utf8(b: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtobufError::InvalidUtf8)
}

//! Content negotiation: what a response is encoded as (JSON, YAML, a meta.k8s.io Table or
//! PartialObjectMetadata) and what request bodies are accepted.

use ferrokube_machinery::media::{MediaType, parse_accept};
use ferrokube_machinery::status::Status;

use crate::error::{ApiError, ApiResult};

/// How `rows[].object` of a Table is filled (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// The negotiated response form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// A meta.k8s.io Table; the string is the meta version (`v1` or `v1beta1`).
    Table(&'static str),
    /// meta.k8s.io/v1 PartialObjectMetadata (or its List for collections).
    PartialMetadata(&'static str),
}

const SUPPORTED: &str = "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf";

fn meta_version(mt: &MediaType) -> Option<&'static str> {
    if mt.param("g") != Some("meta.k8s.io") {
        return None;
    }
    match mt.param("v") {
        Some("v1") => Some("v1"),
        Some("v1beta1") => Some("v1beta1"),
        _ => None,
    }
}

/// Picks the response form from an `Accept` header.
pub fn negotiate(accept: Option<&str>) -> ApiResult<Output> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Output::Json);
    };
    let mut types = parse_accept(accept);
    // Stable sort by preference: q descending keeps the client's order among equals.
    types.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    for mt in types.iter().filter(|m| m.q > 0.0) {
        let essence = mt.essence();
        match (essence.as_str(), mt.param("as")) {
            ("application/json", Some("Table")) => {
                if let Some(v) = meta_version(mt) {
                    return Ok(Output::Table(v));
                }
            }
            ("application/json", Some("PartialObjectMetadata" | "PartialObjectMetadataList")) => {
                if let Some(v) = meta_version(mt) {
                    return Ok(Output::PartialMetadata(v));
                }
            }
            ("application/json", Some(_)) => {}
            ("application/json" | "*/*" | "application/*", None) => return Ok(Output::Json),
            ("application/yaml", None) => return Ok(Output::Yaml),
            _ => {}
        }
    }
    Err(Status::not_acceptable(SUPPORTED).into())
}

/// The body formats accepted on writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    /// `application/vnd.kubernetes.protobuf` (kubectl's imperative commands send it).
    Protobuf,
}

/// Checks a request `Content-Type` for create/update.
pub fn body_format(content_type: Option<&str>) -> ApiResult<BodyFormat> {
    let Some(ct) = content_type.filter(|c| !c.trim().is_empty()) else {
        return Ok(BodyFormat::Json);
    };
    let essence = MediaType::parse(ct)
        .map(|m| m.essence())
        .unwrap_or_default();
    match essence.as_str() {
        "application/json" | "*/*" => Ok(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(BodyFormat::Yaml),
        ferrokube_machinery::protobuf::CONTENT_TYPE => Ok(BodyFormat::Protobuf),
        _ => Err(Status::unsupported_media_type(ct).into()),
    }
}

/// Decodes a body in the given format into a JSON value.
pub fn decode_body(format: BodyFormat, body: &[u8]) -> ApiResult<serde_json::Value> {
    let v: serde_json::Value = match format {
        BodyFormat::Json => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        BodyFormat::Yaml => ferrokube_machinery::decode::parse_json_or_yaml(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?,
        BodyFormat::Protobuf => ferrokube_machinery::protobuf::decode_object(body)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the request body: the body is not a JSON object",
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_table_accept() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(a)).unwrap(), Output::Table("v1"));
    }

    #[test]
    fn protobuf_bodies_are_accepted() {
        let ct = Some("application/vnd.kubernetes.protobuf");
        assert_eq!(body_format(ct).unwrap(), BodyFormat::Protobuf);
        // k8s\0 + Unknown{typeMeta{apiVersion "v1", kind "Namespace"}, raw{metadata{name "n"}}}
        let mut body = b"k8s\0".to_vec();
        body.extend_from_slice(b"\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x05\x0a\x03\x0a\x01n");
        let v = decode_body(BodyFormat::Protobuf, &body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
        );
        assert!(decode_body(BodyFormat::Protobuf, b"{}").is_err());
    }

    #[test]
    fn protobuf_falls_back_to_json() {
        let a = "application/vnd.kubernetes.protobuf, application/json";
        assert_eq!(negotiate(Some(a)).unwrap(), Output::Json);
        assert!(negotiate(Some("application/vnd.kubernetes.protobuf")).is_err());
        assert!(negotiate(Some("text/html")).is_err());
    }
}

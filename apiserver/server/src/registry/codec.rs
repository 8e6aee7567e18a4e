//! How objects are laid out in storage: canonical JSON with `apiVersion`, `kind`, `metadata`
//! first and no `metadata.resourceVersion` (the revision is the version, as upstream). On the way
//! out the revision is spliced back in without re-parsing the object.

use bytes::Bytes;
use ferrokube_storage::{KeyValue, Revision};
use serde_json::{Map, Value};

use super::ResourceHandle;
use crate::error::{ApiError, ApiResult};
use ferrokube_machinery::conversion;

const METADATA_OPEN: &[u8] = b"\"metadata\":{";

/// Serializes an object for storage.
pub fn encode_for_storage(obj: &Value) -> ApiResult<Bytes> {
    let Some(map) = obj.as_object() else {
        return Err(ApiError::internal("object is not a JSON object"));
    };
    let mut out = Map::with_capacity(map.len());
    for k in ["apiVersion", "kind"] {
        if let Some(v) = map.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    let mut meta = map
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    out.insert("metadata".into(), meta);
    for (k, v) in map {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            out.insert(k.clone(), v.clone());
        }
    }
    // The bytes are held for the object's lifetime (watch cache, event ring, responses):
    // exactly their length, not the doubling growth of the serializer's buffer (a 540-byte
    // object would otherwise hold a 1,024-byte allocation).
    serde_json::to_vec(&Value::Object(out))
        .map(|v| Bytes::from(v.into_boxed_slice()))
        .map_err(ApiError::Encoding)
}

/// The stored bytes with `metadata.resourceVersion` set to `rv`, written into `out`.
pub fn write_with_rv(out: &mut Vec<u8>, stored: &[u8], rv: Revision) {
    match find(stored, METADATA_OPEN) {
        Some(pos) => {
            let split = pos + METADATA_OPEN.len();
            out.extend_from_slice(&stored[..split]);
            write_rv_member(out, &stored[split..], rv);
            out.extend_from_slice(&stored[split..]);
        }
        None => out.extend_from_slice(stored),
    }
}

/// `"resourceVersion":"<rv>"` as the first member of an object whose remaining bytes (after
/// its `{`) are `rest`, with the comma when more members follow. Straight into `out` (a list
/// writes one per item: no String, no formatter each).
fn write_rv_member(out: &mut Vec<u8>, rest: &[u8], rv: Revision) {
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(itoa::Buffer::new().format(rv).as_bytes());
    out.push(b'"');
    if rest.first() != Some(&b'}') {
        out.push(b',');
    }
}

/// Where the `metadata` object of stored bytes is (from its `{` to its `}`), found without
/// decoding the object: [`encode_for_storage`] puts `metadata` right after `apiVersion` and
/// `kind`, and its end is found by a scan that skips strings. None when the bytes do not have
/// that layout.
pub fn metadata_range(stored: &[u8]) -> Option<std::ops::Range<usize>> {
    let open = find(stored, METADATA_OPEN)? + METADATA_OPEN.len() - 1;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = open;
    while i < stored.len() {
        match (in_string, stored[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_string = false,
            (true, _) => {}
            (false, b'"') => in_string = true,
            (false, b'{' | b'[') => depth += 1,
            (false, b'}' | b']') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(open..i + 1);
                }
            }
            (false, _) => {}
        }
        i += 1;
    }
    None
}

/// A PartialObjectMetadata of meta.k8s.io `version` made of the metadata at `range` of stored
/// bytes (see [`metadata_range`]), its resourceVersion set to `rv`, written into `out`.
pub fn write_partial_metadata(
    out: &mut Vec<u8>,
    version: &str,
    stored: &[u8],
    range: std::ops::Range<usize>,
    rv: Revision,
) {
    out.extend_from_slice(b"{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/");
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(b"\",\"metadata\":");
    write_metadata_with_rv(out, stored, range, rv);
    out.push(b'}');
}

/// The metadata object at `range` of stored bytes (see [`metadata_range`]) with its
/// resourceVersion set to `rv`, written into `out`.
pub fn write_metadata_with_rv(
    out: &mut Vec<u8>,
    stored: &[u8],
    range: std::ops::Range<usize>,
    rv: Revision,
) {
    let meta = &stored[range];
    out.push(b'{');
    let rest = meta.get(1..).unwrap_or_default();
    write_rv_member(out, rest, rv);
    out.extend_from_slice(rest);
}

/// The stored bytes of a key-value with its resourceVersion, as a new buffer.
pub fn bytes_with_rv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(kv.value.len() + 32);
    write_with_rv(&mut out, &kv.value, kv.mod_revision);
    out
}

/// Decodes a stored object and sets its resourceVersion.
pub fn decode(kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(ApiError::Encoding)?;
    set_rv(&mut v, kv.mod_revision);
    Ok(v)
}

/// Converts an object to the version `h` serves (a no-op unless the kind has several served
/// versions over one storage version, or is a custom resource whose schema has defaults).
pub async fn to_served(h: &ResourceHandle, obj: &mut Value) -> ApiResult<()> {
    if let Some(c) = &h.custom {
        return c.from_storage(&mut [obj], &h.info.api_version()).await;
    }
    if h.storage_api_version.is_none() {
        return Ok(());
    }
    conversion::convert(obj, &h.info.api_version()).map_err(ApiError::internal)
}

/// A copy of `obj` (if any) in the served version of `h`.
pub async fn served_copy(h: &ResourceHandle, obj: Option<&Value>) -> ApiResult<Option<Value>> {
    let Some(o) = obj else {
        return Ok(None);
    };
    let mut v = o.clone();
    to_served(h, &mut v).await?;
    Ok(Some(v))
}

/// Converts stored objects to the version `h` serves; a conversion webhook gets them in one
/// call.
pub async fn to_served_many(h: &ResourceHandle, objs: &mut [Value]) -> ApiResult<()> {
    if let Some(c) = &h.custom {
        let mut refs: Vec<&mut Value> = objs.iter_mut().collect();
        return c.from_storage(&mut refs, &h.info.api_version()).await;
    }
    for o in objs {
        to_served(h, o).await?;
    }
    Ok(())
}

/// Converts an object of the version `h` serves to the storage version.
pub async fn to_storage(h: &ResourceHandle, obj: &mut Value) -> ApiResult<()> {
    match (&h.storage_api_version, &h.custom) {
        (None, _) => Ok(()),
        (Some(_), Some(c)) => c.to_storage(obj).await,
        (Some(v), None) => conversion::convert(obj, v).map_err(ApiError::internal),
    }
}

/// Decodes a stored object in the version `h` serves, with its resourceVersion.
pub async fn decode_served(h: &ResourceHandle, kv: &KeyValue) -> ApiResult<Value> {
    let mut v = decode(kv)?;
    to_served(h, &mut v).await?;
    Ok(v)
}

/// Decodes stored objects in the version `h` serves (one webhook call for all of them).
pub async fn decode_served_many(h: &ResourceHandle, kvs: &[KeyValue]) -> ApiResult<Vec<Value>> {
    let mut out = kvs.iter().map(decode).collect::<ApiResult<Vec<_>>>()?;
    to_served_many(h, &mut out).await?;
    Ok(out)
}

/// Whether a stored object can be written out as stored (spliced, not decoded): it is of the
/// served version and nothing is applied on read.
pub fn splices(h: &ResourceHandle, kv: &KeyValue) -> bool {
    if h.custom.as_ref().is_some_and(|c| !c.serves_stored_bytes()) {
        return false;
    }
    h.storage_api_version.is_none() || stored_as(&kv.value, &h.info.api_version())
}

/// Writes a stored object with its resourceVersion in the version `h` serves: spliced from the
/// stored bytes, or decoded, converted and re-encoded for multi-version kinds.
pub async fn write_served(h: &ResourceHandle, out: &mut Vec<u8>, kv: &KeyValue) -> ApiResult<()> {
    if splices(h, kv) {
        write_with_rv(out, &kv.value, kv.mod_revision);
        return Ok(());
    }
    let v = decode_served(h, kv).await?;
    serde_json::to_writer(out, &v).map_err(ApiError::Encoding)
}

/// Whether stored bytes are already of `api_version`: [`encode_for_storage`] writes
/// `apiVersion` first, so a prefix check spares the decode (core Events, HPA v2 watchers).
fn stored_as(stored: &[u8], api_version: &str) -> bool {
    let rest = stored.strip_prefix(b"{\"apiVersion\":\"".as_slice());
    rest.and_then(|r| r.strip_prefix(api_version.as_bytes()))
        .is_some_and(|r| r.starts_with(b"\","))
}

/// Sets `metadata.resourceVersion`.
pub fn set_rv(obj: &mut Value, rv: Revision) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    // The first byte is checked inline: a slice comparison at every offset is a call to memcmp.
    hay.windows(needle.len())
        .position(|w| w[0] == first && w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_is_cut_from_stored_bytes_as_decoding_finds_it() {
        // Braces, brackets, quotes and backslashes inside strings; nested objects and arrays;
        // an empty metadata; fields after metadata that look like metadata.
        let objects = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "a", "namespace": "default",
                "labels": {"x": "}{", "y": "\\\"}"},
                "annotations": {"note": "\"metadata\":{\"name\":\"fake\"} ] [ \\"},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {".": {}}}}],
                "finalizers": ["a/b", "c]"]},
                "data": {"k": "}\"metadata\":{}"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {}}),
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "ü-\u{1F600}"},
                "spec": {"containers": [{"name": "c", "args": ["{", "}"]}]}}),
        ];
        for obj in objects {
            let stored = encode_for_storage(&obj).unwrap();
            let range = metadata_range(&stored).expect("metadata found");
            let mut out = Vec::new();
            write_metadata_with_rv(&mut out, &stored, range, 42);
            let got: Value = serde_json::from_slice(&out).expect("valid JSON");
            let mut want = obj["metadata"].clone();
            want["resourceVersion"] = json!("42");
            assert_eq!(got, want, "{obj}");
        }
        // Not the stored layout, or cut short: not found rather than a wrong range.
        assert_eq!(metadata_range(b"{\"kind\":\"X\"}"), None);
        assert_eq!(metadata_range(b"{\"metadata\":{\"name\":\"a}"), None);
    }

    #[test]
    fn stored_version_prefix() {
        let stored = encode_for_storage(&json!({"kind": "Event", "apiVersion": "v1",
            "metadata": {"name": "e"}}))
        .unwrap();
        assert!(stored_as(&stored, "v1"));
        assert!(!stored_as(&stored, "events.k8s.io/v1"));
        assert!(!stored_as(b"{\"apiVersion\":\"v1beta1\",", "v1"));
    }

    #[test]
    fn the_resource_version_is_spliced_after_the_metadata_opens() {
        for (stored, rv, want) in [
            (
                &br#"{"metadata":{"name":"a"},"x":1}"#[..],
                12,
                r#"{"metadata":{"resourceVersion":"12","name":"a"},"x":1}"#,
            ),
            (
                br#"{"kind":"A","metadata":{}}"#,
                0,
                r#"{"kind":"A","metadata":{"resourceVersion":"0"}}"#,
            ),
            (br#"{"kind":"A"}"#, 7, r#"{"kind":"A"}"#),
            (
                br#"{"metadata":{"a":"b"}}"#,
                i64::MAX,
                r#"{"metadata":{"resourceVersion":"9223372036854775807","a":"b"}}"#,
            ),
            (
                br#"{"metadata":{"a":"b"}}"#,
                1_000_000,
                r#"{"metadata":{"resourceVersion":"1000000","a":"b"}}"#,
            ),
        ] {
            let mut out = Vec::new();
            write_with_rv(&mut out, stored, rv);
            assert_eq!(String::from_utf8_lossy(&out), want);
        }
    }

    #[test]
    fn splices_resource_version() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "9"}, "kind": "ConfigMap", "apiVersion": "v1", "data": {"k": "\"metadata\":{"}});
        let stored = encode_for_storage(&obj).unwrap();
        assert!(
            stored.starts_with(
                b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\""
            )
        );
        let kv = KeyValue {
            key: "k".into(),
            value: stored,
            create_revision: 5,
            mod_revision: 7,
        };
        let out: Value = serde_json::from_slice(&bytes_with_rv(&kv)).unwrap();
        assert_eq!(out["metadata"]["resourceVersion"], "7");
        assert_eq!(out["data"]["k"], "\"metadata\":{");
        assert_eq!(decode(&kv).unwrap(), out);
    }

    #[test]
    fn splices_into_empty_metadata() {
        let kv = KeyValue {
            key: "k".into(),
            value: Bytes::from_static(b"{\"metadata\":{}}"),
            create_revision: 1,
            mod_revision: 3,
        };
        let out: Value = serde_json::from_slice(&bytes_with_rv(&kv)).unwrap();
        assert_eq!(out, json!({"metadata": {"resourceVersion": "3"}}));
    }
}

//! List continue tokens in upstream's format (`k8s.io/apiserver/pkg/storage` `EncodeContinue`
//! / `DecodeContinue`), so that tokens look and behave the same as kube-apiserver's.
//!
//! A token is the unpadded URL-safe base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"K"}`,
//! where `N` is the revision the first page was read at and `K` is the storage key to resume
//! from, relative to the list's key prefix (e.g. `ns1/name5\u0000` under `/registry/pods/`).
//!
//! Upstream's etcd3 store builds `K` from the last returned key plus a `\0` byte and resumes
//! with an **inclusive** range starting at `prefix + K`. Because `\0` is the smallest byte,
//! `key >= last + "\0"` is the same as `key > last`, so a backend with an *exclusive*
//! `start_after` should use [`start_after`]`(K)` (= `last`). Tokens whose key does not end in
//! `\0` (never produced by ferrokube or upstream) mean an inclusive start at `K`.
//!
//! A bad token is a 400: `Status::bad_request(&format!("invalid continue token: {err}"))`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// The only encoding version upstream understands.
pub const CONTINUE_VERSION: &str = "meta.k8s.io/v1";

/// Upstream's 410 message when the revision of a continue token has been compacted and no
/// inconsistent continuation is offered.
pub const CONTINUE_EXPIRED_MSG: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

/// Upstream's 410 message when the response carries an inconsistent continue token.
pub const INCONSISTENT_CONTINUE_MSG: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// A token that cannot be used; messages are upstream's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContinueError {
    /// Not base64, not JSON, or a start key that escapes the prefix.
    #[error("continue key is not valid: {0}")]
    InvalidKey(String),
    /// `rv` missing or zero.
    #[error(
        "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
    )]
    InvalidStartRv,
    /// `start` missing or empty.
    #[error("continue key is not valid: encoded start key empty (version meta.k8s.io/v1)")]
    EmptyStartKey,
    /// `v` is not `meta.k8s.io/v1`.
    #[error("continue key is not valid: server does not recognize this encoded version {0}")]
    UnrecognizedVersion(String),
}

#[derive(Deserialize)]
struct Token {
    #[serde(default)]
    v: String,
    #[serde(default)]
    rv: i64,
    #[serde(default)]
    start: String,
}

/// Go's `encoding/json` string escaping (HTML-safe, `\u0000` for NUL).
pub(crate) fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Encodes a token for a list read at `resource_version` whose next page starts after the
/// returned key. `next_key_relative` is that key relative to the list prefix; the `\0` that
/// upstream appends is added here unless already present (so both `"ns/a"` and `"ns/a\0"`
/// give the same token).
pub fn encode_continue(resource_version: i64, next_key_relative: &str) -> String {
    let mut start = next_key_relative.to_string();
    if !start.ends_with('\0') {
        start.push('\0');
    }
    let mut json = String::with_capacity(start.len() + 48);
    json.push_str("{\"v\":\"meta.k8s.io/v1\",\"rv\":");
    json.push_str(&resource_version.to_string());
    json.push_str(",\"start\":");
    go_json_string(&start, &mut json);
    json.push('}');
    URL_SAFE_NO_PAD.encode(json.as_bytes())
}

/// Decodes a token into `(resource_version, start_key_relative)`. The key is upstream's
/// inclusive start (normally ending in `\0`); see [`start_after`] for the exclusive form.
/// Keys that would escape the prefix (`..`, `//`, `./`, trailing `/`) are rejected like
/// upstream's `path.Clean` check.
pub fn decode_continue(token: &str) -> Result<(i64, String), ContinueError> {
    let data = URL_SAFE_NO_PAD.decode(token).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(i, _)
            | base64::DecodeError::InvalidLastSymbol(i, _) => i,
            base64::DecodeError::InvalidLength(n) => n,
            base64::DecodeError::InvalidPadding => token.len(),
        };
        ContinueError::InvalidKey(format!("illegal base64 data at input byte {at}"))
    })?;
    let t: Token =
        serde_json::from_slice(&data).map_err(|e| ContinueError::InvalidKey(e.to_string()))?;
    if t.v != CONTINUE_VERSION {
        return Err(ContinueError::UnrecognizedVersion(t.v));
    }
    if t.rv == 0 {
        return Err(ContinueError::InvalidStartRv);
    }
    if t.start.is_empty() {
        return Err(ContinueError::EmptyStartKey);
    }
    let key = if t.start.starts_with('/') {
        t.start.clone()
    } else {
        format!("/{}", t.start)
    };
    if !is_clean_path(&key) {
        return Err(ContinueError::InvalidKey(t.start));
    }
    Ok((t.rv, key[1..].to_string()))
}

/// The exclusive `start_after` key equivalent to an inclusive start key from
/// [`decode_continue`]: the key without its trailing `\0`. `None` when the key has no `\0`
/// (then it must be used as an inclusive start).
pub fn start_after(start_key: &str) -> Option<&str> {
    start_key.strip_suffix('\0')
}

/// True when Go's `path.Clean` would leave the absolute path `p` unchanged.
fn is_clean_path(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    p[1..]
        .split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json.as_bytes())
    }

    #[test]
    fn encode_matches_upstream_bytes() {
        let t = encode_continue(5, "ns/b");
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(&t).expect("b64")).expect("utf8");
        assert_eq!(
            json,
            r#"{"v":"meta.k8s.io/v1","rv":5,"start":"ns/b\u0000"}"#
        );
        assert_eq!(
            t,
            "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NSwic3RhcnQiOiJucy9iXHUwMDAwIn0"
        );
        assert_eq!(encode_continue(5, "ns/b\0"), t);
    }

    #[test]
    fn roundtrip() {
        let t = encode_continue(42, "kube-system/coredns-<1>&");
        let (rv, start) = decode_continue(&t).expect("valid");
        assert_eq!(rv, 42);
        assert_eq!(start, "kube-system/coredns-<1>&\0");
        assert_eq!(start_after(&start), Some("kube-system/coredns-<1>&"));
        assert_eq!(start_after("a"), None);
    }

    type Decoded = Result<(i64, String), ContinueError>;

    #[test]
    fn upstream_decode_cases() {
        let cases: Vec<(String, Decoded)> = vec![
            (
                raw(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"foo"}"#),
                Ok((1, "foo".into())),
            ),
            (
                raw(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"/foo"}"#),
                Ok((1, "foo".into())),
            ),
            (
                raw(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"/"}"#),
                Ok((1, "".into())),
            ),
            (
                raw(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"../foo"}"#),
                Err(ContinueError::InvalidKey("../foo".into())),
            ),
            (
                raw(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"foo/../../bar"}"#),
                Err(ContinueError::InvalidKey("foo/../../bar".into())),
            ),
            (
                raw(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"foo//bar"}"#),
                Err(ContinueError::InvalidKey("foo//bar".into())),
            ),
            (
                raw(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"foo/"}"#),
                Err(ContinueError::InvalidKey("foo/".into())),
            ),
            (
                raw(r#"{"v":"meta.k8s.io/v1","rv":0,"start":"foo"}"#),
                Err(ContinueError::InvalidStartRv),
            ),
            (
                raw(r#"{"v":"meta.k8s.io/v1","rv":1,"start":""}"#),
                Err(ContinueError::EmptyStartKey),
            ),
            (
                raw(r#"{"v":"meta.k8s.io/v2","rv":1,"start":"foo"}"#),
                Err(ContinueError::UnrecognizedVersion("meta.k8s.io/v2".into())),
            ),
        ];
        for (token, want) in cases {
            assert_eq!(decode_continue(&token), want, "{token}");
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            ContinueError::InvalidStartRv.to_string(),
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        );
        assert_eq!(
            ContinueError::UnrecognizedVersion("x".into()).to_string(),
            "continue key is not valid: server does not recognize this encoded version x"
        );
        let e = decode_continue("!!!").expect_err("bad base64");
        assert_eq!(
            e.to_string(),
            "continue key is not valid: illegal base64 data at input byte 0"
        );
        let e = decode_continue(&raw("not json")).expect_err("bad json");
        assert!(
            e.to_string().starts_with("continue key is not valid: "),
            "{e}"
        );
        assert!(
            decode_continue(&format!("{}=", encode_continue(1, "a"))).is_err(),
            "padding rejected"
        );
    }
}

//! Upstream's wording for bodies that cannot be decoded as the resource of the URL
//! (`handlers/rest.go: transformDecodeError`):
//!
//! * the body names a kind: `<Kind> in version "<v>" cannot be handled as a <Target>: <cause>`,
//!   the cause being the failed conversion (`converting (v1.ConfigMap) to (core.Namespace):
//!   unknown conversion`) for a registered kind, or `no kind "<Kind>" is registered for version
//!   "<group/version>" in scheme "pkg/api/legacyscheme/scheme.go:30"` for an unknown one;
//! * the body's kind cannot be read (not JSON): `the object provided is unrecognized (must be of
//!   type <Target>): couldn't get version/kind; json parse error: <Go's message> (<summary>)`,
//!   the summary being the first 30 bytes (as text for `{`, else hex) as upstream's
//!   `summarizeData`.

use ferrokube_machinery::resources::ResourceInfo;
use serde_json::Value;

use crate::error::ApiError;

/// Upstream's legacy scheme name, part of its "not registered" message.
const SCHEME: &str = "pkg/api/legacyscheme/scheme.go:30";

/// The Go package of a group's internal types (`""` → `core`, `networking.k8s.io` →
/// `networking`); events.k8s.io shares core's internal Event.
fn internal_package(group: &str) -> &str {
    match group {
        "" | "events.k8s.io" => "core",
        g => g.split('.').next().unwrap_or(g),
    }
}

/// The 400 for a JSON body whose `kind` is not the URL's resource kind, or None when the kind
/// matches (or is empty: the URL's kind is the default).
pub fn wrong_kind(
    target: &ResourceInfo,
    registered: &[&ResourceInfo],
    obj: &Value,
) -> Option<ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() || kind == target.kind {
        return None;
    }
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| target.api_version());
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version.as_str()),
    };
    let known = registered
        .iter()
        .any(|r| r.group == group && r.version == version && r.kind == kind);
    let cause = if known {
        format!(
            "converting ({version}.{kind}) to ({}.{}): unknown conversion",
            internal_package(&target.group),
            target.kind
        )
    } else {
        format!(
            "no kind \"{kind}\" is registered for version \"{api_version}\" in scheme \"{SCHEME}\""
        )
    };
    Some(ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {}: {cause}",
        target.kind
    )))
}

/// The 400 for a JSON body whose kind cannot be read.
pub fn unrecognized(target: &ResourceInfo, body: &[u8]) -> ApiError {
    ApiError::bad_request(format!(
        "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {} ({})",
        target.kind,
        go_json_error(body),
        summarize(body, 30)
    ))
}

/// Upstream's `summarizeData`.
fn summarize(body: &[u8], max: usize) -> String {
    let cut = &body[..body.len().min(max)];
    let more = if body.len() > max { " ..." } else { "" };
    match body.first() {
        None => "<empty>".into(),
        Some(b'{') => format!("{}{more}", String::from_utf8_lossy(cut)),
        Some(_) => format!("{}{more}", hex::encode(cut)),
    }
}

/// The message Go's `json.Unmarshal` gives for the common cases of a body that is not a JSON
/// object: empty or truncated input, a first byte that cannot start a value, a value of another
/// type; anything else is described generically.
fn go_json_error(body: &[u8]) -> String {
    let first = body.iter().position(|b| !b" \t\r\n".contains(b));
    let Some(at) = first else {
        return "unexpected end of JSON input".into();
    };
    let c = body[at];
    let starts_value = matches!(
        c,
        b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
    );
    if !starts_value {
        return format!(
            "invalid character {} looking for beginning of value",
            go_quote_char(c)
        );
    }
    let what = match c {
        b'[' => "array",
        b'"' => "string",
        b't' | b'f' => "bool",
        // `null` or a malformed object: Go's scanner wording only for truncated input.
        _ if matches!(c, b'n' | b'{') => {
            return match serde_json::from_slice::<Value>(body) {
                Err(e) if e.is_eof() => "unexpected end of JSON input".into(),
                Err(e) => e.to_string(),
                Ok(_) => "unexpected end of JSON input".into(),
            };
        }
        _ => "number",
    };
    format!(
        "json: cannot unmarshal {what} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}"
    )
}

/// Go's `quoteChar`: `'x'`, with `'\''` and `'"'` spelled as Go does.
fn go_quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'"' => "'\"'".into(),
        c if c.is_ascii_graphic() || c == b' ' => format!("'{}'", c as char),
        c => format!("'\\x{c:02x}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_follow_upstream() {
        assert_eq!(summarize(b"", 30), "<empty>");
        assert_eq!(summarize(b"{\"a\":1}", 30), "{\"a\":1}");
        assert_eq!(
            summarize(b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n", 30),
            "61706956657273696f6e3a2076310a6b696e643a20506f640a6d65746164 ..."
        );
    }

    #[test]
    fn go_messages_for_non_json() {
        assert_eq!(
            go_json_error(b"apiVersion: v1"),
            "invalid character 'a' looking for beginning of value"
        );
        assert_eq!(go_json_error(b"  "), "unexpected end of JSON input");
        assert!(go_json_error(b"[1]").starts_with("json: cannot unmarshal array into Go value"));
        assert_eq!(go_json_error(b"{\"a\":"), "unexpected end of JSON input");
    }
}

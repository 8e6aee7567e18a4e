//! `field.Error`, `field.ErrorType` and `field.Path` re-implemented.

use std::fmt;

use serde_json::Value;

/// Upstream `field.ErrorType`: why a field is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldErrorType {
    /// `FieldValueRequired`: a required value is missing.
    Required,
    /// `FieldValueInvalid`: a malformed value.
    Invalid,
    /// `FieldValueDuplicate`: a value that must be unique is repeated.
    Duplicate,
    /// `FieldValueNotSupported`: a value outside an enumeration.
    NotSupported,
    /// `FieldValueForbidden`: a well-formed value not permitted here.
    Forbidden,
    /// `FieldValueTooLong`: a value over its length limit.
    TooLong,
    /// `FieldValueTooMany`: a list with too many items.
    TooMany,
    /// `InternalError`: a failure not caused by the input.
    Internal,
    /// `FieldValueNotFound`: a referenced value does not exist.
    NotFound,
    /// `FieldValueTypeInvalid`: the value does not have the schema's type.
    TypeInvalid,
}

impl FieldErrorType {
    /// The machine-readable reason (`StatusCause.reason`), e.g. `FieldValueRequired`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::Duplicate => "FieldValueDuplicate",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Internal => "InternalError",
            Self::NotFound => "FieldValueNotFound",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human text (`ErrorType.String()`), e.g. `Required value`.
    pub fn text(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::Duplicate => "Duplicate value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Internal => "Internal error",
            Self::NotFound => "Not found",
        }
    }
}

impl fmt::Display for FieldErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// A field path such as `spec.template.spec.containers[0].name` (upstream `field.Path`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    /// A root path (`field.NewPath`).
    pub fn new(name: &str) -> Self {
        Path(name.to_string())
    }

    /// `p.Child(name)`: `a.b`; a child of an empty path is just `name`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{}", self.0, name))
        }
    }

    /// `p.Index(i)`: `a[0]`.
    pub fn index(&self, i: usize) -> Self {
        Path(format!("{}[{}]", self.0, i))
    }

    /// `p.Key(k)`: `a[k]`.
    pub fn key(&self, k: &str) -> Self {
        Path(format!("{}[{}]", self.0, k))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Path {
    fn from(s: &str) -> Self {
        Path(s.to_string())
    }
}

/// One field-level validation error (upstream `field.Error`).
///
/// `bad_value: None` means "value omitted": the message then shows only the type text.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Why the field is invalid.
    pub type_: FieldErrorType,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// The offending value, rendered like Go's `%q`/`%v` in the message.
    pub bad_value: Option<Value>,
    /// Free-text detail appended after the value.
    pub detail: String,
}

impl FieldError {
    fn new(type_: FieldErrorType, field: impl ToString, bad: Option<Value>, detail: &str) -> Self {
        FieldError {
            type_,
            field: field.to_string(),
            bad_value: bad,
            detail: detail.to_string(),
        }
    }

    /// `field.Required`.
    pub fn required(field: impl ToString, detail: &str) -> Self {
        Self::new(FieldErrorType::Required, field, None, detail)
    }

    /// `field.Invalid`.
    pub fn invalid(field: impl ToString, value: impl Into<Value>, detail: &str) -> Self {
        Self::new(FieldErrorType::Invalid, field, Some(value.into()), detail)
    }

    /// `field.TypeInvalid`.
    pub fn type_invalid(field: impl ToString, value: impl Into<Value>, detail: &str) -> Self {
        Self::new(
            FieldErrorType::TypeInvalid,
            field,
            Some(value.into()),
            detail,
        )
    }

    /// `field.Duplicate`.
    pub fn duplicate(field: impl ToString, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorType::Duplicate, field, Some(value.into()), "")
    }

    /// `field.NotFound`.
    pub fn not_found(field: impl ToString, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorType::NotFound, field, Some(value.into()), "")
    }

    /// `field.NotSupported`: detail `supported values: "a", "b"` (Go-quoted).
    pub fn not_supported(field: impl ToString, value: impl Into<Value>, valid: &[&str]) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            FieldErrorType::NotSupported,
            field,
            Some(value.into()),
            &detail,
        )
    }

    /// `field.Forbidden`.
    pub fn forbidden(field: impl ToString, detail: &str) -> Self {
        Self::new(FieldErrorType::Forbidden, field, None, detail)
    }

    /// `field.TooLong`: `may not be more than N bytes` (value omitted).
    pub fn too_long(field: impl ToString, max_length: usize) -> Self {
        let unit = if max_length == 1 { "byte" } else { "bytes" };
        let detail = format!("may not be more than {max_length} {unit}");
        Self::new(FieldErrorType::TooLong, field, None, &detail)
    }

    /// `field.TooMany`: `must have at most N items` (or `has too many items` without a max).
    pub fn too_many(field: impl ToString, actual: Option<usize>, max: Option<usize>) -> Self {
        let detail = match max {
            Some(m) => format!("must have at most {m} items"),
            None => "has too many items".to_string(),
        };
        Self::new(
            FieldErrorType::TooMany,
            field,
            actual.map(Value::from),
            &detail,
        )
    }

    /// `field.InternalError`.
    pub fn internal(field: impl ToString, err: &str) -> Self {
        Self::new(FieldErrorType::Internal, field, None, err)
    }

    /// `ErrorBody()`: the message without the field name (used as `StatusCause.message`).
    pub fn error_body(&self) -> String {
        let mut s = match self.type_ {
            FieldErrorType::Required
            | FieldErrorType::Forbidden
            | FieldErrorType::TooLong
            | FieldErrorType::Internal => self.type_.text().to_string(),
            _ => match &self.bad_value {
                None => self.type_.text().to_string(),
                Some(v) => format!("{}: {}", self.type_.text(), render_value(v)),
            },
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.error_body())
    }
}

impl std::error::Error for FieldError {}

/// `ErrorList.ToAggregate().Error()`: duplicates removed, one message alone, several as `[a, b]`.
/// Returns `None` for an empty list.
pub fn aggregate_message(errs: &[FieldError]) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errs {
        let m = e.to_string();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

/// Renders a bad value the way Go's `ErrorBody` does for the corresponding Go type.
fn render_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let inner: Vec<String> = items
                .iter()
                .map(|i| go_quote(i.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", inner.join(", "))
        }
        // Go's `%#v` of a `map[string]string` (keys sorted, as fmt prints maps).
        Value::Object(m) if m.values().all(Value::is_string) => {
            let mut pairs: Vec<(&String, &str)> = m
                .iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort_unstable();
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// Go's `strconv.Quote` / `%q` for a string (how upstream quotes values in messages).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_strings_match_upstream() {
        let cases: Vec<(FieldError, &str)> = vec![
            (
                FieldError::required("metadata.name", "name or generateName is required"),
                "metadata.name: Required value: name or generateName is required",
            ),
            (FieldError::required("spec", ""), "spec: Required value"),
            (
                FieldError::invalid("metadata.name", "Foo", "bad"),
                "metadata.name: Invalid value: \"Foo\": bad",
            ),
            (
                FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                FieldError::invalid("x", json!(["a", "b"]), "d"),
                "x: Invalid value: []string{\"a\", \"b\"}: d",
            ),
            (
                FieldError::invalid("x", Value::Null, "d"),
                "x: Invalid value: null: d",
            ),
            (
                FieldError::not_supported("spec.policy", "X", &["Always", "Never"]),
                "spec.policy: Unsupported value: \"X\": supported values: \"Always\", \"Never\"",
            ),
            (
                FieldError::forbidden("metadata.namespace", "not allowed on this type"),
                "metadata.namespace: Forbidden: not allowed on this type",
            ),
            (
                FieldError::too_long("metadata.annotations", 262144),
                "metadata.annotations: Too long: may not be more than 262144 bytes",
            ),
            (
                FieldError::too_many("items", Some(5), Some(3)),
                "items: Too many: 5: must have at most 3 items",
            ),
            (
                FieldError::duplicate("a[1]", "x"),
                "a[1]: Duplicate value: \"x\"",
            ),
            (FieldError::not_found("a", "x"), "a: Not found: \"x\""),
            (
                FieldError::invalid("l", json!({"b": "2", "a": "1"}), "d"),
                "l: Invalid value: map[string]string{\"a\":\"1\", \"b\":\"2\"}: d",
            ),
            (FieldError::internal("a", "boom"), "a: Internal error: boom"),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn reasons() {
        assert_eq!(FieldErrorType::Required.reason(), "FieldValueRequired");
        assert_eq!(FieldErrorType::Internal.reason(), "InternalError");
        assert_eq!(
            FieldErrorType::NotSupported.reason(),
            "FieldValueNotSupported"
        );
    }

    #[test]
    fn paths() {
        let p = Path::new("spec")
            .child("template")
            .child("spec")
            .child("containers")
            .index(0)
            .child("name");
        assert_eq!(p.to_string(), "spec.template.spec.containers[0].name");
        assert_eq!(
            Path::new("metadata").child("labels").key("app").as_str(),
            "metadata.labels[app]"
        );
        assert_eq!(Path::default().child("values").as_str(), "values");
    }

    #[test]
    fn aggregate() {
        assert_eq!(aggregate_message(&[]), None);
        let a = FieldError::required("a", "");
        let b = FieldError::required("b", "");
        assert_eq!(
            aggregate_message(std::slice::from_ref(&a)).as_deref(),
            Some("a: Required value")
        );
        assert_eq!(
            aggregate_message(&[a.clone(), b, a]).as_deref(),
            Some("[a: Required value, b: Required value]")
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(go_quote("a\"b\\c\n\u{0}"), "\"a\\\"b\\\\c\\n\\x00\"");
        assert_eq!(go_quote("héllo"), "\"héllo\"");
    }
}

//! `fieldValidation=Ignore|Warn|Strict` (upstream `handlers/create.go`, `update.go`,
//! `patch.go`): unknown and duplicate fields of a body fail the request (Strict), become
//! `Warning: 299` headers (Warn, the default when the parameter is absent), or are dropped
//! silently (Ignore). In every mode unknown fields are not stored, as decoding into upstream's
//! typed structs drops them. Detection is pure machinery (`validation::unknown_fields`).

use axum::body::Body;
use axum::response::Response;
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::unknown_fields::{self, Problem};
use ferrokube_machinery::validation::{FieldError, go_quote};
use http::{HeaderValue, header};
use serde_json::Value;

use super::{Scope, read_body};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{self, BodyFormat};

/// The field validation directive of a request.
pub use crate::registry::store::FieldValidation as Directive;

/// Reads `fieldValidation`; `options_kind` names the options type in the error
/// (`CreateOptions`, `UpdateOptions`, `PatchOptions`), as upstream's `ValidateFieldValidation`.
pub fn directive(scope: &Scope, options_kind: &str) -> ApiResult<Directive> {
    match scope.query.get("fieldValidation").unwrap_or("") {
        "" | "Warn" => Ok(Directive::Warn),
        "Ignore" => Ok(Directive::Ignore),
        "Strict" => Ok(Directive::Strict),
        other => Err(ApiError::invalid(
            "meta.k8s.io",
            options_kind,
            "",
            &[FieldError::not_supported(
                "fieldValidation",
                Value::String(other.to_string()),
                &["", "Ignore", "Strict", "Warn"],
            )],
        )),
    }
}

fn joined(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes a create/update body (like [`Scope::read_object`]) and applies the directive.
/// Returns the object, without unknown fields, and the warnings to send.
pub async fn read_object(
    scope: &Scope,
    body: Body,
    options_kind: &str,
) -> ApiResult<(Value, Vec<String>)> {
    let d = directive(scope, options_kind)?;
    let ct = scope
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = negotiate::body_format(ct)?;
    let bytes = read_body(body, scope.state.max_body_bytes).await?;
    // Upstream's wording for a body that is not JSON or names another kind.
    let mut obj = scope.decode_object(format, &bytes)?;
    // A wrongly typed body fails decoding before anything else is looked at (upstream's
    // decoder returns the type error, not the strict errors).
    crate::registry::store::type_check(&scope.handle, &mut obj)
        .map_err(|e| crate::registry::store::decode_error(&scope.handle, &e))?;
    scope.check_type(&mut obj)?;
    let info = &scope.handle.info;
    let mut problems = match (d, format) {
        (Directive::Ignore, _) | (_, BodyFormat::Protobuf) => Vec::new(),
        (_, BodyFormat::Json) => unknown_fields::check_json(info, &bytes),
        (_, BodyFormat::Yaml) => unknown_fields::check_yaml(info, &bytes),
    };
    // Fields a custom resource's schema does not know.
    let pruned = scope.handle.strategy.prune(&mut obj);
    if d != Directive::Ignore {
        problems.extend(pruned.into_iter().map(Problem::Unknown));
    }
    if d == Directive::Strict && !problems.is_empty() {
        // transformDecodeError: `<Kind> in version "<v>" cannot be handled as a <Kind>: ...`.
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
            joined(&problems),
            kind = info.kind,
            v = info.version,
        )));
    }
    unknown_fields::prune(info, &mut obj);
    Ok((obj, problems.iter().map(ToString::to_string).collect()))
}

/// The check of a patched object (upstream `jsonPatcher` / `smpPatcher`): duplicates in the
/// patch document (`json patch ` prefixed for JSON patches) and unknown fields of the result.
/// Strict fails with 422 on the `patch` field; the result is pruned in every mode.
pub fn check_patched(
    scope: &Scope,
    d: Directive,
    patch: &[u8],
    json_patch: bool,
    patched: &mut Value,
) -> ApiResult<Vec<String>> {
    let info = &scope.handle.info;
    let mut problems = Vec::new();
    if d != Directive::Ignore {
        let prefix = if json_patch { "json patch " } else { "" };
        problems.extend(
            unknown_fields::duplicates_json(patch)
                .iter()
                .map(|p| format!("{prefix}{p}")),
        );
        problems.extend(
            unknown_fields::unknown_in_value(info, patched)
                .iter()
                .map(ToString::to_string),
        );
    }
    let pruned = scope.handle.strategy.prune(patched);
    if d != Directive::Ignore {
        problems.extend(pruned.into_iter().map(|p| Problem::Unknown(p).to_string()));
    }
    if d == Directive::Strict && !problems.is_empty() {
        let value = serde_json::to_string(patched).map_err(ApiError::Encoding)?;
        let err = FieldError::invalid(
            "patch",
            Value::String(value),
            &format!("strict decoding error: {}", problems.join(", ")),
        );
        return Err(Status::invalid("", "", "", &[err]).into());
    }
    unknown_fields::prune(info, patched);
    Ok(problems)
}

/// Adds one `Warning: 299 - "<text>"` header per warning (upstream's warning recorder).
pub fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", go_quote(w))) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

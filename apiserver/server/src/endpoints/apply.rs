//! PATCH with `application/apply-patch+yaml`: server-side apply (upstream
//! `handlers/patch.go` `applyPatcher` + `fieldmanager.FieldManager.Apply`). The applied
//! configuration (YAML or JSON) is merged into the live object by
//! `machinery::managedfields::apply`, which also computes the new `metadata.managedFields` or
//! the conflicts (409). The merge is the mutation of the store's one update path; a missing
//! object is created there with every create stage. Field validation and pruning are those of
//! the other verbs.

use axum::body::Body;
use axum::response::Response;
use ferrokube_machinery::managedfields::{self, ApplyRequest, Writer};
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::FieldError;
use http::{StatusCode, header};
use serde_json::Value;

use super::{Scope, read_body};
use crate::error::{ApiError, ApiResult};
use crate::registry::store::{
    FieldValidation, ManagedFieldsMode, UpdateTarget, decode_error, now_rfc3339, type_check,
};
use ferrokube_machinery::validation::unknown_fields;

/// The apply patch media type.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// True when the request is an apply patch.
pub fn is_apply(scope: &Scope) -> bool {
    scope
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|e| e.trim().eq_ignore_ascii_case(APPLY_PATCH))
}

/// `force` is only for apply patches (upstream `ValidatePatchOptions`).
pub fn check_non_apply(scope: &Scope) -> ApiResult<()> {
    if scope.query.get("force").is_some() {
        return Err(invalid_options(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        )));
    }
    Ok(())
}

fn invalid_options(err: FieldError) -> ApiError {
    ApiError::invalid("meta.k8s.io", "PatchOptions", "", &[err])
}

fn parse_config(bytes: &[u8]) -> ApiResult<Value> {
    let v = ferrokube_machinery::decode::parse_json_or_yaml(bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: the applied configuration is not an object",
        ));
    }
    Ok(v)
}

/// Unknown and duplicate fields of the applied configuration, treated by `fieldValidation` as
/// for the other verbs: Strict refuses them (400, the decoder's strict message), Warn returns
/// them as warnings; in every mode unknown fields are pruned before the merge, so they are
/// never stored nor owned.
fn check_fields(
    scope: &Scope,
    validation: FieldValidation,
    raw: &[u8],
    config: &mut Value,
) -> ApiResult<Vec<String>> {
    let info = &scope.handle.info;
    let mut problems = match validation {
        FieldValidation::Ignore => Vec::new(),
        _ if serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_ok() => {
            unknown_fields::check_json(info, raw)
        }
        _ => unknown_fields::check_yaml(info, raw),
    };
    // Fields a custom resource's schema does not know.
    let pruned = scope.handle.strategy.prune(config);
    if validation != FieldValidation::Ignore {
        problems.extend(pruned.into_iter().map(unknown_fields::Problem::Unknown));
    }
    if validation == FieldValidation::Strict && !problems.is_empty() {
        let joined: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
            joined.join(", "),
            kind = info.kind,
            v = info.version,
        )));
    }
    unknown_fields::prune(info, config);
    Ok(problems.iter().map(ToString::to_string).collect())
}

/// Handles an apply patch of the object or its status: the merge is the mutation of the
/// store's one update path, so a lost race re-applies to the new live object, and a missing
/// object is created with every create stage.
pub async fn apply(scope: &Scope, body: Body) -> ApiResult<Response> {
    let validation = super::field_validation::directive(scope, "PatchOptions")?;
    let manager = match scope.query.get("fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => {
            return Err(invalid_options(FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )));
        }
    };
    if manager.chars().count() > 128 {
        return Err(invalid_options(FieldError::too_long("fieldManager", 128)));
    }
    let force = scope.query.flag("force");
    let raw = read_body(body, scope.state.max_body_bytes).await?;
    let mut opts = scope.write_options(validation, raw.len())?;
    opts.field_manager = manager.clone();
    opts.managed_fields = ManagedFieldsMode::Applied;
    let mut config = parse_config(&raw)?;
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    scope.check_type(&mut config)?;
    let h = &scope.handle;
    type_check(h, &mut config).map_err(|e| decode_error(h, &e))?;
    let warnings = check_fields(scope, validation, &raw, &mut config)?;
    let name = &scope.info.name;
    match config.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if n == name => {}
        Some("") | None => {
            if let Some(m) = config.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("name".into(), Value::String(name.clone()));
            }
        }
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    let target = opts.subresource;
    let info = &h.info;
    let t = crate::registry::managed::node_type(h, true);
    let api_version = info.api_version();
    let pinned = config
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    // What the stored object would look like on create (defaulted list keys).
    let mut defaulted = config.clone();
    ferrokube_machinery::defaults::apply_own(&mut defaulted);
    h.strategy.prepare_for_create(&mut defaulted);
    let (out, created) = scope
        .state
        .store
        .update(
            h,
            &scope.info.namespace,
            name,
            |live| {
                if live.is_none() && (pinned || target != UpdateTarget::Main) {
                    return Err(Status::not_found(&info.group, &info.plural, name).into());
                }
                let now = now_rfc3339();
                let req = ApplyRequest {
                    writer: Writer {
                        manager: &manager,
                        api_version: &api_version,
                        subresource: target.subresource(),
                        now: &now,
                    },
                    force,
                    has_status: h.has_status(),
                    defaulted: Some(&defaulted),
                };
                managedfields::apply(live, config.clone(), &t, &req)
                    .map_err(|c| ApiError::from(c.to_status()))
            },
            &opts,
        )
        .await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let resp = scope.object_response(code, &out)?;
    let warnings = [warnings, opts.warnings.take()].concat();
    Ok(super::field_validation::with_warnings(resp, &warnings))
}

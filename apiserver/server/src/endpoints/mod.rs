//! Resource handlers, one file per verb (upstream `pkg/endpoints/handlers`). Each handler is a
//! linear pipeline: negotiate → read and decode the body → generic store → encode the response.

mod apply;
mod binding;
mod create;
mod decode_error;
mod delete;
mod eviction;
mod field_validation;
mod get;
mod list;
mod patch;
mod scale;
mod update;
pub mod watch;

pub use field_validation::with_warnings;

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferrokube_machinery::request_info::RequestInfo;
use ferrokube_machinery::status::Status;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{self, IncludeObject, Output};
use crate::registry::ResourceHandle;
use crate::registry::store::{FieldValidation, ListOptions, UpdateTarget, WriteOptions};
use crate::table;

/// Everything a resource handler needs about its request, parsed once.
pub struct Scope {
    pub state: Arc<AppState>,
    pub handle: Arc<ResourceHandle>,
    pub info: RequestInfo,
    pub query: Query,
    pub headers: HeaderMap,
    /// The request's HTTP version (a watch over HTTP/2 is served by its stream's task).
    pub http_version: http::Version,
    pub user: crate::UserInfo,
    /// Warnings for the response (admission webhooks).
    pub warnings: crate::registry::request::Warnings,
}

/// Decoded query parameters.
#[derive(Default, Debug)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(q: Option<&str>) -> Self {
        Query(
            q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    /// The first value of a parameter.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    /// `dryRun=All` (400 for any other value, as upstream).
    pub fn dry_run(&self) -> ApiResult<bool> {
        let mut dry = false;
        for (k, v) in &self.0 {
            if k == "dryRun" {
                if v != "All" {
                    return Err(ApiError::bad_request(format!(
                        "Invalid dry run value: \"{v}\": supported values: \"All\""
                    )));
                }
                dry = true;
            }
        }
        Ok(dry)
    }

    /// The list/watch options.
    pub fn list_options(&self) -> ApiResult<ListOptions> {
        use ferrokube_machinery::selectors::{FieldSelector, LabelSelector};
        let label_selector = match self.get("labelSelector") {
            Some(s) => LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            None => LabelSelector::default(),
        };
        let field_selector = match self.get("fieldSelector") {
            Some(s) => FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => FieldSelector::default(),
        };
        let limit = match self.get("limit") {
            Some(l) if !l.is_empty() => l
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit \"{l}\"")))?
                .max(0) as usize,
            _ => 0,
        };
        Ok(ListOptions {
            label_selector,
            field_selector,
            limit,
            continue_token: self.get("continue").map(str::to_string),
            resource_version: self.get("resourceVersion").map(str::to_string),
            resource_version_match: self
                .get("resourceVersionMatch")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }

    /// `includeObject` for tables.
    pub fn include_object(&self) -> IncludeObject {
        match self.get("includeObject") {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

impl Scope {
    /// The negotiated output form.
    pub fn output(&self) -> ApiResult<Output> {
        negotiate::negotiate(
            self.headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        )
    }

    /// The writer of this request: `fieldManager`, else derived from the User-Agent (upstream
    /// `prefixFromUserAgent`).
    pub fn field_manager(&self) -> String {
        match self.query.get("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => ferrokube_machinery::managedfields::manager_from_user_agent(
                self.headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            ),
        }
    }

    /// The subresource a write targets.
    pub fn update_target(&self) -> UpdateTarget {
        match self.info.subresource.as_str() {
            "status" => UpdateTarget::Status,
            "scale" => UpdateTarget::Scale,
            "finalize" => UpdateTarget::Finalize,
            _ => UpdateTarget::Main,
        }
    }

    /// The options every write passes to the store.
    pub fn write_options(
        &self,
        field_validation: FieldValidation,
        body_bytes: usize,
    ) -> ApiResult<WriteOptions> {
        Ok(WriteOptions {
            dry_run: self.query.dry_run()?,
            field_manager: self.field_manager(),
            field_validation,
            subresource: self.update_target(),
            user: self.user.clone(),
            managed_fields: Default::default(),
            body_bytes,
            warnings: self.warnings.clone(),
        })
    }

    /// The group/resource for messages.
    pub fn group(&self) -> &str {
        &self.handle.info.group
    }

    /// Decodes a create/update body and checks it against the URL.
    pub async fn read_object(&self, body: Body) -> ApiResult<Value> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let format = negotiate::body_format(ct)?;
        let bytes = read_body(body, self.state.max_body_bytes).await?;
        let mut obj = self.decode_object(format, &bytes)?;
        self.check_type(&mut obj)?;
        Ok(obj)
    }

    /// Decodes a create/update body, with upstream's messages for a body that is not JSON or
    /// names another kind than the URL's resource.
    pub fn decode_object(&self, format: negotiate::BodyFormat, bytes: &[u8]) -> ApiResult<Value> {
        let info = &self.handle.info;
        let obj = match negotiate::decode_body(format, bytes) {
            Err(_) if format == negotiate::BodyFormat::Json => {
                return Err(decode_error::unrecognized(info, bytes));
            }
            r => r?,
        };
        // Subresources with a kind of their own (TokenRequest, Binding, Eviction, Scale) are
        // checked by their handlers.
        if !matches!(self.info.subresource.as_str(), "" | "status" | "finalize") {
            return Ok(obj);
        }
        let all: Vec<&ferrokube_machinery::resources::ResourceInfo> =
            self.state.registry.all().iter().map(|h| &h.info).collect();
        match decode_error::wrong_kind(info, &all, &obj) {
            Some(e) => Err(e),
            None => Ok(obj),
        }
    }

    /// Fills in or checks apiVersion, kind and namespace against the request.
    pub fn check_type(&self, obj: &mut Value) -> ApiResult<()> {
        let info = &self.handle.info;
        let (want_av, want_kind) = match self.info.subresource.as_str() {
            "" | "status" | "finalize" => (info.api_version(), info.kind.to_string()),
            _ => return Ok(()),
        };
        let Some(map) = obj.as_object_mut() else {
            return Err(ApiError::bad_request("the body is not a JSON object"));
        };
        match map.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => {
                map.insert("apiVersion".into(), Value::String(want_av.clone()));
            }
            Some(av) if av != want_av => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
            Some(_) => {}
        }
        match map.get("kind").and_then(Value::as_str) {
            None | Some("") => {
                map.insert("kind".into(), Value::String(want_kind));
            }
            Some(k) if k != want_kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({want_kind})"
                )));
            }
            Some(_) => {}
        }
        if info.namespaced() {
            let meta = map
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()));
            let Some(meta) = meta.as_object_mut() else {
                return Err(ApiError::bad_request("metadata must be an object"));
            };
            match meta.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    meta.insert(
                        "namespace".into(),
                        Value::String(self.info.namespace.clone()),
                    );
                }
                Some(ns) if ns != self.info.namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                Some(_) => {}
            }
        } else if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut)
            && meta
                .get("namespace")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        {
            meta.remove("namespace");
        }
        Ok(())
    }

    /// Encodes one object for the client in the negotiated form.
    pub fn object_response(&self, code: StatusCode, obj: &Value) -> ApiResult<Response> {
        let out = self.output()?;
        match out {
            Output::Json => Ok(json_response(
                code,
                serde_json::to_vec(obj).map_err(ApiError::Encoding)?,
            )),
            Output::Yaml => yaml_response(code, obj),
            Output::Table(v) => {
                let mut meta = serde_json::Map::new();
                if let Some(rv) = obj.pointer("/metadata/resourceVersion") {
                    meta.insert("resourceVersion".into(), rv.clone());
                }
                let t = table::to_table(
                    &self.handle,
                    vec![obj.clone()],
                    Value::Object(meta),
                    v,
                    self.query.include_object(),
                    true,
                );
                Ok(json_response(
                    code,
                    serde_json::to_vec(&t).map_err(ApiError::Encoding)?,
                ))
            }
            Output::PartialMetadata(v) => {
                let p = table::partial_metadata(obj, v);
                Ok(json_response(
                    code,
                    serde_json::to_vec(&p).map_err(ApiError::Encoding)?,
                ))
            }
        }
    }
}

/// Reads a body of at most `limit` bytes (413 beyond).
pub async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Status::request_entity_too_large(&format!("limit is {limit}")).into())
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "error reading the request body: {e}"
        ))),
    }
}

/// A JSON response.
/// A JSON response. The body ends with a newline, as upstream's serializer writes every
/// object, list and table (`json.Encoder.Encode`).
pub fn json_response(code: StatusCode, mut body: Vec<u8>) -> Response {
    if body.last() != Some(&b'\n') {
        body.push(b'\n');
    }
    raw_json_response(code, body)
}

/// A JSON response written as is (upstream's `WriteRawJSON`, e.g. `/version`: no newline).
pub fn raw_json_response(code: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn yaml_response(code: StatusCode, obj: &Value) -> ApiResult<Response> {
    let s = serde_yaml::to_string(obj).map_err(ApiError::internal)?;
    let mut r = (code, s).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    Ok(r)
}

/// Serves a resource request (the router has found the resource).
pub async fn serve(scope: Scope, body: Body) -> Response {
    let verb = scope.info.verb.clone();
    let sub = scope.info.subresource.clone();
    let handle = scope.handle.clone();
    let allowed = if sub.is_empty() {
        handle.info.has_verb(&verb)
    } else {
        handle
            .info
            .subresource(&sub)
            .is_some_and(|s| s.verbs.contains(&verb.as_str()))
    };
    if !allowed {
        let resource = if sub.is_empty() {
            handle.info.plural.to_string()
        } else {
            format!("{}/{sub}", handle.info.plural)
        };
        return ApiError::from(Status::method_not_supported(
            &handle.info.group,
            &resource,
            &verb,
        ))
        .into_response();
    }
    dispatch(scope, body, &sub, &verb)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The POST/PUT subresources answered outside the generic store: `serviceaccounts/token`
/// (TokenRequest) and `certificatesigningrequests/approval`.
async fn subresource_create(scope: &Scope, body: Body, options: &str) -> ApiResult<Response> {
    // A TokenRequest is not a ServiceAccount: no ServiceAccount field pruning for it.
    let (obj, warnings) = if scope.info.subresource == "token" {
        (scope.read_object(body).await?, Vec::new())
    } else {
        field_validation::read_object(scope, body, options).await?
    };
    let (code, out) = if scope.info.subresource == "token" {
        let out = crate::auth::serviceaccount::token_request(
            &scope.state,
            &scope.handle,
            &scope.info.namespace,
            &scope.info.name,
            obj,
        )
        .await?;
        (StatusCode::CREATED, out)
    } else {
        update::check_name(scope, &obj)?;
        (
            StatusCode::OK,
            crate::auth::csr::update_approval(scope, obj).await?,
        )
    };
    let resp = scope.object_response(code, &out)?;
    Ok(field_validation::with_warnings(resp, &warnings))
}

async fn dispatch(scope: Scope, body: Body, sub: &str, verb: &str) -> ApiResult<Response> {
    let handle = scope.handle.clone();
    match (sub, verb) {
        ("scale", "get") => scale::get(&scope).await,
        ("scale", "update") => scale::update(&scope, body).await,
        ("scale", "patch") => patch::patch_scale(&scope, body).await,
        ("" | "status", "get") => get::get(&scope).await,
        ("", "list") => list::list(&scope).await,
        ("", "watch") => watch::watch(&scope).await,
        ("", "create") => create::create(&scope, body).await,
        ("" | "status", "update") => update::update(&scope, body).await,
        ("" | "status", "patch") if apply::is_apply(&scope) => apply::apply(&scope, body).await,
        ("" | "status", "patch") => {
            apply::check_non_apply(&scope)?;
            patch::patch(&scope, body).await
        }
        ("", "delete") => delete::delete(&scope, body).await,
        ("", "deletecollection") => delete::delete_collection(&scope, body).await,
        ("finalize", "update") => delete::finalize(&scope, body).await,
        ("binding", "create") => binding::create(&scope, body).await,
        ("eviction", "create") => eviction::create(&scope, body).await,
        ("token", "create") => subresource_create(&scope, body, "TokenRequest").await,
        ("approval", "update") => subresource_create(&scope, body, "UpdateOptions").await,
        _ => Err(ApiError::from(Status::method_not_supported(
            &handle.info.group,
            &format!("{}/{sub}", handle.info.plural),
            verb,
        ))),
    }
}

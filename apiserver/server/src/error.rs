//! Every error a client sees: typed errors mapped to a `metav1.Status` in exactly one place
//! ([`ApiError::into_response`]) — DESIGN invariant 6.

use axum::response::{IntoResponse, Response};
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::FieldError;
use ferrokube_storage::StorageError;
use http::{HeaderValue, StatusCode, header};

/// What went wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A ready-made Kubernetes Status (the common case: the caller knows the reason).
    #[error("{}", .0.message)]
    Status(Box<Status>),
    /// The storage backend failed in a way the caller did not translate.
    #[error("storage: {0}")]
    Storage(#[source] StorageError),
    /// JSON (de)serialization failed inside the server (not the client's input).
    #[error("internal encoding error: {0}")]
    Encoding(#[source] serde_json::Error),
}

/// Result of request-path operations.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError::Status(Box::new(s))
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::Storage(e)
    }
}

impl ApiError {
    /// 400 BadRequest with a message.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Status::bad_request(&msg.into()).into()
    }

    /// 500 InternalError with a message.
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Status::internal_error(&msg.to_string()).into()
    }

    /// An admission webhook denied the request (upstream `webhookerrors.ToStatusErr`): its
    /// status (code 403 unless it gave one) with `admission webhook "x" denied the request:`
    /// and the `<resource> "<name>" is forbidden:` prefix (`Internal error occurred:` for 500).
    pub fn webhook_denied(
        group: &str,
        resource: &str,
        name: &str,
        webhook: &str,
        result: Option<serde_json::Value>,
    ) -> Self {
        let mut s = crate::admission::webhook::denial_status(result);
        let name = if name.is_empty() { "Unknown" } else { name };
        let denied_by = format!("admission webhook {webhook:?} denied the request");
        let msg = if !s.message.is_empty() {
            format!("{denied_by}: {}", s.message)
        } else if !s.reason.is_empty() {
            format!("{denied_by}: {}", s.reason)
        } else {
            format!("{denied_by} without explanation")
        };
        if s.details.is_none() {
            s.details = Some(ferrokube_machinery::status::StatusDetails {
                causes: if s.code == 500 {
                    vec![ferrokube_machinery::status::StatusCause {
                        message: msg.clone(),
                        ..Default::default()
                    }]
                } else {
                    Vec::new()
                },
                group: if s.code == 500 {
                    String::new()
                } else {
                    group.to_string()
                },
                kind: if s.code == 500 {
                    String::new()
                } else {
                    resource.to_string()
                },
                name: if s.code == 500 {
                    String::new()
                } else {
                    name.to_string()
                },
                ..Default::default()
            });
        }
        let gr = if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        };
        s.message = if s.code == 500 {
            format!("Internal error occurred: {msg}")
        } else {
            format!("{gr} {name:?} is forbidden: {msg}")
        };
        if s.reason.is_empty() {
            s.reason = if s.code == 500 {
                "InternalError"
            } else {
                "Forbidden"
            }
            .to_string();
        }
        s.into()
    }

    /// A webhook could not be called or answered garbage, under `failurePolicy: Fail`
    /// (upstream `ErrCallingWebhook` → `NewInternalError`).
    pub fn webhook_call_failed(webhook: &str, e: &dyn std::fmt::Display) -> Self {
        Status::internal_error(&format!("failed calling webhook {webhook:?}: {e}")).into()
    }

    /// A dry-run request met a webhook with side effects (upstream
    /// `NewDryRunUnsupportedErr`).
    pub fn webhook_dry_run_unsupported(webhook: &str) -> Self {
        Status::bad_request(&format!(
            "admission webhook {webhook:?} does not support dry run"
        ))
        .into()
    }

    /// 422 Invalid from field errors.
    pub fn invalid(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Self {
        Status::invalid(group, kind, name, errs).into()
    }

    /// The HTTP status code the client sees.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::Status(s) => s.code,
            other => other.to_status().code,
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            ApiError::Status(s) => Some(s.reason.as_str()),
            _ => None,
        }
    }

    /// 409 Conflict (a lost compare-and-swap or a failed precondition; kube-rs `is_conflict`
    /// also counts AlreadyExists, which has [`Self::is_already_exists`] here).
    pub fn is_conflict(&self) -> bool {
        match self {
            ApiError::Storage(StorageError::Conflict { .. }) => true,
            _ => self.code() == 409 && self.reason() == Some("Conflict"),
        }
    }

    /// 409 AlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        match self {
            ApiError::Storage(StorageError::AlreadyExists { .. }) => true,
            _ => self.code() == 409 && self.reason() == Some("AlreadyExists"),
        }
    }

    /// 404 NotFound.
    pub fn is_not_found(&self) -> bool {
        match self {
            ApiError::Storage(StorageError::NotFound { .. }) => true,
            _ => self.code() == 404,
        }
    }

    /// Translates a storage error that concerns one named object of a resource.
    pub fn from_storage(e: StorageError, group: &str, resource: &str, name: &str) -> Self {
        match e {
            StorageError::NotFound { .. } => Status::not_found(group, resource, name).into(),
            StorageError::AlreadyExists { .. } => {
                Status::already_exists(group, resource, name).into()
            }
            StorageError::Conflict { .. } => Status::conflict(
                group,
                resource,
                name,
                ferrokube_machinery::status::OPTIMISTIC_LOCK_ERROR_MSG,
            )
            .into(),
            other => ApiError::Storage(other),
        }
    }

    /// The Status this error shows the client.
    pub fn to_status(&self) -> Status {
        match self {
            ApiError::Status(s) => (**s).clone(),
            ApiError::Storage(StorageError::Compacted {
                requested,
                compacted,
            }) => Status::expired(&format!(
                "too old resource version: {requested} ({compacted})"
            )),
            ApiError::Storage(StorageError::FutureRevision { requested, current }) => {
                let mut s = Status::timeout(
                    &format!("Too large resource version: {requested}, current: {current}"),
                    1,
                );
                if let Some(d) = s.details.as_mut() {
                    d.causes.push(ferrokube_machinery::status::StatusCause {
                        reason: "ResourceVersionTooLarge".into(),
                        message: "Too large resource version".into(),
                        field: String::new(),
                    });
                }
                s
            }
            // Upstream answers a storage deadline (etcd without quorum) with 504 Timeout.
            ApiError::Storage(StorageError::Unavailable(msg)) => Status::timeout(
                &format!("request did not complete within requested timeout - {msg}"),
                1,
            ),
            ApiError::Storage(e) => Status::internal_error(&e.to_string()),
            ApiError::Encoding(e) => Status::internal_error(&e.to_string()),
        }
    }
}

/// Renders a Status as an HTTP response with its code. The body ends with a newline, as
/// upstream's JSON encoder (`json.Encoder.Encode`) writes it.
pub fn status_response(status: &Status) -> Response {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = status.to_json();
    body.push(b'\n');
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = status
        .details
        .as_ref()
        .map(|d| d.retry_after_seconds)
        .filter(|s| *s > 0)
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.to_status();
        if status.code >= 500 {
            tracing::warn!(error = %self, code = status.code, "request failed");
        }
        status_response(&status)
    }
}

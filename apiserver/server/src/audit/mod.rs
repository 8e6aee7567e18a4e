//! Auditing (upstream `k8s.io/apiserver/pkg/audit` and `endpoints/filters/audit.go`):
//! `--audit-policy-file` decides per request a [`Level`]; the [`filter`] (placed after
//! authentication, as upstream) builds the `audit.k8s.io/v1` event, lets the later filters,
//! handlers and admission plugins add to it through the request's [`AuditHandle`]
//! (impersonated user, authorization decision, admission annotations) and hands one event per
//! stage to the log backend ([`log`]). Without a policy and a log path there is no auditor and
//! the filter passes requests straight through.

pub mod event;
pub mod log;
pub mod policy;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferrokube_machinery::request_info::RequestInfo;
use futures::FutureExt;
use http::header;
use http_body_util::BodyExt;
use serde_json::{Value, json};

pub use event::Event;
use event::{EventUser, ObjectRef, micro_time, strip_managed_fields};
pub use policy::{Level, Policy, Stage};

use crate::options::ServerOptions;
use crate::{AppState, UserInfo};

/// The request's audit ID (the `Audit-ID` header), set for every request by the outermost
/// filters.
#[derive(Clone, Debug)]
pub struct AuditId(pub String);

/// The client's address, put in the extensions by the connection.
#[derive(Clone, Copy, Debug)]
pub struct RemoteAddr(pub IpAddr);

/// The longest client-given `Audit-ID` accepted; a longer or non-printable one is replaced.
const MAX_AUDIT_ID: usize = 128;
/// Upstream's `maxUserAgentLength`.
const MAX_USER_AGENT: usize = 1024;
/// X-Forwarded-For entries read at most.
const MAX_FORWARDED: usize = 16;

impl AuditId {
    /// The client's `Audit-ID` header when it is sane, else a new UUID (upstream
    /// `WithAuditInit`).
    pub fn from_headers(h: &http::HeaderMap) -> AuditId {
        let given = h
            .get("Audit-ID")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| {
                !v.is_empty() && v.len() <= MAX_AUDIT_ID && v.bytes().all(|b| b.is_ascii_graphic())
            });
        AuditId(given.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string))
    }
}

/// The configured auditor: policy plus log backend.
pub struct Auditor {
    policy: Policy,
    sink: log::LogSink,
}

impl Auditor {
    /// From the `--audit-*` flags: `None` unless both a policy file and a log path are given
    /// (upstream records nothing without either).
    pub fn from_options(opts: &ServerOptions) -> anyhow::Result<Option<Arc<Auditor>>> {
        let (Some(policy_file), Some(path)) = (&opts.audit_policy_file, &opts.audit_log_path)
        else {
            if opts.audit_log_path.is_some() {
                tracing::info!("no audit policy file provided, no events will be recorded");
            }
            return Ok(None);
        };
        let text = std::fs::read_to_string(policy_file)
            .with_context(|| format!("reading {}", policy_file.display()))?;
        let policy = Policy::parse(&text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("loading audit policy file {}", policy_file.display()))?;
        let format = match opts.audit_log_format.as_str() {
            "json" => log::Format::Json,
            "legacy" => log::Format::Legacy,
            f => {
                anyhow::bail!("invalid audit log format {f:?}, allowed formats are \"json,legacy\"")
            }
        };
        let mode = match opts.audit_log_mode.as_str() {
            "blocking" | "blocking-strict" => log::Mode::Blocking,
            "batch" => log::Mode::Batch,
            m => anyhow::bail!(
                "invalid audit log mode {m:?}, allowed modes are \"batch,blocking,blocking-strict\""
            ),
        };
        let sink = log::LogSink::start(log::LogConfig {
            path: (path.as_os_str() != "-").then(|| path.clone()),
            max_size_mb: opts.audit_log_maxsize,
            max_backups: opts.audit_log_maxbackup,
            max_age_days: opts.audit_log_maxage,
            format,
            mode,
            buffer: opts.audit_log_batch_buffer_size,
        })
        .context("starting the audit log")?;
        tracing::info!(path = %path.display(), "audit logging enabled");
        Ok(Some(Arc::new(Auditor { policy, sink })))
    }
}

/// What later filters, handlers and admission add to a request's event.
#[derive(Default)]
struct Additions {
    annotations: BTreeMap<String, String>,
    impersonated: Option<EventUser>,
}

/// A request's audit context, in its extensions when the request is audited (level above
/// None). Cheap to clone.
#[derive(Clone)]
pub struct AuditHandle(Arc<Mutex<Additions>>);

/// Bytes of annotations one event carries at most (values are cut beyond it).
const MAX_ANNOTATION_BYTES: usize = 64 * 1024;

impl AuditHandle {
    /// Adds an annotation; the first value of a key wins, as upstream.
    pub fn annotate(&self, key: &str, value: &str) {
        if let Ok(mut a) = self.0.lock() {
            let used: usize = a.annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
            if used + key.len() + value.len() > MAX_ANNOTATION_BYTES {
                return;
            }
            a.annotations
                .entry(key.to_string())
                .or_insert_with(|| value.to_string());
        }
    }

    /// Records the user the request acts as (impersonation).
    pub fn set_impersonated(&self, u: &UserInfo) {
        if let Ok(mut a) = self.0.lock() {
            a.impersonated = Some(EventUser::from(u));
        }
    }

    fn fill(&self, e: &mut Event) {
        if let Ok(a) = self.0.lock() {
            e.annotations = a.annotations.clone();
            e.impersonated_user = a.impersonated.clone();
        }
    }
}

/// Long-running requests get a `ResponseStarted` event when the headers go out and
/// `ResponseComplete` when the body ends.
fn is_long_running(info: &RequestInfo) -> bool {
    matches!(info.verb.as_str(), "watch" | "proxy")
        || matches!(
            info.subresource.as_str(),
            "log" | "exec" | "attach" | "portforward" | "proxy"
        )
}

/// The audit filter (upstream `WithAudit`). Without an audit policy it only passes the
/// request on: the auditing future (events, captured bodies) is a separate, boxed one, so
/// that it does not size every request's future.
pub async fn filter(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(auditor) = state.audit.clone() else {
        return next.run(req).await;
    };
    Box::pin(audited(state, auditor, req, next)).await
}

/// [`filter`] with an audit policy.
async fn audited(
    state: Arc<AppState>,
    auditor: Arc<Auditor>,
    req: Request,
    next: Next,
) -> Response {
    let (Some(user), Some(info)) = (
        req.extensions().get::<UserInfo>(),
        req.extensions().get::<RequestInfo>(),
    ) else {
        return next.run(req).await;
    };
    let cfg = auditor
        .policy
        .evaluate(&policy::PolicyAttributes { user, info });
    if cfg.level == Level::None {
        return next.run(req).await;
    }
    let info = info.clone();
    let mut ev = new_event(&req, &info, cfg.level);
    let received = jiff::Timestamp::now();
    ev.request_received_timestamp = micro_time(received);

    let wants_body = cfg.level >= Level::Request || info.verb == "create";
    let (mut req, early) = if wants_body && has_body(req.method()) {
        capture_request(req, &state, &info, &mut ev, &cfg).await
    } else {
        (req, None)
    };
    let handle = AuditHandle(Arc::default());
    req.extensions_mut().insert(handle.clone());

    let emit = |mut e: Event, stage: Stage| {
        let auditor = auditor.clone();
        let handle = handle.clone();
        let omitted = cfg.omit_stages.contains(&stage);
        async move {
            if omitted {
                return;
            }
            e.stage = stage.as_str();
            e.stage_timestamp = micro_time(jiff::Timestamp::now());
            handle.fill(&mut e);
            auditor.sink.send(Box::new(e)).await;
        }
    };
    emit(ev.clone(), Stage::RequestReceived).await;

    let resp = match early {
        Some(r) => r,
        None => match AssertUnwindSafe(next.run(req)).catch_unwind().await {
            Ok(r) => r,
            Err(panic) => {
                let mut e = ev;
                e.response_status = Some(json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": "APIServer panic'd",
                    "reason": "InternalError",
                    "code": 500,
                }));
                emit(e, Stage::Panic).await;
                std::panic::resume_unwind(panic);
            }
        },
    };
    let code = resp.status().as_u16();
    if is_long_running(&info) && code < 300 {
        ev.response_status = Some(json!({"metadata": {}, "code": code}));
        emit(ev.clone(), Stage::ResponseStarted).await;
        let guard = CompleteOnDrop {
            ev: Some(ev),
            auditor: auditor.clone(),
            handle: handle.clone(),
            omitted: cfg.omit_stages.contains(&Stage::ResponseComplete),
        };
        return resp.map(|inner| crate::serve::GuardedBody::wrap(inner, guard));
    }
    let capture = cfg.level == Level::RequestResponse || code >= 400;
    let resp = if capture && is_json(resp.headers()) {
        let (parts, body) = resp.into_parts();
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                tracing::warn!(error = %e, "reading a response body for the audit log");
                bytes::Bytes::new()
            }
        };
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        ev.response_status = Some(response_status(code, parsed.as_ref()));
        if cfg.level == Level::RequestResponse
            && let Some(mut v) = parsed
        {
            if cfg.omit_managed_fields {
                strip_managed_fields(&mut v);
            }
            ev.response_object = Some(v);
        }
        Response::from_parts(parts, Body::from(bytes))
    } else {
        ev.response_status = Some(json!({"metadata": {}, "code": code}));
        resp
    };
    emit(ev, Stage::ResponseComplete).await;
    resp
}

/// Upstream `WithFailedAuthenticationAudit`: a request refused with 401 gets one event at
/// `ResponseStarted` (no user; the policy evaluated for the empty user), its status naming
/// the credentials that were tried.
/// Returns the write to await (the request is not held across it).
pub fn failed_authentication(
    state: &AppState,
    req: &Request,
    peer_cert: bool,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let auditor = state.audit.clone()?;
    let info = req.extensions().get::<RequestInfo>()?;
    let nobody = UserInfo::default();
    let cfg = auditor.policy.evaluate(&policy::PolicyAttributes {
        user: &nobody,
        info,
    });
    if cfg.level == Level::None || cfg.omit_stages.contains(&Stage::ResponseStarted) {
        return None;
    }
    let mut ev = new_event(req, info, cfg.level);
    let now = micro_time(jiff::Timestamp::now());
    ev.request_received_timestamp = now.clone();
    ev.stage_timestamp = now;
    ev.stage = Stage::ResponseStarted.as_str();
    ev.response_status = Some(json!({
        "metadata": {},
        "message": auth_methods(req, peer_cert),
        "code": 401,
    }));
    Some(async move { auditor.sink.send(Box::new(ev)).await })
}

/// Upstream `getAuthMethods`.
fn auth_methods(req: &Request, peer_cert: bool) -> String {
    let mut methods = Vec::new();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let scheme = auth.split(' ').next().unwrap_or("");
    if scheme.eq_ignore_ascii_case("basic") {
        methods.push("basic");
    }
    if auth.split(' ').count() > 1 && scheme.eq_ignore_ascii_case("bearer") {
        methods.push("bearer");
    }
    let access_token = req.uri().query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "access_token" && !v.trim().is_empty())
    });
    if access_token {
        methods.push("access_token");
    }
    if peer_cert {
        methods.push("x509");
    }
    if methods.is_empty() {
        "Authentication failed, no credentials provided".into()
    } else {
        format!("Authentication failed, attempted: {}", methods.join(", "))
    }
}

fn has_body(m: &http::Method) -> bool {
    matches!(
        *m,
        http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE
    )
}

fn is_json(h: &http::HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// `responseStatus`: the Status the client got (without kind/apiVersion), else just the code.
fn response_status(code: u16, body: Option<&Value>) -> Value {
    match body {
        Some(Value::Object(m)) if m.get("kind").and_then(Value::as_str) == Some("Status") => {
            let mut s = serde_json::Map::new();
            s.insert("metadata".into(), json!({}));
            for k in ["status", "message", "reason", "details"] {
                if let Some(v) = m.get(k) {
                    s.insert(k.into(), v.clone());
                }
            }
            s.insert("code".into(), json!(code));
            Value::Object(s)
        }
        _ => json!({"metadata": {}, "code": code}),
    }
}

/// Reads the (bounded) request body once: it completes `objectRef` of a create and becomes
/// `requestObject` at level Request and above. A body over the limit is answered here with the
/// handler's 413.
async fn capture_request(
    req: Request,
    state: &AppState,
    info: &RequestInfo,
    ev: &mut Event,
    cfg: &policy::RequestAuditConfig,
) -> (Request, Option<Response>) {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (parts, body) = req.into_parts();
    let bytes = match crate::endpoints::read_body(Body::new(body), state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return (
                Request::from_parts(parts, Body::empty()),
                Some(e.into_response()),
            );
        }
    };
    // JSON, YAML and protobuf bodies decode as the handler decodes them (bounded); patches
    // (JSON of their own kinds) parse as JSON; anything else is not recorded.
    let decoded = match crate::negotiate::body_format(content_type.as_deref()) {
        Ok(format) => crate::negotiate::decode_body(format, &bytes).ok(),
        Err(_) => serde_json::from_slice::<Value>(&bytes).ok(),
    };
    if let Some(mut v) = decoded {
        if info.verb == "create"
            && let Some(r) = ev.object_ref.as_mut()
        {
            let meta = v.get("metadata");
            let field = |k: &str| {
                meta.and_then(|m| m.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            if r.name.is_empty() {
                r.name = field("name");
            }
            if r.namespace.is_empty() {
                r.namespace = field("namespace");
            }
        }
        if cfg.level >= Level::Request {
            if cfg.omit_managed_fields {
                strip_managed_fields(&mut v);
            }
            ev.request_object = Some(v);
        }
    }
    (Request::from_parts(parts, Body::from(bytes)), None)
}

/// The event as of `RequestReceived` (upstream `NewEventFromRequest`).
fn new_event(req: &Request, info: &RequestInfo, level: Level) -> Event {
    let audit_id = req
        .extensions()
        .get::<AuditId>()
        .map(|a| a.0.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let user = req
        .extensions()
        .get::<UserInfo>()
        .map(EventUser::from)
        .unwrap_or_default();
    let object_ref = info.is_resource_request.then(|| ObjectRef {
        resource: info.resource.clone(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        api_group: info.api_group.clone(),
        api_version: info.api_version.clone(),
        subresource: info.subresource.clone(),
        ..ObjectRef::default()
    });
    Event {
        kind: "Event",
        api_version: "audit.k8s.io/v1",
        level: level.as_str(),
        audit_id,
        stage: Stage::RequestReceived.as_str(),
        request_uri: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        verb: info.verb.clone(),
        user,
        impersonated_user: None,
        source_ips: source_ips(req),
        user_agent: user_agent(req.headers()),
        object_ref,
        response_status: None,
        request_object: None,
        response_object: None,
        request_received_timestamp: String::new(),
        stage_timestamp: String::new(),
        annotations: BTreeMap::new(),
    }
}

/// Upstream `utilnet.SourceIPs`: X-Forwarded-For, then X-Real-Ip, then the peer, without
/// repeats.
fn source_ips(req: &Request) -> Vec<String> {
    let mut ips: Vec<IpAddr> = Vec::new();
    let h = req.headers();
    if let Some(xff) = h.get("X-Forwarded-For").and_then(|v| v.to_str().ok()) {
        ips.extend(
            xff.split(',')
                .take(MAX_FORWARDED)
                .filter_map(|s| s.trim().parse::<IpAddr>().ok()),
        );
    }
    if let Some(ip) = h
        .get("X-Real-Ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    if let Some(RemoteAddr(ip)) = req.extensions().get::<RemoteAddr>()
        && !ips.contains(ip)
    {
        ips.push(*ip);
    }
    ips.iter().map(IpAddr::to_string).collect()
}

fn user_agent(h: &http::HeaderMap) -> String {
    let ua = h
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if ua.len() <= MAX_USER_AGENT {
        return ua;
    }
    let mut cut = MAX_USER_AGENT;
    while !ua.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...TRUNCATED", &ua[..cut])
}

/// Emits `ResponseComplete` of a long-running request when its body ends or is dropped.
struct CompleteOnDrop {
    ev: Option<Event>,
    auditor: Arc<Auditor>,
    handle: AuditHandle,
    omitted: bool,
}

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        let Some(mut e) = self.ev.take() else {
            return;
        };
        if self.omitted {
            return;
        }
        e.stage = Stage::ResponseComplete.as_str();
        e.stage_timestamp = micro_time(jiff::Timestamp::now());
        self.handle.fill(&mut e);
        let auditor = self.auditor.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { auditor.sink.send(Box::new(e)).await });
        }
    }
}

//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook (upstream
//! `pkg/admission/plugin/webhook/{mutating,validating}`): AdmissionReview v1 over HTTPS to the
//! endpoints that Mutating/ValidatingWebhookConfigurations name, called at the two admission
//! points of the one write path (the last mutating and the last validating plugin).
//!
//! - Matching: rules (operations, groups, versions, resources with subresources and `*`,
//!   scope) under `matchPolicy`, `namespaceSelector` (the namespace's labels; a Namespace's
//!   own), `objectSelector` (new or old object), then `matchConditions` (CEL over `object`,
//!   `oldObject`, `request`; all true to call the hook, an error follows `failurePolicy`:
//!   403 under Fail, skipped under Ignore). Configuration resources are exempt.
//! - Mutating webhooks run in order (configurations sorted by name); JSONPatch answers are
//!   applied and the result type-checked; `reinvocationPolicy: IfNeeded` hooks run once more
//!   when a later hook changed the object. Validating webhooks run concurrently.
//! - Failures: a call error (unreachable, timeout, garbage, too large) rejects the request
//!   with 500 under `failurePolicy: Fail` and is logged and skipped under `Ignore`; a denial
//!   becomes upstream's `admission webhook "x" denied the request: ...`; dry-run requests
//!   refuse hooks whose `sideEffects` are not None/NoneOnDryRun; `warnings` go back as
//!   `Warning` headers. `auditAnnotations` are accepted and ignored.

pub mod config;

use std::sync::Arc;

use base64::Engine;
use ferrokube_machinery::admission_policy::{FailurePolicy as PolicyFailure, Inputs, MatchResult};
use ferrokube_machinery::limits;
use ferrokube_machinery::status::{Status, StatusDetails};
use serde_json::{Value, json};

use self::config::{EXEMPT, FailurePolicy, Hook, HookSet, object_selected, selects_everything};
use super::context::AdmissionContext;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::{ApiError, ApiResult};
use crate::registry::{Registry, ResourceHandle, codec};
use crate::webhook_client::{CallError, WebhookClient};

/// Longest message taken from a webhook's denial.
const MAX_MESSAGE: usize = 32 * 1024;
/// Warnings taken from one answer at most.
const MAX_WARNINGS: usize = 32;

/// Why an answer could not be used (upstream's `ErrCallingWebhook` reasons).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The call itself failed.
    #[error("failed to call webhook: {0}")]
    Call(#[from] CallError),
    /// The answer was well-formed JSON but not a usable AdmissionReview.
    #[error("{0}")]
    Invalid(String),
}

/// What both plugins share: the client, the namespaces to read labels from, the served
/// versions of each resource (for `matchPolicy: Equivalent`).
pub struct Shared {
    pub client: Arc<WebhookClient>,
    ctx: Arc<AdmissionContext>,
}

impl Shared {
    /// Over the registry's resources.
    pub fn new(client: Arc<WebhookClient>, ctx: Arc<AdmissionContext>) -> Shared {
        Shared { client, ctx }
    }
}

/// The hook sets of both configuration kinds.
pub struct HookSets {
    pub mutating: Arc<HookSet>,
    pub validating: Arc<HookSet>,
}

/// Loads both configuration kinds from the watch cache and keeps them current.
pub async fn start_feeds(
    registry: &Registry,
    cache: &Arc<ferrokube_storage::watch_cache::WatchCache>,
) -> anyhow::Result<HookSets> {
    let sets = HookSets {
        mutating: Arc::new(HookSet::default()),
        validating: Arc::new(HookSet::default()),
    };
    for (plural, set) in [
        ("mutatingwebhookconfigurations", &sets.mutating),
        ("validatingwebhookconfigurations", &sets.validating),
    ] {
        let h = registry
            .get("admissionregistration.k8s.io", "v1", plural)
            .ok_or_else(|| anyhow::anyhow!("the resource table has no {plural}"))?;
        crate::auth::rbac_feed::feed(cache.clone(), h.prefix.clone(), set.clone()).await?;
    }
    Ok(sets)
}

/// The two plugins (one per configuration kind) and their hook sets.
pub struct WebhookPlugin {
    mutating: bool,
    hooks: Arc<HookSet>,
    shared: Arc<Shared>,
}

impl WebhookPlugin {
    /// The MutatingAdmissionWebhook plugin over `hooks`.
    pub fn mutating(hooks: Arc<HookSet>, shared: Arc<Shared>) -> Self {
        WebhookPlugin {
            mutating: true,
            hooks,
            shared,
        }
    }

    /// The ValidatingAdmissionWebhook plugin over `hooks`.
    pub fn validating(hooks: Arc<HookSet>, shared: Arc<Shared>) -> Self {
        WebhookPlugin {
            mutating: false,
            hooks,
            shared,
        }
    }

    /// Whether any hook could apply to a request for this resource (none configured, or an
    /// exempt resource: no). Checked before the plugin's future does any work: see `admit`.
    fn may_apply(&self, a: &Attributes<'_>) -> bool {
        let info = &a.handle.info;
        let exempt =
            info.group == "admissionregistration.k8s.io" && EXEMPT.contains(&&*info.plural);
        !exempt && !self.hooks.snapshot().is_empty()
    }

    /// The hooks that apply to this request, each with the version its rules matched.
    async fn relevant(
        &self,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> ApiResult<Vec<(Arc<Hook>, String)>> {
        if !self.may_apply(a) {
            return Ok(Vec::new());
        }
        let info = &a.handle.info;
        let hooks = self.hooks.snapshot();
        let others: Vec<&str> = self
            .shared
            .ctx
            .other_versions(a)
            .into_iter()
            .map(|h| &*h.info.version)
            .collect();
        let mut ns_labels: Option<serde_json::Map<String, Value>> = None;
        let mut out = Vec::new();
        for h in hooks.iter() {
            let Some(version) = h.matches_rules(a, &others) else {
                continue;
            };
            if !object_selected(&h.object_selector, obj, a.old) {
                continue;
            }
            let is_namespace = info.group.is_empty() && info.plural == "namespaces";
            // Cluster-scoped objects (other than namespaces) are not namespace-selected out.
            if !selects_everything(&h.namespace_selector)
                && (is_namespace || !a.namespace.is_empty())
            {
                let labels = if is_namespace {
                    config::labels_of(obj.or(a.old))
                } else {
                    if ns_labels.is_none() {
                        ns_labels = Some(self.namespace_labels(a).await?);
                    }
                    ns_labels.clone().unwrap_or_default()
                };
                if !crate::auth::rbac_feed::selector_matches(&h.namespace_selector, &labels) {
                    continue;
                }
            }
            if !self.match_conditions_pass(h, &version, a, obj).await? {
                continue;
            }
            out.push((h.clone(), version));
        }
        Ok(out)
    }

    /// Upstream `matchconditions.Matcher.Match` for one hook: every condition true (the
    /// object and the stored object in the hook's version); an evaluation error under
    /// `failurePolicy: Fail` is upstream's 403, under `Ignore` it skips the hook.
    async fn match_conditions_pass(
        &self,
        h: &Hook,
        version: &str,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> ApiResult<bool> {
        if h.match_conditions.is_empty() {
            return Ok(true);
        }
        let view = self.view(a, version);
        let new = codec::served_copy(view, obj).await?;
        let old = codec::served_copy(view, a.old).await?;
        let request = crate::admission::policy::admission_request(a, view);
        let mut inputs = Inputs::from_json(new.as_ref(), old.as_ref(), &request, None, None);
        inputs.authorizer = self.shared.ctx.authorizer(a);
        let fp = match h.failure_policy {
            FailurePolicy::Fail => PolicyFailure::Fail,
            FailurePolicy::Ignore => PolicyFailure::Ignore,
        };
        match h.match_conditions.evaluate(&inputs, fp) {
            MatchResult::Matches => Ok(true),
            MatchResult::NoMatch(_) => Ok(false),
            MatchResult::Error(e) => {
                tracing::warn!(webhook = %h.name, error = %e, "failed evaluating match conditions, failing closed");
                let info = &a.handle.info;
                Err(Status::forbidden(&info.group, &info.plural, a.name, &e).into())
            }
        }
    }

    async fn namespace_labels(
        &self,
        a: &Attributes<'_>,
    ) -> ApiResult<serde_json::Map<String, Value>> {
        Ok(config::labels_of(
            self.shared.ctx.namespace(a).await?.as_ref(),
        ))
    }

    /// The handle a hook sees the request through: the request's own, or (matchPolicy
    /// Equivalent) the matched version's.
    fn view<'h>(&'h self, a: &'h Attributes<'_>, version: &str) -> &'h ResourceHandle {
        self.shared.ctx.view(a, version)
    }

    /// Calls one hook with the object (in `view`'s version) and the stored old object.
    /// `Ok(None)`: allowed (or ignored failure); `Ok(Some(patch))`: allowed with a JSON patch
    /// (mutating only).
    async fn call(
        &self,
        h: &Hook,
        view: &ResourceHandle,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> ApiResult<Option<Value>> {
        if a.dry_run && !h.dry_run_safe() {
            return Err(ApiError::webhook_dry_run_unsupported(&h.name));
        }
        let old = match a.old {
            Some(o) => {
                let mut v = o.clone();
                codec::to_served(view, &mut v).await?;
                Some(v)
            }
            None => None,
        };
        match self.review(h, view, a, obj, old.as_ref()).await {
            Ok(Outcome::Allowed(patch)) => Ok(patch),
            Ok(Outcome::Denied(result)) => Err(ApiError::webhook_denied(
                &a.handle.info.group,
                &a.handle.info.plural,
                a.name,
                &h.name,
                result,
            )),
            Err(e) => {
                if h.failure_policy == FailurePolicy::Ignore {
                    tracing::warn!(webhook = %h.name, error = %e, "failed calling webhook, failing open");
                    Ok(None)
                } else {
                    tracing::warn!(webhook = %h.name, error = %e, "failed calling webhook, failing closed");
                    Err(ApiError::webhook_call_failed(&h.name, &e))
                }
            }
        }
    }

    async fn review(
        &self,
        h: &Hook,
        view: &ResourceHandle,
        a: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Outcome, ReviewError> {
        let client = h
            .client
            .as_ref()
            .map_err(|e| ReviewError::Call(CallError::Config(e.clone())))?;
        let uid = uuid::Uuid::new_v4().to_string();
        let body = review_request(&uid, view, a, obj, old);
        let query = format!("?timeout={}s", h.timeout.as_secs());
        let resp = self
            .shared
            .client
            .post_json(client, &query, &body, h.timeout)
            .await?;
        let r = verify_response(&uid, self.mutating, &resp)?;
        for w in r
            .get("warnings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .take(MAX_WARNINGS)
            .filter_map(Value::as_str)
        {
            a.warnings.add(limits::truncate_str(w, 1024));
        }
        if r.get("allowed").and_then(Value::as_bool) != Some(true) {
            return Ok(Outcome::Denied(r.get("status").cloned()));
        }
        if !self.mutating {
            return Ok(Outcome::Allowed(None));
        }
        let Some(patch) = r.get("patch").and_then(Value::as_str) else {
            return Ok(Outcome::Allowed(None));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .map_err(|e| ReviewError::Invalid(format!("invalid response.patch: {e}")))?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ReviewError::Invalid(format!("invalid response.patch: {e}")))?;
        Ok(Outcome::Allowed(Some(v)))
    }
}

/// A usable answer.
enum Outcome {
    /// Allowed, with the decoded JSON patch of a mutating webhook.
    Allowed(Option<Value>),
    /// Denied, with the webhook's `status`.
    Denied(Option<Value>),
}

/// `AdmissionReview` v1 request.
fn review_request(
    uid: &str,
    view: &ResourceHandle,
    a: &Attributes<'_>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Value {
    let info = &a.handle.info;
    let version = &*view.info.version;
    let op = a.operation.as_str();
    let options_kind = a.operation.options_kind();
    let mut options = json!({"kind": options_kind, "apiVersion": "meta.k8s.io/v1"});
    if a.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    let kind = json!({"group": info.group, "version": version, "kind": info.kind});
    let resource = json!({"group": info.group, "version": version, "resource": info.plural});
    let mut req = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": {"group": info.group, "version": info.version, "kind": info.kind},
        "requestResource": {"group": info.group, "version": info.version, "resource": info.plural},
        "operation": op,
        "userInfo": {
            "username": a.user.username,
            "uid": a.user.uid,
            "groups": a.user.groups,
            "extra": a.user.extra,
        },
        "object": obj.cloned().unwrap_or(Value::Null),
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": a.dry_run,
        "options": if options_kind.is_empty() { Value::Null } else { options },
    });
    let m = req.as_object_mut();
    if let Some(m) = m {
        if !a.subresource.is_empty() {
            m.insert("subResource".into(), json!(a.subresource));
            m.insert("requestSubResource".into(), json!(a.subresource));
        }
        if !a.name.is_empty() {
            m.insert("name".into(), json!(a.name));
        }
        if !a.namespace.is_empty() {
            m.insert("namespace".into(), json!(a.namespace));
        }
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

/// Upstream's `VerifyAdmissionResponse` for v1: the response, its uid, its kind, and for
/// mutating webhooks the patch and patchType together.
fn verify_response<'v>(
    uid: &str,
    mutating: bool,
    review: &'v Value,
) -> Result<&'v Value, ReviewError> {
    let Some(r) = review.get("response").filter(|r| r.is_object()) else {
        return Err(ReviewError::Invalid("webhook response was absent".into()));
    };
    let got = r.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(ReviewError::Invalid(format!(
            "expected response.uid={uid:?}, got {:?}",
            limits::truncate_str(got, 256)
        )));
    }
    let av = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    if av != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        let (g, v) = av.split_once('/').unwrap_or(("", av));
        return Err(ReviewError::Invalid(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}/{}, Kind={}",
            limits::truncate_str(g, 256),
            limits::truncate_str(v, 256),
            limits::truncate_str(kind, 256)
        )));
    }
    let has_patch = r
        .get("patch")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty());
    let patch_type = r.get("patchType").and_then(Value::as_str);
    if mutating {
        if has_patch && patch_type.is_none() {
            return Err(ReviewError::Invalid(
                "webhook returned response.patch but not response.patchType".into(),
            ));
        }
        if !has_patch && patch_type.is_some() {
            return Err(ReviewError::Invalid(
                "webhook returned response.patchType but not response.patch".into(),
            ));
        }
        if let Some(t) = patch_type
            && t != "JSONPatch"
        {
            return Err(ReviewError::Invalid(format!(
                "webhook returned invalid response.patchType of {:?}",
                limits::truncate_str(t, 256)
            )));
        }
    } else if has_patch || patch_type.is_some() {
        return Err(ReviewError::Invalid(
            "validating webhooks may not return response.patch or response.patchType".into(),
        ));
    }
    Ok(r)
}

/// The denial `status` a webhook sent, as a `Status` (bounded, code kept to 4xx/5xx).
pub fn denial_status(v: Option<Value>) -> Status {
    let mut s = Status::failure(0, "", "");
    if let Some(v) = v {
        let str_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
        s.message = limits::truncate_str(str_of("message"), MAX_MESSAGE).to_string();
        s.reason = limits::truncate_str(str_of("reason"), 256).to_string();
        s.code = v
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(0);
        if let Some(d) = v.get("details")
            && let Ok(d) = serde_json::from_value::<StatusDetails>(d.clone())
        {
            s.details = Some(d);
        }
    }
    if !(400..=599).contains(&s.code) {
        s.code = 403;
    }
    s
}

#[async_trait::async_trait]
impl AdmissionPlugin for WebhookPlugin {
    fn name(&self) -> &'static str {
        if self.mutating {
            "MutatingAdmissionWebhook"
        } else {
            "ValidatingAdmissionWebhook"
        }
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        // The calls' futures are large and `async_trait` copies the whole future into its box
        // on every request (a `memmove` in this frame was ~0.7% of a create's CPU with no
        // webhook configured): the common no-hook case returns from a small future, the rest
        // is boxed apart.
        if !self.mutating || a.operation == Operation::Delete || !self.may_apply(a) {
            return Ok(());
        }
        Box::pin(self.admit_hooks(a, obj)).await
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        // As in `admit`: the hook calls' large future only when a hook may apply.
        if self.mutating || !self.may_apply(a) {
            return Ok(());
        }
        Box::pin(self.validate_hooks(a, obj, old)).await
    }
}

impl WebhookPlugin {
    /// `admit` once a hook may apply.
    async fn admit_hooks(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        let hooks = self.relevant(a, Some(obj)).await?;
        if hooks.is_empty() {
            return Ok(());
        }
        // `obj` is in the storage form; each hook sees it in its view's served version.
        let r = &a.reinvocation;
        let plugin = self.name();
        r.begin(plugin, obj);
        for (h, version) in hooks.iter() {
            let key = h.reinvocation_key();
            if !r.runs(plugin, &key) {
                continue;
            }
            let changed = self.mutate_once(h, version, a, obj).await?;
            r.ran(plugin, &key, h.reinvoke, changed);
        }
        r.end(plugin, obj);
        Ok(())
    }

    /// `validate` once a hook may apply.
    async fn validate_hooks(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let new = (a.operation != Operation::Delete).then_some(obj);
        let hooks = self.relevant(a, new).await?;
        if hooks.is_empty() {
            return Ok(());
        }
        let _ = old;
        let mut views = Vec::with_capacity(hooks.len());
        for (h, version) in &hooks {
            let view = self.view(a, version);
            let served = match new {
                Some(o) => {
                    let mut s = o.clone();
                    codec::to_served(view, &mut s).await?;
                    Some(s)
                }
                None => None,
            };
            views.push((h, view, served));
        }
        let calls = views
            .iter()
            .map(|(h, view, served)| self.call(h, view, a, served.as_ref()));
        for r in futures::future::join_all(calls).await {
            r?;
        }
        Ok(())
    }

    /// One mutating call; applies its patch. Returns whether the object changed.
    async fn mutate_once(
        &self,
        h: &Hook,
        version: &str,
        a: &Attributes<'_>,
        stored: &mut Value,
    ) -> ApiResult<bool> {
        let view = self.view(a, version);
        let mut served = stored.clone();
        codec::to_served(view, &mut served).await?;
        let Some(patch) = self.call(h, view, a, Some(&served)).await? else {
            return Ok(false);
        };
        let mut patched = served.clone();
        ferrokube_machinery::patch::json_patch(&mut patched, &patch)
            .map_err(|e| ApiError::from(Status::internal_error(&e.to_string())))?;
        limits::check_depth(&patched, limits::MAX_DEPTH)
            .map_err(|e| ApiError::from(Status::internal_error(&e.to_string())))?;
        crate::registry::store::type_check(view, &mut patched).map_err(|e| {
            ApiError::from(Status::internal_error(&format!(
                "admission webhook {:?} returned an invalid object: {}",
                h.name,
                e.json_message()
            )))
        })?;
        if patched == served {
            return Ok(false);
        }
        codec::to_storage(view, &mut patched).await?;
        *stored = patched;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;

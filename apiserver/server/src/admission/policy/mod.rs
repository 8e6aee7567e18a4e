//! The ValidatingAdmissionPolicy plugin (upstream `pkg/admission/plugin/policy/validating` and
//! `.../policy/generic`): policies and bindings are kept from the watch cache and compiled once
//! per change ([`sets`]); each write is matched against every policy's `matchConstraints`,
//! then each of its bindings' `matchResources`, params are collected ([`params`]) and the
//! compiled policy (`machinery::admission_policy`) is evaluated per (binding, param).
//!
//! `validationActions`: `Deny` → the first denial becomes upstream's error
//! (`<resource> "<name>" is forbidden: ValidatingAdmissionPolicy '<p>' with binding '<b>'
//! denied request: <message>`, reason and code from the validation's `reason`, `Invalid`/422 by
//! default); `Warn` → a `Warning` header; `Audit` → the audit annotation
//! `validation.policy.admission.k8s.io/validation_failure`, logged (this server has no audit
//! log). Configuration errors (unknown paramKind, missing params with `Deny`) follow the
//! policy's `failurePolicy`. Status (`observedGeneration`, `typeChecking`) is written by
//! [`sets::StatusWriter`].

pub mod authz;
mod matching;
pub mod mutating;
mod params;
pub mod sets;
mod typecheck;

use std::sync::Arc;

use ferrokube_machinery::admission_policy::{Denial, Inputs};
use ferrokube_machinery::status::{Status, StatusCause};
use serde_json::{Value, json};

use self::sets::{BindingSet, PolicySet};
use super::context::AdmissionContext;
use super::webhook::config::EXEMPT;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;
use crate::registry::{ResourceHandle, codec};

/// `request` as CEL sees it (upstream `CreateAdmissionRequest`): `kind`/`resource` in the
/// matched version `view`, the request's own in `requestKind`/`requestResource`.
pub fn admission_request(a: &Attributes<'_>, view: &ResourceHandle) -> Value {
    let info = &a.handle.info;
    let op = a.operation.as_str();
    let options_kind = a.operation.options_kind();
    let mut options = json!({"kind": options_kind, "apiVersion": "meta.k8s.io/v1"});
    if a.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    json!({
        "kind": {"group": info.group, "version": view.info.version, "kind": info.kind},
        "resource": {"group": info.group, "version": view.info.version, "resource": info.plural},
        "subResource": a.subresource,
        "requestKind": {"group": info.group, "version": info.version, "kind": info.kind},
        "requestResource": {"group": info.group, "version": info.version, "resource": info.plural},
        "requestSubResource": a.subresource,
        "name": a.name,
        "namespace": a.namespace,
        "operation": op,
        "userInfo": {
            "username": a.user.username,
            "uid": a.user.uid,
            "groups": a.user.groups,
            "extra": a.user.extra,
        },
        "dryRun": a.dry_run,
        "options": if options_kind.is_empty() { Value::Null } else { options },
    })
}

/// upstream `reasonToCode`.
fn reason_to_code(reason: &str) -> u16 {
    match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// A denial with the policy and binding it came from.
struct Denied {
    policy: String,
    binding: Option<String>,
    denial: Denial,
}

/// The ValidatingAdmissionPolicy plugin.
pub struct ValidatingAdmissionPolicy {
    policies: Arc<PolicySet>,
    bindings: Arc<BindingSet>,
    ctx: Arc<AdmissionContext>,
}

impl ValidatingAdmissionPolicy {
    /// Over the sets kept by [`sets::start_feeds`].
    pub fn new(feeds: &sets::PolicyFeeds, ctx: Arc<AdmissionContext>) -> Self {
        ValidatingAdmissionPolicy {
            policies: feeds.policies.clone(),
            bindings: feeds.bindings.clone(),
            ctx,
        }
    }
}

#[async_trait::async_trait]
impl AdmissionPlugin for ValidatingAdmissionPolicy {
    fn name(&self) -> &'static str {
        "ValidatingAdmissionPolicy"
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        _old: Option<&Value>,
    ) -> ApiResult<()> {
        let info = &a.handle.info;
        if info.group == "admissionregistration.k8s.io" && EXEMPT.contains(&info.plural) {
            return Ok(());
        }
        let policies = self.policies.snapshot();
        if policies.is_empty() {
            return Ok(());
        }
        let bindings = self.bindings.snapshot();
        let authorizer = self.ctx.authorizer(a);
        let new = (a.operation != Operation::Delete).then_some(obj);
        let others = self.ctx.other_versions(a);
        let mut ns: Option<Option<Value>> = None;
        // Inputs per matched version (the object converted once).
        let mut inputs_by_version: Vec<(String, Inputs)> = Vec::new();
        let mut denied: Vec<Denied> = Vec::new();
        for p in policies.iter() {
            let pbs: Vec<&Arc<sets::BindingEntry>> = bindings
                .iter()
                .filter(|b| b.policy_name == p.name)
                .collect();
            if pbs.is_empty() {
                continue;
            }
            if ns.is_none() && matching::needs_namespace(&p.match_constraints) {
                ns = Some(self.ctx.namespace(a).await?);
            }
            let ns_ref = ns.as_ref().and_then(Option::as_ref);
            let Some(view) = matching::matches(&p.match_constraints, a, new, ns_ref, &others)
            else {
                continue;
            };
            let mut configured = false;
            for b in pbs {
                if let Some(mr) = &b.match_resources {
                    if ns.is_none() && matching::needs_namespace(mr) {
                        ns = Some(self.ctx.namespace(a).await?);
                    }
                    let ns_ref = ns.as_ref().and_then(Option::as_ref);
                    if matching::matches(mr, a, new, ns_ref, &others).is_none() {
                        continue;
                    }
                }
                let params = match params::collect(
                    &self.ctx.api,
                    p.param_kind.as_ref(),
                    b.param_ref.as_ref(),
                    a.namespace,
                )
                .await
                {
                    Ok(ps) => ps,
                    Err(e) => {
                        if p.compiled.failure_policy
                            == ferrokube_machinery::admission_policy::FailurePolicy::Fail
                        {
                            denied.push(Denied {
                                policy: p.name.clone(),
                                binding: Some(b.name.clone()),
                                denial: Denial {
                                    message: format!("failed to configure binding: {e}"),
                                    reason: None,
                                    index: 0,
                                },
                            });
                        }
                        continue;
                    }
                };
                if params.is_empty() {
                    continue;
                }
                if !configured {
                    configured = true;
                    if p.compiled.uses_namespace() {
                        if ns.is_none() {
                            ns = Some(self.ctx.namespace(a).await?);
                        }
                        // Inputs built before the namespace was read get it now.
                        if let Some(Some(n)) = &ns {
                            let v = ferrokube_machinery::cel::Value::from_json(
                                &ferrokube_machinery::admission_policy::namespace_object(n),
                            );
                            for (_, i) in inputs_by_version.iter_mut() {
                                if matches!(
                                    i.namespace_object,
                                    ferrokube_machinery::cel::Value::Null
                                ) {
                                    i.namespace_object = v.clone();
                                }
                            }
                        }
                    }
                }
                let view_handle = view.unwrap_or(a.handle);
                let version = view_handle.info.version.to_string();
                if !inputs_by_version.iter().any(|(v, _)| *v == version) {
                    let new_served = codec::served_copy(view_handle, new).await?;
                    let old_served = codec::served_copy(view_handle, a.old).await?;
                    let request = admission_request(a, view_handle);
                    let inputs = Inputs::from_json(
                        new_served.as_ref(),
                        old_served.as_ref(),
                        &request,
                        ns.as_ref().and_then(Option::as_ref),
                        None,
                    );
                    inputs_by_version.push((version.clone(), inputs));
                }
                let Some((_, base)) = inputs_by_version.iter().find(|(v, _)| *v == version) else {
                    continue;
                };
                for param in &params {
                    let mut inputs = base.clone();
                    inputs.authorizer = authorizer.clone();
                    if let Some(pv) = param {
                        inputs.params = ferrokube_machinery::cel::Value::from_json(pv);
                    }
                    let verdict = p.compiled.validate(&inputs);
                    for d in verdict.denials {
                        self.act(a, p, b, d, &mut denied);
                    }
                    for (key, value) in verdict.audit_annotations {
                        tracing::info!(
                            target: "audit",
                            annotation = %format!("{}/{key}", p.name),
                            value = %value,
                            "ValidatingAdmissionPolicy audit annotation"
                        );
                    }
                }
            }
        }
        match denied.into_iter().next() {
            None => Ok(()),
            Some(d) => Err(denial_error(a, d).into()),
        }
    }
}

impl ValidatingAdmissionPolicy {
    /// Applies the binding's `validationActions` to one denial.
    fn act(
        &self,
        a: &Attributes<'_>,
        p: &sets::PolicyEntry,
        b: &sets::BindingEntry,
        d: Denial,
        denied: &mut Vec<Denied>,
    ) {
        for action in &b.actions {
            match action.as_str() {
                "Deny" => denied.push(Denied {
                    policy: p.name.clone(),
                    binding: Some(b.name.clone()),
                    denial: d.clone(),
                }),
                "Warn" => a.warnings.add(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
                    p.name, b.name, d.message
                )),
                "Audit" => {
                    let value = json!([{
                        "message": d.message,
                        "policy": p.name,
                        "binding": b.name,
                        "expressionIndex": d.index,
                        "validationActions": b.actions,
                    }]);
                    tracing::info!(
                        target: "audit",
                        annotation = "validation.policy.admission.k8s.io/validation_failure",
                        value = %value,
                        "ValidatingAdmissionPolicy audit annotation"
                    );
                }
                _ => {}
            }
        }
    }
}

/// Upstream's error for the first denial: `admission.NewForbidden` with the reason and code
/// of the validation and the message as the one cause.
fn denial_error(a: &Attributes<'_>, d: Denied) -> Status {
    let message = match &d.binding {
        Some(b) => format!(
            "ValidatingAdmissionPolicy '{}' with binding '{b}' denied request: {}",
            d.policy, d.denial.message
        ),
        None => format!(
            "ValidatingAdmissionPolicy '{}' denied request: {}",
            d.policy, d.denial.message
        ),
    };
    let info = &a.handle.info;
    let mut st = Status::forbidden(info.group, info.plural, a.name, &message);
    let reason = d.denial.reason.unwrap_or_else(|| "Invalid".into());
    st.code = reason_to_code(&reason);
    st.reason = reason;
    if let Some(details) = st.details.as_mut() {
        details.causes.push(StatusCause {
            message,
            ..Default::default()
        });
    }
    st
}

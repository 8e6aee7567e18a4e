//! The MutatingAdmissionPolicy plugin (upstream `pkg/admission/plugin/policy/mutating`,
//! `admissionregistration.k8s.io/v1beta1`, feature gate `MutatingAdmissionPolicy`): policies
//! and bindings kept from the watch cache and compiled once per change; at the mutating
//! admission point each write is matched against every policy's `matchConstraints`, then
//! its bindings' `matchResources`, params are collected, and the compiled policy
//! (`machinery::admission_policy::mutating`) mutates the object in the matched version.
//!
//! Order: upstream runs MutatingAdmissionPolicy just before MutatingAdmissionWebhook.
//! `reinvocationPolicy: IfNeeded` policies run once more, in the chain's reinvocation pass,
//! when a later policy or plugin (a mutating webhook) changed the object
//! ([`crate::admission::reinvocation`]).
//! An error under `failurePolicy: Fail` rejects the request with upstream's
//! `<resource> "<name>" is forbidden: policy '<p>' with binding '<b>' denied request: <e>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrokube_machinery::admission_policy::Inputs;
use ferrokube_machinery::admission_policy::mutating::{Applied, CompiledMutatingPolicy};
use serde_json::{Value, json};

use super::sets::{BindingEntry, BindingSet, Set, name_of};
use super::{admission_request, matching, params};
use crate::admission::context::AdmissionContext;
use crate::admission::webhook::config::EXEMPT;
use crate::admission::{AdmissionPlugin, Attributes, Operation};
use crate::auth::rbac_feed::Sink;
use crate::error::ApiResult;
use crate::registry::{Registry, codec};

/// The group-version serving the policies.
pub const GROUP_VERSION: &str = "admissionregistration.k8s.io/v1beta1";

/// One policy, compiled.
#[derive(Debug)]
pub struct MutatingPolicyEntry {
    pub name: String,
    pub match_constraints: Value,
    pub param_kind: Option<Value>,
    pub compiled: CompiledMutatingPolicy,
}

/// The policies, by name.
pub type MutatingPolicySet = Set<MutatingPolicyEntry>;

impl Sink for MutatingPolicySet {
    fn reset(&self) {
        self.update(BTreeMap::clear);
    }

    fn apply(&self, key: &str, obj: Option<&Value>) {
        let name = name_of(key);
        match obj {
            Some(o) => {
                let spec = o.get("spec").cloned().unwrap_or(Value::Null);
                let entry = MutatingPolicyEntry {
                    name: name.clone(),
                    match_constraints: spec.get("matchConstraints").cloned().unwrap_or(json!({})),
                    param_kind: spec.get("paramKind").filter(|v| !v.is_null()).cloned(),
                    compiled: CompiledMutatingPolicy::compile(&spec),
                };
                for (field, expr, e) in &entry.compiled.errors {
                    tracing::warn!(policy = %name, field = %field, expression = %expr, error = %e, "MutatingAdmissionPolicy expression does not compile");
                }
                self.update(|m| {
                    m.insert(name, Arc::new(entry));
                });
            }
            None => self.update(|m| {
                m.remove(&name);
            }),
        }
    }
}

/// The MutatingAdmissionPolicy plugin.
pub struct MutatingAdmissionPolicy {
    policies: Arc<MutatingPolicySet>,
    bindings: Arc<BindingSet>,
    ctx: Arc<AdmissionContext>,
}

impl MutatingAdmissionPolicy {
    /// Loads the policies and bindings from the watch cache and keeps them current.
    pub async fn start(
        registry: &Registry,
        cache: &Arc<ferrokube_storage::watch_cache::WatchCache>,
        ctx: Arc<AdmissionContext>,
    ) -> anyhow::Result<Self> {
        let handle = |plural: &str| {
            registry
                .get("admissionregistration.k8s.io", "v1beta1", plural)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{GROUP_VERSION} {plural} is not served (--runtime-config={GROUP_VERSION}=true)"))
        };
        let policies = Arc::new(MutatingPolicySet::default());
        let bindings = Arc::new(BindingSet::default());
        crate::auth::rbac_feed::feed(
            cache.clone(),
            handle("mutatingadmissionpolicies")?.prefix.clone(),
            policies.clone(),
        )
        .await?;
        crate::auth::rbac_feed::feed(
            cache.clone(),
            handle("mutatingadmissionpolicybindings")?.prefix.clone(),
            bindings.clone(),
        )
        .await?;
        Ok(MutatingAdmissionPolicy {
            policies,
            bindings,
            ctx,
        })
    }

    /// Runs one policy for every binding (and param) that selects the request; `Ok(true)`
    /// when the object changed.
    async fn run_policy(
        &self,
        a: &Attributes<'_>,
        p: &MutatingPolicyEntry,
        bindings: &[&Arc<BindingEntry>],
        ns: &mut Option<Option<Value>>,
        obj: &mut Value,
    ) -> ApiResult<bool> {
        let others = self.ctx.other_versions(a);
        if ns.is_none() && matching::needs_namespace(&p.match_constraints) {
            *ns = Some(self.ctx.namespace(a).await?);
        }
        let ns_ref = ns.as_ref().and_then(Option::as_ref);
        let Some(view) = matching::matches(&p.match_constraints, a, Some(obj), ns_ref, &others)
        else {
            return Ok(false);
        };
        let view_handle = view.unwrap_or(a.handle);
        let mut changed = false;
        for b in bindings {
            if let Some(mr) = &b.match_resources {
                if ns.is_none() && matching::needs_namespace(mr) {
                    *ns = Some(self.ctx.namespace(a).await?);
                }
                let ns_ref = ns.as_ref().and_then(Option::as_ref);
                if matching::matches(mr, a, Some(obj), ns_ref, &others).is_none() {
                    continue;
                }
            }
            let fail = p.compiled.failure_policy
                == ferrokube_machinery::admission_policy::FailurePolicy::Fail;
            let params = match params::collect(
                &self.ctx.api,
                p.param_kind.as_ref(),
                b.param_ref.as_ref(),
                a.namespace,
            )
            .await
            {
                Ok(ps) => ps,
                Err(e) if fail => {
                    return Err(denied(
                        a,
                        p,
                        b,
                        &format!("failed to configure binding: {e}"),
                    ));
                }
                Err(_) => continue,
            };
            if ns.is_none() && p.compiled.uses_namespace() {
                *ns = Some(self.ctx.namespace(a).await?);
            }
            for param in &params {
                // The object in the matched version, as the expressions see it.
                let mut served = obj.clone();
                codec::to_served(view_handle, &mut served).await?;
                let old = codec::served_copy(view_handle, a.old).await?;
                let request = admission_request(a, view_handle);
                let mut inputs = Inputs::from_json(
                    Some(&served),
                    old.as_ref(),
                    &request,
                    ns.as_ref().and_then(Option::as_ref),
                    param.as_ref(),
                );
                inputs.authorizer = self.ctx.authorizer(a);
                let root = crate::registry::managed::node_type(view_handle, true);
                let before = served.clone();
                match p.compiled.apply(&inputs, &mut served, &root) {
                    Ok(Applied::Ran(true)) => {}
                    Ok(_) => continue,
                    Err(e) => return Err(denied(a, p, b, &e)),
                }
                if served == before {
                    continue;
                }
                crate::registry::store::type_check(view_handle, &mut served).map_err(|e| {
                    denied(
                        a,
                        p,
                        b,
                        &format!("the mutated object is invalid: {}", e.json_message()),
                    )
                })?;
                codec::to_storage(view_handle, &mut served).await?;
                *obj = served;
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// Upstream's rejection: `admission.NewForbidden` with the policy and binding named.
fn denied(
    a: &Attributes<'_>,
    p: &MutatingPolicyEntry,
    b: &BindingEntry,
    e: &str,
) -> crate::error::ApiError {
    a.forbidden(&format!(
        "policy '{}' with binding '{}' denied request: {e}",
        p.name, b.name
    ))
}

#[async_trait::async_trait]
impl AdmissionPlugin for MutatingAdmissionPolicy {
    fn name(&self) -> &'static str {
        "MutatingAdmissionPolicy"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        let info = &a.handle.info;
        if a.operation == Operation::Delete
            || (info.group == "admissionregistration.k8s.io" && EXEMPT.contains(&&*info.plural))
        {
            return Ok(());
        }
        let policies = self.policies.snapshot();
        if policies.is_empty() {
            return Ok(());
        }
        let bindings = self.bindings.snapshot();
        let mut ns: Option<Option<Value>> = None;
        let r = &a.reinvocation;
        let plugin = self.name();
        r.begin(plugin, obj);
        for p in policies.iter() {
            let pbs: Vec<&Arc<BindingEntry>> = bindings
                .iter()
                .filter(|b| b.policy_name == p.name)
                .collect();
            if pbs.is_empty() || !r.runs(plugin, &p.name) {
                continue;
            }
            let changed = self.run_policy(a, p, &pbs, &mut ns, obj).await?;
            r.ran(plugin, &p.name, p.compiled.reinvoke, changed);
        }
        r.end(plugin, obj);
        Ok(())
    }
}

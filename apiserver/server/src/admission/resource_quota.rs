//! ResourceQuota (upstream `plugin/pkg/admission/resourcequota`): a create (and an update of a
//! Service or PersistentVolumeClaim) that would take a namespace's usage beyond a quota's
//! `status.hard` is refused with upstream's 403
//! `exceeded quota: q, requested: ..., used: ..., limited: ...`. The charge is atomic: the
//! quota's `status.used` is raised by a compare-and-swap update through the one write path
//! before the object is stored (a lost race re-reads and re-checks), so concurrent creates
//! cannot both take the last unit. The quota controller (`controllers/src/resourcequota.rs`)
//! recomputes `status.used` from the objects, which gives back what deleted (or failed)
//! objects held. Usage is counted by `machinery::quota`, shared with the controller.

use std::collections::BTreeMap;

use ferrokube_machinery::quota::{self, Usage, format_milli, hard_of, pretty};
use serde_json::{Value, json};

use super::api::{ApiHandle, RESOURCE_QUOTAS};
use super::pod::s;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::{ApiError, ApiResult};
use crate::registry::store::{UpdateTarget, WriteOptions};

/// The ResourceQuota plugin.
pub struct ResourceQuota {
    pub api: ApiHandle,
}

/// Resources a pod must state for each container when a quota constrains them.
const COMPUTE: [&str; 6] = [
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
    "cpu",
    "memory",
];

/// upstream `podEvaluator.Constraints`: every container must specify what the quota limits.
fn missing_requirements(pod: &Value, hard: &BTreeMap<String, (i128, bool)>) -> Option<String> {
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in COMPUTE.iter().filter(|r| hard.contains_key(**r)) {
        let (kind, res) = match r.split_once('.') {
            Some((k, res)) => (k, res),
            None => ("requests", *r),
        };
        for field in ["initContainers", "containers"] {
            for c in pod
                .pointer(&format!("/spec/{field}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if c.pointer(&format!("/resources/{kind}/{res}")).is_none() {
                    missing
                        .entry(r)
                        .or_default()
                        .push(s(c, "/name").to_string());
                }
            }
        }
    }
    (!missing.is_empty()).then(|| {
        let parts: Vec<String> = missing
            .iter()
            .map(|(r, cs)| format!("{r} for: {}", cs.join(",")))
            .collect();
        format!("must specify {}", parts.join("; "))
    })
}

/// The change of usage a write makes (increases only, upstream
/// `SubtractWithNonNegativeResult`).
fn delta(group: &str, plural: &str, obj: &Value, old: Option<&Value>) -> Usage {
    let mut d = quota::usage(group, plural, obj);
    if let Some(old) = old {
        let before = quota::usage(group, plural, old);
        for (k, v) in d.iter_mut() {
            *v = (*v - before.get(k).copied().unwrap_or(0)).max(0);
        }
    }
    d.retain(|_, v| *v > 0);
    d
}

/// Checks one quota against the requested delta: the new `status.used` map, or the 403.
fn charge(a: &Attributes<'_>, q: &Value, d: &Usage) -> ApiResult<Option<Value>> {
    let qname = s(q, "/metadata/name");
    let spec_hard = hard_of(q, "/spec/hard");
    let relevant: Vec<&String> = d.keys().filter(|k| spec_hard.contains_key(*k)).collect();
    if relevant.is_empty() {
        return Ok(None);
    }
    let hard = hard_of(q, "/status/hard");
    let used = hard_of(q, "/status/used");
    let unknown: Vec<&str> = relevant
        .iter()
        .filter(|k| !hard.contains_key(**k) || !used.contains_key(**k))
        .map(|k| k.as_str())
        .collect();
    if !unknown.is_empty() {
        return Err(a.forbidden(&format!(
            "status unknown for quota: {qname}, resources: {}",
            unknown.join(",")
        )));
    }
    let mut exceeded = Vec::new();
    let mut new_used = BTreeMap::new();
    for k in &relevant {
        let (limit, _) = hard[*k];
        let now = used[*k].0 + d[*k];
        if now > limit {
            exceeded.push((*k).clone());
        }
        new_used.insert((*k).clone(), now);
    }
    if !exceeded.is_empty() {
        let binary: BTreeMap<String, bool> =
            hard.iter().map(|(k, (_, b))| (k.clone(), *b)).collect();
        let pick = |m: &dyn Fn(&String) -> i128| -> BTreeMap<String, i128> {
            exceeded.iter().map(|k| (k.clone(), m(k))).collect()
        };
        return Err(a.forbidden(&format!(
            "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
            pretty(&pick(&|k| d[k]), &binary),
            pretty(&pick(&|k| used[k].0), &binary),
            pretty(&pick(&|k| hard[k].0), &binary),
        )));
    }
    let mut status_used = q
        .pointer("/status/used")
        .cloned()
        .unwrap_or_else(|| json!({}));
    for (k, v) in new_used {
        status_used[k.as_str()] = json!(format_milli(v, hard[&k].1));
    }
    Ok(Some(status_used))
}

impl ResourceQuota {
    /// Raises one quota's `status.used` by `d` with a compare-and-swap update, re-checking
    /// against the quota as stored on every attempt.
    async fn commit(&self, a: &Attributes<'_>, qname: &str, d: &Usage) -> ApiResult<()> {
        let state = self.api.state()?;
        let (g, v, p) = RESOURCE_QUOTAS;
        let h = ApiHandle::handle(&state, g, v, p)?;
        let opts = WriteOptions {
            subresource: UpdateTarget::Status,
            ..WriteOptions::default()
        };
        state
            .store
            .update(
                &h,
                a.namespace,
                qname,
                |cur| {
                    let Some(cur) = cur else {
                        return Err(ApiError::from(
                            ferrokube_machinery::status::Status::not_found(
                                "",
                                "resourcequotas",
                                qname,
                            ),
                        ));
                    };
                    let mut q = cur.clone();
                    if let Some(used) = charge(a, &q, d)? {
                        q["status"]["used"] = used;
                    }
                    Ok(q)
                },
                &opts,
            )
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl AdmissionPlugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let info = &a.handle.info;
        if !a.subresource.is_empty() || !info.namespaced() || a.namespace.is_empty() {
            return Ok(());
        }
        let updatable = a.is("", "services") || a.is("", "persistentvolumeclaims");
        match a.operation {
            Operation::Create => {}
            Operation::Update if updatable => {}
            _ => return Ok(()),
        }
        let quotas = self.api.list(RESOURCE_QUOTAS, a.namespace).await?;
        if quotas.is_empty() {
            return Ok(());
        }
        let d = delta(&info.group, &info.plural, obj, old);
        if d.is_empty() {
            return Ok(());
        }
        let mut to_charge = Vec::new();
        for q in quotas
            .iter()
            .filter(|q| quota::scopes_match(q, &info.plural, obj))
        {
            let spec_hard = hard_of(q, "/spec/hard");
            if a.is("", "pods")
                && a.operation == Operation::Create
                && let Some(msg) = missing_requirements(obj, &spec_hard)
            {
                return Err(
                    a.forbidden(&format!("failed quota: {}: {msg}", s(q, "/metadata/name")))
                );
            }
            // Every quota is checked on its cached copy first (a cheap refusal that charges
            // nothing), then charged atomically.
            if charge(a, q, &d)?.is_some() {
                to_charge.push(s(q, "/metadata/name"));
            }
        }
        if a.dry_run {
            return Ok(());
        }
        for name in to_charge {
            self.commit(a, name, &d).await?;
        }
        Ok(())
    }
}

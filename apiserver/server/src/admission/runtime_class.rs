//! RuntimeClass (upstream `plugin/pkg/admission/runtimeclass`): a new pod naming a
//! RuntimeClass gets the class's `overhead.podFixed` (a pod stating a different overhead is
//! refused) and its scheduling constraints (nodeSelector merged, conflicting keys refused;
//! tolerations added); a missing class is refused.

use serde_json::{Value, json};

use super::api::{ApiHandle, RUNTIME_CLASSES};
use super::pod::s;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;

/// The RuntimeClass plugin.
pub struct RuntimeClass {
    pub api: ApiHandle,
}

#[async_trait::async_trait]
impl AdmissionPlugin for RuntimeClass {
    fn name(&self) -> &'static str {
        "RuntimeClass"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        if a.operation != Operation::Create || !a.subresource.is_empty() || !a.is("", "pods") {
            return Ok(());
        }
        let name = s(obj, "/spec/runtimeClassName").to_string();
        if name.is_empty() {
            return Ok(());
        }
        let Some(rc) = self.api.lookup(RUNTIME_CLASSES, "", &name).await? else {
            return Err(a.forbidden(&format!("pod rejected: RuntimeClass {name:?} not found")));
        };
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if let Some(fixed) = rc.pointer("/overhead/podFixed").filter(|v| !v.is_null()) {
            match spec.get("overhead") {
                Some(o) if !o.is_null() && o != fixed => {
                    return Err(a.forbidden(
                        "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead",
                    ));
                }
                _ => {
                    spec.insert("overhead".into(), fixed.clone());
                }
            }
        }
        if let Some(sel) = rc
            .pointer("/scheduling/nodeSelector")
            .and_then(Value::as_object)
        {
            let ns = spec.entry("nodeSelector").or_insert_with(|| json!({}));
            if let Some(ns) = ns.as_object_mut() {
                for (k, v) in sel {
                    match ns.get(k) {
                        Some(existing) if existing != v => {
                            return Err(a.forbidden(&format!(
                                "pod rejected: conflict: runtimeClass.scheduling.nodeSelector[{k}] = {}; pod.spec.nodeSelector[{k}] = {}",
                                v.as_str().unwrap_or(""),
                                existing.as_str().unwrap_or("")
                            )));
                        }
                        _ => {
                            ns.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        if let Some(tol) = rc
            .pointer("/scheduling/tolerations")
            .and_then(Value::as_array)
        {
            let list = spec.entry("tolerations").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                for t in tol {
                    if !list.contains(t) {
                        list.push(t.clone());
                    }
                }
            }
        }
        Ok(())
    }
}

//! TaintNodesByCondition (upstream `plugin/pkg/admission/nodetaint`): a new Node is created
//! with the `node.kubernetes.io/not-ready:NoSchedule` taint, so nothing schedules there before
//! the node lifecycle controller has seen it Ready (it then removes the taint).

use serde_json::{Value, json};

use super::pod::s;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;

/// The TaintNodesByCondition plugin.
pub struct TaintNodesByCondition;

#[async_trait::async_trait]
impl AdmissionPlugin for TaintNodesByCondition {
    fn name(&self) -> &'static str {
        "TaintNodesByCondition"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        if a.operation != Operation::Create || !a.subresource.is_empty() || !a.is("", "nodes") {
            return Ok(());
        }
        let Some(m) = obj.as_object_mut() else {
            return Ok(());
        };
        let spec = m.entry("spec").or_insert_with(|| json!({}));
        let Some(spec) = spec.as_object_mut() else {
            return Ok(());
        };
        let taints = spec.entry("taints").or_insert_with(|| json!([]));
        if !taints.is_array() {
            *taints = json!([]);
        }
        if let Some(list) = taints.as_array_mut()
            && !list.iter().any(|t| {
                s(t, "/key") == "node.kubernetes.io/not-ready" && s(t, "/effect") == "NoSchedule"
            })
        {
            list.push(json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}));
        }
        Ok(())
    }
}

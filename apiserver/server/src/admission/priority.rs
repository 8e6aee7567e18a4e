//! Priority (upstream `plugin/pkg/admission/priority`): a new pod's `priority` and
//! `preemptionPolicy` come from its PriorityClass (404-like 403 when it does not exist), or
//! from the global default class, else 0 / `PreemptLowerPriority`; a pod may not state a
//! different integer itself. Only one PriorityClass may be the global default. The two
//! built-in classes are created at start ([`ensure_system_priority_classes`]).

use serde_json::{Value, json};

use super::api::{ApiHandle, PRIORITY_CLASSES};
use super::pod::s;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::AppState;
use crate::error::ApiResult;

/// upstream `scheduling.SystemPriorityClasses()`.
const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Creates the built-in PriorityClasses when missing (upstream's bootstrap post-start hook).
pub async fn ensure_system_priority_classes(state: &AppState) -> anyhow::Result<()> {
    let (g, v, p) = PRIORITY_CLASSES;
    let Some(h) = state.registry.get(g, v, p).cloned() else {
        anyhow::bail!("the resource table has no priorityclasses");
    };
    // Concurrently: one commit for both when the store batches concurrent writes.
    let ensure = |(name, value, description): (&'static str, i64, &'static str)| {
        let h = h.clone();
        async move {
            let obj = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value, "description": description});
            if crate::ensure_bootstrap_object(state, &h, name, obj).await? {
                tracing::info!(name, "created PriorityClass");
            }
            anyhow::Ok(())
        }
    };
    futures::future::try_join_all(SYSTEM_CLASSES.into_iter().map(ensure)).await?;
    Ok(())
}

/// The Priority plugin.
pub struct Priority {
    pub api: ApiHandle,
}

impl Priority {
    /// upstream `getDefaultPriorityClass`: the global default with the lowest value.
    async fn default_class(&self) -> ApiResult<Option<Value>> {
        let classes = self.api.list(PRIORITY_CLASSES, "").await?;
        Ok(classes
            .into_iter()
            .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
            .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0)))
    }

    async fn admit_pod(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let name = spec
            .get("priorityClassName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (class_name, priority, policy) = if name.is_empty() {
            match self.default_class().await? {
                Some(c) => (
                    s(&c, "/metadata/name").to_string(),
                    c.get("value").and_then(Value::as_i64).unwrap_or(0),
                    c.get("preemptionPolicy")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                ),
                None => (String::new(), 0, Some("PreemptLowerPriority".to_string())),
            }
        } else {
            let Some(c) = self.api.lookup(PRIORITY_CLASSES, "", &name).await? else {
                return Err(a.forbidden(&format!("no PriorityClass with name {name} was found")));
            };
            (
                name.clone(),
                c.get("value").and_then(Value::as_i64).unwrap_or(0),
                c.get("preemptionPolicy")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            )
        };
        if !class_name.is_empty() {
            spec.insert("priorityClassName".into(), json!(class_name));
        }
        if let Some(given) = spec.get("priority").and_then(Value::as_i64)
            && given != priority
        {
            return Err(a.forbidden(&format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            )));
        }
        spec.insert("priority".into(), json!(priority));
        if let Some(policy) = policy {
            if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
                && given != policy
            {
                return Err(a.forbidden(&format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                )));
            }
            spec.insert("preemptionPolicy".into(), json!(policy));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl AdmissionPlugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        if a.operation == Operation::Create && a.subresource.is_empty() && a.is("", "pods") {
            return self.admit_pod(a, obj).await;
        }
        Ok(())
    }

    /// Only one global default PriorityClass.
    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        _old: Option<&Value>,
    ) -> ApiResult<()> {
        if !matches!(a.operation, Operation::Create | Operation::Update)
            || !a.is("scheduling.k8s.io", "priorityclasses")
            || obj.get("globalDefault").and_then(Value::as_bool) != Some(true)
        {
            return Ok(());
        }
        if let Some(d) = self.default_class().await?
            && s(&d, "/metadata/name") != a.name
        {
            return Err(a.forbidden(&format!(
                "PriorityClass {} is already marked as default. Only one default can exist",
                s(&d, "/metadata/name")
            )));
        }
        Ok(())
    }
}

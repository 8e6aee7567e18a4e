//! DefaultTolerationSeconds (upstream `plugin/pkg/admission/defaulttolerationseconds`): a new
//! pod that does not tolerate `node.kubernetes.io/not-ready` / `unreachable` (NoExecute) gets
//! a toleration of each for 300 s (`--default-not-ready-toleration-seconds`,
//! `--default-unreachable-toleration-seconds`).

use serde_json::{Value, json};

use super::pod::s;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The DefaultTolerationSeconds plugin.
pub struct DefaultTolerationSeconds {
    pub not_ready_seconds: i64,
    pub unreachable_seconds: i64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        DefaultTolerationSeconds {
            not_ready_seconds: 300,
            unreachable_seconds: 300,
        }
    }
}

/// Whether a toleration list already tolerates `key` with effect NoExecute (upstream checks
/// the key or an empty key with `Exists`, and an empty or NoExecute effect).
fn tolerated(list: &[Value], key: &str) -> bool {
    list.iter().any(|t| {
        let effect = s(t, "/effect");
        let k = s(t, "/key");
        (effect.is_empty() || effect == "NoExecute")
            && (k == key || (k.is_empty() && s(t, "/operator") == "Exists"))
    })
}

#[async_trait::async_trait]
impl AdmissionPlugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        if a.operation != Operation::Create || !a.subresource.is_empty() || !a.is("", "pods") {
            return Ok(());
        }
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let list = spec.entry("tolerations").or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        let Some(list) = list.as_array_mut() else {
            return Ok(());
        };
        for (key, secs) in [
            (NOT_READY, self.not_ready_seconds),
            (UNREACHABLE, self.unreachable_seconds),
        ] {
            if !tolerated(list, key) {
                list.push(
                    json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": secs}),
                );
            }
        }
        if list.is_empty() {
            spec.remove("tolerations");
        }
        Ok(())
    }
}

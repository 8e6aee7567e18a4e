//! The webhooks of every Validating/MutatingWebhookConfiguration, compiled once per change and
//! kept current from the watch cache (several API servers share the stored configurations),
//! and upstream's matching rules (`pkg/admission/plugin/webhook/predicates/rules`,
//! `.../predicates/namespace`, `.../predicates/object`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ferrokube_machinery::admission_policy::MatchConditions;
use serde_json::{Map, Value};

use crate::admission::Attributes;
use crate::auth::rbac_feed::{Sink, selector_matches};
use crate::webhook_client::ClientConfig;

/// Resources no webhook is ever called for (upstream `IsExemptAdmissionConfigurationResource`):
/// a broken webhook must never lock out its own repair.
pub const EXEMPT: &[&str] = &[
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
];

/// `failurePolicy`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

/// One rule (`RuleWithOperations`).
#[derive(Debug, Clone)]
pub struct Rule {
    operations: Vec<String>,
    groups: Vec<String>,
    versions: Vec<String>,
    resources: Vec<String>,
    scope: String,
}

/// One webhook of a configuration, compiled.
#[derive(Debug)]
pub struct Hook {
    pub name: String,
    pub configuration: String,
    /// The client configuration, or why it is unusable (a call error at run time).
    pub client: Result<ClientConfig, String>,
    pub rules: Vec<Rule>,
    pub namespace_selector: Value,
    pub object_selector: Value,
    /// `matchPolicy: Equivalent` (the v1 default) also matches other versions of the
    /// resource the rules name.
    pub equivalent: bool,
    pub failure_policy: FailurePolicy,
    /// `sideEffects` (`None`, `NoneOnDryRun`, `Some`, `Unknown`).
    pub side_effects: String,
    pub timeout: Duration,
    /// `reinvocationPolicy: IfNeeded`.
    pub reinvoke: bool,
    /// `matchConditions`, compiled (all must be true for the hook to be called).
    pub match_conditions: MatchConditions,
}

/// The strings of a JSON array (non-strings skipped; absent → empty).
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Hook {
    /// The hook's identity for reinvocation (upstream's webhook accessor UID).
    pub fn reinvocation_key(&self) -> String {
        format!("{}/{}", self.configuration, self.name)
    }

    /// Compiles one entry of `webhooks[]`.
    pub fn compile(configuration: &str, w: &Value) -> Hook {
        let s = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or("");
        let rules = w
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(Rule::from_json)
            .collect();
        let timeout = w
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10)
            .clamp(1, 30);
        Hook {
            name: s("name").to_string(),
            configuration: configuration.to_string(),
            client: ClientConfig::from_webhook(w.get("clientConfig").unwrap_or(&Value::Null))
                .map_err(|e| e.to_string()),
            rules,
            namespace_selector: w.get("namespaceSelector").cloned().unwrap_or(Value::Null),
            object_selector: w.get("objectSelector").cloned().unwrap_or(Value::Null),
            equivalent: s("matchPolicy") != "Exact",
            failure_policy: if s("failurePolicy") == "Ignore" {
                FailurePolicy::Ignore
            } else {
                FailurePolicy::Fail
            },
            side_effects: s("sideEffects").to_string(),
            timeout: Duration::from_secs(timeout),
            reinvoke: s("reinvocationPolicy") == "IfNeeded",
            match_conditions: MatchConditions::compile(w.get("matchConditions"), false),
        }
    }

    /// Whether dry-run requests may call this webhook.
    pub fn dry_run_safe(&self) -> bool {
        matches!(self.side_effects.as_str(), "None" | "NoneOnDryRun")
    }

    /// The rule-matched version (`Some(version)`) for a request, honouring `matchPolicy`:
    /// the request's own version when a rule names it, else (Equivalent) another served
    /// version of the same group and resource that a rule names.
    pub fn matches_rules(&self, a: &Attributes<'_>, other_versions: &[&str]) -> Option<String> {
        let info = &a.handle.info;
        if self
            .rules
            .iter()
            .any(|r| r.matches(a, &info.group, &info.version, &info.plural))
        {
            return Some(info.version.to_string());
        }
        if !self.equivalent {
            return None;
        }
        other_versions
            .iter()
            .find(|v| {
                self.rules
                    .iter()
                    .any(|r| r.matches(a, &info.group, v, &info.plural))
            })
            .map(|v| v.to_string())
    }
}

fn any_or(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x == "*" || x == v)
}

impl Rule {
    /// A `RuleWithOperations` (scope `*` when absent).
    pub fn from_json(r: &Value) -> Rule {
        Rule {
            operations: strings(r.get("operations")),
            groups: strings(r.get("apiGroups")),
            versions: strings(r.get("apiVersions")),
            resources: strings(r.get("resources")),
            scope: r
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
        }
    }

    /// Whether the request (seen as `group/version/resource`) is selected by the rule.
    pub fn matches(&self, a: &Attributes<'_>, group: &str, version: &str, resource: &str) -> bool {
        let op = a.operation.as_str();
        if !any_or(&self.operations, op)
            || !any_or(&self.groups, group)
            || !any_or(&self.versions, version)
        {
            return false;
        }
        let sub = a.subresource;
        let res_ok = self.resources.iter().any(|r| {
            let (res, s) = r.split_once('/').unwrap_or((r.as_str(), ""));
            (res == "*" || res == resource) && (s == "*" || s == sub)
        });
        if !res_ok {
            return false;
        }
        let is_namespace = a.handle.info.group.is_empty() && resource == "namespaces";
        match self.scope.as_str() {
            "Cluster" => is_namespace || a.namespace.is_empty(),
            "Namespaced" => !is_namespace && !a.namespace.is_empty(),
            _ => true,
        }
    }
}

/// Whether a LabelSelector is absent or empty (matches everything).
pub fn selects_everything(sel: &Value) -> bool {
    match sel {
        Value::Null => true,
        Value::Object(m) => m.values().all(|v| match v {
            Value::Null => true,
            Value::Object(o) => o.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        }),
        _ => false,
    }
}

/// The labels of an object (empty when it has none).
pub fn labels_of(obj: Option<&Value>) -> Map<String, Value> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// `objectSelector`: the new or the old object's labels match.
pub fn object_selected(sel: &Value, obj: Option<&Value>, old: Option<&Value>) -> bool {
    if selects_everything(sel) {
        return true;
    }
    [obj, old]
        .into_iter()
        .flatten()
        .any(|o| selector_matches(sel, &labels_of(Some(o))))
}

/// Every webhook of one kind of configuration, sorted by configuration name (upstream's
/// order), swapped as a whole when a configuration changes.
#[derive(Default)]
pub struct HookSet {
    by_config: RwLock<BTreeMap<String, Vec<Arc<Hook>>>>,
    flat: RwLock<Arc<Vec<Arc<Hook>>>>,
}

impl HookSet {
    /// The current webhooks, in order.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Hook>>> {
        self.flat
            .read()
            .map(|f| f.clone())
            .unwrap_or_else(|_| Arc::new(Vec::new()))
    }

    fn rebuild(&self, m: &BTreeMap<String, Vec<Arc<Hook>>>) {
        let all: Vec<Arc<Hook>> = m.values().flatten().cloned().collect();
        if let Ok(mut f) = self.flat.write() {
            *f = Arc::new(all);
        }
    }
}

impl Sink for HookSet {
    fn reset(&self) {
        if let Ok(mut m) = self.by_config.write() {
            m.clear();
            self.rebuild(&m);
        }
    }

    fn apply(&self, key: &str, obj: Option<&Value>) {
        let name = key.rsplit('/').next().unwrap_or(key).to_string();
        let Ok(mut m) = self.by_config.write() else {
            return;
        };
        match obj {
            Some(o) => {
                let hooks = o
                    .get("webhooks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|w| Arc::new(Hook::compile(&name, w)))
                    .collect();
                m.insert(name, hooks);
            }
            None => {
                m.remove(&name);
            }
        }
        self.rebuild(&m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compile_reads_v1_defaults() {
        let h = Hook::compile(
            "c",
            &json!({"name": "w.example.com", "clientConfig": {"url": "https://127.0.0.1:1/x"},
                     "sideEffects": "None", "admissionReviewVersions": ["v1"]}),
        );
        assert_eq!(h.failure_policy, FailurePolicy::Fail);
        assert!(h.equivalent);
        assert_eq!(h.timeout, Duration::from_secs(10));
        assert!(h.client.is_ok());
        assert!(h.dry_run_safe());
        assert!(!h.reinvoke);
    }

    #[test]
    fn selectors_empty_or_absent_select_everything() {
        assert!(selects_everything(&Value::Null));
        assert!(selects_everything(&json!({})));
        assert!(selects_everything(
            &json!({"matchLabels": {}, "matchExpressions": []})
        ));
        assert!(!selects_everything(&json!({"matchLabels": {"a": "b"}})));
        let obj = json!({"metadata": {"labels": {"a": "b"}}});
        assert!(object_selected(
            &json!({"matchLabels": {"a": "b"}}),
            Some(&obj),
            None
        ));
        assert!(!object_selected(
            &json!({"matchLabels": {"a": "c"}}),
            Some(&obj),
            None
        ));
    }

    #[test]
    fn hookset_orders_by_configuration_name_and_forgets_deleted() {
        let set = HookSet::default();
        let cfg =
            |n: &str| json!({"webhooks": [{"name": n, "clientConfig": {"url": "https://h/"}}]});
        set.apply("/registry/x/zeta", Some(&cfg("z")));
        set.apply("/registry/x/alpha", Some(&cfg("a")));
        let names: Vec<_> = set.snapshot().iter().map(|h| h.name.clone()).collect();
        assert_eq!(names, ["a", "z"]);
        set.apply("/registry/x/alpha", None);
        assert_eq!(set.snapshot().len(), 1);
    }
}

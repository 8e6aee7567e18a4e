//! Upstream `pkg/admission/plugin/policy/matching`: whether a request is selected by a
//! `MatchResources` (a policy's `matchConstraints` or a binding's `matchResources`):
//! namespaceSelector, objectSelector, excludeResourceRules, then resourceRules (with
//! `resourceNames`) under `matchPolicy`.

use std::sync::Arc;

use serde_json::Value;

use crate::admission::Attributes;
use crate::admission::webhook::config::{Rule, labels_of, object_selected, selects_everything};
use crate::auth::rbac_feed::selector_matches;
use crate::registry::ResourceHandle;

/// Whether matching needs the request's namespace (a non-empty namespaceSelector).
pub(super) fn needs_namespace(mr: &Value) -> bool {
    !selects_everything(mr.get("namespaceSelector").unwrap_or(&Value::Null))
}

fn rule_matches(r: &Value, a: &Attributes<'_>, version: &str) -> bool {
    let info = &a.handle.info;
    if !Rule::from_json(r).matches(a, &info.group, version, &info.plural) {
        return false;
    }
    let names = r
        .get("resourceNames")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    names.is_empty() || names.iter().any(|n| n.as_str() == Some(a.name))
}

fn any_rule(rules: &[Value], a: &Attributes<'_>, version: &str) -> bool {
    rules.iter().any(|r| rule_matches(r, a, version))
}

/// `Some(None)`: selected in the request's own version; `Some(Some(h))`: selected through the
/// equivalent version `h` (`matchPolicy: Equivalent`); `None`: not selected. `ns` is the
/// request's namespace when [`needs_namespace`] said so.
pub(super) fn matches<'h>(
    mr: &Value,
    a: &Attributes<'_>,
    obj: Option<&Value>,
    ns: Option<&Value>,
    others: &[&'h Arc<ResourceHandle>],
) -> Option<Option<&'h ResourceHandle>> {
    let info = &a.handle.info;
    let ns_sel = mr.get("namespaceSelector").unwrap_or(&Value::Null);
    if !selects_everything(ns_sel) {
        let is_namespace = info.group.is_empty() && info.plural == "namespaces";
        if is_namespace {
            if !selector_matches(ns_sel, &labels_of(obj.or(a.old))) {
                return None;
            }
        } else if !a.namespace.is_empty() && !selector_matches(ns_sel, &labels_of(ns)) {
            return None;
        }
    }
    let obj_sel = mr.get("objectSelector").unwrap_or(&Value::Null);
    if !object_selected(obj_sel, obj, a.old) {
        return None;
    }
    let list = |k: &str| {
        mr.get(k)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    };
    let exclude = list("excludeResourceRules");
    if any_rule(exclude, a, &info.version) {
        return None;
    }
    let rules = list("resourceRules");
    if rules.is_empty() || any_rule(rules, a, &info.version) {
        return Some(None);
    }
    if mr.get("matchPolicy").and_then(Value::as_str) == Some("Exact") {
        return None;
    }
    others
        .iter()
        .find(|h| any_rule(rules, a, &h.info.version) && !any_rule(exclude, a, &h.info.version))
        .map(|h| Some(&***h))
}

//! What a ValidatingAdmissionPolicy's type check runs against (upstream `TypeChecker`
//! `typesToCheck`/`declType`): the kinds its `matchConstraints.resourceRules` name without
//! wildcards (at most 10, sorted by group, version, kind), each with its schema (built-in
//! OpenAPI definitions, or the CRD version's schema), and the `paramKind`'s schema. The
//! expressions are checked in `machinery::admission_policy::typecheck`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrokube_machinery::admission_policy::typecheck::{Target, check_policy};
use ferrokube_machinery::cel::CelType;
use ferrokube_machinery::openapi;
use serde_json::{Value, json};

use crate::AppState;
use crate::admission::webhook::config::strings;
use crate::registry::ResourceHandle;

/// Upstream `maxTypesToCheck`.
const MAX_TYPES_TO_CHECK: usize = 10;
/// Most (group, version, resource) combinations looked up for one policy: the rules' lists
/// are user input, and their product must not keep the status writer busy (upstream has no
/// such bound; a policy naming more combinations is checked against the first ones found).
const MAX_LOOKUPS: usize = 10_000;

/// `status.typeChecking.expressionWarnings` of `policy` (a stored ValidatingAdmissionPolicy).
pub(super) fn expression_warnings(state: &AppState, policy: &Value) -> Vec<Value> {
    let Some(spec) = policy.get("spec") else {
        return Vec::new();
    };
    let targets: Vec<Target> = kinds_to_check(state, spec)
        .into_iter()
        .filter_map(|(gvk, h)| {
            Some(Target {
                gvk,
                object: object_type(&h)?,
            })
        })
        .collect();
    let params = spec
        .get("paramKind")
        .filter(|p| !p.is_null())
        .and_then(|p| {
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
            super::params::resolve(state, s("apiVersion"), s("kind"))
        })
        .and_then(|h| object_type(&h));
    check_policy(spec, &targets, params.as_ref())
        .into_iter()
        .map(|(field, warning)| json!({"fieldRef": field, "warning": warning}))
        .collect()
}

/// Upstream `typesToCheck`: `(display GVK, handle)` sorted by group, version and kind.
fn kinds_to_check(state: &AppState, spec: &Value) -> Vec<(String, Arc<ResourceHandle>)> {
    let mut found: BTreeMap<(String, String, String), Arc<ResourceHandle>> = BTreeMap::new();
    let mut lookups = 0;
    let rules = spec
        .pointer("/matchConstraints/resourceRules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    'rules: for rule in rules {
        let mut groups = strings(rule.get("apiGroups"));
        let mut versions = strings(rule.get("apiVersions"));
        // A wildcard group or version: the rule is not checked at all.
        if groups.iter().chain(&versions).any(|s| s.contains('*')) {
            continue;
        }
        let mut resources: Vec<String> = strings(rule.get("resources"))
            .into_iter()
            .filter(|r| !r.contains(['*', '/']))
            .collect();
        if groups.is_empty() || versions.is_empty() || resources.is_empty() {
            continue;
        }
        groups.sort();
        versions.sort();
        resources.sort();
        let mut count = 0;
        for g in &groups {
            for v in &versions {
                for r in &resources {
                    lookups += 1;
                    if lookups > MAX_LOOKUPS {
                        break 'rules;
                    }
                    let Some(h) = state.registry.lookup(g, v, r) else {
                        continue;
                    };
                    found.insert((g.clone(), v.clone(), h.info.kind.to_string()), h);
                    count += 1;
                    if count == MAX_TYPES_TO_CHECK {
                        break 'rules;
                    }
                }
            }
        }
    }
    found
        .into_iter()
        .map(|((g, v, k), h)| (format!("{g}/{v}, Kind={k}"), h))
        .collect()
}

/// The type of a resource's objects, from its schema; `None` without one.
fn object_type(h: &ResourceHandle) -> Option<CelType> {
    let kind = h.info.kind.to_string();
    if let Some(custom) = &h.custom {
        let schema = custom.version.schema.as_ref()?.value()?;
        let t = CelType::from_schema(&schema, None, &kind);
        // The published schema of a custom resource has the object's envelope too.
        return Some(match t {
            CelType::Object(o) => {
                let mut o = (*o).clone();
                for k in ["apiVersion", "kind"] {
                    o.fields.entry(k.into()).or_insert(CelType::String);
                }
                o.fields.insert("metadata".into(), CelType::Dyn);
                CelType::Object(Arc::new(o))
            }
            other => other,
        });
    }
    let (name, definitions) = openapi::resource_schema(&h.info)?;
    Some(CelType::from_schema(
        &json!({"$ref": format!("#/definitions/{name}")}),
        Some(&definitions),
        &kind,
    ))
}

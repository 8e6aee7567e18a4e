//! Server-side apply over client-side apply (upstream `fieldmanager/internal/lastappliedmanager.go`
//! and `lastappliedupdater.go`).
//!
//! An object last written by `kubectl apply` (client-side) carries the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation, and its fields are owned by
//! the `kubectl-client-side-apply` updater. When `kubectl apply --server-side` (field manager
//! `kubectl`) then conflicts with that owner, the conflicts on fields the last-applied
//! configuration sets — and that still have the value it gave them — are not conflicts: the
//! apply is repeated with force, so the applier takes those fields over. Afterwards the
//! annotation is rewritten to the applied configuration, so a later client-side apply computes
//! its three-way patch from what was really applied.

use serde_json::Value;

use super::fieldpath::Set;
use super::typed::{NodeType, compare, to_field_set};
use super::{ApplyRequest, Conflicts, owned_view};
use crate::continue_token::go_json_string;
use crate::limits::WALK_DEPTH_LIMIT;

/// The client-side apply annotation.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The only field manager whose applies upgrade client-side apply (others opt out).
pub const UPGRADING_MANAGER: &str = "kubectl";

/// The annotation's value on `obj`, when set and not empty.
pub fn last_applied(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// `allowedConflictsFromLastApplied`: the fields the last-applied configuration sets, minus
/// those whose live value differs from it (or that only one side has). `None` when the live
/// object has no usable annotation (missing, not a JSON object, another apiVersion).
fn allowed_conflicts(live: &Value, t: &NodeType, req: &ApplyRequest<'_>) -> Option<Set> {
    let text = last_applied(live)?;
    let applied: Value = serde_json::from_str(text).ok()?;
    if applied.get("apiVersion").and_then(Value::as_str) != Some(req.writer.api_version) {
        return None;
    }
    let sub = req.writer.subresource;
    let applied_view = owned_view(&applied, sub, req.has_status);
    let live_view = owned_view(live, sub, req.has_status);
    let c = compare(&applied_view, &live_view, t);
    Some(
        to_field_set(&applied_view, t)
            .difference(&c.modified)
            .difference(&c.added)
            .difference(&c.removed),
    )
}

/// What to do with the conflicts of a `kubectl` apply: `Ok(())` when every one is allowed by
/// the last-applied annotation (apply again with force), else the conflicts that remain.
pub(super) fn resolve(
    live: &Value,
    conflicts: Conflicts,
    t: &NodeType,
    req: &ApplyRequest<'_>,
) -> Result<(), Conflicts> {
    let Some(allowed) = allowed_conflicts(live, t, req) else {
        return Err(conflicts);
    };
    let remaining: Vec<_> = conflicts
        .0
        .iter()
        .filter(|c| !allowed.has(&c.path))
        .cloned()
        .collect();
    if remaining.is_empty() {
        Ok(())
    } else {
        Err(Conflicts(remaining))
    }
}

/// `lastAppliedUpdater`: after a `kubectl` apply of an object that has the annotation, the
/// annotation becomes the applied configuration (without the annotation itself), encoded as
/// upstream's unstructured JSON encoder does (sorted keys, Go escaping, a final newline).
pub(super) fn update_annotation(result: &mut Value, config: &Value) {
    let mut applied = config.clone();
    if let Some(a) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.shift_remove(LAST_APPLIED_ANNOTATION);
    }
    let mut text = String::new();
    go_json(&applied, &mut text, 0);
    text.push('\n');
    if let Some(a) = result
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(text));
    }
}

/// Go's `encoding/json` of a decoded value: map keys sorted, HTML-safe string escaping.
fn go_json(v: &Value, out: &mut String, depth: usize) {
    match v {
        Value::Object(m) if depth < WALK_DEPTH_LIMIT => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(k, out);
                out.push(':');
                go_json(&m[k.as_str()], out, depth + 1);
            }
            out.push('}');
        }
        Value::Array(a) if depth < WALK_DEPTH_LIMIT => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(v, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(_) | Value::Array(_) => out.push_str("null"),
        Value::String(s) => go_json_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

//! Delete with upstream's semantics (`pkg/registry/generic/registry/store.go` Delete,
//! `updateForGracefulDeletionAndFinalizers`, `deletionFinalizersForGarbageCollection`;
//! `pkg/registry/rest/delete.go` BeforeDelete): preconditions, graceful deletion, finalizers,
//! propagation policy. The writes a delete makes (the object kept with a deletionTimestamp, or
//! removed) go through the one guaranteed-update loop (`write.rs`), as upstream's
//! `updateForGracefulDeletionAndFinalizers` goes through `GuaranteedUpdate`.

use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::FieldError;
use ferrokube_storage::KeyValue;
use serde_json::{Value, json};

use super::write::{Change, Done};
use super::{DeleteOptions, GenericStore, Propagation, meta, meta_mut, meta_str, now_rfc3339};
use crate::error::ApiResult;
use crate::registry::ResourceHandle;
use crate::registry::codec;
use crate::registry::strategy::GcPolicy;

/// `metav1.FinalizerOrphanDependents`.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// `metav1.FinalizerDeleteDependents`.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// The outcome of a delete.
#[derive(Debug)]
pub enum Deleted {
    /// The object is gone; this is its last state.
    Now(Value),
    /// The object stays (graceful deletion, finalizers); this is its new state.
    Kept(Value),
}

/// What one attempt of a delete does (stored form).
pub(super) enum DeletePlan {
    /// Nothing (a graceful deletion is already pending): the object as it is.
    Keep(Value),
    /// Keep the object, written with its deletion fields and finalizers.
    Write(Value),
    /// Remove the object.
    Remove(Value),
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn set_finalizers(obj: &mut Value, fins: &[String]) -> ApiResult<()> {
    let m = meta_mut(obj)?;
    if fins.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(fins));
    }
    Ok(())
}

/// `shouldOrphanDependents` and `shouldDeleteDependents` folded into the new finalizer list;
/// `None` when it does not change.
fn gc_finalizers(
    policy: GcPolicy,
    current: &[String],
    opts: &DeleteOptions,
) -> Option<Vec<String>> {
    if policy == GcPolicy::Unsupported {
        return None;
    }
    let has = |f: &str| current.iter().any(|x| x == f);
    let (orphan, foreground) = match (opts.orphan_dependents, opts.propagation) {
        (Some(o), _) => (o, false),
        (None, Some(p)) => (p == Propagation::Orphan, p == Propagation::Foreground),
        (None, None) => {
            // A finalizer already set overrides the default (the first one wins, as upstream).
            match current
                .iter()
                .find(|f| *f == FINALIZER_ORPHAN || *f == FINALIZER_FOREGROUND)
            {
                Some(f) if f == FINALIZER_ORPHAN => (true, false),
                Some(_) => (false, true),
                None => (policy == GcPolicy::OrphanDependents, false),
            }
        }
    };
    let mut out: Vec<String> = current
        .iter()
        .filter(|f| *f != FINALIZER_ORPHAN && *f != FINALIZER_FOREGROUND)
        .cloned()
        .collect();
    if orphan {
        out.push(FINALIZER_ORPHAN.into());
    }
    if foreground {
        out.push(FINALIZER_FOREGROUND.into());
    }
    let same = out.len() == current.len() && out.iter().all(|f| has(f));
    (!same).then_some(out)
}

fn timestamp_plus(secs: i64) -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .ok()
        .and_then(|t| t.checked_add(jiff::SignedDuration::from_secs(secs)).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(now_rfc3339)
}

/// `ValidateObjectMetaUpdate`: finalizers cannot be added to an object being deleted.
pub fn finalizer_update_errors(new: &Value, old: &Value) -> Vec<FieldError> {
    if old.pointer("/metadata/deletionTimestamp").is_none() {
        return Vec::new();
    }
    let old_f = finalizers(old);
    let extra: Vec<String> = finalizers(new)
        .into_iter()
        .filter(|f| !old_f.contains(f))
        .collect();
    if extra.is_empty() {
        return Vec::new();
    }
    let quoted: Vec<String> = extra.iter().map(|f| format!("{f:?}")).collect();
    vec![FieldError::forbidden(
        "metadata.finalizers",
        &format!(
            "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
            quoted.join(", ")
        ),
    )]
}

/// `ShouldDeleteDuringUpdate`: an update leaving no finalizers on an object whose deletion
/// has no grace period left deletes it.
pub fn should_delete_during_update(h: &ResourceHandle, new: &Value, old: &Value) -> bool {
    let Some(m) = meta(old) else {
        return false;
    };
    if m.get("deletionTimestamp").is_none() || !finalizers(new).is_empty() {
        return false;
    }
    if h.strategy.delete_held(new) {
        return false;
    }
    m.get("deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        == 0
}

impl GenericStore {
    /// Delete of one object, upstream's `Store.Delete`; the object comes back in the version
    /// `h` serves.
    pub async fn delete(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let mut deleted = self.delete_stored(h, namespace, name, opts).await?;
        match &mut deleted {
            Deleted::Kept(o) | Deleted::Now(o) => codec::to_served(h, o).await?,
        }
        Ok(deleted)
    }

    async fn delete_stored(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        if let Some(msg) = h.strategy.forbid_delete(name) {
            return Err(Status::forbidden(&h.info.group, &h.info.plural, name, msg).into());
        }
        let change = Change::Delete { opts };
        Ok(
            match self.guaranteed_update(h, namespace, name, change).await? {
                Done::Removed(o) => Deleted::Now(o),
                Done::Unchanged(o) | Done::Updated(o) | Done::Created(o) => Deleted::Kept(o),
            },
        )
    }

    /// One attempt of a delete against the current object: preconditions, validating
    /// admission, then keep (graceful deletion, finalizers) or remove.
    pub(super) async fn plan_delete(
        &self,
        h: &ResourceHandle,
        namespace: &str,
        name: &str,
        current: &KeyValue,
        opts: &DeleteOptions,
    ) -> ApiResult<DeletePlan> {
        let mut old = codec::decode(current)?;
        check_preconditions(h, name, &old, current, opts)?;
        codec::set_rv(&mut old, current.mod_revision);
        let mut obj = old.clone();
        let fins = finalizers(&obj);
        if let Some(new) = gc_finalizers(h.strategy.default_gc_policy(), &fins, opts) {
            set_finalizers(&mut obj, &new)?;
        }
        let mut graceful = false;
        let already = meta(&obj).is_some_and(|m| m.contains_key("deletionTimestamp"));
        if already {
            let current_grace = meta(&obj)
                .and_then(|m| m.get("deletionGracePeriodSeconds"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if current_grace > 0 {
                match opts.grace_period {
                    Some(p) if p < current_grace => {
                        let p = p.max(0);
                        let m = meta_mut(&mut obj)?;
                        m.insert("deletionTimestamp".into(), json!(timestamp_plus(p)));
                        m.insert("deletionGracePeriodSeconds".into(), json!(p));
                        graceful = p > 0;
                    }
                    // Graceful deletion is pending: only a shorter period changes it.
                    _ => return Ok(DeletePlan::Keep(old)),
                }
            }
        } else if let Some(p) = h
            .strategy
            .graceful_delete_period(&obj, opts.grace_period)
            .filter(|p| *p > 0)
        {
            let m = meta_mut(&mut obj)?;
            m.insert("deletionTimestamp".into(), json!(timestamp_plus(p)));
            m.insert("deletionGracePeriodSeconds".into(), json!(p));
            if let Some(g) = m.get("generation").and_then(Value::as_i64) {
                m.insert("generation".into(), json!(g + 1));
            }
            graceful = true;
        }
        self.admit_delete(h, namespace, name, &old, opts).await?;
        h.strategy.begin_delete(&mut obj);
        let held = h.strategy.delete_held(&obj);
        let pending_finalizers = !finalizers(&obj).is_empty();
        if graceful || held || pending_finalizers {
            let m = meta_mut(&mut obj)?;
            if !m.contains_key("deletionTimestamp") {
                m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                if pending_finalizers {
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
            }
            m.remove("resourceVersion");
            return Ok(DeletePlan::Write(obj));
        }
        Ok(DeletePlan::Remove(old))
    }
}

fn check_preconditions(
    h: &ResourceHandle,
    name: &str,
    old: &Value,
    current: &KeyValue,
    opts: &DeleteOptions,
) -> ApiResult<()> {
    if let Some(uid) = &opts.precondition_uid {
        let actual = meta_str(old, "uid");
        if uid != actual {
            return Err(Status::conflict(
                &h.info.group,
                &h.info.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            )
            .into());
        }
    }
    if let Some(rv) = &opts.precondition_rv {
        let actual = current.mod_revision.to_string();
        if *rv != actual {
            return Err(Status::conflict(
                &h.info.group,
                &h.info.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                ),
            )
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(p: Option<Propagation>) -> DeleteOptions {
        DeleteOptions {
            propagation: p,
            ..Default::default()
        }
    }

    #[test]
    fn propagation_sets_gc_finalizers() {
        let none: Vec<String> = vec![];
        assert_eq!(
            gc_finalizers(GcPolicy::DeleteDependents, &none, &opts(None)),
            None
        );
        assert_eq!(
            gc_finalizers(
                GcPolicy::DeleteDependents,
                &none,
                &opts(Some(Propagation::Orphan))
            ),
            Some(vec!["orphan".to_string()])
        );
        assert_eq!(
            gc_finalizers(GcPolicy::OrphanDependents, &none, &opts(None)),
            Some(vec!["orphan".to_string()])
        );
        let fg = vec!["x".to_string(), "orphan".to_string()];
        assert_eq!(
            gc_finalizers(
                GcPolicy::DeleteDependents,
                &fg,
                &opts(Some(Propagation::Foreground))
            ),
            Some(vec!["x".to_string(), "foregroundDeletion".to_string()])
        );
        assert_eq!(
            gc_finalizers(
                GcPolicy::Unsupported,
                &none,
                &opts(Some(Propagation::Orphan))
            ),
            None
        );
    }

    #[test]
    fn no_new_finalizers_while_deleting() {
        let old =
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["a"]}});
        let new = json!({"metadata": {"finalizers": ["a", "b"]}});
        let errs = finalizer_update_errors(&new, &old);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].detail.contains("[]string{\"b\"}"),
            "{}",
            errs[0].detail
        );
        let fewer = json!({"metadata": {}});
        assert!(finalizer_update_errors(&fewer, &old).is_empty());
    }
}

//! `batch/v1` defaults: `pkg/apis/batch/v1/defaults.go`.

use serde_json::{Value, json};

use super::core::pod_template_spec;
use super::{def, each, get_mut, obj_at, zero_status};

/// Defaults of a batch/v1 kind.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Job" => job(obj),
        "CronJob" => cronjob(obj),
        _ => {}
    }
}

/// `SetDefaults_Job`.
fn job(obj: &mut Value) {
    let template_labels = obj.pointer("/spec/template/metadata/labels").cloned();
    if let Some(spec) = obj_at(obj, "spec") {
        let unset = |v: Option<&Value>| matches!(v, None | Some(Value::Null));
        if unset(spec.get("completions")) && unset(spec.get("parallelism")) {
            def(spec, "completions", json!(1));
        }
        def(spec, "parallelism", json!(1));
        let per_index = !unset(spec.get("backoffLimitPerIndex"));
        def(
            spec,
            "backoffLimit",
            json!(if per_index { i32::MAX } else { 6 }),
        );
        def(spec, "completionMode", json!("NonIndexed"));
        def(spec, "suspend", json!(false));
        let has_pfp = !unset(spec.get("podFailurePolicy"));
        if let Some(pfp) = get_mut(spec, "podFailurePolicy") {
            each(pfp, "rules", |r| {
                each(r, "onPodConditions", |c| def(c, "status", json!("True")));
            });
        }
        def(
            spec,
            "podReplacementPolicy",
            json!(if has_pfp {
                "Failed"
            } else {
                "TerminatingOrFailed"
            }),
        );
        if let Some(t) = get_mut(spec, "template") {
            pod_template_spec(t);
        }
    }
    if let Some(labels) = template_labels.filter(Value::is_object)
        && let Some(meta) = obj_at(obj, "metadata")
        && meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
    {
        meta.as_object_mut()
            .map(|m| m.insert("labels".into(), labels));
    }
    zero_status(obj, json!({}));
}

/// `SetDefaults_CronJob`; the job template's pod template gets the PodSpec defaults
/// (`SetDefaults_Job` applies to Job objects only).
fn cronjob(obj: &mut Value) {
    if let Some(spec) = obj_at(obj, "spec") {
        def(spec, "concurrencyPolicy", json!("Allow"));
        def(spec, "suspend", json!(false));
        def(spec, "successfulJobsHistoryLimit", json!(3));
        def(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(t) = spec.pointer_mut("/jobTemplate/spec/template") {
            pod_template_spec(t);
        }
    }
    zero_status(obj, json!({}));
}

/// The Job registry's `generateSelector` (`pkg/registry/batch/job/strategy.go`, on create unless
/// `spec.manualSelector` is true): the template gets the job-name and controller-uid labels (new
/// and legacy keys) and the selector matches `batch.kubernetes.io/controller-uid`. Needs the
/// uid, so it runs after system metadata is set.
pub fn job_generate_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let meta = |k: &str| {
        obj.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (name, uid) = (meta("name"), meta("uid"));
    let Some(spec) = obj_at(obj, "spec") else {
        return;
    };
    if let Some(t) = obj_at(spec, "template")
        && let Some(m) = obj_at(t, "metadata")
        && let Some(labels) = obj_at(m, "labels").and_then(Value::as_object_mut)
    {
        for (k, v) in [
            ("job-name", &name),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("batch.kubernetes.io/controller-uid", &uid),
        ] {
            labels.entry(k).or_insert_with(|| json!(v));
        }
    }
    if let Some(sel) = obj_at(spec, "selector")
        && let Some(ml) = obj_at(sel, "matchLabels").and_then(Value::as_object_mut)
    {
        ml.entry("batch.kubernetes.io/controller-uid")
            .or_insert_with(|| json!(uid));
    }
}

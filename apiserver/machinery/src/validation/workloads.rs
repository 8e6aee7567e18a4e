//! Workload controllers: upstream `pkg/apis/apps/validation/validation.go` (`ValidateDeployment`,
//! `ValidateReplicaSet`, `ValidateStatefulSet`, `ValidateDaemonSet`,
//! `ValidatePodTemplateSpecForReplicaSet` and the `*Update` immutability rules) and
//! `pkg/apis/batch/validation/validation.go` (`ValidateJob`, `ValidateCronJob`, the cron
//! schedule via robfig/cron `ParseStandard`).

use serde_json::Value;

use super::cron::parse_standard;
use super::field::{FieldError, Path};
use super::helpers::{
    get, int, int_or_percent, nonnegative, s, selector_is_empty, selector_matches,
    validate_label_selector,
};
use super::meta_update::validate_immutable_field;
use super::pod::validate_pod_template_spec;

/// Which controller a template belongs to (selects the restartPolicy rule and messages).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Controller {
    Replicated,
    Job,
}

/// The selector + template rules shared by Deployment, ReplicaSet, StatefulSet and DaemonSet
/// (`ValidatePodTemplateSpecForReplicaSet` and friends).
fn selector_and_template(spec: &Value, sp: &Path, kind: &str, errs: &mut Vec<FieldError>) {
    let sel = get(spec, "selector");
    if sel.is_null() {
        errs.push(FieldError::required(sp.child("selector"), ""));
    } else {
        errs.extend(validate_label_selector(sel, &sp.child("selector")));
        if selector_is_empty(sel) {
            errs.push(FieldError::invalid(
                sp.child("selector"),
                sel.clone(),
                &format!("empty selector is invalid for {kind}"),
            ));
        }
    }
    template_rules(spec, sp, Controller::Replicated, errs);
}

fn template_rules(spec: &Value, sp: &Path, ctl: Controller, errs: &mut Vec<FieldError>) {
    let tp = sp.child("template");
    let Some(template) = spec.get("template").filter(|t| !t.is_null()) else {
        errs.push(FieldError::required(tp, ""));
        return;
    };
    let sel = get(spec, "selector");
    let labels = get(get(template, "metadata"), "labels");
    if !sel.is_null() && !selector_is_empty(sel) && !selector_matches(sel, labels) {
        errs.push(FieldError::invalid(
            tp.child("metadata").child("labels"),
            labels.clone(),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(validate_pod_template_spec(template, &tp));
    let pspec = get(template, "spec");
    let rp = tp.child("spec").child("restartPolicy");
    let policy = pspec.get("restartPolicy").and_then(Value::as_str);
    match ctl {
        Controller::Replicated => {
            if let Some(p) = policy.filter(|p| *p != "Always") {
                errs.push(FieldError::not_supported(rp, p, &["Always"]));
            }
            if pspec
                .get("activeDeadlineSeconds")
                .is_some_and(|v| !v.is_null())
            {
                errs.push(FieldError::forbidden(
                    tp.child("spec").child("activeDeadlineSeconds"),
                    "activeDeadlineSeconds in ReplicaSet is not Supported",
                ));
            }
        }
        // Upstream checks both empty and `Always` (what `SetDefaults_PodSpec` fills in) as
        // "Required", anything else outside OnFailure/Never as NotSupported.
        Controller::Job => match policy {
            Some("OnFailure") | Some("Never") => {}
            None | Some("") | Some("Always") => errs.push(FieldError::required(
                rp,
                "valid values: \"OnFailure\", \"Never\"",
            )),
            Some(p) => errs.push(FieldError::not_supported(rp, p, &["OnFailure", "Never"])),
        },
    }
}

/// Upstream `ValidateDeploymentSpec` at `spec`.
pub fn validate_deployment(obj: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    let mut errs = nonnegative(spec, "replicas", &sp);
    selector_and_template(spec, &sp, "deployment", &mut errs);
    let strat = get(spec, "strategy");
    let stp = sp.child("strategy");
    match s(strat, "type") {
        "" | "RollingUpdate" => {
            let ru = get(strat, "rollingUpdate");
            let rup = stp.child("rollingUpdate");
            errs.extend(int_or_percent(ru, "maxUnavailable", &rup));
            errs.extend(int_or_percent(ru, "maxSurge", &rup));
            let zero = |k: &str| match ru.get(k) {
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s == "0%",
                _ => false,
            };
            if zero("maxUnavailable") && zero("maxSurge") {
                errs.push(FieldError::invalid(
                    rup.child("maxUnavailable"),
                    ru["maxUnavailable"].clone(),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        "Recreate" => {
            if strat.get("rollingUpdate").is_some_and(|v| !v.is_null()) {
                errs.push(FieldError::forbidden(
                    stp.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        t => errs.push(FieldError::not_supported(
            stp.child("type"),
            t,
            &["Recreate", "RollingUpdate"],
        )),
    }
    for f in [
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    ] {
        errs.extend(nonnegative(spec, f, &sp));
    }
    if let Some(pd) = int(spec, "progressDeadlineSeconds")
        && pd <= int(spec, "minReadySeconds").unwrap_or(0)
    {
        errs.push(FieldError::invalid(
            sp.child("progressDeadlineSeconds"),
            pd,
            "must be greater than minReadySeconds",
        ));
    }
    errs
}

fn selector_immutable(new: &Value, old: &Value) -> Vec<FieldError> {
    validate_immutable_field(
        new.pointer("/spec/selector"),
        old.pointer("/spec/selector"),
        &Path::new("spec").child("selector"),
    )
}

/// Upstream `ValidateDeploymentUpdate` (apps/v1: the selector is immutable).
pub fn validate_deployment_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_deployment(new);
    errs.extend(selector_immutable(new, old));
    errs
}

/// Upstream `ValidateReplicaSetSpec` (also used for ReplicationControllers' templates).
pub fn validate_replica_set(obj: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    let mut errs = nonnegative(spec, "replicas", &sp);
    errs.extend(nonnegative(spec, "minReadySeconds", &sp));
    selector_and_template(spec, &sp, "deployment", &mut errs);
    errs
}

/// Upstream `ValidateReplicaSetUpdate` (apps/v1: the selector is immutable).
pub fn validate_replica_set_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_replica_set(new);
    errs.extend(selector_immutable(new, old));
    errs
}

/// Upstream `ValidateStatefulSetSpec`.
pub fn validate_stateful_set(obj: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    let mut errs = Vec::new();
    match spec.get("podManagementPolicy").and_then(Value::as_str) {
        None | Some("OrderedReady") | Some("Parallel") => {}
        Some(p) => errs.push(FieldError::not_supported(
            sp.child("podManagementPolicy"),
            p,
            &["OrderedReady", "Parallel"],
        )),
    }
    match get(spec, "updateStrategy")
        .get("type")
        .and_then(Value::as_str)
    {
        None | Some("RollingUpdate") | Some("OnDelete") => {}
        Some(t) => errs.push(FieldError::not_supported(
            sp.child("updateStrategy").child("type"),
            t,
            &["OnDelete", "RollingUpdate"],
        )),
    }
    errs.extend(nonnegative(spec, "replicas", &sp));
    errs.extend(nonnegative(spec, "minReadySeconds", &sp));
    // Containers may mount the claims of `volumeClaimTemplates` (the controller adds them as
    // volumes of each pod), so they count as volumes of the template here.
    let claims: Vec<Value> = super::helpers::arr(spec, "volumeClaimTemplates")
        .iter()
        .map(|c| serde_json::json!({"name": s(get(c, "metadata"), "name")}))
        .collect();
    if claims.is_empty() {
        selector_and_template(spec, &sp, "statefulset", &mut errs);
    } else {
        let mut spec = spec.clone();
        if let Some(pspec) = spec
            .pointer_mut("/template/spec")
            .and_then(Value::as_object_mut)
        {
            let vols = pspec
                .entry("volumes")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(v) = vols.as_array_mut() {
                v.extend(claims);
            }
        }
        selector_and_template(&spec, &sp, "statefulset", &mut errs);
    }
    errs
}

/// Upstream `ValidateStatefulSetUpdate`: only replicas, ordinals, template, updateStrategy,
/// revisionHistoryLimit, persistentVolumeClaimRetentionPolicy and minReadySeconds may change.
pub fn validate_stateful_set_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_stateful_set(new);
    let strip = |v: &Value| {
        let mut spec = get(v, "spec").clone();
        if let Some(m) = spec.as_object_mut() {
            for f in [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ] {
                m.remove(f);
            }
        }
        spec
    };
    if strip(new) != strip(old) {
        errs.push(FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
    errs
}

/// Upstream `ValidateDaemonSetSpec`.
pub fn validate_daemon_set(obj: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    let mut errs = Vec::new();
    selector_and_template(spec, &sp, "daemonset", &mut errs);
    errs.extend(nonnegative(spec, "minReadySeconds", &sp));
    errs.extend(nonnegative(spec, "revisionHistoryLimit", &sp));
    match get(spec, "updateStrategy")
        .get("type")
        .and_then(Value::as_str)
    {
        None | Some("RollingUpdate") | Some("OnDelete") => {}
        Some(t) => errs.push(FieldError::not_supported(
            sp.child("updateStrategy").child("type"),
            t,
            &["OnDelete", "RollingUpdate"],
        )),
    }
    errs
}

/// Upstream `ValidateDaemonSetUpdate` (the selector is immutable).
pub fn validate_daemon_set_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_daemon_set(new);
    errs.extend(selector_immutable(new, old));
    errs
}

/// Upstream `validateJobSpec` at `sp` (`spec`, or `spec.jobTemplate.spec` for a CronJob).
fn validate_job_spec(spec: &Value, sp: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
    ] {
        errs.extend(nonnegative(spec, f, sp));
    }
    match spec.get("completionMode").and_then(Value::as_str) {
        None | Some("NonIndexed") | Some("Indexed") => {}
        Some(m) => errs.push(FieldError::not_supported(
            sp.child("completionMode"),
            m,
            &["NonIndexed", "Indexed"],
        )),
    }
    let sel = get(spec, "selector");
    if !sel.is_null() {
        errs.extend(validate_label_selector(sel, &sp.child("selector")));
    }
    template_rules(spec, sp, Controller::Job, &mut errs);
    errs
}

/// Upstream `ValidateJob` (spec part).
pub fn validate_job(obj: &Value) -> Vec<FieldError> {
    validate_job_spec(get(obj, "spec"), &Path::new("spec"))
}

/// Upstream `ValidateJobSpecUpdate`: selector, template (for unsuspended jobs),
/// completionMode and podFailurePolicy are immutable.
pub fn validate_job_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_job(new);
    let sp = Path::new("spec");
    for f in ["selector", "template", "completionMode", "podFailurePolicy"] {
        let p = format!("/spec/{f}");
        errs.extend(validate_immutable_field(
            new.pointer(&p),
            old.pointer(&p),
            &sp.child(f),
        ));
    }
    errs
}

/// Upstream `ValidateCronJobCreate` (spec part) including the 52-character name limit.
pub fn validate_cron_job(obj: &Value) -> Vec<FieldError> {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    let mut errs = Vec::new();
    let name = s(get(obj, "metadata"), "name");
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be no more than 52 characters",
        ));
    }
    let schedule = s(spec, "schedule");
    if schedule.is_empty() {
        errs.push(FieldError::required(sp.child("schedule"), ""));
    } else if schedule.contains("TZ") {
        errs.push(FieldError::invalid(
            sp.child("schedule"),
            schedule,
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    } else if let Err(e) = parse_standard(schedule) {
        errs.push(FieldError::invalid(sp.child("schedule"), schedule, &e));
    }
    if let Some(tz) = spec.get("timeZone").and_then(Value::as_str)
        && (tz.is_empty() || tz.contains(' ') || tz.starts_with('/') || tz.contains(".."))
    {
        errs.push(FieldError::invalid(
            sp.child("timeZone"),
            tz,
            &format!("unknown time zone {tz}"),
        ));
    }
    match spec.get("concurrencyPolicy").and_then(Value::as_str) {
        None | Some("Allow") | Some("Forbid") | Some("Replace") => {}
        Some(p) => errs.push(FieldError::not_supported(
            sp.child("concurrencyPolicy"),
            p,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        errs.extend(nonnegative(spec, f, &sp));
    }
    let jt = get(spec, "jobTemplate");
    errs.extend(validate_job_spec(
        get(jt, "spec"),
        &sp.child("jobTemplate").child("spec"),
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn deploy(sel: Value, labels: Value, restart: &str) -> Value {
        json!({"spec": {"replicas": 1, "selector": sel, "template": {
            "metadata": {"labels": labels},
            "spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "i"}]}}}})
    }

    #[test]
    fn deployment_rules() {
        let ok = deploy(
            json!({"matchLabels": {"app": "a"}}),
            json!({"app": "a"}),
            "Always",
        );
        assert!(validate_deployment(&ok).is_empty());
        let bad = deploy(
            json!({"matchLabels": {"app": "a"}}),
            json!({"app": "b"}),
            "Never",
        );
        assert_eq!(
            fields(&validate_deployment(&bad)),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ]
        );
        let mut neg = ok.clone();
        neg["spec"]["replicas"] = json!(-1);
        assert_eq!(
            fields(&validate_deployment(&neg)),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
        );
        let mut nosel = ok.clone();
        nosel["spec"].as_object_mut().map(|m| m.remove("selector"));
        assert_eq!(
            fields(&validate_deployment(&nosel)),
            vec!["spec.selector: Required value"]
        );
        let moved = deploy(
            json!({"matchLabels": {"app": "b"}}),
            json!({"app": "b"}),
            "Always",
        );
        let errs = validate_deployment_update(&moved, &ok);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.selector");
        assert_eq!(errs[0].detail, "field is immutable");
    }

    #[test]
    fn statefulset_claims_count_as_volumes() {
        let sts = json!({"spec": {"selector": {"matchLabels": {"app": "db"}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [
                {"name": "db", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}}}});
        assert!(validate_stateful_set(&sts).is_empty());
        let mut bad = sts.clone();
        bad["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("x");
        assert_eq!(
            validate_stateful_set(&bad)[0].field,
            "spec.template.spec.containers[0].volumeMounts[0].name"
        );
    }

    #[test]
    fn jobs() {
        let job = json!({"spec": {"template": {"spec": {"restartPolicy": "Always",
            "containers": [{"name": "c", "image": "i"}]}}}});
        assert_eq!(
            fields(&validate_job(&job)),
            vec![
                "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
            ]
        );
        let ok = json!({"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "i"}]}}}});
        let mut changed = ok.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j");
        let errs = validate_job_update(&changed, &ok);
        assert_eq!(errs[0].field, "spec.template");
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "* * *",
            "jobTemplate": {"spec": ok["spec"].clone()}}});
        assert_eq!(
            fields(&validate_cron_job(&cj)),
            vec![
                "spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]"
            ]
        );
    }
}

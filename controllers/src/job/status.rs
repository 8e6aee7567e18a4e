//! One sync of a Job (upstream `syncJob` + `trackJobStatusAndRemoveFinalizers`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobStatus, PodFailurePolicyRule, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use serde_json::json;

use super::{
    Ctx, Error, TRACKING_FINALIZER, backoff_delay, completion_index, create_pods, format_indexes,
    parse_indexes, regarding,
};
use crate::podutil::{self, controller_ref, is_ready, is_terminal};

const COMPLETIONS_REACHED: &str = "CompletionsReached";
const COMPLETIONS_MSG: &str = "Reached expected number of succeeded pods";

fn condition(status: &JobStatus, type_: &str) -> Option<JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .cloned()
}

fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    cstatus: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != cstatus || c.reason.as_deref() != Some(reason) {
            if c.status != cstatus {
                c.last_transition_time = Some(Time(now));
            }
            c.status = cstatus.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_probe_time = Some(Time(now));
        }
        return;
    }
    conds.push(JobCondition {
        type_: type_.into(),
        status: cstatus.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

fn has_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

/// upstream `matchPodFailurePolicy`: the action of the first matching rule and, for FailJob,
/// the message.
fn match_failure_policy(rules: &[PodFailurePolicyRule], pod: &Pod) -> Option<(String, String)> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let st = pod.status.as_ref();
    for (i, rule) in rules.iter().enumerate() {
        if let Some(on) = &rule.on_exit_codes {
            let statuses = st.into_iter().flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            });
            for cs in statuses {
                if on.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                    continue;
                }
                let Some(code) = cs
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code)
                else {
                    continue;
                };
                if code == 0 {
                    continue;
                }
                let listed = on.values.contains(&code);
                if (on.operator == "In") == listed {
                    let msg = format!(
                        "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                        cs.name, rule.action
                    );
                    return Some((rule.action.clone(), msg));
                }
            }
        }
        for pat in rule.on_pod_conditions.iter().flatten() {
            let want = pat.status.as_deref().unwrap_or("True");
            let found = st
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == pat.type_ && c.status == want));
            if found {
                let msg = format!(
                    "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                    pat.type_, rule.action
                );
                return Some((rule.action.clone(), msg));
            }
        }
    }
    None
}

async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<bool, Error> {
    let kept: Vec<String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TRACKING_FINALIZER)
        .cloned()
        .collect();
    let patch = json!({"metadata": {
        "finalizers": if kept.is_empty() { serde_json::Value::Null } else { json!(kept) },
        "resourceVersion": pod.metadata.resource_version,
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn write_status(job: &Job, status: JobStatus, ctx: &Ctx) -> Result<Job, Error> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let mut obj = job.clone();
    obj.status = Some(status);
    Ok(api
        .replace_status(&job.name_any(), &PostParams::default(), &obj)
        .await?)
}

/// Reconciles one Job.
pub async fn sync(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", job.name_any());
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| controller_ref(&p.metadata).is_some_and(|r| r.uid == uid))
        .collect();
    let mut job = (*job).clone();
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let finished =
        condition(&status, "Complete").is_some() || condition(&status, "Failed").is_some();
    if job.metadata.deletion_timestamp.is_some() || finished {
        // Nothing more to count: let every pod go.
        for p in pods.iter().filter(|p| has_finalizer(p)) {
            remove_finalizer(&pod_api, p).await?;
        }
        ctx.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let rules = spec
        .pod_failure_policy
        .as_ref()
        .map(|p| p.rules.clone())
        .unwrap_or_default();
    let mut completed: BTreeSet<i32> =
        parse_indexes(status.completed_indexes.as_deref().unwrap_or_default());
    let mut unc = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_ok: BTreeSet<String> = unc
        .succeeded
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut unc_fail: BTreeSet<String> =
        unc.failed.clone().unwrap_or_default().into_iter().collect();
    let failure_target = condition(&status, "FailureTarget");
    let success_met = condition(&status, "SuccessCriteriaMet");
    let mut fail_job: Option<(String, String)> = None;

    // 1. Finished pods still holding the finalizer are recorded as uncounted first.
    let mut newly = false;
    let mut releasable = Vec::new();
    for p in pods.iter().filter(|p| has_finalizer(p)) {
        let puid = p.metadata.uid.clone().unwrap_or_default();
        let deleting = p.metadata.deletion_timestamp.is_some();
        if !is_terminal(p) && !deleting {
            continue;
        }
        releasable.push(p.clone());
        if unc_ok.contains(&puid) || unc_fail.contains(&puid) {
            continue;
        }
        if podutil::phase(p) == "Succeeded" {
            if indexed {
                let Some(i) = completions.and_then(|c| completion_index(p, c)) else {
                    continue;
                };
                if !completed.insert(i) {
                    continue;
                }
            }
            unc_ok.insert(puid);
            newly = true;
        } else if failure_target.is_none() && success_met.is_none() {
            match match_failure_policy(&rules, p) {
                Some((action, _)) if action == "Ignore" => continue,
                Some((action, msg)) if action == "FailJob" => {
                    fail_job.get_or_insert(("PodFailurePolicy".into(), msg));
                }
                _ => {}
            }
            unc_fail.insert(puid);
            newly = true;
        }
    }
    let to_vec =
        |s: &BTreeSet<String>| (!s.is_empty()).then(|| s.iter().cloned().collect::<Vec<_>>());
    if newly {
        unc.succeeded = to_vec(&unc_ok);
        unc.failed = to_vec(&unc_fail);
        status.uncounted_terminated_pods = Some(unc.clone());
        if indexed {
            status.completed_indexes = Some(format_indexes(&completed));
        }
        job = write_status(&job, status.clone(), &ctx).await?;
    }
    // 2. Release their finalizers, then move them into the counters.
    let mut released: BTreeSet<String> = BTreeSet::new();
    for p in &releasable {
        if remove_finalizer(&pod_api, p).await? {
            released.extend(p.metadata.uid.clone());
        }
    }
    let gone = |u: &String| {
        released.contains(u)
            || !pods
                .iter()
                .any(|p| p.metadata.uid.as_ref() == Some(u) && has_finalizer(p))
    };
    let ok_counted: Vec<String> = unc_ok.iter().filter(|u| gone(u)).cloned().collect();
    let fail_counted: Vec<String> = unc_fail.iter().filter(|u| gone(u)).cloned().collect();
    status.succeeded =
        Some(status.succeeded.unwrap_or(0) + ok_counted.len() as i32).filter(|&n| n > 0);
    status.failed = Some(status.failed.unwrap_or(0) + fail_counted.len() as i32).filter(|&n| n > 0);
    for u in &ok_counted {
        unc_ok.remove(u);
    }
    for u in &fail_counted {
        unc_fail.remove(u);
    }
    {
        let mut backoff = ctx.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if !ok_counted.is_empty() {
            backoff.remove(&uid);
        }
        if !fail_counted.is_empty() {
            let e = backoff.entry(uid.clone()).or_insert((0, Instant::now()));
            e.0 += u32::try_from(fail_counted.len()).unwrap_or(u32::MAX);
            e.1 = Instant::now();
        }
    }
    unc.succeeded = to_vec(&unc_ok);
    unc.failed = to_vec(&unc_fail);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods { ..unc.clone() });

    let active: Vec<&Arc<Pod>> = pods.iter().filter(|p| podutil::is_active(p)).collect();
    let terminating = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !is_terminal(p))
        .count() as i32;
    let succeeded_total = status.succeeded.unwrap_or(0) + unc_ok.len() as i32;
    let failed_total = status.failed.unwrap_or(0) + unc_fail.len() as i32;

    // 3. Success and failure criteria.
    let mut failure_target = failure_target;
    let mut success_met = success_met;
    if failure_target.is_none() && success_met.is_none() {
        let started = status.start_time.as_ref().map(|t| t.0);
        let deadline_passed = spec
            .active_deadline_seconds
            .zip(started)
            .is_some_and(|(ads, s)| s.as_second() + ads <= now.as_second());
        let failure = if let Some(fj) = fail_job {
            Some(fj)
        } else if failed_total > backoff_limit {
            Some((
                "BackoffLimitExceeded".to_string(),
                "Job has reached the specified backoff limit".to_string(),
            ))
        } else if deadline_passed && spec.suspend != Some(true) {
            Some((
                "DeadlineExceeded".to_string(),
                "Job was active longer than specified deadline".to_string(),
            ))
        } else {
            None
        };
        if let Some((reason, msg)) = failure {
            set_condition(&mut status, "FailureTarget", "True", &reason, &msg, now);
            ctx.recorder.warning(&regarding(&job), &reason, msg).await;
            failure_target = condition(&status, "FailureTarget");
        } else {
            let done = if indexed {
                completions.is_some_and(|c| completed.len() as i32 >= c)
            } else {
                match completions {
                    Some(c) => succeeded_total >= c,
                    None => succeeded_total > 0 && active.is_empty(),
                }
            };
            if done {
                set_condition(
                    &mut status,
                    "SuccessCriteriaMet",
                    "True",
                    COMPLETIONS_REACHED,
                    COMPLETIONS_MSG,
                    now,
                );
                success_met = condition(&status, "SuccessCriteriaMet");
            }
        }
    }
    let terminal = failure_target.clone().or(success_met.clone());
    let suspended = spec.suspend == Some(true);
    let mut requeue: Option<Duration> = None;
    if terminal.is_some() || suspended {
        // Terminate what still runs.
        delete_pods(
            &job,
            &ctx,
            &active.iter().map(|p| p.as_ref()).collect::<Vec<_>>(),
        )
        .await?;
    }
    if let Some(t) = &terminal {
        let left = pods.iter().any(|p| {
            has_finalizer(p) && !released.contains(p.metadata.uid.as_deref().unwrap_or_default())
        });
        if !left
            && active.is_empty()
            && terminating == 0
            && unc_ok.is_empty()
            && unc_fail.is_empty()
        {
            let reason = t.reason.clone().unwrap_or_default();
            let msg = t.message.clone().unwrap_or_default();
            if failure_target.is_some() {
                set_condition(&mut status, "Failed", "True", &reason, &msg, now);
            } else {
                set_condition(&mut status, "Complete", "True", &reason, &msg, now);
                status.completion_time = Some(Time(now));
                ctx.recorder
                    .normal(&regarding(&job), "Completed", "Job completed".into())
                    .await;
            }
        } else {
            requeue = Some(Duration::from_secs(1));
        }
    } else if suspended {
        if condition(&status, "Suspended").is_none() {
            set_condition(
                &mut status,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
            ctx.recorder
                .normal(&regarding(&job), "Suspended", "Job suspended".into())
                .await;
        }
    } else {
        if condition(&status, "Suspended").is_some() {
            set_condition(
                &mut status,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
            status.start_time = None;
            ctx.recorder
                .normal(&regarding(&job), "Resumed", "Job resumed".into())
                .await;
        }
        if status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
        if let Some(ads) = spec.active_deadline_seconds {
            let start = status
                .start_time
                .as_ref()
                .map_or(now.as_second(), |t| t.0.as_second());
            let left = (start + ads - now.as_second()).max(0).unsigned_abs();
            requeue = Some(Duration::from_secs(left + 1));
        }
        // 4. Manage pods.
        if ctx.expectations.satisfied(&key) {
            let active_n = active.len() as i32;
            let want = if indexed {
                let c = completions.unwrap_or(0);
                (c - completed.len() as i32).clamp(0, parallelism)
            } else {
                match completions {
                    Some(c) => (c - succeeded_total).clamp(0, parallelism),
                    None if succeeded_total > 0 => active_n,
                    None => parallelism,
                }
            };
            if active_n > want {
                let excess = (active_n - want) as usize;
                let refs: Vec<&Pod> = active.iter().map(|p| p.as_ref()).collect();
                let victims = podutil::pods_to_delete(&refs, &[], excess, now);
                delete_pods(&job, &ctx, &victims).await?;
            } else if active_n < want {
                let wait = {
                    let backoff = ctx.backoff.lock().unwrap_or_else(|p| p.into_inner());
                    backoff
                        .get(&uid)
                        .and_then(|(n, at)| backoff_delay(*n).checked_sub(at.elapsed()))
                };
                match wait {
                    Some(w) if !w.is_zero() => requeue = Some(requeue.map_or(w, |r| r.min(w))),
                    _ => {
                        let indexes: Vec<Option<i32>> = if indexed {
                            let busy: BTreeSet<i32> = active
                                .iter()
                                .filter_map(|p| completions.and_then(|c| completion_index(p, c)))
                                .collect();
                            (0..completions.unwrap_or(0))
                                .filter(|i| !completed.contains(i) && !busy.contains(i))
                                .take((want - active_n) as usize)
                                .map(Some)
                                .collect()
                        } else {
                            vec![None; (want - active_n) as usize]
                        };
                        if let Err(e) = create_pods(&job, &ctx, indexes).await {
                            status.active = Some(active_n).filter(|&n| n > 0);
                            let _ = write_status(&job, status, &ctx).await;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }
    // 5. Counters.
    status.active = Some(active.len() as i32).filter(|&n| n > 0);
    status.ready = Some(active.iter().filter(|p| is_ready(p)).count() as i32);
    status.terminating = Some(terminating);
    if indexed {
        status.completed_indexes = Some(format_indexes(&completed));
    }
    if job.status.as_ref() != Some(&status) {
        write_status(&job, status, &ctx).await?;
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

async fn delete_pods(job: &Job, ctx: &Ctx, pods: &[&Pod]) -> Result<(), Error> {
    if pods.is_empty() {
        return Ok(());
    }
    let ns = job.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", job.name_any());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.expectations
        .expect_deletions(&key, pods.iter().filter_map(|p| p.metadata.uid.clone()));
    for p in pods {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: p.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&p.name_any(), &dp).await {
            Ok(_) => {
                ctx.recorder
                    .normal(
                        &regarding(job),
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", p.name_any()),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                ctx.expectations
                    .deletion_observed(&key, p.metadata.uid.as_deref().unwrap_or_default());
            }
            Err(e) => {
                ctx.expectations
                    .deletion_observed(&key, p.metadata.uid.as_deref().unwrap_or_default());
                return Err(e.into());
            }
        }
    }
    Ok(())
}

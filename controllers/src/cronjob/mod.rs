//! The CronJob controller (upstream `pkg/controller/cronjob`, the v2 controller): creates a Job
//! named `<cronjob>-<minutes since the epoch>` for the most recent unmet activation of the
//! schedule (in `spec.timeZone`, else the controller's zone), honouring `suspend`,
//! `startingDeadlineSeconds` and `concurrencyPolicy` (Allow / Forbid / Replace), tracks
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`, deletes finished Jobs beyond
//! the history limits, and sleeps until the next activation (no polling).

pub mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::events::Recorder;
use crate::informer::{Change, Informer};
use crate::podutil::controller_ref;
use schedule::{Schedule, most_recent};

/// The annotation with a Job's scheduled time (upstream `CronJobScheduledTimestampAnnotation`).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// How long after an activation the controller wakes (upstream `nextScheduleDelta`).
const NEXT_DELTA: Duration = Duration::from_millis(100);

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Shared state.
pub struct Ctx {
    client: Client,
    jobs: Store<Job>,
    recorder: Recorder,
}

/// Runs the controller.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let jobs = Informer::<Job>::spawn(Api::all(client.clone()));
    jobs.wait_until_ready().await;
    let api: Api<CronJob> = Api::all(client.clone());
    let controller = Controller::new(
        api,
        kube::runtime::watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        jobs: jobs.store(),
        recorder: Recorder::new(client, "cronjob-controller"),
    });
    let owner = |j: &Job| {
        controller_ref(&j.metadata)
            .filter(|r| r.kind == "CronJob" && r.api_version.starts_with("batch/"))
            .map(|r| ObjectRef::<CronJob>::new(&r.name).within(&j.namespace().unwrap_or_default()))
    };
    let job_refs = jobs.subscribe().flat_map(move |change| {
        let refs: Vec<ObjectRef<CronJob>> = match change {
            Change::Added(j) | Change::Deleted(j) => owner(&j).into_iter().collect(),
            Change::Updated(old, new) => owner(&new).into_iter().chain(owner(&old)).collect(),
            Change::Resync => store
                .state()
                .iter()
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect(),
        };
        futures::stream::iter(refs)
    });
    controller
        .reconcile_on(job_refs)
        .run(sync, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "cronjob reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy(cj: Arc<CronJob>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(cronjob = %cj.name_any(), error = %err, "cronjob sync failed");
    Action::requeue(Duration::from_secs(5))
}

fn regarding(cj: &CronJob) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("CronJob".into()),
        name: cj.metadata.name.clone(),
        namespace: cj.metadata.namespace.clone(),
        uid: cj.metadata.uid.clone(),
        resource_version: cj.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn job_ref(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Upstream `getFinishedStatus`: `Complete` or `Failed` when the Job finished.
pub fn finished(j: &Job) -> Option<&'static str> {
    let conds = j.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some("Complete"),
            "Failed" => Some("Failed"),
            _ => None,
        })
}

/// Upstream `getJobName`: `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cj: &str, scheduled: Timestamp) -> String {
    format!("{cj}-{}", scheduled.as_second().div_euclid(60))
}

/// The schedule's time zone: `spec.timeZone`, else the controller's.
fn time_zone(cj: &CronJob) -> Result<TimeZone, String> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        Some(name) => TimeZone::get(name).map_err(|e| e.to_string()),
        None => Ok(TimeZone::system()),
    }
}

/// Upstream `getJobFromTemplate2`.
pub fn job_for(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.name_any(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The reconcile function (upstream `sync`: `syncCronJob`, `cleanupFinishedJobs`, status).
async fn sync(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ctx = ctx.as_ref();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let jobs: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.namespace() == cj.namespace())
        .filter(|j| controller_ref(&j.metadata).is_some_and(|r| r.uid == uid))
        .collect();
    let mut status = cj.status.clone().unwrap_or_default();
    let (next, mut changed) = sync_cron_job(&cj, &jobs, &mut status, ctx).await?;
    changed |= cleanup_finished(&cj, &jobs, &mut status, ctx).await?;
    if changed {
        let api: Api<CronJob> =
            Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
        let mut obj = (*cj).clone();
        obj.status = Some(status);
        match api
            .replace_status(&cj.name_any(), &PostParams::default(), &obj)
            .await
        {
            Ok(_) => {}
            // Changed meanwhile: the watch brings the new version and another sync.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(match next {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Time from `now` until the activation after the most recent one, plus upstream's delta.
fn next_wakeup(cj: &CronJob, sched: &Schedule, now: Timestamp, tz: &TimeZone) -> Option<Duration> {
    let earliest = earliest_time(cj, None);
    let base = most_recent(sched, earliest, now, tz).0.unwrap_or(earliest);
    let next = sched.next(base, tz)?;
    let d = next.duration_since(now).max(jiff::SignedDuration::ZERO);
    Some(Duration::try_from(d).unwrap_or(Duration::ZERO) + NEXT_DELTA)
}

fn earliest_time(cj: &CronJob, now_for_deadline: Option<Timestamp>) -> Timestamp {
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    if let (Some(now), Some(sds)) = (
        now_for_deadline,
        cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds),
    ) && let Ok(deadline) = now.checked_sub(jiff::SignedDuration::from_secs(sds))
        && deadline > earliest
    {
        earliest = deadline;
    }
    earliest
}

/// Upstream `syncCronJob`: returns when to wake next and whether status changed.
async fn sync_cron_job(
    cj: &CronJob,
    jobs: &[Arc<Job>],
    status: &mut CronJobStatus,
    ctx: &Ctx,
) -> Result<(Option<Duration>, bool), Error> {
    let now = Timestamp::now();
    let reg = regarding(cj);
    let mut changed = false;
    let mut active = status.active.take().unwrap_or_default();
    let children: HashSet<String> = jobs.iter().filter_map(|j| j.metadata.uid.clone()).collect();
    for j in jobs {
        let juid = j.metadata.uid.clone().unwrap_or_default();
        let found = active
            .iter()
            .any(|r| r.uid.as_deref() == Some(juid.as_str()));
        let fin = finished(j);
        if !found && fin.is_none() {
            ctx.recorder
                .warning(
                    &reg,
                    "UnexpectedJob",
                    format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        j.name_any()
                    ),
                )
                .await;
        } else if found && let Some(cond) = fin {
            active.retain(|r| r.uid.as_deref() != Some(juid.as_str()));
            ctx.recorder
                .normal(
                    &reg,
                    "SawCompletedJob",
                    format!("Saw completed job: {}, condition: {cond}", j.name_any()),
                )
                .await;
            changed = true;
        }
        if fin == Some("Complete")
            && let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.clone())
            && status
                .last_successful_time
                .as_ref()
                .is_none_or(|t| t.0 < done.0)
        {
            status.last_successful_time = Some(done);
            changed = true;
        }
    }
    // Active Jobs that are gone (checked against the API: the informer may lag).
    let mut missing = Vec::new();
    for r in &active {
        if r.uid.as_ref().is_some_and(|u| children.contains(u)) {
            continue;
        }
        let api: Api<Job> = Api::namespaced(
            ctx.client.clone(),
            r.namespace.as_deref().unwrap_or_default(),
        );
        let name = r.name.clone().unwrap_or_default();
        if api
            .get_opt(&name)
            .await?
            .is_none_or(|j| j.metadata.uid != r.uid)
        {
            ctx.recorder
                .normal(
                    &reg,
                    "MissingJob",
                    format!("Active job went missing: {name}"),
                )
                .await;
            missing.push(r.uid.clone());
        }
    }
    if !missing.is_empty() {
        active.retain(|r| !missing.contains(&r.uid));
        changed = true;
    }
    status.active = (!active.is_empty()).then_some(active);
    let spec = cj.spec.clone().unwrap_or_default();
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok((None, changed));
    }
    let tz = match time_zone(cj) {
        Ok(tz) => tz,
        Err(e) => {
            let name = spec.time_zone.clone().unwrap_or_default();
            ctx.recorder
                .warning(
                    &reg,
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {e}"),
                )
                .await;
            return Ok((None, changed));
        }
    };
    if spec.suspend == Some(true) {
        return Ok((None, changed));
    }
    let sched = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            ctx.recorder
                .warning(
                    &reg,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                )
                .await;
            return Ok((None, changed));
        }
    };
    // The view of the CronJob with the status as it stands now.
    let mut view = cj.clone();
    view.status = Some(status.clone());
    let (scheduled, missed) = most_recent(&sched, earliest_time(&view, Some(now)), now, &tz);
    if missed > 100 {
        ctx.recorder
            .warning(
                &reg,
                "TooManyMissedTimes",
                format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
            )
            .await;
    }
    let wake = next_wakeup(&view, &sched, now, &tz);
    let Some(scheduled) = scheduled else {
        return Ok((wake, changed));
    };
    if let Some(sds) = spec.starting_deadline_seconds
        && scheduled
            .checked_add(jiff::SignedDuration::from_secs(sds))
            .is_ok_and(|t| t < now)
    {
        ctx.recorder
            .warning(
                &reg,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000")
                ),
            )
            .await;
        return Ok((wake, changed));
    }
    let name = job_name(&cj.name_any(), scheduled);
    let active = status.active.clone().unwrap_or_default();
    if active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || status
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 == scheduled)
    {
        return Ok((wake, changed));
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        ctx.recorder
            .normal(
                &reg,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            )
            .await;
        return Ok((wake, changed));
    }
    let ns = cj.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    if policy == "Replace" {
        for r in &active {
            let jname = r.name.clone().unwrap_or_default();
            delete_job(cj, &api, &jname, ctx).await?;
            status
                .active
                .get_or_insert_with(Vec::new)
                .retain(|a| a.uid != r.uid);
            changed = true;
        }
    }
    let job = job_for(cj, scheduled, &tz);
    let created = match api.create(&PostParams::default(), &job).await {
        Ok(j) => {
            ctx.recorder
                .normal(
                    &reg,
                    "SuccessfulCreate",
                    format!("Created job {}", j.name_any()),
                )
                .await;
            j
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&name).await?;
            let ours = controller_ref(&existing.metadata)
                .is_some_and(|r| r.uid == cj.metadata.uid.clone().unwrap_or_default());
            let listed = status
                .active
                .iter()
                .flatten()
                .any(|r| r.uid == existing.metadata.uid);
            if !ours || listed {
                return Ok((wake, changed));
            }
            existing
        }
        Err(e) => {
            let msg = match &e {
                kube::Error::Api(s) => s.message.clone(),
                other => other.to_string(),
            };
            ctx.recorder
                .warning(&reg, "FailedCreate", format!("Error creating job: {msg}"))
                .await;
            return Err(e.into());
        }
    };
    status
        .active
        .get_or_insert_with(Vec::new)
        .push(job_ref(&created));
    status.last_schedule_time = Some(Time(scheduled));
    view.status = Some(status.clone());
    Ok((next_wakeup(&view, &sched, now, &tz), true))
}

async fn delete_job(cj: &CronJob, api: &Api<Job>, name: &str, ctx: &Ctx) -> Result<(), Error> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            ctx.recorder
                .normal(
                    &regarding(cj),
                    "SuccessfulDelete",
                    format!("Deleted job {name}"),
                )
                .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => {
            let msg = match &e {
                kube::Error::Api(s) => s.message.clone(),
                other => other.to_string(),
            };
            ctx.recorder
                .warning(
                    &regarding(cj),
                    "FailedDelete",
                    format!("Deleted job: {msg}"),
                )
                .await;
            Err(e.into())
        }
    }
}

/// Upstream `cleanupFinishedJobs` + `removeOldestJobs`: finished Jobs beyond the history
/// limits, oldest start time first.
async fn cleanup_finished(
    cj: &CronJob,
    jobs: &[Arc<Job>],
    status: &mut CronJobStatus,
    ctx: &Ctx,
) -> Result<bool, Error> {
    let spec = cj.spec.clone().unwrap_or_default();
    if spec.successful_jobs_history_limit.is_none() && spec.failed_jobs_history_limit.is_none() {
        return Ok(false);
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    let mut changed = false;
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| finished(j) == Some(kind) && j.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = done
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        if excess == 0 {
            continue;
        }
        // upstream `byJobStartTime`: no start time last, then by name.
        done.sort_by(|a, b| {
            let start = |j: &Job| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
            };
            match (start(a), start(b)) {
                (Some(x), Some(y)) if x != y => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.name_any().cmp(&b.name_any()),
            }
        });
        for j in done.into_iter().take(excess) {
            delete_job(cj, &api, &j.name_any(), ctx).await?;
            if let Some(a) = status.active.as_mut() {
                a.retain(|r| r.uid != j.metadata.uid);
            }
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_are_named_by_minute_and_annotated_in_the_time_zone() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "report", "namespace": "ns", "uid": "cj-uid"},
            "spec": {"schedule": "0 9 * * *", "timeZone": "Etc/UTC",
                "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                    "spec": {"template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}]}}}}}
        }))
        .unwrap_or_default();
        let t: Timestamp = "2026-01-10T09:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let j = job_for(&cj, t, &TimeZone::UTC);
        assert_eq!(j.metadata.name.as_deref(), Some("report-29467260"));
        let a = j.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(a[SCHEDULED_TIMESTAMP], "2026-01-10T09:00:00Z");
        assert_eq!(j.metadata.labels.clone().unwrap_or_default()["team"], "a");
        let owner = &j.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("CronJob", Some(true))
        );
        if let Ok(tokyo) = TimeZone::get("Asia/Tokyo") {
            let j = job_for(&cj, t, &tokyo);
            let a = j.metadata.annotations.unwrap_or_default();
            assert_eq!(a[SCHEDULED_TIMESTAMP], "2026-01-10T18:00:00+09:00");
        }
    }
}

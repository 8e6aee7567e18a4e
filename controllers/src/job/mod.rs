//! The Job controller (upstream `pkg/controller/job`): runs pods until `completions` succeed
//! (NonIndexed or Indexed), `parallelism` at a time, retrying failures with exponential
//! back-off up to `backoffLimit`, honouring `activeDeadlineSeconds`, `suspend` and
//! `podFailurePolicy`; counts finished pods through the `batch.kubernetes.io/job-tracking`
//! finalizer and `status.uncountedTerminatedPods` so no pod is counted twice or lost, and
//! reports the 1.35 conditions (`SuccessCriteriaMet`/`FailureTarget` first, then
//! `Complete`/`Failed` once every pod has terminated).

mod status;
pub mod ttl;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::events::Recorder;
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::podutil::controller_ref;

/// The finalizer that keeps a finished pod until the Job counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label with a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// upstream `DefaultJobPodFailureBackOff`.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// upstream `MaxJobPodFailureBackOff`.
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// Creating pods failed.
    #[error("{0}")]
    Create(String),
}

/// Shared state.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    expectations: Expectations,
    recorder: Recorder,
    /// Per Job UID: failures since the last success and when the last one was counted
    /// (upstream `backoffRecord`).
    backoff: Mutex<HashMap<String, (u32, Instant)>>,
}

/// The back-off before a new pod after `failures` consecutive failures: 10 s·2^(n-1), at most
/// 6 minutes (upstream `getRemainingTime`).
pub fn backoff_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

/// Runs the controller.
pub async fn run(client: Client, pods: Informer<Pod>) -> anyhow::Result<()> {
    let api: Api<Job> = Api::all(client.clone());
    let controller = Controller::new(
        api,
        kube::runtime::watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        expectations: Expectations::default(),
        recorder: Recorder::new(client, "job-controller"),
        backoff: Mutex::new(HashMap::new()),
    });
    let ctx2 = ctx.clone();
    let pod_refs = pods.subscribe().flat_map(move |change| {
        let owner = |p: &Pod| {
            controller_ref(&p.metadata)
                .filter(|r| r.kind == "Job" && r.api_version.starts_with("batch/"))
                .map(|r| {
                    (
                        format!("{}/{}", p.namespace().unwrap_or_default(), r.name),
                        ObjectRef::<Job>::new(&r.name).within(&p.namespace().unwrap_or_default()),
                    )
                })
        };
        let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
        let refs: Vec<ObjectRef<Job>> = match change {
            Change::Added(p) => owner(&p)
                .map(|(k, r)| {
                    if p.metadata.deletion_timestamp.is_some() {
                        ctx2.expectations.deletion_observed(&k, &uid(&p));
                    } else {
                        ctx2.expectations.creation_observed(&k);
                    }
                    r
                })
                .into_iter()
                .collect(),
            Change::Updated(_, p) => owner(&p)
                .map(|(k, r)| {
                    if p.metadata.deletion_timestamp.is_some() {
                        ctx2.expectations.deletion_observed(&k, &uid(&p));
                    }
                    r
                })
                .into_iter()
                .collect(),
            Change::Deleted(p) => owner(&p)
                .map(|(k, r)| {
                    ctx2.expectations.deletion_observed(&k, &uid(&p));
                    r
                })
                .into_iter()
                .collect(),
            Change::Resync => store
                .state()
                .iter()
                .map(|j| ObjectRef::from_obj(j.as_ref()))
                .collect(),
        };
        futures::stream::iter(refs)
    });
    controller
        .reconcile_on(pod_refs)
        .run(status::sync, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "job reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy(job: Arc<Job>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(job = %job.name_any(), error = %err, "job sync failed");
    Action::requeue(Duration::from_secs(1))
}

fn regarding(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// The pod for a Job (upstream `getPodFromTemplate` + `addCompletionIndexEnvVariables` and
/// the tracking finalizer): `index` for Indexed Jobs.
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.clone().unwrap_or_default();
    let name = job.name_any();
    let mut labels = tmeta.labels.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let generate_name = match index {
        Some(i) => {
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            if spec.subdomain.is_some() && spec.hostname.is_none() {
                spec.hostname = Some(format!("{name}-{i}"));
            }
            let env = k8s_openapi::api::core::v1::EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                    field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                    }),
                    ..Default::default()
                }),
            };
            for c in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                let envs = c.env.get_or_insert_with(Vec::new);
                if !envs.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                    envs.push(env.clone());
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name,
                uid: job.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// A pod's completion index (annotation), if valid for `completions`.
pub fn completion_index(pod: &Pod, completions: i32) -> Option<i32> {
    let v = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    let i: i32 = v.parse().ok()?;
    (0..completions).contains(&i).then_some(i)
}

/// Parses `status.completedIndexes` (`"1,3-5,7"`).
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    // Bounded by the Job's completions when used; cap the expansion anyway.
                    out.extend((a..=b).take(100_000));
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.insert(a);
                }
            }
        }
    }
    out
}

/// Formats indexes as upstream does (`"1,3-5,7"`).
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

async fn create_pods(job: &Job, ctx: &Ctx, indexes: Vec<Option<i32>>) -> Result<usize, Error> {
    let key = format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    ctx.expectations.expect_creations(&key, indexes.len());
    let pp = PostParams::default();
    let results = futures::future::join_all(indexes.iter().map(|i| {
        let pod = pod_for(job, *i);
        let api = api.clone();
        let pp = pp.clone();
        async move { api.create(&pp, &pod).await }
    }))
    .await;
    let mut created = 0;
    let mut err = None;
    for r in results {
        match r {
            Ok(p) => {
                created += 1;
                ctx.recorder
                    .normal(
                        &regarding(job),
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    )
                    .await;
            }
            Err(e) => {
                ctx.expectations.creation_observed(&key);
                let msg = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                ctx.recorder
                    .warning(
                        &regarding(job),
                        "FailedCreate",
                        format!("Error creating: {msg}"),
                    )
                    .await;
                err.get_or_insert(msg);
            }
        }
    }
    match err {
        Some(e) => Err(Error::Create(e)),
        None => Ok(created),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        assert_eq!(backoff_delay(0), Duration::ZERO);
        assert_eq!(backoff_delay(1), Duration::from_secs(10));
        assert_eq!(backoff_delay(2), Duration::from_secs(20));
        assert_eq!(backoff_delay(3), Duration::from_secs(40));
        assert_eq!(backoff_delay(6), Duration::from_secs(320));
        assert_eq!(backoff_delay(7), Duration::from_secs(360));
        assert_eq!(backoff_delay(60), Duration::from_secs(360));
    }

    #[test]
    fn completed_indexes_round_trip() {
        let s = parse_indexes("0,2-4,7");
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4, 7]);
        assert_eq!(format_indexes(&s), "0,2-4,7");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }
}

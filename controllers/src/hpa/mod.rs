//! The HorizontalPodAutoscaler controller (upstream `pkg/controller/podautoscaler`), for
//! `autoscaling/v2`: every sync period (15 s) it reads the target's `scale` subresource, keeps
//! the replica count within `minReplicas`/`maxReplicas`, and computes a replica count from
//! `Resource` / `ContainerResource` metrics read from the `metrics.k8s.io` API when one is
//! registered (APIService). Without a metrics API it reports what upstream reports on a cluster
//! without metrics-server: `ScalingActive=False` with reason `FailedGetResourceMetric` and the
//! `FailedGetResourceMetric` / `FailedComputeMetricsReplicas` events.
//!
//! Normalisation follows upstream without `behavior` (5-minute downscale stabilisation, scale-up
//! limit `max(2 × current, 4)`); with `behavior`, its stabilisation windows and `selectPolicy:
//! Disabled` are honoured, rate policies (`policies`) are not yet (noted in issue 9).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::{Action, Controller};
use kube::{Client, Resource, ResourceExt};

use crate::events::Recorder;
use crate::podutil::is_ready;

mod calc;

pub use calc::{PodSample, Target, replicas_for};

/// upstream `--horizontal-pod-autoscaler-sync-period`.
const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// upstream `--horizontal-pod-autoscaler-downscale-stabilization`.
const DOWNSCALE_WINDOW: Duration = Duration::from_secs(300);

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The target's scale could not be read or written (reported in the conditions).
    #[error("{0}")]
    Scale(String),
}

struct Ctx {
    client: Client,
    events: Recorder,
    /// Recent recommendations per HPA (upstream `recommendations`), for stabilisation.
    recommendations: Mutex<HashMap<String, Vec<(i32, Instant)>>>,
    /// When each HPA was last synced, at which generation: upstream's queue is rate-limited to
    /// one sync per period, so the controller's own status writes do not trigger another.
    last_sync: Mutex<HashMap<String, (Instant, Option<i64>)>>,
    /// Discovered API resources of scale targets by `apiVersion/kind` (one discovery request
    /// per kind, not one per sync).
    resources: Mutex<HashMap<String, ApiResource>>,
}

/// Runs the controller.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let api: Api<HorizontalPodAutoscaler> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        events: Recorder::new(client.clone(), "horizontal-pod-autoscaler"),
        client,
        recommendations: Mutex::new(HashMap::new()),
        last_sync: Mutex::new(HashMap::new()),
        resources: Mutex::new(HashMap::new()),
    });
    Controller::new(
        api,
        kube::runtime::watcher::Config::default().any_semantic(),
    )
    .run(reconcile, error_policy, ctx)
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "hpa reconcile");
        }
    })
    .await;
    Ok(())
}

fn error_policy(hpa: Arc<HorizontalPodAutoscaler>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(hpa = %hpa.name_any(), error = %err, "hpa sync failed");
    Action::requeue(SYNC_PERIOD)
}

fn set_condition(
    status: &mut HorizontalPodAutoscalerStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let value = if ok { "True" } else { "False" };
    let now = Time(Timestamp::now());
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now);
            }
            c.status = value.into();
            c.reason = Some(reason.into());
            c.message = Some(message);
        }
        None => conds.push(HorizontalPodAutoscalerCondition {
            type_: type_.into(),
            status: value.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(now),
        }),
    }
}

/// The `scale` subresource of the target, with the API resource it lives on.
async fn target_scale(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
) -> Result<(Api<DynamicObject>, k8s_openapi::api::autoscaling::v1::Scale), String> {
    let spec = hpa.spec.as_ref().ok_or("no spec")?;
    let r = &spec.scale_target_ref;
    let av = r.api_version.clone().unwrap_or_else(|| "v1".into());
    let (group, version) = match av.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), av.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
    let client = &ctx.client;
    let key = format!("{av}/{}", r.kind);
    let cached = ctx
        .resources
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
        .cloned();
    let ar = match cached {
        Some(ar) => ar,
        None => {
            let (ar, _caps): (ApiResource, _) = kube::discovery::pinned_kind(client, &gvk)
                .await
                .map_err(|_| format!("no matches for kind \"{}\" in group \"{group}\"", r.kind))?;
            ctx.resources
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key.clone(), ar.clone());
            ar
        }
    };
    let ns = hpa.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let scale = api.get_scale(&r.name).await.map_err(|e| {
        // The kind may have gone (a CRD deleted or changed): discover it again next time.
        ctx.resources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
        match e {
            kube::Error::Api(s) => s.message,
            e => e.to_string(),
        }
    })?;
    Ok((api, scale))
}

/// What one metric spec proposes.
struct Proposal {
    replicas: i32,
    name: String,
    status: MetricStatus,
}

/// Per-pod usage from `metrics.k8s.io` (milli-units of `resource`, per container).
async fn pod_metrics(
    client: &Client,
    ns: &str,
    selector: &str,
    resource: &str,
) -> Result<BTreeMap<String, BTreeMap<String, i128>>, String> {
    let uri = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector={}",
        query_escape(selector)
    );
    let req = http::Request::get(uri)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let list: serde_json::Value = client.request(req).await.map_err(|e| {
        let inner = match e {
            kube::Error::Api(s) if s.code == 404 => {
                "the server could not find the requested resource (get pods.metrics.k8s.io)".into()
            }
            kube::Error::Api(s) => s.message,
            e => e.to_string(),
        };
        format!(
            "unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {inner}"
        )
    })?;
    let mut out = BTreeMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut per_container = BTreeMap::new();
        for c in item["containers"].as_array().into_iter().flatten() {
            let usage = c["usage"][resource]
                .as_str()
                .and_then(ferrokube_machinery::quota::parse_milli)
                .unwrap_or(0);
            per_container.insert(c["name"].as_str().unwrap_or("").to_string(), usage);
        }
        out.insert(name, per_container);
    }
    if out.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    Ok(out)
}

/// Percent-encodes a query parameter value.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// upstream `computeStatusForResourceMetric` (and the container variant).
async fn resource_proposal(
    ctx: &Ctx,
    ns: &str,
    selector: &str,
    current: i32,
    resource: &str,
    container: Option<&str>,
    target: &k8s_openapi::api::autoscaling::v2::MetricTarget,
) -> Result<Proposal, String> {
    let metrics = pod_metrics(&ctx.client, ns, selector, resource).await?;
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("unable to get pods while calculating replica count: {e}"))?;
    let mut samples = Vec::new();
    for p in &pods.items {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if p.metadata.deletion_timestamp.is_some() || phase == Some("Failed") {
            continue;
        }
        let name = p.name_any();
        let mut request = 0i128;
        for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            let r = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| ferrokube_machinery::quota::parse_milli(&q.0));
            match r {
                Some(v) => request += v,
                None if matches!(target.type_.as_str(), "Utilization") => {
                    return Err(format!(
                        "missing request for {resource} in container {} of Pod {name}",
                        c.name
                    ));
                }
                None => {}
            }
        }
        let usage = metrics.get(&name).map(|cs| {
            cs.iter()
                .filter(|(c, _)| container.is_none_or(|want| want == c.as_str()))
                .map(|(_, v)| *v)
                .sum::<i128>()
        });
        samples.push(PodSample {
            ready: is_ready(p),
            pending: phase == Some("Pending"),
            usage,
            request,
        });
    }
    let t = match (
        target.type_.as_str(),
        target.average_utilization,
        &target.average_value,
    ) {
        ("Utilization", Some(u), _) => Target::Utilization(u),
        ("AverageValue", _, Some(v)) => Target::AverageValue(
            ferrokube_machinery::quota::parse_milli(&v.0).ok_or("invalid averageValue")?,
        ),
        _ => {
            return Err(format!(
                "invalid resource metric source: neither a utilization target nor a value target was set for {resource}"
            ));
        }
    };
    let out = replicas_for(current, &samples, t).map_err(|e| e.to_string())?;
    let name = match t {
        Target::Utilization(_) => {
            format!("{resource} resource utilization (percentage of request)")
        }
        Target::AverageValue(_) => format!("{resource} resource"),
    };
    let current_value = MetricValueStatus {
        average_utilization: out.utilization,
        average_value: Some(Quantity(ferrokube_machinery::quota::format_milli(
            out.average_usage,
            false,
        ))),
        value: None,
    };
    let status = match container {
        Some(c) => MetricStatus {
            type_: "ContainerResource".into(),
            container_resource: Some(
                k8s_openapi::api::autoscaling::v2::ContainerResourceMetricStatus {
                    name: resource.into(),
                    container: c.into(),
                    current: current_value,
                },
            ),
            ..Default::default()
        },
        None => MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: resource.into(),
                current: current_value,
            }),
            ..Default::default()
        },
    };
    Ok(Proposal {
        replicas: out.replicas,
        name,
        status,
    })
}

/// upstream `computeReplicasForMetrics`: the largest proposal, or the first error when every
/// metric failed (with the condition that error sets).
async fn compute_for_metrics(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    status: &mut HorizontalPodAutoscalerStatus,
    regarding: &ObjectReference,
    selector: &str,
    current: i32,
) -> Result<(i32, String, Vec<MetricStatus>), String> {
    let ns = hpa.namespace().unwrap_or_default();
    let default_metric = [MetricSpec {
        type_: "Resource".into(),
        resource: Some(k8s_openapi::api::autoscaling::v2::ResourceMetricSource {
            name: "cpu".into(),
            target: k8s_openapi::api::autoscaling::v2::MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(80),
                ..Default::default()
            },
        }),
        ..Default::default()
    }];
    let specs: &[MetricSpec] = match hpa.spec.as_ref().and_then(|s| s.metrics.as_deref()) {
        Some(m) if !m.is_empty() => m,
        _ => &default_metric,
    };
    let mut best: Option<(i32, String)> = None;
    let mut statuses = Vec::new();
    let mut first_err: Option<(String, String)> = None;
    let mut invalid = 0;
    for spec in specs {
        let outcome = match (spec.type_.as_str(), &spec.resource, &spec.container_resource) {
            ("Resource", Some(r), _) => resource_proposal(
                ctx, &ns, selector, current, &r.name, None, &r.target,
            )
            .await
            .map_err(|e| {
                (
                    "FailedGetResourceMetric",
                    format!("failed to get {} utilization: {e}", r.name),
                )
            }),
            ("ContainerResource", _, Some(r)) => resource_proposal(
                ctx,
                &ns,
                selector,
                current,
                &r.name,
                Some(&r.container),
                &r.target,
            )
            .await
            .map_err(|e| {
                (
                    "FailedGetContainerResourceMetric",
                    format!("failed to get {} container metric value: {e}", r.name),
                )
            }),
            ("Pods", ..) => Err((
                "FailedGetPodsMetric",
                "unable to get metric: unable to fetch metrics from custom metrics API: the server could not find the metric for pods".to_string(),
            )),
            ("Object", ..) => Err((
                "FailedGetObjectMetric",
                "unable to get metric: unable to fetch metrics from custom metrics API: the server could not find the requested resource".to_string(),
            )),
            ("External", ..) => Err((
                "FailedGetExternalMetric",
                "unable to get external metric: unable to fetch metrics from external metrics API: the server could not find the requested resource".to_string(),
            )),
            (other, ..) => Err((
                "InvalidMetricSourceType",
                format!("unknown metric source type \"{other}\""),
            )),
        };
        match outcome {
            Ok(p) => {
                if best.as_ref().is_none_or(|(r, _)| p.replicas > *r) {
                    best = Some((p.replicas, p.name));
                }
                statuses.push(p.status);
            }
            Err((reason, e)) => {
                invalid += 1;
                ctx.events.warning(regarding, reason, e.clone()).await;
                if first_err.is_none() {
                    first_err = Some((reason.to_string(), e));
                }
            }
        }
    }
    let Some((reason, e)) = first_err else {
        let (r, name) = best.unwrap_or((current, String::new()));
        return Ok((r, name, statuses));
    };
    set_condition(
        status,
        "ScalingActive",
        false,
        &reason,
        format!("the HPA was unable to compute the replica count: {e}"),
    );
    if invalid == specs.len() {
        return Err(format!(
            "invalid metrics ({invalid} invalid out of {}), first error is: {e}",
            specs.len()
        ));
    }
    // Some metrics worked: upstream still scales up from them, never down.
    let (r, name) = best.unwrap_or((current, String::new()));
    Ok((r.max(current), name, statuses))
}

/// upstream `convertDesiredReplicasWithRules`.
fn with_rules(current: i32, desired: i32, min: i32, max: i32) -> (i32, &'static str, &'static str) {
    let scale_up_limit = (2 * current).max(4);
    let (max_allowed, cond, reason) = if max > scale_up_limit {
        (
            scale_up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    } else {
        (
            max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    };
    if desired < min {
        (
            min,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        )
    } else if desired > max_allowed {
        (max_allowed, cond, reason)
    } else {
        (
            desired,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    }
}

/// Stabilisation (upstream `stabilizeRecommendation[WithBehaviors]`): the highest recent
/// recommendation within the downscale window (the lowest within the scale-up window).
fn stabilize(ctx: &Ctx, key: &str, desired: i32, hpa: &HorizontalPodAutoscaler) -> i32 {
    let behavior = hpa.spec.as_ref().and_then(|s| s.behavior.as_ref());
    let window = |rules: Option<&k8s_openapi::api::autoscaling::v2::HPAScalingRules>, d: u64| {
        Duration::from_secs(
            rules
                .and_then(|r| r.stabilization_window_seconds)
                .map_or(d, |s| u64::try_from(s).unwrap_or(0)),
        )
    };
    let down = window(
        behavior.and_then(|b| b.scale_down.as_ref()),
        DOWNSCALE_WINDOW.as_secs(),
    );
    let up = window(behavior.and_then(|b| b.scale_up.as_ref()), 0);
    let now = Instant::now();
    let mut map = ctx
        .recommendations
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.retain(|_, recs| {
        recs.iter()
            .any(|(_, t)| now.duration_since(*t) <= 4 * DOWNSCALE_WINDOW)
    });
    let recs = map.entry(key.to_string()).or_default();
    recs.retain(|(_, t)| now.duration_since(*t) <= down.max(up));
    let up_floor = recs
        .iter()
        .filter(|(_, t)| now.duration_since(*t) <= up)
        .map(|(r, _)| *r)
        .chain([desired])
        .min()
        .unwrap_or(desired);
    let down_ceiling = recs
        .iter()
        .filter(|(_, t)| now.duration_since(*t) <= down)
        .map(|(r, _)| *r)
        .chain([desired])
        .max()
        .unwrap_or(desired);
    recs.push((desired, now));
    desired.clamp(up_floor, down_ceiling.max(up_floor))
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = hpa.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", hpa.name_any());
    {
        let mut last = ctx
            .last_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if let Some((at, generation)) = last.get(&key)
            && *generation == hpa.metadata.generation
            && now.duration_since(*at) < SYNC_PERIOD
        {
            return Ok(Action::requeue(SYNC_PERIOD - now.duration_since(*at)));
        }
        // HPAs that stopped syncing (deleted) are forgotten.
        last.retain(|_, (t, _)| now.duration_since(*t) < 4 * DOWNSCALE_WINDOW);
        last.insert(key.clone(), (now, hpa.metadata.generation));
    }
    let regarding = hpa.object_ref(&());
    let spec = hpa.spec.clone().unwrap_or_default();
    let original = hpa.status.clone().unwrap_or_default();
    let mut status = original.clone();
    let reference = format!(
        "{}/{ns}/{}",
        spec.scale_target_ref.kind, spec.scale_target_ref.name
    );

    let (scale_api, mut scale) = match target_scale(&ctx, &hpa).await {
        Ok(s) => s,
        Err(e) => {
            ctx.events
                .warning(&regarding, "FailedGetScale", e.clone())
                .await;
            set_condition(
                &mut status,
                "AbleToScale",
                false,
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {e}"),
            );
            write_status(&ctx, &hpa, &original, status).await?;
            return Err(Error::Scale(format!(
                "failed to query scale subresource for {reference}: {e}"
            )));
        }
    };
    set_condition(
        &mut status,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let selector = scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();

    let mut rescale = true;
    let mut desired = 0;
    let mut reason = String::new();
    let mut metric_statuses = None;
    if current == 0 && min != 0 {
        rescale = false;
        set_condition(
            &mut status,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
        );
    } else if current > max {
        reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
    } else if current < min {
        reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
    } else {
        match compute_for_metrics(&ctx, &hpa, &mut status, &regarding, &selector, current).await {
            Err(e) => {
                status.current_replicas = Some(current);
                write_status(&ctx, &hpa, &original, status).await?;
                ctx.events
                    .warning(&regarding, "FailedComputeMetricsReplicas", e.clone())
                    .await;
                return Ok(Action::requeue(SYNC_PERIOD));
            }
            Ok((proposed, metric, statuses)) => {
                if !metric.is_empty() {
                    set_condition(
                        &mut status,
                        "ScalingActive",
                        true,
                        "ValidMetricFound",
                        format!(
                            "the HPA was able to successfully calculate a replica count from {metric}"
                        ),
                    );
                }
                metric_statuses = Some(statuses);
                if proposed > current {
                    reason = format!("{metric} above target");
                } else if proposed < current {
                    reason = "All metrics below target".into();
                }
                let disabled = |r: Option<&k8s_openapi::api::autoscaling::v2::HPAScalingRules>| {
                    r.and_then(|r| r.select_policy.as_deref()) == Some("Disabled")
                };
                let behavior = spec.behavior.as_ref();
                let stabilized = stabilize(&ctx, &key, proposed, &hpa);
                let stabilized = if (stabilized > current
                    && disabled(behavior.and_then(|b| b.scale_up.as_ref())))
                    || (stabilized < current
                        && disabled(behavior.and_then(|b| b.scale_down.as_ref())))
                {
                    current
                } else {
                    stabilized
                };
                if stabilized != proposed {
                    set_condition(
                        &mut status,
                        "AbleToScale",
                        true,
                        "ScaleDownStabilized",
                        "recent recommendations were higher than current one, applying the highest recent recommendation".into(),
                    );
                } else {
                    set_condition(
                        &mut status,
                        "AbleToScale",
                        true,
                        "ReadyForNewScale",
                        "recommended size matches current size".into(),
                    );
                }
                let (d, cond, msg) = with_rules(current, stabilized, min, max);
                set_condition(
                    &mut status,
                    "ScalingLimited",
                    d != stabilized,
                    cond,
                    msg.into(),
                );
                desired = d;
                rescale = desired != current;
            }
        }
    }

    if rescale {
        if let Some(s) = scale.spec.as_mut() {
            s.replicas = Some(desired);
        }
        let name = spec.scale_target_ref.name.clone();
        if let Err(e) = scale_api
            .replace_scale(&name, &PostParams::default(), &scale)
            .await
        {
            let msg = match &e {
                kube::Error::Api(s) => s.message.clone(),
                e => e.to_string(),
            };
            ctx.events
                .warning(
                    &regarding,
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {msg}"),
                )
                .await;
            set_condition(
                &mut status,
                "AbleToScale",
                false,
                "FailedUpdateScale",
                format!("the HPA controller was unable to update the target scale: {msg}"),
            );
            status.current_replicas = Some(current);
            write_status(&ctx, &hpa, &original, status).await?;
            return Err(Error::Scale(format!(
                "failed to rescale {reference}: {msg}"
            )));
        }
        set_condition(
            &mut status,
            "AbleToScale",
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        );
        ctx.events
            .normal(
                &regarding,
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            )
            .await;
        status.last_scale_time = Some(Time(Timestamp::now()));
    } else {
        desired = current;
    }
    status.current_replicas = Some(current);
    status.desired_replicas = desired;
    if let Some(m) = metric_statuses {
        status.current_metrics = Some(m);
    }
    status.observed_generation = hpa.metadata.generation;
    write_status(&ctx, &hpa, &original, status).await?;
    Ok(Action::requeue(SYNC_PERIOD))
}

/// upstream `updateStatusIfNeeded`: writes through `horizontalpodautoscalers/status` only when
/// something changed.
async fn write_status(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    original: &HorizontalPodAutoscalerStatus,
    status: HorizontalPodAutoscalerStatus,
) -> Result<(), Error> {
    if *original == status {
        return Ok(());
    }
    let mut obj = hpa.clone();
    obj.status = Some(status);
    obj.metadata.managed_fields = None;
    let api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(ctx.client.clone(), &hpa.namespace().unwrap_or_default());
    api.replace_status(&hpa.name_any(), &PostParams::default(), &obj)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_clamp_as_upstream() {
        assert_eq!(with_rules(1, 0, 2, 5).0, 2);
        assert_eq!(with_rules(1, 0, 2, 5).1, "TooFewReplicas");
        assert_eq!(
            with_rules(2, 9, 1, 10),
            (
                4,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate"
            )
        );
        assert_eq!(with_rules(4, 9, 1, 6).1, "TooManyReplicas");
        assert_eq!(with_rules(4, 5, 1, 6).1, "DesiredWithinRange");
    }
}

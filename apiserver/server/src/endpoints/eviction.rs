//! `POST pods/{name}/eviction` (upstream `pkg/registry/core/pod/storage/eviction.go`): deletes
//! the pod unless its PodDisruptionBudget forbids it (429 with the `DisruptionBudget` cause);
//! an allowed eviction first records itself in the budget's status (`disruptionsAllowed - 1`,
//! `disruptedPods`). Registered only for the `eviction` subresource, which only pods have.

use axum::body::Body;
use axum::response::Response;
use ferrokube_machinery::selectors::LabelSelector;
use ferrokube_machinery::status::{Status, StatusCause, StatusDetails};
use http::StatusCode;
use serde_json::{Value, json};

use super::{Scope, json_response, read_body};
use crate::error::{ApiError, ApiResult};
use crate::negotiate;
use crate::registry::codec;
use crate::registry::store::{
    DeleteOptions, ListOptions, Propagation, UpdateTarget, WriteOptions, now_rfc3339,
};

/// Upstream's message when a budget forbids the eviction.
const VIOLATES_PDB: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
/// Retries of the budget status update on conflicts (upstream `EvictionsRetry`).
const RETRIES: usize = 5;

fn too_many(cause: String) -> ApiError {
    let mut s = Status::too_many_requests(VIOLATES_PDB, 0);
    let details = s.details.get_or_insert_with(StatusDetails::default);
    details.causes.push(StatusCause {
        reason: "DisruptionBudget".into(),
        message: cause,
        field: String::new(),
    });
    s.into()
}

/// The DeleteOptions embedded in the Eviction.
fn delete_options(ev: &Value, dry_run: bool) -> ApiResult<DeleteOptions> {
    let d = ev.get("deleteOptions").cloned().unwrap_or(Value::Null);
    let mut opts = DeleteOptions {
        dry_run,
        ..Default::default()
    };
    if let Some(p) = d.get("preconditions") {
        opts.precondition_uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
        opts.precondition_rv = p
            .get("resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    opts.grace_period = d.get("gracePeriodSeconds").and_then(Value::as_i64);
    if d.get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "All"))
    {
        opts.dry_run = true;
    }
    opts.propagation = match d.get("propagationPolicy").and_then(Value::as_str) {
        None => None,
        Some("Orphan") => Some(Propagation::Orphan),
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            )));
        }
    };
    Ok(opts)
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Pods whose eviction needs no budget: terminal, pending, or already being deleted.
fn can_ignore_pdb(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
        || matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed" | "Pending")
        )
}

fn success() -> ApiResult<Response> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(json_response(
        StatusCode::CREATED,
        serde_json::to_vec(&body).map_err(ApiError::Encoding)?,
    ))
}

/// Handles `POST …/pods/{name}/eviction`.
pub async fn create(scope: &Scope, body: Body) -> ApiResult<Response> {
    let ct = scope
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = negotiate::body_format(ct)?;
    let bytes = read_body(body, scope.state.max_body_bytes).await?;
    let ev = negotiate::decode_body(format, &bytes)?;
    let (ns, name) = (&scope.info.namespace, &scope.info.name);
    if ev.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let opts = delete_options(&ev, scope.query.dry_run()?)?;
    let store = &scope.state.store;
    for _ in 0..RETRIES {
        let pod = codec::decode(&store.get(&scope.handle, ns, name).await?)?;
        if can_ignore_pdb(&pod) {
            return delete(scope, &opts).await;
        }
        let Some(pdb_h) = scope
            .state
            .registry
            .get("policy", "v1", "poddisruptionbudgets")
            .cloned()
        else {
            return delete(scope, &opts).await;
        };
        let listed = store.list(&pdb_h, ns, &ListOptions::default()).await?;
        let labels = pod.pointer("/metadata/labels");
        let mut matching = Vec::new();
        for kv in &listed.items {
            let pdb = codec::decode_served(&pdb_h, kv).await?;
            // A budget with an empty or invalid selector matches nothing (policy/v1).
            let sel = pdb.pointer("/spec/selector");
            let Some(sel) = sel.filter(|s| s.as_object().is_some_and(|o| !o.is_empty())) else {
                continue;
            };
            let Ok(sel) = LabelSelector::from_json(sel) else {
                continue;
            };
            if !sel.is_empty() && sel.matches_json(labels) {
                matching.push(pdb);
            }
        }
        let Some(pdb) = matching.first().cloned() else {
            return delete(scope, &opts).await;
        };
        if matching.len() > 1 {
            return Err(Status::internal_error(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            )
            .into());
        }
        let pdb_name = pdb
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let st = |k: &str| {
            pdb.pointer(&format!("/status/{k}"))
                .and_then(Value::as_i64)
                .unwrap_or(0)
        };
        // Unready pods may go while the budget is healthy (unhealthyPodEvictionPolicy).
        let policy = pdb
            .pointer("/spec/unhealthyPodEvictionPolicy")
            .and_then(Value::as_str)
            .unwrap_or("IfHealthyBudget");
        if !pod_ready(&pod)
            && (policy == "AlwaysAllow"
                || (st("desiredHealthy") > 0 && st("currentHealthy") >= st("desiredHealthy")))
        {
            return delete(scope, &opts).await;
        }
        // The budget is checked and decremented inside one guaranteed update of its status,
        // so concurrent evictions cannot both take the last allowed disruption.
        let opts_w = WriteOptions {
            dry_run: opts.dry_run,
            subresource: UpdateTarget::Status,
            user: scope.user.clone(),
            ..WriteOptions::default()
        };
        let pod_name = name.clone();
        let pdb_for_msg = pdb_name.clone();
        let r = store
            .update(
                &pdb_h,
                ns,
                &pdb_name,
                |cur: Option<&Value>| {
                    let Some(cur) = cur else {
                        return Err(Status::not_found(
                            "policy",
                            "poddisruptionbudgets",
                            &pdb_for_msg,
                        )
                        .into());
                    };
                    take_disruption(cur, &pdb_for_msg, &pod_name)
                },
                &opts_w,
            )
            .await;
        match r {
            Ok(_) => return delete(scope, &opts).await,
            Err(e) if e.to_status().is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Status::too_many_requests(
        "there are too many concurrent evictions, please try again later",
        1,
    )
    .into())
}

/// Upstream `checkAndDecrement`: the budget's status with one disruption taken for `pod`, or
/// the error that forbids it.
fn take_disruption(pdb: &Value, pdb_name: &str, pod: &str) -> ApiResult<Value> {
    let st = |k: &str| {
        pdb.pointer(&format!("/status/{k}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if st("observedGeneration") < generation {
        return Err(too_many(format!(
            "The disruption budget {pdb_name} is still being processed by the server."
        )));
    }
    let allowed = st("disruptionsAllowed");
    if allowed < 0 {
        return Err(Status::forbidden(
            "policy",
            "poddisruptionbudget",
            pdb_name,
            "pdb disruptions allowed is negative",
        )
        .into());
    }
    if allowed == 0 {
        return Err(too_many(format!(
            "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
            st("desiredHealthy"),
            st("currentHealthy")
        )));
    }
    let mut updated = pdb.clone();
    updated["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if updated["status"]["disruptedPods"].as_object().is_none() {
        updated["status"]["disruptedPods"] = json!({});
    }
    updated["status"]["disruptedPods"][pod] = json!(now_rfc3339());
    Ok(updated)
}

async fn delete(scope: &Scope, opts: &DeleteOptions) -> ApiResult<Response> {
    scope
        .state
        .store
        .delete(&scope.handle, &scope.info.namespace, &scope.info.name, opts)
        .await?;
    success()
}

//! Rollout strategies, scaling, history cleanup and status (upstream `rolling.go`,
//! `recreate.go`, `sync.go`, `progress.go`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;

use super::util::*;
use super::{Error, Sync};
use crate::podutil::{controller_ref, is_terminal};

impl Sync<'_> {
    fn old_indices(&self, new_idx: Option<usize>) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|&i| Some(i) != new_idx)
            .collect()
    }

    fn all_refs(&self) -> Vec<&ReplicaSet> {
        self.rss.iter().collect()
    }

    /// upstream `rolloutRolling`.
    pub(super) async fn rollout_rolling(&mut self) -> Result<Action, Error> {
        let new_idx = self.sync_revision(true).await?;
        if let Some(n) = new_idx
            && self.reconcile_new_rs(n).await?
        {
            return self.sync_rollout_status(new_idx).await;
        }
        if self.reconcile_old_rss(new_idx).await? {
            return self.sync_rollout_status(new_idx).await;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if is_complete(&self.d, &status) {
            self.cleanup(new_idx).await?;
        }
        self.sync_rollout_status(new_idx).await
    }

    /// upstream `rolloutRecreate`: all old pods gone before the new ReplicaSet scales up.
    pub(super) async fn rollout_recreate(&mut self) -> Result<Action, Error> {
        let mut new_idx = self.sync_revision(false).await?;
        let mut scaled_down = false;
        for i in self.old_indices(new_idx) {
            if rs_replicas(&self.rss[i]) != 0 {
                scaled_down |= self.scale_rs(i, 0).await?;
            }
        }
        if scaled_down {
            return self.sync_rollout_status(new_idx).await;
        }
        if self.old_pods_running(new_idx) {
            return self.sync_rollout_status(new_idx).await;
        }
        if new_idx.is_none() {
            new_idx = self.sync_revision(true).await?;
        }
        if let Some(n) = new_idx
            && self.reconcile_new_rs(n).await?
        {
            return self.sync_rollout_status(new_idx).await;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if is_complete(&self.d, &status) {
            self.cleanup(new_idx).await?;
        }
        self.sync_rollout_status(new_idx).await
    }

    /// upstream `oldPodsRunning`: old ReplicaSets still report pods, or pods of old
    /// ReplicaSets are not finished.
    fn old_pods_running(&self, new_idx: Option<usize>) -> bool {
        let old = self.old_indices(new_idx);
        if old.iter().any(|&i| rs_actual(&self.rss[i]) > 0) {
            return true;
        }
        let uids: Vec<&str> = old
            .iter()
            .filter_map(|&i| self.rss[i].metadata.uid.as_deref())
            .collect();
        let ns = self.d.namespace();
        self.ctx.pods.state().iter().any(|p| {
            p.namespace() == ns
                && controller_ref(&p.metadata).is_some_and(|r| uids.contains(&r.uid.as_str()))
                && !is_terminal(p)
        })
    }

    /// upstream `reconcileNewReplicaSet`.
    async fn reconcile_new_rs(&mut self, n: usize) -> Result<bool, Error> {
        let replicas = d_replicas(&self.d);
        let cur = rs_replicas(&self.rss[n]);
        if cur == replicas {
            return Ok(false);
        }
        if cur > replicas {
            return self.scale_rs(n, replicas).await;
        }
        let target = new_rs_new_replicas(&self.d, &self.all_refs(), &self.rss[n]);
        self.scale_rs(n, target).await
    }

    /// upstream `reconcileOldReplicaSets`.
    async fn reconcile_old_rss(&mut self, new_idx: Option<usize>) -> Result<bool, Error> {
        let old = self.old_indices(new_idx);
        let old_count: i32 = old.iter().map(|&i| rs_replicas(&self.rss[i])).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count: i32 = self.rss.iter().map(rs_replicas).sum();
        let min_available = d_replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = new_idx.map_or(0, |n| {
            rs_replicas(&self.rss[n]) - rs_available(&self.rss[n])
        });
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.cleanup_unhealthy(&old, max_scaled_down).await?;
        let scaled = self.scale_down_old_for_rolling(&old).await?;
        Ok(cleaned + scaled > 0)
    }

    fn sorted_by_creation(&self, idx: &[usize]) -> Vec<usize> {
        let mut v = idx.to_vec();
        v.sort_by(|&a, &b| by_creation(&self.rss[a], &self.rss[b]));
        v
    }

    /// upstream `cleanupUnhealthyReplicas`: scale down old ReplicaSets' unavailable pods first.
    async fn cleanup_unhealthy(&mut self, old: &[usize], max_cleanup: i32) -> Result<i32, Error> {
        let mut total = 0;
        for i in self.sorted_by_creation(old) {
            if total >= max_cleanup {
                break;
            }
            let spec = rs_replicas(&self.rss[i]);
            if spec == 0 {
                continue;
            }
            let unhealthy = spec - rs_available(&self.rss[i]);
            if unhealthy <= 0 {
                continue;
            }
            let down = (max_cleanup - total).min(unhealthy);
            self.scale_rs(i, spec - down).await?;
            total += down;
        }
        Ok(total)
    }

    /// upstream `scaleDownOldReplicaSetsForRollingUpdate`.
    async fn scale_down_old_for_rolling(&mut self, old: &[usize]) -> Result<i32, Error> {
        let min_available = d_replicas(&self.d) - max_unavailable(&self.d);
        let available: i32 = self.rss.iter().map(rs_available).sum();
        if available <= min_available {
            return Ok(0);
        }
        let to_scale_down = available - min_available;
        let mut total = 0;
        for i in self.sorted_by_creation(old) {
            if total >= to_scale_down {
                break;
            }
            let spec = rs_replicas(&self.rss[i]);
            if spec == 0 {
                continue;
            }
            let down = spec.min(to_scale_down - total);
            self.scale_rs(i, spec - down).await?;
            total += down;
        }
        Ok(total)
    }

    /// upstream `sync` (paused deployments and scaling events): scale, then status.
    pub(super) async fn sync_scale(&mut self) -> Result<(), Error> {
        let new_idx = self.sync_revision(false).await?;
        self.scale(new_idx).await?;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused {
            self.cleanup(new_idx).await?;
        }
        let status = self.calculate_status(new_idx);
        self.write_status(status).await
    }

    /// upstream `scale`: proportional scaling across active ReplicaSets.
    async fn scale(&mut self, new_idx: Option<usize>) -> Result<(), Error> {
        let replicas = d_replicas(&self.d);
        let active: Vec<usize> = (0..self.rss.len())
            .filter(|&i| rs_replicas(&self.rss[i]) > 0)
            .collect();
        // `FindActiveOrLatest`: one active ReplicaSet (or none: the newest) takes all replicas.
        let single = match active.len() {
            0 => new_idx.or_else(|| {
                let mut old = self.old_indices(new_idx);
                old.sort_by(|&a, &b| by_creation(&self.rss[b], &self.rss[a]));
                old.first().copied()
            }),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = single {
            if rs_replicas(&self.rss[i]) != replicas {
                self.scale_rs(i, replicas).await?;
            }
            return Ok(());
        }
        // `IsSaturated`: the new ReplicaSet runs everything: old active ones go to zero.
        if let Some(n) = new_idx {
            let rs = &self.rss[n];
            if rs_replicas(rs) == replicas
                && desired_annotation(rs) == Some(replicas)
                && rs_available(rs) == replicas
            {
                for i in active.into_iter().filter(|&i| i != n) {
                    self.scale_rs(i, 0).await?;
                }
                return Ok(());
            }
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        let current: i32 = active.iter().map(|&i| rs_replicas(&self.rss[i])).sum();
        let allowed = if replicas > 0 {
            replicas + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - current;
        let mut order = active.clone();
        if to_add > 0 {
            order.sort_by(|&a, &b| by_size_newer(&self.rss[a], &self.rss[b]));
        } else {
            order.sort_by(|&a, &b| by_size_older(&self.rss[a], &self.rss[b]));
        }
        let mut added = 0;
        let mut sizes = Vec::with_capacity(order.len());
        for &i in &order {
            let size = if to_add != 0 {
                let p = rs_proportion(&self.rss[i], &self.d, to_add, added);
                added += p;
                rs_replicas(&self.rss[i]) + p
            } else {
                rs_replicas(&self.rss[i])
            };
            sizes.push(size);
        }
        for (k, &i) in order.iter().enumerate() {
            let mut size = sizes[k];
            if k == 0 && to_add != 0 {
                size = (size + to_add - added).max(0);
            }
            self.scale_rs(i, size).await?;
        }
        Ok(())
    }

    /// upstream `cleanupDeployment`: delete the oldest dead ReplicaSets beyond
    /// `revisionHistoryLimit`.
    async fn cleanup(&mut self, new_idx: Option<usize>) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<usize> = self
            .old_indices(new_idx)
            .into_iter()
            .filter(|&i| self.rss[i].metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|&a, &b| by_revision(&self.rss[a], &self.rss[b]));
        let api: Api<ReplicaSet> = Api::namespaced(
            self.ctx.client.clone(),
            &self.d.namespace().unwrap_or_default(),
        );
        for &i in cleanable.iter().take(usize::try_from(diff).unwrap_or(0)) {
            let rs = &self.rss[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_actual(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&rs.name_any(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// upstream `calculateStatus`.
    pub(super) fn calculate_status(&self, new_idx: Option<usize>) -> DeploymentStatus {
        let available: i32 = self.rss.iter().map(rs_available).sum();
        let total: i32 = self.rss.iter().map(rs_replicas).sum();
        let mut status = self.d.status.clone().unwrap_or_default();
        status.observed_generation = self.d.metadata.generation;
        let nz = |v: i32| (v != 0).then_some(v);
        status.replicas = nz(self.rss.iter().map(rs_actual).sum());
        status.updated_replicas = nz(new_idx.map_or(0, |n| rs_actual(&self.rss[n])));
        status.ready_replicas = nz(self.rss.iter().map(rs_ready).sum());
        status.available_replicas = nz(available);
        status.unavailable_replicas = nz((total - available).max(0));
        let now = Timestamp::now();
        if available >= d_replicas(&self.d) - max_unavailable(&self.d) {
            set_condition(
                &mut status,
                condition(
                    "Available",
                    "True",
                    reason::MIN_AVAILABLE,
                    "Deployment has minimum availability.".into(),
                    now,
                ),
            );
        } else {
            set_condition(
                &mut status,
                condition(
                    "Available",
                    "False",
                    reason::MIN_UNAVAILABLE,
                    "Deployment does not have minimum availability.".into(),
                    now,
                ),
            );
        }
        status
    }

    /// upstream `syncDeploymentStatus` for a Deployment being deleted.
    pub(super) async fn sync_status_only(&mut self) -> Result<(), Error> {
        let new_idx = self.new_rs_index();
        let status = self.calculate_status(new_idx);
        self.write_status(status).await
    }

    /// upstream `syncRolloutStatus`: status, Progressing (complete / progressing / timed out)
    /// and ReplicaFailure; requeues a stuck rollout at its deadline.
    async fn sync_rollout_status(&mut self, new_idx: Option<usize>) -> Result<Action, Error> {
        let mut status = self.calculate_status(new_idx);
        let now = Timestamp::now();
        let deadline = progress_deadline(&self.d);
        if deadline.is_none() {
            remove_condition(&mut status, "Progressing");
        }
        let cur = self
            .d
            .status
            .as_ref()
            .and_then(|s| get_condition(s, "Progressing"))
            .cloned();
        let complete_before = status.replicas == status.updated_replicas
            && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some(reason::NEW_RS_AVAILABLE);
        let new_name = new_idx.map(|n| self.rss[n].name_any());
        if deadline.is_some() && !complete_before {
            if is_complete(&self.d, &status) {
                let msg = match &new_name {
                    Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
                    None => format!(
                        "Deployment \"{}\" has successfully progressed.",
                        self.d.name_any()
                    ),
                };
                set_condition(
                    &mut status,
                    condition("Progressing", "True", reason::NEW_RS_AVAILABLE, msg, now),
                );
            } else if is_progressing(&self.d, &status) {
                let msg = match &new_name {
                    Some(n) => format!("ReplicaSet \"{n}\" is progressing."),
                    None => format!("Deployment \"{}\" is progressing.", self.d.name_any()),
                };
                let mut c = condition("Progressing", "True", reason::RS_UPDATED, msg, now);
                if let Some(cur) = &cur
                    && cur.status == "True"
                {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                // Always refresh lastUpdateTime: progress pushes the deadline back.
                remove_condition(&mut status, "Progressing");
                set_condition(&mut status, c);
            } else if is_timed_out(&self.d, &status, now) {
                let msg = match &new_name {
                    Some(n) => format!("ReplicaSet \"{n}\" has timed out progressing."),
                    None => format!(
                        "Deployment \"{}\" has timed out progressing.",
                        self.d.name_any()
                    ),
                };
                set_condition(
                    &mut status,
                    condition("Progressing", "False", reason::TIMED_OUT, msg, now),
                );
            }
        }
        // ReplicaFailure mirrors the ReplicaSets' own condition.
        let failure = self
            .rss
            .iter()
            .filter_map(|rs| rs.status.as_ref()?.conditions.as_ref())
            .flatten()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
            .cloned();
        match failure {
            Some(f) => set_condition(
                &mut status,
                condition(
                    "ReplicaFailure",
                    &f.status,
                    f.reason.as_deref().unwrap_or_default(),
                    f.message.unwrap_or_default(),
                    now,
                ),
            ),
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        self.write_status(status.clone()).await?;
        // `requeueStuckDeployment`: look again when the deadline passes.
        if let (Some(secs), Some(c)) = (deadline, get_condition(&status, "Progressing"))
            && !is_complete(&self.d, &status)
            && c.reason.as_deref() != Some(reason::TIMED_OUT)
            && let Some(t) = &c.last_update_time
        {
            let left = t.0.as_second() + i64::from(secs) - now.as_second();
            return Ok(Action::requeue(Duration::from_secs(
                left.max(0).unsigned_abs() + 1,
            )));
        }
        // Pods becoming available after minReadySeconds bring no ReplicaSet event of their own
        // until the ReplicaSet controller writes status; that write triggers us.
        Ok(Action::await_change())
    }
}

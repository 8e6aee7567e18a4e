//! One worker per pod bound to the node (upstream `pkg/kubelet/pod_workers.go` +
//! `kuberuntime_manager.go SyncPod`), written as an explicit [`State`] and [`Worker::step`]
//! (DESIGN invariant 8): sandbox → image pulls → init containers in order → containers under the
//! restart policy (CrashLoopBackOff back-off) → termination with the grace period → the final
//! delete with `gracePeriodSeconds=0`, as the kubelet's status manager does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::watch;

use crate::node::NodeCtx;
use crate::runtime::{ContainerConfig, ContainerState, RuntimeError};
use crate::status::{self, CState, ContainerLine, PodView, rfc3339};

/// First CrashLoopBackOff delay (upstream `initialContainerBackOff`... `MaxContainerBackOff`).
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// Longest CrashLoopBackOff delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often a worker looks at its containers when the runtime gives no hint (the PLEG relist).
const RELIST: Duration = Duration::from_secs(10);

/// Where a pod is in its life on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Accepted; no sandbox yet.
    Pending,
    /// Sandbox up; init container `next` is (to be) run.
    Initializing {
        /// Index of the init container that has not completed yet.
        next: usize,
    },
    /// Init done; regular containers run under the restart policy.
    Running,
    /// Every container exited and the restart policy keeps them down (Succeeded/Failed).
    Finished {
        /// True for Succeeded.
        succeeded: bool,
    },
    /// Deletion requested: stop containers, write the final status, delete the object.
    Terminating,
    /// Nothing left to do; the worker ends.
    Done,
}

#[derive(Debug)]
struct Slot {
    spec: Container,
    init: bool,
    id: Option<String>,
    line: ContainerLine,
    /// Next restart not before this instant.
    backoff_until: Option<Instant>,
    /// Delay applied at the next crash.
    backoff: Duration,
}

impl Slot {
    fn new(spec: &Container, init: bool, waiting: &str) -> Slot {
        Slot {
            line: ContainerLine {
                name: spec.name.clone(),
                image: spec.image.clone().unwrap_or_default(),
                image_id: String::new(),
                container_id: None,
                state: CState::Waiting {
                    reason: waiting.into(),
                    message: None,
                },
                last_state: None,
                ready: false,
                restart_count: 0,
            },
            spec: spec.clone(),
            init,
            id: None,
            backoff_until: None,
            backoff: Duration::ZERO,
        }
    }

    fn exited(&self) -> Option<i32> {
        match self.line.state {
            CState::Terminated { exit_code, .. } => Some(exit_code),
            _ => None,
        }
    }
}

/// A pod's worker.
pub struct Worker {
    node: Arc<NodeCtx>,
    pod: Arc<Pod>,
    state: State,
    sandbox: Option<String>,
    pod_ip: Option<String>,
    start_time: String,
    init: Vec<Slot>,
    containers: Vec<Slot>,
    /// The last status written, serialized (compact: one per pod, for the worker's life).
    last_written: Option<Box<[u8]>>,
    wake: Option<Instant>,
    /// A pod already terminal when this worker met it (agent restart): its status stays as is.
    adopted_terminal: bool,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn min_wake(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Worker {
    /// A worker for a pod just bound to this node.
    pub fn new(node: Arc<NodeCtx>, pod: Arc<Pod>) -> Worker {
        let spec = pod.spec.clone().unwrap_or_default();
        let has_init = spec.init_containers.as_ref().is_some_and(|v| !v.is_empty());
        let waiting = if has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Slot::new(c, true, "PodInitializing"))
            .collect();
        let containers = spec
            .containers
            .iter()
            .map(|c| Slot::new(c, false, waiting))
            .collect();
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| rfc3339(t.0))
            .unwrap_or_else(|| rfc3339(Timestamp::now()));
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let adopted_terminal = matches!(phase, Some("Succeeded" | "Failed"));
        let state = match phase {
            Some("Succeeded") => State::Finished { succeeded: true },
            Some("Failed") => State::Finished { succeeded: false },
            _ => State::Pending,
        };
        Worker {
            node,
            pod,
            state,
            adopted_terminal,
            sandbox: None,
            pod_ip: None,
            start_time,
            init,
            containers,
            last_written: None,
            wake: None,
        }
    }

    fn pod_ref(&self) -> String {
        format!(
            "{}_{}({})",
            self.pod.metadata.name.as_deref().unwrap_or(""),
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
            self.pod.metadata.uid.as_deref().unwrap_or("")
        )
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(
            self.node.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    /// Runs the worker until the pod is gone from the node. `rx` carries the latest pod
    /// (`None` once it was deleted from the API).
    pub async fn run(mut self, mut rx: watch::Receiver<Option<Arc<Pod>>>) {
        loop {
            let latest = rx.borrow_and_update().clone();
            match latest {
                Some(p) => self.pod = p,
                None => {
                    // Deleted from the API (force delete, or our own final delete).
                    Box::pin(self.teardown()).await;
                    break;
                }
            }
            self.wake = None;
            // The runtime and API calls are boxed: a parked worker (one per pod, most of them
            // parked for good) then holds only this loop's state, not the largest call's.
            if let Err(e) = Box::pin(self.step()).await {
                tracing::warn!(pod = %self.pod_ref(), error = %e, "pod worker step");
                self.wake = min_wake(self.wake, Some(Instant::now() + Duration::from_secs(1)));
            }
            if let Err(e) = Box::pin(self.sync_status()).await {
                tracing::debug!(pod = %self.pod_ref(), error = %e, "pod status write");
                self.last_written = None;
                self.wake = min_wake(self.wake, Some(Instant::now() + Duration::from_secs(1)));
            }
            if self.state == State::Done {
                Box::pin(self.finish()).await;
                Box::pin(self.teardown()).await;
                break;
            }
            let wake = self.wake.unwrap_or_else(|| Instant::now() + RELIST);
            tokio::select! {
                r = rx.changed() => if r.is_err() { Box::pin(self.teardown()).await; break; },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        self.node.release_ip(self.pod_ip.take());
    }

    /// Moves the state machine as far as it can go now.
    pub async fn step(&mut self) -> Result<(), RuntimeError> {
        loop {
            let deleting = self.pod.metadata.deletion_timestamp.is_some();
            let next = match self.state {
                State::Done => return Ok(()),
                State::Terminating => {
                    self.terminate().await?;
                    State::Done
                }
                _ if deleting => State::Terminating,
                State::Pending => {
                    self.create_sandbox().await?;
                    State::Initializing { next: 0 }
                }
                State::Initializing { next } => self.run_init(next).await?,
                State::Running => self.run_containers().await?,
                State::Finished { .. } => return Ok(()),
            };
            if next == self.state {
                return Ok(());
            }
            tracing::debug!(pod = %self.pod_ref(), from = ?self.state, to = ?next, "pod worker");
            self.state = next;
        }
    }

    async fn create_sandbox(&mut self) -> Result<(), RuntimeError> {
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        self.sandbox = Some(self.node.runtime.run_pod_sandbox(&uid).await?);
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        self.pod_ip = if host_network {
            Some(self.node.config.node_ip.clone())
        } else {
            self.node.allocate_ip()
        };
        for s in &mut self.containers {
            s.line.image_id.clear();
        }
        Ok(())
    }

    fn config_of(&self, slot: &Slot) -> ContainerConfig {
        let mut argv = slot.spec.command.clone().unwrap_or_default();
        argv.extend(slot.spec.args.clone().unwrap_or_default());
        ContainerConfig {
            name: slot.spec.name.clone(),
            image: slot.spec.image.clone().unwrap_or_default(),
            argv,
            init: slot.init,
            namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
            annotations: self.pod.metadata.annotations.clone().unwrap_or_default(),
        }
    }

    /// Starts the container of `slot` (pull, create, start) unless it waits for a back-off.
    async fn start(&mut self, init: bool, i: usize) -> Result<(), RuntimeError> {
        let slot = if init {
            &self.init[i]
        } else {
            &self.containers[i]
        };
        if let Some(until) = slot.backoff_until
            && Instant::now() < until
        {
            self.wake = min_wake(self.wake, Some(until));
            return Ok(());
        }
        let config = self.config_of(slot);
        let sandbox = self.sandbox.clone().unwrap_or_default();
        let image_id = self.node.runtime.pull_image(&config.image).await?;
        let id = self.node.runtime.start_container(&sandbox, &config).await?;
        let scheme = self.node.runtime.version().name;
        let slot = if init {
            &mut self.init[i]
        } else {
            &mut self.containers[i]
        };
        if let Some(old) = slot.id.take() {
            // A restart: the count moves when the new container starts, as the kubelet's does.
            slot.line.restart_count += 1;
            let _ = self.node.runtime.remove_container(&old).await;
        }
        slot.line.image_id = image_id;
        slot.line.container_id = Some(format!("{scheme}://{id}"));
        slot.id = Some(id);
        slot.backoff_until = None;
        Ok(())
    }

    /// Reads the runtime's view of a started container into its status line.
    async fn refresh(&mut self, init: bool, i: usize) -> Result<(), RuntimeError> {
        let never_ready = self
            .pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::runtime::ANN_SIMULATE))
            .is_some_and(|v| v == "never-ready");
        let slot = if init {
            &self.init[i]
        } else {
            &self.containers[i]
        };
        let Some(id) = slot.id.clone() else {
            return Ok(());
        };
        let info = self.node.runtime.container_status(&id).await?;
        self.wake = min_wake(self.wake, info.next_change);
        let slot = if init {
            &mut self.init[i]
        } else {
            &mut self.containers[i]
        };
        let cid = slot.line.container_id.clone().unwrap_or_default();
        match info.state {
            ContainerState::Running { started_at } => {
                slot.line.state = CState::Running {
                    started_at: rfc3339(started_at),
                };
                slot.line.ready = !init && !never_ready;
            }
            ContainerState::Exited {
                started_at,
                finished_at,
                exit_code,
                reason,
            } => {
                slot.line.state = CState::Terminated {
                    exit_code,
                    reason,
                    started_at: rfc3339(started_at),
                    finished_at: rfc3339(finished_at),
                    container_id: cid,
                };
                slot.line.ready = false;
            }
        }
        Ok(())
    }

    /// A container exited and will be restarted: the kubelet restarts at once after the first
    /// crash and then waits 10 s, 20 s, ... up to 5 min, showing `CrashLoopBackOff` meanwhile.
    fn schedule_restart(&mut self, init: bool, i: usize) {
        let pod_ref = self.pod_ref();
        let slot = if init {
            &mut self.init[i]
        } else {
            &mut self.containers[i]
        };
        let delay = slot.backoff;
        slot.backoff = if delay.is_zero() {
            BACKOFF_INITIAL
        } else {
            (delay * 2).min(BACKOFF_MAX)
        };
        slot.line.last_state = Some(slot.line.state.clone());
        slot.line.ready = false;
        if delay.is_zero() {
            slot.backoff_until = None;
        } else {
            slot.backoff_until = Some(Instant::now() + delay);
            slot.line.state = CState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {} restarting failed container={} pod={pod_ref}",
                    status::go_duration(delay.as_secs()),
                    slot.line.name
                )),
            };
        }
    }

    async fn run_init(&mut self, next: usize) -> Result<State, RuntimeError> {
        if next >= self.init.len() {
            for s in &mut self.containers {
                if s.id.is_none() {
                    s.line.state = CState::Waiting {
                        reason: "ContainerCreating".into(),
                        message: None,
                    };
                }
            }
            return Ok(State::Running);
        }
        if self.init[next].id.is_none() || self.init[next].backoff_until.is_some() {
            self.start(true, next).await?;
        }
        self.refresh(true, next).await?;
        match self.init[next].exited() {
            Some(0) => Ok(State::Initializing { next: next + 1 }),
            Some(code) => {
                if restart_policy(&self.pod) == "Never" {
                    for s in &mut self.containers {
                        s.line.state = CState::Waiting {
                            reason: "PodInitializing".into(),
                            message: None,
                        };
                    }
                    return Ok(State::Finished { succeeded: false });
                }
                tracing::debug!(pod = %self.pod_ref(), code, "init container failed");
                self.schedule_restart(true, next);
                if self.init[next].backoff_until.is_none() {
                    self.start(true, next).await?;
                    self.refresh(true, next).await?;
                }
                Ok(State::Initializing { next })
            }
            None => Ok(State::Initializing { next }),
        }
    }

    async fn run_containers(&mut self) -> Result<State, RuntimeError> {
        let policy = restart_policy(&self.pod).to_string();
        for i in 0..self.containers.len() {
            let waiting_restart = self.containers[i].backoff_until.is_some();
            if self.containers[i].id.is_none() || waiting_restart {
                self.start(false, i).await?;
            }
            if self.containers[i].backoff_until.is_some() {
                continue;
            }
            self.refresh(false, i).await?;
            if let Some(code) = self.containers[i].exited()
                && should_restart(&policy, code)
            {
                self.schedule_restart(false, i);
                if self.containers[i].backoff_until.is_none() {
                    self.start(false, i).await?;
                    self.refresh(false, i).await?;
                }
            }
        }
        let all_exited = self.containers.iter().all(|s| {
            s.backoff_until.is_none() && s.exited().is_some_and(|c| !should_restart(&policy, c))
        });
        if all_exited {
            let succeeded = self.containers.iter().all(|s| s.exited() == Some(0));
            return Ok(State::Finished { succeeded });
        }
        Ok(State::Running)
    }

    /// Stops every container (grace period from the deletion), removes the sandbox.
    async fn terminate(&mut self) -> Result<(), RuntimeError> {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64;
        for init in [true, false] {
            let n = if init {
                self.init.len()
            } else {
                self.containers.len()
            };
            for i in 0..n {
                let slot = if init {
                    &self.init[i]
                } else {
                    &self.containers[i]
                };
                let Some(id) = slot.id.clone() else {
                    continue;
                };
                if slot.backoff_until.is_some() {
                    continue;
                }
                self.node
                    .runtime
                    .stop_container(&id, Duration::from_secs(grace))
                    .await?;
                self.refresh(init, i).await?;
            }
        }
        if let Some(sb) = self.sandbox.take() {
            self.node.runtime.remove_pod_sandbox(&sb).await?;
        }
        Ok(())
    }

    fn phase(&self) -> &'static str {
        match self.state {
            State::Finished { succeeded: true } => "Succeeded",
            State::Finished { succeeded: false } => "Failed",
            State::Terminating | State::Done => {
                // A terminal pod: Succeeded when every container that ran exited 0.
                let ran: Vec<&Slot> = self.containers.iter().filter(|s| s.id.is_some()).collect();
                if !ran.is_empty() && ran.iter().all(|s| s.exited() == Some(0)) {
                    "Succeeded"
                } else if ran.is_empty() {
                    "Pending"
                } else {
                    "Failed"
                }
            }
            State::Pending | State::Initializing { .. } => "Pending",
            State::Running => {
                let never_started = self.containers.iter().any(|s| {
                    s.line.restart_count == 0 && matches!(s.line.state, CState::Waiting { .. })
                });
                if never_started { "Pending" } else { "Running" }
            }
        }
    }

    /// Writes the status through `pods/status` when it changed since the last write.
    async fn sync_status(&mut self) -> Result<(), kube::Error> {
        let init: Vec<ContainerLine> = self.init.iter().map(|s| s.line.clone()).collect();
        let containers: Vec<ContainerLine> =
            self.containers.iter().map(|s| s.line.clone()).collect();
        let initialized = !matches!(self.state, State::Pending | State::Initializing { .. })
            && !matches!(self.state, State::Finished { .. } if self.init.iter().any(|s| s.exited() != Some(0)));
        let written_conditions: Option<Vec<PodCondition>> = self
            .last_written
            .as_deref()
            .and_then(|b| serde_json::from_slice::<PodStatus>(b).ok())
            .and_then(|s| s.conditions);
        let view = PodView {
            pod: &self.pod,
            written_conditions: written_conditions.as_deref(),
            sandbox_ready: self.sandbox.is_some(),
            initialized,
            phase: self.phase(),
            host_ip: &self.node.config.node_ip,
            pod_ip: self.pod_ip.as_deref(),
            start_time: &self.start_time,
            init: &init,
            containers: &containers,
        };
        let status = status::pod_status(&view);
        let written = serde_json::to_vec(&status).ok().map(Vec::into_boxed_slice);
        if self.adopted_terminal || (written.is_some() && written == self.last_written) {
            return Ok(());
        }
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let body = json!({"status": status});
        self.api()
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await?;
        self.last_written = written;
        Ok(())
    }

    /// After termination: the object is deleted with grace period 0 (uid precondition), which
    /// removes it from the API; the watch then reports the deletion.
    async fn finish(&mut self) {
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        for attempt in 0..5 {
            match self.api().delete(&name, &dp).await {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return,
                Err(e) => {
                    tracing::debug!(pod = %self.pod_ref(), error = %e, attempt, "final delete");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }

    /// The pod vanished from the API: stop and remove what still runs.
    async fn teardown(&mut self) {
        for s in self.init.iter().chain(self.containers.iter()) {
            if let Some(id) = &s.id {
                let _ = self.node.runtime.stop_container(id, Duration::ZERO).await;
                let _ = self.node.runtime.remove_container(id).await;
            }
        }
        if let Some(sb) = self.sandbox.take() {
            let _ = self.node.runtime.remove_pod_sandbox(&sb).await;
        }
    }

    /// The worker's state (tests).
    pub fn state(&self) -> State {
        self.state
    }
}

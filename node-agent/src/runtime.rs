//! The container runtime seen by the pod workers (a narrow slice of CRI's RuntimeService and
//! ImageService), and its first implementation: [`Simulated`], which runs containers on timers.
//!
//! The CRI implementation (containerd over `unix:///run/containerd/containerd.sock`) implements
//! the same trait; nothing in the pod workers knows which runtime runs their containers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::network::{Network, Probe, probe_of};

/// What a runtime call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container or sandbox id is unknown to the runtime.
    #[error("no such {kind} {id:?}")]
    NotFound {
        /// "container" or "sandbox".
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The image could not be pulled.
    #[error("failed to pull image {image:?}: {reason}")]
    ImagePull {
        /// The image reference.
        image: String,
        /// Why.
        reason: String,
    },
}

/// The runtime's name and version (`nodeInfo.containerRuntimeVersion` is `name://version`).
#[derive(Debug, Clone)]
pub struct RuntimeVersion {
    /// e.g. `simulated` or `containerd`.
    pub name: String,
    /// e.g. `0.1.0`.
    pub version: String,
}

/// What the worker asks the runtime to start.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// The container's name in the pod.
    pub name: String,
    /// The image reference from the spec.
    pub image: String,
    /// `command` then `args`.
    pub argv: Vec<String>,
    /// Whether this is an init container (simulated: exits 0 at once unless told otherwise).
    pub init: bool,
    /// The pod's namespace (where the simulated network resolves short Service names).
    pub namespace: String,
    /// Pod annotations (the simulated runtime reads `ferrokube.io/simulate*`).
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// The state of a container as the runtime reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    /// Started and running.
    Running {
        /// When it started.
        started_at: Timestamp,
    },
    /// Exited.
    Exited {
        /// When it started.
        started_at: Timestamp,
        /// When it exited.
        finished_at: Timestamp,
        /// The exit code.
        exit_code: i32,
        /// `Completed` (code 0) or `Error`.
        reason: String,
    },
}

/// A container's status from the runtime.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    /// The container's state.
    pub state: ContainerState,
    /// When the state will change by itself, if the runtime knows (the simulated one does; a
    /// real runtime returns `None` and the worker relists periodically like the PLEG).
    pub next_change: Option<Instant>,
}

/// The runtime interface the pod workers use.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Name and version for the node's `nodeInfo`.
    fn version(&self) -> RuntimeVersion;
    /// Creates the pod sandbox; returns its id.
    async fn run_pod_sandbox(&self, pod_uid: &str) -> Result<String, RuntimeError>;
    /// Stops and removes the sandbox and whatever still runs in it.
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError>;
    /// Pulls an image; returns its digest reference (the container status's `imageID`).
    async fn pull_image(&self, image: &str) -> Result<String, RuntimeError>;
    /// Creates and starts a container in the sandbox; returns its id (without scheme).
    async fn start_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError>;
    /// The container's current status.
    async fn container_status(&self, id: &str) -> Result<ContainerInfo, RuntimeError>;
    /// Stops a container, killing it once `grace` has passed.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// Removes an exited container.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
}

/// Settings of the simulated runtime.
#[derive(Debug, Clone)]
pub struct SimulatedConfig {
    /// Time from "start container" until it runs.
    pub start_latency: Duration,
    /// Time an image pull takes (first pull of an image on this node only).
    pub pull_latency: Duration,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig {
            start_latency: Duration::from_millis(0),
            pull_latency: Duration::from_millis(0),
        }
    }
}

/// Annotation: seconds after which every container of the pod exits.
pub const ANN_EXIT_AFTER: &str = "ferrokube.io/simulate-exit-after";
/// Annotation: the exit code used with [`ANN_EXIT_AFTER`] (default 0).
pub const ANN_EXIT_CODE: &str = "ferrokube.io/simulate-exit-code";
/// Annotation: `never-ready` (runs, never Ready) or `fail` (exits 1 at once).
pub const ANN_SIMULATE: &str = "ferrokube.io/simulate";

/// How a simulated container behaves, from its argv and the pod's annotations.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Runs until stopped.
    Forever,
    /// A connectivity check (`wget`/`curl`/`nc`): exits as the tool would, from the simulated
    /// network's answer (see [`crate::network`]).
    Connect(Probe),
    /// Exits with `code` after `after`.
    ExitAfter {
        /// Run time.
        after: Duration,
        /// Exit code.
        code: i32,
    },
}

/// Reads the behaviour of a simulated container.
pub fn behaviour(config: &ContainerConfig) -> Behaviour {
    let ann = |k: &str| config.annotations.get(k).map(|s| s.trim());
    if ann(ANN_SIMULATE) == Some("fail") && !config.init {
        return Behaviour::ExitAfter {
            after: Duration::ZERO,
            code: 1,
        };
    }
    let code = ann(ANN_EXIT_CODE)
        .and_then(|c| c.parse::<i32>().ok())
        .unwrap_or(0);
    if let Some(secs) = ann(ANN_EXIT_AFTER).and_then(parse_seconds) {
        return Behaviour::ExitAfter { after: secs, code };
    }
    if let Some(secs) = sleep_seconds(&config.argv) {
        return Behaviour::ExitAfter {
            after: secs,
            code: 0,
        };
    }
    if let Some(probe) = probe_of(&config.argv) {
        return Behaviour::Connect(probe);
    }
    if config.init {
        // An init container with nothing to simulate completes at once.
        return Behaviour::ExitAfter {
            after: Duration::ZERO,
            code: 0,
        };
    }
    Behaviour::Forever
}

fn parse_seconds(s: &str) -> Option<Duration> {
    let s = s.trim().trim_end_matches('s');
    let v = s.parse::<f64>().ok()?;
    (v.is_finite() && (0.0..1e9).contains(&v)).then(|| Duration::from_secs_f64(v))
}

/// `sleep N` anywhere in the argv (also inside `sh -c "sleep N"`), else `None`; `sleep infinity`
/// runs forever.
fn sleep_seconds(argv: &[String]) -> Option<Duration> {
    let words: Vec<&str> = argv.iter().flat_map(|a| a.split_whitespace()).collect();
    let pos = words
        .iter()
        .position(|w| *w == "sleep" || w.ends_with("/sleep"))?;
    let arg = words.get(pos + 1)?.trim_end_matches([';', '&']);
    parse_seconds(arg)
}

#[derive(Debug)]
struct SimContainer {
    started_at: Timestamp,
    started: Instant,
    behaviour: Behaviour,
    stopped: Option<(Timestamp, i32)>,
}

/// A runtime that runs nothing: containers are timers (see [`behaviour`]).
#[derive(Debug, Default)]
pub struct Simulated {
    config: SimulatedConfig,
    containers: Mutex<HashMap<String, SimContainer>>,
    pulled: Mutex<std::collections::HashSet<String>>,
    network: Option<Arc<dyn Network>>,
}

impl std::fmt::Debug for dyn Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Network")
    }
}

/// How long a simulated connectivity check runs before it exits.
const PROBE_RUN_TIME: Duration = Duration::from_millis(50);

impl Simulated {
    /// A simulated runtime with the given settings.
    pub fn new(config: SimulatedConfig) -> Self {
        Simulated {
            config,
            ..Default::default()
        }
    }

    /// The network connectivity checks see (without one, every name fails to resolve).
    pub fn with_network(mut self, network: Arc<dyn Network>) -> Self {
        self.network = Some(network);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SimContainer>> {
        self.containers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn random_id() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{a}{b}")
}

/// The digest reference a simulated pull reports: the repository plus a digest derived from the
/// reference, stable across pulls (what `imageID` shows).
pub fn image_id(image: &str) -> String {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rfind(':') {
        Some(i) if !repo[i..].contains('/') => &repo[..i],
        _ => repo,
    };
    let repo = if repo.contains('/') {
        let first = repo.split('/').next().unwrap_or("");
        if first.contains('.') || first.contains(':') || first == "localhost" {
            repo.to_string()
        } else {
            format!("docker.io/{repo}")
        }
    } else {
        format!("docker.io/library/{repo}")
    };
    let digest = hex::encode(Sha256::digest(image.as_bytes()));
    format!("{repo}@sha256:{digest}")
}

#[async_trait::async_trait]
impl Runtime for Simulated {
    fn version(&self) -> RuntimeVersion {
        RuntimeVersion {
            name: "simulated".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    async fn run_pod_sandbox(&self, _pod_uid: &str) -> Result<String, RuntimeError> {
        Ok(random_id())
    }

    async fn remove_pod_sandbox(&self, _sandbox_id: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn pull_image(&self, image: &str) -> Result<String, RuntimeError> {
        if image.trim().is_empty() {
            return Err(RuntimeError::ImagePull {
                image: image.into(),
                reason: "empty image reference".into(),
            });
        }
        let first = self
            .pulled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(image.to_string());
        if first && !self.config.pull_latency.is_zero() {
            tokio::time::sleep(self.config.pull_latency).await;
        }
        Ok(image_id(image))
    }

    async fn start_container(
        &self,
        _sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError> {
        if !self.config.start_latency.is_zero() {
            tokio::time::sleep(self.config.start_latency).await;
        }
        let mut behaviour = behaviour(config);
        if let Behaviour::Connect(probe) = &behaviour {
            let outcome = match &self.network {
                Some(net) => {
                    net.connect(&config.namespace, &probe.host, probe.port)
                        .await
                }
                None => Err(crate::network::NetError::BadAddress),
            };
            tracing::debug!(container = %config.name, host = %probe.host, port = probe.port, ?outcome, "simulated connectivity check");
            behaviour = Behaviour::ExitAfter {
                after: PROBE_RUN_TIME,
                code: probe.exit_code(outcome),
            };
        }
        let id = random_id();
        self.lock().insert(
            id.clone(),
            SimContainer {
                started_at: Timestamp::now(),
                started: Instant::now(),
                behaviour,
                stopped: None,
            },
        );
        Ok(id)
    }

    async fn container_status(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let map = self.lock();
        let c = map.get(id).ok_or_else(|| RuntimeError::NotFound {
            kind: "container",
            id: id.into(),
        })?;
        let exited = |finished_at: Timestamp, exit_code: i32| ContainerInfo {
            state: ContainerState::Exited {
                started_at: c.started_at,
                finished_at,
                exit_code,
                reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
            },
            next_change: None,
        };
        if let Some((at, code)) = c.stopped {
            return Ok(exited(at, code));
        }
        match c.behaviour {
            Behaviour::ExitAfter { after, code } => {
                let at = c.started + after;
                if Instant::now() >= at {
                    let finished = c
                        .started_at
                        .checked_add(after)
                        .unwrap_or_else(|_| Timestamp::now());
                    Ok(exited(finished, code))
                } else {
                    Ok(ContainerInfo {
                        state: ContainerState::Running {
                            started_at: c.started_at,
                        },
                        next_change: Some(at),
                    })
                }
            }
            Behaviour::Forever | Behaviour::Connect(_) => Ok(ContainerInfo {
                state: ContainerState::Running {
                    started_at: c.started_at,
                },
                next_change: None,
            }),
        }
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        // A simulated process handles SIGTERM at once and exits 0 (an nginx does the same);
        // one that already exited keeps its exit status.
        let now = Instant::now();
        let mut map = self.lock();
        if let Some(c) = map.get_mut(id)
            && c.stopped.is_none()
        {
            let exited_by_itself = match c.behaviour {
                Behaviour::ExitAfter { after, code } if now >= c.started + after => Some((
                    c.started_at
                        .checked_add(after)
                        .unwrap_or_else(|_| Timestamp::now()),
                    code,
                )),
                _ => None,
            };
            c.stopped = Some(exited_by_itself.unwrap_or((Timestamp::now(), 0)));
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.lock().remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(argv: &[&str], ann: &[(&str, &str)]) -> ContainerConfig {
        ContainerConfig {
            name: "c".into(),
            image: "busybox".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            init: false,
            namespace: "default".into(),
            annotations: ann
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn behaviours() {
        assert_eq!(behaviour(&cfg(&["nginx"], &[])), Behaviour::Forever);
        assert_eq!(
            behaviour(&cfg(&["sleep", "3"], &[])),
            Behaviour::ExitAfter {
                after: Duration::from_secs(3),
                code: 0
            }
        );
        assert_eq!(
            behaviour(&cfg(&["sh", "-c", "sleep 1; echo hi"], &[])),
            Behaviour::ExitAfter {
                after: Duration::from_secs(1),
                code: 0
            }
        );
        assert_eq!(
            behaviour(&cfg(&["sleep", "infinity"], &[])),
            Behaviour::Forever
        );
        assert_eq!(
            behaviour(&cfg(&[], &[(ANN_EXIT_AFTER, "2"), (ANN_EXIT_CODE, "3")])),
            Behaviour::ExitAfter {
                after: Duration::from_secs(2),
                code: 3
            }
        );
        assert_eq!(
            behaviour(&cfg(&[], &[(ANN_SIMULATE, "fail")])),
            Behaviour::ExitAfter {
                after: Duration::ZERO,
                code: 1
            }
        );
    }

    #[test]
    fn image_ids() {
        assert!(image_id("nginx").starts_with("docker.io/library/nginx@sha256:"));
        assert!(image_id("nginx:1.27").starts_with("docker.io/library/nginx@sha256:"));
        assert!(
            image_id("registry.k8s.io/pause:3.10").starts_with("registry.k8s.io/pause@sha256:")
        );
        assert!(image_id("bitnami/redis").starts_with("docker.io/bitnami/redis@sha256:"));
    }

    #[tokio::test]
    async fn sleep_container_exits() {
        let rt = Simulated::default();
        let id = rt
            .start_container("s", &cfg(&["sleep", "0"], &[]))
            .await
            .unwrap_or_default();
        let st = rt.container_status(&id).await.map(|i| i.state);
        assert!(
            matches!(st, Ok(ContainerState::Exited { exit_code: 0, ref reason, .. }) if reason == "Completed"),
            "{st:?}"
        );
    }

    struct OnlyWeb;

    #[async_trait::async_trait]
    impl Network for OnlyWeb {
        async fn connect(
            &self,
            namespace: &str,
            host: &str,
            port: u16,
        ) -> Result<(), crate::network::NetError> {
            match (namespace, host, port) {
                ("default", "web", 80) => Ok(()),
                (_, "web", _) => Err(crate::network::NetError::Refused),
                _ => Err(crate::network::NetError::BadAddress),
            }
        }
    }

    async fn exit_code_of(rt: &Simulated, argv: &[&str]) -> Option<i32> {
        let id = rt.start_container("s", &cfg(argv, &[])).await.ok()?;
        tokio::time::sleep(PROBE_RUN_TIME + Duration::from_millis(20)).await;
        match rt.container_status(&id).await.ok()?.state {
            ContainerState::Exited { exit_code, .. } => Some(exit_code),
            ContainerState::Running { .. } => None,
        }
    }

    #[tokio::test]
    async fn connectivity_checks_exit_as_the_tool_would() {
        let rt = Simulated::default().with_network(Arc::new(OnlyWeb));
        assert_eq!(exit_code_of(&rt, &["wget", "web:80"]).await, Some(0));
        assert_eq!(exit_code_of(&rt, &["wget", "web:81"]).await, Some(1));
        assert_eq!(
            exit_code_of(&rt, &["curl", "-sf", "http://web:81"]).await,
            Some(7)
        );
        assert_eq!(exit_code_of(&rt, &["curl", "http://nope"]).await, Some(6));
        // No network at all: nothing resolves.
        let offline = Simulated::default();
        assert_eq!(exit_code_of(&offline, &["wget", "web:80"]).await, Some(1));
    }
}

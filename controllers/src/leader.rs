//! Leader election on a `coordination.k8s.io/v1` Lease (upstream
//! `client-go/tools/leaderelection` with the `leases` lock, as kube-controller-manager uses
//! it): only the holder of `kube-system/kube-controller-manager` runs controllers. A holder
//! renews every `retry_period`; one that cannot renew for `renew_deadline` stops acting; others
//! take the lease over once it has not changed for `lease_duration` (measured on their own
//! clock from when they observed the last change, so clock skew between hosts does not matter).
//!
//! The loop is an explicit state machine ([`State`]) per DESIGN invariant 8.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

/// Leader election settings (kube-controller-manager's `--leader-elect*` flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// The Lease's namespace (`--leader-elect-resource-namespace`).
    pub namespace: String,
    /// The Lease's name (`--leader-elect-resource-name`).
    pub name: String,
    /// `--leader-elect-lease-duration` (15 s).
    pub lease_duration: Duration,
    /// `--leader-elect-renew-deadline` (10 s).
    pub renew_deadline: Duration,
    /// `--leader-elect-retry-period` (2 s).
    pub retry_period: Duration,
    /// This candidate's identity (`<hostname>_<uuid>`).
    pub identity: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: "kube-system".into(),
            name: "kube-controller-manager".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            identity: default_identity(),
        }
    }
}

/// `<hostname>_<random>`, as upstream.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let random = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("{}", std::process::id()));
    format!("{host}_{random}")
}

/// Where the elector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Trying to acquire the lease every retry period.
    Candidate,
    /// Holding the lease; `last_renew` is when it was last renewed.
    Leader {
        /// When the lease was last renewed successfully.
        last_renew: Instant,
    },
}

/// What the last observation of the lease was, and when we made it (client-go's
/// `observedRecord` / `observedTime`).
#[derive(Debug)]
pub struct Elector {
    cfg: Config,
    observed: Option<(String, Instant)>,
}

impl Elector {
    /// A new elector.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            observed: None,
        }
    }

    fn cfg(&self) -> Config {
        self.cfg.clone()
    }

    /// `tryAcquireOrRenew`: true when we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self, client: &Client) -> Result<bool, kube::Error> {
        let cfg = self.cfg();
        let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
        let now = MicroTime(Timestamp::now());
        let secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = api.get_opt(&cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        // The record as a string: any change restarts the expiry clock.
        let record = format!(
            "{holder}|{:?}|{:?}|{:?}",
            spec.renew_time, spec.acquire_time, spec.lease_transitions
        );
        match &self.observed {
            Some((r, _)) if *r == record => {}
            _ => self.observed = Some((record, Instant::now())),
        }
        let observed_at = self
            .observed
            .as_ref()
            .map_or_else(Instant::now, |(_, t)| *t);
        let held_by_other = !holder.is_empty() && holder != cfg.identity;
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(secs)).unwrap_or(15),
        );
        if held_by_other && observed_at.elapsed() < duration {
            return Ok(false);
        }
        let mut new_spec = spec.clone();
        new_spec.holder_identity = Some(cfg.identity.clone());
        new_spec.lease_duration_seconds = Some(secs);
        new_spec.renew_time = Some(now.clone());
        if holder != cfg.identity {
            new_spec.acquire_time = Some(now);
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(new_spec);
        match api.replace(&cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One step of the state machine; returns the next state and how long to wait before
    /// the next step.
    pub async fn step(&mut self, state: State, client: &Client) -> State {
        let cfg = self.cfg();
        let ok = match self.try_acquire_or_renew(client).await {
            Ok(ok) => ok,
            Err(e) => {
                tracing::debug!(error = %e, "leader election: lease request failed");
                false
            }
        };
        match (state, ok) {
            (_, true) => State::Leader {
                last_renew: Instant::now(),
            },
            (State::Leader { last_renew }, false) if last_renew.elapsed() < cfg.renew_deadline => {
                state
            }
            (State::Leader { .. }, false) => State::Candidate,
            (State::Candidate, false) => State::Candidate,
        }
    }

    /// Releases the lease (on shutdown) so another candidate can take over at once.
    pub async fn release(&mut self, client: &Client) {
        let cfg = self.cfg();
        let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
        let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        // Losing the race here only means the lease expires normally.
        let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
    }
}

/// A stop signal shared by several components (`ferrokube server` stops its in-process
/// controllers and scheduler on SIGTERM before the API server stops serving, so that they can
/// still hand their Leases back). Cloned freely; [`Stop::stopped`] resolves once
/// [`StopHandle::stop`] was called or the handle dropped.
#[derive(Debug, Clone)]
pub struct Stop(Option<tokio::sync::watch::Receiver<bool>>);

/// The sending side of [`Stop`].
#[derive(Debug)]
pub struct StopHandle(tokio::sync::watch::Sender<bool>);

/// A connected [`StopHandle`] and [`Stop`].
pub fn stop_channel() -> (StopHandle, Stop) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    (StopHandle(tx), Stop(Some(rx)))
}

impl StopHandle {
    /// Signals every [`Stop`] clone.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Stop {
    /// A signal that never fires (the component runs until its future is dropped).
    pub fn never() -> Self {
        Stop(None)
    }

    /// Resolves when the stop was signalled (or its handle is gone).
    pub async fn stopped(&self) {
        match &self.0 {
            Some(rx) => {
                let mut rx = rx.clone();
                let _ = rx.wait_for(|stopped| *stopped).await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Runs `work` only while this process holds the lease: acquires, runs, and stops `work`
/// (dropping it) when the lease is lost, then competes again. Returns when `work` does, or when
/// `stop` fires: then `work` is stopped first and the lease handed back at once (client-go's
/// `ReleaseOnCancel`), so the next candidate does not wait out `lease_duration`.
pub async fn run_elected<F, Fut>(
    client: Client,
    cfg: Config,
    mut work: F,
    stop: Stop,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let retry = cfg.retry_period;
    let identity = cfg.identity.clone();
    // Dropping this future while leading (without `stop`) still tries to hand the lease back,
    // from a task; that is best effort (the runtime may be going away).
    let mut guard = ReleaseOnDrop {
        client: client.clone(),
        cfg: cfg.clone(),
        leading: false,
    };
    let mut elector = Elector::new(cfg);
    let mut state = State::Candidate;
    loop {
        // Candidate: try every retry period.
        while state == State::Candidate {
            tokio::select! {
                next = elector.step(state, &client) => state = next,
                _ = stop.stopped() => return Ok(()),
            }
            if state == State::Candidate {
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = stop.stopped() => return Ok(()),
                }
            }
        }
        tracing::info!(identity = %identity, "successfully acquired lease: became leader");
        guard.leading = true;
        let mut work_fut = Box::pin(work());
        loop {
            tokio::select! {
                r = &mut work_fut => {
                    guard.leading = false;
                    elector.release(&client).await;
                    return r;
                }
                _ = stop.stopped() => {
                    // Stop acting before letting anyone else act.
                    drop(work_fut);
                    guard.leading = false;
                    let released = tokio::time::timeout(Duration::from_secs(2), elector.release(&client));
                    if released.await.is_err() {
                        tracing::warn!(identity = %identity, "leader election: lease release timed out");
                    } else {
                        tracing::info!(identity = %identity, "stopping: lease released");
                    }
                    return Ok(());
                }
                _ = tokio::time::sleep(retry) => {
                    state = elector.step(state, &client).await;
                    if state == State::Candidate {
                        guard.leading = false;
                        tracing::warn!(identity = %identity, "leader election lost: controllers stop");
                        break;
                    }
                }
            }
        }
    }
}

/// Releases the lease from a task when the election future is dropped while leading.
struct ReleaseOnDrop {
    client: Client,
    cfg: Config,
    leading: bool,
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if !self.leading {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let mut elector = Elector::new(self.cfg.clone());
        handle.spawn(async move {
            let released = tokio::time::timeout(Duration::from_secs(2), elector.release(&client));
            if released.await.is_err() {
                tracing::debug!("leader election: lease release timed out");
            }
        });
    }
}

/// Parses a Go-style duration as kube-controller-manager's flags take it (`15s`, `500ms`,
/// `1m30s`, `2h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(value * scale);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("3parsecs").is_err());
    }
}

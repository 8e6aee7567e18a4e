//! ferrokube controller-manager: the garbage collector and the namespace controller.
//!
//! Controllers talk to the API server only over HTTPS with the `kube` crate (DESIGN invariant 7),
//! like upstream's kube-controller-manager: `ferrokube controllers --kubeconfig F` runs them as
//! their own process, and `ferrokube server` starts them in-process with a client certificate it
//! issues for `system:kube-controller-manager`.

pub mod discovery;
pub mod gc;
pub mod namespace;
pub mod scheduler;

use std::path::PathBuf;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Options of `ferrokube controllers`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The kubeconfig to reach the API server with (else the usual kube-rs inference).
    pub kubeconfig: Option<PathBuf>,
}

/// Entry point of `ferrokube controllers`: runs every controller until SIGTERM / Ctrl-C.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let config = match &opts.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
            }
            None => kube::Config::infer().await?,
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // The standalone process also runs the scheduler (with the same identity); `ferrokube
        // server` starts it separately as system:kube-scheduler.
        let sched_client = kube::Client::try_from(config.clone())?;
        tokio::select! {
            r = run_with_config(config) => r,
            r = scheduler::run(sched_client) => r.context("scheduler"),
            _ = term.recv() => Ok(()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// Runs the controllers in the caller's runtime from a kubeconfig document (in-process start).
pub async fn run_with_kubeconfig(yaml: &str) -> anyhow::Result<()> {
    let kc = Kubeconfig::from_yaml(yaml).context("parsing the controller kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    run_with_config(config).await
}

/// Runs the scheduler in the caller's runtime from a kubeconfig document (in-process start as
/// system:kube-scheduler).
pub async fn run_scheduler_with_kubeconfig(yaml: &str) -> anyhow::Result<()> {
    let kc = Kubeconfig::from_yaml(yaml).context("parsing the scheduler kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    scheduler::run(kube::Client::try_from(config)?).await
}

/// Runs every controller with one client; returns when one of them fails for good.
pub async fn run_with_config(config: kube::Config) -> anyhow::Result<()> {
    let client = kube::Client::try_from(config)?;
    tracing::info!("controller-manager starting: garbagecollector, namespace");
    tokio::select! {
        r = gc::run(client.clone()) => r.context("garbage collector"),
        r = namespace::run(client) => r.context("namespace controller"),
    }
}

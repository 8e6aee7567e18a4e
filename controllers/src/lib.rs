//! ferrokube controller-manager: the garbage collector, the namespace, ServiceAccount,
//! root-CA publisher, ReplicaSet, ReplicationController, Deployment, StatefulSet, DaemonSet,
//! Job and CronJob controllers (and the others listed in [`Selection::KNOWN`]).
//!
//! Controllers talk to the API server only over HTTPS with the `kube` crate (DESIGN invariant 7),
//! like upstream's kube-controller-manager: `ferrokube controllers --kubeconfig F` runs them as
//! their own process, and `ferrokube server` starts them in-process with a client certificate it
//! issues for `system:kube-controller-manager`. Each controller has its own `kube::Client` with
//! the user agent `kube-controller-manager/<controller>`, so identities can be split later.
//! Kinds several controllers read (pods, ReplicaSets) come from one shared [`informer`].
//!
//! Start reading at [`run_with_config`].

pub mod cronjob;
pub mod daemon;
pub mod deployment;
pub mod discovery;
pub mod disruption;
pub mod endpointslice;
pub mod events;
pub mod expectations;
pub mod gc;
pub mod history;
pub mod hpa;
pub mod informer;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod nodelifecycle;
pub mod podutil;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod scheduler;
pub mod serviceaccount;
pub mod statefulset;
pub mod storageprotection;

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::informer::Informer;

/// Options of `ferrokube controllers`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The kubeconfig to reach the API server with (else the usual kube-rs inference).
    pub kubeconfig: Option<PathBuf>,
    /// `--root-ca-file`: the CA bundle published as `kube-root-ca.crt` (default: the CA of the
    /// kubeconfig's cluster).
    pub root_ca_file: Option<PathBuf>,
    /// Leader election (`--leader-elect`, on by default); None runs without it.
    pub leader_election: Option<leader::Config>,
    /// Node lifecycle and pod GC settings.
    pub node_lifecycle: nodelifecycle::Options,
    /// `--controllers`: which controllers run (kube-controller-manager's syntax).
    pub controllers: Selection,
}

/// kube-controller-manager's `--controllers`: a list of controller names, `*` for every
/// controller, `-name` to turn one off (`*,-job-controller`). The default is `*`.
#[derive(Clone, Debug)]
pub struct Selection(Vec<String>);

impl Default for Selection {
    fn default() -> Self {
        Selection(vec!["*".into()])
    }
}

impl Selection {
    /// The controllers that may be named.
    pub const KNOWN: &'static [&'static str] = &[
        "garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "root-ca-certificate-publisher-controller",
        "replicaset-controller",
        "deployment-controller",
        "replicationcontroller-controller",
        "job-controller",
        "ttl-after-finished-controller",
        "endpointslice-controller",
        "node-lifecycle-controller",
        "disruption-controller",
        "statefulset-controller",
        "daemonset-controller",
        "cronjob-controller",
        "resourcequota-controller",
        "persistentvolumeclaim-protection-controller",
        "persistentvolume-protection-controller",
        "horizontal-pod-autoscaler-controller",
    ];

    /// Parses the flag's values; an unknown name is an error, as upstream.
    pub fn parse(items: &[String]) -> anyhow::Result<Self> {
        for i in items {
            let name = i.strip_prefix('-').unwrap_or(i);
            if name != "*" && !Self::KNOWN.contains(&name) {
                anyhow::bail!(
                    "\"{name}\" is not in the list of known controllers: {}",
                    Self::KNOWN.join(", ")
                );
            }
        }
        Ok(Selection(items.to_vec()))
    }

    /// Whether `name` runs (upstream `IsControllerEnabled`).
    pub fn enabled(&self, name: &str) -> bool {
        let mut star = false;
        for i in &self.0 {
            if i == name {
                return true;
            }
            if i.strip_prefix('-') == Some(name) {
                return false;
            }
            star |= i == "*";
        }
        star
    }
}

/// Entry point of `ferrokube controllers`: runs every controller until SIGTERM / Ctrl-C.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (config, kc_ca) = match &opts.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let ca = kubeconfig_ca(&kc);
                let config =
                    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
                (config, ca)
            }
            None => (kube::Config::infer().await?, None),
        };
        let ca = match &opts.root_ca_file {
            Some(f) => Some(
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
            ),
            None => kc_ca,
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let (stopper, stop) = leader::stop_channel();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("stopping: handing back leases");
            stopper.stop();
        });
        // The standalone process also runs the scheduler (with the same identity, leader-elected
        // on kube-system/kube-scheduler); `ferrokube server` starts it as system:kube-scheduler.
        let sched_client = ferrokube_client::client(config.clone(), Some("kube-scheduler"))?;
        let controllers = run_with_config(
            config,
            ca,
            opts.leader_election.clone(),
            opts.node_lifecycle.clone(),
            opts.controllers.clone(),
            stop.clone(),
        );
        let scheduler = run_scheduler_elected(sched_client, opts.leader_election.clone(), stop);
        tokio::pin!(controllers, scheduler);
        // A failure of either ends the process; a stop ends both (each releasing its lease).
        tokio::select! {
            r = &mut controllers => {
                r?;
                scheduler.await.context("scheduler")
            }
            r = &mut scheduler => {
                r.context("scheduler")?;
                controllers.await
            }
        }
    })
}

/// The PEM CA bundle of the kubeconfig's current cluster, if it carries one.
fn kubeconfig_ca(kc: &Kubeconfig) -> Option<String> {
    let ctx_name = kc.current_context.as_ref()?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| &c.name == ctx_name)?
        .context
        .as_ref()?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)?
        .cluster
        .as_ref()?;
    if let Some(data) = &cluster.certificate_authority_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .ok()?;
        return String::from_utf8(bytes).ok();
    }
    let path = cluster.certificate_authority.as_ref()?;
    std::fs::read_to_string(path).ok()
}

/// Runs the controllers in the caller's runtime from a kubeconfig document (in-process start)
/// until `stop`.
pub async fn run_with_kubeconfig(
    yaml: &str,
    selection: Selection,
    stop: leader::Stop,
) -> anyhow::Result<()> {
    let kc = Kubeconfig::from_yaml(yaml).context("parsing the controller kubeconfig")?;
    let ca = kubeconfig_ca(&kc);
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    run_with_config(
        config,
        ca,
        Some(leader::Config::default()),
        nodelifecycle::Options::default(),
        selection,
        stop,
    )
    .await
}

/// Runs the scheduler in the caller's runtime from a kubeconfig document (in-process start as
/// system:kube-scheduler) until `stop`.
pub async fn run_scheduler_with_kubeconfig(yaml: &str, stop: leader::Stop) -> anyhow::Result<()> {
    let kc = Kubeconfig::from_yaml(yaml).context("parsing the scheduler kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    run_scheduler_elected(
        ferrokube_client::client(config, Some("kube-scheduler"))?,
        Some(leader::Config::default()),
        stop,
    )
    .await
}

/// Runs the scheduler only while holding the `kube-system/kube-scheduler` Lease (upstream
/// kube-scheduler's `--leader-elect-resource-name` default), with `leader`'s timings and
/// identity; without election when `leader` is None. Every scheduler of a cluster — the one in
/// each `ferrokube server` and each standalone `ferrokube controllers` — competes for the same
/// Lease, so exactly one binds pods. Returns when `stop` fires (the Lease handed back).
pub async fn run_scheduler_elected(
    client: kube::Client,
    leader: Option<leader::Config>,
    stop: leader::Stop,
) -> anyhow::Result<()> {
    match leader {
        Some(mut cfg) => {
            cfg.name = SCHEDULER_LEASE.into();
            cfg.namespace = "kube-system".into();
            let c = client.clone();
            leader::run_elected(client, cfg, || scheduler::run(c.clone()), stop).await
        }
        None => tokio::select! {
            r = scheduler::run(client) => r,
            _ = stop.stopped() => Ok(()),
        },
    }
}

/// The scheduler's leader-election Lease in `kube-system`.
pub const SCHEDULER_LEASE: &str = "kube-scheduler";

/// A client whose requests carry the user agent `kube-controller-manager/<name>`, over HTTP/2
/// when the server offers it (as client-go's): a controller's watches and requests share one
/// connection instead of holding one each while idle. The scheduler and node agents stay on
/// HTTP/1.1 (their bursts of binds and status writes ran slower on a connection shared with
/// their watch streams).
pub fn client_for(config: &kube::Config, name: &str) -> anyhow::Result<kube::Client> {
    Ok(ferrokube_client::client_http2(
        config.clone(),
        Some(&format!("kube-controller-manager/{name}")),
    )?)
}

/// Runs every controller (while holding the leader lease when `leader` is set); returns when
/// one of them fails for good, or when `stop` fires (the leader Lease handed back).
pub async fn run_with_config(
    config: kube::Config,
    root_ca: Option<String>,
    leader: Option<leader::Config>,
    nodes: nodelifecycle::Options,
    selection: Selection,
    stop: leader::Stop,
) -> anyhow::Result<()> {
    match leader {
        Some(cfg) => {
            let client = client_for(&config, "leader-election")?;
            tracing::info!(lease = %format!("{}/{}", cfg.namespace, cfg.name), identity = %cfg.identity, "attempting to acquire leader lease");
            leader::run_elected(
                client,
                cfg,
                || {
                    run_controllers(
                        config.clone(),
                        root_ca.clone(),
                        nodes.clone(),
                        selection.clone(),
                    )
                },
                stop,
            )
            .await
        }
        None => tokio::select! {
            r = run_controllers(config, root_ca, nodes, selection) => r,
            _ = stop.stopped() => Ok(()),
        },
    }
}

/// Runs every controller; returns when one of them fails for good. Dropping the future stops
/// them all (informer tasks included).
async fn run_controllers(
    config: kube::Config,
    root_ca: Option<String>,
    nodes: nodelifecycle::Options,
    selection: Selection,
) -> anyhow::Result<()> {
    tracing::info!(controllers = ?selection, "controller-manager starting");
    let on = |name: &str| selection.enabled(name);
    if !Selection::KNOWN.iter().any(|c| on(c)) {
        // Nothing to run: no informers either (`--controllers=-a,-b,...`).
        tracing::info!("no controller enabled");
        return std::future::pending().await;
    }
    let informer_client = client_for(&config, "shared-informers")?;
    let pods = Informer::<Pod>::spawn_buffered(
        kube::Api::all(informer_client.clone()),
        podutil::drop_unread_pod_fields,
        informer::POD_BUFFER,
    );
    let replicasets = Informer::<ReplicaSet>::spawn(kube::Api::all(informer_client));
    pods.wait_until_ready().await;
    replicasets.wait_until_ready().await;
    // Each controller is a task of its own: polled only when one of its own wakers fires, and
    // spread over the runtime's workers. (Under one `select!` every wake-up of any controller
    // polled all of them: 14% of the server's CPU in a ConfigMap create load went to polling
    // controllers that had nothing to do.) The set aborts them all when dropped.
    let mut set = tokio::task::JoinSet::new();
    // `start!(flag, name, future)`: spawns the controller when `flag` is enabled; its result
    // carries `name` as context. The future is built here (its client's `?` returns from
    // `run_controllers`), then moved into the task.
    macro_rules! start {
        ($flag:literal, $name:literal, $fut:expr) => {
            if on($flag) {
                let fut = $fut;
                set.spawn(async move { fut.await.context($name) });
            }
        };
    }
    start!(
        "garbage-collector-controller",
        "garbage collector",
        gc::run(client_for(&config, "garbage-collector")?)
    );
    start!(
        "namespace-controller",
        "namespace controller",
        namespace::run(client_for(&config, "namespace-controller")?)
    );
    start!(
        "serviceaccount-controller",
        "serviceaccount controller",
        serviceaccount::run(client_for(&config, "service-account-controller")?)
    );
    match root_ca {
        Some(ca) => start!(
            "root-ca-certificate-publisher-controller",
            "root-ca-cert-publisher",
            rootca::run(client_for(&config, "root-ca-cert-publisher")?, ca)
        ),
        None if on("root-ca-certificate-publisher-controller") => {
            tracing::warn!("no CA bundle known: kube-root-ca.crt is not published")
        }
        None => {}
    }
    start!(
        "replicaset-controller",
        "replicaset controller",
        replicaset::run_replicasets(
            client_for(&config, "replicaset-controller")?,
            pods.clone(),
            replicasets.clone()
        )
    );
    start!(
        "deployment-controller",
        "deployment controller",
        deployment::run(
            client_for(&config, "deployment-controller")?,
            pods.clone(),
            replicasets.clone()
        )
    );
    start!(
        "replicationcontroller-controller",
        "replication controller",
        replicaset::run_replication_controllers(
            client_for(&config, "replication-controller")?,
            pods.clone()
        )
    );
    start!(
        "job-controller",
        "job controller",
        job::run(client_for(&config, "job-controller")?, pods.clone())
    );
    start!(
        "ttl-after-finished-controller",
        "ttl-after-finished controller",
        job::ttl::run(client_for(&config, "ttl-after-finished-controller")?)
    );
    start!(
        "endpointslice-controller",
        "endpointslice controller",
        endpointslice::run(
            client_for(&config, "endpointslice-controller")?,
            pods.clone()
        )
    );
    start!(
        "node-lifecycle-controller",
        "node lifecycle controller",
        nodelifecycle::run(
            client_for(&config, "node-lifecycle-controller")?,
            pods.clone(),
            nodes
        )
    );
    start!(
        "disruption-controller",
        "disruption controller",
        disruption::run(client_for(&config, "disruption-controller")?, pods.clone())
    );
    start!(
        "statefulset-controller",
        "statefulset controller",
        statefulset::run(client_for(&config, "statefulset-controller")?, pods.clone())
    );
    start!(
        "daemonset-controller",
        "daemonset controller",
        daemon::run(client_for(&config, "daemon-set-controller")?, pods.clone())
    );
    start!(
        "cronjob-controller",
        "cronjob controller",
        cronjob::run(client_for(&config, "cronjob-controller")?)
    );
    start!(
        "resourcequota-controller",
        "resourcequota controller",
        resourcequota::run(client_for(&config, "resourcequota-controller")?)
    );
    start!(
        "persistentvolumeclaim-protection-controller",
        "pvc protection controller",
        storageprotection::run_pvc(client_for(&config, "pvc-protection-controller")?)
    );
    start!(
        "persistentvolume-protection-controller",
        "pv protection controller",
        storageprotection::run_pv(client_for(&config, "pv-protection-controller")?)
    );
    start!(
        "horizontal-pod-autoscaler-controller",
        "horizontal pod autoscaler controller",
        hpa::run(client_for(&config, "horizontal-pod-autoscaler")?)
    );
    // The first controller to end (a failure for good, or a normal return) ends them all.
    match set.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(anyhow::anyhow!("a controller task ended abnormally: {e}")),
        None => {
            tracing::info!("no controller enabled");
            std::future::pending().await
        }
    }
}

//! ferrokube node agent (the kubelet), simulated runtime first.
//!
//! A node registers itself ([`node`]), keeps its `kube-node-lease` Lease renewed, watches the pods
//! bound to it and runs one [`worker::Worker`] per pod (an explicit state machine) against a
//! [`runtime::Runtime`]. The only runtime today is [`runtime::Simulated`] (containers on timers);
//! it is never chosen silently: `--runtime=simulated` is required and the node reports
//! `containerRuntimeVersion: simulated://…` (visible in `kubectl get nodes -o wide`).
//!
//! Like every component, it reaches the API server only over HTTPS with the `kube` crate, as
//! `system:node:<name>` (group `system:nodes`). `ferrokube server --nodes=N` embeds N nodes in one
//! process ([`run_nodes`]): each has its own client certificate, and one pod watch serves them all
//! (filtered locally by `spec.nodeName`).
//!
//! Start reading at [`run_nodes`], then [`pods::PodDispatcher`] and [`worker::Worker::step`].

pub mod network;
pub mod node;
pub mod pods;
pub mod runtime;
pub mod status;
pub mod worker;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::node::{NodeConfig, NodeCtx};
use crate::runtime::{Runtime, Simulated, SimulatedConfig};

/// The container runtimes the agent knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Containers are timers; nothing runs (for tests, benchmarks and demos).
    Simulated,
}

/// Settings shared by every node of a process (`ferrokube node-agent` flags).
#[derive(clap::Args, Debug, Clone)]
pub struct NodeOptions {
    /// The container runtime: only `simulated` exists so far (required, never a silent default).
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeKind>,
    /// CPU capacity the node reports.
    #[arg(long = "node-cpu", default_value = "4")]
    pub cpu: String,
    /// Memory capacity the node reports.
    #[arg(long = "node-memory", default_value = "8Gi")]
    pub memory: String,
    /// Maximum number of pods on the node.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Taints to register the node with (`key=value:Effect,...`).
    #[arg(long, default_value = "")]
    pub register_with_taints: String,
    /// Extra node labels (`k=v,...`).
    #[arg(long, default_value = "")]
    pub node_labels: String,
    /// The `node.kubernetes.io/instance-type` label.
    #[arg(long, default_value = "ferrokube-simulated")]
    pub instance_type: String,
    /// Simulated runtime: container start latency in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub simulated_start_latency_ms: u64,
    /// Simulated runtime: image pull latency in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub simulated_pull_latency_ms: u64,
    /// Node lease renewal period in seconds (upstream: 10).
    #[arg(long, default_value_t = 10)]
    pub node_lease_renew_seconds: u64,
}

impl NodeOptions {
    /// The runtime selected, or an error naming the flag. `client` (the node's) answers the
    /// simulated runtime's connectivity checks ([`network`]).
    pub fn runtime(&self, client: &kube::Client) -> anyhow::Result<Arc<dyn Runtime>> {
        match self.runtime {
            Some(RuntimeKind::Simulated) => Ok(Arc::new(
                Simulated::new(SimulatedConfig {
                    start_latency: Duration::from_millis(self.simulated_start_latency_ms),
                    pull_latency: Duration::from_millis(self.simulated_pull_latency_ms),
                })
                .with_network(Arc::new(network::ClusterNetwork::new(client.clone()))),
            )),
            None => anyhow::bail!(
                "no container runtime selected: pass --runtime=simulated (a CRI runtime is not implemented yet)"
            ),
        }
    }

    /// The configuration of one node.
    pub fn node_config(
        &self,
        name: &str,
        node_ip: &str,
        pod_cidr: Ipv4Addr,
    ) -> anyhow::Result<NodeConfig> {
        let taints = node::parse_taints(&self.register_with_taints).map_err(anyhow::Error::msg)?;
        let mut labels = BTreeMap::new();
        for kv in self
            .node_labels
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            labels.insert(k.to_string(), v.to_string());
        }
        Ok(NodeConfig {
            name: name.to_string(),
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
            ephemeral_storage: "100Gi".into(),
            max_pods: self.max_pods,
            node_ip: node_ip.to_string(),
            pod_cidr,
            instance_type: self.instance_type.clone(),
            labels,
            taints,
            lease_renew: Duration::from_secs(self.node_lease_renew_seconds.max(1)),
            status_report: Duration::from_secs(300),
        })
    }
}

/// Options of `ferrokube node-agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// The kubeconfig holding this node's client certificate (`system:node:<name>`).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's InternalIP address.
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: String,
    /// The node's pod CIDR (a /24; default derived from the node name).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    #[command(flatten)]
    pub node: NodeOptions,
}

/// The pod CIDR of embedded node `i`: 10.64.0.0/24, 10.64.1.0/24, … (16,384 nodes).
pub fn embedded_pod_cidr(i: usize) -> Ipv4Addr {
    let i = i % 16_384;
    Ipv4Addr::new(10, 64 + (i / 256) as u8, (i % 256) as u8, 0)
}

/// The InternalIP of embedded node `i`: 172.18.0.2, 172.18.0.3, …
pub fn embedded_node_ip(i: usize) -> String {
    let i = i % 65_000;
    Ipv4Addr::new(
        172,
        18 + (i / 250 / 256) as u8,
        ((i / 250) % 256) as u8,
        (i % 250 + 2) as u8,
    )
    .to_string()
}

fn default_pod_cidr(name: &str) -> Ipv4Addr {
    let h = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    Ipv4Addr::new(10, 128 + (h % 64) as u8, ((h / 64) % 256) as u8, 0)
}

/// Entry point of `ferrokube node-agent`: runs until SIGTERM / Ctrl-C.
pub fn run(opts: Options) -> anyhow::Result<()> {
    if opts.node.runtime.is_none() {
        anyhow::bail!(
            "no container runtime selected: pass --runtime=simulated (a CRI runtime is not implemented yet)"
        );
    }
    let name = match &opts.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_lowercase())
            .context("reading the host name (pass --node-name)")?,
    };
    let cidr = match &opts.pod_cidr {
        Some(c) => c
            .split('/')
            .next()
            .unwrap_or("")
            .parse::<Ipv4Addr>()
            .with_context(|| format!("--pod-cidr {c}"))?,
        None => default_pod_cidr(&name),
    };
    let config = opts.node.node_config(&name, &opts.node_ip, cidr)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let kc = Kubeconfig::read_from(&opts.kubeconfig)
            .with_context(|| format!("reading {}", opts.kubeconfig.display()))?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        let client = ferrokube_client::client(cfg, None)?;
        let runtime = opts.node.runtime(&client)?;
        let node = NodeCtx::new(config, client, runtime);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = run_nodes(vec![node]) => r,
            _ = term.recv() => Ok(()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// A client from a kubeconfig document.
pub async fn client_from_yaml(yaml: &str) -> anyhow::Result<kube::Client> {
    let kc = Kubeconfig::from_yaml(yaml).context("parsing a node kubeconfig")?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(ferrokube_client::client(cfg, None)?)
}

/// Registers the nodes, then runs their heartbeats and one shared pod watch; returns only when
/// the pod watch fails for good.
pub async fn run_nodes(nodes: Vec<Arc<NodeCtx>>) -> anyhow::Result<()> {
    let Some(first) = nodes.first().cloned() else {
        anyhow::bail!("no nodes to run");
    };
    let mut tasks = tokio::task::JoinSet::new();
    for node in &nodes {
        let node = node.clone();
        tasks.spawn(async move {
            let mut delay = Duration::from_millis(200);
            let uid = loop {
                match node.register().await {
                    Ok(uid) => break uid,
                    Err(e) => {
                        tracing::warn!(node = %node.config.name, error = %e, "node registration");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(7));
                    }
                }
            };
            node.run_heartbeats(uid).await;
        });
    }
    let dispatcher = pods::PodDispatcher::new(nodes);
    let r = dispatcher.run(first.client.clone()).await;
    tasks.abort_all();
    r
}

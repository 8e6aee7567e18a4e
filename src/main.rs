//! The `ferrokube` binary: CLI dispatch only.

use clap::{Parser, Subcommand};

mod tools;

/// jemalloc hands freed memory back to the OS (glibc's arenas keep what one-off work such as
/// the OpenAPI build allocated), which keeps idle RSS low; `.cargo/config.toml` builds it with
/// `dirty_decay_ms:1000` (freed pages go back within ~1 s, not 10 s). The `system-allocator` feature
/// leaves malloc in place for heap profilers that hook it (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "ferrokube",
    version,
    about = "A Kubernetes 1.35 compatible control plane and node agent"
)]
struct Cli {
    /// Log verbosity (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short = 'v', action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// All-in-one control plane: API server on the embedded store, the controllers, the
    /// scheduler and (with --nodes=N) N simulated nodes.
    Server(ServerArgs),
    /// The API server alone.
    Apiserver(ferrokube_apiserver::options::ServerOptions),
    /// Controller-manager: garbage collector and namespace controller.
    Controllers(ControllersArgs),
    /// Node agent / kubelet (simulated runtime only so far: --runtime=simulated).
    NodeAgent(ferrokube_node_agent::Options),
    /// Backup and restore of the embedded store.
    #[command(subcommand)]
    Snapshot(tools::SnapshotCommand),
    /// Copies an embedded store into etcd, keeping resourceVersions monotonic.
    Migrate(tools::MigrateArgs),
    /// Issues a kubeconfig with a client certificate signed by the cluster CA of --data-dir
    /// (like `kubeadm kubeconfig user`), printed on stdout.
    Kubeconfig(KubeconfigArgs),
}

#[derive(clap::Args)]
struct ServerArgs {
    #[command(flatten)]
    server: ferrokube_apiserver::options::ServerOptions,
    /// Simulated nodes to run in this process (node-0 … node-N-1; each its own
    /// system:node:<name> client certificate, one shared pod watch).
    #[arg(long, default_value_t = 0)]
    nodes: usize,
    #[command(flatten)]
    node: ferrokube_node_agent::NodeOptions,
    /// Controllers to run in-process (kube-controller-manager's --controllers: `*` for all,
    /// `-name` to turn one off).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
}

#[derive(clap::Args)]
struct KubeconfigArgs {
    #[command(flatten)]
    server: ferrokube_apiserver::options::ServerOptions,
    /// The user name (certificate CN), e.g. system:node:worker-1.
    #[arg(long)]
    client_name: String,
    /// The group (certificate O), e.g. system:nodes.
    #[arg(long)]
    org: Option<String>,
}

#[derive(clap::Args)]
struct ControllersArgs {
    /// The kubeconfig to reach the API server with (default: kube-rs inference).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// Controllers to run (`*` for all, `-name` to turn one off), as kube-controller-manager.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// CA bundle published in every namespace as the `kube-root-ca.crt` ConfigMap (default: the
    /// kubeconfig's cluster CA).
    #[arg(long)]
    root_ca_file: Option<std::path::PathBuf>,
    /// Run only while holding the leader lease (several copies can run safely).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long a lease not renewed stays valid for other candidates.
    #[arg(long, default_value = "15s", value_parser = ferrokube_controllers::leader::parse_duration)]
    leader_elect_lease_duration: std::time::Duration,
    /// How long the leader keeps trying to renew before it stops acting.
    #[arg(long, default_value = "10s", value_parser = ferrokube_controllers::leader::parse_duration)]
    leader_elect_renew_deadline: std::time::Duration,
    /// How often candidates try to acquire and the leader renews.
    #[arg(long, default_value = "2s", value_parser = ferrokube_controllers::leader::parse_duration)]
    leader_elect_retry_period: std::time::Duration,
    /// The namespace of the leader Lease.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// The name of the leader Lease.
    #[arg(long, default_value = "kube-controller-manager")]
    leader_elect_resource_name: String,
    /// How long a node may go without renewing its lease before it is marked unreachable.
    #[arg(long, default_value = "40s", value_parser = ferrokube_controllers::leader::parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = ferrokube_controllers::leader::parse_duration)]
    node_monitor_period: std::time::Duration,
    /// Terminated pods kept before the oldest are deleted.
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
}

/// Issues a component kubeconfig off the runtime's worker threads.
async fn issue(
    info: &ferrokube_apiserver::ListeningInfo,
    file: String,
    cn: String,
    org: Option<&'static str>,
) -> Option<String> {
    let (opts, dir) = (info.opts.clone(), info.data_dir.clone());
    let issued = tokio::task::spawn_blocking(move || {
        ferrokube_apiserver::certs::user_kubeconfig(&opts, &dir, &file, &cn, org)
    })
    .await;
    match issued {
        Ok(Ok(y)) => Some(y),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no client certificate");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "no client certificate");
            None
        }
    }
}

/// `ferrokube server --nodes=N`: the scheduler (as system:kube-scheduler) and N simulated nodes
/// (each as system:node:<name> in system:nodes) start in-process next to the controllers.
fn start_scheduler_and_nodes(
    info: ferrokube_apiserver::ListeningInfo,
    nodes: usize,
    node_opts: ferrokube_node_agent::NodeOptions,
    stop: ferrokube_controllers::leader::Stop,
) -> tokio::task::JoinHandle<()> {
    let sched_info = ferrokube_apiserver::ListeningInfo {
        opts: info.opts.clone(),
        data_dir: info.data_dir.clone(),
    };
    // Like the controllers, the scheduler stops on SIGTERM before the server does, releasing
    // its Lease through it.
    let scheduler = tokio::spawn(async move {
        let Some(yaml) = issue(
            &sched_info,
            "scheduler".into(),
            "system:kube-scheduler".into(),
            None,
        )
        .await
        else {
            return;
        };
        if let Err(e) = ferrokube_controllers::run_scheduler_with_kubeconfig(&yaml, stop).await {
            tracing::error!(error = format!("{e:#}"), "scheduler stopped");
        }
    });
    if nodes == 0 {
        return scheduler;
    }
    tokio::spawn(async move {
        let mut runtime = None;
        let mut ctxs = Vec::with_capacity(nodes);
        for i in 0..nodes {
            let name = format!("node-{i}");
            let Some(yaml) = issue(
                &info,
                format!("node-{i}"),
                format!("system:node:{name}"),
                Some("system:nodes"),
            )
            .await
            else {
                return;
            };
            let client = match ferrokube_node_agent::client_from_yaml(&yaml).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "simulated nodes not started");
                    return;
                }
            };
            // One runtime for every embedded node; its simulated network reads the cluster
            // with the first node's identity.
            let runtime = match &runtime {
                Some(r) => std::sync::Arc::clone(r),
                None => match node_opts.runtime(&client) {
                    Ok(r) => runtime.insert(r).clone(),
                    Err(e) => {
                        tracing::error!(error = format!("{e:#}"), "simulated nodes not started");
                        return;
                    }
                },
            };
            let config = match node_opts.node_config(
                &name,
                &ferrokube_node_agent::embedded_node_ip(i),
                ferrokube_node_agent::embedded_pod_cidr(i),
            ) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "simulated nodes not started");
                    return;
                }
            };
            ctxs.push(ferrokube_node_agent::node::NodeCtx::new(
                config, client, runtime,
            ));
        }
        tracing::info!(nodes, "simulated nodes starting");
        if let Err(e) = ferrokube_node_agent::run_nodes(ctxs).await {
            tracing::error!(error = format!("{e:#}"), "simulated nodes stopped");
        }
    });
    scheduler
}

/// `ferrokube server`: once the API server listens, the controllers start in-process and reach
/// it over HTTPS with a client certificate issued for system:kube-controller-manager.
fn start_controllers(
    info: ferrokube_apiserver::ListeningInfo,
    selection: ferrokube_controllers::Selection,
    stop: ferrokube_controllers::leader::Stop,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let issued = tokio::task::spawn_blocking(move || {
            ferrokube_apiserver::certs::component_kubeconfig(
                &info.opts,
                &info.data_dir,
                "controller-manager",
                "system:kube-controller-manager",
            )
        })
        .await;
        let yaml = match issued {
            Ok(Ok(y)) => y,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "controllers not started: no client certificate");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "controllers not started");
                return;
            }
        };
        // Controllers stop first on SIGTERM (releasing their Lease) so their watches do not
        // hold the server's drain.
        if let Err(e) = ferrokube_controllers::run_with_kubeconfig(&yaml, selection, stop).await {
            tracing::error!(error = format!("{e:#}"), "controllers stopped");
        }
    })
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,ferrokube=info,ferrokube_apiserver=info,ferrokube_storage=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Server(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                let (nodes, node_opts) = (args.nodes, args.node);
                let selection = ferrokube_controllers::Selection::parse(&args.controllers)?;
                if nodes > 0 && node_opts.runtime.is_none() {
                    anyhow::bail!(
                        "--nodes needs a runtime for its nodes: pass --runtime=simulated"
                    );
                }
                let (stopper, stop) = ferrokube_controllers::leader::stop_channel();
                let components = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                let started = std::sync::Arc::clone(&components);
                let r = rt.block_on(ferrokube_apiserver::run_with_hooks(
                    args.server,
                    move |info| {
                        let copy = ferrokube_apiserver::ListeningInfo {
                            opts: info.opts.clone(),
                            data_dir: info.data_dir.clone(),
                        };
                        let handles = [
                            start_scheduler_and_nodes(copy, nodes, node_opts, stop.clone()),
                            start_controllers(info, selection, stop),
                        ];
                        if let Ok(mut list) = started.lock() {
                            list.extend(handles);
                        }
                    },
                    // On SIGTERM the controllers and the scheduler stop and hand their Leases
                    // back while the server still serves (a restarted or standby server
                    // takes over at once instead of after the lease duration).
                    async move {
                        stopper.stop();
                        let handles = components.lock().map(|mut l| std::mem::take(&mut *l));
                        let all = async {
                            for handle in handles.unwrap_or_default() {
                                let _ = handle.await;
                            }
                        };
                        if tokio::time::timeout(std::time::Duration::from_secs(3), all)
                            .await
                            .is_err()
                        {
                            tracing::warn!("components did not stop within 3 s");
                        }
                    },
                ));
                // In-process controllers may still be retrying: do not wait for them.
                rt.shutdown_timeout(std::time::Duration::from_millis(500));
                r
            }),
        Command::Apiserver(opts) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(ferrokube_apiserver::run(opts))),
        Command::Controllers(args) => ferrokube_controllers::Selection::parse(&args.controllers)
            .and_then(|controllers| {
                ferrokube_controllers::run(ferrokube_controllers::Options {
                    controllers,
                    kubeconfig: args.kubeconfig,
                    root_ca_file: args.root_ca_file,
                    leader_election: args.leader_elect.then(|| {
                        ferrokube_controllers::leader::Config {
                            namespace: args.leader_elect_resource_namespace,
                            name: args.leader_elect_resource_name,
                            lease_duration: args.leader_elect_lease_duration,
                            renew_deadline: args.leader_elect_renew_deadline,
                            retry_period: args.leader_elect_retry_period,
                            identity: ferrokube_controllers::leader::default_identity(),
                        }
                    }),
                    node_lifecycle: ferrokube_controllers::nodelifecycle::Options {
                        grace_period: args.node_monitor_grace_period,
                        monitor_period: args.node_monitor_period,
                        terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
                    },
                })
            }),
        Command::NodeAgent(opts) => ferrokube_node_agent::run(opts),
        Command::Kubeconfig(args) => {
            let dir = args.server.data_dir();
            let file = format!(
                "user-{}",
                args.client_name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    })
                    .collect::<String>()
            );
            ferrokube_apiserver::certs::user_kubeconfig(
                &args.server,
                &dir,
                &file,
                &args.client_name,
                args.org.as_deref(),
            )
            .map(|y| print!("{y}"))
            .map_err(anyhow::Error::from)
        }
        Command::Snapshot(cmd) => tools::snapshot(cmd),
        Command::Migrate(args) => tools::migrate(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

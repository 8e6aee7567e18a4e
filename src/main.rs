//! The `ferrokube` binary: CLI dispatch only.

use clap::{Parser, Subcommand};

/// jemalloc hands freed memory back to the OS (glibc's arenas keep what one-off work such as
/// the OpenAPI build allocated), which keeps idle RSS low.
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
    /// All-in-one control plane: API server on the embedded store and the controllers.
    Server(ferrokube_apiserver::options::ServerOptions),
    /// The API server alone.
    Apiserver(ferrokube_apiserver::options::ServerOptions),
    /// Controller-manager: garbage collector and namespace controller.
    Controllers(ControllersArgs),
    /// Node agent / kubelet (not yet implemented).
    NodeAgent,
}

#[derive(clap::Args)]
struct ControllersArgs {
    /// The kubeconfig to reach the API server with (default: kube-rs inference).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
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

/// `ferrokube server`: once the API server listens, the controllers start in-process and reach
/// it over HTTPS with a client certificate issued for system:kube-controller-manager.
fn start_controllers(info: ferrokube_apiserver::ListeningInfo) {
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
        // Controllers stop first on SIGTERM so their watches do not hold the server's drain.
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "controllers not started: no SIGTERM handler");
                    return;
                }
            };
        tokio::select! {
            r = ferrokube_controllers::run_with_kubeconfig(&yaml) => {
                if let Err(e) = r {
                    tracing::error!(error = format!("{e:#}"), "controllers stopped");
                }
            }
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
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
        Command::Server(opts) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                let r = rt.block_on(ferrokube_apiserver::run_with_hook(opts, start_controllers));
                // In-process controllers may still be retrying: do not wait for them.
                rt.shutdown_timeout(std::time::Duration::from_millis(500));
                r
            }),
        Command::Apiserver(opts) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(ferrokube_apiserver::run(opts))),
        Command::Controllers(args) => ferrokube_controllers::run(ferrokube_controllers::Options {
            kubeconfig: args.kubeconfig,
            root_ca_file: args.root_ca_file,
            leader_election: args
                .leader_elect
                .then(|| ferrokube_controllers::leader::Config {
                    namespace: args.leader_elect_resource_namespace,
                    name: args.leader_elect_resource_name,
                    lease_duration: args.leader_elect_lease_duration,
                    renew_deadline: args.leader_elect_renew_deadline,
                    retry_period: args.leader_elect_retry_period,
                    identity: ferrokube_controllers::leader::default_identity(),
                }),
            node_lifecycle: ferrokube_controllers::nodelifecycle::Options {
                grace_period: args.node_monitor_grace_period,
                monitor_period: args.node_monitor_period,
                terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
            },
        }),
        Command::NodeAgent => ferrokube_node_agent::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

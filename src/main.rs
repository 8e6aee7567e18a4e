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
    /// All-in-one control plane: API server on the embedded store (controllers join later).
    Server(ferrokube_apiserver::options::ServerOptions),
    /// The API server alone.
    Apiserver(ferrokube_apiserver::options::ServerOptions),
    /// Controller-manager and scheduler (not yet implemented).
    Controllers,
    /// Node agent / kubelet (not yet implemented).
    NodeAgent,
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
        Command::Server(opts) | Command::Apiserver(opts) => {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(ferrokube_apiserver::run(opts)))
        }
        Command::Controllers => ferrokube_controllers::run(),
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

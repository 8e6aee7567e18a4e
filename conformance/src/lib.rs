//! Black-box test harness for ferrokube.
//!
//! [`TestServer`] spawns the real `ferrokube server` binary on a free loopback port with its own
//! temporary data directory, waits until `/readyz` answers, and offers helpers to drive it with the
//! stock clients: kubectl v1.35.2 from `.tools/bin` (installed by `hack/install-tools.sh`; the
//! system kubectl is never used) and kube-rs. Every `must_*` helper panics with the command line,
//! its stdout/stderr and the tail of the server log, so a misbehaving server fails loudly.
//!
//! The harness depends on nothing of ferrokube's own code: it only knows the binary's command line
//! (`server --data-dir DIR --secure-port PORT --bind-address 127.0.0.1`) and that the server writes
//! `DIR/admin.kubeconfig`. Start reading at [`TestServer::start`].
//!
//! Environment overrides: `FERROKUBE_BIN` (the server binary), `FERROKUBE_KUBECTL` (kubectl),
//! `FERROKUBE_TEST_KEEP=1` (keep data directories after the test).

mod command;
mod etcd;
mod helm;
mod paths;
mod server;

pub use command::{CommandError, KUBECTL_VERSION, run_with_timeout};
pub use etcd::EtcdCluster;
pub use helm::helm_bin;
pub use paths::{ferrokube_bin, kubectl_bin, manifests_dir, workspace_root};
pub use server::{HarnessError, ServerSpec, TestServer};

//! ferrokube controller-manager and scheduler.
//!
//! Controllers talk to the API server only over HTTPS with the `kube` crate (DESIGN invariant 7).
//! Nothing is implemented yet: the `controllers` subcommand reports that and exits non-zero.

/// Entry point of `ferrokube controllers`.
pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("`ferrokube controllers` is not yet implemented")
}

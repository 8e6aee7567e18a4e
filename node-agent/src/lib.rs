//! ferrokube node agent (the kubelet).
//!
//! Not implemented yet: the `node-agent` subcommand reports that and exits non-zero.

/// Entry point of `ferrokube node-agent`.
pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("`ferrokube node-agent` is not yet implemented")
}

//! Where the harness finds the server binary, kubectl and the test manifests.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// The directory holding the YAML manifests the tests apply (`conformance/manifests`).
pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

/// The `ferrokube` binary under test.
///
/// `FERROKUBE_BIN` wins; otherwise `release/ferrokube` in the cargo target directory this test
/// binary was built into (found from the running executable, so a shared `CARGO_TARGET_DIR`
/// works), then `$CARGO_TARGET_DIR/release/ferrokube`, then `<workspace>/target/release/ferrokube`.
/// The returned path may not exist; [`crate::TestServer::start`] reports that clearly.
pub fn ferrokube_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FERROKUBE_BIN") {
        return PathBuf::from(bin);
    }
    let mut candidates = Vec::new();
    // The test executable lives at <target>/<profile>/deps/<name>-<hash>.
    if let Ok(exe) = std::env::current_exe()
        && let Some(target) = exe.parent().and_then(Path::parent).and_then(Path::parent)
    {
        candidates.push(target.join("release").join("ferrokube"));
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
        candidates.push(dir.join("release").join("ferrokube"));
    }
    candidates.push(
        workspace_root()
            .join("target")
            .join("release")
            .join("ferrokube"),
    );
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .unwrap_or_else(|| candidates.swap_remove(0))
}

/// The kubectl the tests drive: `FERROKUBE_KUBECTL`, else `<workspace>/.tools/bin/kubectl`.
///
/// Never the system kubectl, whose version differs.
pub fn kubectl_bin() -> PathBuf {
    std::env::var_os("FERROKUBE_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools").join("bin").join("kubectl"))
}

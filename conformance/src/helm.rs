//! helm v4 against a test server: `.tools/bin/helm` (or `FERROKUBE_HELM`) with the server's
//! kubeconfig and private cache/config directories, so tests never touch the user's helm state.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::TestServer;
use crate::command::{describe, run_with_timeout};

/// The helm the tests drive.
pub fn helm_bin() -> PathBuf {
    std::env::var_os("FERROKUBE_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::workspace_root()
                .join(".tools")
                .join("bin")
                .join("helm")
        })
}

impl TestServer {
    /// A helm command with our kubeconfig, not yet run.
    pub fn helm_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let home = self.data_dir().join("helm");
        let mut cmd = Command::new(helm_bin());
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        cmd
    }

    /// Runs helm (at most two minutes) and returns whatever it did.
    pub fn helm<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cmd = self.helm_command(args);
        let line = format!("{cmd:?}");
        run_with_timeout(cmd, None, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// Runs helm, panics (with its output and the server log tail) unless it exits 0; returns
    /// stdout.
    pub fn must_helm<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cmd = self.helm_command(args);
        let line = format!("{cmd:?}");
        let output = run_with_timeout(cmd, None, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        if !output.status.success() {
            panic!(
                "{}\nserver log tail:\n{}",
                describe(&format!("helm failed: {line}"), &output),
                self.log_tail()
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

//! [`TestServer`]: one real `ferrokube server` process per test, on loopback.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::command::{CommandError, describe, ensure_kubectl_version, run_with_timeout};

/// How long a server may take to answer `/readyz` after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one kubectl invocation may run.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a graceful shutdown (SIGTERM) may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of server log quoted in panic messages.
const LOG_TAIL_LINES: usize = 60;

/// Why a test server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The server binary does not exist.
    #[error(
        "ferrokube binary not found at {0}: build it with `cargo build --release` or set FERROKUBE_BIN"
    )]
    MissingBinary(PathBuf),
    /// A filesystem operation on the data directory or log failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server process exited before it became ready.
    #[error("ferrokube server exited with {status} before becoming ready; server log tail:\n{log}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The tail of its log.
        log: String,
    },
    /// `/readyz` did not answer 200 in time.
    #[error(
        "ferrokube server not ready after {timeout:?}; last probe: {probe}\nserver log tail:\n{log}"
    )]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// What the last readiness probe said.
        probe: String,
        /// The tail of the server log.
        log: String,
    },
    /// Running a helper process failed.
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// A running `ferrokube server` with its own data directory and loopback port.
///
/// Dropping it kills the process and removes the data directory (kept when the test panicked or
/// `FERROKUBE_TEST_KEEP=1`, and its path printed).
#[derive(Debug)]
pub struct TestServer {
    bin: PathBuf,
    data_dir: PathBuf,
    port: u16,
    child: Option<Child>,
    spec: ServerSpec,
}

/// How to start a [`TestServer`] other than the default `ferrokube server` on a fresh directory.
#[derive(Clone, Debug, Default)]
pub struct ServerSpec {
    /// `apiserver` instead of `server` (no in-process controllers).
    pub apiserver_only: bool,
    /// More flags (for example `--etcd-servers=...`).
    pub extra_args: Vec<String>,
    /// Use this data directory (for example a restored snapshot) instead of a fresh one.
    pub data_dir: Option<PathBuf>,
}

impl TestServer {
    /// Starts a server on a fresh data directory and waits until it is ready; panics with the
    /// server log on failure.
    pub fn start() -> TestServer {
        match Self::try_start() {
            Ok(server) => server,
            Err(e) => panic!("TestServer::start failed: {e}"),
        }
    }

    /// Starts a server on a fresh data directory and waits until it is ready.
    pub fn try_start() -> Result<TestServer, HarnessError> {
        Self::try_start_with(ServerSpec::default())
    }

    /// Starts `ferrokube server` with extra flags (kept across restarts); panics with the server
    /// log on failure.
    pub fn start_with_args(args: &[&str]) -> TestServer {
        TestServer::start_with(ServerSpec {
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            ..ServerSpec::default()
        })
    }

    /// Starts a server as `spec` says; panics with the server log on failure.
    pub fn start_with(spec: ServerSpec) -> TestServer {
        match Self::try_start_with(spec) {
            Ok(server) => server,
            Err(e) => panic!("TestServer::start_with failed: {e}"),
        }
    }

    /// Starts a server as `spec` says and waits until it is ready.
    pub fn try_start_with(spec: ServerSpec) -> Result<TestServer, HarnessError> {
        ensure_kubectl_version();
        let bin = crate::ferrokube_bin();
        if !bin.is_file() {
            return Err(HarnessError::MissingBinary(bin));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let data_dir = match &spec.data_dir {
                Some(d) => d.clone(),
                None => fresh_dir()?,
            };
            let mut server = TestServer {
                bin: bin.clone(),
                data_dir,
                port: free_port(),
                child: None,
                spec: spec.clone(),
            };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                // Another process may have taken the port between our probe and the bind.
                Err(HarnessError::Exited { log, .. })
                    if attempt < 3 && log.to_lowercase().contains("in use") =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `DATA_DIR/admin.kubeconfig`, written by the server.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("admin.kubeconfig")
    }

    /// The file the server's stdout and stderr go to.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// The operating-system process id of the running server, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A kubectl command with our kubeconfig and a private discovery cache, not yet run.
    pub fn kubectl_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        ensure_kubectl_version();
        let mut cmd = Command::new(crate::kubectl_bin());
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .env_remove("KUBECONFIG")
            .env("KUBECACHEDIR", self.data_dir.join("kubectl-cache"));
        cmd
    }

    /// Runs kubectl with `args` (stdin is /dev/null) and returns whatever it did.
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_kubectl(self.kubectl_command(args), None)
    }

    /// Runs kubectl with `args`, feeding `stdin` (e.g. for `apply -f -`).
    pub fn kubectl_stdin<I, S>(&self, args: I, stdin: &str) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_kubectl(self.kubectl_command(args), Some(stdin.as_bytes()))
    }

    /// Runs kubectl, panics unless it exits 0; returns stdout.
    pub fn must_kubectl<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cmd = self.kubectl_command(args);
        let line = command_line(&cmd);
        let output = self.run_kubectl(cmd, None);
        self.must_succeed(&line, output)
    }

    /// Runs kubectl with `stdin`, panics unless it exits 0; returns stdout.
    pub fn must_kubectl_stdin<I, S>(&self, args: I, stdin: &str) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cmd = self.kubectl_command(args);
        let line = command_line(&cmd);
        let output = self.run_kubectl(cmd, Some(stdin.as_bytes()));
        self.must_succeed(&line, output)
    }

    /// Runs kubectl, panics unless it exits non-zero; returns stderr.
    pub fn must_kubectl_fail<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cmd = self.kubectl_command(args);
        let line = command_line(&cmd);
        let output = self.run_kubectl(cmd, None);
        if output.status.success() {
            panic!(
                "{}\nserver log tail:\n{}",
                describe(&format!("expected failure, but succeeded: {line}"), &output),
                self.log_tail()
            );
        }
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Starts a long-running kubectl (e.g. `get -w`) with stdout and stderr piped.
    ///
    /// The caller reads its output and kills it.
    pub fn spawn_kubectl<I, S>(&self, args: I) -> Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.kubectl_command(args);
        let line = command_line(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match cmd.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot spawn {line}: {e}"),
        }
    }

    /// A kube-rs client for the admin kubeconfig; panics with context on failure.
    pub async fn kube_client(&self) -> kube::Client {
        let path = self.kubeconfig();
        let kubeconfig = match kube::config::Kubeconfig::read_from(&path) {
            Ok(k) => k,
            Err(e) => panic!("reading {}: {e}", path.display()),
        };
        let options = kube::config::KubeConfigOptions::default();
        let config = match kube::Config::from_custom_kubeconfig(kubeconfig, &options).await {
            Ok(c) => c,
            Err(e) => panic!("kube config from {}: {e}", path.display()),
        };
        match kube::Client::try_from(config) {
            Ok(c) => c,
            Err(e) => panic!("kube client from {}: {e}", path.display()),
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit; returns its exit status.
    ///
    /// Panics if it does not exit within 30 s (it is then killed).
    pub fn stop(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("TestServer::stop: server is not running");
        };
        signal(child.id(), "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "ferrokube did not exit within {STOP_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                        self.log_tail()
                    );
                }
                Err(e) => panic!("waiting for ferrokube: {e}"),
            }
        }
    }

    /// Kills the server with SIGKILL (no chance to flush anything) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // kill() sends SIGKILL on Unix.
            if let Err(e) = child.kill() {
                panic!("SIGKILL ferrokube: {e}");
            }
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully (if running) and starts it again on the same data directory and
    /// port, waiting until ready; panics with the log on failure.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            if !status.success() {
                panic!(
                    "ferrokube exited with {status} on SIGTERM; log tail:\n{}",
                    self.log_tail()
                );
            }
        }
        self.start_again();
    }

    /// Starts the (stopped or killed) server again on the same data directory and port.
    pub fn start_again(&mut self) {
        if self.child.is_some() {
            panic!("TestServer::start_again: server is still running");
        }
        if let Err(e) = self.spawn_and_wait() {
            panic!("restarting ferrokube failed: {e}");
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        let log_path = self.log_path();
        let io = |what, source| HarnessError::Io {
            what,
            path: log_path.clone(),
            source,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io("opening", e))?;
        let log_err = log.try_clone().map_err(|e| io("cloning", e))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg(if self.spec.apiserver_only {
            "apiserver"
        } else {
            "server"
        })
        .args(&self.spec.extra_args)
        .arg("--data-dir")
        .arg(&self.data_dir)
        .arg("--secure-port")
        .arg(self.port.to_string())
        .arg("--bind-address")
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd.spawn().map_err(|source| CommandError::Spawn {
            program: self.bin.display().to_string(),
            source,
        })?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut probe = String::from("admin.kubeconfig not written yet");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(HarnessError::Exited {
                    status,
                    log: self.log_tail(),
                });
            }
            if self.kubeconfig().is_file() {
                let cmd = self.kubectl_command(["get", "--raw", "/readyz"]);
                let output = run_with_timeout(cmd, None, Duration::from_secs(10))?;
                if output.status.success() {
                    return Ok(());
                }
                probe = describe("kubectl get --raw /readyz", &output);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::NotReady {
                    timeout: READY_TIMEOUT,
                    probe,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn run_kubectl(&self, cmd: Command, stdin: Option<&[u8]>) -> Output {
        let line = command_line(&cmd);
        match run_with_timeout(cmd, stdin, KUBECTL_TIMEOUT) {
            Ok(output) => output,
            Err(e) => panic!("{line}: {e}\nserver log tail:\n{}", self.log_tail()),
        }
    }

    fn must_succeed(&self, line: &str, output: Output) -> String {
        if !output.status.success() {
            panic!(
                "{}\nserver log tail:\n{}",
                describe(&format!("kubectl failed: {line}"), &output),
                self.log_tail()
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let keep = std::thread::panicking() || std::env::var_os("FERROKUBE_TEST_KEEP").is_some();
        if keep {
            eprintln!(
                "ferrokube test data kept in {} (server log: {})",
                self.data_dir.display(),
                self.log_path().display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// The command line of `cmd` as a human reads it (for messages).
fn command_line(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Sends `SIG<name>` to `pid` with the `kill` utility (the crate forbids `unsafe`, so no libc).
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!("kill -{name} {pid}: {other:?}"),
    }
}

/// A loopback port nobody listens on, not handed out before by this process.
fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("binding a loopback port: {e}"));
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// A new, empty directory under the system temp dir.
fn fresh_dir() -> Result<PathBuf, HarnessError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "ferrokube-it-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|source| HarnessError::Io {
        what: "creating",
        path: dir.clone(),
        source,
    })?;
    // Touch the log so log_tail() works even if the spawn fails.
    File::create(dir.join("server.log")).map_err(|source| HarnessError::Io {
        what: "creating log in",
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

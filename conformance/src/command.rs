//! Running child processes (kubectl) with a wall-clock limit, and describing their results.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The kubectl version the conformance tests are written against.
pub const KUBECTL_VERSION: &str = "v1.35.2";

/// Why a child process could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started (missing binary, permissions).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program that was started.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the output or waiting for the process failed.
    #[error("waiting for {program}: {source}")]
    Wait {
        /// The program that was started.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The process ran longer than allowed and was killed.
    #[error("{program} did not finish within {timeout:?} and was killed; output so far:\n{output}")]
    Timeout {
        /// The program that was started.
        program: String,
        /// The limit that was exceeded.
        timeout: Duration,
        /// Whatever stdout/stderr it printed before it was killed.
        output: String,
    },
}

/// Runs `cmd` to completion, feeding it `stdin` (or /dev/null), killing it after `timeout`.
pub fn run_with_timeout(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, CommandError> {
    let program = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().map_err(|source| CommandError::Spawn {
        program: program.clone(),
        source,
    })?;
    let wait_err = |source| CommandError::Wait {
        program: program.clone(),
        source,
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            // A write error means kubectl exited early; its output says why.
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            child.wait().map_err(wait_err)?;
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (stdout, stderr) = (join(stdout), join(stderr));
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(CommandError::Timeout {
            program,
            timeout,
            output: format!(
                "stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ),
        }),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Describes a finished command for a panic message: command line, exit status, stdout, stderr.
pub(crate) fn describe(what: &str, output: &Output) -> String {
    format!(
        "{what}\n  {}\n  --- stdout ---\n{}\n  --- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Checks once per process that the kubectl we drive is the expected stock version.
///
/// Panics with instructions when it is missing or the wrong version.
pub(crate) fn ensure_kubectl_version() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let bin = crate::kubectl_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(["version", "--client", "-o", "json"]);
        let output = run_with_timeout(cmd, None, Duration::from_secs(30))
            .map_err(|e| format!("{e}; run hack/install-tools.sh"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["clientVersion"]["gitVersion"].as_str().map(str::to_owned));
        match version {
            Some(v) if v == KUBECTL_VERSION => Ok(()),
            other => Err(format!(
                "{} reports version {other:?}, want {KUBECTL_VERSION}; run hack/install-tools.sh\n{}",
                bin.display(),
                describe("kubectl version --client -o json", &output)
            )),
        }
    });
    if let Err(msg) = result {
        panic!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_stdin_and_captures_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo oops >&2; exit 3"]);
        let out = run_with_timeout(cmd, Some(b"hello"), Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, b"oops\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn kills_a_command_that_runs_too_long() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let start = Instant::now();
        let err = run_with_timeout(cmd, None, Duration::from_millis(300)).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        match err {
            CommandError::Timeout { output, .. } => assert!(output.contains("started"), "{output}"),
            other => panic!("expected a timeout, got {other}"),
        }
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let cmd = Command::new("/nonexistent/kubectl");
        let err = run_with_timeout(cmd, None, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }), "{err}");
    }
}

//! The log backend (upstream `plugin/pkg/audit/log` over lumberjack): events go through a
//! bounded channel to one writer thread, which serializes them (JSON lines or the legacy
//! format), writes them to the file (or stdout for `-`) and rotates the file by size, keeping
//! `maxbackup` old files no older than `maxage` days.
//!
//! `--audit-log-mode`: `blocking` (upstream's default for the log backend) makes a request wait
//! for room in the buffer when the writer falls behind; `batch` drops the event instead (and
//! counts it); `blocking-strict` behaves as `blocking`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::event::{Event, legacy_line};

/// `--audit-log-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Blocking,
    Batch,
}

/// `--audit-log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Legacy,
}

/// Where and how the log is written.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `None`: stdout (`--audit-log-path=-`).
    pub path: Option<PathBuf>,
    /// Megabytes before rotation (0: lumberjack's default of 100).
    pub max_size_mb: u64,
    /// Old files kept (0: all).
    pub max_backups: usize,
    /// Days old files are kept (0: no limit).
    pub max_age_days: u64,
    pub format: Format,
    pub mode: Mode,
    /// Events the buffer holds (`--audit-log-batch-buffer-size`, upstream 10000).
    pub buffer: usize,
}

/// The sending side, shared by every request.
pub struct LogSink {
    tx: mpsc::Sender<Box<Event>>,
    mode: Mode,
    dropped: Arc<AtomicU64>,
}

impl LogSink {
    /// Opens the file (0600, appending) and starts the writer thread.
    pub fn start(cfg: LogConfig) -> anyhow::Result<LogSink> {
        let out = Output::open(&cfg)?;
        let (tx, rx) = mpsc::channel(cfg.buffer.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let format = cfg.format;
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer(rx, out, format))?;
        Ok(LogSink {
            tx,
            mode: cfg.mode,
            dropped,
        })
    }

    /// Hands one event to the writer: waits for room (blocking) or drops it (batch).
    pub async fn send(&self, e: Box<Event>) {
        match self.mode {
            Mode::Blocking => {
                if self.tx.send(e).await.is_err() {
                    tracing::error!("audit log writer is gone; event lost");
                }
            }
            Mode::Batch => {
                if self.tx.try_send(e).is_err() {
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                    if (n + 1).is_power_of_two() {
                        tracing::error!(
                            dropped = n + 1,
                            "audit buffer queue blocked; events dropped"
                        );
                    }
                }
            }
        }
    }
}

fn writer(mut rx: mpsc::Receiver<Box<Event>>, mut out: Output, format: Format) {
    let mut line = Vec::with_capacity(4096);
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        // Drain what is queued, then flush once.
        while let Some(e) = next {
            line.clear();
            match format {
                Format::Json => {
                    if let Err(err) = serde_json::to_writer(&mut line, &*e) {
                        tracing::error!(error = %err, "encoding audit event");
                        next = rx.try_recv().ok();
                        continue;
                    }
                }
                Format::Legacy => line.extend_from_slice(legacy_line(&e).as_bytes()),
            }
            line.push(b'\n');
            if let Err(err) = out.write_line(&line) {
                tracing::error!(error = %err, "writing the audit log");
            }
            next = rx.try_recv().ok();
        }
        if let Err(err) = out.flush() {
            tracing::error!(error = %err, "flushing the audit log");
        }
    }
    let _ = out.flush();
}

enum Output {
    Stdout(std::io::Stdout),
    File(Rotating),
}

impl Output {
    fn open(cfg: &LogConfig) -> anyhow::Result<Output> {
        let Some(path) = &cfg.path else {
            return Ok(Output::Stdout(std::io::stdout()));
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Output::File(Rotating {
            path: path.clone(),
            file: BufWriter::new(file),
            size,
            max_bytes: if cfg.max_size_mb == 0 {
                100
            } else {
                cfg.max_size_mb
            } * 1024
                * 1024,
            max_backups: cfg.max_backups,
            max_age_days: cfg.max_age_days,
        }))
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout(s) => s.lock().write_all(line),
            Output::File(r) => r.write_line(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(s) => s.lock().flush(),
            Output::File(r) => r.file.flush(),
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// A file rotated by size, as lumberjack: `audit.log` → `audit-2006-01-02T15-04-05.000.log`.
struct Rotating {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    max_backups: usize,
    max_age_days: u64,
}

impl Rotating {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn name_parts(&self) -> (PathBuf, String, String) {
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let file = self
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (stem, ext) = match file.rfind('.') {
            Some(i) if i > 0 => (file[..i].to_string(), file[i..].to_string()),
            _ => (file.clone(), String::new()),
        };
        (dir, stem, ext)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let (dir, stem, ext) = self.name_parts();
        let stamp = jiff::Timestamp::now().strftime("%Y-%m-%dT%H-%M-%S%.3f");
        let mut backup = dir.join(format!("{stem}-{stamp}{ext}"));
        let mut n = 1;
        while backup.exists() {
            backup = dir.join(format!("{stem}-{stamp}-{n}{ext}"));
            n += 1;
        }
        std::fs::rename(&self.path, &backup)?;
        self.file = BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        self.prune(&dir, &stem, &ext);
        Ok(())
    }

    /// Removes backups beyond `max_backups` (oldest first) and older than `max_age_days`.
    fn prune(&self, dir: &Path, stem: &str, ext: &str) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let prefix = format!("{stem}-");
        let mut backups: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(&prefix) && n.ends_with(ext) && e.path() != self.path
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        backups.sort();
        let now = std::time::SystemTime::now();
        let max_age = std::time::Duration::from_secs(self.max_age_days * 86_400);
        let excess = if self.max_backups > 0 {
            backups.len().saturating_sub(self.max_backups)
        } else {
            0
        };
        for (i, (modified, p)) in backups.iter().enumerate() {
            let too_old = self.max_age_days > 0
                && now.duration_since(*modified).is_ok_and(|age| age > max_age);
            if (i < excess || too_old)
                && let Err(e) = std::fs::remove_file(p)
            {
                tracing::warn!(path = %p.display(), error = %e, "removing old audit log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_backups() {
        let dir = std::env::temp_dir().join(format!("ferrokube-audit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.log");
        let mut r = Rotating {
            path: path.clone(),
            file: BufWriter::new(open_append(&path).expect("open")),
            size: 0,
            max_bytes: 100,
            max_backups: 2,
            max_age_days: 0,
        };
        let line = [b'x'; 60];
        for _ in 0..6 {
            r.write_line(&line).expect("write");
            // Distinct backup names and modification times.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        r.file.flush().expect("flush");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"audit.log".to_string()));
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("audit") && n.ends_with(".log"))
        );
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 60);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

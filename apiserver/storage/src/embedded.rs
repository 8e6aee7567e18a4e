//! The embedded backend: an MVCC store on one redb file, durable before it acknowledges.
//!
//! Start at [`EmbeddedStore::open`]. The layout (tables, encodings, what compaction keeps) is
//! described in `codec`; the group-commit writer in `writer`; reads in `read`; watch streams
//! in `watch`.
//!
//! * Writes go to one writer thread over a bounded channel and are committed in groups: one
//!   redb write transaction and one `fdatasync` of a write-ahead log frame per batch, each op
//!   with its own outcome. An op is answered only after its batch is on disk. The log is
//!   folded into the database file by durable redb commits (checkpoints) every few MiB or
//!   seconds, and replayed on open after a crash (`wal`).
//! * Reads run on tokio's blocking pool, each in one redb read transaction (a snapshot).
//! * Compaction ([`Storage::compact`] and the automatic compactor configured by
//!   [`EmbeddedOptions`]) removes history in chunks of `compaction_chunk` events per write
//!   transaction, interleaved with ordinary batches, then gives free space back to the file
//!   system with redb's `Database::compact` when the file is mostly free pages.
//! * Opening reads two counters; it never scans keys.

mod codec;
#[cfg(test)]
mod failpoint_tests;
mod read;
pub mod snapshot;
pub mod wal;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    Event, KeyValue, ListRequest, ListResponse, Result, Revision, Storage, StorageError,
    WatchStream,
};
use codec::{INITIAL_REVISION, META, META_COMPACTED, META_REV};
use writer::{Op, WriteReq};

/// The database file inside the data directory.
pub const DB_FILE_NAME: &str = "ferrokube.redb";

/// The embedded store's page cache: enough for the pages one batch of writes dirties (redb
/// keeps its write buffer under half of it) and the top levels of the trees. Measured with
/// 100,000 small ConfigMaps: redb's 1 GiB default held 125 MB more RSS than 8 MiB.
pub const DEFAULT_CACHE_SIZE: usize = 8 << 20;

/// Tuning of the embedded store. [`Default`] suits a server; [`EmbeddedOptions::fast`] suits
/// tests (compaction every 100 ms, reclamation of any file size).
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Most writes committed in one transaction (one fsync).
    pub max_batch: usize,
    /// Queued writes before callers wait (back-pressure).
    pub queue_depth: usize,
    /// Live events a watcher may lag behind before its stream fails with `Compacted`.
    pub watch_buffer: usize,
    /// Period of the automatic compactor (None: only explicit `compact`). Like upstream's
    /// `--etcd-compaction-interval` (5 minutes): each run compacts up to the revision seen
    /// by the previous run, so about one interval of history is kept.
    pub compaction_interval: Option<Duration>,
    /// Events removed per compaction write transaction.
    pub compaction_chunk: usize,
    /// Files smaller than this are never rewritten to reclaim space.
    pub reclaim_min_file_bytes: u64,
    /// Reclaim when at least this fraction of the file is free pages (0.0..1.0).
    pub reclaim_free_ratio: f64,
    /// redb page cache size in bytes (None: redb's default, 1 GiB). Every page a commit
    /// writes stays in that cache, so with the default the process holds a copy of the whole
    /// file (~1.3 KB per small object) in anonymous memory; the watch cache serves reads, and
    /// the OS page cache the rest, so the default here is [`DEFAULT_CACHE_SIZE`].
    pub cache_size: Option<usize>,
    /// Save redb's allocator state at each durable commit (checkpoint) so reopening after a
    /// crash needs no full repair walk (slower checkpoints, near-instant recovery).
    pub quick_repair: bool,
    /// Checkpoint when the write-ahead log holds this many bytes (what a reopen after a crash
    /// replays at most, plus one batch). Replay costs ~14 µs per small object (2 MiB: ~3,000
    /// ConfigMaps, ~45 ms; 8 MiB made a restart after `kill -9` mid-burst take 390 ms).
    pub wal_bytes: u64,
    /// Checkpoint when the log's oldest batch is this old (idle: one durable commit per
    /// interval instead of one per write).
    pub checkpoint_interval: Duration,
    /// TEST ONLY: a fault to inject (None in production).
    pub failpoint: Option<Failpoint>,
}

/// A fault the store injects on purpose, for tests of its failure paths (DESIGN §5.11). The
/// server sets one only from its hidden `--debug-failpoint` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failpoint {
    /// The writer thread panics when a batch holds a write to a key containing this string.
    WriterPanicOnKey(String),
}

/// Whether the store can still serve, for the server's `/readyz` and `/livez` checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreHealth {
    /// Writer thread running, file open.
    Ok,
    /// The store was closed (shutdown).
    Closed,
    /// The writer thread died (panicked); writes fail until the process restarts.
    WriterFailed(String),
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            queue_depth: 8192,
            watch_buffer: 8192,
            compaction_interval: Some(Duration::from_secs(300)),
            compaction_chunk: 1000,
            reclaim_min_file_bytes: 64 << 20,
            reclaim_free_ratio: 0.5,
            cache_size: Some(DEFAULT_CACHE_SIZE),
            quick_repair: true,
            wal_bytes: 2 << 20,
            checkpoint_interval: Duration::from_secs(30),
            failpoint: None,
        }
    }
}

impl EmbeddedOptions {
    /// Settings for tests: compaction every 100 ms, reclamation whatever the file size.
    pub fn fast() -> Self {
        Self {
            compaction_interval: Some(Duration::from_millis(100)),
            reclaim_min_file_bytes: 0,
            ..Self::default()
        }
    }
}

/// A snapshot of the store's counters, rendered by the server as Prometheus text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageMetrics {
    pub current_revision: Revision,
    pub compacted_revision: Revision,
    /// Completed compactions (explicit and automatic).
    pub compaction_runs: u64,
    pub last_compaction_duration: Duration,
    /// Deleted keys whose last tombstone compaction removed.
    pub compaction_keys_removed: u64,
    /// Versions (history rows) compaction removed.
    pub compaction_versions_removed: u64,
    /// Times the file was rewritten to give free space back.
    pub reclaim_runs: u64,
    pub db_size_bytes: u64,
    /// Write transactions of the group-commit writer (incl. ones where every op failed).
    pub write_batches: u64,
    /// Write ops submitted to the writer.
    pub write_ops: u64,
    /// Flushes: write-ahead log frames (one per batch) and durable redb commits
    /// (checkpoints, compaction).
    pub fsyncs: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    compaction_runs: AtomicU64,
    last_compaction_micros: AtomicU64,
    keys_removed: AtomicU64,
    versions_removed: AtomicU64,
    reclaim_runs: AtomicU64,
    write_batches: AtomicU64,
    write_ops: AtomicU64,
    fsyncs: AtomicU64,
}

/// State shared by the store handle, the writer thread and readers.
pub(crate) struct Shared {
    /// None once closed. Readers and the writer take it shared; reclamation exclusively.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    current: AtomicI64,
    compacted: AtomicI64,
    events: broadcast::Sender<Arc<Event>>,
    metrics: Counters,
    reclaim_min_file_bytes: u64,
    reclaim_free_ratio: f64,
    quick_repair: bool,
    /// Checkpoint thresholds (see [`EmbeddedOptions`]).
    wal_bytes: u64,
    checkpoint_interval: Duration,
    failpoint: Option<Failpoint>,
    /// Set (with the panic message) when the writer thread died.
    writer_failure: std::sync::Mutex<Option<String>>,
    closed: std::sync::atomic::AtomicBool,
}

/// The error every write gets once the writer thread died.
fn writer_failed_error(why: &str) -> StorageError {
    StorageError::Backend(format!(
        "the storage writer stopped after a failure ({why}); writes are refused until the server restarts"
    ))
}

impl Shared {
    fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

/// Maps any redb error to [`StorageError::Backend`].
pub(crate) fn backend(e: impl Into<redb::Error>) -> StorageError {
    StorageError::Backend(e.into().to_string())
}

/// The embedded MVCC store. See the module docs.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Op>,
    compaction_chunk: usize,
    /// Serialises compactions (explicit and automatic).
    compacting: tokio::sync::Mutex<()>,
    /// Bounds the reads running at once on the blocking pool (see [`read_threads`]).
    readers: Arc<tokio::sync::Semaphore>,
}

/// How many reads run at once, each on a thread of tokio's blocking pool: twice the cores,
/// at least 4. Unbounded, a burst of concurrent reads (the ~110 bootstrap objects a start
/// reads side by side) made the pool start a thread for nearly each (47 threads, ~1.3 MB of
/// stacks and allocator caches held for the pool's 10 s keep-alive, and their creation on the
/// start's critical path); more threads than this do not read faster from the page cache.
fn read_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .saturating_mul(2)
        .max(4)
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in the data directory `dir` (file [`DB_FILE_NAME`]),
    /// starts its writer thread and, when configured, its compactor task. Must be called
    /// within a tokio runtime.
    pub async fn open(dir: &Path, opts: EmbeddedOptions) -> Result<Arc<EmbeddedStore>> {
        let dir = dir.to_owned();
        let o = opts.clone();
        let (db, path, current, compacted, wal) =
            tokio::task::spawn_blocking(move || open_db(&dir, &o))
                .await
                .map_err(|e| StorageError::Backend(format!("open task failed: {e}")))??;
        let (events, _) = broadcast::channel(opts.watch_buffer.max(1));
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(db)),
            path,
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            events,
            metrics: Counters::default(),
            reclaim_min_file_bytes: opts.reclaim_min_file_bytes,
            reclaim_free_ratio: opts.reclaim_free_ratio.clamp(0.0, 1.0),
            quick_repair: opts.quick_repair,
            wal_bytes: opts.wal_bytes.max(1),
            checkpoint_interval: opts.checkpoint_interval,
            failpoint: opts.failpoint.clone(),
            writer_failure: std::sync::Mutex::new(None),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
        let writer_shared = shared.clone();
        let max_batch = opts.max_batch.max(1);
        std::thread::Builder::new()
            .name("ferrokube-store-writer".into())
            .spawn(move || {
                // A panic must not leave callers waiting or health checks green: record it,
                // then drop the receiver, so every queued and later write fails at once with
                // the recorded cause.
                let mut rx = rx;
                let run = std::panic::AssertUnwindSafe(|| {
                    writer::run(writer_shared.clone(), &mut rx, max_batch, wal)
                });
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    tracing::error!(error = %why, "embedded store: the writer thread panicked; writes will fail");
                    if let Ok(mut f) = writer_shared.writer_failure.lock() {
                        *f = Some(why);
                    }
                }
                drop(rx);
            })
            .map_err(|e| StorageError::Backend(format!("cannot start writer thread: {e}")))?;
        let store = Arc::new(EmbeddedStore {
            shared,
            tx,
            compaction_chunk: opts.compaction_chunk.max(1),
            compacting: tokio::sync::Mutex::new(()),
            readers: Arc::new(tokio::sync::Semaphore::new(read_threads())),
        });
        if let Some(interval) = opts.compaction_interval {
            tokio::spawn(run_compactor(Arc::downgrade(&store), interval));
        }
        tokio::spawn(run_checkpointer(
            Arc::downgrade(&store),
            opts.checkpoint_interval,
        ));
        tracing::info!(current, compacted, "embedded store opened");
        Ok(store)
    }

    /// Flushes queued writes, closes the file and stops the writer. Later calls fail with
    /// `Backend("store is closed")`. Needed before reopening the same directory in-process.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let (reply, done) = oneshot::channel();
        if self.tx.send(Op::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
    }

    /// The store's counters.
    pub fn metrics(&self) -> StorageMetrics {
        let s = &self.shared;
        let m = &s.metrics;
        StorageMetrics {
            current_revision: s.current.load(Ordering::Acquire),
            compacted_revision: s.compacted.load(Ordering::Acquire),
            compaction_runs: m.compaction_runs.load(Ordering::Relaxed),
            last_compaction_duration: Duration::from_micros(
                m.last_compaction_micros.load(Ordering::Relaxed),
            ),
            compaction_keys_removed: m.keys_removed.load(Ordering::Relaxed),
            compaction_versions_removed: m.versions_removed.load(Ordering::Relaxed),
            reclaim_runs: m.reclaim_runs.load(Ordering::Relaxed),
            db_size_bytes: s.file_size(),
            write_batches: m.write_batches.load(Ordering::Relaxed),
            write_ops: m.write_ops.load(Ordering::Relaxed),
            fsyncs: m.fsyncs.load(Ordering::Relaxed),
        }
    }

    /// Writes a consistent snapshot of the store to `dest` while it keeps serving (see
    /// [`snapshot`]).
    pub async fn snapshot(&self, dest: &Path) -> Result<snapshot::SnapshotInfo> {
        let dest = dest.to_owned();
        self.read(move |txn| snapshot::write(txn, &dest)).await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Makes every acknowledged write durable in the database file itself (normally every
    /// [`EmbeddedOptions::checkpoint_interval`]); returns whether there was anything to do.
    pub async fn checkpoint(&self) -> Result<bool> {
        self.call(|reply| Op::Checkpoint { force: true, reply })
            .await
    }

    /// Rewrites the file to give free pages back now (normally automatic after compaction
    /// when the file is mostly free). Returns whether the file was rewritten.
    pub async fn reclaim_space(&self, force: bool) -> Result<bool> {
        self.call(|reply| Op::Reclaim { force, reply }).await
    }

    /// The store's health: the writer thread alive and the file open.
    pub fn health(&self) -> StoreHealth {
        if let Some(why) = self.writer_failure() {
            return StoreHealth::WriterFailed(why);
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return StoreHealth::Closed;
        }
        if self.tx.is_closed() {
            return StoreHealth::WriterFailed("the writer thread ended".into());
        }
        StoreHealth::Ok
    }

    fn writer_failure(&self) -> Option<String> {
        match self.shared.writer_failure.lock() {
            Ok(f) => f.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Why an op got no answer: the writer died, or the store was closed.
    fn gone(&self) -> StorageError {
        match self.writer_failure() {
            Some(why) => writer_failed_error(&why),
            None if self.shared.closed.load(Ordering::Acquire) => {
                StorageError::Backend("store is closed".into())
            }
            // The writer is unwinding and has not recorded why yet.
            None => writer_failed_error("the writer thread ended unexpectedly"),
        }
    }

    async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T>>) -> Op) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(op(reply)).await.map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    async fn write(&self, req: WriteReq) -> Result<KeyValue> {
        self.call(|reply| Op::Write { req, reply }).await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        // Held by the blocking task itself: a caller that stops waiting does not free the
        // thread's slot while the read still runs.
        let permit = self
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Backend("store is closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let guard = shared
                .db
                .read()
                .map_err(|_| StorageError::Backend("database lock poisoned".into()))?;
            let db = guard
                .as_ref()
                .ok_or_else(|| StorageError::Backend("store is closed".into()))?;
            let txn = db.begin_read().map_err(backend)?;
            f(&txn)
        })
        .await
        .map_err(|e| StorageError::Backend(format!("read task failed: {e}")))?
    }

    async fn run_compaction(&self, revision: Revision) -> Result<()> {
        let _serial = self.compacting.lock().await;
        let started = Instant::now();
        let moved = self
            .call(|reply| Op::SetCompacted { revision, reply })
            .await?;
        if !moved {
            return Ok(());
        }
        let m = &self.shared.metrics;
        let (mut events, mut versions) = (0u64, 0u64);
        loop {
            let max_events = self.compaction_chunk;
            let chunk = self
                .call(|reply| Op::CompactChunk {
                    upto: revision,
                    max_events,
                    reply,
                })
                .await?;
            events += chunk.events_removed;
            versions += chunk.versions_removed;
            m.versions_removed
                .fetch_add(chunk.versions_removed, Ordering::Relaxed);
            m.keys_removed
                .fetch_add(chunk.keys_removed, Ordering::Relaxed);
            if chunk.done {
                break;
            }
        }
        let took = started.elapsed();
        m.compaction_runs.fetch_add(1, Ordering::Relaxed);
        m.last_compaction_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        tracing::info!(
            revision,
            events,
            versions,
            took_ms = took.as_millis() as u64,
            "embedded store compacted"
        );
        self.reclaim_space(false).await?;
        Ok(())
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Best effort: the writer also stops when the channel closes.
        let (reply, _) = oneshot::channel();
        let _ = self.tx.try_send(Op::Close { reply });
    }
}

/// Creates `dir` (and missing parents) with mode 0700; an existing `dir` is narrowed to 0700.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens a file of the store (the database, the write-ahead log), creating it with mode 0600
/// from the first byte (both hold Secrets). A file left group- or world-readable by an older
/// version is narrowed to 0600.
pub(crate) fn open_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "narrowing a store file to mode 0600");
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

type Opened = (Database, PathBuf, Revision, Revision, wal::Wal);

/// Opens (or creates) the database file and replays the write-ahead log into it.
fn open_db(dir: &Path, opts: &EmbeddedOptions) -> Result<Opened> {
    private_dir(dir)
        .map_err(|e| StorageError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(DB_FILE_NAME);
    let mut builder = Database::builder();
    if let Some(bytes) = opts.cache_size {
        builder.set_cache_size(bytes);
    }
    let file = open_private_file(&path)
        .map_err(|e| StorageError::Backend(format!("cannot open {}: {e}", path.display())))?;
    let file = redb::backends::FileBackend::new(file).map_err(backend)?;
    let db = builder.create_with_backend(file).map_err(backend)?;
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_quick_repair(opts.quick_repair);
    let (current, compacted) = {
        let meta = txn.open_table(META).map_err(backend)?;
        let current = meta.get(META_REV).map_err(backend)?.map(|g| g.value());
        let compacted = meta
            .get(META_COMPACTED)
            .map_err(backend)?
            .map(|g| g.value());
        (current, compacted)
    };
    let (current, compacted) = match (current, compacted) {
        (Some(c), Some(k)) => {
            txn.abort().map_err(backend)?;
            (c, k)
        }
        _ => {
            {
                let mut meta = txn.open_table(META).map_err(backend)?;
                meta.insert(META_REV, INITIAL_REVISION).map_err(backend)?;
                meta.insert(META_COMPACTED, 0).map_err(backend)?;
                txn.open_table(codec::LATEST).map_err(backend)?;
                txn.open_table(codec::HISTORY).map_err(backend)?;
                txn.open_table(codec::EVENTS).map_err(backend)?;
            }
            txn.commit().map_err(backend)?;
            // A new file: a log beside it belongs to a store that is gone.
            remove_wal(dir)?;
            (INITIAL_REVISION, 0)
        }
    };
    let current = recover_wal(&db, dir, opts.quick_repair, current)?;
    let wal = wal::Wal::open(dir, opts.wal_bytes.max(1)).map_err(|e| {
        StorageError::Backend(format!(
            "cannot open {}: {e}",
            dir.join(wal::WAL_FILE_NAME).display()
        ))
    })?;
    Ok((db, path, current, compacted, wal))
}

/// Replays the write-ahead log of `dir` into `db` (at revision `current`); returns the
/// revision after it.
pub(crate) fn recover_wal(
    db: &Database,
    dir: &Path,
    quick_repair: bool,
    current: Revision,
) -> Result<Revision> {
    let path = dir.join(wal::WAL_FILE_NAME);
    let records = wal::read(&path)
        .map_err(|e| StorageError::Backend(format!("cannot read {}: {e}", path.display())))?;
    let started = Instant::now();
    let after = writer::replay_wal(db, quick_repair, records, current)?;
    if after != current {
        tracing::info!(
            from = current,
            to = after,
            took_ms = started.elapsed().as_millis() as u64,
            "embedded store: replayed the write-ahead log"
        );
    }
    Ok(after)
}

/// Removes the write-ahead log of `dir` (when its database file is new or replaced).
pub(crate) fn remove_wal(dir: &Path) -> Result<()> {
    let path = dir.join(wal::WAL_FILE_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::Backend(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

/// Asks the writer every `interval` for a checkpoint (it runs one when the log's oldest
/// batch is at least that old): an idle store folds its log into the file once per interval.
async fn run_checkpointer(store: Weak<EmbeddedStore>, interval: Duration) {
    let interval = interval.max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(interval / 2).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        if store.writer_failure().is_some() || store.shared.closed.load(Ordering::Acquire) {
            return;
        }
        match store
            .call(|reply| Op::Checkpoint {
                force: false,
                reply,
            })
            .await
        {
            Ok(_) => {}
            Err(StorageError::Backend(msg)) if msg == "store is closed" => return,
            Err(e) => tracing::warn!(error = %e, "embedded store: checkpoint failed"),
        }
    }
}

/// Upstream's compactor: every `interval`, compact up to the revision seen one interval ago.
async fn run_compactor(store: Weak<EmbeddedStore>, interval: Duration) {
    let mut previous: Option<Revision> = None;
    loop {
        tokio::time::sleep(interval).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        if store.writer_failure().is_some() {
            return;
        }
        let current = store.shared.current.load(Ordering::Acquire);
        let compacted = store.shared.compacted.load(Ordering::Acquire);
        if let Some(target) = previous
            && target > compacted
        {
            match store.run_compaction(target).await {
                Ok(()) => {}
                Err(StorageError::Backend(msg)) if msg == "store is closed" => return,
                Err(e) => tracing::warn!(error = %e, target, "automatic compaction failed"),
            }
        }
        previous = Some(current);
    }
}

#[async_trait::async_trait]
impl Storage for EmbeddedStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.current.load(Ordering::Acquire))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.read(move |txn| read::get(txn, &key)).await
    }

    async fn list(&self, req: ListRequest) -> Result<ListResponse> {
        self.read(move |txn| read::list(txn, &req)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write(WriteReq::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        self.write(WriteReq::Update {
            key: key.to_owned(),
            value,
            expected: expected_mod_revision,
        })
        .await
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        self.write(WriteReq::Delete {
            key: key.to_owned(),
            expected: expected_mod_revision,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        // Subscribe first: every event committed after the snapshot below reaches `rx`.
        let rx = self.shared.events.subscribe();
        let p = prefix.to_owned();
        let (replayed, snapshot) = self
            .read(move |txn| read::replay(txn, &p, after_revision))
            .await?;
        Ok(watch::stream(
            &self.shared,
            rx,
            prefix.to_owned(),
            replayed,
            snapshot,
        ))
    }

    /// Compacts up to `revision`. A revision at or below the compacted one is a no-op; one
    /// above the current revision fails with `FutureRevision`.
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.run_compaction(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }
}

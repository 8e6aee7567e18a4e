//! The single writer thread: group commit, checkpoints, compaction chunks and file
//! reclamation.
//!
//! Every mutation is an [`Op`] on one bounded channel. The thread takes the first op, drains
//! whatever else is queued (up to `max_batch`), applies all queued writes in ONE redb write
//! transaction — each with its own outcome, so a conflict fails only its op — writes the
//! batch's frame to the write-ahead log and `fdatasync`s it (the batch's one flush), commits
//! the transaction with `Durability::None`, publishes the events, and only then answers each
//! op. A checkpoint (a durable redb commit, see `wal`) follows when the log is full, on
//! `Op::Checkpoint` and before every other durable commit. Compaction chunks and reclamation
//! run on the same thread between batches, so they never hold redb's write lock for long and
//! never race a batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use redb::{Database, Durability, ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::codec::{
    EVENTS, HISTORY, LATEST, META, META_COMPACTED, META_REV, Version, decode_latest, encode_latest,
    event_for,
};
use super::wal::Wal;
use super::{Shared, backend};
use crate::{Event, KeyValue, Result, Revision, StorageError};

/// One mutation.
#[derive(Debug)]
pub(crate) enum WriteReq {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl WriteReq {
    fn key(&self) -> &str {
        match self {
            WriteReq::Create { key, .. }
            | WriteReq::Update { key, .. }
            | WriteReq::Delete { key, .. } => key,
        }
    }
}

/// What one compaction chunk removed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ChunkOutcome {
    pub events_removed: u64,
    pub versions_removed: u64,
    pub keys_removed: u64,
    /// No event at or below the target revision is left.
    pub done: bool,
}

/// A request to the writer thread.
#[derive(Debug)]
pub(crate) enum Op {
    Write {
        req: WriteReq,
        reply: oneshot::Sender<Result<KeyValue>>,
    },
    /// Records a new compacted revision; answers whether it moved forward.
    SetCompacted {
        revision: Revision,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// Removes up to `max_events` events at or below `upto` and the versions they obsolete.
    CompactChunk {
        upto: Revision,
        max_events: usize,
        reply: oneshot::Sender<Result<ChunkOutcome>>,
    },
    /// Gives free pages back to the file system when the file is mostly free space (or always,
    /// when `force`). Answers whether `Database::compact` ran.
    Reclaim {
        force: bool,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// Makes everything the write-ahead log holds durable in the database file (when it
    /// holds anything older than the checkpoint interval, or always when `force`); answers
    /// whether a checkpoint ran.
    Checkpoint {
        force: bool,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// Closes the database file and stops the thread.
    Close { reply: oneshot::Sender<()> },
}

/// Runs the writer loop until `Close` or until every sender is gone.
pub(crate) fn run(shared: Arc<Shared>, rx: &mut mpsc::Receiver<Op>, max_batch: usize, wal: Wal) {
    let mut wal = wal;
    let mut current = shared.current.load(Ordering::Acquire);
    let mut queued: Vec<Op> = Vec::with_capacity(max_batch);
    'outer: while let Some(first) = rx.blocking_recv() {
        queued.push(first);
        while queued.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => queued.push(op),
                Err(_) => break,
            }
        }
        let mut writes = Vec::new();
        for op in queued.drain(..) {
            match op {
                Op::Write { req, reply } => writes.push((req, reply)),
                other => {
                    // Keep order: writes queued before a control op commit first.
                    flush_writes(&shared, &mut writes, &mut current, &mut wal);
                    if let Op::Close { reply } = other {
                        close(&shared, &mut wal);
                        let _ = reply.send(());
                        break 'outer;
                    }
                    control(&shared, other, &mut current, &mut wal);
                }
            }
        }
        flush_writes(&shared, &mut writes, &mut current, &mut wal);
        if wal.bytes() >= shared.wal_bytes
            && let Err(e) = checkpoint(&shared, &mut wal)
        {
            tracing::error!(error = %e, "embedded store: checkpoint failed");
        }
    }
    close(&shared, &mut wal);
    tracing::debug!("embedded store writer stopped");
}

/// One durable redb commit: everything the write-ahead log holds is in the database file
/// from now on, and the log starts again at its beginning.
fn checkpoint(shared: &Shared, wal: &mut Wal) -> Result<()> {
    if wal.bytes() == 0 {
        return Ok(());
    }
    with_db(shared, |db| {
        begin(db, shared.quick_repair, Durability::Immediate)?
            .commit()
            .map_err(backend)
    })?;
    wal.checkpointed();
    shared.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn close(shared: &Shared, wal: &mut Wal) {
    // Dropping the database also makes the last commits durable; the explicit checkpoint
    // reports a failure and leaves the log consistent with the file.
    if let Err(e) = checkpoint(shared, wal) {
        tracing::error!(error = %e, "embedded store: final checkpoint failed; the log is replayed on the next open");
    }
    match shared.db.write() {
        Ok(mut guard) => drop(guard.take()),
        Err(poisoned) => drop(poisoned.into_inner().take()),
    }
}

fn flush_writes(
    shared: &Shared,
    writes: &mut Vec<(WriteReq, oneshot::Sender<Result<KeyValue>>)>,
    current: &mut Revision,
    wal: &mut Wal,
) {
    if writes.is_empty() {
        return;
    }
    let batch = std::mem::take(writes);
    if let Some(super::Failpoint::WriterPanicOnKey(needle)) = &shared.failpoint
        && batch
            .iter()
            .any(|(req, _)| req.key().contains(needle.as_str()))
    {
        panic!("fail point writer-panic-on-key:{needle} reached");
    }
    let ops = batch.len() as u64;
    let (reqs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let outcome = with_db(shared, |db| {
        apply_batch(db, shared.quick_repair, reqs, *current, wal)
    });
    match outcome {
        Ok((results, events, new_rev)) => {
            let m = &shared.metrics;
            m.write_batches.fetch_add(1, Ordering::Relaxed);
            m.write_ops.fetch_add(ops, Ordering::Relaxed);
            if new_rev != *current {
                m.fsyncs.fetch_add(1, Ordering::Relaxed);
                *current = new_rev;
                shared.current.store(new_rev, Ordering::Release);
            }
            for event in events {
                // No receiver is fine: nobody is watching.
                let _ = shared.events.send(Arc::new(event));
            }
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, ops, "embedded store: write batch failed");
            for reply in replies {
                let _ = reply.send(Err(StorageError::Backend(e.to_string())));
            }
            // The revision on disk is still the last committed one.
        }
    }
}

/// Runs `f` with the open database (shared lock: readers may run alongside).
fn with_db<T>(shared: &Shared, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
    let guard = shared
        .db
        .read()
        .map_err(|_| StorageError::Backend("database lock poisoned".into()))?;
    let db = guard
        .as_ref()
        .ok_or_else(|| StorageError::Backend("store is closed".into()))?;
    f(db)
}

fn begin(db: &Database, quick_repair: bool, durability: Durability) -> Result<WriteTransaction> {
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_quick_repair(quick_repair);
    txn.set_durability(durability).map_err(backend)?;
    Ok(txn)
}

type BatchOutcome = (Vec<Result<KeyValue>>, Vec<Event>, Revision);

/// Applies `reqs` in one transaction; its successful writes are made durable by one
/// write-ahead log frame before the (non-durable) commit makes them visible.
fn apply_batch(
    db: &Database,
    quick_repair: bool,
    reqs: Vec<WriteReq>,
    current: Revision,
    wal: &mut Wal,
) -> Result<BatchOutcome> {
    // A frame left half-built by a batch that failed midway is not this batch's.
    wal.discard();
    let txn = begin(db, quick_repair, Durability::None)?;
    let mut results = Vec::with_capacity(reqs.len());
    let mut events = Vec::new();
    let mut rev = current;
    {
        let mut latest = txn.open_table(LATEST).map_err(backend)?;
        let mut history = txn.open_table(HISTORY).map_err(backend)?;
        let mut log = txn.open_table(EVENTS).map_err(backend)?;
        for req in reqs {
            let mut tables = Tables {
                latest: &mut latest,
                history: &mut history,
                log: &mut log,
                wal: &mut *wal,
            };
            match apply_one(&mut tables, req, rev + 1)? {
                Ok((kv, event)) => {
                    rev += 1;
                    results.push(Ok(kv));
                    events.push(event);
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if rev != current {
            let mut meta = txn.open_table(META).map_err(backend)?;
            meta.insert(META_REV, rev).map_err(backend)?;
        }
    }
    if rev == current {
        wal.discard();
        txn.abort().map_err(backend)?;
        return Ok((results, events, rev));
    }
    // On disk before anyone can see it; a failed write leaves the transaction uncommitted.
    let start = match wal.write_frame() {
        Ok(start) => start,
        Err(e) => {
            let _ = txn.abort();
            return Err(StorageError::Backend(format!(
                "writing the write-ahead log {}: {e}",
                wal.path().display()
            )));
        }
    };
    if let Err(e) = txn.commit() {
        // Not acknowledged: the next batch takes the same revisions and overwrites the frame.
        if let Some(start) = start {
            wal.rewind(start);
        }
        return Err(backend(e));
    }
    Ok((results, events, rev))
}

struct Tables<'a, 't> {
    latest: &'a mut redb::Table<'t, &'static str, &'static [u8]>,
    history: &'a mut redb::Table<'t, (&'static str, i64), &'static [u8]>,
    log: &'a mut redb::Table<'t, i64, &'static str>,
    wal: &'a mut Wal,
}

impl Tables<'_, '_> {
    fn latest(&self, key: &str) -> Result<Option<(Revision, Revision)>> {
        match self.latest.get(key).map_err(backend)? {
            Some(raw) => decode_latest(raw.value())
                .map(Some)
                .ok_or_else(|| corrupt(key)),
            None => Ok(None),
        }
    }

    fn version(&self, key: &str, rev: Revision) -> Result<Version> {
        let raw = self.history.get((key, rev)).map_err(backend)?;
        raw.and_then(|r| Version::decode(r.value()))
            .ok_or_else(|| corrupt(key))
    }

    fn put(&mut self, key: &str, rev: Revision, version: &Version) -> Result<()> {
        let encoded = version.encode();
        self.history
            .insert((key, rev), encoded.as_slice())
            .map_err(backend)?;
        self.log.insert(rev, key).map_err(backend)?;
        self.wal.push(key, rev, &encoded);
        Ok(())
    }
}

fn corrupt(key: &str) -> StorageError {
    StorageError::Backend(format!("corrupt record for key {key}"))
}

/// Applies one op at revision `rev`. The outer error aborts the batch; the inner one is this
/// op's own outcome.
fn apply_one(
    t: &mut Tables<'_, '_>,
    req: WriteReq,
    rev: Revision,
) -> Result<Result<(KeyValue, Event)>> {
    match req {
        WriteReq::Create { key, value } => {
            if t.latest(&key)?.is_some() {
                return Ok(Err(StorageError::AlreadyExists { key }));
            }
            let version = Version {
                tombstone: false,
                create_revision: rev,
                prev_mod_revision: 0,
                value,
            };
            t.put(&key, rev, &version)?;
            t.latest
                .insert(key.as_str(), encode_latest(rev, rev).as_slice())
                .map_err(backend)?;
            let event = event_for(&key, rev, &version, None);
            Ok(Ok((event.kv.clone(), event)))
        }
        WriteReq::Update {
            key,
            value,
            expected,
        } => {
            let Some((create, current)) = t.latest(&key)? else {
                return Ok(Err(StorageError::NotFound { key }));
            };
            if current != expected {
                return Ok(Err(StorageError::Conflict {
                    key,
                    expected,
                    current,
                }));
            }
            let prev = t.version(&key, current)?;
            let version = Version {
                tombstone: false,
                create_revision: create,
                prev_mod_revision: current,
                value,
            };
            t.put(&key, rev, &version)?;
            t.latest
                .insert(key.as_str(), encode_latest(create, rev).as_slice())
                .map_err(backend)?;
            let event = event_for(&key, rev, &version, Some(&prev));
            Ok(Ok((event.kv.clone(), event)))
        }
        WriteReq::Delete { key, expected } => {
            let Some((create, current)) = t.latest(&key)? else {
                return Ok(Err(StorageError::NotFound { key }));
            };
            if let Some(expected) = expected
                && expected != current
            {
                return Ok(Err(StorageError::Conflict {
                    key,
                    expected,
                    current,
                }));
            }
            let prev = t.version(&key, current)?;
            let version = Version {
                tombstone: true,
                create_revision: create,
                prev_mod_revision: current,
                value: Bytes::new(),
            };
            t.put(&key, rev, &version)?;
            t.latest.remove(key.as_str()).map_err(backend)?;
            let event = event_for(&key, rev, &version, Some(&prev));
            Ok(Ok((event.kv.clone(), event)))
        }
    }
}

fn control(shared: &Shared, op: Op, current: &mut Revision, wal: &mut Wal) {
    // Each of these commits durably, which also persists the batches the log holds: first
    // a checkpoint of its own, so that the log never holds writes the file already has
    // past a durable commit that did not restart it.
    match op {
        Op::SetCompacted { revision, reply } => {
            let result = checkpoint(shared, wal).and_then(|()| {
                with_db(shared, |db| {
                    set_compacted(db, shared.quick_repair, revision, *current)
                })
            });
            if let Ok(true) = result {
                shared.compacted.store(revision, Ordering::Release);
                shared.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            let _ = reply.send(result);
        }
        Op::CompactChunk {
            upto,
            max_events,
            reply,
        } => {
            let result = checkpoint(shared, wal).and_then(|()| {
                with_db(shared, |db| {
                    compact_chunk(db, shared.quick_repair, upto, max_events)
                })
            });
            if result.is_ok() {
                shared.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            let _ = reply.send(result);
        }
        Op::Reclaim { force, reply } => {
            let result = checkpoint(shared, wal).and_then(|()| reclaim(shared, force));
            let _ = reply.send(result);
        }
        Op::Checkpoint { force, reply } => {
            let due = wal
                .since()
                .is_some_and(|t| force || t.elapsed() >= shared.checkpoint_interval);
            let result = if due {
                checkpoint(shared, wal).map(|()| true)
            } else {
                Ok(false)
            };
            let _ = reply.send(result);
        }
        Op::Write { .. } | Op::Close { .. } => {
            // Handled by the loop; never routed here.
        }
    }
}

fn set_compacted(
    db: &Database,
    quick_repair: bool,
    revision: Revision,
    current: Revision,
) -> Result<bool> {
    if revision > current {
        return Err(StorageError::FutureRevision {
            requested: revision,
            current,
        });
    }
    let txn = begin(db, quick_repair, Durability::Immediate)?;
    let moved = {
        let mut meta = txn.open_table(META).map_err(backend)?;
        let compacted = meta
            .get(META_COMPACTED)
            .map_err(backend)?
            .map(|g| g.value())
            .unwrap_or(0);
        if revision > compacted {
            meta.insert(META_COMPACTED, revision).map_err(backend)?;
            true
        } else {
            false
        }
    };
    if moved {
        txn.commit().map_err(backend)?;
    } else {
        txn.abort().map_err(backend)?;
    }
    Ok(moved)
}

fn compact_chunk(
    db: &Database,
    quick_repair: bool,
    upto: Revision,
    max_events: usize,
) -> Result<ChunkOutcome> {
    let txn = begin(db, quick_repair, Durability::Immediate)?;
    let mut out = ChunkOutcome::default();
    {
        let mut log = txn.open_table(EVENTS).map_err(backend)?;
        let mut history = txn.open_table(HISTORY).map_err(backend)?;
        let mut batch: Vec<(Revision, String)> = Vec::with_capacity(max_events);
        for item in log.range(..=upto).map_err(backend)?.take(max_events) {
            let (rev, key) = item.map_err(backend)?;
            batch.push((rev.value(), key.value().to_owned()));
        }
        out.done = batch.len() < max_events;
        for (rev, key) in batch {
            log.remove(rev).map_err(backend)?;
            out.events_removed += 1;
            // Every older version of the key is shadowed by this one (which is ≤ upto).
            let mut removed = 0u64;
            history
                .retain_in((key.as_str(), i64::MIN)..(key.as_str(), rev), |_, _| {
                    removed += 1;
                    false
                })
                .map_err(backend)?;
            out.versions_removed += removed;
            let tombstone = history
                .get((key.as_str(), rev))
                .map_err(backend)?
                .is_some_and(|raw| Version::raw_is_tombstone(raw.value()));
            if tombstone {
                history.remove((key.as_str(), rev)).map_err(backend)?;
                out.versions_removed += 1;
                out.keys_removed += 1;
            }
        }
    }
    if out.events_removed == 0 {
        txn.abort().map_err(backend)?;
    } else {
        txn.commit().map_err(backend)?;
    }
    Ok(out)
}

/// Free-space reclamation: redb's `Database::compact` needs `&mut Database`, so it runs here,
/// on the writer thread (no write is in flight), under the exclusive lock (no reader is).
fn reclaim(shared: &Shared, force: bool) -> Result<bool> {
    let file_size = shared.file_size();
    if !force {
        let used = with_db(shared, used_bytes)?;
        let wanted = file_size >= shared.reclaim_min_file_bytes
            && (used as f64) < (file_size as f64) * (1.0 - shared.reclaim_free_ratio);
        if !wanted {
            return Ok(false);
        }
    }
    let started = Instant::now();
    let mut guard = shared
        .db
        .write()
        .map_err(|_| StorageError::Backend("database lock poisoned".into()))?;
    let db = guard
        .as_mut()
        .ok_or_else(|| StorageError::Backend("store is closed".into()))?;
    // Each call moves pages towards the start of the file; a few passes converge.
    for _ in 0..8 {
        match db.compact() {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(error = %e, "embedded store: file compaction stopped");
                break;
            }
        }
    }
    drop(guard);
    let m = &shared.metrics;
    m.reclaim_runs.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        before = file_size,
        after = shared.file_size(),
        took_ms = started.elapsed().as_millis() as u64,
        "embedded store: reclaimed free space"
    );
    Ok(true)
}

/// Bytes in allocated pages (live data and metadata).
fn used_bytes(db: &Database) -> Result<u64> {
    let txn = db.begin_write().map_err(backend)?;
    let stats = txn.stats().map_err(backend)?;
    txn.abort().map_err(backend)?;
    Ok(stats.allocated_pages() * stats.page_size() as u64)
}

/// Applies the write-ahead log's records newer than `current` (the file's revision) in one
/// durable commit, after a crash; returns the revision after them. Fails when the log
/// continues a revision the file never reached (a log that is not this store's).
pub(crate) fn replay_wal(
    db: &Database,
    quick_repair: bool,
    records: Vec<super::wal::Record>,
    current: Revision,
) -> Result<Revision> {
    let mut pending = records
        .into_iter()
        .skip_while(|r| r.revision <= current)
        .peekable();
    match pending.peek() {
        None => return Ok(current),
        Some(first) if first.revision != current + 1 => {
            return Err(StorageError::Backend(format!(
                "the write-ahead log starts at revision {} but the database file is at {current}: not this store's log",
                first.revision
            )));
        }
        Some(_) => {}
    }
    let txn = begin(db, quick_repair, Durability::Immediate)?;
    let mut rev = current;
    {
        let mut latest = txn.open_table(LATEST).map_err(backend)?;
        let mut history = txn.open_table(HISTORY).map_err(backend)?;
        let mut log = txn.open_table(EVENTS).map_err(backend)?;
        for r in pending {
            let v = &r.version;
            history
                .insert((r.key.as_str(), r.revision), v.encode().as_slice())
                .map_err(backend)?;
            log.insert(r.revision, r.key.as_str()).map_err(backend)?;
            if v.tombstone {
                latest.remove(r.key.as_str()).map_err(backend)?;
            } else {
                latest
                    .insert(
                        r.key.as_str(),
                        encode_latest(v.create_revision, r.revision).as_slice(),
                    )
                    .map_err(backend)?;
            }
            rev = r.revision;
        }
        let mut meta = txn.open_table(META).map_err(backend)?;
        meta.insert(META_REV, rev).map_err(backend)?;
    }
    txn.commit().map_err(backend)?;
    Ok(rev)
}

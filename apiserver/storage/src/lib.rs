//! MVCC storage for ferrokube.
//!
//! This crate knows keys, bytes, revisions and events — nothing about HTTP, users or resource
//! kinds (DESIGN invariant 2). Start reading at [`Storage`]: it carries etcd's model (one global
//! revision, per-key create/mod revisions, compare-and-swap on the mod revision, range at a
//! revision, watch from a revision, compaction). Backends: [`embedded`] (redb, the default), [`etcd`]
//! (an etcd v3 cluster) and [`memory`] (tests).
//! Every backend passes the one suite in [`testing::run_all`].

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

pub mod embedded;
pub mod etcd;
pub mod memory;
pub mod testing;
pub mod transform;
pub mod watch_cache;

/// A storage revision: etcd's `int64` revision. The first write of a fresh store gets revision 2
/// (revision 1 is the empty store, as in etcd), and every write bumps it by exactly one.
pub type Revision = i64;

/// One key with its value and its revisions, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// Shared, not copied, by every clone: the watch cache's state, its event rings and the
    /// events in flight to watchers hold one allocation per key.
    pub key: Arc<str>,
    pub value: Bytes,
    /// The revision of the write that created this incarnation of the key.
    pub create_revision: Revision,
    /// The revision of the last write to the key (for a delete event: the delete's revision).
    pub mod_revision: Revision,
}

/// What happened to a key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Created (no previous value) or updated.
    Put,
    /// Deleted. `kv.value` holds the last value before the delete, `kv.mod_revision` the
    /// revision of the delete.
    Delete,
    /// No change: every event under the watched prefix up to `kv.mod_revision` has been
    /// delivered (an etcd progress notification; `kv.key` is empty). Only backend watch
    /// streams that share their revision counter with writes outside the prefix send it; the
    /// watch cache advances its revision on it and never passes it on to its own watchers.
    Progress,
}

/// One watch event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The value before this event (None for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// A [`EventKind::Progress`] event at `revision`.
    pub fn progress(revision: Revision) -> Self {
        Event {
            kind: EventKind::Progress,
            kv: KeyValue {
                key: Arc::from(""),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: revision,
            },
            prev: None,
        }
    }

    /// The revision this event happened at.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A range read.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    /// Keys starting with this prefix (for example `/registry/pods/default/`).
    pub prefix: String,
    /// Only keys strictly greater than this one (pagination: the last key of the previous page).
    pub start_after: Option<String>,
    /// At most this many items (0 = no limit).
    pub limit: usize,
    /// Read as of this revision (0 = the current revision). A revision at or below the
    /// compacted revision fails with [`StorageError::Compacted`]; one above the current
    /// revision fails with [`StorageError::FutureRevision`].
    pub revision: Revision,
}

/// The result of a range read.
#[derive(Clone, Debug, Default)]
pub struct ListResponse {
    pub items: Vec<KeyValue>,
    /// The revision the read was served at.
    pub revision: Revision,
    /// True when more keys match after the last returned one.
    pub more: bool,
    /// How many matching keys come after the last returned one (when `more`).
    pub remaining: u64,
}

/// Errors every backend reports the same way.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// `create` of a key that exists.
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// A read, update or delete of a key that does not exist.
    #[error("key {key} not found")]
    NotFound { key: String },
    /// A compare-and-swap whose expected mod revision is not the current one.
    #[error("key {key}: expected mod revision {expected}, current {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// A read or watch at a revision that compaction has removed.
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// A read at a revision newer than the store's current one.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The backend failed (IO, corruption, closed).
    #[error("storage backend failure: {0}")]
    Backend(String),
    /// The backend did not answer in time or cannot be reached (an etcd cluster without
    /// quorum, a dropped connection). The write may or may not have happened; retrying is
    /// safe for reads and for compare-and-swap writes.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A stream of watch events in revision order. It ends when the watcher falls too far behind
/// (the consumer then sees an `Err(Compacted)` item or the end of the stream and must re-list).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send + 'static>>;

/// The MVCC store. Cheap to clone behind an `Arc<dyn Storage>`.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The current (latest committed) revision. Must be cheap: it backs consistent reads.
    async fn current_revision(&self) -> Result<Revision>;

    /// The latest value of one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// A range read over a prefix, in key order, consistent at one revision.
    async fn list(&self, req: ListRequest) -> Result<ListResponse>;

    /// Creates `key`; fails with `AlreadyExists` if it exists. Durable when it returns.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Compare-and-swap: replaces the value if the key's mod revision is `expected_mod_revision`
    /// (`Conflict` otherwise, `NotFound` if absent). Durable when it returns.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue>;

    /// Deletes `key`, if `expected_mod_revision` is given only when it matches. Returns the
    /// deleted value with `mod_revision` set to the delete's revision. Durable when it returns.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue>;

    /// Events for keys under `prefix` with revision strictly greater than `after_revision`,
    /// first the retained history, then live events, in revision order. Fails with
    /// `Compacted` if `after_revision` is older than the retained history.
    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream>;

    /// Drops history at and below `revision` (keeping every key's latest version).
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The highest compacted revision (0 when nothing has been compacted).
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Asks every open watch stream for an [`EventKind::Progress`] event as soon as possible
    /// (etcd's `WatchProgressRequest`); true if the backend sends them. A consistent read
    /// served from the watch cache needs it when the backend's revision counter also counts
    /// writes the cache does not watch (other `--etcd-prefix` tenants of one etcd): without a
    /// progress event the cache would wait in vain for a revision no event of its own carries.
    async fn request_watch_progress(&self) -> Result<bool> {
        Ok(false)
    }

    /// Whether the revision may move ahead of a prefix's watch for good: it also counts writes
    /// outside any watched prefix (other `--etcd-prefix` tenants of one etcd) and the backend
    /// cannot send progress events ([`Storage::request_watch_progress`]) to say so — etcd
    /// before 3.4.31 / 3.5.13. The watch cache then waits only briefly for such a revision
    /// and consistent reads go to the backend (upstream serves them from etcd there).
    fn revision_may_outrun_watch(&self) -> bool {
        false
    }
}

/// Read-modify-write with optimistic concurrency, upstream's `GuaranteedUpdate`: reads `key`,
/// calls `update` with the current value (None if absent) and writes the result with a
/// compare-and-swap, retrying while other writers win the race. `update` returns the new
/// value, or an error that aborts.
pub async fn guaranteed_update<F, E>(
    store: &dyn Storage,
    key: &str,
    mut update: F,
) -> std::result::Result<KeyValue, E>
where
    F: FnMut(Option<&KeyValue>) -> std::result::Result<Bytes, E>,
    E: From<StorageError>,
{
    loop {
        let current = store.get(key).await?;
        let value = update(current.as_ref())?;
        let result = match &current {
            Some(kv) => store.update(key, value, kv.mod_revision).await,
            None => store.create(key, value).await,
        };
        match result {
            Ok(kv) => return Ok(kv),
            Err(StorageError::Conflict { .. } | StorageError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

//! An in-memory [`Storage`] with etcd's MVCC semantics.
//!
//! Used by server unit tests and as a second implementation that validates the shared suite
//! ([`crate::testing::run_all`]). Nothing is durable. Semantics follow etcd:
//!
//! - a fresh store is at revision 1, the first write gets revision 2, every write bumps it by one;
//! - every key keeps its versions (and tombstones) until [`Storage::compact`] drops them, so
//!   [`Storage::list`] can read at any retained revision and [`Storage::watch`] can replay;
//! - a watcher has a bounded buffer for live events; one that falls further behind is ended
//!   with an `Err(Compacted)` item, so one slow reader never blocks writers or grows memory.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;

use crate::{
    Event, EventKind, KeyValue, ListRequest, ListResponse, Result, Revision, Storage, StorageError,
    WatchStream,
};

/// Default number of live events buffered per watcher before it is ended as too slow.
pub const DEFAULT_WATCH_BUFFER: usize = 4096;

/// One version of a key: a live value or a tombstone (the key was deleted at `revision`).
#[derive(Clone, Debug)]
struct Version {
    revision: Revision,
    value: Option<KeyValue>,
}

/// A registered watcher: events under `prefix` are offered to `tx` without blocking.
struct Watcher {
    prefix: String,
    tx: mpsc::Sender<Event>,
    /// Set when the buffer overflowed; the stream then reports `Compacted` after draining.
    overflowed: Arc<AtomicBool>,
}

/// Everything behind the store's one lock.
struct Inner {
    revision: Revision,
    compacted: Revision,
    /// Every key's versions in revision order (oldest first), including tombstones.
    keys: BTreeMap<String, Vec<Version>>,
    /// Events after `compacted`, in revision order, for watch replay.
    log: VecDeque<Event>,
    watchers: Vec<Watcher>,
}

/// The in-memory MVCC store. See the module documentation.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    watch_buffer: usize,
}

impl MemoryStore {
    /// A fresh, empty store at revision 1 with the default per-watcher buffer.
    pub fn new() -> Arc<MemoryStore> {
        Self::with_watch_buffer(DEFAULT_WATCH_BUFFER)
    }

    /// A fresh store whose watchers buffer at most `watch_buffer` live events (at least 1).
    pub fn with_watch_buffer(watch_buffer: usize) -> Arc<MemoryStore> {
        Arc::new(MemoryStore {
            inner: Mutex::new(Inner {
                revision: 1,
                compacted: 0,
                keys: BTreeMap::new(),
                log: VecDeque::new(),
                watchers: Vec::new(),
            }),
            watch_buffer: watch_buffer.max(1),
        })
    }

    /// Ends every open watch stream (each yields `Err(Compacted)` after its buffered events),
    /// as a broken backend connection would. For tests of watch recovery.
    pub fn break_watches(&self) {
        let mut inner = self.lock();
        for w in inner.watchers.drain(..) {
            w.overflowed.store(true, Ordering::Release);
        }
    }

    /// The number of open watch streams.
    pub fn watcher_count(&self) -> usize {
        let mut inner = self.lock();
        inner.watchers.retain(|w| !w.tx.is_closed());
        inner.watchers.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a way later
        // readers would misinterpret (each write is applied by one infallible call), so a
        // poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn latest(&self, key: &str) -> Option<&KeyValue> {
        self.keys
            .get(key)
            .and_then(|versions| versions.last())
            .and_then(|v| v.value.as_ref())
    }

    /// Records a write at the next revision and offers the event to the watchers.
    fn commit(&mut self, key: &str, value: Option<KeyValue>, event: Event) {
        let revision = event.revision();
        self.revision = revision;
        self.keys
            .entry(key.to_owned())
            .or_default()
            .push(Version { revision, value });
        self.watchers.retain(|w| {
            if !event.kv.key.starts_with(&w.prefix) {
                return !w.tx.is_closed();
            }
            match w.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(prefix = %w.prefix, "memory store: ending a slow watcher");
                    w.overflowed.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.log.push_back(event);
    }
}

/// The value of one key as of `revision`, from its versions.
fn value_at(versions: &[Version], revision: Revision) -> Option<&KeyValue> {
    let idx = versions.partition_point(|v| v.revision <= revision);
    idx.checked_sub(1)
        .and_then(|i| versions.get(i))
        .and_then(|v| v.value.as_ref())
}

#[async_trait::async_trait]
impl Storage for MemoryStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock().latest(key).cloned())
    }

    async fn list(&self, req: ListRequest) -> Result<ListResponse> {
        let inner = self.lock();
        let revision = if req.revision == 0 {
            inner.revision
        } else {
            req.revision
        };
        if revision > inner.revision {
            return Err(StorageError::FutureRevision {
                requested: revision,
                current: inner.revision,
            });
        }
        if req.revision != 0 && revision <= inner.compacted {
            return Err(StorageError::Compacted {
                requested: revision,
                compacted: inner.compacted,
            });
        }
        let start = match &req.start_after {
            Some(after) if after.as_str() >= req.prefix.as_str() => Bound::Excluded(after.clone()),
            _ => Bound::Included(req.prefix.clone()),
        };
        let mut items = Vec::new();
        let mut remaining = 0u64;
        let range = inner
            .keys
            .range::<String, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&req.prefix));
        for (_, versions) in range {
            let Some(kv) = value_at(versions, revision) else {
                continue;
            };
            if req.limit == 0 || items.len() < req.limit {
                items.push(kv.clone());
            } else {
                remaining += 1;
                if req.skip_count {
                    break;
                }
            }
        }
        Ok(ListResponse {
            items,
            revision,
            more: remaining > 0,
            remaining: if req.skip_count { 0 } else { remaining },
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let mut inner = self.lock();
        if inner.latest(key).is_some() {
            return Err(StorageError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = inner.revision + 1;
        let kv = KeyValue {
            key: key.into(),
            value,
            create_revision: revision,
            mod_revision: revision,
        };
        let event = Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev: None,
        };
        inner.commit(key, Some(kv.clone()), event);
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        let mut inner = self.lock();
        let Some(prev) = inner.latest(key).cloned() else {
            return Err(StorageError::NotFound {
                key: key.to_owned(),
            });
        };
        if prev.mod_revision != expected_mod_revision {
            return Err(StorageError::Conflict {
                key: key.to_owned(),
                expected: expected_mod_revision,
                current: prev.mod_revision,
            });
        }
        let revision = inner.revision + 1;
        let kv = KeyValue {
            key: key.into(),
            value,
            create_revision: prev.create_revision,
            mod_revision: revision,
        };
        let event = Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev: Some(Box::new(prev)),
        };
        inner.commit(key, Some(kv.clone()), event);
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        let mut inner = self.lock();
        let Some(prev) = inner.latest(key).cloned() else {
            return Err(StorageError::NotFound {
                key: key.to_owned(),
            });
        };
        if let Some(expected) = expected_mod_revision
            && prev.mod_revision != expected
        {
            return Err(StorageError::Conflict {
                key: key.to_owned(),
                expected,
                current: prev.mod_revision,
            });
        }
        let revision = inner.revision + 1;
        let kv = KeyValue {
            mod_revision: revision,
            ..prev.clone()
        };
        let event = Event {
            kind: EventKind::Delete,
            kv: kv.clone(),
            prev: Some(Box::new(prev)),
        };
        inner.commit(key, None, event);
        Ok(kv)
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let mut inner = self.lock();
        if after_revision < inner.compacted {
            return Err(StorageError::Compacted {
                requested: after_revision,
                compacted: inner.compacted,
            });
        }
        let replay: VecDeque<Event> = inner
            .log
            .iter()
            .filter(|e| e.revision() > after_revision && e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(self.watch_buffer);
        let overflowed = Arc::new(AtomicBool::new(false));
        inner.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            tx,
            overflowed: Arc::clone(&overflowed),
        });
        let last = replay.back().map_or(after_revision, Event::revision);
        Ok(Box::pin(MemoryWatch {
            replay,
            rx,
            overflowed,
            last,
            done: false,
        }))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut inner = self.lock();
        if revision > inner.revision {
            return Err(StorageError::FutureRevision {
                requested: revision,
                current: inner.revision,
            });
        }
        if revision <= inner.compacted {
            // Compacting again (or lower) is a no-op, as the shared suite expects.
            return Ok(());
        }
        inner.compacted = revision;
        inner.keys.retain(|_, versions| {
            // Keep the latest version at or below `revision` unless it is a tombstone, and
            // everything newer.
            let keep_from = versions.partition_point(|v| v.revision <= revision);
            let cut = match keep_from.checked_sub(1).and_then(|i| versions.get(i)) {
                Some(v) if v.value.is_some() => keep_from - 1,
                _ => keep_from,
            };
            versions.drain(..cut);
            !versions.is_empty()
        });
        while inner.log.front().is_some_and(|e| e.revision() <= revision) {
            inner.log.pop_front();
        }
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }
}

/// The stream behind [`MemoryStore::watch`]: the replayed history, then live events.
struct MemoryWatch {
    replay: VecDeque<Event>,
    rx: mpsc::Receiver<Event>,
    overflowed: Arc<AtomicBool>,
    /// The revision of the last event yielded (or the watch's start).
    last: Revision,
    done: bool,
}

impl Stream for MemoryWatch {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(event) = self.replay.pop_front() {
            self.last = event.revision();
            return Poll::Ready(Some(Ok(event)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                self.last = event.revision();
                Poll::Ready(Some(Ok(event)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.overflowed.load(Ordering::Acquire) {
                    Poll::Ready(Some(Err(StorageError::Compacted {
                        requested: self.last + 1,
                        compacted: self.last,
                    })))
                } else {
                    Poll::Ready(None)
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests;

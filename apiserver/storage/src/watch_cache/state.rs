//! The cache's data: the current state (key → value, ordered) and the ring of recent events.
//!
//! Pure data, no locks or IO: [`super::Shared`] wraps it in a `RwLock`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::{Event, EventKind, KeyValue, Revision, StorageError};

/// The current state and the recent history.
#[derive(Debug)]
pub(super) struct CacheState {
    /// The latest value of every key under the cache's prefix.
    items: BTreeMap<String, KeyValue>,
    /// Recent events in revision order, at most `capacity`.
    ring: VecDeque<Arc<Event>>,
    capacity: usize,
    /// The ring holds every event with a revision strictly greater than this one.
    ring_start: Revision,
    /// The latest revision the cache has seen (the list revision or the last event's).
    revision: Revision,
}

impl CacheState {
    /// An empty state at revision 0 (before the first list).
    pub(super) fn new(capacity: usize) -> CacheState {
        CacheState {
            items: BTreeMap::new(),
            ring: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
            ring_start: 0,
            revision: 0,
        }
    }

    /// Replaces everything with the result of a list at `revision`. The ring starts empty:
    /// watches can resume only from `revision` on.
    pub(super) fn replace(&mut self, items: Vec<KeyValue>, revision: Revision) {
        self.items = items.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        self.ring.clear();
        self.ring_start = revision;
        self.revision = revision;
    }

    /// Applies one event from the backend. Returns the shared event to dispatch, or None for
    /// an event the cache has already seen (at or below its revision).
    pub(super) fn apply(&mut self, event: Event) -> Option<Arc<Event>> {
        let revision = event.revision();
        if revision <= self.revision {
            return None;
        }
        match event.kind {
            EventKind::Put => {
                self.items.insert(event.kv.key.clone(), event.kv.clone());
            }
            EventKind::Delete => {
                self.items.remove(&event.kv.key);
            }
        }
        self.revision = revision;
        let event = Arc::new(event);
        if self.ring.len() >= self.capacity
            && let Some(evicted) = self.ring.pop_front()
        {
            self.ring_start = evicted.revision();
        }
        self.ring.push_back(Arc::clone(&event));
        Some(event)
    }

    /// The latest revision seen.
    pub(super) fn revision(&self) -> Revision {
        self.revision
    }

    /// The ring covers every event after this revision.
    pub(super) fn ring_start(&self) -> Revision {
        self.ring_start
    }

    /// The number of events in the ring.
    pub(super) fn ring_len(&self) -> usize {
        self.ring.len()
    }

    /// The number of keys in the state.
    pub(super) fn item_count(&self) -> usize {
        self.items.len()
    }

    /// The items under `prefix`, in key order. Values are shared (`Bytes`), not copied.
    pub(super) fn list(&self, prefix: &str) -> Vec<KeyValue> {
        self.items
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect()
    }

    /// The latest value of one key.
    pub(super) fn get(&self, key: &str) -> Option<KeyValue> {
        self.items.get(key).cloned()
    }

    /// The events under `prefix` after `after_revision`, or `Compacted` when the ring no
    /// longer holds all of them.
    pub(super) fn events_after(
        &self,
        prefix: &str,
        after_revision: Revision,
    ) -> Result<VecDeque<Arc<Event>>, StorageError> {
        if after_revision < self.ring_start {
            return Err(StorageError::Compacted {
                requested: after_revision,
                compacted: self.ring_start,
            });
        }
        let first = self
            .ring
            .partition_point(|e| e.revision() <= after_revision);
        Ok(self
            .ring
            .range(first..)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect())
    }
}

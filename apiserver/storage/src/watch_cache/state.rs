//! The cache's data: the current state (key → value, ordered) and the ring of recent events.
//!
//! Pure data, no locks or IO: [`super::Shared`] wraps it in a `RwLock`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::dispatch::segment;
use crate::{Event, EventKind, KeyValue, Revision, StorageError};

/// The recent events of one resource (keys sharing the segment after the cache prefix).
#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<Event>>,
    /// The ring holds every event of its resource with a revision strictly greater than this.
    start: Revision,
}

/// The current state and the recent history.
#[derive(Debug)]
pub(super) struct CacheState {
    /// The cache prefix (`/registry/`): keys are grouped into rings by the segment after it.
    prefix: String,
    /// The latest value of every key under the cache's prefix.
    items: BTreeMap<String, KeyValue>,
    /// Recent events per resource in revision order, at most `capacity` each, so that a busy
    /// resource does not shorten the resumption window of the others (as upstream, where
    /// each resource has its own cache).
    rings: HashMap<String, Ring>,
    capacity: usize,
    /// The revision of the last list: a resource without a ring has had no event since.
    list_revision: Revision,
    /// The latest revision the cache has seen (the list revision or the last event's).
    revision: Revision,
}

impl CacheState {
    /// An empty state at revision 0 (before the first list).
    pub(super) fn new(prefix: &str, capacity: usize) -> CacheState {
        CacheState {
            prefix: prefix.to_owned(),
            items: BTreeMap::new(),
            rings: HashMap::new(),
            capacity: capacity.max(1),
            list_revision: 0,
            revision: 0,
        }
    }

    /// Replaces everything with the result of a list at `revision`. The rings start empty:
    /// watches can resume only from `revision` on.
    pub(super) fn replace(&mut self, items: Vec<KeyValue>, revision: Revision) {
        self.items = items.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        self.rings.clear();
        self.list_revision = revision;
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
            EventKind::Progress => {
                // Nothing changed under the prefix up to `revision`: only the revision moves.
                self.revision = revision;
                return None;
            }
            EventKind::Put => {
                self.items.insert(event.kv.key.clone(), event.kv.clone());
            }
            EventKind::Delete => {
                self.items.remove(&event.kv.key);
            }
        }
        self.revision = revision;
        let event = Arc::new(event);
        let seg = segment(&self.prefix, &event.kv.key).unwrap_or("");
        let list_revision = self.list_revision;
        let ring = self.rings.entry(seg.to_owned()).or_insert_with(|| Ring {
            events: VecDeque::new(),
            start: list_revision,
        });
        if ring.events.len() >= self.capacity
            && let Some(evicted) = ring.events.pop_front()
        {
            ring.start = evicted.revision();
        }
        ring.events.push_back(Arc::clone(&event));
        Some(event)
    }

    /// The latest revision seen.
    pub(super) fn revision(&self) -> Revision {
        self.revision
    }

    /// Per resource: events held and the revision after which the ring is complete.
    pub(super) fn ring_stats(&self) -> BTreeMap<String, (usize, Revision)> {
        self.rings
            .iter()
            .map(|(seg, ring)| (seg.clone(), (ring.events.len(), ring.start)))
            .collect()
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

    /// At most `limit` items (0: all) under `prefix` after `start_after`, in key order, and how
    /// many more match.
    pub(super) fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> (Vec<KeyValue>, u64) {
        use std::ops::Bound;
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut matching = self
            .items
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        let take = if limit == 0 { usize::MAX } else { limit };
        let items: Vec<KeyValue> = matching
            .by_ref()
            .take(take)
            .map(|(_, kv)| kv.clone())
            .collect();
        (items, matching.count() as u64)
    }

    /// The latest value of one key.
    pub(super) fn get(&self, key: &str) -> Option<KeyValue> {
        self.items.get(key).cloned()
    }

    /// The events under `prefix` after `after_revision`, or `Compacted` when the rings no
    /// longer hold all of them.
    pub(super) fn events_after(
        &self,
        prefix: &str,
        after_revision: Revision,
    ) -> Result<VecDeque<Arc<Event>>, StorageError> {
        let compacted = |start: Revision| StorageError::Compacted {
            requested: after_revision,
            compacted: start,
        };
        let from_ring = |ring: &Ring| {
            let first = ring
                .events
                .partition_point(|e| e.revision() <= after_revision);
            ring.events
                .range(first..)
                .filter(|e| e.kv.key.starts_with(prefix))
                .cloned()
                .collect::<Vec<_>>()
        };
        match segment(&self.prefix, prefix) {
            Some(seg) => {
                let ring = self.rings.get(seg);
                let start = ring.map_or(self.list_revision, |r| r.start);
                if after_revision < start {
                    return Err(compacted(start));
                }
                Ok(ring.map(from_ring).unwrap_or_default().into())
            }
            None => {
                // A prefix spanning resources: every ring must cover it; merge by revision.
                let start = self
                    .rings
                    .values()
                    .map(|r| r.start)
                    .fold(self.list_revision, Revision::max);
                if after_revision < start {
                    return Err(compacted(start));
                }
                let mut events: Vec<_> = self.rings.values().flat_map(from_ring).collect();
                events.sort_by_key(|e| e.revision());
                Ok(events.into())
            }
        }
    }
}

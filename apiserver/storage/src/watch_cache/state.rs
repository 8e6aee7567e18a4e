//! The cache's data: the current state (key → value, ordered) and the ring of recent events.
//!
//! Pure data, no locks or IO: [`super::Shared`] wraps it in a `RwLock`.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dispatch::segment;
use super::fill::{Coverage, Progress};
use crate::{Event, EventKind, KeyValue, Revision, StorageError};

/// The recent events of one resource (keys sharing the segment after the cache prefix).
#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<Event>>,
    /// The ring holds every event of its resource with a revision strictly greater than this.
    start: Revision,
    /// Coarse arrival times, one mark per [`MARK_EVERY`] at most: `(t, rev)` says the events
    /// up to `rev` arrived before `t + MARK_EVERY`. Trimming by age pops these.
    marks: VecDeque<(Instant, Revision)>,
}

/// The granularity of the rings' arrival-time marks.
const MARK_EVERY: Duration = Duration::from_secs(1);

/// How the rings shrink with time (upstream's watch cache keeps events for
/// `eventFreshDuration`, 75 s, and at least `lowerBoundCapacity`, 100, per resource).
#[derive(Clone, Copy, Debug)]
pub(super) struct Freshness {
    /// Events older than this are dropped (None: only the capacity bounds a ring).
    pub(super) max_age: Option<Duration>,
    /// Never trimmed by age below this many events per resource.
    pub(super) min_events: usize,
}

impl Ring {
    /// Drops the events that arrived more than `max_age` before `now`, keeping `min_events`.
    fn trim(&mut self, now: Instant, max_age: Duration, min_events: usize) {
        while let Some(&(t, rev)) = self.marks.front() {
            if now.saturating_duration_since(t) < max_age + MARK_EVERY {
                break;
            }
            self.marks.pop_front();
            while self.events.len() > min_events
                && self.events.front().is_some_and(|e| e.revision() <= rev)
            {
                if let Some(evicted) = self.events.pop_front() {
                    self.start = evicted.revision();
                }
            }
        }
    }

    /// Records that the event at `rev` arrived at `now`.
    fn mark(&mut self, now: Instant, rev: Revision) {
        match self.marks.back_mut() {
            Some((t, last)) if now.saturating_duration_since(*t) < MARK_EVERY => *last = rev,
            _ => self.marks.push_back((now, rev)),
        }
    }
}

/// One key's latest value, ordered and looked up by its key: the key is stored once (in the
/// value), not a second time as a map key.
#[derive(Debug)]
struct Item(KeyValue);

impl Borrow<str> for Item {
    fn borrow(&self) -> &str {
        &self.0.key
    }
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for Item {}

impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Item {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key.cmp(&other.0.key)
    }
}

/// The current state and the recent history.
#[derive(Debug)]
pub(super) struct CacheState {
    /// The cache prefix (`/registry/`): keys are grouped into rings by the segment after it.
    prefix: String,
    /// The latest value of every key under the cache's prefix.
    items: BTreeSet<Item>,
    /// Recent events per resource in revision order, at most `capacity` each, so that a busy
    /// resource does not shorten the resumption window of the others (as upstream, where
    /// each resource has its own cache).
    rings: HashMap<String, Ring>,
    capacity: usize,
    freshness: Freshness,
    /// The revision of the last list: a resource without a ring has had no event since.
    list_revision: Revision,
    /// The latest revision the cache has seen (the list revision or the last event's).
    revision: Revision,
    /// Which keys `items` holds completely (all, once the fill after the last list ends).
    fill: Coverage,
}

impl CacheState {
    /// An empty state at revision 0 (before the first list).
    pub(super) fn new(prefix: &str, capacity: usize, freshness: Freshness) -> CacheState {
        CacheState {
            prefix: prefix.to_owned(),
            items: BTreeSet::new(),
            rings: HashMap::new(),
            capacity: capacity.max(1),
            freshness,
            list_revision: 0,
            revision: 0,
            fill: Coverage::complete(0),
        }
    }

    /// Replaces everything with the result of a list at `revision`. The rings start empty:
    /// watches can resume only from `revision` on.
    #[cfg(test)]
    pub(super) fn replace(&mut self, items: Vec<KeyValue>, revision: Revision) {
        self.items = items.into_iter().map(Item).collect();
        self.rings.clear();
        self.list_revision = revision;
        self.revision = revision;
        self.fill = Coverage::complete(self.fill.generation() + 1);
    }

    /// Empties the state at `revision`, the revision the backend watch now follows from, for a
    /// new fill (see `fill.rs`); returns the fill's generation. The rings start empty: watches
    /// can resume only from `revision` on.
    pub(super) fn reset(&mut self, revision: Revision) -> u64 {
        let generation = self.fill.generation() + 1;
        self.items = BTreeSet::new();
        self.rings.clear();
        self.list_revision = revision;
        self.revision = revision;
        self.fill = Coverage::pending(generation);
        generation
    }

    /// Merges one page of fill `generation` (false when a newer fill superseded it): the
    /// listed values of the keys no event has touched since the fill began, then the page's
    /// progress. The caller has made sure the cache has seen the page's revision.
    pub(super) fn merge(
        &mut self,
        generation: u64,
        page: Vec<KeyValue>,
        progress: Progress,
    ) -> bool {
        if self.fill.generation() != generation || self.fill.is_done() {
            return false;
        }
        for kv in page {
            if self.fill.may_merge(&kv.key, self.items.contains(&*kv.key)) {
                self.items.insert(Item(kv));
            }
        }
        let done = matches!(progress, Progress::Done);
        self.fill.advance(progress);
        if done {
            // Rebuilt from its sorted items: a tree grown by inserts keeps its nodes partly
            // empty (measured: ~7 MiB more for 100,000 small objects than one built at once).
            self.items = std::mem::take(&mut self.items).into_iter().collect();
        }
        true
    }

    /// Whether the state holds the current value (or absence) of `key`.
    pub(super) fn covers_key(&self, key: &str) -> bool {
        self.fill.covers_key(key)
    }

    /// Whether the state holds every key under `prefix`.
    pub(super) fn covers_prefix(&self, prefix: &str) -> bool {
        self.fill.covers_prefix(prefix)
    }

    /// Whether the fill after the last list has ended.
    pub(super) fn is_filled(&self) -> bool {
        self.fill.is_done()
    }

    /// Applies one event from the backend, arrived at `now`. Returns the shared event to
    /// dispatch, or None for an event the cache has already seen (at or below its revision).
    pub(super) fn apply(&mut self, mut event: Event, now: Instant) -> Option<Arc<Event>> {
        let revision = event.revision();
        if revision <= self.revision {
            return None;
        }
        if event.kind == EventKind::Progress {
            // Nothing changed under the prefix up to `revision`: only the revision moves.
            self.revision = revision;
            return None;
        }
        if let Some(Item(live)) = self.items.get(&*event.kv.key) {
            share_with_live(&mut event, live);
        }
        if event.kind == EventKind::Put {
            self.items.replace(Item(event.kv.clone()));
        } else {
            self.items.remove(&*event.kv.key);
            self.fill.deleted(&event.kv.key);
        }
        self.revision = revision;
        let event = Arc::new(event);
        let seg = segment(&self.prefix, &event.kv.key).unwrap_or("");
        let list_revision = self.list_revision;
        let ring = self.rings.entry(seg.to_owned()).or_insert_with(|| Ring {
            events: VecDeque::new(),
            start: list_revision,
            marks: VecDeque::new(),
        });
        if ring.events.len() >= self.capacity
            && let Some(evicted) = ring.events.pop_front()
        {
            ring.start = evicted.revision();
        }
        ring.events.push_back(Arc::clone(&event));
        if self.freshness.max_age.is_some() {
            ring.mark(now, revision);
        }
        Some(event)
    }

    /// Drops the events older than the freshness window (keeping the newest `min_events` of
    /// each resource): a watch from before them then gets `Compacted` (410 Expired), as
    /// upstream's. Returns when the next event becomes old enough to drop (None: never).
    pub(super) fn trim(&mut self, now: Instant) -> Option<Instant> {
        let max_age = self.freshness.max_age?;
        let min_events = self.freshness.min_events;
        let mut next: Option<Instant> = None;
        for ring in self.rings.values_mut() {
            ring.trim(now, max_age, min_events);
            if ring.events.capacity() > 4 * ring.events.len().max(64) {
                // A burst's worth of slots would otherwise stay allocated.
                ring.events.shrink_to_fit();
            }
            if ring.events.len() <= min_events {
                // Nothing can go until more events come; their marks are not needed.
                ring.marks.clear();
            }
            if let Some(&(t, _)) = ring.marks.front() {
                let due = t + max_age + MARK_EVERY;
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        next
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
            .take_while(|item| item.0.key.starts_with(prefix))
            .map(|item| item.0.clone())
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
            .take_while(|item| item.0.key.starts_with(prefix));
        let take = if limit == 0 { usize::MAX } else { limit };
        let items: Vec<KeyValue> = matching
            .by_ref()
            .take(take)
            .map(|item| item.0.clone())
            .collect();
        (items, matching.count() as u64)
    }

    /// The latest value of one key.
    pub(super) fn get(&self, key: &str) -> Option<KeyValue> {
        self.items.get(key).map(|item| item.0.clone())
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

/// Makes `event` share the allocations of `live`, the value the cache held for its key until
/// now: the backend decodes an event's `prev` (and a delete's last value) afresh, so without
/// this every update in a ring would hold its key's value twice — once as the previous event's
/// value and once as its own `prev` — and a burst of writes (a rollout: create, binding, status
/// updates per pod) would cost two values per write for the ring's whole freshness window.
/// The bytes are equal whenever the revisions are (one key, one revision, one value); the
/// comparison keeps a backend that ever disagreed from being masked.
fn share_with_live(event: &mut Event, live: &KeyValue) {
    if event.kv.key == live.key {
        event.kv.key = Arc::clone(&live.key);
    }
    if let Some(prev) = event.prev.as_deref_mut()
        && prev.mod_revision == live.mod_revision
        && prev.value == live.value
    {
        prev.key = Arc::clone(&event.kv.key);
        prev.value = live.value.clone();
    }
    if event.kind == EventKind::Delete && event.kv.value == live.value {
        event.kv.value = live.value.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, rev: Revision) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: Arc::from(key),
                value: bytes::Bytes::from_static(b"v"),
                create_revision: rev,
                mod_revision: rev,
            },
            prev: None,
        }
    }

    fn state(max_age: Option<Duration>) -> CacheState {
        let freshness = Freshness {
            max_age,
            min_events: 3,
        };
        let mut s = CacheState::new("/registry/", 1000, freshness);
        s.replace(Vec::new(), 1);
        s
    }

    #[test]
    fn events_older_than_the_window_leave_the_ring_and_watches_from_before_them_expire() {
        let age = Duration::from_secs(75);
        let mut s = state(Some(age));
        let t0 = Instant::now();
        // 10 old events at t0, 2 at t0 + 60 s.
        for rev in 2..12 {
            s.apply(put(&format!("/registry/pods/ns/p{rev}"), rev), t0);
        }
        let t1 = t0 + Duration::from_secs(60);
        for rev in 12..14 {
            s.apply(put(&format!("/registry/pods/ns/p{rev}"), rev), t1);
        }
        let due = s.trim(t0 + Duration::from_secs(10));
        assert_eq!(
            due,
            Some(t0 + age + MARK_EVERY),
            "the first batch is due at 76 s"
        );
        assert_eq!(
            s.events_after("/registry/pods/", 1).map(|e| e.len()).ok(),
            Some(12)
        );

        // 77 s later: the first batch goes, the fresh two stay.
        let next = s.trim(t0 + Duration::from_secs(77));
        assert_eq!(
            s.events_after("/registry/pods/", 11).map(|e| e.len()).ok(),
            Some(2)
        );
        match s.events_after("/registry/pods/", 5) {
            Err(StorageError::Compacted { compacted, .. }) => assert_eq!(compacted, 10),
            other => panic!("watch from an aged-out revision: {other:?}"),
        }
        // The fresh ones are kept: with 3 events at least, the newest of the old batch too.
        assert_eq!(next, None, "at the minimum nothing more can go");
        assert_eq!(s.ring_stats().get("pods").map(|r| r.0), Some(3));
        // A resource with no events since is unaffected.
        assert!(s.events_after("/registry/configmaps/", 1).is_ok());
    }

    /// An update as the backend sends it: `prev` decoded afresh (its own allocation).
    fn update(key: &str, rev: Revision, prev_rev: Revision, value: &str, prev: &str) -> Event {
        let kv = |v: &str, r| KeyValue {
            key: Arc::from(key),
            value: bytes::Bytes::copy_from_slice(v.as_bytes()),
            create_revision: 2,
            mod_revision: r,
        };
        Event {
            kind: EventKind::Put,
            kv: kv(value, rev),
            prev: Some(Box::new(kv(prev, prev_rev))),
        }
    }

    #[test]
    fn ring_events_share_their_previous_value_with_the_event_before() {
        let mut s = state(None);
        let t0 = Instant::now();
        let key = "/registry/pods/ns/p";
        let first = s.apply(put(key, 2), t0).map(|e| e.kv.value.clone());
        let second = s.apply(update(key, 3, 2, "w", "v"), t0);
        let (Some(first), Some(second)) = (first, second) else {
            panic!("both events must be applied");
        };
        let prev = second.prev.as_deref().map(|p| p.value.clone());
        assert_eq!(prev.as_deref(), Some(&b"v"[..]), "prev keeps its bytes");
        assert_eq!(
            prev.map(|p| p.as_ptr()),
            Some(first.as_ptr()),
            "prev is the earlier event's value, not a second copy"
        );
        // A delete carries the last value: shared too.
        let mut del = update(key, 4, 3, "w", "w");
        del.kind = EventKind::Delete;
        let del = s.apply(del, t0);
        assert_eq!(
            del.map(|d| d.kv.value.as_ptr()),
            Some(second.kv.value.as_ptr())
        );
        // A prev that does not match the cached value (another revision) is left alone.
        let mut s = state(None);
        s.apply(put(key, 2), t0);
        let odd = s.apply(update(key, 3, 1, "w", "x"), t0);
        assert_eq!(
            odd.and_then(|e| e.prev.as_deref().map(|p| p.value.clone()))
                .as_deref(),
            Some(&b"x"[..])
        );
    }

    #[test]
    fn without_a_window_only_the_capacity_bounds_the_ring() {
        let mut s = state(None);
        let t0 = Instant::now();
        for rev in 2..12 {
            s.apply(put(&format!("/registry/pods/ns/p{rev}"), rev), t0);
        }
        assert_eq!(s.trim(t0 + Duration::from_secs(3600)), None);
        assert_eq!(
            s.events_after("/registry/pods/", 1).map(|e| e.len()).ok(),
            Some(10)
        );
    }
}

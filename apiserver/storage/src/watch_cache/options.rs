//! The watch cache's public option and metric types.

use std::collections::BTreeMap;
use std::time::Duration;

use super::CacheWatchStream;
use crate::{KeyValue, Revision};

/// Tuning of a [`WatchCache`].
#[derive(Clone, Debug)]
pub struct WatchCacheOptions {
    /// How many recent events the ring of each resource keeps (watch resumption window).
    pub ring_capacity: usize,
    /// Events older than this leave the rings (upstream's `eventFreshDuration`, 75 s); a watch
    /// from before them gets `Compacted` (410 Expired). None: only `ring_capacity` bounds them.
    pub event_fresh_duration: Option<Duration>,
    /// The newest events of each resource kept whatever their age (upstream's lower bound).
    pub min_ring_events: usize,
    /// How many events a watcher may have queued before it is terminated as too slow.
    pub watcher_buffer: usize,
    /// Page size of the backend list when (re)filling the cache.
    pub list_page_size: usize,
    /// How long `list`/`get`/`watch` wait for the cache to reach a revision (or to be ready).
    pub wait_timeout: Duration,
    /// First back-off after a backend failure; doubles per attempt up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// How long a read waits for the cache to reach a revision when the backend's revision
    /// may outrun the cache's watch for good ([`Storage::revision_may_outrun_watch`]): then
    /// consistent reads go to the backend and watches start from the cache's state.
    pub outrun_wait: Duration,
    /// Prefixes filled first, before [`WatchCache::start`] returns (what the server needs to
    /// serve its first requests); the rest of the cache fills in the background, its reads
    /// going to the backend meanwhile (see `watch_cache/fill.rs`).
    pub fill_first: Vec<String>,
    /// The background fill waits for [`WatchCache::release_fill`] (a server releases it once
    /// it is ready, so that the fill does not compete with its start for the CPU).
    pub hold_fill: bool,
    /// TEST ONLY: the background fill pauses this long before each page (tests of reads
    /// while the cache is not filled).
    pub fill_page_delay: Option<Duration>,
}

impl Default for WatchCacheOptions {
    fn default() -> Self {
        WatchCacheOptions {
            ring_capacity: 4096,
            event_fresh_duration: Some(Duration::from_secs(75)),
            min_ring_events: 100,
            watcher_buffer: 1024,
            list_page_size: 1000,
            wait_timeout: Duration::from_secs(3),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            outrun_wait: Duration::from_millis(50),
            fill_first: Vec::new(),
            hold_fill: false,
            fill_page_delay: None,
        }
    }
}

/// Options of one watch.
#[derive(Clone, Debug, Default)]
pub struct CacheWatchOptions {
    /// Emit [`CacheEvent::Progress`] when the watcher has been idle this long (None: never).
    /// Upstream sends bookmarks about once a minute.
    pub progress_interval: Option<Duration>,
}

/// A snapshot and a watch of everything after it (for `sendInitialEvents=true`).
#[derive(Debug)]
pub struct InitialWatch {
    /// The items under the prefix at `revision`, in key order.
    pub items: Vec<KeyValue>,
    /// The snapshot's revision; the stream yields exactly the events after it.
    pub revision: Revision,
    pub stream: CacheWatchStream,
}

/// Counters and gauges of a [`WatchCache`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchCacheMetrics {
    /// Registered watchers.
    pub watchers: usize,
    /// Events received from the backend and applied.
    pub events_received: u64,
    /// Event deliveries queued to watchers (one per event per interested watcher).
    pub events_dispatched: u64,
    /// Watchers terminated because they could not keep up.
    pub slow_watchers_terminated: u64,
    /// Times the cache (re)filled itself from a backend list.
    pub lists: u64,
    /// Per resource (key segment after the cache prefix): its ring of recent events.
    pub rings: BTreeMap<String, RingMetrics>,
    /// The capacity of each resource's ring.
    pub ring_capacity: usize,
    /// Keys in the cache.
    pub items: usize,
    /// The latest revision the cache has seen.
    pub revision: Revision,
    /// Whether the cache is following the backend.
    pub ready: bool,
    /// Whether the state holds every key (the fill after the last list has ended).
    pub filled: bool,
}

/// One resource's ring of recent events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingMetrics {
    /// Events held.
    pub len: usize,
    /// The ring holds every event of the resource after this revision (watches from older
    /// revisions get `Compacted`).
    pub start_revision: Revision,
}

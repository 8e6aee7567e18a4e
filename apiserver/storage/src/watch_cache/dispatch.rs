//! Fan-out: the index of watchers and the per-watcher stream.
//!
//! Every watcher has a bounded channel of `Arc<Event>`: an event is allocated once and shared
//! by every watcher (no per-watcher copy of the value). Watchers are indexed by the resource
//! segment of their prefix (`/registry/<resource>/...`), so an event is offered only to the
//! watchers of its resource plus the few "wide" watchers whose prefix spans resources.
//! Offering never blocks: a watcher whose channel is full is dropped from the index and its
//! stream ends after the buffered events (its client watches again from there).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::Shared;
use crate::{Event, Result, Revision};

/// One item of a [`CacheWatchStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheEvent {
    /// An event under the watched prefix (shared with every other watcher).
    Event(Arc<Event>),
    /// The watcher has been idle for the progress interval: every event under its prefix up
    /// to this revision has been delivered (a watch BOOKMARK carries it as resourceVersion).
    Progress(Revision),
}

/// The resource segment of `prefix` below the cache prefix, when every key under `prefix`
/// shares it (`/registry/pods/ns/` → `pods`); None for a prefix spanning resources.
pub(super) fn segment<'a>(cache_prefix: &str, prefix: &'a str) -> Option<&'a str> {
    prefix
        .strip_prefix(cache_prefix)
        .and_then(|rest| rest.split_once('/'))
        .map(|(segment, _)| segment)
}

/// What a watcher and its stream share.
#[derive(Debug, Default)]
pub(super) struct WatcherFlags {
    /// Set when the watcher was terminated because its buffer overflowed.
    overflowed: AtomicBool,
}

/// A registered watcher.
struct Entry {
    id: u64,
    prefix: String,
    tx: mpsc::Sender<Arc<Event>>,
    flags: Arc<WatcherFlags>,
}

/// The outcome of offering one event to the watchers.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct DispatchOutcome {
    /// Watchers the event was queued for.
    pub(super) delivered: u64,
    /// Watchers terminated because their buffer was full.
    pub(super) terminated: u64,
}

/// The watchers, indexed by resource segment.
#[derive(Default)]
pub(super) struct WatcherIndex {
    next_id: u64,
    by_segment: HashMap<String, Vec<Entry>>,
    wide: Vec<Entry>,
}

/// Offers `event` to the interested entries of one bucket, dropping full or closed ones.
fn offer(entries: &mut Vec<Entry>, event: &Arc<Event>, out: &mut DispatchOutcome) {
    entries.retain(|w| {
        if !event.kv.key.starts_with(&w.prefix) {
            return true;
        }
        match w.tx.try_send(Arc::clone(event)) {
            Ok(()) => {
                out.delivered += 1;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                w.flags.overflowed.store(true, Ordering::Release);
                out.terminated += 1;
                tracing::debug!(prefix = %w.prefix, "watch cache: terminating a slow watcher");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

impl WatcherIndex {
    /// Registers a watcher; returns its id and the receiving side.
    pub(super) fn register(
        &mut self,
        segment: Option<&str>,
        prefix: &str,
        buffer: usize,
    ) -> (u64, mpsc::Receiver<Arc<Event>>, Arc<WatcherFlags>) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let flags = Arc::new(WatcherFlags::default());
        self.next_id += 1;
        let entry = Entry {
            id: self.next_id,
            prefix: prefix.to_owned(),
            tx,
            flags: Arc::clone(&flags),
        };
        match segment {
            Some(s) => self.by_segment.entry(s.to_owned()).or_default().push(entry),
            None => self.wide.push(entry),
        }
        (self.next_id, rx, flags)
    }

    /// Removes a watcher (its stream was dropped).
    pub(super) fn unregister(&mut self, segment: Option<&str>, id: u64) {
        match segment {
            Some(s) => {
                if let Some(bucket) = self.by_segment.get_mut(s) {
                    bucket.retain(|w| w.id != id);
                    if bucket.is_empty() {
                        self.by_segment.remove(s);
                    }
                }
            }
            None => self.wide.retain(|w| w.id != id),
        }
    }

    /// Offers `event` (whose key has resource segment `event_segment`) to interested watchers.
    pub(super) fn dispatch(
        &mut self,
        event_segment: Option<&str>,
        event: &Arc<Event>,
    ) -> DispatchOutcome {
        let mut out = DispatchOutcome::default();
        if let Some(s) = event_segment
            && let Some(bucket) = self.by_segment.get_mut(s)
        {
            offer(bucket, event, &mut out);
        }
        offer(&mut self.wide, event, &mut out);
        out
    }

    /// Ends every watcher cleanly (their streams end after the buffered events).
    pub(super) fn clear(&mut self) {
        self.by_segment.clear();
        self.wide.clear();
    }

    /// The number of registered watchers.
    pub(super) fn len(&self) -> usize {
        self.wide.len() + self.by_segment.values().map(Vec::len).sum::<usize>()
    }
}

/// A watch served by the cache: first the replayed events from the ring, then live events,
/// with [`CacheEvent::Progress`] after each idle interval (when enabled). Ends without an
/// error when the watcher could not keep up or the cache re-lists or stops (the client then
/// re-watches from its last revision).
pub struct CacheWatchStream {
    replay: VecDeque<Arc<Event>>,
    rx: mpsc::Receiver<Arc<Event>>,
    flags: Arc<WatcherFlags>,
    shared: Arc<Shared>,
    id: u64,
    segment: Option<String>,
    progress: Option<(Duration, Pin<Box<Sleep>>)>,
    /// The revision of the last event yielded (or where the watch started).
    last: Revision,
    /// Events at or below this revision are not yielded: the watch started ahead of the
    /// cache (upstream's cacheWatcher skips what precedes its resourceVersion the same way).
    skip_through: Revision,
    done: bool,
}

impl std::fmt::Debug for CacheWatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWatchStream")
            .field("id", &self.id)
            .field("last", &self.last)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// The parts of a new stream, gathered under the cache's locks.
pub(super) struct StreamParts {
    pub(super) replay: VecDeque<Arc<Event>>,
    pub(super) rx: mpsc::Receiver<Arc<Event>>,
    pub(super) flags: Arc<WatcherFlags>,
    pub(super) id: u64,
    pub(super) segment: Option<String>,
    /// The watch yields the events after this revision.
    pub(super) start: Revision,
}

impl CacheWatchStream {
    pub(super) fn new(
        shared: Arc<Shared>,
        parts: StreamParts,
        progress_interval: Option<Duration>,
    ) -> CacheWatchStream {
        CacheWatchStream {
            replay: parts.replay,
            rx: parts.rx,
            flags: parts.flags,
            shared,
            id: parts.id,
            segment: parts.segment,
            progress: progress_interval
                .map(|d| (d, Box::pin(tokio::time::sleep_until(Instant::now() + d)))),
            last: parts.start,
            skip_through: parts.start,
            done: false,
        }
    }

    /// The revision of the last event yielded, or the revision the watch started from.
    pub fn last_revision(&self) -> Revision {
        self.last
    }

    fn delivered(&mut self, event: Arc<Event>) -> Poll<Option<Result<CacheEvent>>> {
        self.last = event.revision();
        if let Some((interval, sleep)) = &mut self.progress {
            sleep.as_mut().reset(Instant::now() + *interval);
        }
        Poll::Ready(Some(Ok(CacheEvent::Event(event))))
    }
}

impl Stream for CacheWatchStream {
    type Item = Result<CacheEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(event) = self.replay.pop_front() {
            return self.delivered(event);
        }
        // Read the published revision before looking at the channel: the cache publishes a
        // revision only after queueing its event for every watcher, so if the channel is empty
        // now, every event up to `published` has been yielded and a bookmark may carry it.
        let published = self.shared.published_revision();
        let received = loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(event)) if event.revision() <= self.skip_through => continue,
                other => break other,
            }
        };
        match received {
            Poll::Ready(Some(event)) => return self.delivered(event),
            Poll::Ready(None) => {
                // Ended by the cache (re-list, stop) or for falling behind: either way the
                // stream just ends, as upstream's cacheWatcher closes a slow watcher
                // ("Forcing watcher close due to unresponsiveness"): the client watches again
                // from its last revision, which the ring still holds unless it fell more than
                // the whole window behind (then that watch gets 410). An error here made every
                // slow informer re-list everything.
                self.done = true;
                if self.flags.overflowed.load(Ordering::Acquire) {
                    tracing::debug!(last = self.last, published, "slow watcher closed");
                }
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let last = self.last;
        if let Some((interval, sleep)) = &mut self.progress
            && sleep.as_mut().poll(cx).is_ready()
        {
            sleep.as_mut().reset(Instant::now() + *interval);
            // Register the timer's waker again for the next interval.
            let _ = sleep.as_mut().poll(cx);
            return Poll::Ready(Some(Ok(CacheEvent::Progress(published.max(last)))));
        }
        Poll::Pending
    }
}

impl Drop for CacheWatchStream {
    fn drop(&mut self) {
        self.shared.unregister(self.segment.as_deref(), self.id);
    }
}

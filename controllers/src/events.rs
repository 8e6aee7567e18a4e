//! Events for controllers' notable actions, written through `events.k8s.io/v1` (kube-runtime's
//! recorder, which also folds repeats into a series), with upstream's reasons and messages so
//! `kubectl describe` and `kubectl get events` show what they show upstream.
//!
//! As upstream's event broadcaster, recording never waits for the API server: events go to a
//! bounded queue (1,000; dropped when full) written by one task per recorder, and upstream's
//! spam filter (`EventSourceObjectSpamFilter`) bounds what one object can produce: a token
//! bucket per (object, type) of 25 events refilled at one per 5 minutes. A ReplicaSet creating
//! 1,000 pods records its first 25 `SuccessfulCreate`s instead of 1,000 writes, each of which
//! used to hold up the next batch of creates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Reporter};
use tokio::sync::mpsc;

/// upstream `defaultSpamBurst`.
const SPAM_BURST: f64 = 25.0;
/// upstream `defaultSpamQPS`: one event per 5 minutes once the burst is spent.
const SPAM_REFILL: Duration = Duration::from_secs(300);
/// upstream `maxLruCacheEntries`: objects whose buckets are remembered.
const SPAM_ENTRIES: usize = 4096;
/// upstream `maxQueuedEvents`.
const QUEUE: usize = 1000;

/// One token bucket per (object, event type).
#[derive(Default)]
struct SpamFilter {
    buckets: HashMap<String, (f64, Instant)>,
}

impl SpamFilter {
    /// Whether an event about `key` may be written now (takes a token).
    fn allow(&mut self, key: String, now: Instant) -> bool {
        if self.buckets.len() >= SPAM_ENTRIES && !self.buckets.contains_key(&key) {
            // Forget the least recently used half (upstream: an LRU of 4,096 entries).
            let mut ages: Vec<Instant> = self.buckets.values().map(|(_, t)| *t).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.buckets.retain(|_, (_, t)| *t > cut);
        }
        let (tokens, last) = self.buckets.entry(key).or_insert((SPAM_BURST, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        *tokens = (*tokens + refill).min(SPAM_BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn spam_key(type_: EventType, r: &ObjectReference) -> String {
    format!(
        "{}/{}/{}/{}/{}/{:?}",
        r.api_version.as_deref().unwrap_or_default(),
        r.kind.as_deref().unwrap_or_default(),
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default(),
        r.uid.as_deref().unwrap_or_default(),
        type_,
    )
}

/// An event recorder for one controller (`reportingController`).
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<kube::runtime::events::Recorder>,
    queue: Option<mpsc::Sender<(Event, ObjectReference)>>,
    spam: Arc<Mutex<SpamFilter>>,
}

impl Recorder {
    /// A recorder reporting as `controller` (e.g. `replicaset-controller`); its writer task
    /// runs in the current tokio runtime (without one, events are written inline).
    pub fn new(client: Client, controller: &str) -> Self {
        let reporter = Reporter {
            controller: controller.to_string(),
            instance: Some(format!("{controller}-{}", hostname())),
        };
        let inner = Arc::new(kube::runtime::events::Recorder::new(client, reporter));
        let queue = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
            let writer = inner.clone();
            rt.spawn(async move {
                while let Some((ev, regarding)) = rx.recv().await {
                    // An event that cannot be written must not fail anything (upstream drops
                    // it too).
                    if let Err(e) = writer.publish(&ev, &regarding).await {
                        tracing::debug!(error = %e, reason = %ev.reason, "event not recorded");
                    }
                }
            });
            tx
        });
        Self {
            inner,
            queue,
            spam: Arc::default(),
        }
    }

    async fn publish(
        &self,
        type_: EventType,
        regarding: &ObjectReference,
        reason: &str,
        note: String,
    ) {
        let key = spam_key(type_, regarding);
        let allowed = self
            .spam
            .lock()
            .map(|mut f| f.allow(key, Instant::now()))
            .unwrap_or(true);
        if !allowed {
            tracing::debug!(reason, "event dropped by the spam filter");
            return;
        }
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        match &self.queue {
            Some(q) => {
                if q.try_send((ev, regarding.clone())).is_err() {
                    tracing::debug!(reason, "event queue full: event dropped");
                }
            }
            None => {
                if let Err(e) = self.inner.publish(&ev, regarding).await {
                    tracing::debug!(error = %e, reason, "event not recorded");
                }
            }
        }
    }

    /// A `Normal` event.
    pub async fn normal(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(EventType::Normal, regarding, reason, note)
            .await;
    }

    /// A `Warning` event.
    pub async fn warning(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(EventType::Warning, regarding, reason, note)
            .await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spam_filter_allows_a_burst_of_25_then_one_per_five_minutes() {
        let mut f = SpamFilter::default();
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| f.allow("rs-a".into(), t0)).count();
        assert_eq!(allowed, 25);
        // Another object has its own bucket.
        assert!(f.allow("rs-b".into(), t0));
        assert!(!f.allow("rs-a".into(), t0 + Duration::from_secs(60)));
        assert!(f.allow("rs-a".into(), t0 + Duration::from_secs(301)));
        assert!(!f.allow("rs-a".into(), t0 + Duration::from_secs(302)));
    }

    #[test]
    fn spam_filter_remembers_a_bounded_number_of_objects() {
        let mut f = SpamFilter::default();
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            f.allow(format!("o{i}"), t0 + Duration::from_millis(i));
        }
        assert!(f.buckets.len() <= SPAM_ENTRIES);
    }
}

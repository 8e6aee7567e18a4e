//! Tests of the watch cache against the in-memory store.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::*;
use crate::memory::MemoryStore;
use crate::{EventKind, ListRequest};

pub(super) const PODS: &str = "/registry/pods/";

pub(super) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn opts() -> WatchCacheOptions {
    WatchCacheOptions {
        backoff_initial: Duration::from_millis(10),
        wait_timeout: Duration::from_secs(3),
        ..Default::default()
    }
}

pub(super) async fn must_start(
    store: &Arc<MemoryStore>,
    opts: WatchCacheOptions,
) -> Arc<WatchCache> {
    let dyn_store: Arc<dyn Storage> = store.clone();
    WatchCache::start(dyn_store, "/registry/", opts)
        .await
        .expect("watch cache starts")
}

async fn must_next(stream: &mut CacheWatchStream) -> Result<CacheEvent> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an item within 5s")
        .expect("the stream has not ended")
}

async fn must_event(stream: &mut CacheWatchStream) -> Arc<Event> {
    match must_next(stream).await {
        Ok(CacheEvent::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn start_lists_existing_items_and_follows_writes() {
    let store = MemoryStore::new();
    for i in 0..2500 {
        store
            .create(&format!("{PODS}ns/p{i:05}"), b("v"))
            .await
            .unwrap();
    }
    let cache = must_start(
        &store,
        WatchCacheOptions {
            list_page_size: 1000,
            ..opts()
        },
    )
    .await;
    let (items, rev) = cache.list(PODS, 0).await.unwrap();
    assert_eq!(items.len(), 2500);
    assert_eq!(rev, 2501);
    assert!(items.windows(2).all(|w| w[0].key < w[1].key), "key order");

    let kv = store
        .create("/registry/services/ns/s", b("svc"))
        .await
        .unwrap();
    let (got, rev) = cache
        .get("/registry/services/ns/s", kv.mod_revision)
        .await
        .unwrap();
    assert_eq!(got, Some(kv.clone()));
    assert_eq!(rev, kv.mod_revision);
    assert!(cache.wait_filled(Duration::from_secs(5)).await);
    let m = cache.metrics();
    assert_eq!(
        (m.items, m.revision, m.lists, m.ready, m.filled),
        (2501, 2502, 1, true, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_watchers_each_see_every_event_in_order_sharing_one_allocation() {
    let store = MemoryStore::new();
    let cache = must_start(&store, opts()).await;
    let mut watchers = Vec::new();
    for _ in 0..100 {
        watchers.push(
            cache
                .watch(PODS, 0, CacheWatchOptions::default())
                .await
                .unwrap(),
        );
    }
    assert_eq!(cache.metrics().watchers, 100);
    let mut revs = Vec::new();
    for i in 0..50 {
        let kv = store
            .create(&format!("{PODS}ns/p{i}"), b("v"))
            .await
            .unwrap();
        revs.push(kv.mod_revision);
        // An event outside the watched prefix is not delivered.
        store
            .create(&format!("/registry/configmaps/ns/c{i}"), b("v"))
            .await
            .unwrap();
    }
    let mut firsts: Vec<Arc<Event>> = Vec::new();
    for (n, w) in watchers.iter_mut().enumerate() {
        for (i, rev) in revs.iter().enumerate() {
            let e = must_event(w).await;
            assert_eq!(e.revision(), *rev, "watcher {n} event {i}");
            if n == 0 {
                firsts.push(e);
            } else {
                assert!(Arc::ptr_eq(&e, &firsts[i]), "events are shared, not copied");
            }
        }
    }
    let m = cache.metrics();
    assert_eq!(m.events_received, 100);
    assert_eq!(m.events_dispatched, 100 * 50);
}

#[tokio::test]
async fn watchers_are_filtered_by_narrow_and_wide_prefixes() {
    let store = MemoryStore::new();
    let cache = must_start(&store, opts()).await;
    let mut ns1 = cache
        .watch("/registry/pods/ns1/", 0, Default::default())
        .await
        .unwrap();
    let mut all = cache
        .watch("/registry/", 0, Default::default())
        .await
        .unwrap();
    let mut podsish = cache
        .watch("/registry/pods", 0, Default::default())
        .await
        .unwrap();
    store.create("/registry/pods/ns2/a", b("1")).await.unwrap(); // 2
    store
        .create("/registry/podsecurity/x", b("1"))
        .await
        .unwrap(); // 3
    store.create("/registry/pods/ns1/a", b("1")).await.unwrap(); // 4
    store.delete("/registry/pods/ns1/a", None).await.unwrap(); // 5
    assert_eq!(must_event(&mut ns1).await.revision(), 4);
    let deleted = must_event(&mut ns1).await;
    assert_eq!(
        (deleted.revision(), deleted.kind.clone()),
        (5, EventKind::Delete)
    );
    for rev in 2..=5 {
        assert_eq!(must_event(&mut all).await.revision(), rev);
        assert_eq!(must_event(&mut podsish).await.revision(), rev);
    }
}

#[tokio::test]
async fn watch_replays_the_ring_and_fails_with_compacted_outside_it() {
    let store = MemoryStore::new();
    let cache = must_start(
        &store,
        WatchCacheOptions {
            ring_capacity: 5,
            ..opts()
        },
    )
    .await;
    for i in 0..10 {
        store
            .create(&format!("{PODS}ns/p{i}"), b("v"))
            .await
            .unwrap(); // revs 2..=11
    }
    cache
        .wait_for_revision(11, Duration::from_secs(3))
        .await
        .unwrap();
    let pods_ring = cache.metrics().rings["pods"];
    assert_eq!((pods_ring.len, pods_ring.start_revision), (5, 6));

    let mut w = cache.watch(PODS, 6, Default::default()).await.unwrap();
    for rev in 7..=11 {
        assert_eq!(must_event(&mut w).await.revision(), rev);
    }
    let kv = store
        .create(&format!("{PODS}ns/live"), b("v"))
        .await
        .unwrap();
    assert_eq!(must_event(&mut w).await.revision(), kv.mod_revision);

    let err = cache.watch(PODS, 5, Default::default()).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Compacted { requested: 5, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_busy_resource_does_not_evict_the_history_of_others() {
    let store = MemoryStore::new();
    let cache = must_start(
        &store,
        WatchCacheOptions {
            ring_capacity: 5,
            ..opts()
        },
    )
    .await;
    store.create("/registry/pods/ns/a", b("1")).await.unwrap(); // 2
    for i in 0..20 {
        store
            .create(&format!("/registry/leases/ns/l{i}"), b("1"))
            .await
            .unwrap(); // 3..=22
    }
    store.create("/registry/pods/ns/b", b("1")).await.unwrap(); // 23
    cache
        .wait_for_revision(23, Duration::from_secs(3))
        .await
        .unwrap();

    let mut pods = cache
        .watch("/registry/pods/ns/", 1, Default::default())
        .await
        .unwrap();
    assert_eq!(must_event(&mut pods).await.revision(), 2);
    assert_eq!(must_event(&mut pods).await.revision(), 23);
    let err = cache
        .watch("/registry/leases/", 1, Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Compacted { compacted: 17, .. }),
        "{err}"
    );
    // A watch spanning resources needs every ring to cover it, and merges them in order.
    let err = cache
        .watch("/registry/", 16, Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Compacted { compacted: 17, .. }),
        "{err}"
    );
    let mut all = cache
        .watch("/registry/", 17, Default::default())
        .await
        .unwrap();
    for rev in 18..=23 {
        assert_eq!(must_event(&mut all).await.revision(), rev);
    }
}

#[tokio::test]
async fn watch_from_a_future_revision_waits_then_times_out() {
    let store = MemoryStore::new();
    let cache = must_start(
        &store,
        WatchCacheOptions {
            wait_timeout: Duration::from_millis(200),
            ..opts()
        },
    )
    .await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            store.create("/registry/pods/ns/a", b("1")).await.unwrap(); // 2
            store.create("/registry/pods/ns/b", b("1")).await.unwrap(); // 3
        })
    };
    let mut w = cache.watch(PODS, 2, Default::default()).await.unwrap();
    assert_eq!(must_event(&mut w).await.revision(), 3);
    writer.await.unwrap();
    let err = cache.watch(PODS, 10, Default::default()).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::FutureRevision {
                requested: 10,
                current: 3
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_list_waits_for_the_current_revision() {
    let store = MemoryStore::new();
    let cache = must_start(&store, opts()).await;
    for i in 0..200 {
        let key = format!("{PODS}ns/p{i}");
        store.create(&key, b("v")).await.unwrap();
        let current = store.current_revision().await.unwrap();
        let (items, rev) = cache.list(PODS, current).await.unwrap();
        assert!(rev >= current);
        assert_eq!(items.len(), i + 1, "the list sees the write just made");
    }
    let short = WatchCacheOptions {
        wait_timeout: Duration::from_millis(100),
        ..opts()
    };
    let cache2 = must_start(&store, short).await;
    let err = cache2.list(PODS, 1_000).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::FutureRevision {
                requested: 1_000,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_stalled_watcher_is_terminated_without_blocking_others() {
    let store = MemoryStore::new();
    let cache = must_start(
        &store,
        WatchCacheOptions {
            watcher_buffer: 8,
            ..opts()
        },
    )
    .await;
    let mut stalled = cache.watch(PODS, 0, Default::default()).await.unwrap();
    let mut live = cache.watch(PODS, 0, Default::default()).await.unwrap();
    let mut last = 0;
    for i in 0..50 {
        last = store
            .create(&format!("{PODS}ns/p{i}"), b("v"))
            .await
            .unwrap()
            .mod_revision;
        // The live watcher keeps up.
        assert_eq!(must_event(&mut live).await.revision(), last);
    }
    assert_eq!(cache.current_revision(), last);
    let mut buffered = Vec::new();
    while let Some(item) = stalled.next().await {
        match item {
            Ok(CacheEvent::Event(e)) => buffered.push(e.revision()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        buffered.len(),
        8,
        "what was buffered is delivered, then the stream ends without an error"
    );
    let m = cache.metrics();
    assert_eq!((m.slow_watchers_terminated, m.watchers), (1, 1));
    // As a client does: watch again from the last revision received; the ring has the rest.
    let resume = buffered.last().copied().unwrap_or(0);
    let mut again = cache.watch(PODS, resume, Default::default()).await.unwrap();
    let mut rest = Vec::new();
    while rest.last() != Some(&last) {
        rest.push(must_event(&mut again).await.revision());
    }
    assert_eq!(rest.len(), 50 - 8, "nothing lost: {rest:?}");
}

#[tokio::test]
async fn progress_is_emitted_when_idle_and_carries_the_current_revision() {
    let store = MemoryStore::new();
    let cache = must_start(&store, opts()).await;
    let progress = CacheWatchOptions {
        progress_interval: Some(Duration::from_millis(50)),
    };
    let mut w = cache
        .watch("/registry/pods/ns1/", 0, progress)
        .await
        .unwrap();
    assert!(matches!(
        must_next(&mut w).await,
        Ok(CacheEvent::Progress(1))
    ));
    store.create("/registry/pods/ns1/a", b("1")).await.unwrap(); // 2
    store.create("/registry/pods/ns2/a", b("1")).await.unwrap(); // 3, not for this watcher
    assert_eq!(must_event(&mut w).await.revision(), 2);
    cache
        .wait_for_revision(3, Duration::from_secs(3))
        .await
        .unwrap();
    // The bookmark carries the cache revision, beyond this watcher's last event.
    assert!(matches!(
        must_next(&mut w).await,
        Ok(CacheEvent::Progress(3))
    ));
    let quiet = cache.watch(PODS, 0, Default::default()).await.unwrap();
    let mut quiet = std::pin::pin!(quiet);
    let none = tokio::time::timeout(Duration::from_millis(150), quiet.next()).await;
    assert!(none.is_err(), "no progress without an interval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_backend_watch_makes_the_cache_relist_and_continue() {
    let store = MemoryStore::new();
    store
        .create("/registry/pods/ns/gone", b("1"))
        .await
        .unwrap(); // 2
    let cache = must_start(&store, opts()).await;
    let mut old_watch = cache.watch(PODS, 0, Default::default()).await.unwrap();
    // Break the cache's backend watch while the store changes and compacts underneath.
    store.break_watches();
    store.delete("/registry/pods/ns/gone", None).await.unwrap(); // 3
    store.create("/registry/pods/ns/new", b("1")).await.unwrap(); // 4
    store.compact(4).await.unwrap();
    // The cache's own watcher of the old incarnation ends cleanly (after any delivered events).
    loop {
        match tokio::time::timeout(Duration::from_secs(5), old_watch.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(_))) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    let (items, rev) = cache.list(PODS, 4).await.unwrap();
    let keys: Vec<_> = items.iter().map(|kv| &*kv.key).collect();
    assert_eq!(keys, vec!["/registry/pods/ns/new"]);
    assert!(rev >= 4);
    assert!(cache.metrics().lists >= 2);
    // And it follows the backend again.
    let mut w = cache.watch(PODS, 0, Default::default()).await.unwrap();
    let kv = store
        .create("/registry/pods/ns/after", b("1"))
        .await
        .unwrap();
    assert_eq!(must_event(&mut w).await.kv, kv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_initial_has_no_gap_or_duplicate_under_concurrent_writes() {
    let store = MemoryStore::new();
    let cache = must_start(&store, opts()).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..600u32 {
                let key = format!("{PODS}ns/p{}", i % 37);
                let current = store.get(&key).await.unwrap();
                match (i % 5, current) {
                    (4, Some(kv)) => drop(store.delete(&key, Some(kv.mod_revision)).await.unwrap()),
                    (_, Some(kv)) => {
                        let v = Bytes::from(i.to_string());
                        drop(store.update(&key, v, kv.mod_revision).await.unwrap());
                    }
                    (_, None) => drop(
                        store
                            .create(&key, Bytes::from(i.to_string()))
                            .await
                            .unwrap(),
                    ),
                }
                if i % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    cache
        .wait_for_revision(200, Duration::from_secs(5))
        .await
        .unwrap();
    let initial = cache
        .watch_with_initial(PODS, 0, Default::default())
        .await
        .unwrap();
    writer.await.unwrap();
    let final_rev = store.current_revision().await.unwrap();
    assert!(
        initial.revision >= 200 && initial.revision < final_rev,
        "the snapshot ({}) is taken while writes go on (until {final_rev})",
        initial.revision
    );
    let mut state: BTreeMap<String, KeyValue> = initial
        .items
        .into_iter()
        .map(|kv| (kv.key.to_string(), kv))
        .collect();
    let mut stream = initial.stream;
    let mut expected = initial.revision + 1;
    while expected <= final_rev {
        let e = must_event(&mut stream).await;
        assert_eq!(
            e.revision(),
            expected,
            "contiguous revisions: no gap, no duplicate"
        );
        expected += 1;
        match e.kind {
            EventKind::Put => state.insert(e.kv.key.to_string(), e.kv.clone()),
            EventKind::Delete => state.remove(&*e.kv.key),
            EventKind::Progress => panic!("the cache passed a backend progress event on"),
        };
    }
    let truth = store
        .list(ListRequest {
            prefix: PODS.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(state.into_values().collect::<Vec<_>>(), truth.items);
}

#[tokio::test]
async fn shutdown_and_drop_end_watch_streams_and_the_backend_watch() {
    let store = MemoryStore::new();
    let cache = must_start(&store, opts()).await;
    assert_eq!(store.watcher_count(), 1);
    let mut w = cache.watch(PODS, 0, Default::default()).await.unwrap();
    cache.shutdown();
    let end = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap();
    assert!(end.is_none());
    assert!(cache.watch(PODS, 0, Default::default()).await.is_err());

    let cache2 = must_start(&store, opts()).await;
    drop(cache2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.watcher_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backend watches still open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A store whose first `broken` watches fail with a backend error after `after_events` events.
struct FlakyWatchStore {
    inner: Arc<MemoryStore>,
    broken: std::sync::atomic::AtomicU32,
    after_events: usize,
}

#[async_trait::async_trait]
impl Storage for FlakyWatchStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, req: ListRequest) -> Result<crate::ListResponse> {
        self.inner.list(req).await
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<crate::WatchStream> {
        let stream = self.inner.watch(prefix, after).await?;
        let left = self.broken.load(Ordering::SeqCst);
        if left == 0 {
            return Ok(stream);
        }
        self.broken.store(left - 1, Ordering::SeqCst);
        let failure =
            futures::stream::iter([Err(StorageError::Backend("connection reset".into()))]);
        // Odd attempts fail with an error, even ones just end.
        if left % 2 == 1 {
            Ok(Box::pin(stream.take(self.after_events).chain(failure)))
        } else {
            Ok(Box::pin(stream.take(self.after_events)))
        }
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_backend_watch_is_resumed_without_relist_or_gap() {
    let memory = MemoryStore::new();
    let flaky = Arc::new(FlakyWatchStore {
        inner: memory.clone(),
        broken: std::sync::atomic::AtomicU32::new(4),
        after_events: 3,
    });
    let cache = WatchCache::start(flaky, "/registry/", opts())
        .await
        .unwrap();
    let mut w = cache.watch(PODS, 0, Default::default()).await.unwrap();
    let mut last = 0;
    for i in 0..20 {
        last = memory
            .create(&format!("{PODS}ns/p{i}"), b("v"))
            .await
            .unwrap()
            .mod_revision;
    }
    for rev in 2..=last {
        assert_eq!(
            must_event(&mut w).await.revision(),
            rev,
            "no gap across resumes"
        );
    }
    let m = cache.metrics();
    assert_eq!(m.lists, 1, "resumed from the cache revision, not re-listed");
    assert_eq!((m.events_received, m.revision), (20, last));
}

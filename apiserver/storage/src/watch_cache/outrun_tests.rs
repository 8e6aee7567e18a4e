//! The watch cache over a backend whose revision may outrun the cache's watch for good
//! (other tenants of one etcd that sends no progress notifications).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use super::*;
use crate::ListRequest;
use crate::memory::MemoryStore;

const PODS: &str = "/registry/pods/";
/// Another tenant's keys: they move the revision but the cache (on `/registry/`) never sees them.
const OTHER: &str = "/tenant-b/configmaps/";

/// The in-memory store, saying (or not) that its revision may outrun a prefix's watch.
struct SharedRevision {
    inner: Arc<MemoryStore>,
    outruns: bool,
}

#[async_trait::async_trait]
impl Storage for SharedRevision {
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
        self.inner.watch(prefix, after).await
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }
    fn revision_may_outrun_watch(&self) -> bool {
        self.outruns
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn opts() -> WatchCacheOptions {
    WatchCacheOptions {
        backoff_initial: Duration::from_millis(10),
        wait_timeout: Duration::from_secs(2),
        outrun_wait: Duration::from_millis(50),
        ..Default::default()
    }
}

async fn must_start(outruns: bool) -> (Arc<MemoryStore>, Arc<WatchCache>) {
    let memory = MemoryStore::new();
    memory.create(&format!("{PODS}ns/a"), b("a")).await.unwrap();
    let store = Arc::new(SharedRevision {
        inner: memory.clone(),
        outruns,
    });
    let cache = WatchCache::start(store, "/registry/", opts())
        .await
        .expect("watch cache starts");
    (memory, cache)
}

/// A write of the other tenant: the revision moves, the cache sees nothing.
async fn other_tenant_writes(memory: &MemoryStore, name: &str) -> Revision {
    memory
        .create(&format!("{OTHER}{name}"), b("b"))
        .await
        .unwrap()
        .mod_revision
}

async fn must_event(stream: &mut CacheWatchStream) -> Arc<Event> {
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(CacheEvent::Event(e)))) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn reads_give_up_on_another_tenants_revision_within_the_outrun_wait() {
    let (memory, cache) = must_start(true).await;
    let foreign = other_tenant_writes(&memory, "x").await;
    let started = Instant::now();
    assert!(cache.list_fresh(PODS, foreign).await.is_none());
    assert!(
        cache
            .get_fresh(&format!("{PODS}ns/a"), foreign)
            .await
            .is_none()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(1000),
        "two reads waited {waited:?} (50 ms each expected)"
    );
    // A revision the cache has seen is served from memory at once.
    let seen = cache.current_revision();
    assert!(seen < foreign);
    let (items, rev) = cache.list_fresh(PODS, seen).await.expect("cache answers");
    assert_eq!((items.len(), rev), (1, seen));
}

#[tokio::test]
async fn reads_wait_the_full_timeout_when_the_backend_revision_cannot_outrun_the_cache() {
    let (memory, cache) = must_start(false).await;
    let foreign = other_tenant_writes(&memory, "x").await;
    let started = Instant::now();
    assert!(cache.list_fresh(PODS, foreign).await.is_none());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited the wait_timeout"
    );
}

#[tokio::test]
async fn a_watch_from_another_tenants_revision_starts_at_once_and_yields_what_follows() {
    let (memory, cache) = must_start(true).await;
    let foreign = other_tenant_writes(&memory, "x").await;
    let started = Instant::now();
    let mut w = cache
        .watch(PODS, foreign, Default::default())
        .await
        .expect("watch from another tenant's revision");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(w.last_revision(), foreign);
    let next = memory.create(&format!("{PODS}ns/b"), b("b")).await.unwrap();
    let e = must_event(&mut w).await;
    assert_eq!(
        (e.revision(), &*e.kv.key),
        (next.mod_revision, "/registry/pods/ns/b")
    );
    // A revision no one has written yet is refused, as without the fallback.
    let future = memory.current_revision().await.unwrap() + 10;
    match cache.watch(PODS, future, Default::default()).await {
        Err(StorageError::FutureRevision { requested, .. }) => assert_eq!(requested, future),
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

#[tokio::test]
async fn a_watch_started_ahead_of_the_cache_skips_the_events_it_starts_after() {
    let (memory, cache) = must_start(true).await;
    // A watcher registered ahead of the cache, at the revision two writes from now, gets
    // only what follows, although the cache delivers those two writes to it too.
    let shared = &cache.shared;
    let ahead = cache.current_revision() + 2;
    let parts = {
        let state = shared.read_state();
        let mut parts = shared.register(&state, PODS, 0).unwrap();
        parts.start = ahead;
        parts
    };
    let mut w = CacheWatchStream::new(Arc::clone(shared), parts, None);
    for name in ["b", "c", "d"] {
        memory
            .create(&format!("{PODS}ns/{name}"), b(name))
            .await
            .unwrap();
    }
    let e = must_event(&mut w).await;
    assert_eq!(
        (e.revision(), &*e.kv.key),
        (ahead + 1, "/registry/pods/ns/d")
    );
}

#[tokio::test]
async fn an_initial_watch_at_another_tenants_revision_lists_the_backend() {
    let (memory, cache) = must_start(true).await;
    let foreign = other_tenant_writes(&memory, "x").await;
    let started = Instant::now();
    let mut w = cache
        .watch_with_initial(PODS, foreign, Default::default())
        .await
        .expect("initial watch");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(w.revision, foreign);
    let keys: Vec<&str> = w.items.iter().map(|kv| &*kv.key).collect();
    assert_eq!(keys, ["/registry/pods/ns/a"]);
    let next = memory.create(&format!("{PODS}ns/b"), b("b")).await.unwrap();
    let e = must_event(&mut w.stream).await;
    assert_eq!(e.revision(), next.mod_revision);
}

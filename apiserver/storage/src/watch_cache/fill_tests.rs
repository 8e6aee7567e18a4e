//! The cache while it fills (`fill.rs`): reads of what is not filled yet go to the backend
//! (complete, never from a partial state), the prefixes to fill first are filled before
//! `start` returns, watches need no fill, and writes during the fill (updates, deletes,
//! re-creates) leave the filled cache equal to the backend.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::*;
use crate::memory::MemoryStore;
use crate::{EventKind, ListRequest};

use super::tests::{PODS, b, must_start};

const SERVICES: &str = "/registry/services/";

/// A cache whose background fill takes about `pages × delay`.
fn slow_fill(delay_ms: u64) -> WatchCacheOptions {
    WatchCacheOptions {
        list_page_size: 100,
        fill_first: vec![SERVICES.into()],
        fill_page_delay: Some(Duration::from_millis(delay_ms)),
        backoff_initial: Duration::from_millis(10),
        ..Default::default()
    }
}

async fn backend_list(store: &MemoryStore, prefix: &str) -> Vec<KeyValue> {
    store
        .list(ListRequest {
            prefix: prefix.into(),
            ..Default::default()
        })
        .await
        .expect("backend list")
        .items
}

async fn fill_store(store: &MemoryStore, pods: usize) {
    for i in 0..pods {
        store
            .create(&format!("{PODS}ns/p{i:05}"), b("v0"))
            .await
            .expect("create pod");
    }
    for i in 0..3 {
        store
            .create(&format!("{SERVICES}ns/s{i}"), b("svc"))
            .await
            .expect("create service");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_before_the_fill_ends_are_complete_and_come_from_the_backend() {
    let store = MemoryStore::new();
    fill_store(&store, 1500).await;
    // 15+ pages at 200 ms: the fill takes 3 s at least.
    let cache = must_start(&store, slow_fill(200)).await;
    let current = store.current_revision().await.expect("revision");
    assert!(!cache.is_filled(), "the fill is still running");
    assert!(cache.is_ready(), "the cache follows the backend at once");

    // What was filled first is served from the cache.
    let svc = format!("{SERVICES}ns/s1");
    assert!(cache.list_fresh(SERVICES, current).await.is_some());
    assert_eq!(
        cache
            .get_fresh(&svc, current)
            .await
            .flatten()
            .map(|kv| kv.value),
        Some(b("svc"))
    );
    assert!(matches!(cache.get_if_filled(&svc), Some(Some(_))));
    // The rest is not answered from the cache (the caller reads the backend)...
    let pod = format!("{PODS}ns/p01499");
    assert!(cache.list_fresh(PODS, current).await.is_none());
    assert!(cache.list_fresh("/registry/pods/ns/", 0).await.is_none());
    assert!(cache.get_fresh(&pod, current).await.is_none());
    assert!(
        cache.get_if_filled(&pod).is_none(),
        "a lister miss is not 'not found'"
    );
    assert!(cache.get_if_filled(&format!("{PODS}ns/absent")).is_none());
    // ... and the cache's own reads go to the backend: complete, never a partial state.
    let (items, rev) = cache.list(PODS, 0).await.expect("list");
    assert_eq!(items.len(), 1500);
    assert!(rev >= current);
    assert_eq!(items, backend_list(&store, PODS).await);
    let (got, _) = cache.get(&pod, 0).await.expect("get");
    assert_eq!(got.map(|kv| kv.value), Some(b("v0")));
    let (none, _) = cache.get(&format!("{PODS}ns/p0149"), 0).await.expect("get");
    assert_eq!(
        none, None,
        "a key that is only a prefix of others is absent"
    );
    let page = cache
        .list_page(PODS, Some("/registry/pods/ns/p01000"), 10, 0)
        .await
        .expect("page");
    assert_eq!(page.items.len(), 10);
    assert_eq!(&*page.items[0].key, "/registry/pods/ns/p01001");
    assert_eq!(page.remaining, 489);
    assert!(
        !cache.is_filled(),
        "all of the above ran before the fill ended"
    );
    cache.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_the_fill_leave_the_filled_cache_equal_to_the_backend() {
    let store = MemoryStore::new();
    fill_store(&store, 1000).await;
    let cache = must_start(&store, slow_fill(20)).await;
    let mut watch = cache
        .watch(PODS, 0, Default::default())
        .await
        .expect("watch");
    let start = cache.current_revision();
    // Updates, deletes and re-creates all over the key range while pages are read.
    let mut writes = 0;
    for round in 0..4 {
        for i in (round..1000).step_by(7) {
            let key = format!("{PODS}ns/p{i:05}");
            match (i + round) % 3 {
                0 => match store.get(&key).await.expect("get") {
                    Some(kv) => {
                        store
                            .delete(&key, Some(kv.mod_revision))
                            .await
                            .expect("delete");
                    }
                    None => {
                        store.create(&key, b("again")).await.expect("re-create");
                    }
                },
                _ => match store.get(&key).await.expect("get") {
                    Some(kv) => {
                        let v = Bytes::from(format!("r{round}"));
                        store
                            .update(&key, v, kv.mod_revision)
                            .await
                            .expect("update");
                    }
                    None => {
                        store.create(&key, b("new")).await.expect("create");
                    }
                },
            }
            writes += 1;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(!cache.is_filled(), "the writes ran during the fill");
    assert!(
        cache.wait_filled(Duration::from_secs(20)).await,
        "the fill ends"
    );
    let current = store.current_revision().await.expect("revision");
    let (items, rev) = cache.list(PODS, current).await.expect("list");
    assert_eq!(rev, current);
    assert_eq!(
        items,
        backend_list(&store, PODS).await,
        "no lost or resurrected key"
    );
    assert_eq!(
        cache.list(SERVICES, current).await.expect("list").0,
        backend_list(&store, SERVICES).await
    );
    // The watch started before the fill saw every write, in order.
    for rev in start + 1..=start + writes {
        let next = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
        match next {
            Ok(Some(Ok(CacheEvent::Event(e)))) => assert_eq!(e.revision(), rev),
            other => panic!("event {rev}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_watch_before_the_fill_ends_lists_the_backend_without_gap_or_duplicate() {
    let store = MemoryStore::new();
    fill_store(&store, 500).await;
    let cache = must_start(&store, slow_fill(100)).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..300u32 {
                let key = format!("{PODS}ns/p{:05}", i % 41);
                match store.get(&key).await.expect("get") {
                    Some(kv) if i % 4 == 3 => {
                        store
                            .delete(&key, Some(kv.mod_revision))
                            .await
                            .expect("delete");
                    }
                    Some(kv) => {
                        let v = Bytes::from(i.to_string());
                        store
                            .update(&key, v, kv.mod_revision)
                            .await
                            .expect("update");
                    }
                    None => {
                        store.create(&key, b("c")).await.expect("create");
                    }
                }
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let initial = cache
        .watch_with_initial(PODS, 0, Default::default())
        .await
        .expect("initial watch");
    assert!(!cache.is_filled(), "the initial list came from the backend");
    writer.await.expect("writer");
    let final_rev = store.current_revision().await.expect("revision");
    let mut state: std::collections::BTreeMap<String, KeyValue> = initial
        .items
        .into_iter()
        .map(|kv| (kv.key.to_string(), kv))
        .collect();
    let mut stream = initial.stream;
    let mut expected = initial.revision + 1;
    while expected <= final_rev {
        let e = match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(Ok(CacheEvent::Event(e)))) => e,
            other => panic!("event {expected}: {other:?}"),
        };
        assert_eq!(e.revision(), expected, "no gap, no duplicate");
        expected += 1;
        match e.kind {
            EventKind::Put => state.insert(e.kv.key.to_string(), e.kv.clone()),
            EventKind::Delete => state.remove(&*e.kv.key),
            EventKind::Progress => panic!("a progress event"),
        };
    }
    let truth = backend_list(&store, PODS).await;
    assert_eq!(state.into_values().collect::<Vec<_>>(), truth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_during_the_fill_starts_a_new_fill_that_ends_consistent() {
    let store = MemoryStore::new();
    fill_store(&store, 600).await;
    let cache = must_start(&store, slow_fill(30)).await;
    // Break the backend watch while the store changes and compacts: the cache re-lists (a
    // new fill generation) while the first fill is still running.
    store.break_watches();
    store
        .delete("/registry/pods/ns/p00001", None)
        .await
        .expect("delete");
    store
        .create("/registry/pods/ns/q", b("q"))
        .await
        .expect("create");
    let current = store.current_revision().await.expect("revision");
    store.compact(current).await.expect("compact");
    assert!(
        cache.wait_filled(Duration::from_secs(20)).await,
        "the new fill ends"
    );
    assert!(cache.metrics().lists >= 2, "re-listed");
    let (items, _) = cache.list(PODS, current).await.expect("list");
    assert_eq!(items, backend_list(&store, PODS).await);
    assert!(cache.metrics().filled);
}

#[tokio::test]
async fn a_prefix_to_fill_first_without_keys_is_filled_empty() {
    let store = MemoryStore::new();
    let opts = WatchCacheOptions {
        fill_first: vec!["/registry/nothing/".into()],
        ..Default::default()
    };
    let cache = must_start(&store, opts).await;
    assert_eq!(cache.get_if_filled("/registry/nothing/x"), Some(None));
    assert!(cache.wait_filled(Duration::from_secs(5)).await);
    assert_eq!(
        cache.list("/registry/nothing/", 0).await.expect("list").0,
        vec![]
    );
}

#[test]
fn coverage_of_keys_and_prefixes_follows_the_fill() {
    use super::fill::{Coverage, Progress};
    let mut c = Coverage::pending(1);
    assert!(!c.covers_key("/registry/a/x") && !c.covers_prefix("/registry/"));
    c.advance(Progress::Prefix("/registry/services/specs/".into()));
    assert!(c.covers_key("/registry/services/specs/ns/a"));
    assert!(c.covers_prefix("/registry/services/specs/ns/"));
    assert!(
        !c.covers_prefix("/registry/services/"),
        "wider than what is filled"
    );
    assert!(!c.covers_key("/registry/services/endpoints/ns/a"));
    c.advance(Progress::Cursor(Arc::from("/registry/configmaps/ns2/b")));
    assert!(c.covers_key("/registry/configmaps/ns2/b"));
    assert!(c.covers_key("/registry/configmaps/ns1/zzz"));
    assert!(!c.covers_key("/registry/configmaps/ns2/c"));
    assert!(c.covers_prefix("/registry/configmaps/ns1/"));
    assert!(
        !c.covers_prefix("/registry/configmaps/ns2/"),
        "the cursor is inside it"
    );
    assert!(!c.covers_prefix("/registry/configmaps/"));
    assert!(
        c.covers_prefix("/registry/apps/"),
        "entirely before the cursor"
    );
    assert!(!c.covers_prefix("/registry/configmaps0/"));
    // Tombstones keep a page read before a delete from bringing the key back.
    c.deleted(&Arc::from("/registry/pods/ns/gone"));
    assert!(!c.may_merge("/registry/pods/ns/gone", false));
    assert!(
        !c.may_merge("/registry/pods/ns/touched", true),
        "an event's value is newer"
    );
    assert!(c.may_merge("/registry/pods/ns/other", false));
    assert!(
        !c.may_merge("/registry/configmaps/ns1/a", false),
        "already filled"
    );
    c.advance(Progress::Done);
    assert!(c.covers_prefix("/registry/") && c.is_done());
}

#[test]
fn a_page_read_before_an_event_does_not_undo_it() {
    use super::fill::Progress;
    use super::state::{CacheState, Freshness};
    let kv = |key: &str, rev: Revision, v: &str| KeyValue {
        key: Arc::from(key),
        value: b(v),
        create_revision: 2,
        mod_revision: rev,
    };
    let mut s = CacheState::new(
        "/registry/",
        100,
        Freshness {
            max_age: None,
            min_events: 1,
        },
    );
    let generation = s.reset(10);
    let now = std::time::Instant::now();
    // After the base revision: k1 deleted, k2 updated.
    let mut del = Event {
        kind: EventKind::Delete,
        kv: kv("/registry/pods/ns/k1", 11, "old"),
        prev: None,
    };
    del.kv.value = b("old");
    s.apply(del, now);
    let put = Event {
        kind: EventKind::Put,
        kv: kv("/registry/pods/ns/k2", 12, "new"),
        prev: None,
    };
    s.apply(put, now);
    // A page read at revision 10 carries both as they were.
    let page = vec![
        kv("/registry/pods/ns/k1", 5, "old"),
        kv("/registry/pods/ns/k2", 6, "old"),
        kv("/registry/pods/ns/k3", 7, "kept"),
    ];
    assert!(s.merge(generation, page, Progress::Done));
    let keys: Vec<(String, Bytes)> = s
        .list(PODS)
        .into_iter()
        .map(|kv| (kv.key.to_string(), kv.value))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("/registry/pods/ns/k2".into(), b("new")),
            ("/registry/pods/ns/k3".into(), b("kept")),
        ]
    );
    // A page of an older generation is not merged.
    let next = s.reset(20);
    assert!(!s.merge(
        generation,
        vec![kv("/registry/pods/ns/x", 3, "x")],
        Progress::Done
    ));
    assert!(s.merge(next, Vec::new(), Progress::Done));
    assert!(s.list(PODS).is_empty());
}

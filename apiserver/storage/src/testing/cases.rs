//! Checks of reads, writes, lists, compaction and `guaranteed_update`.

use std::sync::Arc;

use bytes::Bytes;

use super::{must_create, must_revision, must_update, text};
use crate::{ListRequest, Storage, StorageError, guaranteed_update};

fn list_req(prefix: &str, start_after: Option<&str>, limit: usize, revision: i64) -> ListRequest {
    ListRequest {
        prefix: prefix.to_owned(),
        start_after: start_after.map(str::to_owned),
        limit,
        revision,
        skip_count: false,
    }
}

fn keys(items: &[crate::KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| &*kv.key).collect()
}

/// create returns the stored value with create = mod = the new revision; get reads it back.
pub async fn test_create_and_get(store: Arc<dyn Storage>) {
    let before = must_revision(&*store).await;
    let kv = must_create(&*store, "/registry/pods/ns/a", "v1").await;
    assert_eq!(&*kv.key, "/registry/pods/ns/a");
    assert_eq!(text(&kv), "v1");
    assert_eq!(
        kv.create_revision,
        before + 1,
        "first write bumps the revision by one"
    );
    assert_eq!(kv.mod_revision, kv.create_revision);
    assert_eq!(must_revision(&*store).await, kv.mod_revision);
    let got = store.get("/registry/pods/ns/a").await.expect("get");
    assert_eq!(got, Some(kv));
    assert_eq!(
        store.get("/registry/pods/ns/b").await.expect("get missing"),
        None
    );
}

/// create of an existing key fails with AlreadyExists and writes nothing.
pub async fn test_create_existing(store: Arc<dyn Storage>) {
    let kv = must_create(&*store, "/k", "v1").await;
    match store.create("/k", Bytes::from_static(b"v2")).await {
        Err(StorageError::AlreadyExists { key }) => assert_eq!(key, "/k"),
        other => panic!("create existing: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(must_revision(&*store).await, kv.mod_revision);
    assert_eq!(store.get("/k").await.expect("get"), Some(kv));
}

/// update is a compare-and-swap on the mod revision.
pub async fn test_update_cas(store: Arc<dyn Storage>) {
    let v1 = must_create(&*store, "/k", "v1").await;
    let v2 = must_update(&*store, "/k", "v2", v1.mod_revision).await;
    assert_eq!(v2.create_revision, v1.create_revision);
    assert_eq!(v2.mod_revision, v1.mod_revision + 1);
    assert_eq!(text(&v2), "v2");
    match store
        .update("/k", Bytes::from_static(b"v3"), v1.mod_revision)
        .await
    {
        Err(StorageError::Conflict {
            expected, current, ..
        }) => {
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(current, v2.mod_revision);
        }
        other => panic!("stale update: expected Conflict, got {other:?}"),
    }
    match store.update("/missing", Bytes::from_static(b"x"), 1).await {
        Err(StorageError::NotFound { key }) => assert_eq!(key, "/missing"),
        other => panic!("update missing: expected NotFound, got {other:?}"),
    }
    assert_eq!(store.get("/k").await.expect("get"), Some(v2.clone()));
    assert_eq!(must_revision(&*store).await, v2.mod_revision);
}

/// delete with and without precondition, of a missing key, and re-create afterwards.
pub async fn test_delete(store: Arc<dyn Storage>) {
    let a = must_create(&*store, "/a", "va").await;
    let b = must_create(&*store, "/b", "vb").await;
    let deleted = store.delete("/a", None).await.expect("delete /a");
    assert_eq!(text(&deleted), "va", "delete returns the last value");
    assert_eq!(deleted.create_revision, a.create_revision);
    assert_eq!(
        deleted.mod_revision,
        b.mod_revision + 1,
        "delete gets its own revision"
    );
    assert_eq!(store.get("/a").await.expect("get"), None);
    match store.delete("/b", Some(b.mod_revision - 1)).await {
        Err(StorageError::Conflict { current, .. }) => assert_eq!(current, b.mod_revision),
        other => panic!("delete with stale precondition: expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get("/b").await.expect("get"), Some(b.clone()));
    let deleted_b = store
        .delete("/b", Some(b.mod_revision))
        .await
        .expect("delete /b");
    assert_eq!(text(&deleted_b), "vb");
    match store.delete("/b", None).await {
        Err(StorageError::NotFound { key }) => assert_eq!(key, "/b"),
        other => panic!("delete missing: expected NotFound, got {other:?}"),
    }
    let again = must_create(&*store, "/a", "va2").await;
    assert_eq!(
        again.create_revision,
        deleted_b.mod_revision + 1,
        "a new incarnation"
    );
}

/// list honours prefix, start_after (exclusive), limit, more and remaining; pages read at the
/// first page's revision stay consistent while the store changes.
pub async fn test_list_prefix_and_pagination(store: Arc<dyn Storage>) {
    for name in ["e", "b", "d", "a", "c"] {
        must_create(&*store, &format!("/r/pods/{name}"), name).await;
    }
    must_create(&*store, "/r/pods0", "sibling").await;
    must_create(&*store, "/r/pod", "shorter").await;
    must_create(&*store, "/r/services/x", "other").await;

    let all = store
        .list(list_req("/r/pods/", None, 0, 0))
        .await
        .expect("list");
    assert_eq!(
        keys(&all.items),
        [
            "/r/pods/a",
            "/r/pods/b",
            "/r/pods/c",
            "/r/pods/d",
            "/r/pods/e"
        ]
    );
    assert!(!all.more);
    assert_eq!(all.remaining, 0);
    assert_eq!(all.revision, must_revision(&*store).await);

    let page1 = store
        .list(list_req("/r/pods/", None, 2, 0))
        .await
        .expect("page 1");
    assert_eq!(keys(&page1.items), ["/r/pods/a", "/r/pods/b"]);
    assert!(page1.more);
    assert_eq!(page1.remaining, 3);
    // Changes after the first page must not show in later pages read at its revision.
    must_create(&*store, "/r/pods/bb", "new").await;
    let c = store
        .get("/r/pods/c")
        .await
        .expect("get")
        .expect("c exists");
    must_update(&*store, "/r/pods/c", "changed", c.mod_revision).await;
    store.delete("/r/pods/d", None).await.expect("delete d");

    let page2 = store
        .list(list_req("/r/pods/", Some("/r/pods/b"), 2, page1.revision))
        .await
        .expect("page 2");
    assert_eq!(page2.revision, page1.revision);
    assert_eq!(keys(&page2.items), ["/r/pods/c", "/r/pods/d"]);
    assert_eq!(
        text(&page2.items[0]),
        "c",
        "old value at the first page's revision"
    );
    assert_eq!(page2.items[0].mod_revision, c.mod_revision);
    assert!(page2.more);
    assert_eq!(page2.remaining, 1);
    let page3 = store
        .list(list_req("/r/pods/", Some("/r/pods/d"), 2, page1.revision))
        .await
        .expect("page 3");
    assert_eq!(keys(&page3.items), ["/r/pods/e"]);
    assert!(!page3.more);
    assert_eq!(page3.remaining, 0);
    // Without the count (the watch cache's fill): the same pages, `more` still exact.
    for (after, revision, want, more) in [
        (None, page1.revision, &["/r/pods/a", "/r/pods/b"][..], true),
        (
            Some("/r/pods/b"),
            page1.revision,
            &["/r/pods/c", "/r/pods/d"],
            true,
        ),
        (Some("/r/pods/d"), page1.revision, &["/r/pods/e"], false),
        (None, 0, &["/r/pods/a", "/r/pods/b"], true),
        (Some("/r/pods/c"), 0, &["/r/pods/e"], false),
    ] {
        let page = store
            .list(ListRequest {
                skip_count: true,
                ..list_req("/r/pods/", after, 2, revision)
            })
            .await
            .expect("page without count");
        assert_eq!(keys(&page.items), want, "after {after:?} at {revision}");
        assert_eq!(page.more, more, "after {after:?} at {revision}");
    }

    // The current state, paginated.
    let now = store
        .list(list_req("/r/pods/", Some("/r/pods/b"), 0, 0))
        .await
        .expect("current after b");
    assert_eq!(keys(&now.items), ["/r/pods/bb", "/r/pods/c", "/r/pods/e"]);
    assert_eq!(text(&now.items[1]), "changed");
    // A start_after before the prefix starts at the prefix.
    let before = store
        .list(list_req("/r/pods/", Some("/a"), 1, 0))
        .await
        .expect("list");
    assert_eq!(keys(&before.items), ["/r/pods/a"]);
    assert_eq!(before.remaining, 4);
}

/// list at a past revision returns the state as of that revision.
pub async fn test_list_at_revision(store: Arc<dyn Storage>) {
    let a1 = must_create(&*store, "/p/a", "a1").await;
    let b1 = must_create(&*store, "/p/b", "b1").await;
    let at = b1.mod_revision;
    must_update(&*store, "/p/a", "a2", a1.mod_revision).await;
    store.delete("/p/b", None).await.expect("delete b");
    must_create(&*store, "/p/c", "c1").await;
    must_create(&*store, "/p/b", "b2").await;

    let old = store
        .list(list_req("/p/", None, 0, at))
        .await
        .expect("list at");
    assert_eq!(old.revision, at);
    assert_eq!(old.items, vec![a1.clone(), b1.clone()]);
    let first = store
        .list(list_req("/p/", None, 0, a1.mod_revision))
        .await
        .expect("list");
    assert_eq!(first.items, vec![a1]);
    let now = store
        .list(list_req("/p/", None, 0, 0))
        .await
        .expect("list now");
    let values: Vec<&str> = now.items.iter().map(super::text).collect();
    assert_eq!(values, ["a2", "b2", "c1"]);
    let explicit = store
        .list(list_req("/p/", None, 0, now.revision))
        .await
        .expect("list at current");
    assert_eq!(explicit.items, now.items);
}

/// list at a compacted revision fails with Compacted, above the current with FutureRevision.
pub async fn test_list_compacted_and_future(store: Arc<dyn Storage>) {
    let a = must_create(&*store, "/c/a", "1").await;
    let a2 = must_update(&*store, "/c/a", "2", a.mod_revision).await;
    must_create(&*store, "/c/b", "1").await;
    store.compact(a2.mod_revision).await.expect("compact");
    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        a2.mod_revision
    );
    for rev in [a.mod_revision, a2.mod_revision] {
        match store.list(list_req("/c/", None, 0, rev)).await {
            Err(StorageError::Compacted {
                requested,
                compacted,
            }) => {
                assert_eq!(requested, rev);
                assert_eq!(compacted, a2.mod_revision);
            }
            other => panic!("list at compacted {rev}: expected Compacted, got {other:?}"),
        }
    }
    let current = must_revision(&*store).await;
    match store.list(list_req("/c/", None, 0, current + 10)).await {
        Err(StorageError::FutureRevision {
            requested,
            current: c,
        }) => {
            assert_eq!(requested, current + 10);
            assert_eq!(c, current);
        }
        other => panic!("list in the future: expected FutureRevision, got {other:?}"),
    }
    let now = store
        .list(list_req("/c/", None, 0, 0))
        .await
        .expect("list now");
    assert_eq!(now.items.len(), 2);
}

/// Every successful write bumps the revision by exactly one; failed ones leave it.
pub async fn test_revision_monotonic(store: Arc<dyn Storage>) {
    let mut last = must_revision(&*store).await;
    for i in 0..10 {
        let key = format!("/m/{}", i % 3);
        let rev = match store.get(&key).await.expect("get") {
            Some(_) if i % 4 == 3 => store.delete(&key, None).await.expect("delete").mod_revision,
            Some(kv) => {
                must_update(&*store, &key, "u", kv.mod_revision)
                    .await
                    .mod_revision
            }
            None => must_create(&*store, &key, "c").await.mod_revision,
        };
        assert_eq!(rev, last + 1, "write {i} on {key}");
        last = rev;
        assert_eq!(must_revision(&*store).await, last);
    }
    assert!(store.update("/m/none", Bytes::new(), 1).await.is_err());
    assert!(store.delete("/m/none", None).await.is_err());
    must_create(&*store, "/m/x", "x").await;
    last += 1;
    assert!(store.create("/m/x", Bytes::new()).await.is_err());
    assert_eq!(
        must_revision(&*store).await,
        last,
        "failed writes do not bump the revision"
    );
}

/// Compaction drops history but keeps every live key's latest version.
pub async fn test_compaction_keeps_latest(store: Arc<dyn Storage>) {
    let mut expected = Vec::new();
    for i in 0..20 {
        let key = format!("/k/{i:02}");
        let mut kv = must_create(&*store, &key, "0").await;
        for round in 1..=3 {
            kv = must_update(&*store, &key, &round.to_string(), kv.mod_revision).await;
        }
        if i % 5 == 0 {
            store.delete(&key, None).await.expect("delete");
        } else {
            expected.push(kv);
        }
    }
    let target = must_revision(&*store).await;
    store.compact(target).await.expect("compact");
    assert_eq!(store.compacted_revision().await.expect("compacted"), target);
    let now = store.list(list_req("/k/", None, 0, 0)).await.expect("list");
    assert_eq!(now.items, expected);
    for kv in &expected {
        assert_eq!(store.get(&kv.key).await.expect("get").as_ref(), Some(kv));
    }
    // Compacting again (or lower) is harmless; writes continue from the same revision.
    store.compact(target).await.expect("compact again");
    let k = must_update(&*store, &expected[0].key, "after", expected[0].mod_revision).await;
    assert_eq!(k.mod_revision, target + 1);
    assert_eq!(k.create_revision, expected[0].create_revision);
    let past = store
        .list(list_req("/k/", None, 0, target + 1))
        .await
        .expect("list");
    assert_eq!(past.items.len(), expected.len());
}

/// `guaranteed_update` from many tasks at once: no increment is lost.
pub async fn test_guaranteed_update_contention(store: Arc<dyn Storage>) {
    const TASKS: usize = 16;
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            guaranteed_update::<_, StorageError>(&*store, "/counter", |cur| {
                let n: u64 = cur.map_or(0, |kv| text(kv).parse().unwrap_or(0));
                Ok(Bytes::from((n + 1).to_string()))
            })
            .await
            .expect("guaranteed_update")
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    let kv = store
        .get("/counter")
        .await
        .expect("get")
        .expect("counter exists");
    assert_eq!(text(&kv), TASKS.to_string());
}

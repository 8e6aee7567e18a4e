//! Unit tests of the in-memory MVCC store.

use std::time::Duration;

use futures::StreamExt;

use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next(stream: &mut WatchStream) -> Result<Event> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("watch event within 5s")
        .expect("stream not ended")
}

#[tokio::test]
async fn revisions_start_at_one_and_bump_per_write() {
    let s = MemoryStore::new();
    assert_eq!(s.current_revision().await.unwrap(), 1);
    let a = s.create("/registry/pods/a", b("1")).await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision), (2, 2));
    let a2 = s.update("/registry/pods/a", b("2"), 2).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision), (2, 3));
    let err = s.update("/registry/pods/a", b("3"), 2).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Conflict {
                expected: 2,
                current: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = s.create("/registry/pods/a", b("x")).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
    let d = s.delete("/registry/pods/a", Some(3)).await.unwrap();
    assert_eq!(
        (d.create_revision, d.mod_revision, d.value.clone()),
        (2, 4, b("2"))
    );
    assert!(s.get("/registry/pods/a").await.unwrap().is_none());
    let err = s.delete("/registry/pods/a", None).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "{err}");
    let again = s.create("/registry/pods/a", b("new")).await.unwrap();
    assert_eq!(again.create_revision, 5);
    assert_eq!(s.current_revision().await.unwrap(), 5);
}

#[tokio::test]
async fn list_at_revision_pagination_and_compaction() {
    let s = MemoryStore::new();
    for name in ["a", "b", "c"] {
        s.create(&format!("/registry/pods/{name}"), b(name))
            .await
            .unwrap(); // revs 2,3,4
    }
    s.create("/registry/podsx/z", b("z")).await.unwrap(); // 5, outside "/registry/pods/"
    s.update("/registry/pods/a", b("a2"), 2).await.unwrap(); // 6
    s.delete("/registry/pods/b", None).await.unwrap(); // 7

    let now = s.list(ListRequest {
        prefix: "/registry/pods/".into(),
        ..Default::default()
    });
    let now = now.await.unwrap();
    assert_eq!(now.revision, 7);
    let keys: Vec<_> = now.items.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(keys, vec![b("a2"), b("c")]);

    let old = s
        .list(ListRequest {
            prefix: "/registry/pods/".into(),
            revision: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    let vals: Vec<_> = old.items.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(vals, vec![b("a"), b("b"), b("c")]);
    assert_eq!(old.revision, 4);

    let page = s
        .list(ListRequest {
            prefix: "/registry/pods/".into(),
            revision: 4,
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.more);
    assert_eq!(page.remaining, 1);
    let page2 = s
        .list(ListRequest {
            prefix: "/registry/pods/".into(),
            revision: 4,
            limit: 2,
            start_after: Some(page.items[1].key.to_string()),
            skip_count: false,
        })
        .await
        .unwrap();
    assert_eq!(page2.items.len(), 1);
    assert_eq!(&*page2.items[0].key, "/registry/pods/c");
    assert!(!page2.more);

    let err = s
        .list(ListRequest {
            prefix: "/".into(),
            revision: 8,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::FutureRevision {
                requested: 8,
                current: 7
            }
        ),
        "{err}"
    );

    s.compact(6).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), 6);
    for rev in [4, 6] {
        let err = s
            .list(ListRequest {
                prefix: "/".into(),
                revision: rev,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::Compacted { compacted: 6, .. }),
            "{err}"
        );
    }
    // The latest state survives compaction, including keys last written before it.
    let at7 = s
        .list(ListRequest {
            prefix: "/registry/".into(),
            revision: 7,
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<_> = at7.items.iter().map(|kv| &*kv.key).collect();
    assert_eq!(
        keys,
        vec!["/registry/pods/a", "/registry/pods/c", "/registry/podsx/z"]
    );
    s.compact(5).await.unwrap();
    assert_eq!(
        s.compacted_revision().await.unwrap(),
        6,
        "compacting lower is a no-op"
    );
    assert!(matches!(
        s.compact(99).await,
        Err(StorageError::FutureRevision { .. })
    ));
}

#[tokio::test]
async fn watch_replays_history_then_live_and_fails_when_compacted() {
    let s = MemoryStore::new();
    s.create("/registry/pods/a", b("1")).await.unwrap(); // 2
    s.create("/registry/svc/a", b("1")).await.unwrap(); // 3
    s.update("/registry/pods/a", b("2"), 2).await.unwrap(); // 4

    let mut w = s.watch("/registry/pods/", 2).await.unwrap();
    let e = next(&mut w).await.unwrap();
    assert_eq!((e.kind.clone(), e.revision()), (EventKind::Put, 4));
    assert_eq!(e.prev.as_ref().map(|p| p.value.clone()), Some(b("1")));
    s.delete("/registry/pods/a", None).await.unwrap(); // 5
    s.create("/registry/svc/b", b("1")).await.unwrap(); // 6
    s.create("/registry/pods/b", b("1")).await.unwrap(); // 7
    let e = next(&mut w).await.unwrap();
    assert_eq!(
        (e.kind.clone(), e.revision(), e.kv.value.clone()),
        (EventKind::Delete, 5, b("2"))
    );
    let e = next(&mut w).await.unwrap();
    assert_eq!((e.revision(), &*e.kv.key), (7, "/registry/pods/b"));

    s.compact(5).await.unwrap();
    assert!(matches!(
        s.watch("/registry/", 4).await.err(),
        Some(StorageError::Compacted {
            requested: 4,
            compacted: 5
        })
    ));
    let mut from5 = s.watch("/registry/", 5).await.unwrap();
    assert_eq!(next(&mut from5).await.unwrap().revision(), 6);
    assert_eq!(next(&mut from5).await.unwrap().revision(), 7);
}

#[tokio::test]
async fn slow_watcher_is_ended_with_compacted_without_blocking_writers() {
    let s = MemoryStore::with_watch_buffer(4);
    let mut slow = s.watch("/registry/", 1).await.unwrap();
    for i in 0..10 {
        s.create(&format!("/registry/pods/{i}"), b("x"))
            .await
            .unwrap();
    }
    let mut seen = 0;
    loop {
        match next(&mut slow).await {
            Ok(_) => seen += 1,
            Err(StorageError::Compacted { .. }) => break,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(
        seen, 4,
        "the buffered events are delivered before the error"
    );
    assert!(slow.next().await.is_none());
    assert_eq!(s.watcher_count(), 0);
}

#[tokio::test]
async fn break_watches_ends_streams_with_compacted() {
    let s = MemoryStore::new();
    let mut w = s.watch("/registry/", 1).await.unwrap();
    s.break_watches();
    assert!(matches!(
        next(&mut w).await,
        Err(StorageError::Compacted { .. })
    ));
    assert!(w.next().await.is_none());
}

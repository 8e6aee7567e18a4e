//! Watch checks: replay then live with no gap or duplicate, and watch from a compacted revision.

use std::sync::Arc;
use std::time::Duration;

use super::{must_be_quiet, must_create, must_next, must_revision, must_update, text};
use crate::{EventKind, Storage, StorageError};

/// A watch from a past revision replays the retained history in order, then delivers live
/// events, filtered by prefix, each once.
pub async fn test_watch_replay_then_live(store: Arc<dyn Storage>) {
    let start = must_revision(&*store).await;
    let a = must_create(&*store, "/w/a", "a1").await;
    must_create(&*store, "/other/x", "x").await;
    let a2 = must_update(&*store, "/w/a", "a2", a.mod_revision).await;
    let b = must_create(&*store, "/w/b", "b1").await;

    let mut stream = store.watch("/w/", start).await.expect("watch");
    let e1 = must_next(&mut stream).await;
    assert_eq!(
        (e1.kind.clone(), e1.kv.clone(), e1.prev.clone()),
        (EventKind::Put, a.clone(), None)
    );
    let e2 = must_next(&mut stream).await;
    assert_eq!(e2.kind, EventKind::Put);
    assert_eq!(e2.kv, a2);
    assert_eq!(
        e2.prev.as_deref(),
        Some(&a),
        "an update carries the previous value"
    );
    let e3 = must_next(&mut stream).await;
    assert_eq!(e3.kv, b);

    // Live events, interleaved with writes outside the prefix.
    must_create(&*store, "/other/y", "y").await;
    let deleted = store.delete("/w/a", None).await.expect("delete");
    let c = must_create(&*store, "/w/c", "c1").await;
    let e4 = must_next(&mut stream).await;
    assert_eq!(e4.kind, EventKind::Delete);
    assert_eq!(e4.kv, deleted);
    assert_eq!(text(&e4.kv), "a2", "a delete carries the last value");
    assert_eq!(e4.prev.as_deref(), Some(&a2));
    let e5 = must_next(&mut stream).await;
    assert_eq!(e5.kv, c);
    must_be_quiet(&mut stream, Duration::from_millis(200)).await;

    // A second watcher from the middle of the history sees only the later events, in order.
    let mut later = store
        .watch("/w/", b.mod_revision)
        .await
        .expect("watch later");
    let revs = [
        must_next(&mut later).await.revision(),
        must_next(&mut later).await.revision(),
    ];
    assert_eq!(revs, [deleted.mod_revision, c.mod_revision]);
    must_be_quiet(&mut later, Duration::from_millis(100)).await;

    // Many concurrent writes while watching: strictly increasing, none missing.
    let mut live = store
        .watch("/n/", must_revision(&*store).await)
        .await
        .expect("watch");
    let mut writers = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            must_create(&*store, &format!("/n/{i}"), "v")
                .await
                .mod_revision
        }));
    }
    let mut written = Vec::new();
    for w in writers {
        written.push(w.await.expect("writer"));
    }
    written.sort_unstable();
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(must_next(&mut live).await.revision());
    }
    assert_eq!(seen, written);
}

/// A watch from before the compacted revision fails with Compacted; from it, works.
pub async fn test_watch_from_compacted(store: Arc<dyn Storage>) {
    let a = must_create(&*store, "/w/a", "1").await;
    let a2 = must_update(&*store, "/w/a", "2", a.mod_revision).await;
    let a3 = must_update(&*store, "/w/a", "3", a2.mod_revision).await;
    store.compact(a2.mod_revision).await.expect("compact");
    match store.watch("/w/", a.mod_revision).await {
        Err(StorageError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, a.mod_revision);
            assert_eq!(compacted, a2.mod_revision);
        }
        Ok(_) => panic!("watch from a compacted revision: expected Compacted, got a stream"),
        Err(e) => panic!("watch from a compacted revision: expected Compacted, got {e}"),
    }
    let mut stream = store
        .watch("/w/", a2.mod_revision)
        .await
        .expect("watch at compacted");
    let ev = must_next(&mut stream).await;
    assert_eq!(ev.kv, a3);
    assert_eq!(
        ev.prev.as_deref(),
        Some(&a2),
        "the previous value survives compaction"
    );
}

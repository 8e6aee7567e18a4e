//! Embedded-backend checks beyond the shared suite: restart, slow watchers, automatic
//! compaction, and the lease-churn file-growth regression (k3s/kine "the store grows forever").

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrokube_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use ferrokube_storage::testing::{must_create, must_next, must_update};
use ferrokube_storage::{ListRequest, Storage, StorageError};
use futures::StreamExt;

fn no_auto() -> EmbeddedOptions {
    EmbeddedOptions {
        compaction_interval: None,
        ..EmbeddedOptions::fast()
    }
}

#[tokio::test]
async fn revisions_and_data_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), no_auto())
        .await
        .expect("open");
    let a = must_create(&*store, "/a", "1").await;
    let a2 = must_update(&*store, "/a", "2", a.mod_revision).await;
    store.delete("/a", None).await.expect("delete");
    let b = must_create(&*store, "/b", "b").await;
    store.compact(a2.mod_revision).await.expect("compact");
    store.close().await;
    assert!(
        store.get("/b").await.is_err(),
        "a closed store refuses reads"
    );

    let started = Instant::now();
    let store = EmbeddedStore::open(dir.path(), no_auto())
        .await
        .expect("reopen");
    let open_took = started.elapsed();
    assert!(
        open_took < Duration::from_millis(500),
        "reopen took {open_took:?}"
    );
    assert_eq!(store.current_revision().await.expect("rev"), b.mod_revision);
    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        a2.mod_revision
    );
    assert_eq!(store.get("/b").await.expect("get"), Some(b.clone()));
    assert_eq!(store.get("/a").await.expect("get"), None);
    let c = must_create(&*store, "/a", "again").await;
    assert_eq!(
        c.mod_revision,
        b.mod_revision + 1,
        "revisions are never reused"
    );
    // History written before the restart is still watchable.
    let mut w = store.watch("/", a2.mod_revision).await.expect("watch");
    let first = must_next(&mut w).await;
    assert_eq!(first.revision(), a2.mod_revision + 1);
    assert_eq!(
        first.kv.value,
        Bytes::from_static(b"2"),
        "delete carries the last value"
    );
}

#[tokio::test]
async fn slow_watcher_gets_compacted_error_and_never_blocks_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = EmbeddedOptions {
        watch_buffer: 16,
        ..no_auto()
    };
    let store = EmbeddedStore::open(dir.path(), opts).await.expect("open");
    let mut slow = store.watch("/s/", 1).await.expect("watch");
    let started = Instant::now();
    for i in 0..100 {
        must_create(&*store, &format!("/s/{i:03}"), "v").await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "writers were not blocked"
    );
    let mut got = 0;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
            Ok(Some(Ok(_))) => got += 1,
            Ok(Some(Err(e))) => break e,
            other => panic!("expected a Compacted error, got {other:?}"),
        }
    };
    assert!(matches!(end, StorageError::Compacted { .. }), "got {end}");
    assert!(got < 100, "the slow watcher cannot have seen everything");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), slow.next())
            .await
            .expect("stream ends")
            .is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn automatic_compactor_keeps_about_one_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = EmbeddedOptions {
        compaction_interval: Some(Duration::from_millis(100)),
        ..EmbeddedOptions::fast()
    };
    let store = EmbeddedStore::open(dir.path(), opts).await.expect("open");
    let mut kv = must_create(&*store, "/lease", "0").await;
    let first = kv.mod_revision;
    let deadline = Instant::now() + Duration::from_secs(10);
    // `compacted_revision` moves when a run starts; `compaction_runs` when it has finished.
    while store.metrics().compaction_runs == 0 {
        assert!(Instant::now() < deadline, "the compactor never ran");
        kv = must_update(&*store, "/lease", "x", kv.mod_revision).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = store.metrics();
    assert!(
        m.compacted_revision >= first,
        "compacted to {}",
        m.compacted_revision
    );
    assert!(
        m.compacted_revision < m.current_revision,
        "recent history is kept"
    );
    assert_eq!(
        store
            .get("/lease")
            .await
            .expect("get")
            .map(|k| k.mod_revision),
        Some(kv.mod_revision)
    );
}

/// 1,000 lease-like keys renewed many times: after compaction the file gives the space back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_churn_file_shrinks_after_compaction() {
    const KEYS: usize = 1000;
    const ROUNDS: usize = 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), no_auto())
        .await
        .expect("open");
    let value = Bytes::from(vec![b'l'; 300]);
    let revs = churn(&store, KEYS, ROUNDS, &value).await;
    let before = store.metrics();
    let target = store.current_revision().await.expect("rev");
    store.compact(target).await.expect("compact");
    let after = store.metrics();
    eprintln!(
        "lease churn {KEYS} keys x {ROUNDS} rounds: file {} KiB -> {} KiB, versions removed {}, compaction took {:?}, reclaim runs {}",
        before.db_size_bytes / 1024,
        after.db_size_bytes / 1024,
        after.compaction_versions_removed,
        after.last_compaction_duration,
        after.reclaim_runs,
    );
    assert_eq!(after.compaction_versions_removed, (KEYS * ROUNDS) as u64);
    assert!(after.reclaim_runs >= 1, "reclamation ran");
    assert!(
        after.db_size_bytes * 3 < before.db_size_bytes,
        "file must shrink well below its peak: {} -> {}",
        before.db_size_bytes,
        after.db_size_bytes
    );
    assert!(
        after.db_size_bytes < 4 << 20,
        "live data is ~300 KiB; file {}",
        after.db_size_bytes
    );
    // Every key is still there at its latest revision, and the store keeps working.
    let all = store
        .list(ListRequest {
            prefix: "/leases/".into(),
            ..ListRequest::default()
        })
        .await
        .expect("list");
    assert_eq!(all.items.len(), KEYS);
    for kv in &all.items {
        assert_eq!(Some(&kv.mod_revision), revs.get(&*kv.key));
    }
    let kv = &all.items[0];
    let next = store
        .update(&kv.key, value.clone(), kv.mod_revision)
        .await
        .expect("write after reclaim");
    assert_eq!(next.mod_revision, target + 1);
}

async fn churn(
    store: &Arc<EmbeddedStore>,
    keys: usize,
    rounds: usize,
    value: &Bytes,
) -> std::collections::HashMap<String, i64> {
    let mut tasks = Vec::new();
    // 50 clients, each owning keys/50 leases, renewing each lease `rounds` times.
    for client in 0..50 {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for k in (client..keys).step_by(50) {
                let key = format!("/leases/ns/{k:04}");
                let kv = store.create(&key, value.clone()).await.expect("create");
                mine.push((key, kv.mod_revision));
            }
            for _ in 0..rounds {
                for (key, rev) in &mut mine {
                    *rev = store
                        .update(key, value.clone(), *rev)
                        .await
                        .expect("renew")
                        .mod_revision;
                }
            }
            mine
        }));
    }
    let mut out = std::collections::HashMap::new();
    for t in tasks {
        out.extend(t.await.expect("client"));
    }
    out
}

/// The write-ahead log is folded into the database file when it reaches `wal_bytes` (and on
/// request), its file stays that size, and every write survives a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_ahead_log_checkpoints_keep_it_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = EmbeddedOptions {
        wal_bytes: 64 << 10,
        checkpoint_interval: Duration::from_secs(3600),
        ..no_auto()
    };
    let store = EmbeddedStore::open(dir.path(), opts.clone())
        .await
        .expect("open");
    let wal = dir
        .path()
        .join(ferrokube_storage::embedded::wal::WAL_FILE_NAME);
    let value = "v".repeat(1000);
    let mut last = 0;
    for i in 0..1000 {
        last = must_create(&*store, &format!("/w/{i:04}"), &value)
            .await
            .mod_revision;
    }
    // ~1 MB of frames went through a 64 KiB log: it was checkpointed (restarted) many times
    // and grew once, by one 1 MiB step.
    let len = std::fs::metadata(&wal).expect("wal").len();
    assert_eq!(len, 1 << 20, "log file size");
    let flushes = store.metrics().fsyncs;
    assert!(
        (1000..1100).contains(&flushes),
        "one flush per write (sequential writes) plus ~15 checkpoints: {flushes}"
    );
    // Whatever the log still holds, an explicit checkpoint folds it in; then nothing is left.
    store.checkpoint().await.expect("checkpoint");
    assert!(!store.checkpoint().await.expect("second checkpoint"));
    let after = must_create(&*store, "/w/after", "x").await;
    assert_eq!(after.mod_revision, last + 1);
    store.close().await;

    let store = EmbeddedStore::open(dir.path(), opts).await.expect("reopen");
    let all = store
        .list(ListRequest {
            prefix: "/w/".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(all.items.len(), 1001);
    assert_eq!(all.revision, after.mod_revision);
}

/// Bytes this process has sent to the block layer (dirtied page-cache pages included).
fn process_write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes in /proc/self/io")
}

/// A small durable write (a Lease renewal, say) costs the disk about a page, not a B-tree
/// path with allocator state (~55 KB per write before the write-ahead log) nor a large
/// page-cache folio (1 MiB per write when the log was grown by one large write of zeros).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_durable_write_costs_about_a_page_of_disk_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = EmbeddedOptions {
        checkpoint_interval: Duration::from_secs(3600),
        ..no_auto()
    };
    let store = EmbeddedStore::open(dir.path(), opts).await.expect("open");
    let value = "l".repeat(500);
    let mut kv = must_create(&*store, "/lease", &value).await;
    // The first writes grow the log (block allocation); measure the steady state after them.
    for _ in 0..50 {
        kv = must_update(&*store, "/lease", &value, kv.mod_revision).await;
    }
    let before = process_write_bytes();
    let n = 200u64;
    for _ in 0..n {
        kv = must_update(&*store, "/lease", &value, kv.mod_revision).await;
    }
    let per_write = (process_write_bytes() - before) / n;
    assert!(
        per_write <= 12 << 10,
        "{per_write} bytes written to disk per small durable write"
    );
}

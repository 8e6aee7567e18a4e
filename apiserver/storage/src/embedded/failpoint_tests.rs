//! The writer thread's death: writes fail at once (no hang), reads keep working, and
//! [`EmbeddedStore::health`] reports it.

use std::time::Duration;

use bytes::Bytes;

use super::{EmbeddedOptions, EmbeddedStore, Failpoint, StoreHealth};
use crate::{Storage, StorageError};

#[tokio::test]
async fn writer_panic_fails_writes_fast_and_reports_unhealthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = EmbeddedOptions {
        failpoint: Some(Failpoint::WriterPanicOnKey("boom".into())),
        compaction_interval: None,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), opts).await.expect("open");
    assert_eq!(store.health(), StoreHealth::Ok);
    store
        .create("/registry/a", Bytes::from_static(b"1"))
        .await
        .expect("a write before the fail point succeeds");

    let hit = tokio::time::timeout(
        Duration::from_secs(5),
        store.create("/registry/boom", Bytes::from_static(b"2")),
    )
    .await
    .expect("the write that panics the writer is answered, not left hanging");
    assert!(matches!(hit, Err(StorageError::Backend(_))), "{hit:?}");

    let later = tokio::time::timeout(
        Duration::from_secs(5),
        store.create("/registry/b", Bytes::from_static(b"3")),
    )
    .await
    .expect("later writes fail fast");
    match later {
        Err(StorageError::Backend(msg)) => {
            assert!(msg.contains("storage writer stopped"), "{msg}")
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    match store.health() {
        StoreHealth::WriterFailed(why) => assert!(why.contains("writer-panic-on-key"), "{why}"),
        other => panic!("expected WriterFailed, got {other:?}"),
    }
    let a = store.get("/registry/a").await.expect("reads still work");
    assert_eq!(a.map(|kv| kv.value), Some(Bytes::from_static(b"1")));
    assert_eq!(store.get("/registry/boom").await.expect("read"), None);
}

#[tokio::test]
async fn database_file_and_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let db_dir = dir.path().join("db");
    let store = EmbeddedStore::open(&db_dir, EmbeddedOptions::default())
        .await
        .expect("open");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&db_dir), 0o700);
    assert_eq!(mode(store.path()), 0o600);
    // The write-ahead log holds the same values (Secrets included).
    let wal = db_dir.join(super::wal::WAL_FILE_NAME);
    assert_eq!(mode(&wal), 0o600);
    store.close().await;
    // A log left readable by others is narrowed on the next open.
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store = EmbeddedStore::open(&db_dir, EmbeddedOptions::default())
        .await
        .expect("reopen");
    assert_eq!(mode(&wal), 0o600);
    store.close().await;
}

//! The shared backend suite against the embedded backend, plus embedded-only checks.

use std::sync::Arc;

use ferrokube_storage::Storage;
use ferrokube_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use ferrokube_storage::testing;

async fn fresh() -> Arc<dyn Storage> {
    // The directory is leaked for the test's duration: the store keeps its file open.
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let opts = EmbeddedOptions {
        compaction_interval: None,
        ..EmbeddedOptions::fast()
    };
    EmbeddedStore::open(&dir, opts).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_passes_the_shared_suite() {
    testing::run_all(fresh).await;
}

#[tokio::test]
async fn embedded_create_and_get() {
    testing::test_create_and_get(fresh().await).await;
}

#[tokio::test]
async fn fresh_store_starts_at_revision_one() {
    let store = fresh().await;
    assert_eq!(store.current_revision().await.expect("rev"), 1);
    let kv = testing::must_create(&*store, "/a", "v").await;
    assert_eq!(kv.mod_revision, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_passes_the_shared_suite() {
    testing::run_all(|| async {
        ferrokube_storage::memory::MemoryStore::new() as Arc<dyn Storage>
    })
    .await;
}

//! The shared backend test suite: every [`Storage`] backend must pass [`run_all`].
//!
//! Modeled on the semantics of upstream's `k8s.io/apiserver/pkg/storage/testing/store_tests.go`
//! (re-implemented, not copied). Each check is a public async function taking a fresh, empty
//! store, so a backend's tests can also call them one by one. Checks panic with context on
//! failure (`must_*` helpers); they only assume revisions are relative (a write bumps the
//! revision by exactly one), never absolute values, so they run against a shared etcd too as
//! long as each store is isolated.

mod cases;
mod watch_cases;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Event, KeyValue, Storage, WatchStream};

pub use cases::{
    test_compaction_keeps_latest, test_create_and_get, test_create_existing, test_delete,
    test_guaranteed_update_contention, test_list_at_revision, test_list_compacted_and_future,
    test_list_prefix_and_pagination, test_revision_monotonic, test_update_cas,
};
pub use watch_cases::{test_watch_from_compacted, test_watch_replay_then_live};

/// Runs every check of the suite, each against a fresh store from `new_store`.
pub async fn run_all<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Storage>>,
{
    test_create_and_get(new_store().await).await;
    test_create_existing(new_store().await).await;
    test_update_cas(new_store().await).await;
    test_delete(new_store().await).await;
    test_list_prefix_and_pagination(new_store().await).await;
    test_list_at_revision(new_store().await).await;
    test_list_compacted_and_future(new_store().await).await;
    test_watch_replay_then_live(new_store().await).await;
    test_watch_from_compacted(new_store().await).await;
    test_revision_monotonic(new_store().await).await;
    test_compaction_keeps_latest(new_store().await).await;
    test_guaranteed_update_contention(new_store().await).await;
}

/// How long a check waits for a watch event before failing.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates `key` or panics.
pub async fn must_create(store: &dyn Storage, key: &str, value: &str) -> KeyValue {
    match store
        .create(key, Bytes::copy_from_slice(value.as_bytes()))
        .await
    {
        Ok(kv) => kv,
        Err(e) => panic!("create {key}: {e}"),
    }
}

/// Updates `key` (CAS on `expected`) or panics.
pub async fn must_update(store: &dyn Storage, key: &str, value: &str, expected: i64) -> KeyValue {
    match store
        .update(key, Bytes::copy_from_slice(value.as_bytes()), expected)
        .await
    {
        Ok(kv) => kv,
        Err(e) => panic!("update {key} at {expected}: {e}"),
    }
}

/// The current revision, or panics.
pub async fn must_revision(store: &dyn Storage) -> i64 {
    match store.current_revision().await {
        Ok(r) => r,
        Err(e) => panic!("current_revision: {e}"),
    }
}

/// The next watch event, or panics on error, end of stream or timeout.
pub async fn must_next(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(WATCH_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("watch stream ended"),
        Err(_) => panic!("no watch event within {WATCH_TIMEOUT:?}"),
    }
}

/// Panics if `stream` yields anything within `wait`.
pub async fn must_be_quiet(stream: &mut WatchStream, wait: Duration) {
    if let Ok(item) = tokio::time::timeout(wait, stream.next()).await {
        panic!("expected no watch event, got {item:?}");
    }
}

fn text(kv: &KeyValue) -> &str {
    std::str::from_utf8(&kv.value).unwrap_or("<non-utf8>")
}

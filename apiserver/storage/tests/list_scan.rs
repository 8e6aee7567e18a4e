//! Current-revision lists of the embedded store read values by one forward scan of the history
//! table (`embedded/read.rs`, `HistoryScan`): these check that what a list returns is the
//! latest value of every live key whatever lies between them in the history — many retained
//! versions of one key (past the scan's seek threshold), tombstones of deleted keys, keys
//! re-created after a delete — and with `start_after` paging.

use ferrokube_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use ferrokube_storage::testing::{must_create, must_update};
use ferrokube_storage::{KeyValue, ListRequest, Storage};

fn no_auto() -> EmbeddedOptions {
    EmbeddedOptions {
        compaction_interval: None,
        ..EmbeddedOptions::fast()
    }
}

async fn list_all(store: &dyn Storage, prefix: &str, page: usize) -> Vec<KeyValue> {
    let mut out = Vec::new();
    let mut start_after = None;
    loop {
        let resp = store
            .list(ListRequest {
                prefix: prefix.into(),
                start_after: start_after.take(),
                limit: page,
                revision: 0,
                skip_count: true,
            })
            .await
            .expect("list");
        start_after = resp.items.last().map(|kv| kv.key.to_string());
        out.extend(resp.items);
        if !resp.more {
            return out;
        }
    }
}

#[tokio::test]
async fn lists_return_latest_values_across_long_histories_and_tombstones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), no_auto())
        .await
        .expect("open");
    let mut want = std::collections::BTreeMap::new();
    for i in 0..40 {
        let key = format!("/r/k{i:03}");
        let mut kv = must_create(&*store, &key, &format!("v{i}-0")).await;
        // Every third key gets a long history (more versions than the scan steps over).
        let updates = if i % 3 == 0 { 40 } else { i % 2 };
        for u in 1..=updates {
            kv = must_update(&*store, &key, &format!("v{i}-{u}"), kv.mod_revision).await;
        }
        if i % 5 == 1 {
            store.delete(&key, None).await.expect("delete");
            if i % 10 == 1 {
                // Re-created after the delete: a new incarnation with its own history.
                let kv = must_create(&*store, &key, &format!("again{i}")).await;
                want.insert(key, kv);
            }
        } else {
            want.insert(key, kv);
        }
    }
    // Keys outside the prefix on both sides.
    must_create(&*store, "/q/x", "before").await;
    must_create(&*store, "/s/x", "after").await;
    let want: Vec<KeyValue> = want.into_values().collect();
    for page in [0, 1, 3, 7, 1000] {
        let got = list_all(&*store, "/r/", page).await;
        assert_eq!(got, want, "paged by {page}");
    }
    for kv in &want {
        assert_eq!(store.get(&kv.key).await.expect("get").as_ref(), Some(kv));
    }
}

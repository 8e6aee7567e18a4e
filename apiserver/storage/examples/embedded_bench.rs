//! Throughput of the embedded store: durable creates/s with 1 and 32 concurrent clients,
//! gets/s, and the file size before/after compacting a lease-churn workload.
//!
//! `cargo run --release -p ferrokube-storage --example embedded_bench [-- DIR]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrokube_storage::Storage;
use ferrokube_storage::embedded::{EmbeddedOptions, EmbeddedStore};

const RUN: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| tmp.path().to_owned(), std::path::PathBuf::from);
    let opts = EmbeddedOptions {
        compaction_interval: None,
        ..EmbeddedOptions::fast()
    };
    let store = EmbeddedStore::open(&dir, opts).await.expect("open");
    let value = Bytes::from(vec![b'v'; 512]);
    for clients in [1usize, 32] {
        let (n, took) = creates(&store, clients, &value).await;
        let m = store.metrics();
        println!(
            "creates, {clients:>2} clients: {:>8.0}/s  ({n} in {took:.2?}; batches so far {}, ops/batch {:.1})",
            n as f64 / took.as_secs_f64(),
            m.write_batches,
            m.write_ops as f64 / m.write_batches.max(1) as f64
        );
    }
    for clients in [1usize, 32] {
        let (n, took) = gets(&store, clients).await;
        println!(
            "gets,    {clients:>2} clients: {:>8.0}/s  ({n} in {took:.2?})",
            n as f64 / took.as_secs_f64()
        );
    }
    // Lease churn: 1,000 keys renewed 50 times each, then compaction and reclamation.
    let lease = Bytes::from(vec![b'l'; 300]);
    let mut revs = Vec::new();
    for k in 0..1000 {
        let kv = store
            .create(&format!("/leases/{k:04}"), lease.clone())
            .await
            .expect("lease");
        revs.push(kv.mod_revision);
    }
    let revs = Arc::new(tokio::sync::Mutex::new(revs));
    let mut tasks = Vec::new();
    for c in 0..50usize {
        let (store, lease, revs) = (store.clone(), lease.clone(), revs.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                for k in (c..1000).step_by(50) {
                    let rev = revs.lock().await[k];
                    let kv = store
                        .update(&format!("/leases/{k:04}"), lease.clone(), rev)
                        .await
                        .expect("renew");
                    revs.lock().await[k] = kv.mod_revision;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("churn");
    }
    let before = store.metrics().db_size_bytes;
    let target = store.current_revision().await.expect("rev");
    store.compact(target).await.expect("compact");
    let m = store.metrics();
    println!(
        "lease churn (1000 keys x 50 renewals, store at revision {}): file {:.1} MiB -> {:.1} MiB after compaction ({:?}, {} versions removed, reclaim runs {})",
        store.metrics().current_revision,
        before as f64 / 1048576.0,
        m.db_size_bytes as f64 / 1048576.0,
        m.last_compaction_duration,
        m.compaction_versions_removed,
        m.reclaim_runs
    );
    store.close().await;
    let started = Instant::now();
    let reopened = EmbeddedStore::open(&dir, EmbeddedOptions::default())
        .await
        .expect("reopen");
    println!(
        "reopen: {:.2?} (revision {})",
        started.elapsed(),
        reopened.current_revision().await.expect("rev")
    );
}

async fn creates(store: &Arc<EmbeddedStore>, clients: usize, value: &Bytes) -> (u64, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (store, value) = (store.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < RUN {
                let key = format!("/registry/configmaps/c{clients}/{c:02}-{n:08}");
                store.create(&key, value.clone()).await.expect("create");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client");
    }
    (total, started.elapsed())
}

async fn gets(store: &Arc<EmbeddedStore>, clients: usize) -> (u64, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < RUN {
                let key = format!("/registry/configmaps/c1/00-{:08}", (n * 7 + c as u64) % 100);
                let got = store.get(&key).await.expect("get");
                assert!(got.is_some(), "{key}");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client");
    }
    (total, started.elapsed())
}

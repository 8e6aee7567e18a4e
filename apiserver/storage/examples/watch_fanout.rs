//! Watch-cache fan-out benchmark.
//!
//! N watchers (default 1000) watch one prefix through a [`WatchCache`] over a [`MemoryStore`];
//! a writer creates E events (default 2000) at R events/s (default 1000; 0 = as fast as
//! possible), each value stamped with its send time. Every watcher records the delivery
//! latency of every event; the report gives p50/p99/max over all deliveries, the delivered
//! count and how many watchers were terminated as too slow.
//!
//! ```text
//! cargo run --release -p ferrokube-storage --example watch_fanout -- [WATCHERS] [EVENTS] [RATE]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrokube_storage::memory::MemoryStore;
use ferrokube_storage::watch_cache::{CacheEvent, WatchCache, WatchCacheOptions};
use ferrokube_storage::{Storage, StorageError};
use futures::StreamExt;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_nanos(sorted[idx.min(sorted.len() - 1)])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let watchers = arg(1, 1000) as usize;
    let events = arg(2, 2000);
    let rate = arg(3, 1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(watchers, events, rate))
}

async fn run(watchers: usize, events: u64, rate: u64) -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryStore::with_watch_buffer(1 << 20);
    let dyn_store: Arc<dyn Storage> = store.clone();
    let cache = WatchCache::start(dyn_store, "/registry/", WatchCacheOptions::default()).await?;
    let base = Instant::now();

    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut stream = cache
            .watch("/registry/bench/", 0, Default::default())
            .await?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(events as usize);
            let mut terminated = false;
            while (latencies.len() as u64) < events {
                match stream.next().await {
                    Some(Ok(CacheEvent::Event(e))) => {
                        let now = base.elapsed().as_nanos() as u64;
                        let mut stamp = [0u8; 8];
                        stamp.copy_from_slice(&e.kv.value[..8]);
                        latencies.push(now.saturating_sub(u64::from_le_bytes(stamp)));
                    }
                    Some(Ok(CacheEvent::Progress(_))) => {}
                    Some(Err(StorageError::Compacted { .. })) | None => {
                        terminated = true;
                        break;
                    }
                    Some(Err(e)) => return Err(e),
                }
            }
            Ok((latencies, terminated))
        }));
    }

    let started = Instant::now();
    let period = (rate > 0).then(|| Duration::from_nanos(1_000_000_000 / rate));
    for i in 0..events {
        if let Some(period) = period {
            let due = started + period.saturating_mul(i as u32);
            tokio::time::sleep_until(due.into()).await;
        }
        let stamp = (base.elapsed().as_nanos() as u64).to_le_bytes();
        // 8-byte stamp plus padding, about the size of a small object.
        let mut value = Vec::with_capacity(512);
        value.extend_from_slice(&stamp);
        value.resize(512, b'x');
        store
            .create(&format!("/registry/bench/ns/e{i:07}"), Bytes::from(value))
            .await?;
    }
    let write_time = started.elapsed();

    let mut all = Vec::with_capacity(watchers * events as usize);
    let mut terminated = 0;
    for task in tasks {
        let (latencies, was_terminated) = task.await??;
        all.extend(latencies);
        terminated += usize::from(was_terminated);
    }
    let total_time = started.elapsed();
    all.sort_unstable();
    let m = cache.metrics();
    println!(
        "watchers={watchers} events={events} rate={} write_time={write_time:.2?} total_time={total_time:.2?}",
        if rate == 0 {
            "max".to_owned()
        } else {
            format!("{rate}/s")
        }
    );
    println!(
        "deliveries={} ({:.0}/s) p50={:.2?} p99={:.2?} max={:.2?} terminated_watchers={terminated} (cache metric {})",
        all.len(),
        all.len() as f64 / total_time.as_secs_f64(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
        m.slow_watchers_terminated,
    );
    Ok(())
}

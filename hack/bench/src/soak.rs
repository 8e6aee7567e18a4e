//! `--soak`: issue 12's "RSS flat in a one-hour soak of mixed writes, lists and watches".
//!
//! One `ferrokube server` (controllers included, no nodes) under a steady mixed load for
//! `--minutes` (default 60): writers cycling a bounded set of ConfigMaps and Secrets through
//! create → update → delete (so the object count stays bounded and every write also feeds the
//! watch cache, the event rings and the controllers' informers), Lease renewals (what nodes do),
//! a namespace created and deleted every minute (namespace controller, garbage collector), full
//! and paginated lists, and watchers that end (server-side timeout) and resume from their last
//! resourceVersion like informers. Every `--sample` seconds it prints RSS (anon/file), the
//! server's CPU and the work done; at the end the RSS slope over the run after its warm-up.
//! Failures other than the expected races (404/409 between a delete and the next phase) are
//! counted and fail the run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::figures::{cpu_ticks, mib, rss_split_kib};
use crate::start_ferrokube;

/// Objects cycled by the writers, per kind.
const SET: u64 = 1_000;
const WRITERS: u64 = 4;
const WATCHERS: usize = 20;
const LEASES: usize = 10;
const NS: &str = "default";

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    raced: AtomicU64,
    lists: AtomicU64,
    listed_items: AtomicU64,
    watch_events: AtomicU64,
    watch_restarts: AtomicU64,
    namespaces: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn error(&self, what: &str, e: &dyn std::fmt::Display) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed);
        if n < 10 {
            eprintln!("soak: {what}: {e}");
        }
    }
}

/// 404 and 409 happen when a phase change overtakes a slow write of the previous phase.
fn is_race(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

fn record(c: &Counters, what: &str, r: Result<(), kube::Error>) {
    match r {
        Ok(()) => {
            c.writes.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) if is_race(&e) => {
            c.raced.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => c.error(what, &e),
    }
}

/// Operation `k` of the shared sequence: object `k % SET` of kind `(k / SET) % 2`, phase
/// create / update / delete by `(k / 2 SET) % 3`.
async fn write(client: &Client, k: u64, c: &Counters) {
    let name = format!("soak-{}", k % SET);
    let secret = (k / SET) % 2 == 1;
    let phase = (k / (2 * SET)) % 3;
    let payload = format!("value-{k}-{}", "x".repeat((k % 7) as usize * 40));
    let pp = PostParams::default();
    let r = if secret {
        let api: Api<Secret> = Api::namespaced(client.clone(), NS);
        match phase {
            0 => {
                let s: Secret = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app": "soak"}},
                    "stringData": {"v": payload},
                }))
                .unwrap_or_default();
                api.create(&pp, &s).await.map(drop)
            }
            1 => api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"stringData": {"v": payload}})),
                )
                .await
                .map(drop),
            _ => api.delete(&name, &DeleteParams::default()).await.map(drop),
        }
    } else {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
        match phase {
            0 => {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app": "soak", "gen": (k % 5).to_string()}},
                    "data": {"v": payload},
                }))
                .unwrap_or_default();
                api.create(&pp, &cm).await.map(drop)
            }
            1 => api
                .patch(
                    &name,
                    &PatchParams::apply("soak").force(),
                    &Patch::Apply(json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name},
                        "data": {"v": payload},
                    })),
                )
                .await
                .map(drop),
            _ => api.delete(&name, &DeleteParams::default()).await.map(drop),
        }
    };
    record(c, "write", r);
}

async fn writers(client: Client, rate: u64, stop: Arc<AtomicBool>, c: Arc<Counters>) {
    let next = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(WRITERS as f64 / rate.max(1) as f64);
    // A JoinSet: aborting this task (the end of the soak) aborts the writers with it.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (client, stop, c, next) = (client.clone(), stop.clone(), c.clone(), next.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                write(&client, next.fetch_add(1, Ordering::Relaxed), &c).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Leases renewed every second, as nodes' heartbeats (10 leases → 10 writes/s).
async fn leases(client: Client, stop: Arc<AtomicBool>, c: Arc<Counters>) {
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = serde_json::to_value(MicroTime(Timestamp::now())).unwrap_or_default();
        for i in 0..LEASES {
            let r = api
                .patch(
                    &format!("soak-{i}"),
                    &PatchParams::apply("soak").force(),
                    &Patch::Apply(json!({
                        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": format!("soak-{i}")},
                        "spec": {"holderIdentity": format!("soak-{i}"), "leaseDurationSeconds": 40,
                                 "renewTime": now},
                    })),
                )
                .await
                .map(drop);
            record(&c, "lease", r);
        }
    }
}

/// A namespace with a ConfigMap in it created and deleted every minute.
async fn namespaces(client: Client, stop: Arc<AtomicBool>, c: Arc<Counters>) {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let name = format!("soak-ns-{i}");
        i += 1;
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap_or_default();
        if let Err(e) = api.create(&PostParams::default(), &ns).await {
            c.error("namespace create", &e);
            continue;
        }
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "data": {"k": "v"}}))
                .unwrap_or_default();
        if let Err(e) = cms.create(&PostParams::default(), &cm).await {
            c.error("namespaced configmap create", &e);
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                c.namespaces.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => c.error("namespace delete", &e),
        }
    }
}

/// A full list and a paginated list (pages of 100) of the namespace's ConfigMaps every 2 s.
async fn lists(client: Client, stop: Arc<AtomicBool>, c: Arc<Counters>) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client, NS);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        match api.list(&ListParams::default().labels("app=soak")).await {
            Ok(l) => {
                c.lists.fetch_add(1, Ordering::Relaxed);
                c.listed_items
                    .fetch_add(l.items.len() as u64, Ordering::Relaxed);
            }
            Err(e) => c.error("list", &e),
        }
        let mut lp = ListParams::default().limit(100);
        loop {
            match secrets.list(&lp).await {
                Ok(l) => {
                    c.lists.fetch_add(1, Ordering::Relaxed);
                    c.listed_items
                        .fetch_add(l.items.len() as u64, Ordering::Relaxed);
                    match l.metadata.continue_.filter(|t| !t.is_empty()) {
                        Some(t) => lp = lp.continue_token(&t),
                        None => break,
                    }
                }
                // A continue token older than the compaction window: start over next round.
                Err(e) if matches!(&e, kube::Error::Api(s) if s.code == 410) => break,
                Err(e) => {
                    c.error("paginated list", &e);
                    break;
                }
            }
        }
    }
}

/// A watcher that resumes from its last resourceVersion when the server ends its watch
/// (timeouts of 20–59 s), and re-lists (RV "0") on 410, as informers do.
async fn watcher(client: Client, n: usize, stop: Arc<AtomicBool>, c: Arc<Counters>) {
    let api: Api<ConfigMap> = Api::namespaced(client, NS);
    let mut rv = "0".to_owned();
    let timeout = 20 + (n as u32 * 7) % 40;
    while !stop.load(Ordering::Relaxed) {
        let stream = match api
            .watch(&WatchParams::default().timeout(timeout), &rv)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                c.error("watch", &e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut stream = stream.boxed();
        loop {
            match stream.try_next().await {
                Ok(Some(
                    WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o),
                )) => {
                    c.watch_events.fetch_add(1, Ordering::Relaxed);
                    if let Some(v) = o.resource_version() {
                        rv = v;
                    }
                }
                Ok(Some(WatchEvent::Bookmark(b))) => rv = b.metadata.resource_version,
                Ok(Some(WatchEvent::Error(s))) if s.code == 410 => {
                    rv = "0".into();
                    break;
                }
                Ok(Some(WatchEvent::Error(s))) => {
                    c.error("watch event", &s.message);
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    c.error("watch stream", &e);
                    break;
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
        c.watch_restarts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Least-squares slope of `(t, y)` in y-units per x-unit.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

pub async fn run(tmp: &Path, minutes: u64, sample_secs: u64, rate: u64) -> Result<()> {
    let (server, client, ready) = start_ferrokube(&tmp.join("soak"), &[]).await?;
    let pid = server.0.id();
    println!(
        "soak: {minutes} min, ~{rate} object writes/s + {LEASES} lease renewals/s, {WATCHERS} \
         watchers, lists every 2 s, a namespace per minute; ready in {} ms",
        ready.as_millis()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(Counters::default());
    let mut tasks = vec![
        tokio::spawn(writers(client.clone(), rate, stop.clone(), c.clone())),
        tokio::spawn(leases(client.clone(), stop.clone(), c.clone())),
        tokio::spawn(namespaces(client.clone(), stop.clone(), c.clone())),
        tokio::spawn(lists(client.clone(), stop.clone(), c.clone())),
    ];
    for n in 0..WATCHERS {
        tasks.push(tokio::spawn(watcher(
            client.clone(),
            n,
            stop.clone(),
            c.clone(),
        )));
    }
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>7} {:>9} {:>7} {:>10} {:>8} {:>6}",
        "min",
        "RSS MiB",
        "anon",
        "file",
        "CPU %",
        "writes",
        "lists",
        "watch ev",
        "restarts",
        "errors"
    );
    let start = Instant::now();
    let end = start + Duration::from_secs(minutes * 60);
    let mut points = Vec::new();
    let (mut last_ticks, mut last_t) = (cpu_ticks(pid), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_secs(sample_secs.max(1)));
    tick.tick().await;
    while Instant::now() < end {
        tick.tick().await;
        let (anon, file) = rss_split_kib(pid);
        let ticks = cpu_ticks(pid);
        let cpu = (ticks - last_ticks) as f64 / last_t.elapsed().as_secs_f64();
        (last_ticks, last_t) = (ticks, Instant::now());
        let t = start.elapsed().as_secs_f64() / 60.0;
        points.push((t, mib(anon + file), mib(anon)));
        println!(
            "{t:>6.1} {:>9.1} {:>8.1} {:>8.1} {cpu:>7.1} {:>9} {:>7} {:>10} {:>8} {:>6}",
            mib(anon + file),
            mib(anon),
            mib(file),
            c.writes.load(Ordering::Relaxed),
            c.lists.load(Ordering::Relaxed),
            c.watch_events.load(Ordering::Relaxed),
            c.watch_restarts.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let errors = c.errors.load(Ordering::Relaxed);
    // The curve after warm-up (the first sixth: caches and rings fill, the allocator grows).
    let warm = points.len() / 6;
    let after: Vec<_> = points[warm..].to_vec();
    let rss: Vec<(f64, f64)> = after.iter().map(|(t, r, _)| (*t, *r)).collect();
    let anon: Vec<(f64, f64)> = after.iter().map(|(t, _, a)| (*t, *a)).collect();
    let (lo, hi) = rss
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), (_, r)| (l.min(*r), h.max(*r)));
    println!(
        "after warm-up ({:.0} min on): RSS {lo:.1}–{hi:.1} MiB, slope {:+.2} MiB/hour (anon \
         {:+.2} MiB/hour); {} writes ({} raced 404/409), {} lists of {} items, {} watch events, \
         {} watch restarts, {} namespaces, {} errors",
        after.first().map(|p| p.0).unwrap_or(0.0),
        slope(&rss) * 60.0,
        slope(&anon) * 60.0,
        c.writes.load(Ordering::Relaxed),
        c.raced.load(Ordering::Relaxed),
        c.lists.load(Ordering::Relaxed),
        c.listed_items.load(Ordering::Relaxed),
        c.watch_events.load(Ordering::Relaxed),
        c.watch_restarts.load(Ordering::Relaxed),
        c.namespaces.load(Ordering::Relaxed),
        errors,
    );
    drop(server);
    if errors > 0 {
        bail!("{errors} requests failed during the soak");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn slope_of_a_line_and_of_a_flat_curve() {
        let line: Vec<_> = (0..10).map(|i| (i as f64, 3.0 + 2.0 * i as f64)).collect();
        assert!((slope(&line) - 2.0).abs() < 1e-9);
        let flat: Vec<_> = (0..10).map(|i| (i as f64, 5.0)).collect();
        assert_eq!(slope(&flat), 0.0);
    }
}

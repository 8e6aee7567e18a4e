//! `--backends`: the same API load on `ferrokube server` with the embedded store, on one etcd
//! member and on a 3-member etcd cluster (loopback, started here), in one run: creates and gets
//! (1 and 32 clients), a list of N configmaps and watch delivery, with the etcd/embedded ratio
//! of each; the same concurrency of raw etcd puts (etcd's own client protocol through its JSON
//! gateway, keep-alive) against each etcd for the API/raw put ratio (goal ≥ 0.8), and of the
//! API server's storage call alone (`EtcdStore::create`: its gRPC client and create
//! transaction) for what the API server adds; CPU per operation of the API server, etcd and
//! this load generator for every create/put load (the three share the machine's cores); and
//! the API server's RSS holding 100,000 small ConfigMaps on etcd against the goal of 1.5× their
//! JSON plus 40 MiB, with the same fill on the embedded store beside it (settled RssAnon of
//! both).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use ferrokube_storage::Storage;
use ferrokube_storage::etcd::{EtcdOptions, EtcdStore};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::{
    Proc, b64, cm, free_port, load, median_list_time, ms, report, reqwest_lite, rss_kib,
    start_ferrokube,
};

/// CPU time (ms, clock ticks of 10 ms) the processes `pids` used together since `before`.
fn cpu_ms(pids: &[u32], before: u64) -> f64 {
    (cpu_total(pids).saturating_sub(before) * 10) as f64
}

fn cpu_total(pids: &[u32]) -> u64 {
    pids.iter().map(|p| crate::figures::cpu_ticks(*p)).sum()
}

/// CPU time of the API server, etcd and this load generator over one load, per operation:
/// on a shared 2-core machine the three compete for the same cores, so what each spends per
/// operation decides the throughput at 32 clients.
struct CpuShare {
    server: Option<u32>,
    etcd: Vec<u32>,
    start: (u64, u64, u64),
}

impl CpuShare {
    fn start(server: Option<u32>, etcd: &[u32]) -> Self {
        let me = std::process::id();
        CpuShare {
            server,
            etcd: etcd.to_vec(),
            start: (
                server.map_or(0, |p| cpu_total(&[p])),
                cpu_total(etcd),
                cpu_total(&[me]),
            ),
        }
    }

    /// Prints `label`: ms per op of each process (the load generator is this process).
    fn report(&self, label: &str, ops: usize) {
        let per = |ms: f64| ms / ops.max(1) as f64;
        let me = std::process::id();
        let server = self.server.map(|p| per(cpu_ms(&[p], self.start.0)));
        let etcd = per(cpu_ms(&self.etcd, self.start.1));
        let client = per(cpu_ms(&[me], self.start.2));
        let total = server.unwrap_or(0.0) + etcd + client;
        let server = server.map_or(String::new(), |s| format!("{s:.3} ms API server + "));
        println!(
            "{label:<44} {server}{etcd:.3} ms etcd + {client:.3} ms load generator (= {total:.3})"
        );
    }
}

/// How many creates (or puts) a load of `clients` makes: 500 and 5,000 (a tenth with
/// `--quick`, but at least 200 at 1 client: fewer make the p50 a coin toss).
fn ops(clients: usize, scale: usize) -> usize {
    if clients == 1 {
        (500 / scale).max(200)
    } else {
        5000 / scale
    }
}

fn p50_ms(lat: &[Duration]) -> f64 {
    crate::percentile(lat, 0.5).as_secs_f64() * 1000.0
}

/// (create 1, create 32, get 1, get 32, list) for one server (`pid`; `etcd`: its members'
/// pids), with the CPU time the server, etcd and this load generator spent per create: a
/// figure the other jobs on a shared machine do not skew as they skew throughput.
async fn measure(
    label: &str,
    client: &Client,
    scale: usize,
    pid: u32,
    etcd: &[u32],
) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for clients in [1usize, 32] {
        let n = ops(clients, scale);
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let server0 = cpu_total(&[pid]);
        let share = CpuShare::start(Some(pid), etcd);
        let (rate, lat) = load(n, clients, move |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &cm(&format!("c{clients}-{i}")))
                    .await?;
                Ok(())
            }
        })
        .await?;
        report(&format!("{label} create, {clients} client(s)"), rate, &lat);
        share.report(&format!("{label} CPU/create, {clients}"), n);
        out.push((format!("create, {clients} client(s)"), rate));
        out.push((format!("create p50 ms, {clients} client(s)"), p50_ms(&lat)));
        if clients == 32 {
            let server = cpu_ms(&[pid], server0);
            out.push(("CPU ms per create (API server)".into(), server / n as f64));
        }
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let (rate, lat) = load(n * 4, clients, move |i| {
            let api = api.clone();
            async move {
                api.get(&format!("c{clients}-{}", i % n)).await?;
                Ok(())
            }
        })
        .await?;
        report(&format!("{label} get, {clients} client(s)"), rate, &lat);
        out.push((format!("get, {clients} client(s)"), rate));
    }
    // Watch: one watcher of a namespace while 32 clients create; events/s until the last one.
    let n = 5000 / scale;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-node-lease");
    let mut stream = api
        .watch(&WatchParams::default().timeout(120), "0")
        .await?
        .boxed();
    let started = Instant::now();
    let writer = tokio::spawn({
        let api = api.clone();
        load(n, 32, move |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &cm(&format!("w{i}")))
                    .await?;
                Ok(())
            }
        })
    });
    let mut seen = 0usize;
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
            Ok(Some(Ok(WatchEvent::Added(o))))
                if o.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with('w')) =>
            {
                seen += 1
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => anyhow::bail!("watch failed: {e}"),
            Ok(None) | Err(_) => anyhow::bail!("watch ended after {seen} of {n} events"),
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    writer.await??;
    println!(
        "{:<44} {rate:.0}/s",
        format!("{label} watch, {n} events to 1 watcher")
    );
    out.push(("watch events delivered".to_string(), rate));
    let n = 10_000 / scale;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    // The namespace's own objects (kube-root-ca.crt) are listed too.
    let before = api.list(&Default::default()).await?.items.len();
    load(n, 32, move |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &cm(&format!("l{i}")))
                .await?;
            Ok(())
        }
    })
    .await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    let median = median_list_time(&api, n + before).await?;
    println!(
        "{:<44} {}",
        format!("{label} list of {n} (median of 5)"),
        ms(median)
    );
    out.push((
        format!("lists of {n} per second"),
        1.0 / median.as_secs_f64(),
    ));
    Ok(out)
}

/// A throw-away etcd cluster of `members` on loopback (killed on drop).
struct EtcdCluster {
    procs: Vec<Proc>,
    endpoints: Vec<String>,
    http: reqwest_lite::Client,
}

impl EtcdCluster {
    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.0.id()).collect()
    }
}

async fn start_etcd_cluster(dir: &Path, members: usize) -> Result<EtcdCluster> {
    let ports: Vec<(u16, u16)> = (0..members)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<Result<_>>()?;
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = Vec::new();
    let mut endpoints = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(dir.join(format!("m{i}")))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args([
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "new",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        procs.push(Proc(child));
        endpoints.push(url);
    }
    let cluster = EtcdCluster {
        procs,
        endpoints,
        http: reqwest_lite::Client::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let url = format!("{}/v3/kv/put", cluster.endpoints[0]);
        let body = json!({"key": b64("/probe"), "value": b64("x")}).to_string();
        if cluster.http.post(&url, body).await.is_ok() {
            return Ok(cluster);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("etcd ({members} members) did not start")
}

/// Raw etcd puts of a ConfigMap-sized value at `clients` concurrency (spread over the
/// members, as the API server's client spreads its requests). Returns (ops/s, p50 ms).
async fn raw_puts(etcd: &EtcdCluster, clients: usize, n: usize) -> Result<(f64, f64)> {
    let value = b64(&serde_json::to_string(&cm("raw"))?);
    let share = CpuShare::start(None, &etcd.pids());
    let (http, eps) = (etcd.http.clone(), etcd.endpoints.clone());
    let (rate, lat) = load(n, clients, move |i| {
        let (http, value) = (http.clone(), value.clone());
        let url = format!("{}/v3/kv/put", eps[i % eps.len()]);
        async move {
            let key = b64(&format!("/raw/configmaps/default/c{clients}-{i}"));
            http.post(&url, json!({"key": key, "value": value}).to_string())
                .await?;
            Ok(())
        }
    })
    .await?;
    let members = etcd.endpoints.len();
    report(
        &format!("raw etcd put ({members} member(s)), {clients}"),
        rate,
        &lat,
    );
    share.report(&format!("raw etcd put ({members}): CPU/put, {clients}"), n);
    Ok((rate, p50_ms(&lat)))
}

/// The storage call of an API create without the API: `EtcdStore::create` (the API server's
/// own gRPC client and transaction: put if the key does not exist) of a ConfigMap's JSON at
/// `clients` concurrency. What the API server adds on top of it is its own cost.
async fn raw_creates(etcd: &EtcdCluster, clients: usize, n: usize) -> Result<(f64, f64)> {
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: etcd.endpoints.clone(),
        prefix: "/rawtxn".into(),
        compaction_interval: None,
        ..EtcdOptions::default()
    })
    .await?;
    let value = Bytes::from(serde_json::to_vec(&cm("raw"))?);
    let share = CpuShare::start(None, &etcd.pids());
    let (rate, lat) = load(n, clients, move |i| {
        let (store, value) = (store.clone(), value.clone());
        async move {
            store
                .create(&format!("/configmaps/default/c{clients}-{i}"), value)
                .await?;
            Ok(())
        }
    })
    .await?;
    let members = etcd.endpoints.len();
    report(
        &format!("EtcdStore::create ({members} member(s)), {clients}"),
        rate,
        &lat,
    );
    share.report(&format!("EtcdStore::create ({members}): CPU, {clients}"), n);
    Ok((rate, p50_ms(&lat)))
}

/// The API server on `etcd`: raw puts first, then the API load; prints API/raw put ratios.
async fn on_etcd(
    tmp: &Path,
    etcd: &EtcdCluster,
    label: &str,
    scale: usize,
) -> Result<Vec<(String, f64)>> {
    let (mut raw, mut txn) = (Vec::new(), Vec::new());
    for clients in [1usize, 32] {
        raw.push(raw_puts(etcd, clients, ops(clients, scale)).await?);
        txn.push(raw_creates(etcd, clients, ops(clients, scale)).await?);
    }
    let flag = format!("--etcd-servers={}", etcd.endpoints.join(","));
    let (server, client, _) = start_ferrokube(tmp, &[flag.as_str()]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = measure(label, &client, scale, server.0.id(), &etcd.pids()).await?;
    let find = |what: String| out.iter().find(|(w, _)| *w == what).map(|(_, v)| *v);
    for ((clients, raw), txn) in [1usize, 32].iter().zip(&raw).zip(&txn) {
        let (Some(api), Some(p50)) = (
            find(format!("create, {clients} client(s)")),
            find(format!("create p50 ms, {clients} client(s)")),
        ) else {
            continue;
        };
        println!(
            "{:<44} {:.2}  (goal >= 0.8; p50 {p50:.2} ms vs {:.2} ms)",
            format!("ratio {label} API create/raw put, {clients}"),
            api / raw.0,
            raw.1
        );
        println!(
            "{:<44} {:.2}  (p50 {p50:.2} ms vs {:.2} ms)",
            format!("ratio {label} API create/EtcdStore::create, {clients}"),
            api / txn.0,
            txn.1
        );
    }
    Ok(out)
}

/// RSS of an API server on etcd holding `n` small ConfigMaps, against 1.5x JSON + 40 MiB.
async fn rss_on_etcd(tmp: &Path, etcd: &EtcdCluster, n: usize) -> Result<Rss> {
    let flag = format!("--etcd-servers={}", etcd.endpoints.join(","));
    let rss = rss_holding(tmp, "on etcd", &[flag.as_str(), "--etcd-prefix=/rss"], n).await?;
    let data_mib = rss.json_mib();
    println!(
        "{:<44} {:.2}x JSON  (goal: RSS <= 1.5x JSON + 40 MiB = {:.0} MiB)",
        "on etcd: (RSS - 40 MiB) / JSON",
        (rss.full_kib as f64 / 1024.0 - 40.0) / data_mib,
        1.5 * data_mib + 40.0
    );
    Ok(rss)
}

/// What an API server's memory was with `n` ConfigMaps.
struct Rss {
    n: usize,
    json_bytes: usize,
    full_kib: u64,
    anon_kib: u64,
}

impl Rss {
    fn json_mib(&self) -> f64 {
        (self.json_bytes * self.n) as f64 / 1048576.0
    }
}

/// Fills a fresh API server (`extra` flags) with `n` small ConfigMaps at 32 clients and
/// reports its RSS: idle, full, settled, and the settled anonymous and file parts.
async fn rss_holding(tmp: &Path, label: &str, extra: &[&str], n: usize) -> Result<Rss> {
    let (server, client, _) = start_ferrokube(tmp, extra).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = server.0.id();
    let idle = rss_kib(pid);
    let idle_anon = status_kib(pid, "RssAnon");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let t = Instant::now();
    load(n, 32, move |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &cm(&format!("rss-{i}")))
                .await?;
            Ok(())
        }
    })
    .await?;
    let fill = t.elapsed();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let json_bytes = serde_json::to_vec(&api.get("rss-0").await?)?.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let full = rss_kib(pid);
    // jemalloc returns the pages the fill's requests freed over ~10 s: the settled figure
    // (and its anonymous part: VmRSS also counts the executable's file pages) is what the
    // objects cost.
    let settled = crate::figures::settled_rss_kib(pid, Duration::from_secs(30)).await;
    let (anon, file) = (status_kib(pid, "RssAnon"), status_kib(pid, "RssFile"));
    let rss = Rss {
        n,
        json_bytes,
        full_kib: full,
        anon_kib: anon,
    };
    println!(
        "{:<44} {:.0} MiB idle (anon {:.0}), {:.0} MiB with {n} ConfigMaps of {json_bytes} B JSON ({:.0} MiB; filled in {:.1} s)",
        format!("{label}: RSS"),
        idle as f64 / 1024.0,
        idle_anon as f64 / 1024.0,
        full as f64 / 1024.0,
        rss.json_mib(),
        fill.as_secs_f64()
    );
    println!(
        "{:<44} {:.0} MiB settled (anon {:.0} MiB + file {:.0} MiB), anon {:.0} B per object over idle",
        format!("{label}: RSS once settled"),
        settled as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0,
        (anon.saturating_sub(idle_anon) * 1024) as f64 / n as f64
    );
    Ok(rss)
}

/// A `/proc/PID/status` field in KiB (`RssAnon`, `RssFile`).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Only the API on one etcd member (creates, gets, raw put ratio) and the RSS figure: the
/// quicker loop for work on the etcd path (`--backends --etcd1`).
pub async fn run_etcd1(tmp: &Path, scale: usize) -> Result<()> {
    let one = start_etcd_cluster(&tmp.join("etcd1"), 1).await?;
    on_etcd(&tmp.join("on-etcd1"), &one, "etcd x1:", scale).await?;
    rss_on_etcd(&tmp.join("rss-etcd1"), &one, 100_000 / scale).await?;
    Ok(())
}

pub async fn run(tmp: &Path, scale: usize) -> Result<()> {
    let embedded = {
        let (server, client, _) = start_ferrokube(&tmp.join("embedded"), &[]).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        measure("embedded:", &client, scale, server.0.id(), &[]).await?
    };
    let n = 100_000 / scale;
    let rss_embedded = rss_holding(&tmp.join("rss-embedded"), "embedded", &[], n).await?;
    let one = start_etcd_cluster(&tmp.join("etcd1"), 1).await?;
    let on_one = on_etcd(&tmp.join("on-etcd1"), &one, "etcd x1:", scale).await?;
    let rss_etcd = rss_on_etcd(&tmp.join("rss-etcd1"), &one, n).await?;
    drop(one);
    println!(
        "{:<44} {:+.0} MiB ({:+.0} B per object)",
        "RssAnon settled, etcd x1 - embedded",
        (rss_etcd.anon_kib as f64 - rss_embedded.anon_kib as f64) / 1024.0,
        (rss_etcd.anon_kib as f64 - rss_embedded.anon_kib as f64) * 1024.0 / n as f64
    );
    let three = start_etcd_cluster(&tmp.join("etcd3"), 3).await?;
    let on_three = on_etcd(&tmp.join("on-etcd3"), &three, "etcd x3:", scale).await?;
    drop(three);
    println!();
    for (((what, a), (_, b)), (_, c)) in embedded.iter().zip(&on_one).zip(&on_three) {
        println!(
            "{:<44} {:.2} (1 member)  {:.2} (3 members)",
            format!("ratio etcd/embedded {what}"),
            b / a,
            c / a
        );
    }
    Ok(())
}

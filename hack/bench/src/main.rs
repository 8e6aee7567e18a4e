//! `hack/bench`: end-to-end figures for ferrokube over HTTPS with the kube-rs client, and the
//! same create/get load against etcd 3.4 (its JSON gateway) in the same run for ratios.
//!
//! `cargo run --release -p ferrokube-bench -- [--quick] [--no-etcd] [--patch] [--ssa] [--backends [--etcd1]] [--admission] [--auth] [--audit]`
//! (`--backends`: the API on the embedded store vs on etcd, see `backends.rs`; `--ssa`:
//! only the server-side apply vs PUT update comparison, see `ssa.rs`) (needs
//! `target/release/ferrokube`; etcd from `hack/install-tools.sh --etcd`). Every loop is bounded
//! in count and time and talks to loopback only. `--patch` runs only the update-vs-strategic-merge
//! patch comparison (`patch_bench.rs`). `--scheduler` runs only the scheduler / simulated-node
//! benchmark (`scheduler_bench.rs`: 100 nodes, 1,000 pods; `--quick`: 10 and 100).
//! `--deployment [--nodes 100] [--replicas 1000]` and `--big-cluster [--nodes 1000] [--pods 30000]
//! [--settle 90] [--split]` run the big-cluster benchmarks (`cluster_bench.rs`).
//! `--figures [--rounds N]` prints every figure of issue 12 in one run with its reference
//! (nginx over TLS for reads, etcd for creates; `figures.rs`). `--crds [--count N] [--props P --rules R]`: the CRD
//! figures of issue 10 (apply → served/discovery/OpenAPI, CR vs ConfigMap, RSS with N CRDs;
//! `crd_bench.rs`). `--start [--count N] [--runs R] [--dir DIR]`: start → `/readyz` empty and
//! with N small ConfigMaps, RSS split after ready, first reads (`start_bench.rs`).
//! `--readpath [--bins A,B] [--rounds 3] [--count 10000] [--watchers 1000] [--kinds raw,typed,h2]`: list (bytes and
//! typed) and watch fan-out figures, binaries alternated round by round (`readpath.rs`).
//! `--soak [--minutes 60] [--sample 60] [--rate 200]`: RSS and CPU every sample under mixed
//! writes, lists and resuming watches, with the RSS slope at the end (`soak.rs`).

mod admission_bench;
mod audit_bench;
mod auth_bench;
mod backends;
mod cluster_bench;
mod crd_bench;
mod figures;
mod patch_bench;
mod readpath;
mod scheduler_bench;
mod soak;
mod start_bench;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, Config};
use serde_json::json;

mod ssa;

struct Opts {
    quick: bool,
    etcd: bool,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The median time of five lists of `api`, each checked to return `n` items.
async fn median_list_time(api: &Api<ConfigMap>, n: usize) -> Result<Duration> {
    let mut lists = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let l = api.list(&ListParams::default()).await?;
        lists.push(t.elapsed());
        if l.items.len() != n {
            bail!("list returned {} items, want {n}", l.items.len());
        }
    }
    lists.sort();
    Ok(lists[2])
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn ferrokube_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERROKUBE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .map(|d| d.join("ferrokube"))
        .unwrap_or_else(|| PathBuf::from("target/release/ferrokube"))
}

/// A running server that is killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The config of the admin kubeconfig the server wrote in `dir`.
async fn config_for(dir: &Path) -> Result<Config> {
    let kc = kube::config::Kubeconfig::read_from(dir.join("admin.kubeconfig"))?;
    Ok(Config::from_custom_kubeconfig(kc, &Default::default()).await?)
}

async fn client_for(dir: &Path) -> Result<Client> {
    Ok(Client::try_from(config_for(dir).await?)?)
}

/// Starts ferrokube and returns it with the time from spawn to `/readyz` 200.
async fn start_ferrokube(dir: &Path, extra: &[&str]) -> Result<(Proc, Client, Duration)> {
    start_ferrokube_bin(&ferrokube_bin(), dir, extra).await
}

/// [`start_ferrokube`] with a given binary.
async fn start_ferrokube_bin(
    bin: &Path,
    dir: &Path,
    extra: &[&str],
) -> Result<(Proc, Client, Duration)> {
    let port = free_port()?;
    let start = Instant::now();
    let child = Command::new(bin)
        .args(["server", "--data-dir"])
        .arg(dir)
        .args(["--secure-port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning ferrokube (build it with cargo build --release)")?;
    let proc = Proc(child);
    let deadline = start + Duration::from_secs(20);
    // One client, built once the kubeconfig names this start's port (it is written
    // atomically): building one per poll took CPU from the starting server on 2 cores.
    let mut client: Option<Client> = None;
    let url = format!(":{port}\n");
    loop {
        if Instant::now() > deadline {
            bail!("ferrokube did not become ready");
        }
        if client.is_none()
            && std::fs::read_to_string(dir.join("admin.kubeconfig")).is_ok_and(|k| k.contains(&url))
        {
            client = client_for(dir).await.ok();
        }
        if let Some(c) = &client {
            let req = http::Request::get("/readyz").body(Vec::new())?;
            if c.request_text(req).await.is_ok() {
                return Ok((proc, c.clone(), start.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
        .unwrap_or_default()
}

/// Runs `total` operations over `clients` concurrent tasks; returns ops/s and sorted latencies.
async fn load<F, Fut>(total: usize, clients: usize, op: F) -> Result<(f64, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while i < total {
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed());
                i += clients;
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    Ok((total as f64 / secs, all))
}

fn report(name: &str, rate: f64, lat: &[Duration]) {
    println!(
        "{name:<44} {rate:>10.0} ops/s   p50 {:>9}   p99 {:>9}",
        ms(percentile(lat, 0.5)),
        ms(percentile(lat, 0.99))
    );
}

async fn metric(c: &Client, name: &str) -> Option<f64> {
    let req = http::Request::get("/metrics").body(Vec::new()).ok()?;
    let text = c.request_text(req).await.ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// etcd 3.4 on loopback, driven through its JSON gateway (`/v3/kv/put`, `/v3/kv/range`).
struct Etcd {
    _proc: Proc,
    url: String,
    http: reqwest_lite::Client,
}

mod reqwest_lite {
    //! A minimal keep-alive HTTP/1.1 JSON client on hyper-util's pooled client.
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client as HClient;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    #[derive(Clone)]
    pub struct Client(HClient<HttpConnector, Full<bytes::Bytes>>);

    impl Client {
        pub fn new() -> Self {
            Client(
                HClient::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(64)
                    .build_http(),
            )
        }

        pub async fn post(&self, url: &str, body: String) -> anyhow::Result<Vec<u8>> {
            let req = http::Request::post(url)
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::from(body)))?;
            let resp = self.0.request(req).await?;
            if !resp.status().is_success() {
                anyhow::bail!("etcd answered {}", resp.status());
            }
            Ok(resp.into_body().collect().await?.to_bytes().to_vec())
        }
    }
}

async fn start_etcd(dir: &Path) -> Result<Etcd> {
    let (client_port, peer_port) = (free_port()?, free_port()?);
    let url = format!("http://127.0.0.1:{client_port}");
    let child = Command::new("etcd")
        .args(["--data-dir"])
        .arg(dir)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
        ])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
        ])
        .args([
            "--initial-cluster",
            &format!("default=http://127.0.0.1:{peer_port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning etcd (hack/install-tools.sh --etcd)")?;
    let etcd = Etcd {
        _proc: Proc(child),
        url,
        http: reqwest_lite::Client::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if etcd
            .http
            .post(
                &format!("{}/v3/kv/range", etcd.url),
                json!({"key": "eA=="}).to_string(),
            )
            .await
            .is_ok()
        {
            return Ok(etcd);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("etcd did not start")
}

/// How a fan-out watcher reads its stream.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watcher {
    /// kube-rs's typed watch: every event decoded into a `ConfigMap` (what a Rust controller
    /// pays; on 2 cores that decoding competes with the server for CPU).
    Typed,
    /// The raw event lines, scanned for the tag and send time without decoding (the server's
    /// part of the latency, with as little client CPU as a real watcher can spend).
    Raw,
    /// kube-rs's typed watch over HTTP/2, as client-go's watches are: the watches share a few
    /// connections ([`H2_STREAMS`] streams each, the server's limit) instead of one
    /// connection each, so an event reaches them in a few writes instead of one per watcher.
    H2Typed,
}

/// Streams per HTTP/2 connection: the server's `SETTINGS_MAX_CONCURRENT_STREAMS` (Go's 250,
/// as kube-apiserver's default); client-go opens another connection past it.
const H2_STREAMS: usize = 250;

impl Watcher {
    /// Every kind, raw first (the server's part of the figure).
    pub(crate) const ALL: [Watcher; 3] = [Watcher::Raw, Watcher::Typed, Watcher::H2Typed];

    /// The kinds named in `list` (`raw`, `typed`, `h2`, comma-separated).
    pub(crate) fn parse_list(list: &str) -> Result<Vec<Watcher>> {
        list.split(',')
            .map(|k| match k {
                "raw" => Ok(Watcher::Raw),
                "typed" => Ok(Watcher::Typed),
                "h2" => Ok(Watcher::H2Typed),
                other => bail!("unknown watcher kind {other:?} (raw, typed, h2)"),
            })
            .collect()
    }

    /// How a figure names the kind.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Watcher::Raw => "raw lines",
            Watcher::Typed => "kube-rs typed",
            Watcher::H2Typed => "kube-rs typed over HTTP/2",
        }
    }
}

/// The clients `watchers` watches of kind `how` use, round robin: `client` (HTTP/1.1, a
/// connection per watch), or for HTTP/2 one client (one connection) per [`H2_STREAMS`]
/// watches, made from the kubeconfig in `dir`.
async fn watch_clients(
    client: &Client,
    dir: &Path,
    watchers: usize,
    how: Watcher,
) -> Result<Vec<Client>> {
    if how != Watcher::H2Typed {
        return Ok(vec![client.clone()]);
    }
    let mut out = Vec::new();
    for _ in 0..watchers.div_ceil(H2_STREAMS).max(1) {
        let cfg = config_for(dir).await?;
        out.push(ferrokube_client::client_http2(
            cfg,
            Some("ferrokube-bench"),
        )?);
    }
    Ok(out)
}

/// The send time (µs since the bench's epoch) carried by a raw watch event line of `tag`:
/// `…"data":{"sent":"<µs>","tag":"<tag>"}…` (keys sorted as the server stores them).
fn raw_sent(line: &[u8], tag: &str) -> Option<u64> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    if !line.starts_with(b"{\"type\":\"ADDED\"") {
        return None;
    }
    find(line, format!("\"tag\":\"{tag}\"").as_bytes())?;
    let at = find(line, b"\"sent\":\"")? + 8;
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// One raw watch (`path`: a watch URL): sends the latency of each tagged ADDED event until
/// `events` were seen.
async fn raw_watch(
    client: Client,
    path: String,
    tag: String,
    events: usize,
    epoch: Instant,
    tx: tokio::sync::mpsc::UnboundedSender<Duration>,
) -> Result<()> {
    use http_body_util::BodyExt;
    let resp = client
        .send(http::Request::get(path).body(kube::client::Body::empty())?)
        .await?;
    if !resp.status().is_success() {
        bail!("watch: {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = epoch.elapsed().as_micros() as u64;
        buf.extend_from_slice(&data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            if let Some(sent) = raw_sent(&buf[start..start + nl], &tag) {
                let _ = tx.send(Duration::from_micros(now.saturating_sub(sent)));
                seen += 1;
                if seen == events {
                    return Ok(());
                }
            }
            start += nl + 1;
        }
        buf.drain(..start);
    }
    Ok(())
}

/// `watchers` watches of ConfigMaps in `wns`, then `events` creates 20 ms apart, each carrying
/// its send time: returns the sorted delivery latencies, how many arrived and how many should.
async fn watch_fanout(
    client: &Client,
    dir: &Path,
    wns: &str,
    watchers: usize,
    events: usize,
) -> Result<(Vec<Duration>, usize, usize)> {
    watch_fanout_with(client, dir, wns, watchers, events, Watcher::Typed).await
}

/// [`watch_fanout`] with the watchers of kind `how` (`dir`: the server's data directory, whose
/// kubeconfig HTTP/2 watchers are made from).
pub(crate) async fn watch_fanout_with(
    client: &Client,
    dir: &Path,
    wns: &str,
    watchers: usize,
    events: usize,
    how: Watcher,
) -> Result<(Vec<Duration>, usize, usize)> {
    let tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    // Watch from the collection's current revision, as a controller does after its list (from
    // "0" every watcher would first receive every ConfigMap already in the namespace).
    let rv = Api::<ConfigMap>::namespaced(client.clone(), wns)
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let epoch = Instant::now();
    let clients = watch_clients(client, dir, watchers, how).await?;
    let mut handles = Vec::new();
    for w in 0..watchers {
        let client = &clients[w % clients.len()];
        if how == Watcher::Raw {
            let path = format!(
                "/api/v1/namespaces/{wns}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=120"
            );
            let w = raw_watch(client.clone(), path, tag.clone(), events, epoch, tx.clone());
            handles.push(tokio::spawn(w));
            continue;
        }
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), wns);
        let tx = tx.clone();
        let tag = tag.clone();
        let rv = rv.clone();
        handles.push(tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().timeout(120), &rv)
                .await?
                .boxed();
            let mut seen = 0;
            while let Some(ev) = stream.try_next().await? {
                if let WatchEvent::Added(o) = ev {
                    let Some(d) = o.data.as_ref().filter(|d| d.get("tag") == Some(&tag)) else {
                        continue;
                    };
                    let sent: u64 = d.get("sent").and_then(|s| s.parse().ok()).unwrap_or(0);
                    let now = epoch.elapsed().as_micros() as u64;
                    let _ = tx.send(Duration::from_micros(now.saturating_sub(sent)));
                    seen += 1;
                    if seen == events {
                        break;
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), wns);
    for i in 0..events {
        let sent = epoch.elapsed().as_micros() as u64;
        let obj: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("w{tag}-{i}")},
            "data": {"sent": sent.to_string(), "tag": tag},
        }))?;
        api.create(&PostParams::default(), &obj).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lat.len() < watchers * events && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(d)) => lat.push(d),
            _ => break,
        }
    }
    for h in handles {
        h.abort();
    }
    lat.sort();
    let delivered = lat.len();
    Ok((lat, delivered, watchers * events))
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let opts = Opts {
        quick: args.iter().any(|a| a == "--quick"),
        etcd: !args.iter().any(|a| a == "--no-etcd"),
    };
    let scale = if opts.quick { 10 } else { 1 };
    let tmp = std::env::temp_dir().join(format!("ferrokube-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    if args.iter().any(|a| a == "--patch") {
        let result = patch_bench::run(&tmp, scale).await;
        let _ = std::fs::remove_dir_all(&tmp);
        return result;
    }
    if args.iter().any(|a| a == "--admission") {
        let r = admission_bench::run(&tmp, opts.quick).await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--audit") {
        let r = audit_bench::run(&tmp, opts.quick).await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--auth") {
        let r = auth_bench::run(&tmp, opts.quick).await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--scheduler-prequeued") {
        let r = scheduler_bench::run_prequeued(&tmp, 100, 1000).await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--scheduler") {
        let (nodes, pods) = if opts.quick { (10, 100) } else { (100, 1000) };
        let mut r = scheduler_bench::run(&tmp, nodes, pods).await;
        if r.is_ok() {
            println!();
            r = scheduler_bench::run_prequeued(&tmp, nodes, pods).await;
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    let num = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default)
    };
    if args.iter().any(|a| a == "--deployment") {
        let r =
            cluster_bench::deployment_run(&tmp, num("--nodes", 100), num("--replicas", 1000)).await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--big-cluster") {
        let r = cluster_bench::big_cluster_run(
            &tmp,
            num("--nodes", 1000),
            num("--pods", 30000),
            num("--settle", 90) as u64,
            args.iter().any(|a| a == "--split"),
        )
        .await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--backends") {
        let r = if args.iter().any(|a| a == "--etcd1") {
            backends::run_etcd1(&tmp, scale).await
        } else {
            backends::run(&tmp, scale).await
        };
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--readpath") {
        let bins: Vec<PathBuf> = args
            .iter()
            .position(|a| a == "--bins")
            .and_then(|i| args.get(i + 1))
            .map(|b| b.split(',').map(PathBuf::from).collect())
            .unwrap_or_else(|| vec![ferrokube_bin()]);
        let r = readpath::run(
            &tmp,
            &bins,
            num("--rounds", 3),
            num("--count", 10_000),
            num("--watchers", 1000),
            &Watcher::parse_list(
                args.iter()
                    .position(|a| a == "--kinds")
                    .and_then(|i| args.get(i + 1))
                    .map_or("raw,typed,h2", String::as_str),
            )?,
        )
        .await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--soak") {
        let r = soak::run(
            &tmp,
            num("--minutes", 60) as u64,
            num("--sample", 60) as u64,
            num("--rate", 200) as u64,
        )
        .await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--figures") {
        let rounds = args
            .iter()
            .position(|a| a == "--rounds")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(2);
        let r = figures::run(&tmp, opts.quick, rounds).await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--start") {
        let dir = args
            .iter()
            .position(|a| a == "--dir")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from);
        let r = start_bench::run(
            &tmp,
            dir.as_deref(),
            num("--count", 100_000),
            num("--runs", 5),
        )
        .await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--crds") {
        let count = args
            .iter()
            .position(|a| a == "--count")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(200);
        let arg = |name: &str, default: usize| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1)?.parse().ok())
                .unwrap_or(default)
        };
        let shape = (arg("--props", 50), arg("--rules", 5));
        let r = crd_bench::run(&tmp, opts.quick, count, shape).await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }
    if args.iter().any(|a| a == "--ssa") {
        let r = ssa::run(&tmp, opts.quick).await;
        let _ = std::fs::remove_dir_all(&tmp);
        return r;
    }

    // Startup and idle RSS.
    let mut starts = Vec::new();
    for i in 0..3 {
        let (_p, _c, ready) = start_ferrokube(&tmp.join(format!("start{i}")), &[]).await?;
        starts.push(ready);
    }
    starts.sort();
    let dir = tmp.join("main");
    let (server, client, _) = start_ferrokube(&dir, &["--etcd-compaction-interval", "5"]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_2s = rss_kib(server.0.id());
    // Idle RSS once the allocator has handed back what start-up work (the OpenAPI build, the
    // schema tables) freed: jemalloc returns dirty pages over ~10 s, so sample at 15 s.
    tokio::time::sleep(Duration::from_secs(13)).await;
    let idle = rss_kib(server.0.id());
    println!(
        "{:<44} {}",
        "start to /readyz 200 (median of 3)",
        ms(starts[1])
    );
    println!(
        "{:<44} {:.1} MiB (2 s after ready: {:.1} MiB)",
        "idle RSS (15 s after ready)",
        idle as f64 / 1024.0,
        rss_2s as f64 / 1024.0
    );

    // Creates and gets, 1 and 32 clients.
    let ns = "default";
    let mut ours = Vec::new();
    for clients in [1usize, 32] {
        let n = if clients == 1 {
            500 / scale
        } else {
            5000 / scale
        };
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let (rate, lat) = load(n, clients, move |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &cm(&format!("c{clients}-{i}")))
                    .await?;
                Ok(())
            }
        })
        .await?;
        report(
            &format!("ferrokube create, {clients} client(s)"),
            rate,
            &lat,
        );
        ours.push(("create", clients, rate));
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let (rate, lat) = load(n * 4, clients, move |i| {
            let api = api.clone();
            async move {
                api.get(&format!("c{clients}-{}", i % n)).await?;
                Ok(())
            }
        })
        .await?;
        report(&format!("ferrokube get, {clients} client(s)"), rate, &lat);
        ours.push(("get", clients, rate));
    }

    // List of 10,000 configmaps.
    let list_ns = "kube-public";
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), list_ns);
    let n = 10_000 / scale;
    load(n, 32, move |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &cm(&format!("l{i}")))
                .await?;
            Ok(())
        }
    })
    .await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), list_ns);
    // The namespace also holds its kube-root-ca.crt (the root-CA publisher's).
    let median = median_list_time(&api, n + 1).await?;
    println!(
        "{:<44} {}",
        format!("list of {} configmaps (median of 5)", n + 1),
        ms(median)
    );

    // Watch delivery latency with 1,000 watchers.
    let watchers = 1000 / scale;
    let (lat, delivered, want) =
        watch_fanout(&client, &dir, "kube-node-lease", watchers, 50).await?;
    println!(
        "{:<44} p50 {}   p99 {}   delivered {delivered}/{want}",
        format!("watch delivery, {watchers} watchers"),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
    );

    // RSS with 100,000 small objects.
    let big = 100_000 / scale;
    let bns = "kube-system";
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), bns);
    let (rate, _) = load(big, 32, move |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &cm(&format!("o{i}")))
                .await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "{:<44} {:.1} MiB (loaded at {rate:.0} creates/s)",
        format!("RSS with {big} more configmaps"),
        rss_kib(server.0.id()) as f64 / 1024.0
    );

    // Lease churn: 1,000 leases renewed 360 times (one hour at 10 s renewals), compressed.
    let leases = 1000 / scale;
    let renewals = if opts.quick { 10 } else { 60 };
    let api: Api<Lease> = Api::namespaced(client.clone(), "default");
    load(leases, 32, move |i| {
        let api = api.clone();
        async move {
            let l: Lease = serde_json::from_value(json!({"metadata": {"name": format!("lease-{i}")}, "spec": {"holderIdentity": "bench", "leaseDurationSeconds": 40}}))?;
            api.create(&PostParams::default(), &l).await?;
            Ok(())
        }
    })
    .await?;
    let size_before = metric(&client, "apiserver_storage_size_bytes")
        .await
        .unwrap_or(0.0);
    let api: Api<Lease> = Api::namespaced(client.clone(), "default");
    let churn_start = Instant::now();
    let (rate, _) = load(leases * renewals, 32, move |i| {
        let api = api.clone();
        async move {
            let name = format!("lease-{}", i % leases);
            let patch =
                json!({"spec": {"renewTime": format!("2026-01-01T00:00:{:02}.000000Z", i % 60)}});
            api.patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    let churn_secs = churn_start.elapsed().as_secs_f64();
    let size_peak = metric(&client, "apiserver_storage_size_bytes")
        .await
        .unwrap_or(0.0);
    // Two compaction periods (5 s each) so everything churned is below the compaction point.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let size_after = metric(&client, "apiserver_storage_size_bytes")
        .await
        .unwrap_or(0.0);
    let compaction = metric(
        &client,
        "ferrokube_storage_compaction_last_duration_seconds",
    )
    .await
    .unwrap_or(0.0);
    println!(
        "{:<44} {:.0} renewals/s over {:.1} s; store {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after compaction (last compaction {:.0} ms)",
        format!("lease churn {leases} x {renewals}"),
        rate,
        churn_secs,
        size_before / 1048576.0,
        size_peak / 1048576.0,
        size_after / 1048576.0,
        compaction * 1000.0
    );
    drop(server);

    // etcd 3.4, same create/get load, same run.
    if opts.etcd {
        let etcd = start_etcd(&tmp.join("etcd")).await?;
        for clients in [1usize, 32] {
            let n = if clients == 1 {
                500 / scale
            } else {
                5000 / scale
            };
            let (http, url) = (etcd.http.clone(), etcd.url.clone());
            let (rate, lat) = load(n, clients, move |i| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let key = b64(&format!("/registry/configmaps/default/c{clients}-{i}"));
                    let body = json!({"key": key, "value": b64("{\"data\":{\"k\":\"v\"}}")});
                    http.post(&format!("{url}/v3/kv/put"), body.to_string())
                        .await?;
                    Ok(())
                }
            })
            .await?;
            report(&format!("etcd put, {clients} client(s)"), rate, &lat);
            if let Some((_, _, r)) = ours
                .iter()
                .find(|(k, c, _)| *k == "create" && *c == clients)
            {
                println!(
                    "{:<44} {:.2}",
                    format!("ratio ferrokube/etcd creates, {clients}"),
                    r / rate
                );
            }
            let (http, url) = (etcd.http.clone(), etcd.url.clone());
            let (rate, lat) = load(n * 4, clients, move |i| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let key = b64(&format!(
                        "/registry/configmaps/default/c{clients}-{}",
                        i % n
                    ));
                    http.post(
                        &format!("{url}/v3/kv/range"),
                        json!({"key": key}).to_string(),
                    )
                    .await?;
                    Ok(())
                }
            })
            .await?;
            report(
                &format!("etcd range (get), {clients} client(s)"),
                rate,
                &lat,
            );
            if let Some((_, _, r)) = ours.iter().find(|(k, c, _)| *k == "get" && *c == clients) {
                println!(
                    "{:<44} {:.2}",
                    format!("ratio ferrokube/etcd gets, {clients}"),
                    r / rate
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

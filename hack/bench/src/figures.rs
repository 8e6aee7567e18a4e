//! `--figures`: every figure of issue 12 in one run, each next to its reference where one
//! exists (nginx over TLS serving the same bytes for reads, etcd's put for durable creates),
//! with `--rounds N` back-to-back repetitions so the spread shows.
//!
//! Needs nginx (`hack/install-tools.sh --nginx`) and etcd (`--etcd`); without nginx the read
//! reference is skipped with a note. The load loop is the same for ferrokube and nginx: kube-rs's
//! client (hyper, rustls), `CONNS` concurrent tasks, keep-alive, for a fixed duration.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::{Client, Config};
use serde_json::json;

use crate::{
    Proc, Watcher, b64, load, median_list_time, metric, ms, percentile, rss_kib, start_etcd,
    start_ferrokube, watch_fanout_with,
};

const CONNS: usize = 32;

/// `utime + stime` of `pid` in clock ticks (USER_HZ, 100/s on Linux).
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// `write_bytes` of `/proc/PID/io` (bytes the process caused to be sent to the disk).
fn disk_write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `RssAnon` and `RssFile` of `pid` in KiB (heap vs. the executable's own mapped pages).
pub(crate) fn rss_split_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("RssAnon:"), field("RssFile:"))
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Lowest RSS once it stops falling (jemalloc returns freed pages over ~10 s): sampled every
/// 500 ms until no sample of the last 3 s is 1% below the earlier minimum, at most `max`.
pub(crate) async fn settled_rss_kib(pid: u32, max: Duration) -> u64 {
    let deadline = Instant::now() + max;
    let mut samples = vec![rss_kib(pid)];
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        samples.push(rss_kib(pid));
        let n = samples.len();
        if n > 6 {
            let before = samples[..n - 6].iter().copied().min().unwrap_or(0);
            let recent = samples[n - 6..].iter().copied().min().unwrap_or(0);
            if recent as f64 >= before as f64 * 0.99 || Instant::now() > deadline {
                break;
            }
        }
    }
    samples.into_iter().min().unwrap_or(0)
}

/// Idle CPU (% of one core) and fsyncs and disk bytes written per minute, over `window`.
async fn idle_cost(client: &Client, pid: u32, window: Duration) -> (f64, f64, f64) {
    let fs0 = metric(client, "ferrokube_storage_fsyncs_total")
        .await
        .unwrap_or(0.0);
    let (t0, w0, start) = (cpu_ticks(pid), disk_write_bytes(pid), Instant::now());
    tokio::time::sleep(window).await;
    let (t1, w1, secs) = (
        cpu_ticks(pid),
        disk_write_bytes(pid),
        start.elapsed().as_secs_f64(),
    );
    let fs1 = metric(client, "ferrokube_storage_fsyncs_total")
        .await
        .unwrap_or(0.0);
    let per_min = 60.0 / secs;
    (
        (t1 - t0) as f64 / 100.0 / secs * 100.0,
        (fs1 - fs0) * per_min,
        (w1 - w0) as f64 * per_min,
    )
}

/// GETs `path` on `client` from `CONNS` tasks for `dur`; returns requests/s and latencies.
async fn get_loop(client: &Client, path: &str, dur: Duration) -> Result<(f64, Vec<Duration>)> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (client, path, done) = (client.clone(), path.to_owned(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < dur {
                let t = Instant::now();
                let req = http::Request::get(&path).body(Vec::new())?;
                client.request_text(req).await?;
                lat.push(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    Ok((done.load(Ordering::Relaxed) as f64 / secs, all))
}

/// nginx serving `body` at `path` over TLS with the given certificate, on a free port.
fn start_nginx(
    dir: &Path,
    path: &str,
    body: &[u8],
    cert: &Path,
    key: &Path,
) -> Result<(Proc, u16)> {
    let port = crate::free_port()?;
    let root = dir.join("root");
    let file = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().context("path has a parent")?)?;
    std::fs::write(&file, body)?;
    let conf = format!(
        "worker_processes 2;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\ndaemon off;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 60s;\n\
         client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;\n\
         uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;\n\
         server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};\n\
         ssl_protocols TLSv1.3; root {root}; default_type application/json; }} }}\n",
        dir = dir.display(),
        cert = cert.display(),
        key = key.display(),
        root = root.display(),
    );
    std::fs::create_dir_all(dir.join("tmp"))?;
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let bin = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|b| Path::new(b).exists())
        .unwrap_or("nginx");
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning nginx (hack/install-tools.sh --nginx)")?;
    Ok((Proc(child), port))
}

/// A client for nginx: the admin kubeconfig's CA (nginx serves ferrokube's own serving
/// certificate) at nginx's port, so both sides run the same client stack.
async fn nginx_client(dir: &Path, port: u16) -> Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(dir.join("admin.kubeconfig"))?;
    let mut cfg = Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    cfg.cluster_url = format!("https://127.0.0.1:{port}").parse()?;
    cfg.auth_info = Default::default();
    Ok(Client::try_from(cfg)?)
}

pub(crate) fn small_cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {"key": "some-value", "other": "a small piece of configuration"}}),
    )
    .unwrap_or_default()
}

fn large_cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {"blob": "x".repeat(10_000)}}),
    )
    .unwrap_or_default()
}

/// Creates `n` ConfigMaps made by `make` in `ns`; returns creates/s.
pub(crate) async fn fill(
    client: &Client,
    ns: &str,
    n: usize,
    make: fn(&str) -> ConfigMap,
) -> Result<f64> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let (rate, _) = load(n, CONNS, move |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &make(&format!("o{i:06}")))
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate)
}

/// Average JSON size of the objects of `ns` as served (list body / items).
async fn json_size(client: &Client, ns: &str, n: usize) -> Result<f64> {
    let req = http::Request::get(format!("/api/v1/namespaces/{ns}/configmaps")).body(Vec::new())?;
    let body = client.request_text(req).await?;
    Ok(body.len() as f64 / n as f64)
}

fn row(name: &str, value: String) {
    println!("{name:<46} {value}");
}

/// The `--figures` run.
pub async fn run(tmp: &Path, quick: bool, rounds: usize) -> Result<()> {
    let scale = if quick { 10 } else { 1 };
    let idle_window = Duration::from_secs(if quick { 10 } else { 60 });
    let get_dur = Duration::from_secs(if quick { 2 } else { 5 });

    let mut empty_starts = Vec::new();
    for i in 0..3 {
        let (_p, _c, ready) = start_ferrokube(&tmp.join(format!("start{i}")), &[]).await?;
        empty_starts.push(ready);
    }
    empty_starts.sort();
    row(
        "start → /readyz 200, empty (median of 3)",
        ms(empty_starts[1]),
    );

    let dir = tmp.join("main");
    let (server, client, _) = start_ferrokube(&dir, &[]).await?;
    let pid = server.0.id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_1s, (anon_1s, file_1s)) = (rss_kib(pid), rss_split_kib(pid));
    let (cpu, fsyncs, bytes) = idle_cost(&client, pid, idle_window).await;
    let (rss_idle, (anon_idle, file_idle)) = (rss_kib(pid), rss_split_kib(pid));
    row(
        "idle RSS 1 s after ready",
        format!(
            "{:.1} MiB (anon {:.1}, file {:.1})",
            mib(rss_1s),
            mib(anon_1s),
            mib(file_1s)
        ),
    );
    row(
        &format!("idle RSS {} s after ready", idle_window.as_secs() + 1),
        format!(
            "{:.1} MiB (anon {:.1}, file {:.1})",
            mib(rss_idle),
            mib(anon_idle),
            mib(file_idle)
        ),
    );
    row(
        &format!("idle over {} s, no nodes", idle_window.as_secs()),
        format!(
            "{cpu:.2}% of a core, {fsyncs:.1} fsyncs/min, {:.1} KiB written/min",
            bytes / 1024.0
        ),
    );

    // Reads: GET one ConfigMap, ours over mTLS, nginx the same bytes over TLS.
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &small_cm("read-me"))
        .await?;
    let path = "/api/v1/namespaces/default/configmaps/read-me";
    let body = client
        .request_text(http::Request::get(path).body(Vec::new())?)
        .await?;
    let pki = dir.join("pki");
    let (cert, key) = (pki.join("serving.crt"), pki.join("serving.key"));
    let nginx = if cert.exists() && key.exists() {
        match start_nginx(&tmp.join("nginx"), path, body.as_bytes(), &cert, &key) {
            Ok((p, port)) => {
                let c = nginx_client(&dir, port).await?;
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let r = c
                        .request_text(http::Request::get(path).body(Vec::new())?)
                        .await;
                    match r {
                        Ok(b) if b == body => break Some((p, c)),
                        _ if Instant::now() > deadline => bail!("nginx did not serve {path}"),
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
            Err(e) => {
                println!("(no nginx reference: {e:#})");
                None
            }
        }
    } else {
        println!("(no nginx reference: {} not found)", cert.display());
        None
    };
    let mut ratios = Vec::new();
    for r in 0..rounds {
        let (ours, lat) = get_loop(&client, path, get_dur).await?;
        let line = format!(
            "{ours:>8.0}/s p50 {} p99 {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
        if let Some((_, nc)) = &nginx {
            let (theirs, nlat) = get_loop(nc, path, get_dur).await?;
            ratios.push(ours / theirs);
            row(
                &format!(
                    "GET 1 configmap ({} B), {CONNS} conns, round {r}",
                    body.len()
                ),
                format!(
                    "ferrokube mTLS {line} | nginx TLS {theirs:>8.0}/s p50 {} → {:.2}x",
                    ms(percentile(&nlat, 0.5)),
                    ours / theirs
                ),
            );
        } else {
            row(&format!("GET 1 configmap, {CONNS} conns, round {r}"), line);
        }
    }
    drop(nginx);

    // Durable creates against etcd's put, back to back per round.
    let etcd = start_etcd(&tmp.join("etcd")).await.ok();
    let n = 5000 / scale;
    for r in 0..rounds {
        let ns = "default";
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let (ours, _) = load(n, CONNS, move |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &small_cm(&format!("c{r}-{i}")))
                    .await?;
                Ok(())
            }
        })
        .await?;
        let theirs = match &etcd {
            Some(etcd) => {
                let (http, url) = (etcd.http.clone(), etcd.url.clone());
                let value = b64(&serde_json::to_string(&small_cm("x"))?);
                let (rate, _) = load(n, CONNS, move |i| {
                    let (http, url, value) = (http.clone(), url.clone(), value.clone());
                    async move {
                        let key = b64(&format!("/registry/configmaps/default/c{r}-{i}"));
                        let body = json!({"key": key, "value": value});
                        http.post(&format!("{url}/v3/kv/put"), body.to_string())
                            .await?;
                        Ok(())
                    }
                })
                .await?;
                format!("etcd put {rate:>7.0}/s → {:.2}x", ours / rate)
            }
            None => "no etcd (hack/install-tools.sh --etcd)".into(),
        };
        row(
            &format!("durable creates, {CONNS} clients, round {r}"),
            format!("ferrokube {ours:>7.0}/s | {theirs}"),
        );
    }
    drop(etcd);

    // Memory per object: 100,000 small, then 10,000 large.
    for (ns, count, make, what) in [
        (
            "kube-system",
            100_000 / scale,
            small_cm as fn(&str) -> ConfigMap,
            "small",
        ),
        (
            "kube-public",
            10_000 / scale,
            large_cm as fn(&str) -> ConfigMap,
            "large",
        ),
    ] {
        let before = settled_rss_kib(pid, Duration::from_secs(30)).await;
        let rate = fill(&client, ns, count, make).await?;
        let filled = Instant::now();
        let size = json_size(&client, ns, count).await?;
        let after = settled_rss_kib(pid, Duration::from_secs(30)).await;
        let per = after.saturating_sub(before) as f64 * 1024.0 / count as f64;
        row(
            &format!("RSS per object, {count} {what}"),
            format!(
                "{per:.0} B for {size:.0} B of JSON = {:.2}x ({:.1} → {:.1} MiB; filled at {rate:.0}/s)",
                per / size,
                mib(before),
                mib(after)
            ),
        );
        // Steady state: the fill's events have left the watch cache's rings (75 s window).
        tokio::time::sleep_until((filled + Duration::from_secs(80)).into()).await;
        let steady = settled_rss_kib(pid, Duration::from_secs(30)).await;
        let per = steady.saturating_sub(before) as f64 * 1024.0 / count as f64;
        row(
            "  same, > 75 s after the fill (events aged out)",
            format!("{per:.0} B = {:.2}x ({:.1} MiB)", per / size, mib(steady)),
        );
    }

    // List of 10,000 (the large namespace holds 10,000 in a full run: use the small ones).
    let list_ns = "kube-node-lease";
    let ln = 10_000 / scale;
    fill(&client, list_ns, ln, small_cm).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), list_ns);
    for r in 0..rounds {
        // The namespace also holds its kube-root-ca.crt.
        let path = format!("/api/v1/namespaces/{list_ns}/configmaps");
        let bytes = crate::readpath::median_bytes_time(&client, &path, ln * 100).await?;
        row(
            &format!("list of {} configmaps (median of 5), round {r}", ln + 1),
            format!(
                "to the last byte {} | typed (kube-rs decoding) {}",
                ms(bytes),
                ms(median_list_time(&api, ln + 1).await?)
            ),
        );
    }

    // Watch fan-out.
    let watchers = 1000 / scale;
    for r in 0..rounds {
        for how in Watcher::ALL {
            let (lat, delivered, want) =
                watch_fanout_with(&client, &dir, "default", watchers, 50, how).await?;
            row(
                &format!(
                    "watch delivery, {watchers} watchers ({}), round {r}",
                    how.label()
                ),
                format!(
                    "p50 {} p99 {} (delivered {delivered}/{want})",
                    ms(percentile(&lat, 0.5)),
                    ms(percentile(&lat, 0.99))
                ),
            );
        }
    }

    // Start with the objects on disk.
    let objects = metric(&client, "ferrokube_watch_cache_objects")
        .await
        .unwrap_or(0.0);
    drop(client);
    drop(server);
    let mut starts = Vec::new();
    for _ in 0..3 {
        let (_p, _c, ready) = start_ferrokube(&dir, &[]).await?;
        starts.push(ready);
    }
    starts.sort();
    row(
        &format!("start → /readyz 200 with {objects:.0} objects"),
        format!(
            "median {} (min {}, max {})",
            ms(starts[1]),
            ms(starts[0]),
            ms(starts[2])
        ),
    );

    // Idle with 3 simulated nodes.
    let (server, client, _) =
        start_ferrokube(&tmp.join("nodes"), &["--nodes", "3", "--runtime=simulated"]).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu, fsyncs, bytes) = idle_cost(&client, server.0.id(), idle_window).await;
    row(
        &format!("idle over {} s, 3 simulated nodes", idle_window.as_secs()),
        format!(
            "{cpu:.2}% of a core, {fsyncs:.1} fsyncs/min, {:.1} KiB written/min, RSS {:.1} MiB",
            bytes / 1024.0,
            rss_kib(server.0.id()) as f64 / 1024.0
        ),
    );
    Ok(())
}

//! Big-cluster benchmarks on simulated nodes, each against one fresh `ferrokube server
//! --nodes=N --runtime=simulated` (API server, controllers, scheduler and the N node agents are
//! one process, so its CPU time and RSS are the whole control plane's):
//!
//! - `--deployment [--nodes 100] [--replicas 1000]`: one Deployment of R replicas; time from the
//!   create to all pods Running (and to `availableReplicas == R`).
//! - `--big-cluster [--nodes 1000] [--pods 30000]`: M pods as Deployments of at most 1,000
//!   replicas; time to all Running, peak RSS, CPU time, and the node Lease renewals observed on a
//!   watch of `kube-node-lease` (interval between consecutive `renewTime`s of a Lease, its p50/p99/
//!   max, how many exceeded the 40 s node-monitor grace period, and the stalest Lease at the end);
//!   memory per pod over the idle RSS at the peak, at the end and after `--settle S` more seconds
//!   (default 90: longer than the watch cache's 75 s event window, so the rollout's events have
//!   left the rings). With `--split` the controllers run as their own `ferrokube controllers`
//!   process (the server gets every controller turned off), so their CPU and RSS are reported
//!   apart from the API server's, the scheduler's and the node agents'.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::scheduler_bench::cpu_seconds;
use crate::{Proc, ferrokube_bin, rss_kib, start_ferrokube};

/// The node-monitor grace period of the node lifecycle controller.
const GRACE: f64 = 40.0;
/// The node agents' renewal period.
const RENEW: f64 = 10.0;

/// RSS and CPU samples of a process, taken every 500 ms by a background task.
struct Sampler {
    samples: Arc<Mutex<Vec<(f64, u64, f64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let s = samples.clone();
        let t0 = Instant::now();
        let task = tokio::spawn(async move {
            loop {
                let sample = (t0.elapsed().as_secs_f64(), rss_kib(pid), cpu_seconds(pid));
                if let Ok(mut v) = s.lock() {
                    v.push(sample);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Sampler { samples, task }
    }

    /// (peak RSS KiB, CPU seconds from the first to the last sample, seconds covered).
    fn stop(self) -> (u64, f64, f64) {
        self.task.abort();
        let v = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        let peak = v.iter().map(|s| s.1).max().unwrap_or(0);
        match (v.first(), v.last()) {
            (Some(a), Some(b)) => (peak, b.2 - a.2, b.0 - a.0),
            _ => (peak, 0.0, 0.0),
        }
    }
}

/// Renewal intervals seen on the node Lease watch.
#[derive(Default)]
struct LeaseStats {
    /// Lease → last renewTime (ms since the epoch).
    last: HashMap<String, i64>,
    /// Seconds between consecutive renewTimes of one Lease.
    intervals: Vec<f64>,
}

fn lease_monitor(client: kube::Client) -> (Arc<Mutex<LeaseStats>>, tokio::task::JoinHandle<()>) {
    let stats = Arc::new(Mutex::new(LeaseStats::default()));
    let s = stats.clone();
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        let mut w = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = w.next().await {
            let l = match ev {
                Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) => l,
                _ => continue,
            };
            let name = l.metadata.name.clone().unwrap_or_default();
            let Some(t) = l
                .spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.as_millisecond())
            else {
                continue;
            };
            if let Ok(mut st) = s.lock()
                && let Some(prev) = st.last.insert(name, t)
                && t > prev
            {
                st.intervals.push((t - prev) as f64 / 1000.0);
            }
        }
    });
    (stats, task)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn wait_nodes(client: &kube::Client, nodes: usize, limit: Duration) -> Result<Duration> {
    let api: Api<Node> = Api::all(client.clone());
    let t0 = Instant::now();
    loop {
        let ready = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| is_ready(n))
            .count();
        if ready >= nodes {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > limit {
            bail!("only {ready}/{nodes} nodes Ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn deployment(name: &str, replicas: usize) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
            },
        },
    }))?)
}

/// Polls the Deployments' status until every replica is available; returns the elapsed time.
async fn wait_available(
    client: &kube::Client,
    total: usize,
    start: Instant,
    limit: Duration,
) -> Result<Duration> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut last_print = Instant::now();
    loop {
        let avail: i32 = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter_map(|d| d.status.as_ref().and_then(|s| s.available_replicas))
            .sum();
        if avail as usize >= total {
            return Ok(start.elapsed());
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {:.0} s: {avail}/{total} available (load {})",
                start.elapsed().as_secs_f64(),
                load()
            );
            last_print = Instant::now();
        }
        if start.elapsed() > limit {
            bail!("{avail}/{total} replicas available after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Counts the Running pods with one (paginated) list.
async fn running_pods(client: &kube::Client) -> Result<usize> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut lp = ListParams::default().limit(5000);
    let mut n = 0;
    loop {
        let l = api.list(&lp).await?;
        n += l
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        match l.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(n),
        }
    }
}

/// `--deployment`: one Deployment of `replicas` on `nodes` nodes.
pub async fn deployment_run(tmp: &Path, nodes: usize, replicas: usize) -> Result<()> {
    let dir = tmp.join("deployment");
    let flag = format!("--nodes={nodes}");
    let (proc_, client, _) = start_ferrokube(&dir, &[&flag, "--runtime=simulated"]).await?;
    let pid = proc_.0.id();
    let nodes_ready = wait_nodes(&client, nodes, Duration::from_secs(300)).await?;
    let sampler = Sampler::start(pid);
    let load_before = load();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    api.create(&PostParams::default(), &deployment("bench", replicas)?)
        .await?;
    let available = wait_available(&client, replicas, start, Duration::from_secs(600)).await?;
    let running = running_pods(&client).await?;
    let (peak, cpu, span) = sampler.stop();
    println!("| {replicas}-replica Deployment on {nodes} simulated nodes | value |");
    println!("|---|---|");
    println!(
        "| load average before / after | {load_before} / {} |",
        load()
    );
    println!(
        "| {nodes} nodes Ready after | {:.1} s |",
        nodes_ready.as_secs_f64()
    );
    println!(
        "| create → availableReplicas = {replicas} | {:.2} s |",
        available.as_secs_f64()
    );
    println!("| pods Running then | {running}/{replicas} |");
    println!("| server peak RSS | {} MiB |", peak / 1024);
    println!(
        "| server CPU time meanwhile | {cpu:.1} s ({:.0}% of one core) |",
        100.0 * cpu / span.max(0.001)
    );
    drop(proc_);
    Ok(())
}

/// `--big-cluster`: `pods` pods (Deployments of ≤ 1,000) on `nodes` nodes.
pub async fn big_cluster_run(
    tmp: &Path,
    nodes: usize,
    pods: usize,
    settle: u64,
    split: bool,
) -> Result<()> {
    let dir = tmp.join("big-cluster");
    let flag = format!("--nodes={nodes}");
    let none = ferrokube_controllers::Selection::KNOWN
        .iter()
        .map(|c| format!("-{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let no_controllers = format!("--controllers={none}");
    let mut args = vec![flag.as_str(), "--runtime=simulated"];
    if split {
        args.push(&no_controllers);
    }
    let t_start = Instant::now();
    let (proc_, client, _) = start_ferrokube(&dir, &args).await?;
    let pid = proc_.0.id();
    let sampler = Sampler::start(pid);
    // `--split`: the controller-manager as its own process (no leader election: the server
    // runs none of them).
    let cm = if split {
        let child = Command::new(ferrokube_bin())
            .arg("controllers")
            .arg("--kubeconfig")
            .arg(dir.join("admin.kubeconfig"))
            .arg("--leader-elect=false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let cm_pid = child.id();
        Some((Proc(child), Sampler::start(cm_pid), cm_pid))
    } else {
        None
    };
    wait_nodes(&client, nodes, Duration::from_secs(600)).await?;
    let nodes_ready = t_start.elapsed();
    let rss_idle = rss_kib(pid);
    let (leases, lease_task) = lease_monitor(client.clone());
    let load_before = load();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    let cpu_before = cpu_seconds(pid);
    let cm_cpu_before = cm.as_ref().map(|c| cpu_seconds(c.2)).unwrap_or(0.0);
    let mut left = pods;
    let mut i = 0;
    while left > 0 {
        let n = left.min(1000);
        api.create(&PostParams::default(), &deployment(&format!("big-{i}"), n)?)
            .await?;
        left -= n;
        i += 1;
    }
    let available = wait_available(&client, pods, start, Duration::from_secs(1800)).await?;
    let cpu_run = cpu_seconds(pid) - cpu_before;
    let cm_cpu_run = cm.as_ref().map(|c| cpu_seconds(c.2)).unwrap_or(0.0) - cm_cpu_before;
    let running = running_pods(&client).await?;
    // Keep watching the leases for two more renewal rounds with the pods in place.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let node_api: Api<Node> = Api::all(client.clone());
    let ready_end = node_api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|n| is_ready(n))
        .count();
    lease_task.abort();
    let rss_end = rss_kib(pid);
    let (peak, cpu_total, span) = sampler.stop();
    let cm_figures = cm.map(|(proc_, sampler, cm_pid)| {
        let end = rss_kib(cm_pid);
        let (peak, _, _) = sampler.stop();
        drop(proc_);
        (peak, end)
    });
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let rss_settled = rss_kib(pid);
    let per_pod = |kib: u64| kib.saturating_sub(rss_idle) as f64 / pods.max(1) as f64;
    let now_ms = jiff_now_ms();
    let (mut iv, stalest, n_leases) = match leases.lock() {
        Ok(st) => (
            st.intervals.clone(),
            st.last
                .values()
                .map(|t| (now_ms - t) as f64 / 1000.0)
                .fold(0.0f64, f64::max),
            st.last.len(),
        ),
        Err(_) => (Vec::new(), 0.0, 0),
    };
    iv.sort_by(f64::total_cmp);
    let late = iv.iter().filter(|s| **s > GRACE).count();
    println!("| {nodes} simulated nodes, {pods} pods, one server | value |");
    println!("|---|---|");
    println!(
        "| load average before / after | {load_before} / {} |",
        load()
    );
    println!(
        "| {nodes} nodes Ready after (from spawn) | {:.1} s |",
        nodes_ready.as_secs_f64()
    );
    println!("| RSS with {nodes} idle nodes | {} MiB |", rss_idle / 1024);
    println!(
        "| {pods} pods ({i} Deployments) all available after | {:.1} s ({:.0} pods/s) |",
        available.as_secs_f64(),
        pods as f64 / available.as_secs_f64()
    );
    println!("| pods Running then | {running}/{pods} |");
    println!(
        "| server CPU during the rollout | {cpu_run:.1} s ({:.0}% of one core) |",
        100.0 * cpu_run / available.as_secs_f64()
    );
    println!(
        "| server CPU whole run (start → end) | {cpu_total:.1} s over {span:.0} s ({:.0}% of one core) |",
        100.0 * cpu_total / span.max(0.001)
    );
    println!(
        "| server peak RSS / at end | {} MiB / {} MiB |",
        peak / 1024,
        rss_end / 1024
    );
    println!(
        "| per pod over idle: peak / at end / {settle} s later | {:.0} / {:.0} / {:.0} KiB ({} MiB settled) |",
        per_pod(peak),
        per_pod(rss_end),
        per_pod(rss_settled),
        rss_settled / 1024
    );
    if let Some((cm_peak, cm_end)) = cm_figures {
        println!(
            "| controller-manager process (the server above without it): CPU during the rollout | {cm_cpu_run:.1} s ({:.0}% of one core) |",
            100.0 * cm_cpu_run / available.as_secs_f64()
        );
        println!(
            "| controller-manager peak RSS / at end | {} MiB / {} MiB |",
            cm_peak / 1024,
            cm_end / 1024
        );
    }
    println!(
        "| lease renewals observed ({n_leases} leases) | {} |",
        iv.len()
    );
    println!(
        "| renewal interval p50 / p99 / max (period {RENEW:.0} s) | {:.1} s / {:.1} s / {:.1} s |",
        pct(&iv, 0.5),
        pct(&iv, 0.99),
        iv.last().copied().unwrap_or(0.0)
    );
    println!("| renewals later than the {GRACE:.0} s grace | {late} |");
    println!("| stalest lease at the end | {stalest:.1} s |");
    println!("| nodes Ready at the end | {ready_end}/{nodes} |");
    drop(proc_);
    Ok(())
}

fn jiff_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

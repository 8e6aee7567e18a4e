//! `--scheduler`: one `ferrokube server --nodes=100 --runtime=simulated`, 1,000 bare pods created
//! at once; reports the scheduler's pods/s (first create → last pod bound), the time until all
//! 1,000 pods are Running, and the server's RSS and CPU time meanwhile.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::{rss_kib, start_ferrokube};

/// utime + stime of a process, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs the scheduler benchmark and prints its table.
pub async fn run(tmp: &Path, nodes: usize, pods: usize) -> Result<()> {
    let dir = tmp.join("scheduler");
    let nodes_flag = format!("--nodes={nodes}");
    let (proc_, client, startup) =
        start_ferrokube(&dir, &[&nodes_flag, "--runtime=simulated"]).await?;
    let pid = proc_.0.id();
    let node_api: Api<Node> = Api::all(client.clone());
    let t0 = Instant::now();
    loop {
        let ready = node_api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= nodes {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("only {ready}/{nodes} nodes Ready after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let nodes_ready = t0.elapsed();
    let rss_nodes = rss_kib(pid);
    let cpu_before = cpu_seconds(pid);
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    let created = futures::stream::iter(0..pods)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("bench-{i}")},
                    "spec": {"containers": [{"name": "c", "image": "nginx",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
                }))?;
                api.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let create_time = start.elapsed();
    if let Some(Err(e)) = created.into_iter().find(|r| r.is_err()) {
        bail!("creating pods: {e:#}");
    }
    let mut all_bound: Option<Duration> = None;
    let mut bound_at_created: Option<usize> = None;
    let mut peak_rss = 0;
    let all_running = loop {
        let list = api.list(&ListParams::default()).await?;
        peak_rss = peak_rss.max(rss_kib(pid));
        let bound = list
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        bound_at_created.get_or_insert(bound);
        if bound >= pods && all_bound.is_none() {
            all_bound = Some(start.elapsed());
        }
        if running >= pods {
            break start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!("{bound}/{pods} bound, {running}/{pods} Running after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cpu = cpu_seconds(pid) - cpu_before;
    let bound = all_bound.unwrap_or(all_running);
    println!("| scheduler benchmark ({nodes} simulated nodes, {pods} pods) | value |");
    println!("|---|---|");
    println!(
        "| server startup to /readyz | {:.0} ms |",
        startup.as_secs_f64() * 1000.0
    );
    println!(
        "| {nodes} nodes Ready after | {:.2} s |",
        nodes_ready.as_secs_f64()
    );
    println!("| RSS with {nodes} idle nodes | {} MiB |", rss_nodes / 1024);
    println!(
        "| create {pods} pods (32 concurrent clients) | {:.2} s |",
        create_time.as_secs_f64()
    );
    println!(
        "| all pods bound (first create → last bind) | {:.2} s |",
        bound.as_secs_f64()
    );
    println!(
        "| scheduler throughput | {:.0} pods/s |",
        pods as f64 / bound.as_secs_f64()
    );
    let after = bound.saturating_sub(create_time).as_secs_f64();
    let rest = pods - bound_at_created.unwrap_or(0).min(pods);
    if after > 0.0 && rest > 0 {
        println!(
            "| binds after the last create ({rest} pods) | {:.0} pods/s |",
            rest as f64 / after
        );
    }
    println!("| all pods Running | {:.2} s |", all_running.as_secs_f64());
    println!("| server peak RSS meanwhile | {} MiB |", peak_rss / 1024);
    println!(
        "| server CPU time meanwhile | {cpu:.2} s ({:.0}% of one core) |",
        100.0 * cpu / all_running.as_secs_f64()
    );
    drop(proc_);
    Ok(())
}

/// The taint every node registers with in [`run_prequeued`] (removed to release the pods).
const GATE_TAINT: &str = "bench.ferrokube.io/gate=closed:NoSchedule";

/// Pre-queued variant: `pods` pods are created while every node carries a NoSchedule taint (so
/// each is found Unschedulable once), then the taints are removed and the scheduler works through
/// the whole backlog at once. The scheduler's own rate is the pods bound between the first and the
/// last bind seen on a pod watch (the API create rate no longer bounds it).
pub async fn run_prequeued(tmp: &Path, nodes: usize, pods: usize) -> Result<()> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use kube::api::Patch;
    use kube::runtime::{WatchStreamExt, watcher};

    let dir = tmp.join("scheduler-prequeued");
    let nodes_flag = format!("--nodes={nodes}");
    let taint_flag = format!("--register-with-taints={GATE_TAINT}");
    let (proc_, client, _) =
        start_ferrokube(&dir, &[&nodes_flag, "--runtime=simulated", &taint_flag]).await?;
    let pid = proc_.0.id();
    let node_api: Api<Node> = Api::all(client.clone());
    let t0 = Instant::now();
    let names = loop {
        let list = node_api.list(&ListParams::default()).await?;
        let ready: Vec<String> = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        if ready.len() >= nodes {
            break ready;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("only {}/{nodes} nodes Ready after 120 s", ready.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = futures::stream::iter(0..pods)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("pq-{i}")},
                    "spec": {"containers": [{"name": "c", "image": "nginx",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
                }))?;
                api.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(e)) = created.into_iter().find(|r| r.is_err()) {
        bail!("creating pods: {e:#}");
    }
    // Every pod tried once and parked as Unschedulable.
    let t1 = Instant::now();
    loop {
        let parked = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.type_ == "PodScheduled"
                                && c.reason.as_deref() == Some("Unschedulable")
                        })
                    })
            })
            .count();
        if parked >= pods {
            break;
        }
        if t1.elapsed() > Duration::from_secs(120) {
            bail!("only {parked}/{pods} pods reported Unschedulable after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let b = bound.clone();
    let mut w = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let watch_task = tokio::spawn(async move {
        while let Some(ev) = w.next().await {
            if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev
                && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                && let Ok(mut m) = b.lock()
            {
                m.entry(p.metadata.name.clone().unwrap_or_default())
                    .or_insert_with(Instant::now);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before = cpu_seconds(pid);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let release = Instant::now();
    let untainted = futures::stream::iter(names)
        .map(|n| {
            let node_api = node_api.clone();
            async move {
                node_api
                    .patch(
                        &n,
                        &kube::api::PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"taints": null}})),
                    )
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let released = release.elapsed();
    if let Some(Err(e)) = untainted.into_iter().find(|r| r.is_err()) {
        bail!("removing taints: {e:#}");
    }
    loop {
        let n = bound.lock().map(|m| m.len()).unwrap_or(0);
        if n >= pods {
            break;
        }
        if release.elapsed() > Duration::from_secs(120) {
            bail!("{n}/{pods} bound 120 s after the taints were removed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    watch_task.abort();
    let times: Vec<Instant> = bound
        .lock()
        .map(|m| m.values().copied().collect())
        .unwrap_or_default();
    let first = times.iter().min().copied().unwrap_or(release);
    let last = times.iter().max().copied().unwrap_or(release);
    let span = last.duration_since(first).as_secs_f64().max(0.001);
    println!("| scheduler, {pods} pending pods released at once ({nodes} nodes) | value |");
    println!("|---|---|");
    println!(
        "| load average at release | {} |",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "| taints removed from {nodes} nodes in | {:.2} s |",
        released.as_secs_f64()
    );
    println!(
        "| release → first / last bind | {:.2} s / {:.2} s |",
        first.duration_since(release).as_secs_f64(),
        last.duration_since(release).as_secs_f64()
    );
    println!(
        "| scheduler throughput (first → last bind) | {:.0} pods/s |",
        pods as f64 / span
    );
    println!(
        "| server CPU time meanwhile | {cpu:.2} s ({:.0}% of one core) |",
        100.0 * cpu / last.duration_since(release).as_secs_f64().max(0.001)
    );
    drop(proc_);
    Ok(())
}

//! `--start [--count N] [--runs R] [--dir DIR]`: the start figures of issue 12 alone, quick
//! enough to run before and after every change: start → `/readyz` 200 on an empty store and
//! on one holding `N` small ConfigMaps (100,000 by default), the RSS split (anon / file pages)
//! 1 s after ready, and what a client sees right after ready (first GET of one object, first
//! full list of the namespace). With `--dir`, the filled data directory is kept and reused by
//! later runs (and by a profiler: `perf record -g ferrokube server --data-dir DIR`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ListParams};

use crate::figures::{mib, rss_split_kib, small_cm};
use crate::{metric, ms, rss_kib, start_ferrokube};

const NS: &str = "kube-system";

/// The load average (1, 5, 15 min) as `/proc/loadavg` gives it.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn row(name: &str, value: String) {
    println!("{name:<46} {value}");
}

/// How many ConfigMaps `NS` holds in `dir` (0 when it holds no store yet).
async fn stored(dir: &Path) -> Result<usize> {
    if !dir.join("db").join("ferrokube.redb").exists() {
        return Ok(0);
    }
    let (_p, client, _) = start_ferrokube(dir, &[]).await?;
    let api: Api<ConfigMap> = Api::namespaced(client, NS);
    // A full metadata list: a limited list carries no remainingItemCount here.
    let list = api.list_metadata(&ListParams::default()).await?;
    let ours = |m: &&kube::core::PartialObjectMeta<ConfigMap>| {
        m.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with('o'))
    };
    Ok(list.items.iter().filter(ours).count())
}

/// Starts the server on `dir` `runs` times; per start the time to ready, the RSS split 1 s
/// after ready and (with objects) the first GET and first list a client makes.
async fn starts(dir: &Path, runs: usize, objects: usize) -> Result<()> {
    let label = if objects == 0 {
        "empty".to_owned()
    } else {
        format!("{objects} objects")
    };
    let mut ready = Vec::new();
    for r in 0..runs {
        let fresh;
        let dir = if objects == 0 {
            fresh = dir.join(format!("empty{r}"));
            fresh.as_path()
        } else {
            dir
        };
        let load = loadavg();
        let (server, client, took) = start_ferrokube(dir, &[]).await?;
        let pid = server.0.id();
        let mut line = format!("{} (load {load})", ms(took));
        if objects > 0 {
            let (get, list) = first_reads(&client, objects).await?;
            line.push_str(&format!(", first GET {}, first list {}", ms(get), ms(list)));
        }
        let since = Instant::now();
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(since.elapsed())).await;
        let (anon, file) = rss_split_kib(pid);
        line.push_str(&format!(
            ", RSS 1 s after ready {:.1} MiB (anon {:.1}, file {:.1})",
            mib(rss_kib(pid)),
            mib(anon),
            mib(file)
        ));
        row(&format!("start → /readyz 200, {label}, run {r}"), line);
        ready.push(took);
    }
    ready.sort();
    row(
        &format!("start → /readyz 200, {label}"),
        format!(
            "median {} (min {}, max {})",
            ms(ready[ready.len() / 2]),
            ms(ready[0]),
            ms(ready[ready.len() - 1])
        ),
    );
    Ok(())
}

/// The first GET of one stored ConfigMap and the first full list of `NS`, right after ready.
async fn first_reads(client: &Client, objects: usize) -> Result<(Duration, Duration)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let t = Instant::now();
    let got = api.get(&format!("o{:06}", objects / 2)).await?;
    let get = t.elapsed();
    if got
        .data
        .as_ref()
        .and_then(|d| d.get("key"))
        .map(String::as_str)
        != Some("some-value")
    {
        bail!("the first GET after start returned the wrong object");
    }
    let t = Instant::now();
    let list = api.list_metadata(&ListParams::default()).await?;
    let took = t.elapsed();
    if list.items.len() < objects {
        bail!(
            "the first list after start returned {} items, want at least {objects}",
            list.items.len()
        );
    }
    Ok((get, took))
}

/// The `--start` run.
pub async fn run(tmp: &Path, dir: Option<&Path>, count: usize, runs: usize) -> Result<()> {
    println!("load average at start: {}", loadavg());
    let runs = runs.max(1);
    starts(&tmp.join("empty"), runs, 0).await?;

    let dir = dir.map_or_else(|| tmp.join("filled"), Path::to_owned);
    let have = stored(&dir).await?;
    row("small ConfigMaps already stored", have.to_string());
    if have < count {
        let (_p, client, _) = start_ferrokube(&dir, &[]).await?;
        let t = Instant::now();
        let created = crate::load(count - have, 32, {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
            move |i| {
                let api = api.clone();
                async move {
                    let _ = api
                        .create(&Default::default(), &small_cm(&format!("o{:06}", have + i)))
                        .await?;
                    Ok(())
                }
            }
        })
        .await;
        let (rate, _) = created?;
        row(
            &format!("filled {} small ConfigMaps", count - have),
            format!("{:.1} s at {rate:.0}/s", t.elapsed().as_secs_f64()),
        );
        let objects = metric(&client, "ferrokube_watch_cache_objects")
            .await
            .unwrap_or(0.0);
        row("objects in the store", format!("{objects:.0}"));
    }
    starts(&dir, runs, count).await
}

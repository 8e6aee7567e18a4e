//! `--admission`: what the built-in admission plugins cost on the write path. Creates of
//! ConfigMaps (no plugin but NamespaceLifecycle and the ResourceQuota lookup applies) and of
//! Pods (ServiceAccount, LimitRanger, PodSecurity, Priority, DefaultTolerationSeconds, ...
//! all apply) with 1 and 32 clients, against `FERROKUBE_BIN` and, when `FERROKUBE_BASE_BIN` is
//! set, against that binary too, in alternating rounds of one run; prints the medians and the
//! ratio new/base.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::{load, ms, percentile, start_ferrokube_bin};

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))?)
}

/// One round against one binary: (what, clients) → (ops/s, p50).
async fn round(bin: &Path, dir: &Path, scale: usize) -> Result<Vec<(String, f64, Duration)>> {
    let (_server, client, _) = start_ferrokube_bin(bin, dir, &[]).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let mut waited = 0;
    while sas.get_opt("default").await?.is_none() {
        waited += 1;
        if waited > 300 {
            bail!("no default ServiceAccount after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    for clients in [1usize, 32] {
        let n = if clients == 1 {
            300 / scale
        } else {
            3000 / scale
        };
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let (rate, lat) = load(n, clients, move |i| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &crate::cm(&format!("c{clients}-{i}")),
                )
                .await?;
                Ok(())
            }
        })
        .await?;
        out.push((
            format!("create configmap, {clients} client(s)"),
            rate,
            percentile(&lat, 0.5),
        ));
        let api: Api<Pod> = Api::namespaced(client.clone(), "default");
        let (rate, lat) = load(n, clients, move |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &pod(&format!("p{clients}-{i}"))?)
                    .await?;
                Ok(())
            }
        })
        .await?;
        out.push((
            format!("create pod, {clients} client(s)"),
            rate,
            percentile(&lat, 0.5),
        ));
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the comparison.
pub async fn run(tmp: &Path, quick: bool) -> Result<()> {
    let scale = if quick { 10 } else { 1 };
    let new = crate::ferrokube_bin();
    let base = std::env::var_os("FERROKUBE_BASE_BIN").map(std::path::PathBuf::from);
    let rounds = 3;
    let mut new_runs = Vec::new();
    let mut base_runs = Vec::new();
    for r in 0..rounds {
        if let Some(b) = &base {
            base_runs.push(round(b, &tmp.join(format!("base{r}")), scale).await?);
        }
        new_runs.push(round(&new, &tmp.join(format!("new{r}")), scale).await?);
    }
    println!(
        "{:<34} {:>12} {:>10} {:>12} {:>10} {:>7}",
        "median of 3 rounds", "ops/s", "p50", "base ops/s", "base p50", "ratio"
    );
    for (i, (what, _, _)) in new_runs[0].iter().enumerate() {
        let rate = median(new_runs.iter().map(|r| r[i].1).collect());
        let p50 = median(new_runs.iter().map(|r| r[i].2.as_secs_f64()).collect());
        if base_runs.is_empty() {
            println!(
                "{what:<34} {rate:>12.0} {:>10}",
                ms(Duration::from_secs_f64(p50))
            );
            continue;
        }
        let brate = median(base_runs.iter().map(|r| r[i].1).collect());
        let bp50 = median(base_runs.iter().map(|r| r[i].2.as_secs_f64()).collect());
        println!(
            "{what:<34} {rate:>12.0} {:>10} {brate:>12.0} {:>10} {:>7.2}",
            ms(Duration::from_secs_f64(p50)),
            ms(Duration::from_secs_f64(bp50)),
            rate / brate
        );
    }
    Ok(())
}

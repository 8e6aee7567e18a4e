//! `--backends`: the same API load on `ferrokube server` with the embedded store and with
//! `--etcd-servers` (one etcd member on loopback, started here), in one run: creates and gets
//! (1 and 32 clients) and a list of N configmaps, with the etcd/embedded ratio of each.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::{cm, load, median_list_time, ms, report, start_etcd, start_ferrokube};

/// (create 1, create 32, get 1, get 32, list) for one server.
async fn measure(label: &str, client: &Client, scale: usize) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for clients in [1usize, 32] {
        let n = if clients == 1 {
            500 / scale
        } else {
            5000 / scale
        };
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
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
        out.push((format!("create, {clients} client(s)"), rate));
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
    let n = 10_000 / scale;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
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
    let median = median_list_time(&api, n).await?;
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

pub async fn run(tmp: &Path, scale: usize) -> Result<()> {
    let embedded = {
        let (_server, client, _) = start_ferrokube(&tmp.join("embedded"), &[]).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        measure("embedded:", &client, scale).await?
    };
    let etcd = start_etcd(&tmp.join("etcd")).await?;
    let flag = format!("--etcd-servers={}", etcd.url);
    let on_etcd = {
        let (_server, client, _) = start_ferrokube(&tmp.join("on-etcd"), &[flag.as_str()]).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        measure("on etcd: ", &client, scale).await?
    };
    println!();
    for ((what, a), (_, b)) in embedded.iter().zip(&on_etcd) {
        println!("{:<44} {:.2}", format!("ratio etcd/embedded {what}"), b / a);
    }
    Ok(())
}

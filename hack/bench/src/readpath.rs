//! `--readpath [--bins A,B] [--rounds 3] [--count 10000] [--watchers 1000] [--kinds raw,typed,h2]`: the list and
//! watch fan-out figures of issue 12, for one or several server binaries alternated round by
//! round in one run (so a change is compared on the same machine state).
//!
//! Per round and binary: a fresh server holding `--count` small ConfigMaps in one namespace;
//! the median of 5 lists read as bytes (time to the last byte: the server's part) and of 5
//! typed lists (kube-rs decoding every item: what a Rust controller pays); then the watch
//! fan-out (`--watchers` watches, 50 creates 20 ms apart, write → delivery latency), with raw
//! watchers (event lines scanned, not decoded) and with kube-rs's typed watch.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use crate::figures::small_cm;
use crate::{Watcher, median_list_time, ms, percentile, start_ferrokube_bin, watch_fanout_with};

/// The median time of five GETs of `path` read to the last byte, each checked to be at least
/// `min_len` bytes.
pub(crate) async fn median_bytes_time(
    client: &kube::Client,
    path: &str,
    min_len: usize,
) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let resp = client
            .send(http::Request::get(path).body(kube::client::Body::empty())?)
            .await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        times.push(t.elapsed());
        if bytes.len() < min_len {
            bail!("{path}: {} bytes", bytes.len());
        }
    }
    times.sort();
    Ok(times[2])
}

pub async fn run(
    tmp: &Path,
    bins: &[PathBuf],
    rounds: usize,
    count: usize,
    watchers: usize,
    kinds: &[Watcher],
) -> Result<()> {
    let ns = "kube-node-lease";
    for r in 0..rounds {
        for (b, bin) in bins.iter().enumerate() {
            let dir = tmp.join(format!("r{r}-b{b}"));
            let (server, client, _) = start_ferrokube_bin(bin, &dir, &[]).await?;
            crate::figures::fill(&client, ns, count, small_cm).await?;
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            // The namespace also holds its kube-root-ca.crt.
            let path = format!("/api/v1/namespaces/{ns}/configmaps");
            let bytes = median_bytes_time(&client, &path, count * 100).await?;
            let typed = median_list_time(&api, count + 1).await?;
            let mut fan = String::new();
            for &how in kinds {
                let (lat, delivered, want) =
                    watch_fanout_with(&client, &dir, "default", watchers, 50, how).await?;
                let name = how.label();
                fan.push_str(&format!(
                    " | {watchers} {name} watchers: p50 {} p99 {} ({delivered}/{want})",
                    ms(percentile(&lat, 0.5)),
                    ms(percentile(&lat, 0.99)),
                ));
            }
            println!(
                "round {r} {:<28} list of {}: bytes {} typed {}{fan}",
                bin.file_name().unwrap_or_default().to_string_lossy(),
                count + 1,
                ms(bytes),
                ms(typed),
            );
            drop(server);
        }
    }
    Ok(())
}

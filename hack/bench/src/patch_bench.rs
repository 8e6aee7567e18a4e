//! `--patch`: request throughput of a full-object update (PUT) against a strategic merge patch
//! (PATCH `application/strategic-merge-patch+json`) of the same Deployment-sized object, with 1
//! and 32 clients, in one run against one server; prints ops/s and the SMP/update ratio.
//!
//! Each client works on its own Deployment (3 containers, env lists, ports, resources), so the
//! figures measure the request path (decode, merge, validate, durable write) rather than
//! optimistic-concurrency retries. Both variants change the same two fields: an annotation and
//! one env var of the second container (found by merge key in the patch). Rates are the median
//! of alternating rounds; latencies are over all rounds.

use std::path::Path;

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::{load, report, start_ferrokube};

fn container(name: &str, image: &str, port: u16) -> Value {
    let env: Vec<Value> = (0..10)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": format!("value-{i}")}))
        .collect();
    json!({
        "name": name,
        "image": image,
        "env": env,
        "ports": [{"containerPort": port, "name": "http"}, {"containerPort": port + 1, "name": "metrics"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"cpu": "500m", "memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 5}
    })
}

fn deployment(name: &str, stamp: usize) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, "tier": "backend"},
                     "annotations": {"bench/stamp": stamp.to_string()}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "backend"}},
                "spec": {"containers": [
                    container("api", "example.com/api:1.0", 8080),
                    container("worker", "example.com/worker:1.0", 9090),
                    container("proxy", "envoyproxy/envoy:v1.30", 10000)
                ]}
            }
        }
    })
}

/// The full object of [`deployment`] with the env var of `worker` set to the stamp.
fn updated(name: &str, stamp: usize) -> Result<Deployment> {
    let mut d = deployment(name, stamp);
    if let Some(v) = d.pointer_mut("/spec/template/spec/containers/1/env/0/value") {
        *v = Value::String(stamp.to_string());
    }
    Ok(serde_json::from_value(d)?)
}

/// The strategic merge patch making the same change as [`updated`].
fn smp(stamp: usize) -> Value {
    json!({
        "metadata": {"annotations": {"bench/stamp": stamp.to_string()}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "worker", "env": [{"name": "VAR_0", "value": stamp.to_string()}]}
        ]}}}
    })
}

const ROUNDS: usize = 5;

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or_default()
}

/// CPU cost of the strategic merge itself (no IO): the same patch applied in-process.
fn engine_cost(scale: usize) -> Result<()> {
    let original = deployment("bench-0", 0);
    let iterations = 20_000 / scale;
    let start = std::time::Instant::now();
    for i in 0..iterations {
        let out = ferrokube_machinery::patch::strategic_merge_patch(
            &original,
            &smp(i),
            "io.k8s.api.apps.v1.Deployment",
        )?;
        std::hint::black_box(out);
    }
    let per = start.elapsed() / iterations as u32;
    // For scale: one JSON decode + encode of the same object.
    let text = original.to_string();
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        let v: Value = serde_json::from_str(&text)?;
        std::hint::black_box(serde_json::to_vec(&v)?);
    }
    let codec = start.elapsed() / iterations as u32;
    println!(
        "{:<44} {:>7.1} µs   (JSON decode+encode of it: {:.1} µs)",
        "strategic merge engine, per patch",
        per.as_secs_f64() * 1e6,
        codec.as_secs_f64() * 1e6
    );
    Ok(())
}

pub async fn run(tmp: &Path, scale: usize) -> Result<()> {
    engine_cost(scale)?;
    let (_server, client, _) = start_ferrokube(&tmp.join("patch"), &[]).await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    for c in 0..32 {
        let d: Deployment = serde_json::from_value(deployment(&format!("bench-{c}"), 0))?;
        api.create(&PostParams::default(), &d).await?;
    }
    println!(
        "{:<44} (Deployment of {} bytes, 3 containers)",
        "update vs strategic merge patch",
        deployment("bench-0", 0).to_string().len()
    );
    for clients in [1usize, 32] {
        let n = if clients == 1 { 150 } else { 1500 } / scale;
        // Alternating rounds, median rate of each: the machine is shared, so a single long
        // run of each kind would mostly measure what else ran at the time.
        let (mut puts, mut smps, mut merges) = (Vec::new(), Vec::new(), Vec::new());
        let (mut put_lat, mut smp_lat, mut merge_lat) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let base = round * 3 * n;
            let a = api.clone();
            let (rate, lat) = load(n, clients, move |i| {
                let a = a.clone();
                async move {
                    let name = format!("bench-{}", i % clients);
                    a.replace(
                        &name,
                        &PostParams::default(),
                        &updated(&name, base + i + 1)?,
                    )
                    .await?;
                    Ok(())
                }
            })
            .await?;
            puts.push(rate);
            put_lat.extend(lat);
            let a = api.clone();
            let (rate, lat) = load(n, clients, move |i| {
                let a = a.clone();
                async move {
                    let name = format!("bench-{}", i % clients);
                    a.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Strategic(smp(base + n + i + 1)),
                    )
                    .await?;
                    Ok(())
                }
            })
            .await?;
            smps.push(rate);
            smp_lat.extend(lat);
            // The same annotation change as a JSON merge patch (a merge patch would replace the
            // container list): separates the PATCH handler's cost from the strategic merge's.
            let a = api.clone();
            let (rate, lat) = load(n, clients, move |i| {
                let a = a.clone();
                async move {
                    let name = format!("bench-{}", i % clients);
                    let stamp = (base + 2 * n + i + 1).to_string();
                    let body = json!({"metadata": {"annotations": {"bench/stamp": stamp}}});
                    a.patch(&name, &PatchParams::default(), &Patch::Merge(body))
                        .await?;
                    Ok(())
                }
            })
            .await?;
            merges.push(rate);
            merge_lat.extend(lat);
        }
        for l in [&mut put_lat, &mut smp_lat, &mut merge_lat] {
            l.sort();
        }
        let (put, smp_rate) = (median(&mut puts), median(&mut smps));
        report(&format!("PUT update, {clients} client(s)"), put, &put_lat);
        report(
            &format!("strategic merge PATCH, {clients} client(s)"),
            smp_rate,
            &smp_lat,
        );
        report(
            &format!("merge PATCH (annotation), {clients} client(s)"),
            median(&mut merges),
            &merge_lat,
        );
        println!(
            "{:<44} {:>10.2}",
            format!("SMP/update ratio, {clients} client(s)"),
            smp_rate / put
        );
    }
    // The last patch really went through the strategic merge: the other containers and env
    // vars are still there.
    let d = api.get("bench-0").await?;
    let containers = d
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers)
        .unwrap_or_default();
    anyhow::ensure!(
        containers.len() == 3 && containers[1].env.as_ref().map_or(0, Vec::len) == 10,
        "strategic merge patch lost containers or env vars"
    );
    Ok(())
}

//! `--ssa`: server-side apply vs plain PUT update of the same Deployment-sized object, 1 and
//! 32 clients (one Deployment per client so clients never contend), printing ops/s and the
//! ratio (and a merge patch, the same read-modify-write shape without field sets). Every
//! operation changes one annotation, so every request writes.

use std::path::Path;

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{load, report, start_ferrokube};

fn deployment(name: &str, i: usize) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, "tier": "web"},
            "annotations": {"bench/i": i.to_string()}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                    "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/", "port": "http"}},
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}}},
                    {"name": "sidecar", "image": "busybox", "args": ["sleep", "3600"]}]}}}
    })
}

/// Runs the SSA-vs-update comparison on a fresh server.
pub async fn run(tmp: &Path, quick: bool) -> Result<()> {
    let (_server, client, _) = start_ferrokube(&tmp.join("ssa"), &[]).await?;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let scale = if quick { 10 } else { 1 };
    for clients in [1usize, 32] {
        let n = if clients == 1 {
            500 / scale
        } else {
            3000 / scale
        };
        for c in 0..clients {
            let d: Deployment = serde_json::from_value(deployment(&format!("put-{c}"), 0))?;
            api.create(&PostParams::default(), &d).await?;
        }
        let a = api.clone();
        let (put_rate, put_lat) = load(n, clients, move |i| {
            let a = a.clone();
            async move {
                let name = format!("put-{}", i % clients);
                let d: Deployment = serde_json::from_value(deployment(&name, i + 1))?;
                a.replace(&name, &PostParams::default(), &d).await?;
                Ok(())
            }
        })
        .await?;
        report(
            &format!("PUT update, {clients} clients"),
            put_rate,
            &put_lat,
        );
        let a = api.clone();
        let (ssa_rate, ssa_lat) = load(n, clients, move |i| {
            let a = a.clone();
            async move {
                let name = format!("ssa-{}", i % clients);
                let pp = PatchParams::apply("bench").force();
                a.patch(&name, &pp, &Patch::Apply(deployment(&name, i + 1)))
                    .await?;
                Ok(())
            }
        })
        .await?;
        report(
            &format!("server-side apply, {clients} clients"),
            ssa_rate,
            &ssa_lat,
        );
        // A merge patch has the same read-modify-write shape as apply, without the field sets.
        let a = api.clone();
        let (mp_rate, mp_lat) = load(n, clients, move |i| {
            let a = a.clone();
            async move {
                let name = format!("put-{}", i % clients);
                let p = json!({"metadata": {"annotations": {"bench/i": format!("m{i}")}}});
                a.patch(&name, &PatchParams::default(), &Patch::Merge(p))
                    .await?;
                Ok(())
            }
        })
        .await?;
        report(&format!("merge patch, {clients} clients"), mp_rate, &mp_lat);
        println!(
            "{:<44} {:.2}",
            format!("SSA / PUT throughput, {clients} clients"),
            ssa_rate / put_rate
        );
        println!(
            "{:<44} {:.2}",
            format!("SSA / merge patch throughput, {clients} clients"),
            ssa_rate / mp_rate
        );
        for c in 0..clients {
            for p in ["put", "ssa"] {
                let _ = api.delete(&format!("{p}-{c}"), &Default::default()).await;
            }
        }
    }
    Ok(())
}

//! `--audit`: the cost of audit logging. Two servers in one run, one with an audit policy that
//! logs every request at `Metadata` into a file, one without (no audit work at all); GET and
//! create throughput of the admin client alternately against both (median of 3), and the
//! ratio (goal: close to 1 — the writer is a separate thread behind a bounded channel).

use std::path::Path;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, PostParams};

use super::{cm, load, report, start_ferrokube};

const POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";

async fn gets(client: Client, n: usize) -> Result<(f64, Vec<std::time::Duration>)> {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("target")).await.ok();
    load(n, 32, move |_| {
        let api = api.clone();
        async move {
            api.get("target").await?;
            Ok(())
        }
    })
    .await
}

async fn creates(
    client: Client,
    n: usize,
    round: usize,
) -> Result<(f64, Vec<std::time::Duration>)> {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    load(n, 32, move |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &cm(&format!("c-{round}-{i}")))
                .await?;
            Ok(())
        }
    })
    .await
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the comparison.
pub async fn run(tmp: &Path, quick: bool) -> Result<()> {
    let policy = tmp.join("audit-policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let log = tmp.join("audit.log");
    let (n_get, n_create) = if quick { (1000, 200) } else { (10_000, 2000) };
    let (_a, audited, _) = start_ferrokube(
        &tmp.join("audited"),
        &[
            "--audit-policy-file",
            policy.to_str().context("path")?,
            "--audit-log-path",
            log.to_str().context("path")?,
        ],
    )
    .await?;
    let (_b, plain, _) = start_ferrokube(&tmp.join("plain"), &[]).await?;
    gets(audited.clone(), n_get / 10).await?;
    gets(plain.clone(), n_get / 10).await?;
    let (mut ga, mut gp, mut ca, mut cp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let (r, l) = gets(audited.clone(), n_get).await?;
        report("GET, audit Metadata policy, 32 clients", r, &l);
        ga.push(r);
        let (r, l) = gets(plain.clone(), n_get).await?;
        report("GET, no audit policy, 32 clients", r, &l);
        gp.push(r);
        let (r, l) = creates(audited.clone(), n_create, round).await?;
        report("create, audit Metadata policy, 32 clients", r, &l);
        ca.push(r);
        let (r, l) = creates(plain.clone(), n_create, round).await?;
        report("create, no audit policy, 32 clients", r, &l);
        cp.push(r);
    }
    let (ga, gp, ca, cp) = (median(ga), median(gp), median(ca), median(cp));
    println!(
        "{:<44} {:.3} (median {ga:.0}/s vs {gp:.0}/s)",
        "audited / unaudited GET throughput",
        ga / gp
    );
    println!(
        "{:<44} {:.3} (median {ca:.0}/s vs {cp:.0}/s)",
        "audited / unaudited create throughput",
        ca / cp
    );
    let lines = std::fs::read_to_string(&log)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    println!("{:<44} {lines}", "audit log lines written");
    Ok(())
}

//! `--auth`: the cost of authentication and authorization.
//!
//! 1. GET throughput of a token user whose access comes from RBAC, on a server holding 1,000
//!    extra Roles + 1,000 RoleBindings (other users, many namespaces), against the same user on
//!    an `--authorization-mode=AlwaysAllow` server, in one run (goal: ratio ≥ 0.95 — RBAC is an
//!    index lookup, not a scan).
//! 2. Authentication cost: the same GETs as the admin client certificate (verified once per
//!    connection), a static token, and a service-account JWT (ES256 verified per request), all
//!    members of system:masters or cluster-admin so authorization costs the same.

use std::path::Path;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::{Client, Config};
use serde_json::json;

use super::{cm, load, report, start_ferrokube};

async fn client_with_token(dir: &Path, token: &str) -> Result<Client> {
    let text = std::fs::read_to_string(dir.join("admin.kubeconfig"))?;
    let mut kc: serde_json::Value = serde_yaml_ng(&text)?;
    kc["users"][0]["user"] = json!({ "token": token });
    let kc: kube::config::Kubeconfig = serde_json::from_value(kc)?;
    let cfg = Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// The admin kubeconfig is simple YAML kube can read; go through its own parser.
fn serde_yaml_ng(text: &str) -> Result<serde_json::Value> {
    let kc = kube::config::Kubeconfig::from_yaml(text)?;
    Ok(serde_json::to_value(kc)?)
}

async fn gets(client: Client, n: usize, clients: usize) -> Result<(f64, Vec<std::time::Duration>)> {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("target")).await.ok();
    load(n, clients, move |_| {
        let api = api.clone();
        async move {
            api.get("target").await?;
            Ok(())
        }
    })
    .await
}

async fn rbac_objects(admin: &Client, extra: usize) -> Result<()> {
    use kube::api::DynamicObject;
    use kube::discovery::ApiResource;
    let gvk =
        |kind: &str| kube::api::GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind);
    let roles = ApiResource::from_gvk(&gvk("Role"));
    let bindings = ApiResource::from_gvk(&gvk("RoleBinding"));
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    for n in 0..20 {
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("bench-{n}")}}))?;
        nss.create(&PostParams::default(), &ns).await.ok();
    }
    for i in 0..extra {
        let ns = format!("bench-{}", i % 20);
        let r: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": format!("r{i}"), "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list"]}],
        }))?;
        Api::<DynamicObject>::namespaced_with(admin.clone(), &ns, &roles)
            .create(&PostParams::default(), &r)
            .await?;
        let b: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("b{i}"), "namespace": ns},
            "subjects": [{"kind": "User", "name": format!("user-{i}"), "apiGroup": "rbac.authorization.k8s.io"},
                         {"kind": "Group", "name": format!("group-{}", i % 50), "apiGroup": "rbac.authorization.k8s.io"}],
            "roleRef": {"kind": "Role", "name": format!("r{i}"), "apiGroup": "rbac.authorization.k8s.io"},
        }))?;
        Api::<DynamicObject>::namespaced_with(admin.clone(), &ns, &bindings)
            .create(&PostParams::default(), &b)
            .await?;
    }
    // The measured user: a RoleBinding of the `view` ClusterRole in default, plus membership
    // in groups that have bindings elsewhere (so the lookup walks several entries).
    let b: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bench-view", "namespace": "default"},
        "subjects": [{"kind": "User", "name": "bench", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "ClusterRole", "name": "view", "apiGroup": "rbac.authorization.k8s.io"},
    }))?;
    Api::<DynamicObject>::namespaced_with(admin.clone(), "default", &bindings)
        .create(&PostParams::default(), &b)
        .await?;
    Ok(())
}

/// Runs the comparison.
pub async fn run(tmp: &Path, quick: bool) -> Result<()> {
    let tokens = tmp.join("tokens.csv");
    std::fs::write(
        &tokens,
        "bench-token,bench,b-1,\"group-1,group-2,group-3\"\nroot-token,root,r-1,system:masters\n",
    )?;
    let tf = tokens.to_str().context("path")?;
    let n = if quick { 500 } else { 5000 };
    let extra = if quick { 100 } else { 1000 };
    let dir_rbac = tmp.join("rbac");
    let dir_allow = tmp.join("allow");
    let (_a, admin, _) = start_ferrokube(&dir_rbac, &["--token-auth-file", tf]).await?;
    let (_b, _admin_allow, _) = start_ferrokube(
        &dir_allow,
        &["--token-auth-file", tf, "--authorization-mode=AlwaysAllow"],
    )
    .await?;
    rbac_objects(&admin, extra).await?;
    // The measured user may only read (`view`): the admin creates the object it reads.
    if let Err(e) = Api::<ConfigMap>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &cm("target"))
        .await
    {
        eprintln!("admin create of the target: {e}");
    }
    let bench_rbac = client_with_token(&dir_rbac, "bench-token").await?;
    let bench_allow = client_with_token(&dir_allow, "bench-token").await?;
    // Warm both, then alternate the measurements so drift hits both alike.
    gets(bench_rbac.clone(), n / 10, 32).await?;
    gets(bench_allow.clone(), n / 10, 32).await?;
    let mut rbac_rates = Vec::new();
    let mut allow_rates = Vec::new();
    for _ in 0..3 {
        let (r, lat_r) = gets(bench_rbac.clone(), n, 32).await?;
        let (a, lat_a) = gets(bench_allow.clone(), n, 32).await?;
        report(
            "GET as RBAC token user (1,000 roles+bindings), 32 clients",
            r,
            &lat_r,
        );
        report(
            "GET as the same token user, AlwaysAllow, 32 clients",
            a,
            &lat_a,
        );
        rbac_rates.push(r);
        allow_rates.push(a);
    }
    rbac_rates.sort_by(f64::total_cmp);
    allow_rates.sort_by(f64::total_cmp);
    println!(
        "{:<44} {:.3} (median RBAC {:.0}/s vs AlwaysAllow {:.0}/s; goal >= 0.95)",
        "RBAC / AlwaysAllow GET throughput",
        rbac_rates[1] / allow_rates[1],
        rbac_rates[1],
        allow_rates[1]
    );

    // Authentication cost on the RBAC server, single client (latency shows the per-request cost).
    let sa_token = {
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(admin.clone(), "default");
        let sa: k8s_openapi::api::core::v1::ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "bench-sa"}}))?;
        sas.create(&PostParams::default(), &sa).await.ok();
        let crb: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "bench-sa-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "bench-sa", "namespace": "default"}],
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin", "apiGroup": "rbac.authorization.k8s.io"},
        }))?;
        let ar = kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
        ));
        Api::<kube::api::DynamicObject>::all_with(admin.clone(), &ar)
            .create(&PostParams::default(), &crb)
            .await?;
        let req = http::Request::post("/api/v1/namespaces/default/serviceaccounts/bench-sa/token")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}))?)?;
        let tr: serde_json::Value = admin.request(req).await?;
        tr["status"]["token"].as_str().context("token")?.to_string()
    };
    let root = client_with_token(&dir_rbac, "root-token").await?;
    let sa = client_with_token(&dir_rbac, &sa_token).await?;
    let m = n / 5;
    for (label, c) in [
        (
            "GET, client certificate (system:masters), 1 client",
            admin.clone(),
        ),
        ("GET, static token (system:masters), 1 client", root),
        ("GET, service-account JWT (cluster-admin), 1 client", sa),
    ] {
        gets(c.clone(), m / 10, 1).await?;
        let (rate, lat) = gets(c, m, 1).await?;
        report(label, rate, &lat);
    }
    Ok(())
}

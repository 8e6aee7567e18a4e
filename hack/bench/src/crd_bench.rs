//! `--crds [--count N]`: the CRD figures of issue 10 in one run against one server:
//!
//! - time from the `POST` of a new CRD to (a) its custom resources being served (a list of
//!   them answers 200), (b) its resource appearing in discovery (`/apis/{g}/{v}` and the
//!   aggregated `/apis` document), (c) its group-version appearing in the OpenAPI v3 index with
//!   a document naming its kind; medians and maxima over several CRDs, created one at a time
//!   while the earlier ones stay installed;
//! - custom resource create/get (a schema of 50 properties and 5 CEL rules) vs ConfigMap
//!   create/get, same client count, same run;
//! - server RSS (settled) before any CRD and with `N` (200) CRDs installed and established.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::figures::settled_rss_kib;
use crate::{load, ms, percentile, report, start_ferrokube};

/// A namespaced CRD `plural.group` with a schema of `props` integer properties and `rules` CEL
/// rules under `spec`.
fn crd(group: &str, plural: &str, kind: &str, props: usize, rules: usize) -> Value {
    let properties: serde_json::Map<String, Value> = (0..props)
        .map(|i| {
            (
                format!("p{i}"),
                json!({"type": "integer", "minimum": 0, "maximum": 1000,
                       "description": format!("property {i}")}),
            )
        })
        .collect();
    let validations: Vec<Value> = (0..rules)
        .map(|i| {
            json!({"rule": format!("self.p{i} <= self.p{} + 1000", i + 1),
                         "message": format!("rule {i}")})
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind,
                      "listKind": format!("{kind}List")},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": properties,
                             "x-kubernetes-validations": validations},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
                "subresources": {"status": {}}}]}
    })
}

async fn request(c: &Client, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let b = match body {
        Some(v) => serde_json::to_vec(v)?,
        None => Vec::new(),
    };
    let mut req = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    Ok(c.request::<Value>(req.body(b)?).await?)
}

async fn get_with_accept(c: &Client, path: &str, accept: &str) -> Result<String> {
    let req = http::Request::get(path)
        .header("accept", accept)
        .body(Vec::new())?;
    Ok(c.request_text(req).await?)
}

/// Polls `check` every millisecond until it is true; the time since `start`.
async fn until<F, Fut>(start: Instant, check: F) -> Result<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = start + Duration::from_secs(30);
    loop {
        if check().await {
            return Ok(start.elapsed());
        }
        if Instant::now() > deadline {
            bail!("not visible after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Creates one CRD and measures (served, discovery, OpenAPI v3).
async fn apply_to_served(
    c: &Client,
    group: &str,
    plural: &str,
    kind: &str,
) -> Result<[Duration; 3]> {
    let body = crd(group, plural, kind, 50, 5);
    let start = Instant::now();
    request(
        c,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(&body),
    )
    .await?;
    let list = format!("/apis/{group}/v1/namespaces/default/{plural}");
    let served = until(start, || async {
        request(c, "GET", &list, None).await.is_ok()
    });
    let legacy = format!("/apis/{group}/v1");
    let needle = format!("\"name\":\"{plural}\"");
    let discovery = until(start, || async {
        let agg = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        let a = get_with_accept(c, "/apis", agg).await.unwrap_or_default();
        let l = get_with_accept(c, &legacy, "application/json")
            .await
            .unwrap_or_default();
        a.contains(&format!("\"resource\":\"{plural}\"")) && l.contains(&needle)
    });
    let key = format!("apis/{group}/v1");
    let openapi = until(start, || async {
        let Ok(index) = request(c, "GET", "/openapi/v3", None).await else {
            return false;
        };
        let Some(url) = index
            .pointer(&format!(
                "/paths/{}/serverRelativeURL",
                key.replace('/', "~1")
            ))
            .and_then(Value::as_str)
        else {
            return false;
        };
        get_with_accept(c, url, "application/json")
            .await
            .is_ok_and(|d| {
                d.contains(&format!("\"kind\":\"{kind}\"")) || d.contains(&format!(".{kind}\""))
            })
    });
    let (s, d, o) = tokio::join!(served, discovery, openapi);
    Ok([s?, d?, o?])
}

async fn wait_established(c: &Client, name: &str) -> Result<()> {
    let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
    until(Instant::now(), || async {
        request(c, "GET", &path, None).await.is_ok_and(|v| {
            v.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|x| x["type"] == "Established" && x["status"] == "True")
                })
        })
    })
    .await
    .map(|_| ())
}

fn cr(name: &str) -> Value {
    let spec: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("p{i}"), json!(i * 10))).collect();
    json!({"apiVersion": "bench.example.com/v1", "kind": "Widget",
           "metadata": {"name": name}, "spec": spec})
}

/// `shape`: (properties, CEL rules) of the installed CRDs.
pub async fn run(tmp: &Path, quick: bool, count: usize, shape: (usize, usize)) -> Result<()> {
    let (server, client, _) = start_ferrokube(&tmp.join("crds"), &[]).await?;
    let pid = server.0.id();
    // The built-in OpenAPI documents are built off the startup path; let them be.
    request(&client, "GET", "/openapi/v3", None).await?;
    let rss0 = settled_rss_kib(pid, Duration::from_secs(15)).await;
    println!(
        "RSS with no CRD (settled)                    {:>8.1} MiB",
        rss0 as f64 / 1024.0
    );

    // Apply → served / discovery / OpenAPI, one CRD at a time.
    let rounds = if quick { 5 } else { 15 };
    let mut times: [Vec<Duration>; 3] = Default::default();
    for i in 0..rounds {
        let t = apply_to_served(
            &client,
            &format!("g{i}.latency.example.com"),
            &format!("things{i}"),
            &format!("Thing{i}"),
        )
        .await
        .with_context(|| format!("CRD {i}"))?;
        for (k, d) in t.into_iter().enumerate() {
            times[k].push(d);
        }
    }
    for (name, mut v) in [
        "served (list 200)",
        "in discovery (legacy + aggregated)",
        "in OpenAPI v3 (index + doc)",
    ]
    .into_iter()
    .zip(times)
    {
        v.sort();
        println!(
            "CRD create -> {name:<36} median {:>9}   max {:>9}",
            ms(percentile(&v, 0.5)),
            ms(*v.last().unwrap_or(&Duration::ZERO))
        );
    }

    // CR vs ConfigMap create/get.
    request(
        &client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(&crd("bench.example.com", "widgets", "Widget", 50, 5)),
    )
    .await?;
    wait_established(&client, "widgets.bench.example.com").await?;
    apply_to_served(&client, "warm.example.com", "warms", "Warm").await?;
    let n = if quick { 300 } else { 2000 };
    let clients = 8;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let widgets = "/apis/bench.example.com/v1/namespaces/default/widgets";
    let mut rates = Vec::new();
    for round in 0..2 {
        let api = cms.clone();
        let (cm_c, lat) = load(n, clients, move |i| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &crate::cm(&format!("cm{round}-{i}")),
                )
                .await?;
                Ok(())
            }
        })
        .await?;
        report(&format!("create ConfigMap ({clients} clients)"), cm_c, &lat);
        let c = client.clone();
        let (cr_c, lat) = load(n, clients, move |i| {
            let c = c.clone();
            async move {
                request(&c, "POST", widgets, Some(&cr(&format!("w{round}-{i}")))).await?;
                Ok(())
            }
        })
        .await?;
        report(
            &format!("create Widget CR, 50 props 5 CEL ({clients} clients)"),
            cr_c,
            &lat,
        );
        let api = cms.clone();
        let (cm_g, lat) = load(n, clients, move |i| {
            let api = api.clone();
            async move {
                api.get(&format!("cm{round}-{i}")).await?;
                Ok(())
            }
        })
        .await?;
        report(&format!("get ConfigMap ({clients} clients)"), cm_g, &lat);
        let c = client.clone();
        let (cr_g, lat) = load(n, clients, move |i| {
            let c = c.clone();
            async move {
                request(&c, "GET", &format!("{widgets}/w{round}-{i}"), None).await?;
                Ok(())
            }
        })
        .await?;
        report(&format!("get Widget CR ({clients} clients)"), cr_g, &lat);
        rates.push((cr_c / cm_c, cr_g / cm_g));
    }
    for (i, (c, g)) in rates.iter().enumerate() {
        println!("round {i}: CR/ConfigMap create ratio {c:.2}, get ratio {g:.2}");
    }
    // Delete the bench objects' CRD so only the installed CRDs count below.
    request(
        &client,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.bench.example.com",
        None,
    )
    .await?;

    // N CRDs installed.
    let have = rounds + 1;
    let start = Instant::now();
    for i in have..count {
        let group = format!("g{}.install.example.com", i % 20);
        request(
            &client,
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some(&crd(
                &group,
                &format!("items{i}"),
                &format!("Item{i}"),
                shape.0,
                shape.1,
            )),
        )
        .await?;
    }
    let last = count.saturating_sub(1).max(have);
    wait_established(
        &client,
        &format!("items{last}.g{}.install.example.com", last % 20),
    )
    .await?;
    println!(
        "created {} more CRDs, last established after {}",
        count.saturating_sub(have),
        ms(start.elapsed())
    );
    // Every document rendered once, as clients would ask.
    let v3 = request(&client, "GET", "/openapi/v3", None).await?;
    request(&client, "GET", "/openapi/v2", None).await?;
    let agg = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    get_with_accept(&client, "/apis", agg).await?;
    let gvs = v3["paths"].as_object().map(|m| m.len()).unwrap_or(0);
    let rss = settled_rss_kib(pid, Duration::from_secs(30)).await;
    println!(
        "RSS with {count} CRDs of {} props {} rules (settled, {gvs} OpenAPI v3 docs) {:>8.1} MiB  (+{:.1} MiB, {:.0} KiB per CRD)",
        shape.0,
        shape.1,
        rss as f64 / 1024.0,
        (rss.saturating_sub(rss0)) as f64 / 1024.0,
        rss.saturating_sub(rss0) as f64 / count.max(1) as f64
    );
    Ok(())
}

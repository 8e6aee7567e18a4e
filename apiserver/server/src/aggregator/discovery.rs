//! Aggregated APIs in discovery: remote APIServices' groups added to `/apis` (legacy
//! `APIGroupList`: every remote APIService, as upstream lists them from the objects) and their
//! backends' resource lists added to aggregated discovery (`APIGroupDiscoveryList`, only
//! APIServices whose backend answered), plus `/apis/{group}` for groups served only remotely.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use super::{Aggregator, ApiService};
use crate::AppState;

/// Largest local discovery document read back for merging.
const MAX_DOC: usize = 64 * 1024 * 1024;

fn gv(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

/// Remote services grouped by group, groups by their highest `groupPriorityMinimum`, versions
/// by `versionPriority` (both descending, then by name).
fn by_group(services: &[Arc<ApiService>]) -> Vec<(String, Vec<Arc<ApiService>>)> {
    let mut groups: Vec<(String, Vec<Arc<ApiService>>)> = Vec::new();
    for s in services {
        match groups.iter_mut().find(|(g, _)| *g == s.group) {
            Some((_, v)) => v.push(s.clone()),
            None => groups.push((s.group.clone(), vec![s.clone()])),
        }
    }
    for (_, v) in &mut groups {
        v.sort_by(|a, b| {
            b.version_priority
                .cmp(&a.version_priority)
                .then(a.version.cmp(&b.version))
        });
    }
    let prio = |v: &[Arc<ApiService>]| {
        v.iter()
            .map(|s| s.group_priority_minimum)
            .max()
            .unwrap_or(0)
    };
    groups.sort_by(|a, b| prio(&b.1).cmp(&prio(&a.1)).then(a.0.cmp(&b.0)));
    groups
}

/// Adds remote groups and versions to a legacy `APIGroupList`.
pub fn merge_group_list(doc: &mut Value, services: &[Arc<ApiService>]) {
    let Some(list) = doc.get_mut("groups").and_then(Value::as_array_mut) else {
        return;
    };
    for (group, svcs) in by_group(services) {
        match list
            .iter_mut()
            .find(|g| g.get("name").and_then(Value::as_str) == Some(group.as_str()))
        {
            Some(existing) => {
                if let Some(vs) = existing.get_mut("versions").and_then(Value::as_array_mut) {
                    for s in &svcs {
                        if !vs
                            .iter()
                            .any(|v| v.get("version").and_then(Value::as_str) == Some(&s.version))
                        {
                            vs.push(gv(&group, &s.version));
                        }
                    }
                }
            }
            None => list.push(api_group_body(&group, &svcs)),
        }
    }
}

fn api_group_body(group: &str, svcs: &[Arc<ApiService>]) -> Value {
    let versions: Vec<Value> = svcs.iter().map(|s| gv(group, &s.version)).collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `GET /apis/{group}` for a group only aggregated APIServices serve.
pub fn serve_group(agg: &Aggregator, path: &str) -> Option<Response> {
    let group = path.strip_prefix("/apis/").filter(|g| !g.contains('/'))?;
    let svcs = agg.remote_group(group);
    if svcs.is_empty() {
        return None;
    }
    let mut doc = Map::new();
    doc.insert("kind".into(), json!("APIGroup"));
    doc.insert("apiVersion".into(), json!("v1"));
    if let Value::Object(m) = api_group_body(group, &svcs) {
        doc.extend(m);
    }
    let mut body = serde_json::to_vec(&Value::Object(doc)).unwrap_or_default();
    body.push(b'\n');
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Some(r)
}

/// One `APIResourceList` as aggregated discovery resources (subresources folded into their
/// resource), alphabetical.
pub fn aggregated_resources(list: &Value) -> Vec<Value> {
    let items = list
        .get("resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let s = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out: Vec<Value> = items
        .iter()
        .filter(|r| !s(r, "name").contains('/') && !s(r, "name").is_empty())
        .map(|r| {
            let mut e = Map::new();
            e.insert("resource".into(), json!(s(r, "name")));
            e.insert(
                "responseKind".into(),
                json!({"group": s(r, "group"), "version": s(r, "version"), "kind": s(r, "kind")}),
            );
            let namespaced = r
                .get("namespaced")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            e.insert(
                "scope".into(),
                json!(if namespaced { "Namespaced" } else { "Cluster" }),
            );
            e.insert("singularResource".into(), json!(s(r, "singularName")));
            e.insert("verbs".into(), r.get("verbs").cloned().unwrap_or(json!([])));
            for k in ["shortNames", "categories"] {
                if let Some(v) = r
                    .get(k)
                    .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
                {
                    e.insert(k.into(), v.clone());
                }
            }
            Value::Object(e)
        })
        .collect();
    for r in &items {
        let name = s(r, "name");
        let Some((parent, sub)) = name.split_once('/') else {
            continue;
        };
        if let Some(p) = out
            .iter_mut()
            .find(|e| e.get("resource").and_then(Value::as_str) == Some(parent))
            && let Some(m) = p.as_object_mut()
        {
            let subs = m.entry("subresources").or_insert_with(|| json!([]));
            if let Some(a) = subs.as_array_mut() {
                a.push(json!({
                    "subresource": sub,
                    "responseKind": {"group": s(r, "group"), "version": s(r, "version"), "kind": s(r, "kind")},
                    "verbs": r.get("verbs").cloned().unwrap_or(json!([])),
                }));
            }
        }
    }
    out.sort_by(|a, b| {
        a.get("resource")
            .and_then(Value::as_str)
            .cmp(&b.get("resource").and_then(Value::as_str))
    });
    out
}

/// Adds the discovered remote versions to an aggregated `APIGroupDiscoveryList`.
pub fn merge_aggregated(doc: &mut Value, discovered: &[(Arc<ApiService>, Option<Value>)]) {
    let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) else {
        return;
    };
    let services: Vec<Arc<ApiService>> = discovered
        .iter()
        .filter(|(_, d)| d.is_some())
        .map(|(s, _)| s.clone())
        .collect();
    for (group, svcs) in by_group(&services) {
        let versions: Vec<Value> = svcs
            .iter()
            .filter_map(|s| {
                let d = discovered.iter().find(|(x, _)| x.name == s.name)?.1.as_ref()?;
                Some(json!({"version": s.version, "resources": aggregated_resources(d), "freshness": "Current"}))
            })
            .collect();
        match items
            .iter_mut()
            .find(|g| g.pointer("/metadata/name").and_then(Value::as_str) == Some(group.as_str()))
        {
            Some(existing) => {
                if let Some(vs) = existing.get_mut("versions").and_then(Value::as_array_mut) {
                    for v in versions {
                        if !vs.iter().any(|x| x.get("version") == v.get("version")) {
                            vs.push(v);
                        }
                    }
                }
            }
            None => items.push(json!({"metadata": {"name": group}, "versions": versions})),
        }
    }
}

/// `GET /apis` with aggregated APIServices merged in (legacy or aggregated, whichever the
/// client asked for), with its own ETag.
pub async fn serve_apis(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let mut base_headers = headers.clone();
    base_headers.remove(header::IF_NONE_MATCH);
    let base = crate::discovery::serve(&state.discovery, "/apis", &base_headers)?;
    let ct = base.headers().get(header::CONTENT_TYPE).cloned()?;
    let body = axum::body::to_bytes(base.into_body(), MAX_DOC).await.ok()?;
    let mut doc: Value = serde_json::from_slice(&body).ok()?;
    let agg = &state.aggregator;
    if doc.get("kind").and_then(Value::as_str) == Some("APIGroupDiscoveryList") {
        merge_aggregated(&mut doc, &agg.discovered());
    } else {
        let remote: Vec<Arc<ApiService>> = agg.discovered().into_iter().map(|(s, _)| s).collect();
        merge_group_list(&mut doc, &remote);
    }
    let mut out = serde_json::to_vec(&doc).ok()?;
    out.push(b'\n');
    let etag = ferrokube_machinery::discovery::etag(&out);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut r = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, out).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, ct);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(group: &str, version: &str, prio: i64) -> Arc<ApiService> {
        Arc::new(ApiService {
            name: format!("{version}.{group}"),
            group: group.into(),
            version: version.into(),
            group_priority_minimum: 100,
            version_priority: prio,
            client: None,
        })
    }

    #[test]
    fn group_list_gets_new_groups_and_versions() {
        let mut doc = json!({"kind": "APIGroupList", "groups": [
            {"name": "apps", "versions": [gv("apps", "v1")], "preferredVersion": gv("apps", "v1")}]});
        merge_group_list(
            &mut doc,
            &[svc("metrics.k8s.io", "v1beta1", 10), svc("apps", "v2", 1)],
        );
        let groups = doc["groups"].as_array().expect("groups");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0]["versions"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            groups[1]["preferredVersion"]["groupVersion"],
            "metrics.k8s.io/v1beta1"
        );
    }

    #[test]
    fn resource_lists_become_aggregated_resources_with_subresources() {
        let list = json!({"kind": "APIResourceList", "groupVersion": "w.example.com/v1", "resources": [
            {"name": "widgets", "singularName": "widget", "namespaced": true, "kind": "Widget",
             "verbs": ["get", "list"], "shortNames": ["wd"]},
            {"name": "widgets/status", "singularName": "", "namespaced": true, "kind": "Widget", "verbs": ["get"]},
            {"name": "gadgets", "singularName": "gadget", "namespaced": false, "kind": "Gadget", "verbs": ["get"]}]});
        let r = aggregated_resources(&list);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["resource"], "gadgets");
        assert_eq!(r[0]["scope"], "Cluster");
        assert_eq!(r[1]["shortNames"], json!(["wd"]));
        assert_eq!(r[1]["subresources"][0]["subresource"], "status");
        let mut doc = json!({"kind": "APIGroupDiscoveryList", "items": []});
        merge_aggregated(
            &mut doc,
            &[
                (svc("w.example.com", "v1", 1), Some(list)),
                (svc("x.example.com", "v1", 1), None),
            ],
        );
        assert_eq!(doc["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(doc["items"][0]["versions"][0]["freshness"], "Current");
    }
}

//! Discovery documents, built as plain JSON from a slice of [`ResourceInfo`] (the built-ins from
//! [`crate::resources::builtin_resources`] now, CRD-derived entries later).
//!
//! - Legacy: [`api_versions`] (`GET /api`), [`api_group_list`] (`GET /apis`), [`api_group`]
//!   (`GET /apis/{group}`), [`api_resource_list`] (`GET /api/v1`, `GET /apis/{group}/{version}`).
//! - Aggregated (KEP-3352): [`aggregated`] (`GET /api` or `/apis` with
//!   `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`).
//! - [`etag`] for the `ETag` header.
//!
//! Shapes, field order and sort order follow upstream's served documents (checked against
//! `api/discovery/*.json` in kubernetes/kubernetes): groups in upstream's order with unknown
//! groups (CRDs) after them alphabetically, versions by Kubernetes version priority (the first
//! one is preferred), resources and their subresources alphabetical. Pure: no IO.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha512};

use crate::resources::{GROUP_ORDER, ResourceInfo, Scope, compare_versions};

/// Which aggregated discovery API version to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregatedVersion {
    /// `apidiscovery.k8s.io/v2` (stable since 1.30).
    V2,
    /// `apidiscovery.k8s.io/v2beta1` (same shape).
    V2Beta1,
}

impl AggregatedVersion {
    /// The `apiVersion` of the `APIGroupDiscoveryList`.
    pub fn api_version(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "apidiscovery.k8s.io/v2",
            AggregatedVersion::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }
}

/// `GET /api`: the `APIVersions` document. `server_address` is `host:port` as clients reach the
/// server (upstream answers it for the client CIDR `0.0.0.0/0`).
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// `GET /apis`: the `APIGroupList` of every non-core group in `resources`.
pub fn api_group_list(resources: &[ResourceInfo]) -> Value {
    let groups: Vec<Value> = groups(resources)
        .into_iter()
        .filter(|g| !g.is_empty())
        .filter_map(|g| group_body(resources, g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`: the `APIGroup` document, or `None` when no resource is in `group`
/// (the caller answers 404).
pub fn api_group(resources: &[ResourceInfo], group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    let body = group_body(resources, group)?;
    let mut doc = Map::new();
    doc.insert("kind".into(), json!("APIGroup"));
    doc.insert("apiVersion".into(), json!("v1"));
    if let Value::Object(fields) = body {
        doc.extend(fields);
    }
    Some(Value::Object(doc))
}

/// The versions of `group` in preference order (the first is the preferred version).
pub fn group_versions<'a>(resources: &'a [ResourceInfo], group: &str) -> Vec<&'a str> {
    let mut versions: Vec<&str> = resources
        .iter()
        .filter(|r| r.group == group)
        .map(|r| &*r.version)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    versions.sort_by(|a, b| compare_versions(a, b));
    versions
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`: the `APIResourceList`, or `None` when the
/// group-version serves nothing (the caller answers 404).
pub fn api_resource_list(resources: &[ResourceInfo], group: &str, version: &str) -> Option<Value> {
    let selected = in_group_version(resources, group, version);
    if selected.is_empty() {
        return None;
    }
    let mut entries: Vec<(String, Value)> = Vec::new();
    for r in selected {
        entries.push((r.plural.to_string(), legacy_resource(r)));
        for s in r.subresources {
            let name = format!("{}/{}", r.plural, s.name);
            let mut e = Map::new();
            e.insert("name".into(), json!(name));
            e.insert("singularName".into(), json!(""));
            e.insert("namespaced".into(), json!(r.namespaced()));
            if !s.group.is_empty() {
                e.insert("group".into(), json!(s.group));
            }
            if !s.version.is_empty() {
                e.insert("version".into(), json!(s.version));
            }
            e.insert("kind".into(), json!(s.kind(r)));
            e.insert("verbs".into(), json!(s.verbs));
            entries.push((name, Value::Object(e)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let list: Vec<Value> = entries.into_iter().map(|(_, v)| v).collect();
    let mut doc = Map::new();
    doc.insert("kind".into(), json!("APIResourceList"));
    // Upstream's core list carries no apiVersion; the group lists do.
    if !group.is_empty() {
        doc.insert("apiVersion".into(), json!("v1"));
    }
    doc.insert("groupVersion".into(), json!(gv_string(group, version)));
    doc.insert("resources".into(), Value::Array(list));
    Some(Value::Object(doc))
}

/// Aggregated discovery: the `APIGroupDiscoveryList` for `/api` (`legacy`, the core group only,
/// as one group with an empty name) or for `/apis` (every other group).
pub fn aggregated(resources: &[ResourceInfo], legacy: bool, version: AggregatedVersion) -> Value {
    let items: Vec<Value> = groups(resources)
        .into_iter()
        .filter(|g| g.is_empty() == legacy)
        .map(|g| aggregated_group(resources, g))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": version.api_version(),
        "metadata": {},
        "items": items,
    })
}

/// The `ETag` header value for a serialized discovery document: upstream's upper-case hex
/// SHA-512 of the bytes, in double quotes.
pub fn etag(doc: &[u8]) -> String {
    format!("\"{}\"", hex::encode_upper(Sha512::digest(doc)))
}

/// Groups in `resources`, core first, then built-in groups in upstream's order, then any other
/// group alphabetically.
fn groups(resources: &[ResourceInfo]) -> Vec<&str> {
    let mut set: Vec<&str> = resources
        .iter()
        .map(|r| &*r.group)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rank = |g: &str| -> usize {
        if g.is_empty() {
            0
        } else {
            GROUP_ORDER
                .iter()
                .position(|x| *x == g)
                .map_or(usize::MAX, |p| p + 1)
        }
    };
    // Stable sort over an alphabetical start: unknown groups stay alphabetical.
    set.sort_by_key(|g| rank(g));
    set
}

fn gv_string(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// `{name, versions, preferredVersion}` of a group, or `None` when it has no resources.
fn group_body(resources: &[ResourceInfo], group: &str) -> Option<Value> {
    let versions = group_versions(resources, group);
    let preferred = *versions.first()?;
    let gv = |v: &str| json!({"groupVersion": gv_string(group, v), "version": v});
    Some(json!({
        "name": group,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(preferred),
    }))
}

/// Resources of one group-version, alphabetical by plural.
fn in_group_version<'a>(
    resources: &'a [ResourceInfo],
    group: &str,
    version: &str,
) -> Vec<&'a ResourceInfo> {
    let mut selected: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    selected.sort_by(|a, b| a.plural.cmp(&b.plural));
    selected
}

/// One `APIResource` of a legacy `APIResourceList`, fields in upstream's order.
fn legacy_resource(r: &ResourceInfo) -> Value {
    let mut e = Map::new();
    e.insert("name".into(), json!(r.plural));
    e.insert("singularName".into(), json!(r.singular));
    e.insert("namespaced".into(), json!(r.namespaced()));
    e.insert("kind".into(), json!(r.kind));
    e.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        e.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        e.insert("categories".into(), json!(r.categories));
    }
    if let Some(hash) = r.storage_version_hash() {
        e.insert("storageVersionHash".into(), json!(hash));
    }
    Value::Object(e)
}

fn aggregated_group(resources: &[ResourceInfo], group: &str) -> Value {
    let versions: Vec<Value> = group_versions(resources, group)
        .into_iter()
        .map(|v| {
            let list: Vec<Value> = in_group_version(resources, group, v)
                .into_iter()
                .map(aggregated_resource)
                .collect();
            json!({"version": v, "resources": list, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({})
    } else {
        json!({"name": group})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// One `APIResourceDiscovery`, fields in upstream's order. `responseKind` carries an empty group
/// and version when the kind is the resource's own group-version's (as upstream serves it).
fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut e = Map::new();
    e.insert("resource".into(), json!(r.plural));
    e.insert(
        "responseKind".into(),
        json!({"group": "", "version": "", "kind": r.kind}),
    );
    let scope = match r.scope {
        Scope::Namespaced => "Namespaced",
        Scope::Cluster => "Cluster",
    };
    e.insert("scope".into(), json!(scope));
    e.insert("singularResource".into(), json!(r.singular));
    e.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        e.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        e.insert("categories".into(), json!(r.categories));
    }
    if !r.subresources.is_empty() {
        let mut subs: Vec<_> = r.subresources.iter().collect();
        subs.sort_by(|a, b| a.name.cmp(b.name));
        let subs: Vec<Value> = subs
            .into_iter()
            .map(|s| {
                json!({
                    "subresource": s.name,
                    "responseKind": {"group": s.group, "version": s.version, "kind": s.kind(r)},
                    "verbs": s.verbs,
                })
            })
            .collect();
        e.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(e)
}

#[cfg(test)]
mod tests;

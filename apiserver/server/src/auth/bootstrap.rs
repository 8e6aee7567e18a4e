//! The RBAC bootstrap policy (`bootstrap_policy.txt`, transcribed from upstream's
//! `bootstrappolicy`), created on start and reconciled on every restart as upstream's
//! `rbac/bootstrap-roles` post-start hook does: objects annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` get missing rules, labels,
//! annotations and subjects added (nothing a user added is removed); `"false"` leaves the
//! object alone.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::rbac::{Rule, uncovered};
use crate::AppState;
use crate::registry::ResourceHandle;
use crate::registry::request::WriteOptions;

const POLICY: &str = include_str!("bootstrap_policy.txt");
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim())
        .filter(|x| !x.is_empty())
        .map(|x| {
            if x == "\"\"" {
                String::new()
            } else {
                x.to_string()
            }
        })
        .collect()
}

fn base_meta(name: &str, labels: Map<String, Value>) -> Value {
    let mut labels = labels;
    labels.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
    json!({"name": name, "labels": labels, "annotations": {AUTOUPDATE: "true"}})
}

/// The policy as ClusterRole and ClusterRoleBinding objects.
pub fn policy() -> Result<(Vec<Value>, Vec<Value>), String> {
    let mut roles: Vec<Value> = Vec::new();
    let mut bindings = Vec::new();
    for (i, raw) in POLICY.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: &str| format!("bootstrap_policy.txt line {}: {m}", i + 1);
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "clusterrole" => {
                let mut parts = rest.split_whitespace();
                let name = parts
                    .next()
                    .ok_or_else(|| err("clusterrole needs a name"))?;
                let mut labels = Map::new();
                for l in parts {
                    let (k, v) = l.split_once('=').ok_or_else(|| err("label must be k=v"))?;
                    labels.insert(k.into(), json!(v));
                }
                roles.push(json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": base_meta(name, labels),
                    "rules": [],
                }));
            }
            "aggregate" => {
                let role = roles
                    .last_mut()
                    .ok_or_else(|| err("aggregate before clusterrole"))?;
                let (k, v) = rest
                    .trim()
                    .split_once('=')
                    .ok_or_else(|| err("aggregate k=v"))?;
                role["aggregationRule"] =
                    json!({"clusterRoleSelectors": [{"matchLabels": {k: v}}]});
            }
            "rule" | "url" => {
                let role = roles
                    .last_mut()
                    .ok_or_else(|| err("rule before clusterrole"))?;
                let cols: Vec<&str> = rest.split('|').collect();
                let rule = if word == "url" {
                    if cols.len() != 2 {
                        return Err(err("url VERBS | URLS"));
                    }
                    Rule {
                        verbs: split_list(cols[0]),
                        non_resource_urls: split_list(cols[1]),
                        ..Default::default()
                    }
                } else {
                    if !(3..=4).contains(&cols.len()) {
                        return Err(err("rule VERBS | GROUPS | RESOURCES [| NAMES]"));
                    }
                    Rule {
                        verbs: split_list(cols[0]),
                        api_groups: split_list(cols[1]).into_iter().collect(),
                        resources: split_list(cols[2]),
                        resource_names: cols.get(3).map(|c| split_list(c)).unwrap_or_default(),
                        ..Default::default()
                    }
                };
                // `""` alone splits to one empty group.
                let mut rule = rule;
                if word == "rule" && rule.api_groups.is_empty() {
                    rule.api_groups.push(String::new());
                }
                if let Some(a) = role["rules"].as_array_mut() {
                    a.push(rule.to_json());
                }
            }
            "binding" => {
                let mut parts = rest.split_whitespace();
                let name = parts.next().ok_or_else(|| err("binding needs a name"))?;
                let role = parts.next().ok_or_else(|| err("binding needs a role"))?;
                let mut subjects = Vec::new();
                for s in parts {
                    let (kind, who) = s.split_once(':').ok_or_else(|| err("subject KIND:NAME"))?;
                    subjects.push(match kind {
                        "User" | "Group" => json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": who}),
                        "ServiceAccount" => {
                            let (ns, n) = who.split_once('/').ok_or_else(|| err("ServiceAccount:NS/NAME"))?;
                            json!({"kind": "ServiceAccount", "name": n, "namespace": ns})
                        }
                        _ => return Err(err("subject kind must be User, Group or ServiceAccount")),
                    });
                }
                let mut b = json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": base_meta(name, Map::new()),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                });
                if !subjects.is_empty() {
                    b["subjects"] = json!(subjects);
                }
                bindings.push(b);
            }
            other => return Err(err(&format!("unknown directive {other:?}"))),
        }
    }
    Ok((roles, bindings))
}

/// Adds what `want` has and `have` lacks (labels, annotations, rules or subjects); returns
/// whether anything changed (upstream `reconciliation.computeReconciledRole` with union).
fn reconcile_into(have: &mut Value, want: &Value, aggregated: bool) -> bool {
    let mut changed = false;
    for field in ["labels", "annotations"] {
        if let Some(w) = want
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
        {
            let meta = &mut have["metadata"];
            if !meta[field].is_object() {
                meta[field] = json!({});
            }
            for (k, v) in w {
                if field == "annotations" && k == AUTOUPDATE {
                    continue;
                }
                if meta[field].get(k) != Some(v) {
                    meta[field][k] = v.clone();
                    changed = true;
                }
            }
        }
    }
    if have.get("kind").and_then(Value::as_str) == Some("ClusterRole") {
        if let Some(rule) = want.get("aggregationRule")
            && have.get("aggregationRule") != Some(rule)
        {
            have["aggregationRule"] = rule.clone();
            changed = true;
        }
        if !aggregated {
            let have_rules = Rule::list_from(have);
            for r in Rule::list_from(want) {
                if !uncovered(&have_rules, &r).is_empty() {
                    if !have["rules"].is_array() {
                        have["rules"] = json!([]);
                    }
                    if let Some(a) = have["rules"].as_array_mut() {
                        a.push(r.to_json());
                    }
                    changed = true;
                }
            }
        }
    } else {
        if have.get("roleRef") != want.get("roleRef") {
            // roleRef is immutable; upstream recreates the binding. Leave it and warn.
            let name = want
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            tracing::warn!(
                binding = name,
                "bootstrap binding has another roleRef; left alone"
            );
            return false;
        }
        for s in want
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let present = have
                .get("subjects")
                .and_then(Value::as_array)
                .is_some_and(|a| a.contains(s));
            if !present {
                if !have["subjects"].is_array() {
                    have["subjects"] = json!([]);
                }
                if let Some(a) = have["subjects"].as_array_mut() {
                    a.push(s.clone());
                }
                changed = true;
            }
        }
    }
    changed
}

/// How many bootstrap objects are created or reconciled at once. The embedded store commits
/// concurrent writes together (one fsync for the batch) and etcd pipelines them, so ~100
/// objects cost a few commits instead of one each.
const CONCURRENCY: usize = 64;

/// What reconciling one bootstrap object did.
enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// Creates or reconciles every bootstrap object (upstream's `rbac/bootstrap-roles` post-start
/// hook, which `/readyz` waits for). The objects do not depend on one another (a binding names
/// its role, nothing checks that it exists), so they are written concurrently.
pub async fn reconcile(state: &Arc<AppState>) -> anyhow::Result<()> {
    let (roles, bindings) = policy().map_err(anyhow::Error::msg)?;
    let group = "rbac.authorization.k8s.io";
    let mut work = Vec::with_capacity(roles.len() + bindings.len());
    for (plural, objs) in [("clusterroles", roles), ("clusterrolebindings", bindings)] {
        let h = state
            .registry
            .get(group, "v1", plural)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no {plural} resource"))?;
        work.extend(objs.into_iter().map(|want| (plural, h.clone(), want)));
    }
    // Each object a task of its own: the write path's CPU work (admission, managedFields,
    // the type check, encoding) spreads over the runtime's worker threads.
    let mut results = futures::stream::iter(work)
        .map(|(plural, h, want)| {
            let state = state.clone();
            tokio::spawn(async move {
                reconcile_one(&state, plural, &h, want)
                    .await
                    .map(|outcome| (plural, outcome))
            })
        })
        .buffer_unordered(CONCURRENCY);
    let mut counts: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    while let Some(done) = results.next().await {
        let (plural, outcome) = done??;
        let c = counts.entry(plural).or_default();
        match outcome {
            Outcome::Created => c.0 += 1,
            Outcome::Updated => c.1 += 1,
            Outcome::Unchanged => {}
        }
    }
    for (plural, (created, updated)) in counts {
        tracing::info!(
            resource = plural,
            created,
            updated,
            "RBAC bootstrap policy reconciled"
        );
    }
    Ok(())
}

/// Creates one bootstrap object when it is missing; adds what it lacks when it exists and is
/// annotated `autoupdate: "true"` (or not annotated).
async fn reconcile_one(
    state: &AppState,
    plural: &str,
    h: &Arc<ResourceHandle>,
    want: Value,
) -> anyhow::Result<Outcome> {
    let name = want
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match state.store.storage.get(&h.key("", &name)).await? {
        None => match state
            .store
            .create(h, "", want, &WriteOptions::default())
            .await
        {
            Ok(_) => Ok(Outcome::Created),
            // Another API server of the cluster created it meanwhile.
            Err(e) if e.to_status().code == 409 => Ok(Outcome::Unchanged),
            Err(e) => anyhow::bail!("creating {plural} {name}: {e}"),
        },
        Some(kv) => {
            let mut have: Value = serde_json::from_slice(&kv.value)?;
            let auto = have
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    AUTOUPDATE.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                != Some("false");
            let aggregated = want.get("aggregationRule").is_some();
            if !(auto && reconcile_into(&mut have, &want, aggregated)) {
                return Ok(Outcome::Unchanged);
            }
            state
                .store
                .update(h, "", &name, |_| Ok(have.clone()), &WriteOptions::default())
                .await?;
            Ok(Outcome::Updated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_parses_and_has_the_upstream_roles() {
        let (roles, bindings) = policy().expect("policy");
        let names: Vec<&str> = roles
            .iter()
            .filter_map(|r| r.pointer("/metadata/name")?.as_str())
            .collect();
        for n in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:basic-user",
            "system:discovery",
            "system:public-info-viewer",
            "system:node",
            "system:kube-controller-manager",
            "system:kube-scheduler",
            "system:controller:generic-garbage-collector",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        let masters = bindings
            .iter()
            .find(|b| b["metadata"]["name"] == "cluster-admin")
            .expect("binding");
        assert_eq!(masters["subjects"][0]["name"], "system:masters");
        let view = roles
            .iter()
            .find(|r| r["metadata"]["name"] == "system:aggregate-to-view")
            .expect("view");
        assert_eq!(view["rules"][0]["apiGroups"], json!([""]));
    }

    #[test]
    fn reconcile_adds_missing_rules_only() {
        let (roles, _) = policy().expect("policy");
        let want = roles
            .iter()
            .find(|r| r["metadata"]["name"] == "system:basic-user")
            .expect("role")
            .clone();
        let mut have = want.clone();
        have["rules"] = json!([{"apiGroups": ["x"], "resources": ["y"], "verbs": ["get"]}]);
        assert!(reconcile_into(&mut have, &want, false));
        assert_eq!(have["rules"].as_array().map(Vec::len), Some(3));
        assert!(!reconcile_into(&mut have, &want, false));
    }
}

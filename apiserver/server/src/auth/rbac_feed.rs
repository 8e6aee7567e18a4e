//! Feeds in-memory indexes from the watch cache: a snapshot plus a watch of every event after
//! it, re-listed when the watch ends (an explicit `State` + `step`, DESIGN invariant 8). Used
//! for the RBAC index (four prefixes) and the node authorizer's pod graph. Also the
//! ClusterRole aggregation controller (upstream `clusterroleaggregation_controller.go`): the
//! `rules` of every ClusterRole with an `aggregationRule` are kept equal, in storage, to the
//! union of the rules of the ClusterRoles its selectors match.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_storage::watch_cache::{CacheEvent, CacheWatchOptions, CacheWatchStream, WatchCache};
use ferrokube_storage::{EventKind, KeyValue};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::rbac::{Kind, Rule};
use crate::AppState;
use crate::registry::request::WriteOptions;

/// What a feed does with the objects under its prefix.
pub trait Sink: Send + Sync + 'static {
    /// Forget everything (a re-list follows).
    fn reset(&self);
    /// An object was created or updated (`Some`) or deleted (`None`); `key` is its storage key.
    fn apply(&self, key: &str, obj: Option<&Value>);
}

/// The states of a feed.
enum State {
    /// List the prefix and start watching after the snapshot.
    Listing,
    /// Apply watch events.
    Watching(Box<CacheWatchStream>),
    /// Wait before listing again.
    Backoff,
    /// The cache was shut down (the server is stopping): the feed ends.
    Stopped,
}

struct Feed<S: Sink> {
    cache: Arc<WatchCache>,
    prefix: String,
    sink: Arc<S>,
}

impl<S: Sink> Feed<S> {
    fn load(&self, items: &[KeyValue]) {
        self.sink.reset();
        for kv in items {
            if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
                self.sink.apply(&kv.key, Some(&v));
            }
        }
    }

    async fn step(&self, state: State) -> State {
        match state {
            State::Listing => {
                match self
                    .cache
                    .watch_with_initial(&self.prefix, 0, CacheWatchOptions::default())
                    .await
                {
                    Ok(w) => {
                        self.load(&w.items);
                        State::Watching(Box::new(w.stream))
                    }
                    Err(e) if self.cache.is_shut_down() => {
                        tracing::debug!(prefix = %self.prefix, error = %e, "index feed: cache shut down; stopping");
                        State::Stopped
                    }
                    Err(e) => {
                        tracing::warn!(prefix = %self.prefix, error = %e, "index feed: list failed");
                        State::Backoff
                    }
                }
            }
            State::Watching(mut stream) => match stream.next().await {
                Some(Ok(CacheEvent::Event(ev))) => {
                    match ev.kind {
                        EventKind::Put => {
                            if let Ok(v) = serde_json::from_slice::<Value>(&ev.kv.value) {
                                self.sink.apply(&ev.kv.key, Some(&v));
                            }
                        }
                        EventKind::Delete => self.sink.apply(&ev.kv.key, None),
                        // The cache never passes backend progress on.
                        EventKind::Progress => {}
                    }
                    State::Watching(stream)
                }
                Some(Ok(CacheEvent::Progress(_))) => State::Watching(stream),
                Some(Err(e)) => {
                    tracing::debug!(prefix = %self.prefix, error = %e, "index feed: watch ended; re-listing");
                    State::Listing
                }
                None => State::Listing,
            },
            State::Backoff => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                State::Listing
            }
            State::Stopped => State::Stopped,
        }
    }
}

/// Loads `prefix` into `sink` now, then keeps it current in a background task.
pub async fn feed<S: Sink>(
    cache: Arc<WatchCache>,
    prefix: String,
    sink: Arc<S>,
) -> anyhow::Result<()> {
    let f = Feed {
        cache,
        prefix,
        sink,
    };
    let w = f
        .cache
        .watch_with_initial(&f.prefix, 0, CacheWatchOptions::default())
        .await?;
    f.load(&w.items);
    tokio::spawn(async move {
        let mut state = State::Watching(Box::new(w.stream));
        while !matches!(state, State::Stopped) {
            state = f.step(state).await;
        }
    });
    Ok(())
}

/// Splits `/registry/<segment>/[ns/]name`.
pub fn ns_name<'a>(key: &'a str, prefix: &str) -> (&'a str, &'a str) {
    let rest = key.strip_prefix(prefix).unwrap_or(key);
    rest.split_once('/').unwrap_or(("", rest))
}

struct RbacSink {
    state: std::sync::Weak<AppState>,
    kind: Kind,
    prefix: String,
    aggregate: Arc<Notify>,
}

impl Sink for RbacSink {
    fn reset(&self) {
        if let Some(s) = self.state.upgrade() {
            s.auth.rbac.clear(self.kind);
        }
    }
    fn apply(&self, key: &str, obj: Option<&Value>) {
        let Some(s) = self.state.upgrade() else {
            return;
        };
        let (ns, name) = ns_name(key, &self.prefix);
        s.auth.rbac.apply(self.kind, obj, ns, name);
        if self.kind == Kind::ClusterRole {
            self.aggregate.notify_one();
        }
    }
}

/// Starts the four RBAC feeds (loaded before this returns) and the aggregation controller.
pub async fn start(state: &Arc<AppState>) -> anyhow::Result<()> {
    let aggregate = Arc::new(Notify::new());
    for kind in [
        Kind::ClusterRole,
        Kind::Role,
        Kind::ClusterRoleBinding,
        Kind::RoleBinding,
    ] {
        let prefix = format!("/registry/{}/", kind.segment());
        let sink = Arc::new(RbacSink {
            state: Arc::downgrade(state),
            kind,
            prefix: prefix.clone(),
            aggregate: aggregate.clone(),
        });
        feed(state.store.cache.clone(), prefix, sink).await?;
    }
    aggregate_once(state).await;
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            aggregate.notified().await;
            // Coalesce bursts (bootstrap, kubectl apply of many roles).
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Some(state) = weak.upgrade() else { return };
            aggregate_once(&state).await;
        }
    });
    Ok(())
}

/// Whether `labels` satisfy a LabelSelector object (matchLabels and matchExpressions).
pub fn selector_matches(selector: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(m) = selector.get("matchLabels").and_then(Value::as_object)
        && m.iter().any(|(k, v)| get(k) != v.as_str())
    {
        return false;
    }
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let ok = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => get(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => get(key).is_some(),
            "DoesNotExist" => get(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The rules of every aggregated ClusterRole (one with `aggregationRule.clusterRoleSelectors`)
/// that differ from what `roles` holds: each the union, without duplicates, of the rules of
/// the other roles its selectors match. Upstream reaches the result over several passes, one
/// per change event (`view` feeds `edit`, which feeds `admin`); here the passes run in memory
/// until nothing changes (at most one per role, which also ends a cycle of aggregated roles),
/// so every role is written once.
fn aggregate_rules(roles: &BTreeMap<String, Value>) -> Vec<(&str, Vec<Rule>)> {
    let empty = serde_json::Map::new();
    let labels = |r: &Value| {
        r.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&empty)
            .clone()
    };
    let labels: BTreeMap<&str, serde_json::Map<String, Value>> =
        roles.iter().map(|(n, r)| (n.as_str(), labels(r))).collect();
    let aggregated: Vec<(&str, &Vec<Value>)> = roles
        .iter()
        .filter_map(|(n, r)| {
            let s = r
                .pointer("/aggregationRule/clusterRoleSelectors")
                .and_then(Value::as_array)?;
            Some((n.as_str(), s))
        })
        .collect();
    let mut current: BTreeMap<&str, Vec<Rule>> = roles
        .iter()
        .map(|(n, r)| (n.as_str(), Rule::list_from(r)))
        .collect();
    for _ in 0..=aggregated.len() {
        let mut changed = false;
        for (name, selectors) in &aggregated {
            let mut rules: Vec<Rule> = Vec::new();
            for (other, other_labels) in &labels {
                if other == name
                    || !selectors.iter().any(|s| {
                        !s.as_object().is_some_and(|m| m.is_empty())
                            && selector_matches(s, other_labels)
                    })
                {
                    continue;
                }
                for r in current.get(other).into_iter().flatten() {
                    if !rules.contains(r) {
                        rules.push(r.clone());
                    }
                }
            }
            if current.get(name) != Some(&rules) {
                current.insert(name, rules);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    aggregated
        .iter()
        .filter_map(|(name, _)| {
            let rules = current.remove(name)?;
            let stored = roles.get(*name).map(Rule::list_from).unwrap_or_default();
            (stored != rules).then_some((*name, rules))
        })
        .collect()
}

/// One pass of the aggregation controller: the changed roles are written concurrently.
async fn aggregate_once(state: &Arc<AppState>) {
    let Some(h) = state
        .registry
        .get("rbac.authorization.k8s.io", "v1", "clusterroles")
        .cloned()
    else {
        return;
    };
    let roles = state.auth.rbac.cluster_roles();
    let writes = aggregate_rules(&roles).into_iter().filter_map(|(name, rules)| {
        let mut updated = roles.get(name)?.clone();
        updated["rules"] = json!(rules.iter().map(Rule::to_json).collect::<Vec<_>>());
        if let Some(m) = updated
            .pointer_mut("/metadata")
            .and_then(Value::as_object_mut)
        {
            m.remove("resourceVersion");
        }
        let h = h.clone();
        Some(async move {
            let write = |_: Option<&Value>| Ok(updated.clone());
            match state
                .store
                .update(&h, "", name, write, &WriteOptions::default())
                .await
            {
                Ok(_) => {
                    tracing::info!(clusterrole = %name, rules = rules.len(), "aggregated cluster role rules")
                }
                Err(e) => {
                    tracing::warn!(clusterrole = %name, error = %e, "aggregating cluster role failed")
                }
            }
        })
    });
    futures::future::join_all(writes).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, labels: Value, aggregate_to: Option<&str>, resources: &[&str]) -> Value {
        let mut r = json!({
            "metadata": {"name": name, "labels": labels},
            "rules": resources.iter().map(|res| json!({
                "apiGroups": [""], "resources": [res], "verbs": ["get"]})).collect::<Vec<_>>(),
        });
        if let Some(l) = aggregate_to {
            r["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {l: "true"}}]});
        }
        r
    }

    #[test]
    fn a_chain_of_aggregated_roles_converges_in_one_pass() {
        // view ⊂ edit ⊂ admin, as upstream's bootstrap roles: each aggregated role also
        // carries the label of the next one, so admin gets edit's aggregated rules.
        let roles: BTreeMap<String, Value> = [
            role("admin", json!({}), Some("to-admin"), &[]),
            role("edit", json!({"to-admin": "true"}), Some("to-edit"), &[]),
            role("view", json!({"to-edit": "true"}), Some("to-view"), &[]),
            role(
                "a-to-admin",
                json!({"to-admin": "true"}),
                None,
                &["secrets"],
            ),
            role("a-to-edit", json!({"to-edit": "true"}), None, &["pods"]),
            role(
                "a-to-view",
                json!({"to-view": "true"}),
                None,
                &["configmaps"],
            ),
            role("other", json!({"x": "true"}), None, &["nodes"]),
        ]
        .into_iter()
        .map(|r| (r["metadata"]["name"].as_str().unwrap_or("").to_string(), r))
        .collect();
        let resources = |rules: &[Rule]| {
            let mut r: Vec<String> = rules.iter().flat_map(|r| r.resources.clone()).collect();
            r.sort();
            r
        };
        let out: BTreeMap<&str, Vec<Rule>> = aggregate_rules(&roles).into_iter().collect();
        assert_eq!(resources(&out["view"]), ["configmaps"]);
        assert_eq!(resources(&out["edit"]), ["configmaps", "pods"]);
        assert_eq!(resources(&out["admin"]), ["configmaps", "pods", "secrets"]);
        assert_eq!(out.len(), 3, "only aggregated roles change: {out:?}");

        // Once stored, nothing is left to write.
        let mut stored = roles.clone();
        for (name, rules) in &out {
            stored.get_mut(*name).expect("role")["rules"] =
                json!(rules.iter().map(Rule::to_json).collect::<Vec<_>>());
        }
        assert!(aggregate_rules(&stored).is_empty());
    }

    #[test]
    fn a_cycle_of_aggregated_roles_settles() {
        let roles: BTreeMap<String, Value> = [
            role("a", json!({"to-b": "true"}), Some("to-a"), &["pods"]),
            role("b", json!({"to-a": "true"}), Some("to-b"), &["nodes"]),
        ]
        .into_iter()
        .map(|r| (r["metadata"]["name"].as_str().unwrap_or("").to_string(), r))
        .collect();
        // `a` takes `b`'s rules, then `b` takes `a`'s new ones (its own): stable after that.
        let out = aggregate_rules(&roles);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].0, "a");
        assert_eq!(out[0].1, Rule::list_from(&roles["b"]));
    }
}

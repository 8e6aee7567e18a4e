//! The Node authorizer (upstream `plugin/pkg/auth/authorizer/node`): a node identity
//! (`system:node:<name>` in `system:nodes`) may read the secrets, configmaps and
//! persistentvolumeclaims of pods bound to it, request tokens for their service accounts, and
//! use only its own Node and Lease; everything else is what the `system:node` ClusterRole's
//! rules allow. The graph of pods by node is fed by a watch of pods.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::rbac::RbacIndex;
use super::rbac_feed::{Sink, feed, ns_name};
use super::{Attributes, Decision};
use crate::AppState;

/// The group of node identities.
pub const NODES_GROUP: &str = "system:nodes";

/// What one pod references.
#[derive(Debug, Default, Clone)]
struct PodRefs {
    node: String,
    namespace: String,
    service_account: String,
    secrets: HashSet<String>,
    configmaps: HashSet<String>,
    pvcs: HashSet<String>,
}

fn refs_of(pod: &Value, namespace: &str) -> PodRefs {
    let mut r = PodRefs {
        node: pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        namespace: namespace.to_string(),
        service_account: pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string(),
        ..Default::default()
    };
    let name = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    for s in pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        r.secrets.extend(name(s, "/name"));
    }
    for v in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        r.secrets.extend(name(v, "/secret/secretName"));
        r.configmaps.extend(name(v, "/configMap/name"));
        r.pvcs.extend(name(v, "/persistentVolumeClaim/claimName"));
        for src in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            r.secrets.extend(name(src, "/secret/name"));
            r.configmaps.extend(name(src, "/configMap/name"));
        }
    }
    for list in [
        "/spec/containers",
        "/spec/initContainers",
        "/spec/ephemeralContainers",
    ] {
        for c in pod
            .pointer(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                r.secrets.extend(name(e, "/valueFrom/secretKeyRef/name"));
                r.configmaps
                    .extend(name(e, "/valueFrom/configMapKeyRef/name"));
            }
            for e in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                r.secrets.extend(name(e, "/secretRef/name"));
                r.configmaps.extend(name(e, "/configMapRef/name"));
            }
        }
    }
    r
}

/// A test of one pod's references.
type RefCheck<'a> = Box<dyn Fn(&PodRefs) -> bool + 'a>;

/// Pods by key, and pod keys by node.
#[derive(Default)]
pub struct NodeGraph {
    inner: RwLock<Graph>,
}

#[derive(Default)]
struct Graph {
    pods: HashMap<String, PodRefs>,
    by_node: HashMap<String, HashSet<String>>,
}

impl NodeGraph {
    fn set(&self, key: &str, pod: Option<PodRefs>) {
        let Ok(mut g) = self.inner.write() else {
            return;
        };
        if let Some(old) = g.pods.remove(key)
            && let Some(set) = g.by_node.get_mut(&old.node)
        {
            set.remove(key);
            if set.is_empty() {
                g.by_node.remove(&old.node);
            }
        }
        if let Some(p) = pod.filter(|p| !p.node.is_empty()) {
            g.by_node
                .entry(p.node.clone())
                .or_default()
                .insert(key.to_string());
            g.pods.insert(key.to_string(), p);
        }
    }

    fn related(&self, node: &str, ns: &str, check: impl Fn(&PodRefs) -> bool) -> bool {
        let Ok(g) = self.inner.read() else {
            return false;
        };
        g.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|k| g.pods.get(k))
            .any(|p| p.namespace == ns && check(p))
    }

    /// The node authorizer's decision.
    pub fn authorize(&self, a: &Attributes<'_>, rbac: &RbacIndex) -> (Decision, String) {
        let Some(node) = a.user.username.strip_prefix("system:node:") else {
            return (Decision::NoOpinion, String::new());
        };
        if node.is_empty() || !a.user.groups.iter().any(|g| g == NODES_GROUP) {
            return (Decision::NoOpinion, String::new());
        }
        let no_relation = || {
            (
                Decision::NoOpinion,
                format!("no relationship found between node '{node}' and this object"),
            )
        };
        if a.resource_request && a.api_group.is_empty() {
            let kind_check: Option<RefCheck<'_>> = match (a.resource, a.subresource) {
                ("secrets", "") => Some(Box::new(|p: &PodRefs| p.secrets.contains(a.name))),
                ("configmaps", "") => Some(Box::new(|p: &PodRefs| p.configmaps.contains(a.name))),
                ("persistentvolumeclaims", "") => {
                    Some(Box::new(|p: &PodRefs| p.pvcs.contains(a.name)))
                }
                ("serviceaccounts", "token") => {
                    Some(Box::new(|p: &PodRefs| p.service_account == a.name))
                }
                _ => None,
            };
            if let Some(check) = kind_check {
                let verb_ok = if a.subresource == "token" {
                    a.verb == "create"
                } else {
                    matches!(a.verb, "get" | "list" | "watch")
                };
                if !verb_ok || a.name.is_empty() {
                    return (
                        Decision::NoOpinion,
                        format!(
                            "can only {} {} of pods bound to node '{node}' by name",
                            if a.subresource == "token" {
                                "create tokens for service accounts"
                            } else {
                                "read"
                            },
                            a.resource
                        ),
                    );
                }
                return if self.related(node, a.namespace, check) {
                    (Decision::Allow, String::new())
                } else {
                    no_relation()
                };
            }
            // Writes of other Node objects are the NodeRestriction admission plugin's to
            // refuse (upstream: the Node authorizer defers to the `system:node` rules there).
        }
        if a.resource_request && a.api_group == "coordination.k8s.io" && a.resource == "leases" {
            if a.namespace != "kube-node-lease" || (a.name != node && a.verb != "create") {
                return (
                    Decision::NoOpinion,
                    "can only access node lease with the same name as the requesting node".into(),
                );
            }
            return (Decision::Allow, String::new());
        }
        match rbac.role_rules("", "system:node") {
            Some(rules) if rules.iter().any(|r| r.allows(a)) => (Decision::Allow, String::new()),
            _ => (Decision::NoOpinion, String::new()),
        }
    }
}

struct PodSink(std::sync::Weak<AppState>);

impl Sink for PodSink {
    fn reset(&self) {
        if let Some(s) = self.0.upgrade()
            && let Ok(mut g) = s.auth.node_graph.inner.write()
        {
            *g = Graph::default();
        }
    }
    fn apply(&self, key: &str, obj: Option<&Value>) {
        let Some(s) = self.0.upgrade() else { return };
        let (ns, _) = ns_name(key, "/registry/pods/");
        s.auth.node_graph.set(key, obj.map(|o| refs_of(o, ns)));
    }
}

/// Starts the pod feed of the graph.
pub async fn start(state: &Arc<AppState>) -> anyhow::Result<()> {
    feed(
        state.store.cache.clone(),
        "/registry/pods/".into(),
        Arc::new(PodSink(Arc::downgrade(state))),
    )
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::UserInfo;

    #[test]
    fn node_reads_only_its_pods_secrets() {
        let g = NodeGraph::default();
        let pod = json!({"spec": {"nodeName": "n1", "volumes": [{"name": "v", "secret": {"secretName": "s1"}}], "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}]}]}});
        g.set("/registry/pods/default/p", Some(refs_of(&pod, "default")));
        let n1 = UserInfo {
            username: "system:node:n1".into(),
            groups: vec![NODES_GROUP.into()],
            ..Default::default()
        };
        let n2 = UserInfo {
            username: "system:node:n2".into(),
            groups: vec![NODES_GROUP.into()],
            ..Default::default()
        };
        let rbac = RbacIndex::default();
        let mut a = Attributes::non_resource(&n1, "get", "");
        a.resource_request = true;
        a.namespace = "default";
        a.resource = "secrets";
        a.name = "s1";
        assert_eq!(g.authorize(&a, &rbac).0, Decision::Allow);
        a.name = "other";
        assert_eq!(g.authorize(&a, &rbac).0, Decision::NoOpinion);
        a.resource = "configmaps";
        a.name = "cm";
        assert_eq!(g.authorize(&a, &rbac).0, Decision::Allow);
        a.user = &n2;
        assert_eq!(g.authorize(&a, &rbac).0, Decision::NoOpinion);
        g.set("/registry/pods/default/p", None);
        a.user = &n1;
        assert_eq!(g.authorize(&a, &rbac).0, Decision::NoOpinion);
    }
}

//! NodeRestriction (upstream `plugin/pkg/admission/noderestriction`): a node identity
//! (`system:node:<name>` in `system:nodes`) may write only its own Node (no taint changes
//! after registration, only the labels a kubelet may set), only its own Lease, only the status
//! of pods bound to it, delete or evict only those pods, and create only mirror pods bound to
//! itself. Other users are not affected.

use std::collections::BTreeSet;

use serde_json::Value;

use super::pod::s;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;

/// The NodeRestriction plugin.
pub struct NodeRestriction;

/// The node name of a node identity.
fn node_name<'a>(a: &'a Attributes<'_>) -> Option<&'a str> {
    let name = a.user.username.strip_prefix("system:node:")?;
    (!name.is_empty() && a.user.groups.iter().any(|g| g == "system:nodes")).then_some(name)
}

/// Labels a kubelet may set on its Node (upstream `kubeletapis.KubeletLabels` and the
/// `kubelet.kubernetes.io`/`node.kubernetes.io` namespaces).
const KUBELET_LABELS: [&str; 11] = [
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
];

fn in_domain(domain: &str, of: &str) -> bool {
    domain == of || domain.ends_with(&format!(".{of}"))
}

/// upstream `getForbiddenLabels`.
fn forbidden_label(key: &str) -> bool {
    let Some((domain, _)) = key.split_once('/') else {
        return false;
    };
    if in_domain(domain, "node-restriction.kubernetes.io") {
        return true;
    }
    if KUBELET_LABELS.contains(&key)
        || in_domain(domain, "kubelet.kubernetes.io")
        || in_domain(domain, "node.kubernetes.io")
    {
        return false;
    }
    in_domain(domain, "kubernetes.io") || in_domain(domain, "k8s.io")
}

/// Labels added, changed or removed between two label maps.
fn modified_labels(new: Option<&Value>, old: Option<&Value>) -> BTreeSet<String> {
    let map = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let (n, o) = (map(new), map(old));
    n.keys()
        .chain(o.keys())
        .filter(|k| n.get(*k) != o.get(*k))
        .cloned()
        .collect()
}

impl NodeRestriction {
    fn admit_node(a: &Attributes<'_>, node: &str, obj: &Value) -> ApiResult<()> {
        if a.name != node {
            return Err(a.forbidden(&format!(
                "node {node:?} is not allowed to modify node {:?}",
                a.name
            )));
        }
        let old = a.old;
        let labels = obj.pointer("/metadata/labels");
        match a.operation {
            Operation::Create => {
                let bad: Vec<String> = modified_labels(labels, None)
                    .into_iter()
                    .filter(|k| forbidden_label(k))
                    .collect();
                if !bad.is_empty() {
                    return Err(a.forbidden(&format!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        bad.join(", ")
                    )));
                }
            }
            Operation::Update => {
                let old_labels = old.and_then(|o| o.pointer("/metadata/labels"));
                let bad: Vec<String> = modified_labels(labels, old_labels)
                    .into_iter()
                    .filter(|k| forbidden_label(k))
                    .collect();
                if !bad.is_empty() {
                    return Err(a.forbidden(&format!(
                        "is not allowed to modify labels: {}",
                        bad.join(", ")
                    )));
                }
                let taints = |v: Option<&Value>| {
                    v.and_then(|v| v.pointer("/spec/taints"))
                        .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
                        .cloned()
                };
                if taints(Some(obj)) != taints(old) {
                    return Err(
                        a.forbidden(&format!("node {node:?} is not allowed to modify taints"))
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn admit_pod(a: &Attributes<'_>, node: &str, obj: &Value) -> ApiResult<()> {
        let bound = |p: &Value| s(p, "/spec/nodeName") == node;
        match (a.subresource, a.operation) {
            ("", Operation::Create) => {
                if !super::pod::is_mirror(obj) {
                    return Err(a.forbidden(&format!(
                        "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
                    )));
                }
                if !bound(obj) {
                    return Err(a.forbidden(&format!(
                        "node {node:?} can only create pods with spec.nodeName set to itself"
                    )));
                }
                Ok(())
            }
            ("", Operation::Delete) => {
                if a.old.is_some_and(|p| !bound(p)) {
                    return Err(a.forbidden(&format!(
                        "node {node:?} can only delete pods with spec.nodeName set to itself"
                    )));
                }
                Ok(())
            }
            ("", op) => {
                let op = format!("{op:?}").to_uppercase();
                Err(a.forbidden(&format!(
                    "unexpected operation {op:?}, node {node:?} can only update pod status"
                )))
            }
            ("status", _) => {
                if a.old.is_some_and(|p| !bound(p)) {
                    return Err(a.forbidden(&format!(
                        "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                    )));
                }
                Ok(())
            }
            ("eviction", _) => Ok(()),
            (sub, _) => Err(a.forbidden(&format!(
                "unexpected pod subresource {sub:?}, only 'status' and 'eviction' are allowed"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl AdmissionPlugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        _old: Option<&Value>,
    ) -> ApiResult<()> {
        let Some(node) = node_name(a) else {
            return Ok(());
        };
        if a.is("", "nodes") {
            return Self::admit_node(a, node, obj);
        }
        if a.is("", "pods") {
            return Self::admit_pod(a, node, obj);
        }
        if a.is("coordination.k8s.io", "leases")
            && a.namespace == "kube-node-lease"
            && a.name != node
        {
            return Err(a.forbidden(
                "can only access node lease with the same name as the requesting node",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_labels_are_allowed_others_in_k8s_domains_are_not() {
        assert!(!forbidden_label("kubernetes.io/hostname"));
        assert!(!forbidden_label("node.kubernetes.io/instance-type"));
        assert!(!forbidden_label("example.com/team"));
        assert!(!forbidden_label("plain"));
        assert!(forbidden_label("node-role.kubernetes.io/control-plane"));
        assert!(forbidden_label("node-restriction.kubernetes.io/secure"));
        assert!(forbidden_label("foo.k8s.io/x"));
    }
}

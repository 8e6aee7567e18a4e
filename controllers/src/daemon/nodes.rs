//! Which nodes a DaemonSet's pods belong on (upstream `pkg/controller/daemon/util` and
//! `NodeShouldRunDaemonPod`): the template with the default daemon tolerations, pinned to one
//! node by node affinity, judged against the node's name, labels, affinity and taints.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use crate::scheduler::cache::NodeInfo;
use crate::scheduler::filters::{matches_node_affinity, tolerates};

/// The label with the hash of a pod's template (upstream `DefaultDaemonSetUniqueLabelKey`).
pub const HASH_LABEL: &str = "controller-revision-hash";
/// The deprecated template generation label, still written by upstream.
pub const GENERATION_LABEL: &str = "pod-template-generation";

/// Upstream `AddOrUpdateDaemonPodTolerations`: what every daemon pod tolerates.
pub fn add_default_tolerations(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let mut defaults = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        defaults.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in defaults {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // upstream `AddOrUpdateTolerationInPodSpec`: one with the same key and effect is replaced.
        list.retain(|o| !(o.key.as_deref() == Some(key) && o.effect.as_deref() == Some(effect)));
        list.push(t);
    }
}

/// Upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node affinity selects
/// exactly `node` by `metadata.name` (other terms' label expressions are kept).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let req = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.to_string()]),
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let sel = na
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if sel.node_selector_terms.is_empty() {
        sel.node_selector_terms = vec![NodeSelectorTerm {
            match_fields: Some(vec![req]),
            match_expressions: None,
        }];
    } else {
        for t in &mut sel.node_selector_terms {
            t.match_fields = Some(vec![req.clone()]);
        }
    }
    affinity
}

/// The template of a daemon pod (upstream `CreatePodTemplate` + `NewPod`): default
/// tolerations, the hash and generation labels.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    add_default_tolerations(&mut t);
    let meta = t.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    if let Some(g) = ds.metadata.generation {
        labels.insert(GENERATION_LABEL.into(), g.to_string());
    }
    labels.insert(HASH_LABEL.into(), hash.to_string());
    t
}

/// The pod to create on `node`.
pub fn new_pod(ds: &DaemonSet, template: &PodTemplateSpec, node: &str) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "DaemonSet".into(),
                name: ds.name_any(),
                uid: ds.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn untolerated<'a>(taints: &'a [Taint], pod: &Pod, effects: &[&str]) -> Option<&'a Taint> {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// Upstream `NodeShouldRunDaemonPod`: (should run, should continue running).
pub fn should_run(node: &Arc<Node>, ds: &DaemonSet) -> (bool, bool) {
    let mut template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    add_default_tolerations(&mut template);
    let name = node.name_any();
    let pod = new_pod(ds, &template, &name);
    let pinned = template.spec.as_ref().and_then(|s| s.node_name.as_deref());
    if pinned.is_some_and(|n| !n.is_empty() && n != name) {
        return (false, false);
    }
    let info = NodeInfo {
        node: Some(node.clone()),
        ..Default::default()
    };
    if !matches_node_affinity(&pod, &info) {
        return (false, false);
    }
    let taints: &[Taint] = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    if untolerated(taints, &pod, &["NoSchedule", "NoExecute"]).is_some() {
        return (false, untolerated(taints, &pod, &["NoExecute"]).is_none());
    }
    (true, true)
}

/// Upstream `GetTargetNodeName`: the node a daemon pod is bound or pinned to.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In")
                .then(|| r.values.as_ref().and_then(|v| v.first().cloned()))
                .flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"taints": taints}
            }))
            .unwrap_or_default(),
        )
    }

    fn ds(extra: serde_json::Value) -> DaemonSet {
        let mut spec = json!({"containers": [{"name": "c", "image": "agent"}]});
        if let (Some(m), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "default", "uid": "u", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn taints_node_selector_and_default_tolerations_decide() {
        let plain = ds(json!({}));
        assert_eq!(
            should_run(&node("n1", json!({}), json!([])), &plain),
            (true, true)
        );
        // The default tolerations cover not-ready and unschedulable nodes.
        let cordoned = node(
            "n2",
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&cordoned, &plain), (true, true));
        // A NoSchedule taint keeps running pods; NoExecute evicts them.
        let dedicated = node(
            "n3",
            json!({}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        assert_eq!(should_run(&dedicated, &plain), (false, true));
        let evicting = node(
            "n4",
            json!({}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&evicting, &plain), (false, false));
        let tolerant = ds(json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(should_run(&evicting, &tolerant), (true, true));
        let selective = ds(json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(
            should_run(&node("n5", json!({}), json!([])), &selective),
            (false, false)
        );
        assert_eq!(
            should_run(&node("n6", json!({"disk": "ssd"}), json!([])), &selective),
            (true, true)
        );
    }

    #[test]
    fn pods_are_pinned_by_node_affinity_and_labelled() {
        let d = ds(json!({}));
        let t = pod_template(&d, "h1");
        let p = new_pod(&d, &t, "n7");
        assert_eq!(target_node(&p).as_deref(), Some("n7"));
        let l = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(l[HASH_LABEL], "h1");
        assert_eq!(l[GENERATION_LABEL], "2");
        let tol = p.spec.and_then(|s| s.tolerations).unwrap_or_default();
        assert_eq!(tol.len(), 6);
    }
}

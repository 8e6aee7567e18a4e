//! Filter plugins in upstream's default order (NodeUnschedulable, TaintToleration, NodeAffinity,
//! NodePorts, NodeResourcesFit, PodTopologySpread, InterPodAffinity), with upstream's reasons and
//! status codes, and the `FitError` message (`pkg/scheduler/framework/types.go`).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm, Taint, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::cache::{Cache, NodeInfo, PodInfo};

/// Whether preemption could help on a node (upstream `Unschedulable`) or not
/// (`UnschedulableAndUnresolvable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Removing pods might make it fit.
    Unschedulable,
    /// Nothing on the node can change that.
    Unresolvable,
}

/// Why a node was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    /// Status code.
    pub code: Code,
    /// Reasons (one per failing aspect; NodeResourcesFit may give several).
    pub reasons: Vec<String>,
}

impl NodeStatus {
    fn one(code: Code, reason: impl Into<String>) -> NodeStatus {
        NodeStatus {
            code,
            reasons: vec![reason.into()],
        }
    }
}

/// The `FitError` message: `0/N nodes are available: <sorted histogram>.` then the
/// PostFilter (preemption) message, each part closed by `.`.
pub fn fit_error_message(num_all: usize, statuses: &[&NodeStatus], post_filter: &str) -> String {
    let mut msg = format!("0/{num_all} nodes are available:");
    let mut hist: HashMap<&str, usize> = HashMap::new();
    for s in statuses {
        for r in &s.reasons {
            *hist.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = hist.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    if !parts.is_empty() {
        msg.push_str(&format!(" {}.", parts.join(", ")));
    }
    if !post_filter.is_empty() {
        msg.push_str(&format!(" {post_filter}"));
        if !post_filter.ends_with('.') {
            msg.push('.');
        }
    }
    msg
}

/// The preemption part when no node can be made to fit: `preemption: 0/N nodes are available:
/// K Preemption is not helpful for scheduling, M No preemption victims found for incoming pod.`
pub fn preemption_message(num_all: usize, not_helpful: usize, no_victims: usize) -> String {
    let mut parts = Vec::new();
    if no_victims > 0 {
        parts.push(format!(
            "{no_victims} No preemption victims found for incoming pod"
        ));
    }
    if not_helpful > 0 {
        parts.push(format!(
            "{not_helpful} Preemption is not helpful for scheduling"
        ));
    }
    parts.sort();
    format!(
        "preemption: 0/{num_all} nodes are available: {}.",
        parts.join(", ")
    )
}

/// Whether a toleration tolerates a taint (upstream `Toleration.ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| tolerates(t, taint)))
}

/// Label selector match (`matchLabels` + `matchExpressions`); an empty selector matches all.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &sel.match_labels
        && ml.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    sel.match_expressions.iter().flatten().all(|e| {
        let vals = e.values.as_deref().unwrap_or(&[]);
        let got = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => got.is_some_and(|g| vals.contains(g)),
            "NotIn" => got.is_none_or(|g| !vals.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    })
}

fn node_requirement(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let vals = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| vals.contains(v)),
        "NotIn" => value.is_none_or(|v| !vals.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                vals.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node matches one node selector term (expressions on labels and fields ANDed; an
/// empty term matches nothing, like upstream).
pub fn term_matches(term: &NodeSelectorTerm, ni: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = ni.labels().unwrap_or(&empty);
    let name = ni
        .node
        .as_ref()
        .and_then(|n| n.metadata.name.clone())
        .unwrap_or_default();
    exprs
        .iter()
        .all(|r| node_requirement(r, labels.get(&r.key)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && node_requirement(r, Some(&name)))
}

/// `nodeSelector` and required node affinity (upstream `NodeAffinity` Filter).
pub fn matches_node_affinity(pod: &Pod, ni: &NodeInfo) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let empty = BTreeMap::new();
    let labels = ni.labels().unwrap_or(&empty);
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(r) => r.node_selector_terms.iter().any(|t| term_matches(t, ni)),
        None => true,
    }
}

/// Whether an affinity term selects a pod (namespaces: the listed ones, the owner's when none;
/// `namespaceSelector: {}` means all namespaces).
pub fn term_selects(term: &PodAffinityTerm, owner_ns: &str, other: &PodInfo) -> bool {
    let all_ns = term.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    });
    let ns_ok = all_ns
        || match term.namespaces.as_deref() {
            Some(list) if !list.is_empty() => list.contains(&other.namespace),
            _ => other.namespace == owner_ns,
        };
    ns_ok
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, &other.labels))
}

/// Per-pod state computed once per scheduling cycle (upstream PreFilter).
#[derive(Debug, Default)]
pub struct CycleState {
    /// For each DoNotSchedule constraint: topology value → matching pod count.
    spread: Vec<(TopologySpreadConstraint, HashMap<String, i64>, bool)>,
    /// For each required affinity term: topology values that hold a matching pod.
    affinity: Vec<(PodAffinityTerm, HashMap<String, i64>)>,
    /// Whether any pod at all matches every affinity term (first pod of a group).
    affinity_any_match: bool,
    /// For each required anti-affinity term: topology values that hold a matching pod.
    anti_affinity: Vec<(PodAffinityTerm, HashMap<String, i64>)>,
    /// (topologyKey, value) pairs where an existing pod's anti-affinity rejects this pod.
    existing_anti: Vec<(String, String)>,
}

fn topo_value<'a>(ni: &'a NodeInfo, key: &str) -> Option<&'a String> {
    ni.labels().and_then(|l| l.get(key))
}

impl CycleState {
    /// Computes the pod's cycle state from the cache.
    pub fn new(pi: &PodInfo, cache: &Cache) -> CycleState {
        let mut st = CycleState::default();
        let spec = pi.pod.spec.as_ref();
        let pod = &pi.pod;
        for c in spec
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
        {
            let mut counts: HashMap<String, i64> = HashMap::new();
            let self_match = c
                .label_selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, &pi.labels));
            for ni in cache.nodes.values() {
                if ni.node.is_none() {
                    continue;
                }
                let Some(v) = topo_value(ni, &c.topology_key) else {
                    continue;
                };
                // nodeAffinityPolicy Honor (default): only nodes the pod could go to count.
                if c.node_affinity_policy.as_deref() != Some("Ignore")
                    && !matches_node_affinity(pod, ni)
                {
                    continue;
                }
                if c.node_taints_policy.as_deref() == Some("Honor")
                    && ni.taints().iter().any(|t| {
                        matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                            && !tolerated(pod, t)
                    })
                {
                    continue;
                }
                let n = ni
                    .pods
                    .values()
                    .filter(|p| {
                        p.namespace == pi.namespace
                            && p.pod.metadata.deletion_timestamp.is_none()
                            && c.label_selector
                                .as_ref()
                                .is_some_and(|s| selector_matches(s, &p.labels))
                    })
                    .count() as i64;
                *counts.entry(v.clone()).or_default() += n;
            }
            st.spread.push((c.clone(), counts, self_match));
        }
        let aff = spec.and_then(|s| s.affinity.as_ref());
        let req_aff = aff
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default();
        let req_anti = pi.required_anti_affinity.clone();
        let mut any_match_all = req_aff.is_empty();
        for ni in cache.nodes.values() {
            // Without affinity terms of its own, only pods with required anti-affinity matter.
            if req_aff.is_empty() && ni.pods_with_required_anti_affinity == 0 {
                continue;
            }
            for other in ni.pods.values() {
                if !req_aff.is_empty()
                    && req_aff
                        .iter()
                        .all(|t| term_selects(t, &pi.namespace, other))
                {
                    any_match_all = true;
                }
                for t in &other.required_anti_affinity {
                    if term_selects(t, &other.namespace, pi)
                        && let Some(v) = topo_value(ni, &t.topology_key)
                    {
                        st.existing_anti.push((t.topology_key.clone(), v.clone()));
                    }
                }
            }
        }
        for t in req_aff {
            let mut m = HashMap::new();
            for ni in cache.nodes.values() {
                if let Some(v) = topo_value(ni, &t.topology_key) {
                    let n = ni
                        .pods
                        .values()
                        .filter(|o| term_selects(&t, &pi.namespace, o))
                        .count() as i64;
                    if n > 0 {
                        *m.entry(v.clone()).or_default() += n;
                    }
                }
            }
            st.affinity.push((t, m));
        }
        st.affinity_any_match = any_match_all;
        for t in req_anti {
            let mut m = HashMap::new();
            for ni in cache.nodes.values() {
                if let Some(v) = topo_value(ni, &t.topology_key) {
                    let n = ni
                        .pods
                        .values()
                        .filter(|o| term_selects(&t, &pi.namespace, o))
                        .count() as i64;
                    if n > 0 {
                        *m.entry(v.clone()).or_default() += n;
                    }
                }
            }
            st.anti_affinity.push((t, m));
        }
        st
    }
}

fn fit_resources(pi: &PodInfo, ni: &NodeInfo) -> Option<NodeStatus> {
    let mut reasons = Vec::new();
    let mut unresolvable = false;
    if ni.pods.len() as i64 + 1 > ni.allocatable.pods {
        reasons.push("Too many pods".to_string());
    }
    let mut check = |name: &str, want: i64, used: i64, alloc: i64| {
        if want > 0 && want > alloc - used {
            reasons.push(format!("Insufficient {name}"));
            if want > alloc {
                unresolvable = true;
            }
        }
    };
    let (r, a, u) = (&pi.requests, &ni.allocatable, &ni.requested);
    check("cpu", r.milli_cpu, u.milli_cpu, a.milli_cpu);
    check("memory", r.memory, u.memory, a.memory);
    check(
        "ephemeral-storage",
        r.ephemeral_storage,
        u.ephemeral_storage,
        a.ephemeral_storage,
    );
    for (k, want) in &r.scalar {
        check(
            k,
            *want,
            u.scalar.get(k).copied().unwrap_or(0),
            a.scalar.get(k).copied().unwrap_or(0),
        );
    }
    if reasons.is_empty() {
        return None;
    }
    Some(NodeStatus {
        code: if unresolvable {
            Code::Unresolvable
        } else {
            Code::Unschedulable
        },
        reasons,
    })
}

fn ports_conflict(pi: &PodInfo, ni: &NodeInfo) -> bool {
    if pi.host_ports.is_empty() {
        return false;
    }
    ni.pods.values().any(|other| {
        other.uid != pi.uid
            && other.host_ports.iter().any(|(proto, ip, port)| {
                pi.host_ports.iter().any(|(p2, ip2, port2)| {
                    proto == p2
                        && port == port2
                        && (ip == ip2 || ip == "0.0.0.0" || ip2 == "0.0.0.0")
                })
            })
    })
}

/// Runs the filters on one node; `None` when the pod fits.
pub fn filter(pi: &PodInfo, st: &CycleState, ni: &NodeInfo) -> Option<NodeStatus> {
    let node = ni.node.as_ref()?;
    let pod = &pi.pod;
    // NodeUnschedulable
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerated(pod, &taint) {
            return Some(NodeStatus::one(
                Code::Unresolvable,
                "node(s) were unschedulable",
            ));
        }
    }
    // TaintToleration
    if let Some(t) = ni
        .taints()
        .iter()
        .find(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(pod, t))
    {
        return Some(NodeStatus::one(
            Code::Unresolvable,
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ),
        ));
    }
    // NodeAffinity
    if !matches_node_affinity(pod, ni) {
        return Some(NodeStatus::one(
            Code::Unresolvable,
            "node(s) didn't match Pod's node affinity/selector",
        ));
    }
    // NodePorts
    if ports_conflict(pi, ni) {
        return Some(NodeStatus::one(
            Code::Unschedulable,
            "node(s) didn't have free ports for the requested pod ports",
        ));
    }
    // NodeResourcesFit
    if let Some(s) = fit_resources(pi, ni) {
        return Some(s);
    }
    // PodTopologySpread
    for (c, counts, self_match) in &st.spread {
        let Some(v) = topo_value(ni, &c.topology_key) else {
            return Some(NodeStatus::one(
                Code::Unresolvable,
                "node(s) didn't match pod topology spread constraints (missing required label)",
            ));
        };
        let min = counts.values().copied().min().unwrap_or(0);
        let min = match c.min_domains {
            Some(md) if (counts.len() as i32) < md => 0,
            _ => min,
        };
        let here = counts.get(v).copied().unwrap_or(0) + i64::from(*self_match);
        if here - min > i64::from(c.max_skew) {
            return Some(NodeStatus::one(
                Code::Unschedulable,
                "node(s) didn't match pod topology spread constraints",
            ));
        }
    }
    // InterPodAffinity
    for (key, value) in &st.existing_anti {
        if topo_value(ni, key) == Some(value) {
            return Some(NodeStatus::one(
                Code::Unschedulable,
                "node(s) didn't satisfy existing pods anti-affinity rules",
            ));
        }
    }
    for (t, m) in &st.anti_affinity {
        if topo_value(ni, &t.topology_key).is_some_and(|v| m.contains_key(v)) {
            return Some(NodeStatus::one(
                Code::Unschedulable,
                "node(s) didn't match pod anti-affinity rules",
            ));
        }
    }
    if !st.affinity.is_empty() {
        let ok = st
            .affinity
            .iter()
            .all(|(t, m)| topo_value(ni, &t.topology_key).is_some_and(|v| m.contains_key(v)));
        // The first pod of a group that selects itself may go anywhere with the topology key.
        let self_ok = !st.affinity_any_match
            && st.affinity.iter().all(|(t, _)| {
                term_selects(t, &pi.namespace, pi) && topo_value(ni, &t.topology_key).is_some()
            });
        if !ok && !self_ok {
            return Some(NodeStatus::one(
                Code::Unresolvable,
                "node(s) didn't match pod affinity rules",
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_format() {
        let cpu = NodeStatus::one(Code::Unresolvable, "Insufficient cpu");
        let taint = NodeStatus::one(
            Code::Unresolvable,
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
        );
        let msg = fit_error_message(3, &[&cpu, &taint, &taint], &preemption_message(3, 3, 0));
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn toleration_rules() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let t = |key: &str, op: &str, val: &str, eff: &str| Toleration {
            key: (!key.is_empty()).then(|| key.to_string()),
            operator: Some(op.to_string()),
            value: (!val.is_empty()).then(|| val.to_string()),
            effect: (!eff.is_empty()).then(|| eff.to_string()),
            ..Default::default()
        };
        assert!(tolerates(&t("k", "Equal", "v", "NoSchedule"), &taint));
        assert!(tolerates(&t("k", "Exists", "", ""), &taint));
        assert!(tolerates(&t("", "Exists", "", ""), &taint));
        assert!(!tolerates(&t("k", "Equal", "w", ""), &taint));
        assert!(!tolerates(&t("k", "Equal", "v", "NoExecute"), &taint));
    }
}

//! Score plugins with upstream's default weights: NodeResourcesFit LeastAllocated (1),
//! NodeResourcesBalancedAllocation (1), TaintToleration PreferNoSchedule (3), NodeAffinity
//! preferred terms (2), InterPodAffinity preferred terms (2) and PodTopologySpread (2, including
//! the system default spreading of pods of one controller across hostnames).

use std::collections::HashMap;

use super::cache::{NodeInfo, PodInfo};
use super::filters::{term_matches, term_selects, tolerates};

/// Largest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

fn least_allocated(pi: &PodInfo, ni: &NodeInfo) -> i64 {
    let part = |req: i64, alloc: i64| {
        if alloc <= 0 || req > alloc {
            0
        } else {
            (alloc - req) * MAX_NODE_SCORE / alloc
        }
    };
    let cpu = part(
        ni.non_zero_requested.milli_cpu + pi.non_zero.milli_cpu,
        ni.allocatable.milli_cpu,
    );
    let mem = part(
        ni.non_zero_requested.memory + pi.non_zero.memory,
        ni.allocatable.memory,
    );
    (cpu + mem) / 2
}

fn balanced(pi: &PodInfo, ni: &NodeInfo) -> i64 {
    let frac = |req: i64, alloc: i64| {
        if alloc <= 0 {
            1.0
        } else {
            ((req as f64) / (alloc as f64)).min(1.0)
        }
    };
    let c = frac(
        ni.requested.milli_cpu + pi.requests.milli_cpu,
        ni.allocatable.milli_cpu,
    );
    let m = frac(
        ni.requested.memory + pi.requests.memory,
        ni.allocatable.memory,
    );
    let mean = (c + m) / 2.0;
    let std = (((c - mean).powi(2) + (m - mean).powi(2)) / 2.0).sqrt();
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

fn raw_scores(pi: &PodInfo, ni: &NodeInfo) -> (i64, i64, i64, i64) {
    let spec = pi.pod.spec.as_ref();
    // TaintToleration: count of untolerated PreferNoSchedule taints (lower is better).
    let tolerations = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    let intolerable = ni
        .taints()
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .count() as i64;
    // NodeAffinity: sum of weights of matching preferred terms.
    let node_pref: i64 = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|terms| {
            terms
                .iter()
                .filter(|t| term_matches(&t.preference, ni))
                .map(|t| i64::from(t.weight))
                .sum()
        })
        .unwrap_or(0);
    // InterPodAffinity: preferred (anti-)affinity terms against pods on this node.
    let aff = spec.and_then(|s| s.affinity.as_ref());
    let mut pod_pref = 0i64;
    for (terms, sign) in [
        (
            aff.and_then(|a| a.pod_affinity.as_ref()).and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            1,
        ),
        (
            aff.and_then(|a| a.pod_anti_affinity.as_ref())
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
            -1,
        ),
    ] {
        for t in terms.into_iter().flatten() {
            let n = ni
                .pods
                .values()
                .filter(|o| term_selects(&t.pod_affinity_term, &pi.namespace, o))
                .count() as i64;
            pod_pref += sign * i64::from(t.weight) * n;
        }
    }
    // Default spreading: pods of the same controller already on the node (lower is better).
    let same_owner = match &pi.owner {
        Some(o) => ni
            .pods
            .values()
            .filter(|p| p.owner.as_ref() == Some(o))
            .count() as i64,
        None => 0,
    };
    (intolerable, node_pref, pod_pref, same_owner)
}

/// Normalizes raw values to 0..=100; `reverse` when lower raw values are better.
fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    raw.iter()
        .map(|&v| {
            if max == min {
                // Every node is the same for this plugin.
                return MAX_NODE_SCORE;
            }
            let s = (v - min) * MAX_NODE_SCORE / (max - min);
            if reverse { MAX_NODE_SCORE - s } else { s }
        })
        .collect()
}

/// Total weighted score per feasible node, in the order given.
pub fn score(pi: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let raws: Vec<(i64, i64, i64, i64)> = nodes.iter().map(|ni| raw_scores(pi, ni)).collect();
    let col = |f: fn(&(i64, i64, i64, i64)) -> i64| raws.iter().map(f).collect::<Vec<_>>();
    let taint = normalize(&col(|r| r.0), true);
    let node_aff = normalize(&col(|r| r.1), false);
    let pod_aff = normalize(&col(|r| r.2), false);
    let spread = normalize(&col(|r| r.3), true);
    let mut by_node: HashMap<usize, i64> = HashMap::new();
    for (i, ni) in nodes.iter().enumerate() {
        let s = least_allocated(pi, ni)
            + balanced(pi, ni)
            + 3 * taint[i]
            + 2 * node_aff[i]
            + 2 * pod_aff[i]
            + 2 * spread[i];
        by_node.insert(i, s);
    }
    (0..nodes.len())
        .map(|i| by_node.get(&i).copied().unwrap_or(0))
        .collect()
}

//! Priority-based preemption, the simple version of upstream `DefaultPreemption`: on nodes where
//! only resolvable filters failed, remove every lower-priority pod in a dry run; if the pod then
//! fits, give back as many victims as possible (highest priority first); pick the node whose
//! victims have the lowest top priority, then the fewest victims.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cache::{Cache, PodInfo};
use super::filters::{self, Code, CycleState, NodeStatus};

/// A node and the pods to evict there.
#[derive(Debug)]
pub struct Candidate {
    /// Node name.
    pub node: String,
    /// Pods to delete.
    pub victims: Vec<Arc<PodInfo>>,
}

/// Finds where evicting lower-priority pods lets `pi` fit, or says why preemption cannot help
/// (the PostFilter message).
pub fn find(
    pi: &PodInfo,
    cache: &Cache,
    statuses: &BTreeMap<String, NodeStatus>,
) -> Result<Candidate, String> {
    let num_all = cache.node_count();
    let spec = pi.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("preemption: not eligible due to preemptionPolicy=Never.".into());
    }
    let st = CycleState::new(pi, cache);
    let mut not_helpful = 0;
    let mut no_victims = 0;
    let mut best: Option<(i32, usize, Candidate)> = None;
    for (name, status) in statuses {
        if status.code == Code::Unresolvable {
            not_helpful += 1;
            continue;
        }
        let Some(ni) = cache.nodes.get(name) else {
            not_helpful += 1;
            continue;
        };
        let mut trial = ni.clone();
        let mut potential: Vec<Arc<PodInfo>> = ni
            .pods
            .values()
            .filter(|p| p.priority < pi.priority)
            .cloned()
            .collect();
        for p in &potential {
            trial.remove_pod(&p.uid);
        }
        if potential.is_empty() || filters::filter(pi, &st, &trial).is_some() {
            no_victims += 1;
            continue;
        }
        // Reprieve: add back the most important pods while the preemptor still fits.
        potential.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.uid.cmp(&b.uid)));
        let mut victims = Vec::new();
        for p in potential {
            trial.add_pod(p.clone());
            if filters::filter(pi, &st, &trial).is_some() {
                trial.remove_pod(&p.uid);
                victims.push(p);
            }
        }
        let top = victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
        let better = match &best {
            None => true,
            Some((bt, bn, _)) => (top, victims.len()) < (*bt, *bn),
        };
        if better {
            let n = victims.len();
            best = Some((
                top,
                n,
                Candidate {
                    node: name.clone(),
                    victims,
                },
            ));
        }
    }
    match best {
        Some((_, _, c)) => Ok(c),
        None => {
            // Nodes with no status (none here: every node was filtered) count as not helpful.
            let absent = num_all.saturating_sub(statuses.len());
            Err(filters::preemption_message(
                num_all,
                not_helpful + absent,
                no_victims,
            ))
        }
    }
}

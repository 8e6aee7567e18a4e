//! The scheduling queue (upstream `pkg/scheduler/backend/queue`): every pending pod is in exactly
//! one [`QueueState`] — active (ordered by priority, then arrival), backing off after a failed
//! attempt, or parked as unschedulable until the cluster changes (or 5 minutes pass).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// Initial back-off after a failed attempt (upstream `podInitialBackoffSeconds`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off (upstream `podMaxBackoffSeconds`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often (`podMaxInUnschedulablePodsDuration`).
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// Where a queued pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Ready to be scheduled.
    Active,
    /// Failed recently; becomes active at the instant.
    Backoff(Instant),
    /// Found no node; waits for a cluster event (or the periodic flush).
    Unschedulable(Instant),
    /// Popped, a scheduling cycle runs (or its binding is in flight).
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    state: QueueState,
    attempts: u32,
    seq: u64,
    /// A cluster event arrived while the pod was in flight: retry at once if it fails.
    moved_while_in_flight: bool,
}

/// The queue.
#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    /// (priority desc, arrival) → key.
    active: BTreeSet<(Reverse<i32>, u64, String)>,
    seq: u64,
}

/// Upstream `isPodUpdated`: a change beyond status and bookkeeping metadata.
fn spec_or_labels_changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

fn priority(p: &Pod) -> i32 {
    p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

impl Queue {
    /// Adds a new pending pod or updates a queued one (an update of an unschedulable pod makes
    /// it active again, as upstream's `Update` does).
    pub fn add_or_update(&mut self, key: String, pod: Arc<Pod>) {
        self.seq += 1;
        let seq = self.seq;
        match self.entries.get_mut(&key) {
            Some(e) => {
                let old_prio = priority(&e.pod);
                let changed = spec_or_labels_changed(&e.pod, &pod);
                e.pod = pod;
                match e.state {
                    // Our own status writes (PodScheduled=False) do not make a pod schedulable.
                    QueueState::Unschedulable(_) if changed => {
                        e.state = QueueState::Active;
                        self.active
                            .insert((Reverse(priority(&e.pod)), e.seq, key.clone()));
                    }
                    QueueState::Active if old_prio != priority(&e.pod) => {
                        self.active.remove(&(Reverse(old_prio), e.seq, key.clone()));
                        self.active
                            .insert((Reverse(priority(&e.pod)), e.seq, key.clone()));
                    }
                    _ => {}
                }
            }
            None => {
                self.active
                    .insert((Reverse(priority(&pod)), seq, key.clone()));
                self.entries.insert(
                    key,
                    Entry {
                        pod,
                        state: QueueState::Active,
                        attempts: 0,
                        seq,
                        moved_while_in_flight: false,
                    },
                );
            }
        }
    }

    /// Removes a pod (deleted, or bound by anyone).
    pub fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key)
            && e.state == QueueState::Active
        {
            self.active
                .remove(&(Reverse(priority(&e.pod)), e.seq, key.to_string()));
        }
    }

    /// Takes the next active pod (marks it in flight).
    pub fn pop(&mut self) -> Option<(String, Arc<Pod>)> {
        let first = self.active.pop_first()?;
        let key = first.2;
        let e = self.entries.get_mut(&key)?;
        e.state = QueueState::InFlight;
        e.attempts += 1;
        e.moved_while_in_flight = false;
        Some((key, e.pod.clone()))
    }

    /// The pod could not be scheduled (or its binding failed): back off, or park it as
    /// unschedulable.
    pub fn requeue(&mut self, key: &str, unschedulable: bool, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let shift = e.attempts.saturating_sub(1).min(10);
        let backoff = (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF);
        e.state = if unschedulable && !e.moved_while_in_flight {
            QueueState::Unschedulable(now)
        } else {
            QueueState::Backoff(now + backoff)
        };
    }

    /// The pod was bound: it leaves the queue.
    pub fn done(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// A cluster event (node added/changed, pod deleted) may make unschedulable pods fit:
    /// they move to back-off (or active when their back-off already expired).
    pub fn move_all_unschedulable(&mut self, now: Instant) {
        for (key, e) in self.entries.iter_mut() {
            match e.state {
                QueueState::Unschedulable(_) => {
                    let shift = e.attempts.saturating_sub(1).min(10);
                    let until = now + (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF);
                    e.state = QueueState::Backoff(until.min(now + INITIAL_BACKOFF));
                    let _ = key;
                }
                QueueState::InFlight => e.moved_while_in_flight = true,
                _ => {}
            }
        }
    }

    /// Moves expired back-offs and long-parked unschedulable pods to active; returns when the
    /// next back-off expires.
    pub fn flush(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (key, e) in self.entries.iter_mut() {
            let ready = match e.state {
                QueueState::Backoff(until) => {
                    if until > now {
                        next = Some(next.map_or(until, |n| n.min(until)));
                    }
                    until <= now
                }
                QueueState::Unschedulable(since) => now.duration_since(since) >= MAX_UNSCHEDULABLE,
                _ => false,
            };
            if ready {
                e.state = QueueState::Active;
                self.active
                    .insert((Reverse(priority(&e.pod)), e.seq, key.clone()));
            }
        }
        next
    }

    /// Number of pods in the active queue.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Number of pods known to the queue.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the queue holds no pods.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A queued pod's state (tests, metrics).
    pub fn state(&self, key: &str) -> Option<QueueState> {
        self.entries.get(key).map(|e| e.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(prio: i32) -> Arc<Pod> {
        Arc::new(Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                priority: Some(prio),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn priority_then_fifo() {
        let mut q = Queue::default();
        q.add_or_update("a".into(), pod(0));
        q.add_or_update("b".into(), pod(10));
        q.add_or_update("c".into(), pod(0));
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|(k, _)| k)).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_waits_for_event() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.add_or_update("a".into(), pod(0));
        assert!(q.pop().is_some());
        q.requeue("a", true, now);
        assert_eq!(q.state("a"), Some(QueueState::Unschedulable(now)));
        q.flush(now + Duration::from_secs(5));
        assert!(q.pop().is_none());
        q.move_all_unschedulable(now);
        q.flush(now + Duration::from_secs(2));
        assert_eq!(q.pop().map(|(k, _)| k).as_deref(), Some("a"));
    }
}

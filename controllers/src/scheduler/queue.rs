//! The scheduling queue (upstream `pkg/scheduler/backend/queue`): every pending pod is in exactly
//! one [`QueueState`] — active (ordered by priority, then arrival), backing off after a failed
//! attempt, or parked as unschedulable until the cluster changes (or 5 minutes pass).
//!
//! Each state has its own ordered index, so popping, flushing expired back-offs and moving the
//! unschedulable pods on a cluster event cost only the pods concerned, never a scan of every
//! pending pod (with 30,000 pending pods a scan per watch event is quadratic).

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
    /// The cluster-event counter when the pod was popped: a different value at requeue means a
    /// cluster event arrived while the pod was in flight, so it retries at once if it failed.
    popped_at_event: u64,
}

/// The queue.
#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    /// (priority desc, arrival) → key.
    active: BTreeSet<(Reverse<i32>, u64, String)>,
    /// (back-off expiry, arrival) → key.
    backoff: BTreeSet<(Instant, u64, String)>,
    /// (parked since, arrival) → key.
    unschedulable: BTreeSet<(Instant, u64, String)>,
    seq: u64,
    /// Cluster events seen ([`Queue::move_all_unschedulable`] calls).
    events: u64,
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

fn backoff_for(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(10);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

impl Queue {
    /// Takes an entry out of the index of its state.
    fn unindex(&mut self, key: &str, state: QueueState, prio: i32, seq: u64) {
        let k = key.to_string();
        match state {
            QueueState::Active => {
                self.active.remove(&(Reverse(prio), seq, k));
            }
            QueueState::Backoff(until) => {
                self.backoff.remove(&(until, seq, k));
            }
            QueueState::Unschedulable(since) => {
                self.unschedulable.remove(&(since, seq, k));
            }
            QueueState::InFlight => {}
        }
    }

    /// Puts an entry into the index of its (new) state.
    fn set_state(&mut self, key: &str, state: QueueState) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let (old, prio, seq) = (e.state, priority(&e.pod), e.seq);
        e.state = state;
        self.unindex(key, old, prio, seq);
        let k = key.to_string();
        match state {
            QueueState::Active => {
                self.active.insert((Reverse(prio), seq, k));
            }
            QueueState::Backoff(until) => {
                self.backoff.insert((until, seq, k));
            }
            QueueState::Unschedulable(since) => {
                self.unschedulable.insert((since, seq, k));
            }
            QueueState::InFlight => {}
        }
    }

    /// Makes a pod already taken out of its index active.
    fn activate(&mut self, key: String) {
        if let Some(e) = self.entries.get_mut(&key) {
            e.state = QueueState::Active;
            self.active.insert((Reverse(priority(&e.pod)), e.seq, key));
        }
    }

    /// Adds a new pending pod or updates a queued one (an update of an unschedulable pod makes
    /// it active again, as upstream's `Update` does).
    pub fn add_or_update(&mut self, key: String, pod: Arc<Pod>) {
        match self.entries.get_mut(&key) {
            Some(e) => {
                let old_prio = priority(&e.pod);
                let changed = spec_or_labels_changed(&e.pod, &pod);
                let state = e.state;
                if old_prio != priority(&pod) {
                    // Re-index under the new priority.
                    let seq = e.seq;
                    e.pod = pod;
                    self.unindex(&key, state, old_prio, seq);
                    if let Some(e) = self.entries.get_mut(&key) {
                        e.state = QueueState::InFlight;
                    }
                    self.set_state(&key, state);
                } else {
                    e.pod = pod;
                }
                // Our own status writes (PodScheduled=False) do not make a pod schedulable.
                if matches!(state, QueueState::Unschedulable(_)) && changed {
                    self.set_state(&key, QueueState::Active);
                }
            }
            None => {
                self.seq += 1;
                let seq = self.seq;
                self.active
                    .insert((Reverse(priority(&pod)), seq, key.clone()));
                self.entries.insert(
                    key,
                    Entry {
                        pod,
                        state: QueueState::Active,
                        attempts: 0,
                        seq,
                        popped_at_event: 0,
                    },
                );
            }
        }
    }

    /// Removes a pod (deleted, or bound by anyone).
    pub fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.unindex(key, e.state, priority(&e.pod), e.seq);
        }
    }

    /// Takes the next active pod (marks it in flight).
    pub fn pop(&mut self) -> Option<(String, Arc<Pod>)> {
        let first = self.active.pop_first()?;
        let key = first.2;
        let e = self.entries.get_mut(&key)?;
        e.state = QueueState::InFlight;
        e.attempts += 1;
        e.popped_at_event = self.events;
        Some((key, e.pod.clone()))
    }

    /// The pod could not be scheduled (or its binding failed): back off, or park it as
    /// unschedulable.
    pub fn requeue(&mut self, key: &str, unschedulable: bool, now: Instant) {
        let Some(e) = self.entries.get(key) else {
            return;
        };
        let moved = e.popped_at_event != self.events;
        let state = if unschedulable && !moved {
            QueueState::Unschedulable(now)
        } else {
            QueueState::Backoff(now + backoff_for(e.attempts))
        };
        self.set_state(key, state);
    }

    /// The pod was bound: it leaves the queue.
    pub fn done(&mut self, key: &str) {
        self.remove(key);
    }

    /// A cluster event (node added/changed, pod deleted) may make unschedulable pods fit:
    /// they move to back-off (at most [`INITIAL_BACKOFF`] away).
    pub fn move_all_unschedulable(&mut self, now: Instant) {
        self.events += 1;
        let parked = std::mem::take(&mut self.unschedulable);
        for (_, seq, key) in parked {
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            let until = (now + backoff_for(e.attempts)).min(now + INITIAL_BACKOFF);
            e.state = QueueState::Backoff(until);
            self.backoff.insert((until, seq, key));
        }
    }

    /// Moves expired back-offs and long-parked unschedulable pods to active; returns when the
    /// next back-off expires.
    pub fn flush(&mut self, now: Instant) -> Option<Instant> {
        while self.backoff.first().is_some_and(|b| b.0 <= now) {
            if let Some((_, _, key)) = self.backoff.pop_first() {
                self.activate(key);
            }
        }
        while self
            .unschedulable
            .first()
            .is_some_and(|u| now.duration_since(u.0) >= MAX_UNSCHEDULABLE)
        {
            if let Some((_, _, key)) = self.unschedulable.pop_first() {
                self.activate(key);
            }
        }
        let next_backoff = self.backoff.first().map(|b| b.0);
        let next_parked = self.unschedulable.first().map(|u| u.0 + MAX_UNSCHEDULABLE);
        match (next_backoff, next_parked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

    #[test]
    fn backoff_and_parked_pods_are_indexed_by_state() {
        let mut q = Queue::default();
        let now = Instant::now();
        for k in ["a", "b", "c"] {
            q.add_or_update(k.into(), pod(0));
        }
        let popped: Vec<String> = std::iter::from_fn(|| q.pop().map(|(k, _)| k)).collect();
        assert_eq!(popped, ["a", "b", "c"]);
        // a fails to bind (back-off), b and c find no node (parked).
        q.requeue("a", false, now);
        q.requeue("b", true, now);
        q.requeue("c", true, now);
        assert_eq!(q.active_len(), 0);
        assert_eq!(q.flush(now), Some(now + INITIAL_BACKOFF));
        assert!(q.pop().is_none());
        // A deleted parked pod leaves every index.
        q.remove("c");
        q.move_all_unschedulable(now);
        assert_eq!(
            q.state("b"),
            Some(QueueState::Backoff(now + INITIAL_BACKOFF))
        );
        assert_eq!(q.flush(now + INITIAL_BACKOFF), None);
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|(k, _)| k)).collect();
        assert_eq!(order, ["a", "b"]);
        assert_eq!(q.len(), 2);
        q.done("a");
        q.done("b");
        assert!(q.is_empty());
    }

    #[test]
    fn event_while_in_flight_retries_instead_of_parking() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.add_or_update("a".into(), pod(0));
        assert!(q.pop().is_some());
        q.move_all_unschedulable(now);
        q.requeue("a", true, now);
        assert_eq!(
            q.state("a"),
            Some(QueueState::Backoff(now + INITIAL_BACKOFF))
        );
    }

    #[test]
    fn priority_change_reorders_the_active_queue() {
        let mut q = Queue::default();
        q.add_or_update("a".into(), pod(0));
        q.add_or_update("b".into(), pod(0));
        q.add_or_update("b".into(), pod(5));
        assert_eq!(q.active_len(), 2);
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|(k, _)| k)).collect();
        assert_eq!(order, ["b", "a"]);
    }
}

//! Controller expectations (upstream `pkg/controller/controller_utils.go`:
//! `UIDTrackingControllerExpectations`): after a controller creates or deletes pods it waits until
//! the informer has seen those changes before it counts pods again, so a burst of watch events
//! (or a reconcile that runs before the watch caught up) never creates or deletes twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Expectations older than this are treated as satisfied (upstream `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expectation {
    /// Creations not yet observed.
    add: i64,
    /// UIDs of pods whose deletion has not been observed yet.
    del: HashSet<String>,
    /// When the expectation was (last) set.
    at: Instant,
}

/// Pending creations and deletions per controller key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Expectation>>,
}

impl Expectations {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Expectation>) -> R) -> R {
        // A poisoned lock only means another reconcile panicked; the map is still consistent.
        let mut guard = self.map.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// `SatisfiedExpectations`: nothing pending (or the expectation expired, or none was set).
    pub fn satisfied(&self, key: &str) -> bool {
        self.with(|m| match m.get(key) {
            None => true,
            Some(e) => (e.add <= 0 && e.del.is_empty()) || e.at.elapsed() > EXPECTATIONS_TIMEOUT,
        })
    }

    /// `ExpectCreations`: `n` pods are about to be created.
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.with(|m| {
            let e = m.entry(key.to_string()).or_insert_with(|| Expectation {
                add: 0,
                del: HashSet::new(),
                at: Instant::now(),
            });
            e.add = i64::try_from(n).unwrap_or(i64::MAX);
            e.at = Instant::now();
        });
    }

    /// `ExpectDeletions`: the pods with these UIDs are about to be deleted.
    pub fn expect_deletions(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.with(|m| {
            let e = m.entry(key.to_string()).or_insert_with(|| Expectation {
                add: 0,
                del: HashSet::new(),
                at: Instant::now(),
            });
            e.del.extend(uids);
            e.at = Instant::now();
        });
    }

    /// `CreationObserved` (also called when a create failed, so the pod is not waited for).
    pub fn creation_observed(&self, key: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.add -= 1;
            }
        });
    }

    /// `DeletionObserved` (also called when a delete failed or found nothing).
    pub fn deletion_observed(&self, key: &str, uid: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.del.remove(uid);
            }
        });
    }

    /// `DeleteExpectations`: the controller object is gone.
    pub fn forget(&self, key: &str) {
        self.with(|m| {
            m.remove(key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_and_deletions_must_be_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/a"));
        e.expect_creations("ns/a", 2);
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(e.satisfied("ns/a"));
        e.expect_deletions("ns/a", ["u1".to_string(), "u2".to_string()]);
        e.deletion_observed("ns/a", "u1");
        assert!(!e.satisfied("ns/a"));
        // Observing an unrelated UID or another key changes nothing.
        e.deletion_observed("ns/a", "zz");
        e.deletion_observed("ns/b", "u2");
        assert!(!e.satisfied("ns/a"));
        e.deletion_observed("ns/a", "u2");
        assert!(e.satisfied("ns/a"));
        e.expect_creations("ns/a", 1);
        e.forget("ns/a");
        assert!(e.satisfied("ns/a"));
    }
}

//! Events for controllers' notable actions, written through `events.k8s.io/v1` (kube-runtime's
//! recorder, which also folds repeats into a series), with upstream's reasons and messages so
//! `kubectl describe` and `kubectl get events` show what they show upstream.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Reporter};

/// An event recorder for one controller (`reportingController`).
#[derive(Clone)]
pub struct Recorder {
    inner: std::sync::Arc<kube::runtime::events::Recorder>,
}

impl Recorder {
    /// A recorder reporting as `controller` (e.g. `replicaset-controller`).
    pub fn new(client: Client, controller: &str) -> Self {
        let reporter = Reporter {
            controller: controller.to_string(),
            instance: Some(format!("{controller}-{}", hostname())),
        };
        Self {
            inner: std::sync::Arc::new(kube::runtime::events::Recorder::new(client, reporter)),
        }
    }

    async fn publish(
        &self,
        type_: EventType,
        regarding: &ObjectReference,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        // An event that cannot be written must not fail the reconcile (upstream drops it too).
        if let Err(e) = self.inner.publish(&ev, regarding).await {
            tracing::debug!(error = %e, reason, "event not recorded");
        }
    }

    /// A `Normal` event.
    pub async fn normal(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(EventType::Normal, regarding, reason, note)
            .await;
    }

    /// A `Warning` event.
    pub async fn warning(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(EventType::Warning, regarding, reason, note)
            .await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

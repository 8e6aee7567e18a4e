//! Events for controllers' notable actions, written through `events.k8s.io/v1` (kube-runtime's
//! recorder, which also folds repeats into a series), with upstream's reasons and messages so
//! `kubectl describe` and `kubectl get events` show what they show upstream.
//!
//! Like upstream's broadcaster (`client-go/tools/record`: a 1,000-event queue, `DropIfChannelFull`,
//! one goroutine writing), a reconcile never waits for its Events: [`Recorder::normal`] and
//! [`Recorder::warning`] queue the Event and return; one task per recorder writes them in order
//! (in order, so kube-runtime's series bookkeeping sees each repeat after the first is written).
//! Before this, a ReplicaSet creating 1,000 pods wrote 1,000 Events one after the other between
//! its slow-start batches.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Reporter};
use tokio::sync::mpsc;

/// Events queued at most per recorder (upstream `maxQueuedEvents`); more are dropped.
pub const MAX_QUEUED_EVENTS: usize = 1000;

/// An event recorder for one controller (`reportingController`); cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(Event, ObjectReference)>,
}

impl Recorder {
    /// A recorder reporting as `controller` (e.g. `replicaset-controller`); starts its writer
    /// task (which ends once every clone of the recorder is dropped and the queue is written).
    pub fn new(client: Client, controller: &str) -> Self {
        let reporter = Reporter {
            controller: controller.to_string(),
            instance: Some(format!("{controller}-{}", hostname())),
        };
        let inner = kube::runtime::events::Recorder::new(client, reporter);
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(MAX_QUEUED_EVENTS);
        tokio::spawn(async move {
            while let Some((ev, regarding)) = rx.recv().await {
                // An event that cannot be written must not fail anything (upstream drops it too).
                if let Err(e) = inner.publish(&ev, &regarding).await {
                    tracing::debug!(error = %e, reason = %ev.reason, "event not recorded");
                }
            }
        });
        Self { tx }
    }

    fn publish(&self, type_: EventType, regarding: &ObjectReference, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.tx.try_send((ev, regarding.clone())) {
            tracing::warn!(reason, error = %e, "event dropped");
        }
    }

    /// Queues a `Normal` event.
    pub async fn normal(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(EventType::Normal, regarding, reason, note);
    }

    /// Queues a `Warning` event.
    pub async fn warning(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(EventType::Warning, regarding, reason, note);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

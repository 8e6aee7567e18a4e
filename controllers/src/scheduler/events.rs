//! The scheduler's event recorder (upstream `k8s.io/client-go/tools/events` broadcaster): the
//! scheduling loop and the binding tasks hand `events.k8s.io/v1` Events to a bounded queue and
//! never wait for their writes; one task writes them with a few requests in flight, so Event
//! writes do not sit on the binding path. Like upstream's broadcaster (a 1,000-event queue with
//! `DropIfChannelFull`), an event is dropped when the queue is full.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

use super::DEFAULT_SCHEDULER;

/// Events queued at most (upstream `maxQueuedEvents`).
pub const MAX_QUEUED_EVENTS: usize = 1000;
/// Event writes in flight at once.
const WRITES_IN_FLIGHT: usize = 8;

/// A handle to queue events; cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<(String, Event)>,
    instance: String,
}

impl EventSink {
    /// Starts the writer task.
    pub fn start(client: Client, instance: String) -> EventSink {
        let (tx, rx) = mpsc::channel::<(String, Event)>(MAX_QUEUED_EVENTS);
        tokio::spawn(async move {
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .for_each_concurrent(WRITES_IN_FLIGHT, |(ns, ev)| {
                    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                    async move {
                        if let Err(e) = api.create(&PostParams::default(), &ev).await {
                            tracing::debug!(error = %e, "event write");
                        }
                    }
                })
                .await;
        });
        EventSink { tx, instance }
    }

    /// Queues an Event about a pod (upstream's recorder names it `<pod>.<hex nanoseconds>`).
    pub fn emit(&self, pod: &Pod, type_: &str, reason: &str, action: &str, note: &str) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let ev = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": format!("{name}.{:x}", now.as_nanosecond()), "namespace": ns},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
            "reportingController": DEFAULT_SCHEDULER,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "regarding": {
                "apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name,
                "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version,
            },
            "note": note.chars().take(1024).collect::<String>(),
            "type": type_,
        });
        let ev: Event = match serde_json::from_value(ev) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(error = %e, "event encode");
                return;
            }
        };
        if let Err(e) = self.tx.try_send((ns, ev)) {
            // Debug, not warn: a burst of thousands of pods fills the queue by design, and a
            // log line per dropped event would cost more than the event.
            tracing::debug!(pod = %name, reason, error = %e, "event dropped");
        }
    }
}

//! Shared informers (upstream `client-go/tools/cache.SharedIndexInformer`): ONE watch and ONE
//! reflector store per kind, shared by every controller that needs the kind (pods are read by the
//! ReplicaSet, ReplicationController, Deployment and later Job, EndpointSlice... controllers), so
//! the controller-manager holds one copy of each object.
//!
//! Subscribers get [`Change`]s (added / updated / deleted, as upstream's event handlers) over a
//! bounded broadcast channel; a subscriber that falls behind gets [`Change::Resync`] and must
//! look at everything again (level-triggered controllers do that anyway).

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// Events buffered per subscriber before it is told to resync. The channel's slots (~96 bytes
/// each) are allocated up front for every informer, used or not: 8,192 made the nine informers
/// ~7 MB of an idle server's memory.
const BUFFER: usize = 1024;
/// The buffer of the pod informer, whose bursts (a ReplicaSet's pods created, scheduled and
/// started together) are the largest.
pub const POD_BUFFER: usize = 4096;

/// One change to the informer's store, as seen by a subscriber.
#[derive(Debug, Clone)]
pub enum Change<K> {
    /// An object appeared (`OnAdd`).
    Added(Arc<K>),
    /// An object changed (`OnUpdate`): the old and the new version.
    Updated(Arc<K>, Arc<K>),
    /// An object is gone (`OnDelete`): its last known state.
    Deleted(Arc<K>),
    /// The subscriber missed events: everything must be looked at again.
    Resync,
}

/// A shared informer for kind `K`: a store and a change feed, fed by one watch.
#[derive(Clone)]
pub struct Informer<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    tx: broadcast::Sender<Change<K>>,
    /// Aborts the watch task when the last handle is dropped.
    _task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<K> Informer<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching `api` in the background; the task ends when every handle is dropped.
    pub fn spawn(api: Api<K>) -> Self {
        Self::spawn_with(api, drop_managed_fields)
    }

    /// As [`Informer::spawn`], with `transform` applied to each object before it is stored
    /// (upstream `SharedInformer.SetTransform`): it drops what no subscriber reads.
    pub fn spawn_with(api: Api<K>, transform: fn(&mut K)) -> Self {
        Self::spawn_buffered(api, transform, BUFFER)
    }

    /// As [`Informer::spawn_with`], buffering `buffer` changes per subscriber.
    pub fn spawn_buffered(api: Api<K>, transform: fn(&mut K), buffer: usize) -> Self {
        let (store, writer) = reflector::store::<K>();
        let (tx, _) = broadcast::channel(buffer);
        let feed = tx.clone();
        let stream = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(transform);
        let task = tokio::spawn(run(stream, writer, store.clone(), feed));
        Self {
            store,
            tx,
            _task: Arc::new(AbortOnDrop(task.abort_handle())),
        }
    }

    /// The read side of the store (every object the watch has seen, current state).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Waits until the first full list is in the store.
    pub async fn wait_until_ready(&self) {
        // The writer lives as long as the watch task; if it died the controllers cannot work.
        if self.store.wait_until_ready().await.is_err() {
            tracing::error!(kind = %K::kind(&()), "informer stopped before its first list");
        }
    }

    /// A feed of the changes from now on.
    pub fn subscribe(&self) -> impl Stream<Item = Change<K>> + Send + 'static {
        BroadcastStream::new(self.tx.subscribe()).map(|r| match r {
            Ok(c) => c,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                tracing::debug!(kind = %K::kind(&()), missed = n, "informer subscriber lagged");
                Change::Resync
            }
        })
    }

    /// Objects of the feed that a [`kube::runtime::Controller::for_shared_stream`] reconciles
    /// (added and updated objects; a resync replays the store).
    pub fn trigger_stream(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let store = self.store.clone();
        self.subscribe().flat_map(move |c| {
            let items: Vec<Arc<K>> = match c {
                Change::Added(o) | Change::Updated(_, o) => vec![o],
                Change::Deleted(_) => Vec::new(),
                Change::Resync => store.state(),
            };
            futures::stream::iter(items)
        })
    }
}

/// Drops `metadata.managedFields` from an object entering a cache, as upstream's informers
/// do (`cache.TransformStripManagedFields`): no controller reads them, and in a typed object
/// they cost more than the rest of a pod's metadata. An update sent from such an object
/// carries no managedFields, which the server answers by keeping the stored ones.
pub fn drop_managed_fields<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

fn watcher<K>(
    api: Api<K>,
    cfg: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api, cfg)
}

/// The watch loop: applies each event to the store and tells subscribers what changed.
async fn run<K, S>(
    stream: S,
    mut writer: reflector::store::Writer<K>,
    store: Store<K>,
    tx: broadcast::Sender<Change<K>>,
) where
    K: kube::Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    // Keys listed since the last `Init` (a relist): what is not among them at `InitDone` is gone.
    let mut relisted: Option<HashSet<ObjectRef<K>>> = None;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(kind = %K::kind(&()), error = %e, "informer watch");
                continue;
            }
        };
        // Work out what changed against the store before the event is applied, apply it, then
        // tell subscribers (so a subscriber that reads the store sees the new state).
        let mut changes = Vec::new();
        let mut pending = None;
        match &ev {
            Event::Apply(obj) => {
                // The change is filled in with the store's own copy once the event is applied
                // (one allocation per object version, not one for the store and one for the
                // feed).
                let key = ObjectRef::from_obj(obj);
                let old = store.get(&key);
                pending = Some((key, old));
            }
            Event::InitApply(obj) => {
                // A relist reaches the store only at `InitDone`: the feed gets its own copy.
                let key = ObjectRef::from_obj(obj);
                let new = Arc::new(obj.clone());
                match store.get(&key) {
                    Some(old) => changes.push(Change::Updated(old, new)),
                    None => changes.push(Change::Added(new)),
                }
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(key);
                }
            }
            Event::Delete(obj) => changes.push(Change::Deleted(Arc::new(obj.clone()))),
            Event::Init => relisted = Some(HashSet::new()),
            Event::InitDone => {
                if let Some(seen) = relisted.take() {
                    for old in store.state() {
                        if !seen.contains(&ObjectRef::from_obj(old.as_ref())) {
                            changes.push(Change::Deleted(old));
                        }
                    }
                }
                // Objects of a (re)list reach the store only now: look at everything again.
                changes.push(Change::Resync);
            }
        }
        // The writer buffers a relist and swaps it in at `InitDone`, dropping what is gone.
        writer.apply_watcher_event(&ev);
        if let (Some((key, old)), Event::Apply(obj)) = (pending, &ev) {
            let new = store.get(&key).unwrap_or_else(|| Arc::new(obj.clone()));
            changes.push(match old {
                Some(old) => Change::Updated(old, new),
                None => Change::Added(new),
            });
        }
        for c in changes {
            // No subscriber yet is fine: they start from the store.
            let _ = tx.send(c);
        }
    }
}

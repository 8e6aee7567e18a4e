//! The garbage collector (upstream `pkg/controller/garbagecollector`): watches the metadata of
//! every deletable resource to keep an owner → dependents graph, and
//! - deletes dependents whose owners are all gone (confirmed with a live GET, as upstream's
//!   `attemptToDeleteItem` does),
//! - for an owner deleted with `foregroundDeletion`, deletes its dependents, waits until those
//!   with `blockOwnerDeletion` are gone, then removes the finalizer,
//! - for an owner deleted with `orphan`, removes the owner's reference from its dependents,
//!   then removes the finalizer.
//!
//! The loop is an explicit state machine (DESIGN invariant 8); with no events it sleeps.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::time::Instant;

use crate::discovery::{self, Resource};

/// `metav1.FinalizerOrphanDependents`.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// `metav1.FinalizerDeleteDependents`.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Quiet time after an event before the graph is processed.
const DEBOUNCE: Duration = Duration::from_millis(30);
/// Longest a busy stream of events delays processing.
const MAX_DELAY: Duration = Duration::from_millis(250);
/// How often an idle collector looks for newly served resources.
const REDISCOVER: Duration = Duration::from_secs(30);
/// How long an owner outside the graph, once seen, counts as present.
const RECHECK: Duration = Duration::from_secs(30);
/// Wait before processing again after a failed action.
const RETRY: Duration = Duration::from_secs(1);

type WatchEvent = (
    usize,
    Result<Event<PartialObjectMeta<DynamicObject>>, watcher::Error>,
);

/// One object in the graph.
#[derive(Clone, Debug)]
struct Node {
    res: usize,
    namespace: Option<String>,
    name: String,
    uid: String,
    resource_version: Option<String>,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

impl Node {
    fn from_meta(res: usize, m: &PartialObjectMeta<DynamicObject>) -> Option<Self> {
        let md = &m.metadata;
        Some(Self {
            res,
            namespace: md.namespace.clone(),
            name: md.name.clone()?,
            uid: md.uid.clone()?,
            resource_version: md.resource_version.clone(),
            owners: md.owner_references.clone().unwrap_or_default(),
            finalizers: md.finalizers.clone().unwrap_or_default(),
            deleting: md.deletion_timestamp.is_some(),
        })
    }
    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

/// What one pass decided to do.
#[derive(Debug)]
enum Step {
    /// Remove the references to `owner` from `dependents`, then the `orphan` finalizer.
    Orphan { owner: Node, dependents: Vec<Node> },
    /// Remove `finalizer` from `node`.
    RemoveFinalizer { node: Node, finalizer: &'static str },
    /// Delete `node` with `policy`.
    Delete {
        node: Node,
        policy: PropagationPolicy,
    },
    /// `node` references owners the graph does not hold: look them up.
    CheckOwners { node: Node },
}

/// The graph and the resources it covers.
pub struct GarbageCollector {
    client: Client,
    resources: Vec<Resource>,
    nodes: HashMap<String, Node>,
    /// Every object seen, by uid, with its resource index.
    known: HashMap<u128, usize>,
    /// uids of owners confirmed absent (uids are never reused).
    absent: HashSet<String>,
    /// Objects seen during a relist of a resource, to drop the ones that vanished.
    relisting: HashMap<usize, HashSet<u128>>,
    /// Owners outside the graph confirmed present, and when (re-checked after [`RECHECK`]).
    present: HashMap<String, Instant>,
    /// When discovery runs again (checked while idle).
    next_discovery: Instant,
}

/// The states of the event loop.
enum State {
    /// Nothing to do: wait for an event.
    Idle,
    /// Events arrived: wait for quiet (at most until `deadline`), then process.
    Dirty { deadline: Instant },
    /// Process the graph now.
    Process,
    /// An action failed: process again after a pause or on the next event.
    Backoff,
}

/// Runs the garbage collector until its watch streams end.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let resources = loop {
        match discovery::resources(&client).await {
            Ok(all) => break discovery::deletable(&all),
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: discovery failed, retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let mut gc = GarbageCollector {
        client: client.clone(),
        resources,
        nodes: HashMap::new(),
        known: HashMap::new(),
        absent: HashSet::new(),
        relisting: HashMap::new(),
        next_discovery: Instant::now() + REDISCOVER,
        present: HashMap::new(),
    };
    let mut events = gc.watch_all();
    let mut state = State::Idle;
    loop {
        state = match gc.step(state, &mut events).await {
            Some(s) => s,
            None => return Ok(()),
        };
    }
}

impl GarbageCollector {
    fn watch_all(&self) -> SelectAll<BoxStream<'static, WatchEvent>> {
        futures::stream::select_all((0..self.resources.len()).map(|i| self.watch(i)))
    }

    /// The metadata watch of resource `i`, with upstream-like backoff on errors.
    fn watch(&self, i: usize) -> BoxStream<'static, WatchEvent> {
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &self.resources[i].ar);
        let s: Pin<Box<dyn Stream<Item = WatchEvent> + Send>> = Box::pin(
            watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |e| (i, e)),
        );
        s
    }

    /// Picks up resources served since the last discovery (e.g. new custom resources).
    async fn rediscover(&mut self, events: &mut SelectAll<BoxStream<'static, WatchEvent>>) {
        let Ok(all) = discovery::resources(&self.client).await else {
            return;
        };
        for r in discovery::deletable(&all) {
            let known = self
                .resources
                .iter()
                .any(|k| k.ar.group == r.ar.group && k.ar.plural == r.ar.plural);
            if !known {
                tracing::info!(group = %r.ar.group, resource = %r.ar.plural, "garbage collector watches a new resource");
                self.resources.push(r);
                events.push(self.watch(self.resources.len() - 1));
            }
        }
    }

    /// One transition of the event loop; `None` when the watches ended.
    async fn step(
        &mut self,
        state: State,
        events: &mut SelectAll<BoxStream<'static, WatchEvent>>,
    ) -> Option<State> {
        Some(match state {
            State::Idle => {
                tokio::select! {
                    ev = events.next() => {
                        self.apply(ev?);
                        State::Dirty { deadline: Instant::now() + MAX_DELAY }
                    }
                    _ = tokio::time::sleep_until(self.next_discovery) => {
                        self.next_discovery = Instant::now() + REDISCOVER;
                        self.rediscover(events).await;
                        State::Idle
                    }
                }
            }
            State::Dirty { deadline } => {
                let quiet = tokio::time::sleep_until(deadline.min(Instant::now() + DEBOUNCE));
                tokio::select! {
                    ev = events.next() => {
                        self.apply(ev?);
                        State::Dirty { deadline }
                    }
                    _ = quiet => State::Process,
                }
            }
            State::Process => {
                if self.process().await {
                    State::Idle
                } else {
                    State::Backoff
                }
            }
            State::Backoff => {
                tokio::select! {
                    ev = events.next() => {
                        self.apply(ev?);
                        State::Dirty { deadline: Instant::now() + MAX_DELAY }
                    }
                    _ = tokio::time::sleep(RETRY) => State::Process,
                }
            }
        })
    }

    /// Records an object: every object is known by uid; only those that take part in garbage
    /// collection (owned, finalizers, being deleted) are kept whole, so memory stays small.
    fn upsert(&mut self, n: Node) {
        let k = uid_key(&n.uid);
        self.known.insert(k, n.res);
        if let Some(seen) = self.relisting.get_mut(&n.res) {
            seen.insert(k);
        }
        if !n.owners.is_empty() || !n.finalizers.is_empty() || n.deleting {
            self.nodes.insert(n.uid.clone(), n);
        } else {
            self.nodes.remove(&n.uid);
        }
    }

    /// Folds one watch event into the graph.
    fn apply(&mut self, (res, ev): WatchEvent) {
        match ev {
            Ok(Event::Apply(m) | Event::InitApply(m)) => {
                if let Some(n) = Node::from_meta(res, &m) {
                    self.upsert(n);
                }
            }
            Ok(Event::Delete(m)) => {
                if let Some(uid) = m.metadata.uid {
                    self.known.remove(&uid_key(&uid));
                    self.nodes.remove(&uid);
                }
            }
            Ok(Event::Init) => {
                self.relisting.insert(res, HashSet::new());
            }
            Ok(Event::InitDone) => {
                if let Some(seen) = self.relisting.remove(&res) {
                    self.known.retain(|k, r| *r != res || seen.contains(k));
                    self.nodes
                        .retain(|uid, n| n.res != res || seen.contains(&uid_key(uid)));
                }
            }
            Err(e) => {
                tracing::debug!(resource = %self.resources[res].ar.plural, error = %e, "garbage collector watch");
            }
        }
    }

    /// Decides what to do from the graph alone.
    fn plan(&self) -> Vec<Step> {
        let mut dependents: HashMap<&str, Vec<&Node>> = HashMap::new();
        for n in self.nodes.values() {
            for o in &n.owners {
                dependents.entry(o.uid.as_str()).or_default().push(n);
            }
        }
        let mut steps = Vec::new();
        for n in self.nodes.values() {
            let deps = dependents
                .get(n.uid.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if n.deleting && n.has_finalizer(FINALIZER_ORPHAN) {
                steps.push(Step::Orphan {
                    owner: n.clone(),
                    dependents: deps.iter().map(|d| (*d).clone()).collect(),
                });
                continue;
            }
            if n.deleting && n.has_finalizer(FINALIZER_FOREGROUND) {
                for d in deps.iter().filter(|d| !d.deleting) {
                    // Dependents that own others go in the foreground too (upstream).
                    let policy = if dependents.contains_key(d.uid.as_str()) {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    };
                    steps.push(Step::Delete {
                        node: (*d).clone(),
                        policy,
                    });
                }
                let blocking = deps.iter().any(|d| {
                    d.owners
                        .iter()
                        .any(|o| o.uid == n.uid && o.block_owner_deletion == Some(true))
                });
                if !blocking {
                    steps.push(Step::RemoveFinalizer {
                        node: n.clone(),
                        finalizer: FINALIZER_FOREGROUND,
                    });
                }
                continue;
            }
            if !n.deleting
                && !n.owners.is_empty()
                && n.owners
                    .iter()
                    .any(|o| !self.known.contains_key(&uid_key(&o.uid)))
            {
                steps.push(Step::CheckOwners { node: n.clone() });
            }
        }
        steps
    }

    /// One pass: plan, then act. Returns false when an action failed and must be retried.
    async fn process(&mut self) -> bool {
        let mut ok = true;
        for step in self.plan() {
            let r = match step {
                Step::Orphan { owner, dependents } => self.orphan(&owner, &dependents).await,
                Step::RemoveFinalizer { node, finalizer } => {
                    self.remove_finalizer(&node, finalizer).await
                }
                Step::Delete { node, policy } => self.delete(&node, policy).await,
                Step::CheckOwners { node } => self.check_owners(&node).await,
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "garbage collector action failed, will retry");
                ok = false;
            }
        }
        ok
    }

    fn api(&self, node: &Node) -> Api<DynamicObject> {
        let ar = &self.resources[node.res].ar;
        match &node.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    /// `orphanDependents`: dependents first, then the finalizer.
    async fn orphan(&self, owner: &Node, dependents: &[Node]) -> kube::Result<()> {
        let owners = HashSet::from([owner.uid.clone()]);
        for d in dependents {
            self.remove_owner_refs(d, &owners).await?;
        }
        self.remove_finalizer(owner, FINALIZER_ORPHAN).await
    }

    async fn remove_owner_refs(&self, node: &Node, owners: &HashSet<String>) -> kube::Result<()> {
        let kept: Vec<&OwnerReference> = node
            .owners
            .iter()
            .filter(|o| !owners.contains(&o.uid))
            .collect();
        let patch = json!({"metadata": {
            "ownerReferences": if kept.is_empty() { json!(null) } else { json!(kept) },
            "resourceVersion": node.resource_version,
        }});
        ignore_not_found(
            self.api(node)
                .patch_metadata(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        )
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> kube::Result<()> {
        let kept: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch = json!({"metadata": {
            "finalizers": if kept.is_empty() { json!(null) } else { json!(kept) },
            "resourceVersion": node.resource_version,
        }});
        ignore_not_found(
            self.api(node)
                .patch_metadata(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        )
    }

    async fn delete(&self, node: &Node, policy: PropagationPolicy) -> kube::Result<()> {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(node.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::debug!(name = %node.name, resource = %self.resources[node.res].ar.plural, "garbage collector deletes");
        match self.api(node).delete(&node.name, &dp).await {
            Ok(_) => Ok(()),
            // Gone, or a new object with the same name (uid precondition): nothing to do.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether an owner reference of `node` points at an object that no longer exists.
    async fn owner_absent(
        &mut self,
        node: &Node,
        o: &OwnerReference,
    ) -> kube::Result<Option<bool>> {
        if self.absent.contains(&o.uid) {
            return Ok(Some(true));
        }
        if self.known.contains_key(&uid_key(&o.uid))
            || self
                .present
                .get(&o.uid)
                .is_some_and(|t| t.elapsed() < RECHECK)
        {
            return Ok(Some(false));
        }
        let group = o.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let Some(r) = self
            .resources
            .iter()
            .find(|r| r.ar.group == group && r.ar.kind == o.kind)
        else {
            // An owner of a kind nobody serves cannot be checked; leave the dependent alone.
            return Ok(None);
        };
        let api: Api<DynamicObject> = match (&node.namespace, r.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &r.ar),
            (None, true) => return Ok(None),
            (_, false) => Api::all_with(self.client.clone(), &r.ar),
        };
        let absent = match api.get_metadata_opt(&o.name).await? {
            None => true,
            Some(m) => m.uid().as_deref() != Some(o.uid.as_str()),
        };
        if absent {
            self.present.remove(&o.uid);
            self.absent.insert(o.uid.clone());
        } else {
            self.present.insert(o.uid.clone(), Instant::now());
        }
        Ok(Some(absent))
    }

    /// `attemptToDeleteItem` for a dependent with owners unknown to the graph.
    async fn check_owners(&mut self, node: &Node) -> kube::Result<()> {
        let mut absent = HashSet::new();
        let mut solid = false;
        for o in &node.owners {
            match self.owner_absent(node, o).await? {
                Some(true) => {
                    absent.insert(o.uid.clone());
                }
                Some(false) => solid = true,
                None => return Ok(()),
            }
        }
        if absent.is_empty() {
            return Ok(());
        }
        if solid {
            // Some owners remain: only the dangling references go.
            return self.remove_owner_refs(node, &absent).await;
        }
        let policy = if node.has_finalizer(FINALIZER_ORPHAN) {
            PropagationPolicy::Orphan
        } else if node.has_finalizer(FINALIZER_FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        self.delete(node, policy).await
    }
}

/// A uid as 128 bits (the API server's uids are UUIDs); anything else is hashed.
fn uid_key(uid: &str) -> u128 {
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32
        && let Ok(v) = u128::from_str_radix(&hex, 16)
    {
        return v;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut h);
    u128::from(h.finish()) | (1 << 127)
}

fn ignore_not_found<T>(r: kube::Result<T>) -> kube::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

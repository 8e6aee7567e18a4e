//! The stored ValidatingAdmissionPolicies and bindings, kept from the watch cache (several API
//! servers share them) and compiled once per change — never per request. Each set is sorted
//! by name and swapped as a whole; readers take an `Arc` snapshot.
//!
//! Status: when a policy's `metadata.generation` is not yet its `status.observedGeneration`,
//! [`StatusWriter`] writes `status.observedGeneration` and `status.typeChecking` through the
//! generic store's `/status` path (upstream's type-checking controller): `typeChecking` holds
//! the warnings of upstream's type checker (`typecheck.rs`: each validation expression and
//! messageExpression checked against the schemas of the kinds the policy matches).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use ferrokube_machinery::admission_policy::CompiledPolicy;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::admission::ApiHandle;
use crate::auth::rbac_feed::Sink;
use crate::registry::Registry;
use crate::registry::request::{UpdateTarget, WriteOptions};

/// One policy, compiled.
#[derive(Debug)]
pub struct PolicyEntry {
    pub name: String,
    pub match_constraints: Value,
    pub param_kind: Option<Value>,
    pub compiled: CompiledPolicy,
}

/// One binding.
#[derive(Debug)]
pub struct BindingEntry {
    pub name: String,
    pub policy_name: String,
    pub match_resources: Option<Value>,
    pub param_ref: Option<Value>,
    pub actions: Vec<String>,
}

pub(super) fn name_of(key: &str) -> String {
    key.rsplit('/').next().unwrap_or(key).to_string()
}

/// A name-sorted set swapped as a whole on every change.
pub struct Set<T> {
    by_name: RwLock<BTreeMap<String, Arc<T>>>,
    flat: RwLock<Arc<Vec<Arc<T>>>>,
}

impl<T> Default for Set<T> {
    fn default() -> Self {
        Set {
            by_name: RwLock::default(),
            flat: RwLock::new(Arc::new(Vec::new())),
        }
    }
}

impl<T> Set<T> {
    /// The current entries, by name.
    pub fn snapshot(&self) -> Arc<Vec<Arc<T>>> {
        self.flat
            .read()
            .map(|f| f.clone())
            .unwrap_or_else(|_| Arc::new(Vec::new()))
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut BTreeMap<String, Arc<T>>)) {
        let Ok(mut m) = self.by_name.write() else {
            return;
        };
        f(&mut m);
        if let Ok(mut flat) = self.flat.write() {
            *flat = Arc::new(m.values().cloned().collect());
        }
    }
}

/// The policies, and where status work is announced.
pub struct PolicySet {
    set: Set<PolicyEntry>,
    status: mpsc::UnboundedSender<String>,
}

/// The bindings.
pub type BindingSet = Set<BindingEntry>;

impl PolicySet {
    /// The current policies.
    pub fn snapshot(&self) -> Arc<Vec<Arc<PolicyEntry>>> {
        self.set.snapshot()
    }
}

impl Sink for PolicySet {
    fn reset(&self) {
        self.set.update(BTreeMap::clear);
    }

    fn apply(&self, key: &str, obj: Option<&Value>) {
        let name = name_of(key);
        match obj {
            Some(o) => {
                let spec = o.get("spec").cloned().unwrap_or(Value::Null);
                let entry = PolicyEntry {
                    name: name.clone(),
                    match_constraints: spec.get("matchConstraints").cloned().unwrap_or(json!({})),
                    param_kind: spec.get("paramKind").filter(|v| !v.is_null()).cloned(),
                    compiled: CompiledPolicy::compile(&spec),
                };
                for (field, expr, e) in &entry.compiled.errors {
                    tracing::warn!(policy = %name, field = %field, expression = %expr, error = %e, "ValidatingAdmissionPolicy expression does not compile");
                }
                let generation = o.pointer("/metadata/generation").and_then(Value::as_i64);
                let observed = o
                    .pointer("/status/observedGeneration")
                    .and_then(Value::as_i64);
                if generation.is_some() && generation != observed {
                    let _ = self.status.send(name.clone());
                }
                self.set.update(|m| {
                    m.insert(name, Arc::new(entry));
                });
            }
            None => self.set.update(|m| {
                m.remove(&name);
            }),
        }
    }
}

impl Sink for BindingSet {
    fn reset(&self) {
        self.update(BTreeMap::clear);
    }

    fn apply(&self, key: &str, obj: Option<&Value>) {
        let name = name_of(key);
        match obj {
            Some(o) => {
                let spec = o.get("spec").cloned().unwrap_or(Value::Null);
                let entry = BindingEntry {
                    name: name.clone(),
                    policy_name: spec
                        .get("policyName")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    match_resources: spec.get("matchResources").filter(|v| !v.is_null()).cloned(),
                    param_ref: spec.get("paramRef").filter(|v| !v.is_null()).cloned(),
                    actions: spec
                        .get("validationActions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                };
                self.update(|m| {
                    m.insert(name, Arc::new(entry));
                });
            }
            None => self.update(|m| {
                m.remove(&name);
            }),
        }
    }
}

/// Both sets.
pub struct PolicyFeeds {
    pub policies: Arc<PolicySet>,
    pub bindings: Arc<BindingSet>,
}

/// Loads policies and bindings from the watch cache, keeps them current, and starts the
/// status writer (bound to the server through `api`).
pub async fn start_feeds(
    registry: &Registry,
    cache: &Arc<ferrokube_storage::watch_cache::WatchCache>,
    api: ApiHandle,
) -> anyhow::Result<PolicyFeeds> {
    let (tx, rx) = mpsc::unbounded_channel();
    let feeds = PolicyFeeds {
        policies: Arc::new(PolicySet {
            set: Set::default(),
            status: tx,
        }),
        bindings: Arc::new(BindingSet::default()),
    };
    let handle = |plural: &str| {
        registry
            .get("admissionregistration.k8s.io", "v1", plural)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the resource table has no {plural}"))
    };
    let policies = handle("validatingadmissionpolicies")?;
    let bindings = handle("validatingadmissionpolicybindings")?;
    crate::auth::rbac_feed::feed(
        cache.clone(),
        policies.prefix.clone(),
        feeds.policies.clone(),
    )
    .await?;
    crate::auth::rbac_feed::feed(
        cache.clone(),
        bindings.prefix.clone(),
        feeds.bindings.clone(),
    )
    .await?;
    let writer = StatusWriter { api };
    tokio::spawn(writer.run(rx, policies));
    Ok(feeds)
}

/// Writes `status.observedGeneration` and `status.typeChecking` of changed policies.
pub struct StatusWriter {
    api: ApiHandle,
}

impl StatusWriter {
    async fn run(
        self,
        mut rx: mpsc::UnboundedReceiver<String>,
        handle: Arc<crate::registry::ResourceHandle>,
    ) {
        while let Some(name) = rx.recv().await {
            // The state is bound once the server is built; the first policies load before.
            let state = loop {
                match self.api.state() {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            };
            let opts = WriteOptions {
                subresource: UpdateTarget::Status,
                field_manager: "validatingadmissionpolicy-status-controller".into(),
                ..WriteOptions::default()
            };
            let r = state
                .store
                .update(
                    &handle,
                    "",
                    &name,
                    |current| {
                        let Some(current) = current else {
                            return Err(ferrokube_machinery::status::Status::not_found(
                                "admissionregistration.k8s.io",
                                "validatingadmissionpolicies",
                                &name,
                            )
                            .into());
                        };
                        let warnings = super::typecheck::expression_warnings(&state, current);
                        let mut obj = current.clone();
                        let generation = obj
                            .pointer("/metadata/generation")
                            .cloned()
                            .unwrap_or(json!(1));
                        let mut type_checking = json!({});
                        if !warnings.is_empty() {
                            type_checking["expressionWarnings"] = json!(warnings);
                        }
                        let status = obj
                            .as_object_mut()
                            .map(|m| m.entry("status").or_insert_with(|| json!({})));
                        if let Some(Value::Object(st)) = status {
                            st.insert("observedGeneration".into(), generation);
                            st.insert("typeChecking".into(), type_checking);
                        }
                        Ok(obj)
                    },
                    &opts,
                )
                .await;
            match r {
                Ok(_) => {
                    tracing::debug!(policy = %name, "ValidatingAdmissionPolicy status written")
                }
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => {
                    tracing::warn!(policy = %name, error = %e, "writing ValidatingAdmissionPolicy status failed")
                }
            }
        }
    }
}

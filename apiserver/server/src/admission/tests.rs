//! The admission chain as the generic store calls it: order of the hooks, the attributes they
//! see, and NamespaceLifecycle's answers.

use std::sync::{Arc, Mutex};

use ferrokube_machinery::resources::builtin_resources;
use ferrokube_storage::memory::MemoryStore;
use ferrokube_storage::watch_cache::{WatchCache, WatchCacheOptions};
use serde_json::{Value, json};

use super::*;
use crate::registry::Registry;
use crate::registry::store::{GenericStore, WriteOptions};

/// Records every call; labels objects in `admit` so `validate` can see the mutation.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl AdmissionPlugin for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        self.calls.lock().expect("lock").push(format!(
            "admit {:?} {} {} dry_run={} old={}",
            a.operation,
            a.handle.info.plural,
            a.name,
            a.dry_run,
            a.old.is_some()
        ));
        obj["metadata"]["labels"]["admitted"] = json!("yes");
        Ok(())
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let admitted = obj
            .pointer("/metadata/labels/admitted")
            .and_then(Value::as_str);
        self.calls.lock().expect("lock").push(format!(
            "validate {:?} {} {} dry_run={} old={} admitted={}",
            a.operation,
            a.handle.info.plural,
            a.name,
            a.dry_run,
            old.is_some(),
            admitted.unwrap_or("no")
        ));
        Ok(())
    }
}

async fn store_with(plugins: Vec<Arc<dyn AdmissionPlugin>>) -> (GenericStore, Registry) {
    let storage: Arc<dyn ferrokube_storage::Storage> = MemoryStore::new();
    let cache = WatchCache::start(storage.clone(), "/registry/", WatchCacheOptions::default())
        .await
        .expect("watch cache");
    let registry = Registry::new(builtin_resources());
    let ns = registry.namespaces().cloned().expect("namespaces");
    let mut all: Vec<Arc<dyn AdmissionPlugin>> = vec![Arc::new(NamespaceLifecycle::new(
        StoreReader::new(storage.clone()),
        ns,
    ))];
    all.extend(plugins);
    (
        GenericStore::new(storage, cache, AdmissionChain::new(all)),
        registry,
    )
}

fn handle(r: &Registry, plural: &str) -> Arc<ResourceHandle> {
    r.get("", "v1", plural).cloned().expect("handle")
}

#[tokio::test]
async fn mutating_runs_before_validating_with_dry_run_flagged() {
    let rec = Arc::new(Recorder::default());
    let (store, reg) = store_with(vec![rec.clone()]).await;
    let ns = handle(&reg, "namespaces");
    let cms = handle(&reg, "configmaps");
    let opts = WriteOptions::default();
    store
        .create(&ns, "", json!({"metadata": {"name": "a"}}), &opts)
        .await
        .expect("namespace");
    let dry = WriteOptions {
        dry_run: true,
        ..WriteOptions::default()
    };
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "a"}, "data": {"k": "v"}});
    let out = store
        .create(&cms, "a", cm.clone(), &dry)
        .await
        .expect("dry-run create");
    assert_eq!(
        out.pointer("/metadata/labels/admitted"),
        Some(&json!("yes"))
    );
    assert!(
        store.get(&cms, "a", "c").await.is_err(),
        "dry run stored nothing"
    );
    store.create(&cms, "a", cm, &opts).await.expect("create");
    store
        .update(
            &cms,
            "a",
            "c",
            |cur| {
                let mut v = cur.cloned().expect("exists");
                v["data"]["k"] = json!("w");
                Ok(v)
            },
            &dry,
        )
        .await
        .expect("dry-run update");
    let calls = rec.calls.lock().expect("lock").clone();
    let cm_calls: Vec<&String> = calls.iter().filter(|c| c.contains("configmaps")).collect();
    assert_eq!(
        cm_calls,
        vec![
            "admit Create configmaps c dry_run=true old=false",
            "validate Create configmaps c dry_run=true old=false admitted=yes",
            "admit Create configmaps c dry_run=false old=false",
            "validate Create configmaps c dry_run=false old=false admitted=yes",
            "admit Update configmaps c dry_run=true old=true",
            "validate Update configmaps c dry_run=true old=true admitted=yes",
        ]
    );
}

#[tokio::test]
async fn namespace_lifecycle_refuses_missing_and_terminating_namespaces() {
    let (store, reg) = store_with(Vec::new()).await;
    let ns = handle(&reg, "namespaces");
    let cms = handle(&reg, "configmaps");
    let opts = WriteOptions::default();
    let cm = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "t"}})
    };
    let e = store
        .create(&cms, "t", cm("a"), &opts)
        .await
        .expect_err("no namespace");
    assert!(e.is_not_found());
    assert_eq!(e.to_status().message, "namespaces \"t\" not found");
    store
        .create(
            &ns,
            "",
            json!({"metadata": {"name": "t"}, "spec": {"finalizers": ["kubernetes"]}}),
            &opts,
        )
        .await
        .expect("namespace");
    store
        .create(&cms, "t", cm("a"), &opts)
        .await
        .expect("create");
    let del = crate::registry::store::DeleteOptions::default();
    store
        .delete(&ns, "", "t", &del)
        .await
        .expect("delete starts");
    let e = store
        .create(&cms, "t", cm("b"), &opts)
        .await
        .expect_err("terminating");
    let s = e.to_status();
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "configmaps \"b\" is forbidden: unable to create new content in namespace t because it is being terminated"
    );
    // Updates of existing content stay allowed.
    store
        .update(
            &cms,
            "t",
            "a",
            |cur| {
                let mut v = cur.cloned().expect("exists");
                v["data"] = json!({"k": "v"});
                Ok(v)
            },
            &opts,
        )
        .await
        .expect("update in a terminating namespace");
}

/// Issue 12: while the watch cache fills, a lister miss is "cannot say", not "not found":
/// plugins make their live lookup, so a namespace the cache has not filled yet is found.
#[tokio::test]
async fn a_lister_miss_on_an_unfilled_cache_is_a_live_lookup() {
    let storage: Arc<dyn ferrokube_storage::Storage> = MemoryStore::new();
    let early = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "early", "uid": "u-early"}, "status": {"phase": "Active"}});
    storage
        .create(
            "/registry/namespaces/early",
            serde_json::to_vec(&early).expect("json").into(),
        )
        .await
        .expect("stored before the cache starts");
    let opts = WatchCacheOptions {
        hold_fill: true,
        ..WatchCacheOptions::default()
    };
    let cache = WatchCache::start(storage.clone(), "/registry/", opts)
        .await
        .expect("watch cache");
    let registry = Registry::new(builtin_resources());
    let ns = handle(&registry, "namespaces");
    let cms = handle(&registry, "configmaps");
    let reader = StoreReader::with_cache(storage.clone(), cache.clone());
    assert!(!cache.is_filled());
    assert_eq!(
        reader.cached(&ns, "", "early").await.expect("cached"),
        None,
        "the lister cannot say"
    );
    let found = reader.lookup(&ns, "", "early").await.expect("lookup");
    assert_eq!(
        found.as_ref().and_then(|n| n.pointer("/metadata/uid")),
        Some(&json!("u-early")),
        "the live lookup finds it"
    );
    let chain = AdmissionChain::new(vec![Arc::new(NamespaceLifecycle::new(
        reader.clone(),
        ns.clone(),
    ))]);
    let store = GenericStore::new(storage, cache.clone(), chain);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "early"}});
    store
        .create(&cms, "early", cm, &WriteOptions::default())
        .await
        .expect("NamespaceLifecycle admits a create into the unfilled namespace");
    let missing = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "missing"}});
    let err = store
        .create(&cms, "missing", missing, &WriteOptions::default())
        .await
        .expect_err("a namespace that does not exist");
    assert_eq!(err.to_status().code, 404);
    cache.release_fill();
    assert!(cache.wait_filled(std::time::Duration::from_secs(5)).await);
    assert!(
        reader
            .cached(&ns, "", "early")
            .await
            .expect("cached")
            .is_some()
    );
}

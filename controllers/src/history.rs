//! Controller history (upstream `pkg/controller/history`): the ControllerRevisions a StatefulSet
//! or DaemonSet keeps of its pod template, so `kubectl rollout history|undo` can show and restore
//! earlier templates. A revision's `data` is upstream's patch
//! `{"spec":{"template":{..., "$patch":"replace"}}}`, its name `<owner>-<hash>`, and its
//! `revision` number grows by one each time a template (new or restored) becomes current.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::deployment::util::{fnv32a, safe_encode};
use crate::podutil::controller_ref;
use crate::replicaset::selects;

/// The label carrying a revision's hash (upstream `ControllerRevisionHashLabel`).
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Upstream `getPatch` of the StatefulSet and DaemonSet controllers: the template as a
/// strategic-merge patch that replaces the owner's template.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// Upstream `HashControllerRevision`: FNV-32a of the data, then the collision count in decimal,
/// printed in decimal and safe-encoded.
pub fn hash_revision(data: &Value, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// Upstream `ControllerRevisionName`: `<prefix>-<hash>`, the prefix cut to 223 characters.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let cut: String = prefix.chars().take(223).collect();
    format!("{cut}-{hash}")
}

/// The owner of revisions: enough of a StatefulSet or DaemonSet to write them.
pub struct Owner<'a> {
    /// `apps/v1`.
    pub api_version: &'a str,
    /// `StatefulSet` or `DaemonSet`.
    pub kind: &'a str,
    /// The owner's metadata.
    pub meta: &'a ObjectMeta,
    /// The owner's selector.
    pub selector: &'a LabelSelector,
    /// The owner's template labels (copied onto revisions).
    pub template_labels: BTreeMap<String, String>,
}

impl Owner<'_> {
    fn owner_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.into(),
            kind: self.kind.into(),
            name: self.meta.name.clone().unwrap_or_default(),
            uid: self.meta.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// Upstream `NewControllerRevision` (`hash` is stored under `hash_label`).
pub fn new_revision(
    owner: &Owner<'_>,
    data: Value,
    revision: i64,
    hash: &str,
    hash_label: &str,
) -> ControllerRevision {
    let mut labels = owner.template_labels.clone();
    labels.insert(hash_label.to_string(), hash.to_string());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(
                owner.meta.name.as_deref().unwrap_or_default(),
                hash,
            )),
            namespace: owner.meta.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner.owner_ref()]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// The revisions controlled by the owner (upstream `ListControllerRevisions` + claim), oldest
/// revision number first.
pub fn owned_revisions(
    store: &Store<ControllerRevision>,
    owner: &Owner<'_>,
) -> Vec<Arc<ControllerRevision>> {
    let ns = owner.meta.namespace.as_deref();
    let uid = owner.meta.uid.as_deref().unwrap_or_default();
    let mut out: Vec<Arc<ControllerRevision>> = store
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == ns)
        .filter(|r| controller_ref(&r.metadata).is_some_and(|o| o.uid == uid))
        .filter(|r| selects(owner.selector, r.metadata.labels.as_ref()).unwrap_or(false))
        .collect();
    out.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    out
}

/// The next revision number (upstream `nextRevision`): one more than the highest.
pub fn next_revision(revisions: &[Arc<ControllerRevision>]) -> i64 {
    revisions.last().map_or(1, |r| r.revision + 1)
}

/// Upstream `EqualRevision`: the same data.
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let hash = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_HASH_LABEL).cloned())
    };
    if let (Some(x), Some(y)) = (hash(a), hash(b))
        && x != y
    {
        return false;
    }
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// What creating a revision can end in.
pub enum Created {
    /// The revision exists now (created, or an equal one was there).
    Ok(Box<ControllerRevision>),
    /// Another object holds the name: the collision count must grow.
    Collision,
}

/// Upstream `realHistory.CreateControllerRevision`: creates the revision; if the name is taken
/// by an equal revision of the same owner that one is used, otherwise it is a collision.
pub async fn create_revision(
    client: &Client,
    rev: &ControllerRevision,
) -> Result<Created, kube::Error> {
    let ns = rev.metadata.namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    match api.create(&PostParams::default(), rev).await {
        Ok(r) => Ok(Created::Ok(Box::new(r))),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&rev.name_any()).await?;
            let same_owner = controller_ref(&existing.metadata).map(|r| &r.uid)
                == controller_ref(&rev.metadata).map(|r| &r.uid);
            if same_owner && equal_revision(&existing, rev) {
                Ok(Created::Ok(Box::new(existing)))
            } else {
                Ok(Created::Collision)
            }
        }
        Err(e) => Err(e),
    }
}

/// Upstream `UpdateControllerRevision`: gives an existing revision a new number.
pub async fn bump_revision(
    client: &Client,
    rev: &ControllerRevision,
    revision: i64,
) -> Result<ControllerRevision, kube::Error> {
    let ns = rev.metadata.namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"revision": revision});
    api.patch(
        &rev.name_any(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
}

/// Deletes old revisions beyond `limit` that no live object uses (upstream `truncateHistory`):
/// `keep` holds the names still in use.
pub async fn truncate_history(
    client: &Client,
    revisions: &[Arc<ControllerRevision>],
    keep: &std::collections::HashSet<String>,
    limit: i32,
) -> Result<(), kube::Error> {
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    let unused: Vec<&Arc<ControllerRevision>> = revisions
        .iter()
        .filter(|r| !keep.contains(&r.name_any()))
        .collect();
    if unused.len() <= limit {
        return Ok(());
    }
    let excess = unused.len() - limit;
    for r in unused.into_iter().take(excess) {
        let api: Api<ControllerRevision> =
            Api::namespaced(client.clone(), &r.namespace().unwrap_or_default());
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_replaces_the_template_and_hash_depends_on_collisions() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}
        }))
        .unwrap_or_default();
        let p = template_patch(&t);
        assert_eq!(p["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            p["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx"
        );
        let h = hash_revision(&p, None);
        assert_eq!(h, hash_revision(&p, None));
        assert_ne!(h, hash_revision(&p, Some(1)));
        assert!(h.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(revision_name("web", &h), format!("web-{h}"));
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }
}

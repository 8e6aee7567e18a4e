//! Stateful pods and their claims (upstream `stateful_set_utils.go` and
//! `stateful_pod_control.go`): names, identity, the revision a pod belongs to, the claims of
//! `volumeClaimTemplates` and the owner references of the PVC retention policy.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use super::{POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL};

/// `<set>-<ordinal>`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// Upstream `getParentNameAndOrdinal`: the ordinal of a pod named `<set>-<n>` (None for any
/// other name).
pub fn get_ordinal(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// `spec.ordinals.start` (0 when unset).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

/// `spec.replicas` (1 when unset).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// The revision (name) a pod was created from.
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map_or("", String::as_str)
}

/// `<template>-<set>-<ordinal>` (upstream `getPersistentVolumeClaimName`).
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

fn set_owner_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set.name_any(),
        uid: set.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Upstream `newStatefulSetPod` + `updateIdentity` + `updateStorage`: the pod of `ordinal`
/// from `template`, labelled with `revision`.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = pod_name(&set.name_any(), ordinal);
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    let service = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    if service.is_some() {
        spec.subdomain = service;
    }
    // updateStorage: every claim template becomes the volume of that name.
    let mut volumes: Vec<Volume> = spec.volumes.take().unwrap_or_default();
    for t in claim_templates(set) {
        let tname = t.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != tname);
        volumes.push(Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&tname, &set.name_any(), ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![set_owner_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// `spec.volumeClaimTemplates`.
pub fn claim_templates(set: &StatefulSet) -> Vec<PersistentVolumeClaim> {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default()
}

/// The retention policy: (whenDeleted, whenScaled), `Retain` by default.
pub fn retention(set: &StatefulSet) -> (String, String) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
        .unwrap_or_default();
    (
        p.when_deleted.unwrap_or_else(|| "Retain".into()),
        p.when_scaled.unwrap_or_else(|| "Retain".into()),
    )
}

/// Upstream `getPersistentVolumeClaims`: the claims of `ordinal`, labelled with the template's
/// labels and the set's `matchLabels`.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let match_labels: BTreeMap<String, String> = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(set)
        .into_iter()
        .map(|mut t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.take().unwrap_or_default();
            labels.extend(match_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&tname, &set.name_any(), ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: (!labels.is_empty()).then_some(labels),
                    annotations: t.metadata.annotations.take(),
                    ..Default::default()
                },
                spec: t.spec,
                status: None,
            }
        })
        .collect()
}

/// The owner references a claim should carry under the retention policy (upstream
/// `updateClaimOwnerRefForSetAndPod`): the set's when `whenDeleted: Delete`, the pod's when
/// `whenScaled: Delete` and the pod's ordinal is condemned. Other owners are kept.
pub fn claim_owner_refs(
    set: &StatefulSet,
    claim: &PersistentVolumeClaim,
    pod: Option<&Pod>,
    condemned: bool,
) -> Vec<OwnerReference> {
    let (when_deleted, when_scaled) = retention(set);
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.and_then(|p| p.metadata.uid.clone());
    let mut refs: Vec<OwnerReference> = claim
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != set_uid && Some(&r.uid) != pod_uid.as_ref())
        // References to earlier pods of this ordinal are stale.
        .filter(|r| {
            !(r.kind == "Pod"
                && r.api_version == "v1"
                && pod.is_some_and(|p| p.name_any() == r.name))
        })
        .collect();
    if when_deleted == "Delete" {
        let mut r = set_owner_ref(set);
        r.controller = None;
        r.block_owner_deletion = None;
        refs.push(r);
    }
    if when_scaled == "Delete"
        && condemned
        && let Some(p) = pod
    {
        refs.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: p.name_any(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            controller: None,
            block_owner_deletion: None,
        });
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(policy: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "ordinals": {"start": 3},
                "persistentVolumeClaimRetentionPolicy": policy,
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}],
                             "volumes": [{"name": "data", "emptyDir": {}}]}
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }))
        .unwrap_or_default()
    }

    #[test]
    fn ordinals_parse_only_from_the_sets_names() {
        assert_eq!(get_ordinal("web", "web-0"), Some(0));
        assert_eq!(get_ordinal("web", "web-12"), Some(12));
        assert_eq!(get_ordinal("web", "web-x"), None);
        assert_eq!(get_ordinal("web", "web-"), None);
        assert_eq!(get_ordinal("web", "webby-1"), None);
        assert_eq!(get_ordinal("web", "web-1-2"), None);
    }

    #[test]
    fn pod_has_identity_revision_and_claim_volumes() {
        let s = set(json!({}));
        assert_eq!(start_ordinal(&s), 3);
        let t = s.spec.clone().unwrap_or_default().template;
        let p = new_pod(&s, &t, 4, "web-abc");
        assert_eq!(p.metadata.name.as_deref(), Some("web-4"));
        let l = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(l[POD_NAME_LABEL], "web-4");
        assert_eq!(l[POD_INDEX_LABEL], "4");
        assert_eq!(l[REVISION_LABEL], "web-abc");
        let spec = p.spec.unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("web-4"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols = spec.volumes.unwrap_or_default();
        assert_eq!(
            vols.len(),
            1,
            "the template volume is replaced by the claim"
        );
        assert_eq!(
            vols[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("data-web-4")
        );
        let c = claims_for(&s, 4);
        assert_eq!(c[0].metadata.name.as_deref(), Some("data-web-4"));
        assert_eq!(
            c[0].metadata.labels.clone().unwrap_or_default()["app"],
            "web"
        );
    }

    #[test]
    fn retention_policy_sets_owner_references() {
        let s = set(json!({"whenDeleted": "Delete", "whenScaled": "Delete"}));
        let claim = claims_for(&s, 3).remove(0);
        let mut pod = Pod::default();
        pod.metadata.name = Some("web-3".into());
        pod.metadata.uid = Some("pod-uid".into());
        let kept = claim_owner_refs(&s, &claim, Some(&pod), false);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].uid, "set-uid");
        let condemned = claim_owner_refs(&s, &claim, Some(&pod), true);
        assert_eq!(condemned.len(), 2);
        assert!(
            condemned
                .iter()
                .any(|r| r.kind == "Pod" && r.uid == "pod-uid")
        );
        let retain = set(json!({}));
        assert!(claim_owner_refs(&retain, &claim, Some(&pod), true).is_empty());
    }
}

//! Volume printers: persistent volumes and claims (core group) and `storage.k8s.io` storage
//! classes, volume attributes classes, volume attachments, CSI nodes and CSI drivers.
//! (CSIStorageCapacity is served with upstream's default table, so it has no printer here.)

use jiff::Timestamp;
use serde_json::{Value, json};

use super::format::{age, boolean_or, is_deleting, len_at, list, name, opt_text, quantity, text};
use super::{AGE, CellFn, ColumnDefinition, NAME, Printer, col, wide};

pub(super) fn lookup(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [ColumnDefinition], CellFn) = match (group, resource) {
        ("", "persistentvolumes") => (PERSISTENT_VOLUME, persistent_volume),
        ("", "persistentvolumeclaims") => (PERSISTENT_VOLUME_CLAIM, persistent_volume_claim),
        ("storage.k8s.io", "storageclasses") => (STORAGE_CLASS, storage_class),
        ("storage.k8s.io", "volumeattributesclasses") => {
            (VOLUME_ATTRIBUTES_CLASS, volume_attributes_class)
        }
        ("storage.k8s.io", "volumeattachments") => (VOLUME_ATTACHMENT, volume_attachment),
        ("storage.k8s.io", "csinodes") => (CSI_NODE, csi_node),
        ("storage.k8s.io", "csidrivers") => (CSI_DRIVER, csi_driver),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

/// `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, de-duplicated.
fn access_modes(obj: &Value, pointer: &str) -> String {
    let modes: Vec<&str> = list(obj, pointer)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The beta storage-class annotation wins over `spec.storageClassName`.
fn storage_class_name(obj: &Value) -> String {
    match obj
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str)
    {
        Some(class) => class.to_owned(),
        None => text(obj, "/spec/storageClassName"),
    }
}

const PERSISTENT_VOLUME: &[ColumnDefinition] = &[
    NAME,
    col(
        "Capacity",
        "string",
        "capacity is the description of the persistent volume's resources and capacity.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains all ways the volume can be mounted.",
    ),
    col(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    col(
        "Status",
        "string",
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
    ),
    col(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    col("StorageClass", "string", "StorageClass of the pv"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    col(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
    ),
];

fn persistent_volume(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match pv.pointer("/spec/claimRef").filter(|c| c.is_object()) {
        Some(c) => format!(
            "{}/{}",
            c.get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            c.get("name").and_then(Value::as_str).unwrap_or_default()
        ),
        None => String::new(),
    };
    let phase = if is_deleting(pv) {
        "Terminating".to_owned()
    } else {
        text(pv, "/status/phase")
    };
    vec![
        json!(name(pv)),
        json!(quantity(pv, "/spec/capacity/storage")),
        json!(access_modes(pv, "/spec/accessModes")),
        json!(text(pv, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(storage_class_name(pv)),
        json!(opt_text(pv, "/spec/volumeAttributesClassName").unwrap_or("<unset>")),
        json!(text(pv, "/status/reason")),
        json!(age(pv, now)),
        json!(opt_text(pv, "/spec/volumeMode").unwrap_or("<unset>")),
    ]
}

const PERSISTENT_VOLUME_CLAIM: &[ColumnDefinition] = &[
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim.",
    ),
];

fn persistent_volume_claim(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if is_deleting(pvc) {
        "Terminating".to_owned()
    } else {
        text(pvc, "/status/phase")
    };
    let volume = text(pvc, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(pvc, "/status/capacity/storage"),
            access_modes(pvc, "/status/accessModes"),
        )
    };
    vec![
        json!(name(pvc)),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class_name(pvc)),
        json!(opt_text(pvc, "/spec/volumeAttributesClassName").unwrap_or("<unset>")),
        json!(age(pvc, now)),
        json!(opt_text(pvc, "/spec/volumeMode").unwrap_or("<unset>")),
    ]
}

const STORAGE_CLASS: &[ColumnDefinition] = &[
    NAME,
    col(
        "Provisioner",
        "string",
        "provisioner indicates the type of the provisioner.",
    ),
    col(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.",
    ),
    col(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound. When unset, VolumeBindingImmediate is used.",
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
    ),
    AGE,
];

fn annotation_is_true(obj: &Value, key: &str) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .is_some_and(|v| v == "true")
}

fn storage_class(sc: &Value, now: Timestamp) -> Vec<Value> {
    let mut display = name(sc);
    if annotation_is_true(sc, "storageclass.kubernetes.io/is-default-class")
        || annotation_is_true(sc, "storageclass.beta.kubernetes.io/is-default-class")
    {
        display.push_str(" (default)");
    }
    vec![
        json!(display),
        json!(text(sc, "/provisioner")),
        json!(opt_text(sc, "/reclaimPolicy").unwrap_or("Delete")),
        json!(opt_text(sc, "/volumeBindingMode").unwrap_or("Immediate")),
        json!(boolean_or(sc, "/allowVolumeExpansion", false)),
        json!(age(sc, now)),
    ]
}

const VOLUME_ATTRIBUTES_CLASS: &[ColumnDefinition] = &[
    NAME,
    col(
        "DriverName",
        "string",
        "Name of the CSI driver This field is immutable.",
    ),
    AGE,
];

fn volume_attributes_class(vac: &Value, now: Timestamp) -> Vec<Value> {
    let mut display = name(vac);
    if annotation_is_true(vac, "storage.kubernetes.io/is-default-class") {
        display.push_str(" (default)");
    }
    vec![
        json!(display),
        json!(text(vac, "/driverName")),
        json!(age(vac, now)),
    ]
}

const VOLUME_ATTACHMENT: &[ColumnDefinition] = &[
    NAME,
    ColumnDefinition {
        name: "Attacher",
        type_: "string",
        format: "name",
        description: "attacher indicates the name of the volume driver that MUST handle this request.",
        priority: 0,
    },
    col(
        "PV",
        "string",
        "persistentVolumeName represents the name of the persistent volume to attach.",
    ),
    col(
        "Node",
        "string",
        "nodeName represents the node that the volume should be attached to.",
    ),
    col(
        "Attached",
        "boolean",
        "attached indicates the volume is successfully attached.",
    ),
    AGE,
];

fn volume_attachment(va: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(va)),
        json!(text(va, "/spec/attacher")),
        json!(text(va, "/spec/source/persistentVolumeName")),
        json!(text(va, "/spec/nodeName")),
        json!(boolean_or(va, "/status/attached", false)),
        json!(age(va, now)),
    ]
}

const CSI_NODE: &[ColumnDefinition] = &[
    NAME,
    col(
        "Drivers",
        "integer",
        "Drivers indicates the number of CSI drivers registered on the node",
    ),
    AGE,
];

fn csi_node(n: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(n)),
        json!(len_at(n, "/spec/drivers")),
        json!(age(n, now)),
    ]
}

const CSI_DRIVER: &[ColumnDefinition] = &[
    NAME,
    col(
        "AttachRequired",
        "boolean",
        "attachRequired indicates this CSI volume driver requires an attach operation.",
    ),
    col(
        "PodInfoOnMount",
        "boolean",
        "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations.",
    ),
    col(
        "StorageCapacity",
        "boolean",
        "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report.",
    ),
    col(
        "TokenRequests",
        "string",
        "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication.",
    ),
    col(
        "RequiresRepublish",
        "boolean",
        "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume.",
    ),
    col(
        "Modes",
        "string",
        "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports.",
    ),
    AGE,
];

fn csi_driver(d: &Value, now: Timestamp) -> Vec<Value> {
    let modes: Vec<&str> = list(d, "/spec/volumeLifecycleModes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let token_requests = match d.pointer("/spec/tokenRequests").and_then(Value::as_array) {
        None => "<unset>".to_owned(),
        Some(reqs) => reqs
            .iter()
            .map(|r| {
                r.get("audience")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(","),
    };
    vec![
        json!(name(d)),
        json!(boolean_or(d, "/spec/attachRequired", true)),
        json!(boolean_or(d, "/spec/podInfoOnMount", false)),
        json!(boolean_or(d, "/spec/storageCapacity", false)),
        json!(token_requests),
        json!(boolean_or(d, "/spec/requiresRepublish", false)),
        json!(if modes.is_empty() {
            "<none>".to_owned()
        } else {
            modes.join(",")
        }),
        json!(age(d, now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::cells;
    use super::super::test_support::{names, now};
    use serde_json::json;

    #[test]
    fn claims_bound_and_pending() {
        assert_eq!(
            names("", "persistentvolumeclaims"),
            [
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode"
            ]
        );
        let bound = json!({"metadata": {"name": "data", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "spec": {"volumeName": "pvc-123", "storageClassName": "standard", "volumeMode": "Filesystem",
                "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"]}});
        assert_eq!(
            cells("", "persistentvolumeclaims", &bound, now()),
            vec![
                json!("data"),
                json!("Bound"),
                json!("pvc-123"),
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("standard"),
                json!("<unset>"),
                json!("60s"),
                json!("Filesystem")
            ]
        );
        let pending = json!({"metadata": {"name": "p", "annotations": {"volume.beta.kubernetes.io/storage-class": "legacy"}},
            "spec": {"resources": {"requests": {"storage": "5Gi"}}}, "status": {"phase": "Pending"}});
        let row = cells("", "persistentvolumeclaims", &pending, now());
        assert_eq!(
            row[1..6],
            [
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("legacy")
            ]
        );
    }

    #[test]
    fn persistent_volume_row() {
        let pv = json!({"metadata": {"name": "pvc-123", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"], "persistentVolumeReclaimPolicy": "Retain",
                "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "fast", "volumeAttributesClassName": "gold"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            cells("", "persistentvolumes", &pv, now()),
            vec![
                json!("pvc-123"),
                json!("10Gi"),
                json!("RWOP"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("fast"),
                json!("gold"),
                json!(""),
                json!("60s"),
                json!("<unset>")
            ]
        );
    }

    #[test]
    fn storage_classes_and_csi() {
        let sc = json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            cells("storage.k8s.io", "storageclasses", &sc, now()),
            vec![
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("<unknown>")
            ]
        );
        let drv = json!({"metadata": {"name": "ebs.csi.aws.com"}, "spec": {"attachRequired": false,
            "tokenRequests": [{"audience": "sts"}, {"audience": "vault"}], "volumeLifecycleModes": ["Persistent", "Ephemeral"]}});
        assert_eq!(
            cells("storage.k8s.io", "csidrivers", &drv, now())[1..7],
            [
                json!(false),
                json!(false),
                json!(false),
                json!("sts,vault"),
                json!(false),
                json!("Persistent,Ephemeral")
            ]
        );
        let va = json!({"metadata": {"name": "csi-1"}, "spec": {"attacher": "ebs", "nodeName": "n1",
            "source": {"persistentVolumeName": "pv1"}}, "status": {"attached": true}});
        assert_eq!(
            cells("storage.k8s.io", "volumeattachments", &va, now())[..5],
            [
                json!("csi-1"),
                json!("ebs"),
                json!("pv1"),
                json!("n1"),
                json!(true)
            ]
        );
    }
}

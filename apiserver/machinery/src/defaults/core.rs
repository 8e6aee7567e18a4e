//! Core (`""/v1`) defaults: `pkg/apis/core/v1/defaults.go` and where
//! `zz_generated.defaults.go` applies them.

use serde_json::{Value, json};

use super::{def, def_nonzero, each, get_mut, obj_at, s, zero_status};

/// Defaults of a core kind.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" => pod(obj),
        "PodTemplate" => {
            if let Some(t) = get_mut(obj, "template") {
                pod_template_spec(t);
            }
        }
        "ReplicationController" => replication_controller(obj),
        "Service" => service(obj),
        "Secret" => def(obj, "type", json!("Opaque")),
        "Namespace" => namespace(obj),
        "PersistentVolume" => {
            if let Some(spec) = obj_at(obj, "spec") {
                def(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                def(spec, "volumeMode", json!("Filesystem"));
            }
            zero_status(obj, json!({"phase": "Pending"}));
        }
        "PersistentVolumeClaim" => pvc(obj),
        "Endpoints" => each(obj, "subsets", |ss| {
            each(ss, "ports", |p| def(p, "protocol", json!("TCP")));
        }),
        "LimitRange" => limit_range(obj),
        "Node" => {
            if let Some(st) = get_mut(obj, "status")
                && st.get("allocatable").is_none()
                && let Some(cap) = st.get("capacity").cloned()
            {
                def(st, "allocatable", cap);
            }
        }
        _ => {}
    }
}

/// `SetDefaults_Pod` + `SetDefaults_PodSpec` and everything nested.
pub fn pod(obj: &mut Value) {
    let Some(spec) = obj_at(obj, "spec") else {
        return;
    };
    pod_spec(spec);
    // SetDefaults_Pod: requests default to limits; enableServiceLinks; host ports on hostNetwork.
    for list in ["containers", "initContainers"] {
        each(spec, list, requests_from_limits);
    }
    def(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["containers", "initContainers"] {
            each(spec, list, |c| {
                each(c, "ports", |p| {
                    if let Some(cp) = p.get("containerPort").cloned() {
                        def_nonzero(p, "hostPort", cp);
                    }
                });
            });
        }
    }
}

fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c.pointer("/resources/limits").cloned() else {
        return;
    };
    let (Some(limits), Some(res)) = (limits.as_object(), obj_at(c, "resources")) else {
        return;
    };
    if let Some(req) = obj_at(res, "requests").and_then(Value::as_object_mut) {
        for (k, v) in limits {
            req.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// A PodTemplateSpec (`template` of every workload).
pub fn pod_template_spec(t: &mut Value) {
    if let Some(spec) = obj_at(t, "spec") {
        pod_spec(spec);
    }
}

/// `SetDefaults_PodSpec` and the defaults of everything a PodSpec contains.
pub fn pod_spec(spec: &mut Value) {
    def(spec, "dnsPolicy", json!("ClusterFirst"));
    def(spec, "restartPolicy", json!("Always"));
    obj_at(spec, "securityContext");
    def(spec, "terminationGracePeriodSeconds", json!(30));
    def(spec, "schedulerName", json!("default-scheduler"));
    // v1 conversion keeps the deprecated serviceAccount mirrored from serviceAccountName.
    if s(spec, "serviceAccountName").is_empty() && !s(spec, "serviceAccount").is_empty() {
        let sa = spec["serviceAccount"].clone();
        def(spec, "serviceAccountName", sa);
    }
    if !s(spec, "serviceAccountName").is_empty()
        && let Some(m) = spec.as_object_mut()
    {
        let sa = m["serviceAccountName"].clone();
        m.insert("serviceAccount".into(), sa);
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        each(spec, list, container);
    }
    each(spec, "volumes", volume);
}

/// `SetDefaults_Container` and its nested types.
fn container(c: &mut Value) {
    let policy = image_pull_policy(s(c, "image"));
    def(c, "imagePullPolicy", json!(policy));
    def(c, "terminationMessagePath", json!("/dev/termination-log"));
    def(c, "terminationMessagePolicy", json!("File"));
    obj_at(c, "resources");
    each(c, "ports", |p| def(p, "protocol", json!("TCP")));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = get_mut(c, probe) {
            def_nonzero(p, "timeoutSeconds", json!(1));
            def_nonzero(p, "periodSeconds", json!(10));
            def_nonzero(p, "successThreshold", json!(1));
            def_nonzero(p, "failureThreshold", json!(3));
            handler(p);
        }
    }
    if let Some(l) = get_mut(c, "lifecycle") {
        for h in ["postStart", "preStop"] {
            if let Some(h) = get_mut(l, h) {
                handler(h);
            }
        }
    }
    each(c, "env", |e| {
        if let Some(f) = e.pointer_mut("/valueFrom/fieldRef") {
            def(f, "apiVersion", json!("v1"));
        }
    });
}

fn handler(h: &mut Value) {
    if let Some(g) = get_mut(h, "httpGet") {
        def(g, "path", json!("/"));
        def(g, "scheme", json!("HTTP"));
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (digests included), as
/// `SetDefaults_Container` decides with `parsers.ParseImageName`.
pub fn image_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

/// `SetDefaults_Volume` and the volume sources' defaults.
fn volume(v: &mut Value) {
    let has_source = v.as_object().is_some_and(|m| m.keys().any(|k| k != "name"));
    if !has_source {
        obj_at(v, "emptyDir");
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(x) = get_mut(v, src) {
            def(x, "defaultMode", json!(420));
        }
    }
    if let Some(d) = get_mut(v, "downwardAPI") {
        each(d, "items", |i| {
            if let Some(f) = get_mut(i, "fieldRef") {
                def(f, "apiVersion", json!("v1"));
            }
        });
    }
    if let Some(p) = get_mut(v, "projected") {
        each(p, "sources", |src| {
            if let Some(t) = get_mut(src, "serviceAccountToken") {
                def(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = get_mut(src, "downwardAPI") {
                each(d, "items", |i| {
                    if let Some(f) = get_mut(i, "fieldRef") {
                        def(f, "apiVersion", json!("v1"));
                    }
                });
            }
        });
    }
    if let Some(h) = get_mut(v, "hostPath")
        && let Some(m) = h.as_object_mut()
    {
        m.entry("type").or_insert(json!(""));
    }
    if let Some(i) = get_mut(v, "iscsi") {
        def(i, "iscsiInterface", json!("default"));
    }
    if let Some(r) = get_mut(v, "rbd") {
        def(r, "pool", json!("rbd"));
        def(r, "user", json!("admin"));
        def(r, "keyring", json!("/etc/ceph/keyring"));
    }
    if let Some(a) = get_mut(v, "azureDisk") {
        def(a, "cachingMode", json!("ReadWrite"));
        def(a, "fsType", json!("ext4"));
        def(a, "readOnly", json!(false));
        def(a, "kind", json!("Shared"));
    }
    if let Some(e) = get_mut(v, "ephemeral")
        && let Some(t) = get_mut(e, "volumeClaimTemplate")
        && let Some(spec) = obj_at(t, "spec")
    {
        def(spec, "volumeMode", json!("Filesystem"));
    }
}

fn replication_controller(obj: &mut Value) {
    let labels = obj.pointer("/spec/template/metadata/labels").cloned();
    if let Some(labels) = labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
        if let Some(spec) = obj_at(obj, "spec")
            && spec
                .get("selector")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty())
        {
            spec.as_object_mut()
                .map(|m| m.insert("selector".into(), labels.clone()));
        }
        if let Some(meta) = obj_at(obj, "metadata")
            && meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty())
        {
            meta.as_object_mut()
                .map(|m| m.insert("labels".into(), labels));
        }
    }
    if let Some(spec) = obj_at(obj, "spec") {
        def(spec, "replicas", json!(1));
        if let Some(t) = get_mut(spec, "template") {
            pod_template_spec(t);
        }
    }
    zero_status(obj, json!({"replicas": 0}));
}

/// `SetDefaults_Service` (the IP family fields and cluster IPs are the registry's, in the
/// Service strategy).
fn service(obj: &mut Value) {
    let Some(spec) = obj_at(obj, "spec") else {
        return;
    };
    def(spec, "sessionAffinity", json!("None"));
    if s(spec, "sessionAffinity") == "ClientIP"
        && spec
            .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
            .is_none()
        && let Some(c) = obj_at(spec, "sessionAffinityConfig")
        && let Some(ip) = obj_at(c, "clientIP")
    {
        def(ip, "timeoutSeconds", json!(10800));
    }
    def(spec, "type", json!("ClusterIP"));
    let ty = s(spec, "type").to_string();
    each(spec, "ports", |p| {
        def(p, "protocol", json!("TCP"));
        let zero = matches!(p.get("targetPort"), None | Some(Value::Null))
            || p.get("targetPort").and_then(Value::as_i64) == Some(0)
            || p.get("targetPort").and_then(Value::as_str) == Some("");
        if zero && let Some(port) = p.get("port").cloned() {
            p.as_object_mut()
                .map(|m| m.insert("targetPort".into(), port));
        }
    });
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        def(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty != "ExternalName" {
        def(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        def(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    zero_status(obj, json!({"loadBalancer": {}}));
}

fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(meta) = obj_at(obj, "metadata")
        && let Some(labels) = obj_at(meta, "labels").and_then(Value::as_object_mut)
        && !name.is_empty()
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    zero_status(obj, json!({"phase": "Active"}));
}

/// `SetDefaults_PersistentVolumeClaim` (also applied to StatefulSet volumeClaimTemplates).
pub fn pvc(obj: &mut Value) {
    if let Some(spec) = obj_at(obj, "spec") {
        def(spec, "volumeMode", json!("Filesystem"));
    }
    zero_status(obj, json!({"phase": "Pending"}));
}

/// `SetDefaults_LimitRangeItem`: for containers, default limits to max and requests to the
/// default limit (or max).
fn limit_range(obj: &mut Value) {
    if let Some(spec) = get_mut(obj, "spec") {
        each(spec, "limits", |item| {
            if s(item, "type") != "Container" {
                return;
            }
            let max = item.get("max").and_then(Value::as_object).cloned();
            let min = item.get("min").and_then(Value::as_object).cloned();
            if let Some(max) = &max
                && let Some(d) = obj_at(item, "default").and_then(Value::as_object_mut)
            {
                for (k, v) in max {
                    d.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            let default = item.get("default").and_then(Value::as_object).cloned();
            if let Some(dr) = obj_at(item, "defaultRequest").and_then(Value::as_object_mut) {
                for (k, v) in default.iter().flatten() {
                    dr.entry(k.clone()).or_insert_with(|| v.clone());
                }
                for (k, v) in min.iter().flatten() {
                    dr.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            for k in ["default", "defaultRequest"] {
                if item
                    .get(k)
                    .and_then(Value::as_object)
                    .is_some_and(|m| m.is_empty())
                {
                    item.as_object_mut().map(|m| m.remove(k));
                }
            }
        });
    }
}

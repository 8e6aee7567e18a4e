//! Discovery documents compared with upstream's served documents (api/discovery/*.json).

use serde_json::{Value, json};

use super::*;
use crate::resources::{Facts, GroupVersion, TableStr, builtin_resources, listable};

const CRUD: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn names(list: &Value) -> Vec<&str> {
    list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect()
}

#[test]
fn aggregated_apps_group_equals_upstream() {
    let doc = aggregated(builtin_resources(), false, AggregatedVersion::V2);
    assert_eq!(doc["kind"], "APIGroupDiscoveryList");
    assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
    let items = doc["items"].as_array().expect("items");
    assert_eq!(
        items[0]["metadata"],
        json!({"name": "apiregistration.k8s.io"})
    );
    let apps = items
        .iter()
        .find(|i| i["metadata"]["name"] == "apps")
        .expect("apps");
    let status = |kind: &str| {
        json!({"responseKind": {"group": "", "kind": kind, "version": ""},
               "subresource": "status", "verbs": ["get", "patch", "update"]})
    };
    let scale = json!({"responseKind": {"group": "autoscaling", "kind": "Scale", "version": "v1"},
                       "subresource": "scale", "verbs": ["get", "patch", "update"]});
    let expected = json!({
        "metadata": {"name": "apps"},
        "versions": [{
            "freshness": "Current",
            "version": "v1",
            "resources": [
                {"resource": "controllerrevisions",
                 "responseKind": {"group": "", "kind": "ControllerRevision", "version": ""},
                 "scope": "Namespaced", "singularResource": "controllerrevision", "verbs": CRUD},
                {"categories": ["all"], "resource": "daemonsets",
                 "responseKind": {"group": "", "kind": "DaemonSet", "version": ""},
                 "scope": "Namespaced", "shortNames": ["ds"], "singularResource": "daemonset",
                 "subresources": [status("DaemonSet")], "verbs": CRUD},
                {"categories": ["all"], "resource": "deployments",
                 "responseKind": {"group": "", "kind": "Deployment", "version": ""},
                 "scope": "Namespaced", "shortNames": ["deploy"], "singularResource": "deployment",
                 "subresources": [scale, status("Deployment")], "verbs": CRUD},
                {"categories": ["all"], "resource": "replicasets",
                 "responseKind": {"group": "", "kind": "ReplicaSet", "version": ""},
                 "scope": "Namespaced", "shortNames": ["rs"], "singularResource": "replicaset",
                 "subresources": [scale, status("ReplicaSet")], "verbs": CRUD},
                {"categories": ["all"], "resource": "statefulsets",
                 "responseKind": {"group": "", "kind": "StatefulSet", "version": ""},
                 "scope": "Namespaced", "shortNames": ["sts"], "singularResource": "statefulset",
                 "subresources": [scale, status("StatefulSet")], "verbs": CRUD},
            ],
        }],
    });
    assert_eq!(apps, &expected);
    // Field order matters to byte-level ETags only, but keep upstream's anyway.
    let first = &apps["versions"][0]["resources"][2];
    let keys: Vec<&str> = first
        .as_object()
        .expect("obj")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "resource",
            "responseKind",
            "scope",
            "singularResource",
            "verbs",
            "shortNames",
            "categories",
            "subresources"
        ]
    );
}

#[test]
fn aggregated_groups_and_versions_in_upstream_order() {
    let doc = aggregated(builtin_resources(), false, AggregatedVersion::V2Beta1);
    assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    let items = doc["items"].as_array().expect("items");
    let group_names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        &group_names[..4],
        [
            "apiregistration.k8s.io",
            "apps",
            "events.k8s.io",
            "authentication.k8s.io"
        ]
    );
    assert_eq!(group_names.last(), Some(&"resource.k8s.io"));
    assert_eq!(group_names.len(), 20);
    let autoscaling = items
        .iter()
        .find(|i| i["metadata"]["name"] == "autoscaling")
        .expect("autoscaling");
    let versions: Vec<&str> = autoscaling["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["version"].as_str().expect("v"))
        .collect();
    assert_eq!(versions, ["v2", "v1"]);
}

#[test]
fn aggregated_legacy_is_the_core_group_alone() {
    let doc = aggregated(builtin_resources(), true, AggregatedVersion::V2);
    let items = doc["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"], json!({}));
    let v1 = &items[0]["versions"][0];
    assert_eq!(v1["version"], "v1");
    assert_eq!(v1["freshness"], "Current");
    let pods = v1["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "pods")
        .expect("pods");
    assert_eq!(pods["scope"], "Namespaced");
    assert_eq!(pods["shortNames"], json!(["po"]));
    let eviction = pods["subresources"]
        .as_array()
        .expect("subs")
        .iter()
        .find(|s| s["subresource"] == "eviction")
        .expect("eviction");
    assert_eq!(
        eviction,
        &json!({"subresource": "eviction",
                "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
                "verbs": ["create"]})
    );
    let ns = v1["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "namespaces")
        .expect("namespaces");
    assert_eq!(ns["scope"], "Cluster");
}

#[test]
fn core_resource_list_matches_upstream() {
    let list = api_resource_list(builtin_resources(), "", "v1").expect("core");
    assert_eq!(list["kind"], "APIResourceList");
    assert_eq!(list["groupVersion"], "v1");
    assert!(list.get("apiVersion").is_none());
    // Upstream api__v1.json (1.35, with pods/resize).
    let expected = [
        "bindings",
        "componentstatuses",
        "configmaps",
        "endpoints",
        "events",
        "limitranges",
        "namespaces",
        "namespaces/finalize",
        "namespaces/status",
        "nodes",
        "nodes/proxy",
        "nodes/status",
        "persistentvolumeclaims",
        "persistentvolumeclaims/status",
        "persistentvolumes",
        "persistentvolumes/status",
        "pods",
        "pods/attach",
        "pods/binding",
        "pods/ephemeralcontainers",
        "pods/eviction",
        "pods/exec",
        "pods/log",
        "pods/portforward",
        "pods/proxy",
        "pods/resize",
        "pods/status",
        "podtemplates",
        "replicationcontrollers",
        "replicationcontrollers/scale",
        "replicationcontrollers/status",
        "resourcequotas",
        "resourcequotas/status",
        "secrets",
        "serviceaccounts",
        "serviceaccounts/token",
        "services",
        "services/proxy",
        "services/status",
    ];
    assert_eq!(names(&list), expected);
    let resources = list["resources"].as_array().expect("resources");
    assert_eq!(
        resources[2],
        json!({"name": "configmaps", "singularName": "configmap", "namespaced": true,
               "kind": "ConfigMap", "verbs": CRUD, "shortNames": ["cm"],
               "storageVersionHash": "qFsyl6wFWjQ="})
    );
    assert_eq!(
        resources[1],
        json!({"name": "componentstatuses", "singularName": "componentstatus",
               "namespaced": false, "kind": "ComponentStatus", "verbs": ["get", "list"],
               "shortNames": ["cs"]})
    );
    let token = resources
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .expect("token");
    assert_eq!(
        token,
        &json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
                "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest",
                "verbs": ["create"]})
    );
    let keys: Vec<&str> = resources[16]
        .as_object()
        .expect("pods")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "singularName",
            "namespaced",
            "kind",
            "verbs",
            "shortNames",
            "categories",
            "storageVersionHash"
        ]
    );
}

#[test]
fn group_resource_lists_match_upstream() {
    let hpa = api_resource_list(builtin_resources(), "autoscaling", "v1").expect("hpa");
    assert_eq!(
        hpa,
        json!({"apiVersion": "v1", "groupVersion": "autoscaling/v1", "kind": "APIResourceList",
        "resources": [
          {"categories": ["all"], "kind": "HorizontalPodAutoscaler",
           "name": "horizontalpodautoscalers", "namespaced": true, "shortNames": ["hpa"],
           "singularName": "horizontalpodautoscaler", "storageVersionHash": "qwQve8ut294=",
           "verbs": CRUD},
          {"kind": "HorizontalPodAutoscaler", "name": "horizontalpodautoscalers/status",
           "namespaced": true, "singularName": "", "verbs": ["get", "patch", "update"]}
        ]})
    );
    let net = api_resource_list(builtin_resources(), "networking.k8s.io", "v1").expect("net");
    assert_eq!(
        names(&net),
        [
            "ingressclasses",
            "ingresses",
            "ingresses/status",
            "ipaddresses",
            "networkpolicies",
            "servicecidrs",
            "servicecidrs/status"
        ]
    );
    let authz = api_resource_list(builtin_resources(), "authorization.k8s.io", "v1").expect("z");
    let first = &authz["resources"][0];
    assert_eq!(first["name"], "localsubjectaccessreviews");
    assert!(first.get("storageVersionHash").is_none());
    assert!(api_resource_list(builtin_resources(), "apps", "v1beta1").is_none());
    assert!(api_resource_list(builtin_resources(), "nope", "v1").is_none());
}

#[test]
fn group_documents() {
    let list = api_group_list(builtin_resources());
    assert_eq!(list["kind"], "APIGroupList");
    let groups = list["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 20);
    assert_eq!(groups[0]["name"], "apiregistration.k8s.io");
    let autoscaling = groups
        .iter()
        .find(|g| g["name"] == "autoscaling")
        .expect("autoscaling");
    assert_eq!(
        autoscaling,
        &json!({"name": "autoscaling",
                "versions": [{"groupVersion": "autoscaling/v2", "version": "v2"},
                             {"groupVersion": "autoscaling/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "autoscaling/v2", "version": "v2"}})
    );
    let apps = api_group(builtin_resources(), "apps").expect("apps");
    assert_eq!(
        apps,
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": "apps",
               "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
               "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}})
    );
    assert!(api_group(builtin_resources(), "nope.example.com").is_none());
    assert!(api_group(builtin_resources(), "").is_none());

    let versions = api_versions("10.0.0.1:6443");
    assert_eq!(
        versions,
        json!({"kind": "APIVersions", "versions": ["v1"],
               "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                               "serverAddress": "10.0.0.1:6443"}]})
    );
}

#[test]
fn extra_groups_sort_after_builtins_and_versions_by_priority() {
    // Stand-ins for CRD entries: two groups not known upstream, several versions.
    let mut all: Vec<ResourceInfo> = builtin_resources().to_vec();
    for (group, version) in [
        ("zeta.example.com", "v1"),
        ("alpha.example.com", "v1beta1"),
        ("alpha.example.com", "v1"),
        ("alpha.example.com", "v2alpha1"),
    ] {
        let mut r = listable::<k8s_openapi::api::core::v1::ConfigMap>(Facts::new(&CRUD));
        r.group = TableStr::Static(group);
        r.version = TableStr::Static(version);
        r.storage = Some(GroupVersion {
            group: TableStr::Static(group),
            version: TableStr::Static("v1"),
        });
        all.push(r);
    }
    let list = api_group_list(&all);
    let groups = list["groups"].as_array().expect("groups");
    let tail: Vec<&str> = groups[groups.len() - 2..]
        .iter()
        .map(|g| g["name"].as_str().expect("name"))
        .collect();
    assert_eq!(tail, ["alpha.example.com", "zeta.example.com"]);
    let alpha = api_group(&all, "alpha.example.com").expect("alpha");
    assert_eq!(alpha["preferredVersion"]["version"], "v1");
    let versions: Vec<&str> = alpha["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["version"].as_str().expect("v"))
        .collect();
    assert_eq!(versions, ["v1", "v1beta1", "v2alpha1"]);
}

#[test]
fn etag_is_quoted_upper_hex_sha512() {
    assert_eq!(
        etag(b"abc"),
        "\"DDAF35A193617ABACC417349AE20413112E6FA4E89A97EA20A9EEEE64B55D39A2192992A274FC1A836BA3C23A3FEEBBD454D4423643CE80E2A9AC94FA54CA49F\""
    );
    assert_ne!(etag(b"abc"), etag(b"abd"));
}

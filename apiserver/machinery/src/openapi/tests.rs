//! Tests for the OpenAPI builders, with a few hand-made resources.

use std::collections::BTreeSet;

use serde_json::Value;

use super::schema::{V2_PREFIX, V3_PREFIX, collect_refs};
use super::*;
use crate::resources::{ResourceInfo, Scope, SubresourceInfo, TableList, TableStr};

const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn sub(
    name: &'static str,
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    verbs: &'static [&'static str],
) -> SubresourceInfo {
    SubresourceInfo::new(name, kind, group, version, verbs)
}

fn resources() -> Vec<ResourceInfo> {
    static POD_SUBS: std::sync::OnceLock<Vec<SubresourceInfo>> = std::sync::OnceLock::new();
    static DEPLOY_SUBS: std::sync::OnceLock<Vec<SubresourceInfo>> = std::sync::OnceLock::new();
    let pod_subs = POD_SUBS.get_or_init(|| {
        vec![
            sub("status", "Pod", "", "", &["get", "patch", "update"]),
            sub("log", "Pod", "", "", &["get"]),
            sub("exec", "PodExecOptions", "", "", &["create", "get"]),
            sub("eviction", "Eviction", "policy", "v1", &["create"]),
        ]
    });
    let deploy_subs = DEPLOY_SUBS.get_or_init(|| {
        vec![
            sub("status", "Deployment", "", "", &["get", "patch", "update"]),
            sub(
                "scale",
                "Scale",
                "autoscaling",
                "v1",
                &["get", "patch", "update"],
            ),
        ]
    });
    let base = |group, version, kind, list_kind, plural, scope, schema_name, schema: SchemaFnT| {
        ResourceInfo {
            group: TableStr::Static(group),
            version: TableStr::Static(version),
            kind: TableStr::Static(kind),
            list_kind: TableStr::Static(list_kind),
            plural: TableStr::Static(plural),
            singular: TableStr::Static(""),
            scope,
            verbs: RW,
            short_names: TableList::default(),
            categories: TableList::default(),
            subresources: &[],
            virtual_only: false,
            storage: None,
            schema_name: TableStr::Static(schema_name),
            schema: Some(schema),
        }
    };
    let mut pod = base(
        "",
        "v1",
        "Pod",
        "PodList",
        "pods",
        Scope::Namespaced,
        "io.k8s.api.core.v1.Pod",
        |g| g.subschema_for::<k8s_openapi::api::core::v1::Pod>(),
    );
    pod.subresources = pod_subs.as_slice();
    let mut deploy = base(
        "apps",
        "v1",
        "Deployment",
        "DeploymentList",
        "deployments",
        Scope::Namespaced,
        "io.k8s.api.apps.v1.Deployment",
        |g| g.subschema_for::<k8s_openapi::api::apps::v1::Deployment>(),
    );
    deploy.subresources = deploy_subs.as_slice();
    let cm = base(
        "",
        "v1",
        "ConfigMap",
        "ConfigMapList",
        "configmaps",
        Scope::Namespaced,
        "io.k8s.api.core.v1.ConfigMap",
        <k8s_openapi::api::core::v1::ConfigMap as schemars::JsonSchema>::json_schema,
    );
    let ns = base(
        "",
        "v1",
        "Namespace",
        "NamespaceList",
        "namespaces",
        Scope::Cluster,
        "io.k8s.api.core.v1.Namespace",
        |g| g.subschema_for::<k8s_openapi::api::core::v1::Namespace>(),
    );
    vec![pod, deploy, cm, ns]
}

type SchemaFnT = crate::resources::SchemaFn;

fn v2() -> Value {
    Spec::from_resources(&resources()).v2()
}

fn ops_by_id(doc: &Value) -> std::collections::BTreeMap<String, (String, String, Value)> {
    let mut out = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                out.insert(id.to_string(), (path.clone(), method.clone(), op.clone()));
            }
        }
    }
    out
}

fn assert_refs_resolve(doc: &Value, prefix: &str, defs: &Value) {
    let mut refs = BTreeSet::new();
    collect_refs(doc, prefix, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        assert!(defs.get(&r).is_some(), "dangling ref {r}");
    }
}

#[test]
fn facts_table_has_merge_keys_and_walks_paths() {
    let f = facts();
    assert!(f.source.contains("v1.35.0"), "{}", f.source);
    let c = f
        .field_facts("io.k8s.api.core.v1.PodSpec", "containers")
        .unwrap();
    assert_eq!(c.patch_merge_key.as_deref(), Some("name"));
    assert_eq!(c.patch_strategy.as_deref(), Some("merge"));
    assert_eq!(c.list_type, Some(ListType::Map));
    assert_eq!(c.list_map_keys, vec!["name".to_string()]);
    assert_eq!(
        c.reference,
        Some(FieldRef::Items("io.k8s.api.core.v1.Container".into()))
    );
    let (def, ports) = f
        .walk(
            "io.k8s.api.apps.v1.Deployment",
            &["spec", "template", "spec", "containers", "ports"],
        )
        .unwrap();
    assert_eq!(def, "io.k8s.api.core.v1.Container");
    assert_eq!(
        ports.list_map_keys,
        vec!["containerPort".to_string(), "protocol".to_string()]
    );
    assert_eq!(
        f.definition_for_gvk("autoscaling", "v1", "Scale"),
        Some("io.k8s.api.autoscaling.v1.Scale")
    );
    assert_eq!(
        f.definition_for_gvk("", "v1", "PodList"),
        Some("io.k8s.api.core.v1.PodList")
    );
    assert!(
        f.walk("io.k8s.api.apps.v1.Deployment", &["spec", "nope", "x"])
            .is_none()
    );
}

#[test]
fn v2_definitions_carry_facts_and_upstream_shapes() {
    let doc = v2();
    assert_eq!(doc["swagger"], "2.0");
    let defs = &doc["definitions"];
    let pod = &defs["io.k8s.api.core.v1.Pod"];
    assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
    assert_eq!(
        pod["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodSpec"
    );
    let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
        "int-or-string"
    );
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"],
        "string"
    );
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
        "string"
    );
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"],
        "date-time"
    );
    let list = &defs["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    assert_eq!(list["x-kubernetes-group-version-kind"][0]["group"], "apps");
    assert!(
        defs.get("io.k8s.api.core.v1.ConfigMap").is_some(),
        "inline schema_fn registered"
    );
    assert!(!serde_json::to_string(&doc).unwrap().contains("$schema"));
    assert_refs_resolve(&doc, V2_PREFIX, defs);
}

#[test]
fn v2_operations_follow_upstream() {
    let doc = v2();
    let ops = ops_by_id(&doc);
    let (path, method, list) = &ops["listCoreV1NamespacedPod"];
    assert_eq!(
        (path.as_str(), method.as_str()),
        ("/api/v1/namespaces/{namespace}/pods", "get")
    );
    assert_eq!(list["x-kubernetes-action"], "list");
    assert_eq!(
        list["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodList"
    );
    let names: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "resourceVersion",
        "resourceVersionMatch",
        "sendInitialEvents",
        "timeoutSeconds",
        "watch",
        "allowWatchBookmarks",
    ] {
        assert!(names.contains(&p), "{p} missing");
    }
    let (_, _, create) = &ops["createAppsV1NamespacedDeployment"];
    assert_eq!(
        create["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    assert_eq!(create["parameters"][0]["in"], "body");
    assert_eq!(
        create["responses"]["201"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    let (_, _, patch) = &ops["patchAppsV1NamespacedDeployment"];
    assert!(
        patch["consumes"]
            .as_array()
            .unwrap()
            .contains(&"application/strategic-merge-patch+json".into())
    );
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "force")
    );
    let (path, _, scale) = &ops["replaceAppsV1NamespacedDeploymentScale"];
    assert_eq!(
        path,
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"
    );
    assert_eq!(
        scale["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.autoscaling.v1.Scale"
    );
    assert_eq!(
        scale["x-kubernetes-group-version-kind"]["group"],
        "autoscaling"
    );
    assert_eq!(
        ops["readCoreV1NamespacedPodStatus"].2["x-kubernetes-action"],
        "get"
    );
    assert_eq!(
        ops["deleteCollectionCoreV1NamespacedConfigMap"].2["x-kubernetes-action"],
        "deletecollection"
    );
    assert_eq!(
        ops["connectCoreV1GetNamespacedPodExec"].2["x-kubernetes-action"],
        "connect"
    );
    assert_eq!(
        ops["createCoreV1NamespacedPodEviction"].2["parameters"][0]["schema"]["$ref"],
        "#/definitions/io.k8s.api.policy.v1.Eviction"
    );
    assert_eq!(
        ops["readCoreV1NamespacedPodLog"].2["responses"]["200"]["schema"]["type"],
        "string"
    );
    assert_eq!(
        ops["watchCoreV1NamespacedPodList"].2["x-kubernetes-action"],
        "watchlist"
    );
    assert_eq!(ops["listCoreV1PodForAllNamespaces"].0, "/api/v1/pods");
    assert_eq!(ops["readCoreV1Namespace"].0, "/api/v1/namespaces/{name}");
    assert_eq!(ops["getAppsV1APIResources"].0, "/apis/apps/v1/");
    assert_eq!(ops["getAppsAPIGroup"].0, "/apis/apps/");
    assert_eq!(ops["getCoreAPIVersions"].0, "/api/");
}

#[test]
fn v3_documents_are_hash_addressed_and_self_contained() {
    let docs = build(&resources());
    let keys: Vec<&str> = docs.v3.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec!["api", "api/v1", "apis", "apis/apps", "apis/apps/v1"]
    );
    let index: Value = serde_json::from_slice(&docs.v3_index).unwrap();
    for (key, doc) in &docs.v3 {
        assert_eq!(doc.hash, v3_hash(&doc.json));
        assert_eq!(doc.hash.len(), 128);
        assert!(
            doc.hash
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_eq!(
            index["paths"][key]["serverRelativeURL"],
            format!("/openapi/v3/{key}?hash={}", doc.hash)
        );
        let v: Value = serde_json::from_slice(&doc.json).unwrap();
        assert_eq!(v["openapi"], "3.0.0");
        assert!(!String::from_utf8_lossy(&doc.json).contains("#/definitions/"));
        assert_refs_resolve(&v, V3_PREFIX, &v["components"]["schemas"]);
    }
    let apps: Value = serde_json::from_slice(&docs.v3["apis/apps/v1"].json).unwrap();
    let schemas = apps["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
    assert!(
        !schemas.contains_key("io.k8s.api.core.v1.ConfigMap"),
        "only reachable schemas"
    );
    let spec = &schemas["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
    assert_eq!(
        spec["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    let create = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
    assert_eq!(create["operationId"], "createAppsV1NamespacedDeployment");
    assert_eq!(
        create["requestBody"]["content"]["*/*"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    );
    assert_eq!(
        create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    );
    // Deterministic bytes: the same input gives the same hashes.
    assert_eq!(
        build(&resources()).v3["apis/apps/v1"].hash,
        docs.v3["apis/apps/v1"].hash
    );
}

#[test]
fn v2_protobuf_round_trips_through_gnostic_messages() {
    let docs = build(&resources());
    let json: Value = serde_json::from_slice(&docs.v2_json).unwrap();
    let doc = proto::decode_document(&docs.v2_proto).unwrap();
    assert_eq!(doc.swagger, "2.0");
    assert_eq!(doc.info.as_ref().unwrap().title, "Kubernetes");
    let defs = &doc.definitions.as_ref().unwrap().additional_properties;
    assert_eq!(defs.len(), json["definitions"].as_object().unwrap().len());
    let pod_spec = defs
        .iter()
        .find(|d| d.name == "io.k8s.api.core.v1.PodSpec")
        .unwrap()
        .value
        .as_ref()
        .unwrap();
    let props = &pod_spec.properties.as_ref().unwrap().additional_properties;
    let containers = props
        .iter()
        .find(|p| p.name == "containers")
        .unwrap()
        .value
        .as_ref()
        .unwrap();
    assert_eq!(
        containers.r#type.as_ref().unwrap().value,
        vec!["array".to_string()]
    );
    assert_eq!(
        containers.items.as_ref().unwrap().schema[0].r#ref,
        "#/definitions/io.k8s.api.core.v1.Container"
    );
    let ext: Vec<(&str, &str)> = containers
        .vendor_extension
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_ref().unwrap().yaml.as_str()))
        .collect();
    assert!(
        ext.contains(&("x-kubernetes-patch-merge-key", "\"name\"\n")),
        "{ext:?}"
    );
    let pod = defs
        .iter()
        .find(|d| d.name == "io.k8s.api.core.v1.Pod")
        .unwrap()
        .value
        .as_ref()
        .unwrap();
    let gvk = pod
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .unwrap();
    let gvk: Value = serde_json::from_str(&gvk.value.as_ref().unwrap().yaml).unwrap();
    assert_eq!(gvk[0]["kind"], "Pod");
    let paths = &doc.paths.as_ref().unwrap().path;
    assert_eq!(paths.len(), json["paths"].as_object().unwrap().len());
    let pods = paths
        .iter()
        .find(|p| p.name == "/api/v1/namespaces/{namespace}/pods")
        .unwrap()
        .value
        .as_ref()
        .unwrap();
    let list = pods.get.as_ref().unwrap();
    assert_eq!(list.operation_id, "listCoreV1NamespacedPod");
    assert!(
        list.vendor_extension
            .iter()
            .any(|e| e.name == "x-kubernetes-action"
                && e.value.as_ref().unwrap().yaml == "\"list\"\n")
    );
    let post = pods.post.as_ref().unwrap();
    let Some(proto::parameters_item::Oneof::Parameter(proto::Parameter {
        oneof: Some(proto::parameter::Oneof::BodyParameter(body)),
    })) = &post.parameters[0].oneof
    else {
        panic!(
            "first create parameter is not the body: {:?}",
            post.parameters[0]
        );
    };
    assert_eq!(
        body.schema.as_ref().unwrap().r#ref,
        "#/definitions/io.k8s.api.core.v1.Pod"
    );
    let ok = &post.responses.as_ref().unwrap().response_code;
    assert!(ok.iter().any(|r| r.name == "201"));
    assert_eq!(
        doc.security_definitions
            .as_ref()
            .unwrap()
            .additional_properties[0]
            .name,
        "BearerToken"
    );
}

#[test]
fn spec_adds_and_removes_custom_resources() {
    let mut spec = Spec::from_resources(&resources());
    let crd = ResourceInfo {
        group: TableStr::Static("stable.example.com"),
        version: TableStr::Static("v1"),
        kind: TableStr::Static("CronTab"),
        list_kind: TableStr::Static("CronTabList"),
        plural: TableStr::Static("crontabs"),
        singular: TableStr::Static("crontab"),
        scope: Scope::Namespaced,
        verbs: RW,
        short_names: TableList::default(),
        categories: TableList::default(),
        subresources: &[],
        virtual_only: false,
        storage: None,
        schema_name: TableStr::Static("com.example.stable.v1.CronTab"),
        schema: None,
    };
    let (list_name, list) = schema::list_definition(&crd, "com.example.stable.v1.CronTab");
    spec.add_definitions([
        ("com.example.stable.v1.CronTab".to_string(), serde_json::json!({"type": "object", "properties": {"metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}}})),
        (list_name.clone(), list),
    ]);
    spec.add_resource_paths(&crd, "com.example.stable.v1.CronTab", &list_name);
    let doc = spec.v3("apis/stable.example.com/v1").unwrap();
    let ops = ops_by_id(&doc);
    assert!(ops.contains_key("listStableExampleComV1NamespacedCronTab"));
    assert!(
        doc["components"]["schemas"]
            .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            .is_some()
    );
    assert!(spec.v3_keys().any(|k| k == "apis/stable.example.com"));
    spec.remove_group_version("stable.example.com", "v1");
    assert!(spec.v3("apis/stable.example.com/v1").is_none());
    assert!(!spec.v3_keys().any(|k| k == "apis/stable.example.com"));
}

#[test]
fn every_facts_definition_parses_when_first_asked_for() {
    let f = facts();
    let names: Vec<&str> = f.definition_names().collect();
    assert!(names.len() > 500, "{}", names.len());
    for n in names {
        assert!(f.definition(n).is_some(), "{n} does not parse");
    }
    assert_eq!(
        f.definition_for_gvk("apps", "v1", "Deployment"),
        Some("io.k8s.api.apps.v1.Deployment")
    );
    // DeleteOptions names every group: it is no kind's definition.
    assert_eq!(f.definition_for_gvk("", "v1", "DeleteOptions"), None);
    let spec = f
        .definition("io.k8s.api.apps.v1.Deployment")
        .expect("Deployment");
    assert_eq!(spec.group_version_kind.len(), 1);
    assert_eq!(
        f.field_definition("io.k8s.api.apps.v1.Deployment", "spec"),
        Some("io.k8s.api.apps.v1.DeploymentSpec")
    );
}

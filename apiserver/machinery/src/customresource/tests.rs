use std::sync::Arc;

use serde_json::{Value, json};

use super::status::{accepted_names, desired};
use super::*;

fn crd(name: &str, plural: &str, kind: &str, short: &[&str]) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "uid": "u"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind, "shortNames": short, "categories": ["all"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                     "statusReplicasPath": ".status.replicas"}}},
                {"name": "v1beta1", "served": true, "storage": false},
                {"name": "v0", "served": false, "storage": false}]},
    })
}

#[test]
fn served_versions_become_table_entries() {
    let c = Crd::parse(&crd("widgets.example.com", "widgets", "Widget", &["wd"])).unwrap();
    let infos = c.resource_infos();
    assert_eq!(infos.len(), 2, "v0 is not served");
    let (v1, _) = &infos[0];
    assert_eq!(
        (&*v1.group, &*v1.version, &*v1.plural),
        ("example.com", "v1", "widgets")
    );
    assert_eq!((&*v1.singular, &*v1.list_kind), ("widget", "WidgetList"));
    assert_eq!(v1.short_names.to_vec(), ["wd"]);
    assert_eq!(v1.categories.to_vec(), ["all"]);
    let subs: Vec<&str> = v1.subresources.iter().map(|s| s.name).collect();
    assert_eq!(subs, ["scale", "status"]);
    let kinds: Vec<&str> = v1.subresources.iter().map(|s| s.kind(v1)).collect();
    assert_eq!(
        kinds,
        ["Scale", "Widget"],
        "status is served as the CR's own kind"
    );
    assert!(infos[1].0.subresources.is_empty());
    assert_eq!(c.storage_api_version(), "example.com/v1");
    assert_eq!(v1.schema_name, "com.example.v1.Widget");
    // The versions' entries share one copy of each name.
    match (&v1.group, &infos[1].0.group) {
        (TableStr::Shared(a), TableStr::Shared(b)) => assert!(Arc::ptr_eq(a, b)),
        other => panic!("custom resource names are shared copies: {other:?}"),
    }
}

/// The weak handles of every shared string of a table entry.
fn weak_strings(info: &ResourceInfo) -> Vec<std::sync::Weak<str>> {
    let mut out = Vec::new();
    for s in [
        &info.group,
        &info.version,
        &info.kind,
        &info.list_kind,
        &info.plural,
        &info.singular,
        &info.schema_name,
    ] {
        if let TableStr::Shared(a) = s {
            out.push(Arc::downgrade(a));
        }
    }
    for l in [&info.short_names, &info.categories] {
        if let TableList::Shared(items) = l {
            out.extend(items.iter().map(Arc::downgrade));
        }
    }
    if let Some(GroupVersion {
        version: TableStr::Shared(v),
        ..
    }) = &info.storage
    {
        out.push(Arc::downgrade(v));
    }
    out
}

/// DESIGN "Hostile input": a user creating and deleting CRDs with ever-new names must not
/// grow the server. Every string of a custom resource's table entries goes away with the
/// entries (the resource table used to leak them for the life of the process).
#[test]
fn names_of_deleted_crds_are_freed() {
    let mut weak = Vec::new();
    for i in 0..300 {
        let plural = format!("things{i}");
        let c = Crd::parse(&crd(
            &format!("{plural}.example.com"),
            &plural,
            &format!("Thing{i}"),
            &[&format!("t{i}")],
        ))
        .unwrap();
        let infos = c.resource_infos();
        assert_eq!(infos.len(), 2);
        for (info, _) in &infos {
            let w = weak_strings(info);
            // group, versions, kind, list kind, plural, singular, schema name, short name,
            // category and the storage version: all owned by the entries, none static.
            assert_eq!(w.len(), 10, "{info:?}");
            weak.extend(w);
        }
        // The CRD is deleted: its entries and the parsed CRD are dropped.
    }
    assert_eq!(weak.len(), 300 * 2 * 10);
    let alive = weak.iter().filter(|w| w.upgrade().is_some()).count();
    assert_eq!(alive, 0, "{alive} strings of deleted CRDs are still held");
}

#[test]
fn conflicting_names_are_refused_as_upstream() {
    let mut held = Crd::parse(&crd("widgets.example.com", "widgets", "Widget", &["wd"])).unwrap();
    held.accepted = Some(held.names.clone());
    let other = Crd::parse(&crd("gadgets.example.com", "gadgets", "Widget", &["wd"])).unwrap();
    let (names, cond) = accepted_names(&other, &[&held]);
    assert_eq!(cond.status, "False");
    // Kind and list kind both conflict; upstream reports the last check's.
    assert_eq!(cond.reason, "ListKindConflict");
    assert_eq!(cond.message, "\"WidgetList\" is already in use");
    assert!(names.kind.is_empty(), "the kind is not accepted");
    assert_eq!(names.plural, "gadgets");
    assert!(
        names.short_names.is_empty(),
        "conflicting short names are not accepted"
    );
    let free = Crd::parse(&crd("gizmos.example.com", "gizmos", "Gizmo", &[])).unwrap();
    let (_, cond) = accepted_names(&free, &[&held]);
    assert_eq!((cond.status, cond.reason.as_str()), ("True", "NoConflicts"));
}

#[test]
fn desired_status_establishes_and_settles() {
    let c = Crd::parse(&crd("widgets.example.com", "widgets", "Widget", &[])).unwrap();
    let s = desired(&c, &[], "2025-01-01T00:00:00Z").expect("a new CRD needs a status");
    let conds = s["conditions"].as_array().unwrap();
    assert_eq!(conds[0]["type"], "NamesAccepted");
    assert_eq!(conds[1]["type"], "Established");
    assert_eq!(conds[1]["status"], "True");
    assert_eq!(conds[1]["reason"], "InitialNamesAccepted");
    assert_eq!(s["acceptedNames"]["listKind"], "WidgetList");
    assert_eq!(s["storedVersions"], json!(["v1"]));
    let mut raw = c.raw.clone();
    raw["status"] = s;
    let settled = Crd::parse(&raw).unwrap();
    assert!(settled.established);
    assert_eq!(
        desired(&settled, &[], "2030-01-01T00:00:00Z"),
        None,
        "no rewrite loop"
    );
}

/// A CRD with a schema under `v1`, a managed-fields entry and an annotation.
fn crd_with_schema(description: &str) -> Value {
    let mut c = crd("widgets.example.com", "widgets", "Widget", &[]);
    c["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
    c["metadata"]["managedFields"] = json!([{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]);
    c["spec"]["versions"][0]["schema"] = json!({"openAPIV3Schema": {
        "type": "object", "description": description,
        "properties": {"spec": {"type": "object", "properties": {
            "z": {"type": "integer"}, "a": {"type": "string", "x-kubernetes-validations":
                [{"rule": "self.size() < 5"}]}}}}}});
    c
}

#[test]
fn schemas_are_held_once_and_round_trip() {
    let obj = crd_with_schema("A widget.");
    let c = Crd::parse(&obj).unwrap();
    // The schema is out of `raw`, as are the field sets and annotations; the rest stays.
    assert_eq!(
        c.raw.pointer("/spec/versions/0/schema"),
        Some(&json!({})),
        "raw keeps no copy of the schema"
    );
    assert!(c.raw.pointer("/metadata/managedFields").is_none());
    assert!(c.raw.pointer("/metadata/annotations").is_none());
    assert_eq!(c.raw.pointer("/metadata/uid"), Some(&json!("u")));
    // The text gives back the schema as written, key order included (OpenAPI, explain).
    let back = c.versions[0].schema.as_ref().unwrap().value().unwrap();
    assert_eq!(
        back,
        obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    );
    let keys: Vec<&String> = back["properties"]["spec"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["z", "a"]);
    assert!(c.versions[1].schema.is_none());
}

#[test]
fn a_reparsed_crd_shares_equal_schemas_only() {
    let old = Crd::parse(&crd_with_schema("A widget.")).unwrap();
    let mut with_status = crd_with_schema("A widget.");
    with_status["status"] = json!({"conditions": [{"type": "Established", "status": "True"}]});
    let mut same = Crd::parse(&with_status).unwrap();
    let (a, b) = (&old.versions[0].schema, &same.versions[0].schema);
    assert!(!Arc::ptr_eq(a.as_ref().unwrap(), b.as_ref().unwrap()));
    same.share_schemas(&old);
    assert!(Arc::ptr_eq(
        old.versions[0].schema.as_ref().unwrap(),
        same.versions[0].schema.as_ref().unwrap()
    ));
    assert!(same.same_spec(&old));

    let mut changed = Crd::parse(&crd_with_schema("Another widget.")).unwrap();
    changed.share_schemas(&old);
    assert!(!Arc::ptr_eq(
        old.versions[0].schema.as_ref().unwrap(),
        changed.versions[0].schema.as_ref().unwrap()
    ));
    assert!(!changed.same_spec(&old), "a schema change is a spec change");
}

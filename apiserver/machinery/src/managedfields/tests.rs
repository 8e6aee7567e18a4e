//! Cases follow upstream structured-merge-diff tests: `fieldpath/serialize_test.go`
//! (FieldsV1 round trips), `merge/conflict_test.go` (two appliers, force),
//! `merge/multiple_appliers_test.go` (removing a field no longer applied), `merge/key_test.go`
//! and `merge/set_test.go` (associative lists and sets), `merge/update_test.go` (updaters steal
//! ownership without conflicts).

use serde_json::{Value, json};

use super::fieldpath::{PathElement, Set};
use super::*;

fn deploy_type() -> NodeType {
    root_type("apps", "v1", "Deployment")
}

fn writer<'a>(m: &'a str) -> Writer<'a> {
    Writer {
        manager: m,
        api_version: "apps/v1",
        subresource: "",
        now: "2026-01-01T00:00:00Z",
    }
}

fn req(m: &str, force: bool) -> ApplyRequest<'_> {
    ApplyRequest {
        writer: writer(m),
        force,
        has_status: true,
        defaulted: None,
    }
}

fn deploy(replicas: i64, containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default", "labels": {"app": "d"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": containers}}}})
}

fn managers(obj: &Value) -> Vec<(String, Operation)> {
    decode(obj)
        .into_iter()
        .map(|e| (e.manager, e.operation))
        .collect()
}

fn fields_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
        .map(|e| &e["fieldsV1"])
        .unwrap_or(&Value::Null)
}

#[test]
fn fields_v1_round_trip() {
    // serialize_test.go: every element kind, members with children marked by ".".
    let text = json!({
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}},
            "f:finalizers": {"v:\"a\"": {}}, "f:list": {"i:0": {}}}
    });
    let set = Set::from_fields_v1(&text).unwrap();
    assert!(set.has(&[
        PathElement::Field("spec".into()),
        PathElement::Field("containers".into()),
        PathElement::key(&[("name".into(), json!("nginx"))]),
    ]));
    assert!(set.has(&[
        PathElement::Field("metadata".into()),
        PathElement::Field("labels".into())
    ]));
    assert!(!set.has(&[PathElement::Field("spec".into())]));
    assert_eq!(set.to_fields_v1(), text);
    assert!(PathElement::from_fields_v1_key("x:1").is_err());
}

#[test]
fn key_elements_sort_fields_and_print_like_upstream() {
    let pe = PathElement::key(&[
        ("protocol".into(), json!("TCP")),
        ("containerPort".into(), json!(80)),
    ]);
    assert_eq!(
        pe.to_fields_v1_key(),
        r#"k:{"containerPort":80,"protocol":"TCP"}"#
    );
    assert_eq!(pe.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
}

#[test]
fn set_algebra() {
    let a = Set::from_fields_v1(&json!({"f:a": {}, "f:b": {"f:c": {}, "f:d": {}}})).unwrap();
    let b = Set::from_fields_v1(&json!({"f:b": {"f:c": {}}, "f:e": {}})).unwrap();
    assert_eq!(
        a.difference(&b).to_fields_v1(),
        json!({"f:a": {}, "f:b": {"f:d": {}}})
    );
    assert_eq!(
        a.intersection(&b).to_fields_v1(),
        json!({"f:b": {"f:c": {}}})
    );
    assert_eq!(a.union(&b).paths().len(), 4);
}

#[test]
fn apply_field_set_like_upstream() {
    // Containers are keyed by name (patch merge key), the selector is an atomic map.
    let obj = apply(
        None,
        deploy(1, json!([{"name": "nginx", "image": "nginx"}])),
        &deploy_type(),
        &req("a", false),
    )
    .unwrap();
    let f = fields_of(&obj, "a");
    assert_eq!(f["f:spec"]["f:selector"], json!({}));
    assert_eq!(f["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"],
        json!({".": {}, "f:image": {}, "f:name": {}})
    );
    assert_eq!(f["f:metadata"], json!({"f:labels": {"f:app": {}}}));
    assert!(f["f:metadata"].get("f:name").is_none());
}

#[test]
fn conflict_then_force_moves_ownership() {
    // conflict_test.go: a second applier changing a field the first owns conflicts; force takes it.
    let t = deploy_type();
    let c = json!([{"name": "nginx", "image": "nginx"}]);
    let obj = apply(None, deploy(1, c.clone()), &t, &req("a", false)).unwrap();
    let err = apply(Some(&obj), deploy(3, c.clone()), &t, &req("b", false)).unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
    );
    let st = err.to_status();
    assert_eq!(st.code, 409);
    let cause = &st.details.as_ref().unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldManagerConflict", ".spec.replicas")
    );
    // Same value: shared ownership, no conflict.
    let shared = apply(Some(&obj), deploy(1, c.clone()), &t, &req("b", false)).unwrap();
    assert_eq!(fields_of(&shared, "a")["f:spec"]["f:replicas"], json!({}));
    assert_eq!(fields_of(&shared, "b")["f:spec"]["f:replicas"], json!({}));
    let forced = apply(Some(&obj), deploy(3, c), &t, &req("b", true)).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(
        fields_of(&forced, "a")["f:spec"]
            .get("f:replicas")
            .is_none()
    );
    assert_eq!(fields_of(&forced, "b")["f:spec"]["f:replicas"], json!({}));
}

#[test]
fn update_managers_are_named_with_version() {
    let t = deploy_type();
    let mut obj = deploy(1, json!([{"name": "nginx", "image": "nginx"}]));
    update(None, &mut obj, &t, &writer("kubectl-create"), true);
    assert_eq!(
        managers(&obj),
        vec![("kubectl-create".to_string(), Operation::Update)]
    );
    let err = apply(
        Some(&obj),
        deploy(2, json!([{"name": "nginx", "image": "nginx"}])),
        &t,
        &req("a", false),
    )
    .unwrap_err();
    assert!(
        err.message()
            .contains("conflict with \"kubectl-create\" using apps/v1: .spec.replicas"),
        "{}",
        err.message()
    );
}

#[test]
fn updaters_take_ownership_without_conflict() {
    // update_test.go: an update never conflicts; the applier loses what the updater changed.
    let t = deploy_type();
    let obj = apply(
        None,
        deploy(1, json!([{"name": "nginx", "image": "nginx"}])),
        &t,
        &req("a", false),
    )
    .unwrap();
    let mut new = obj.clone();
    new["spec"]["replicas"] = json!(5);
    update(Some(&obj), &mut new, &t, &writer("kubectl-edit"), true);
    assert!(fields_of(&new, "a")["f:spec"].get("f:replicas").is_none());
    assert_eq!(
        fields_of(&new, "kubectl-edit"),
        &json!({"f:spec": {"f:replicas": {}}})
    );
    // Nothing changed: no new entry.
    let mut same = new.clone();
    update(Some(&new), &mut same, &t, &writer("other"), true);
    assert_eq!(managers(&same), managers(&new));
}

#[test]
fn removed_from_config_is_pruned_unless_owned_elsewhere() {
    // multiple_appliers_test.go: a field the applier stops applying goes away, a list item
    // another manager also applied stays.
    let t = deploy_type();
    let two = json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]);
    let obj = apply(None, deploy(1, two), &t, &req("m1", false)).unwrap();
    let mut cfg = deploy(1, json!([{"name": "a", "image": "x"}]));
    cfg["metadata"]["labels"] = json!({});
    let after = apply(Some(&obj), cfg, &t, &req("m1", false)).unwrap();
    let names: Vec<&str> = after["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a"]);
    assert!(after["metadata"]["labels"].get("app").is_none());
}

#[test]
fn associative_lists_merge_per_key_between_managers() {
    // key_test.go: two appliers own different items of the same keyed list.
    let t = deploy_type();
    let obj = apply(
        None,
        deploy(1, json!([{"name": "a", "image": "x"}])),
        &t,
        &req("m1", false),
    )
    .unwrap();
    let obj = apply(
        Some(&obj),
        deploy(1, json!([{"name": "b", "image": "y"}])),
        &t,
        &req("m2", false),
    )
    .unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let k = |o: &Value, m: &str| {
        fields_of(o, m)["f:spec"]["f:template"]["f:spec"]["f:containers"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(k(&obj, "m1"), ["k:{\"name\":\"a\"}"]);
    assert_eq!(k(&obj, "m2"), ["k:{\"name\":\"b\"}"]);
    // m2 dropping its item removes only that item.
    let obj = apply(Some(&obj), deploy(1, json!([])), &t, &req("m2", false)).unwrap();
    let cs = obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0]["name"], "a");
}

#[test]
fn ports_applied_without_protocol_match_defaulted_items() {
    // Multi-key list (containerPort, protocol): the live item defaulted to TCP is the same item.
    let t = deploy_type();
    let live = deploy(
        1,
        json!([{"name": "a", "image": "x", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]),
    );
    let cfg = deploy(
        1,
        json!([{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}]),
    );
    let obj = apply(Some(&live), cfg, &t, &req("m", false)).unwrap();
    let ports = &obj["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert_eq!(ports.as_array().unwrap().len(), 1);
    // Keyed by the full key; the defaulted key field is not the applier's.
    let f = &fields_of(&obj, "m")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"a\"}"]
        ["f:ports"];
    assert_eq!(
        f,
        &json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
}

#[test]
fn sets_merge_by_value() {
    // set_test.go: finalizers are a set; two appliers' values are unioned.
    let t = root_type("", "v1", "ConfigMap");
    let cm = |f: Value| json!({"metadata": {"name": "c", "finalizers": f}, "data": {"k": "v"}});
    let obj = apply(None, cm(json!(["a"])), &t, &req("m1", false)).unwrap();
    let obj = apply(Some(&obj), cm(json!(["b"])), &t, &req("m2", false)).unwrap();
    assert_eq!(obj["metadata"]["finalizers"], json!(["a", "b"]));
    assert_eq!(
        fields_of(&obj, "m2")["f:metadata"]["f:finalizers"],
        json!({"v:\"b\"": {}})
    );
}

#[test]
fn manager_from_user_agent_prefix() {
    assert_eq!(
        manager_from_user_agent("kubectl-client-side-apply/v1.35.2 (linux/amd64) kubernetes/abc"),
        "kubectl-client-side-apply"
    );
    assert_eq!(manager_from_user_agent("Helm/4.1.4"), "Helm");
}

#[test]
fn new_list_items_take_defaulted_keys() {
    // A port added by apply to an existing container is keyed with its defaulted protocol, the
    // key the stored object will have after defaulting.
    let t = deploy_type();
    let live = apply(
        None,
        deploy(1, json!([{"name": "a", "image": "x"}])),
        &t,
        &req("m1", false),
    )
    .unwrap();
    let cfg = deploy(
        1,
        json!([{"name": "a", "ports": [{"containerPort": 8080}]}]),
    );
    let mut defaulted = cfg.clone();
    defaulted["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
    let r = ApplyRequest {
        defaulted: Some(&defaulted),
        ..req("m2", false)
    };
    let obj = apply(Some(&live), cfg, &t, &r).unwrap();
    let ports = &fields_of(&obj, "m2")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"a\"}"]
        ["f:ports"];
    assert_eq!(
        ports,
        &json!({"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
}

#[test]
fn clients_reset_ownership_by_sending_managed_fields() {
    // Upstream: managedFields sent on an update replace the recorded ones; the same ones sent
    // back (read-modify-write) change nothing.
    let t = deploy_type();
    let obj = apply(
        None,
        deploy(1, json!([{"name": "a", "image": "x"}])),
        &t,
        &req("m1", false),
    )
    .unwrap();
    let mut same = obj.clone();
    update(Some(&obj), &mut same, &t, &writer("edit"), true);
    assert_eq!(same, obj);
    let mut reset = obj.clone();
    reset["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Update",
        "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
    update(Some(&obj), &mut reset, &t, &writer("edit"), true);
    assert_eq!(managers(&reset), vec![("x".to_string(), Operation::Update)]);
}

#[test]
fn status_writes_own_status_only() {
    // Reset fields: a status write is recorded with subresource status and only status fields.
    let t = deploy_type();
    let obj = deploy(1, json!([{"name": "a", "image": "x"}]));
    let mut new = obj.clone();
    new["status"] = json!({"replicas": 1});
    let w = Writer {
        subresource: "status",
        ..writer("ctrl")
    };
    update(Some(&obj), &mut new, &t, &w, true);
    let e = &new["metadata"]["managedFields"][0];
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
}

/// An object as client-side `kubectl apply` leaves it: the annotation holds the config, the
/// `kubectl-client-side-apply` updater owns the fields.
fn client_side_applied(replicas: i64) -> Value {
    let c = json!([{"name": "app", "image": "nginx:1"}]);
    let config = deploy(replicas, c);
    let mut live = config.clone();
    let annotation = serde_json::to_string(&config).unwrap();
    live["metadata"]["annotations"] =
        json!({ (last_applied::LAST_APPLIED_ANNOTATION): annotation });
    update(
        None,
        &mut live,
        &deploy_type(),
        &writer("kubectl-client-side-apply"),
        true,
    );
    live
}

#[test]
fn kubectl_server_side_apply_takes_over_client_side_apply_fields() {
    let t = deploy_type();
    let live = client_side_applied(1);
    let cfg = deploy(3, json!([{"name": "app", "image": "nginx:2"}]));
    // Another manager name conflicts, as upstream (only `kubectl` upgrades).
    let err = apply(Some(&live), cfg.clone(), &t, &req("other", false)).unwrap_err();
    assert_eq!(err.0.len(), 2, "{err:?}");
    // `kubectl` takes the fields over without --force-conflicts.
    let mut r = req("kubectl", false);
    r.writer.api_version = "apps/v1";
    let out = apply(Some(&live), cfg.clone(), &t, &r).unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    let kubectl = fields_of(&out, "kubectl");
    assert!(kubectl["f:spec"]["f:replicas"].is_object(), "{kubectl}");
    let csa = fields_of(&out, "kubectl-client-side-apply");
    assert!(csa.pointer("/f:spec/f:replicas").is_none(), "{csa}");
    // The annotation now holds the applied config: sorted keys, a final newline.
    let ann = out["metadata"]["annotations"][last_applied::LAST_APPLIED_ANNOTATION]
        .as_str()
        .unwrap();
    assert!(ann.starts_with("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":"));
    assert!(ann.ends_with("}\n"));
    let parsed: Value = serde_json::from_str(ann).unwrap();
    assert_eq!(parsed, cfg);
    // Applying the same config again changes nothing (what `kubectl diff --server-side` sees).
    let again = apply(Some(&out), cfg, &t, &r).unwrap();
    assert_eq!(again, out);
}

#[test]
fn fields_changed_since_the_last_client_side_apply_still_conflict() {
    let t = deploy_type();
    let mut live = client_side_applied(1);
    // Someone scaled the deployment after the client-side apply.
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    update(Some(&live), &mut scaled, &t, &writer("kube-scale"), true);
    live = scaled;
    let cfg = deploy(3, json!([{"name": "app", "image": "nginx:2"}]));
    let err = apply(Some(&live), cfg, &t, &req("kubectl", false)).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err:?}");
    assert_eq!(path_string(&err.0[0].path), ".spec.replicas");
    assert!(err.0[0].manager.contains("kube-scale"), "{err:?}");
}

#[test]
fn no_annotation_means_ordinary_conflicts_and_no_annotation_written() {
    let t = deploy_type();
    let mut live = deploy(1, json!([{"name": "app", "image": "nginx:1"}]));
    update(None, &mut live, &t, &writer("kubectl-create"), true);
    let cfg = deploy(3, json!([{"name": "app", "image": "nginx:1"}]));
    assert!(apply(Some(&live), cfg.clone(), &t, &req("kubectl", false)).is_err());
    let out = apply(Some(&live), cfg, &t, &req("kubectl", true)).unwrap();
    assert!(out.pointer("/metadata/annotations").is_none());
}

/// `compare_owned` walks the objects without building their owned views; it must find exactly
/// what comparing the built views finds, whatever the subresource, the status rule, and
/// `metadata` (absent, system fields only, not an object, or a type that knows nothing).
#[test]
fn comparing_in_place_matches_comparing_the_owned_views() {
    let mut with_status = deploy(2, json!([{"name": "a", "image": "x"}]));
    with_status["status"] = json!({"replicas": 2, "conditions": [{"type": "Available"}]});
    let mut system_meta_only = deploy(3, json!([{"name": "b", "image": "y"}]));
    system_meta_only["metadata"] = json!({"name": "d", "uid": "u", "resourceVersion": "7"});
    let mut meta_not_object = deploy(3, json!([]));
    meta_not_object["metadata"] = json!("nonsense");
    let mut no_meta = deploy(
        1,
        json!([{"name": "a", "image": "z", "ports": [{"containerPort": 80}]}]),
    );
    no_meta.as_object_mut().map(|m| m.remove("metadata"));
    let objects = [
        json!({}),
        json!("not an object"),
        deploy(1, json!([{"name": "a", "image": "x"}])),
        with_status,
        system_meta_only,
        meta_not_object,
        no_meta,
    ];
    let types = [
        deploy_type(),
        root_type("", "v1", "ConfigMap"),
        typed::NodeType::unknown(),
    ];
    for t in &types {
        for old in &objects {
            for new in &objects {
                for (sub, has_status) in [("", true), ("", false), ("status", true)] {
                    let built = typed::compare(
                        &owned_view(old, sub, has_status),
                        &owned_view(new, sub, has_status),
                        t,
                    );
                    assert_eq!(
                        compare_owned(old, new, t, sub, has_status),
                        built,
                        "{old} -> {new} ({sub:?}, status {has_status}, type {:?})",
                        t.def
                    );
                }
            }
        }
    }
}

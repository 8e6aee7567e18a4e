//! Strategic merge patch cases taken from upstream's
//! `staging/src/k8s.io/apimachinery/pkg/util/strategicpatch/patch_test.go`
//! (`customStrategicMergePatchTestCaseData`, `customStrategicMergePatchRawTestCases`,
//! `createStrategicMergePatchTestCaseData` and `strategicMergePatchRawTestCases`): each case
//! applies the upstream patch (`twoWay` to `original`, or `threeWay` to `current`) and expects
//! upstream's `modified` / `result`. The engine follows the current upstream code (v0.35/v0.36:
//! `removeDirectives`, `discardNullValuesFromPatch`, `deleteMatchingEntries`), so cases whose
//! expectation changed between upstream versions are left out. The schema is upstream's `MergeItem` test struct, expressed
//! as a facts table with the same struct tags.

use serde_json::{Value, json};

use super::{PatchError, strategic_merge_patch, strategic_merge_patch_with};
use crate::openapi::facts::Facts;

/// Upstream's `MergeItem` / `RetainKeysMergeItem` struct tags as facts.
fn merge_item_facts() -> Facts {
    let merging_list = json!({"items": "MergeItem", "x-kubernetes-patch-strategy": "merge",
        "x-kubernetes-patch-merge-key": "name"});
    let doc = json!({"definitions": {
        "MergeItem": {"fields": {
            "mergingList": merging_list,
            "nonMergingList": {"items": "MergeItem"},
            "mergingIntList": {"x-kubernetes-patch-strategy": "merge"},
            "mergeItemPtr": {"ref": "MergeItem", "x-kubernetes-patch-strategy": "merge",
                "x-kubernetes-patch-merge-key": "name"},
            "replacingItem": {"x-kubernetes-patch-strategy": "replace"},
            "retainKeysMap": {"ref": "RetainKeysMergeItem",
                "x-kubernetes-patch-strategy": "retainKeys"},
            "retainKeysMergingList": {"items": "MergeItem",
                "x-kubernetes-patch-strategy": "merge,retainKeys",
                "x-kubernetes-patch-merge-key": "name"}
        }},
        "RetainKeysMergeItem": {"fields": {
            "mergingIntList": {"x-kubernetes-patch-strategy": "merge"},
            "mergingList": merging_list,
            "nonMergingList": {"items": "MergeItem"}
        }}
    }});
    Facts::parse(doc.to_string()).expect("test facts parse")
}

/// (description, original, patch, expected result) in YAML, as upstream writes them.
const CASES: &[(&str, &str, &str, &str)] = &[
    // customStrategicMergePatchTestCaseData
    (
        "unique scalars when merging lists",
        "mergingIntList: [1, 2]",
        "mergingIntList: [2, 3]",
        "mergingIntList: [1, 2, 3]",
    ),
    (
        "delete map from nested map",
        "simpleMap: {key1: 1, key2: 1}",
        "simpleMap: {$patch: delete}",
        "simpleMap: {}",
    ),
    (
        "delete all items from merging list",
        "mergingList: [{name: 1}, {name: 2}]",
        "mergingList: [{$patch: replace}]",
        "mergingList: []",
    ),
    (
        "merge empty merging lists",
        "mergingList: []",
        "mergingList: []",
        "mergingList: []",
    ),
    (
        "delete all keys from map",
        "{name: 1, value: 1}",
        "{$patch: replace}",
        "{}",
    ),
    (
        "add key and delete all keys from map",
        "{name: 1, value: 1}",
        "{other: a, $patch: replace}",
        "{other: a}",
    ),
    (
        "delete all duplicate entries in a merging list",
        "mergingList: [{name: 1}, {name: 1}, {name: 2, value: a}, {name: 3}, {name: 3}]",
        "mergingList: [{name: 1, $patch: delete}, {name: 1, $patch: delete}, \
          {name: 3, $patch: delete}, {name: 3, $patch: delete}]",
        "mergingList: [{name: 2, value: a}]",
    ),
    (
        "retainKeys map can add a field when no retainKeys directive present",
        "retainKeysMap: {name: foo}",
        "retainKeysMap: {value: bar}",
        "retainKeysMap: {name: foo, value: bar}",
    ),
    (
        "retainKeys map can delete a field when no retainKeys directive present",
        "retainKeysMap: {name: foo, value: a}",
        "retainKeysMap: {value: null}",
        "retainKeysMap: {name: foo}",
    ),
    (
        "retainKeys map merge an empty map",
        "retainKeysMap: {name: foo, value: a}",
        "retainKeysMap: {}",
        "retainKeysMap: {name: foo, value: a}",
    ),
    (
        "retainKeys list can change a field when no retainKeys directive present",
        "retainKeysMergingList: [{name: bar}, {name: foo, value: a}]",
        "retainKeysMergingList: [{name: foo, value: b}]",
        "retainKeysMergingList: [{name: bar}, {name: foo, value: b}]",
    ),
    (
        "preserve the order from the patch in a merging list",
        "mergingList: [{name: 1}, {name: 2, value: b}, {name: 3}]",
        "mergingList: [{name: 3, value: c}, {name: 1, value: a}, {name: 2, other: x}]",
        "mergingList: [{name: 3, value: c}, {name: 1, value: a}, {name: 2, value: b, other: x}]",
    ),
    (
        "preserve the order from the patch in a merging list 2",
        "mergingList: [{name: 1}, {name: 2, value: b}, {name: 3}]",
        "mergingList: [{name: 3, value: c}, {name: 1, value: a}]",
        "mergingList: [{name: 2, value: b}, {name: 3, value: c}, {name: 1, value: a}]",
    ),
    (
        "preserve the order from the patch in a merging int list",
        "mergingIntList: [1, 2, 3]",
        "mergingIntList: [3, 1, 2]",
        "mergingIntList: [3, 1, 2]",
    ),
    (
        "preserve the order from the patch in a merging int list (subset)",
        "mergingIntList: [1, 2, 3]",
        "mergingIntList: [3, 1]",
        "mergingIntList: [2, 3, 1]",
    ),
    // customStrategicMergePatchRawTestCases
    (
        "$setElementOrder contains item that is not present in the list to be merged",
        "mergingList: [{name: 1}, {name: 3}]",
        "{$setElementOrder/mergingList: [{name: 3}, {name: 2}, {name: 1}], \
          mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]}",
        "mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]",
    ),
    (
        "$setElementOrder contains item that is not present in the int list to be merged",
        "mergingIntList: [1, 3]",
        "$setElementOrder/mergingIntList: [3, 2, 1]",
        "mergingIntList: [3, 1]",
    ),
    // createStrategicMergePatchTestCaseData (threeWay applied to current → result)
    (
        "add field and delete field from map with conflict",
        "{name: a, other: a}",
        "{name: null, value: 1}",
        "{value: 1, other: a}",
    ),
    (
        "delete field from nested map with conflict",
        "simpleMap: {key1: a, key2: 1, other: a}",
        "simpleMap: {key1: 1, key2: null}",
        "simpleMap: {key1: 1, other: a}",
    ),
    (
        "replace list of scalars with conflict",
        "nonMergingIntList: [1, 4]",
        "nonMergingIntList: [2, 3]",
        "nonMergingIntList: [2, 3]",
    ),
    (
        "delete all maps from merging list with conflict",
        "mergingList: [{name: 1, other: a}, {name: 2, other: b}]",
        "mergingList: [{name: 1, $patch: delete}, {name: 2, $patch: delete}]",
        "mergingList: []",
    ),
    (
        "defined null values should propagate overwrite current fields (with conflict)",
        "{name: a, other: a}",
        "{name: 1, value: 1, other: null}",
        "{name: 1, value: 1}",
    ),
    // strategicMergePatchRawTestCases
    (
        "delete items in lists of scalars",
        "mergingIntList: [1, 2, 3, 4]",
        "{$setElementOrder/mergingIntList: [1, 2], $deleteFromPrimitiveList/mergingIntList: [3]}",
        "mergingIntList: [1, 2, 4]",
    ),
    (
        "delete all duplicate items in lists of scalars",
        "mergingIntList: [1, 2, 3, 3, 4]",
        "{$setElementOrder/mergingIntList: [1, 2], $deleteFromPrimitiveList/mergingIntList: [3]}",
        "mergingIntList: [1, 2, 4]",
    ),
    (
        "merge lists of maps",
        "mergingList: [{name: 1, other: a}, {name: 2, value: 2, other: b}]",
        "{$setElementOrder/mergingList: [{name: 4}, {name: 1}, {name: 2}, {name: 3}], \
          mergingList: [{name: 4, value: 4}, {name: 3, value: 3}]}",
        "mergingList: [{name: 4, value: 4}, {name: 1, other: a}, {name: 2, value: 2, other: b}, \
          {name: 3, value: 3}]",
    ),
    (
        "merge lists of maps with conflict",
        "mergingList: [{name: 1, other: a}, {name: 2, value: 3, other: b}]",
        "{$setElementOrder/mergingList: [{name: 1}, {name: 2}, {name: 3}], \
          mergingList: [{name: 2, value: 2}, {name: 3, value: 3}]}",
        "mergingList: [{name: 1, other: a}, {name: 2, value: 2, other: b}, {name: 3, value: 3}]",
    ),
    (
        "add field to map in merging list",
        "mergingList: [{name: 1, other: a}, {name: 2, value: 2, other: b}]",
        "{$setElementOrder/mergingList: [{name: 1}, {name: 2}], \
          mergingList: [{name: 1, value: 1}]}",
        "mergingList: [{name: 1, value: 1, other: a}, {name: 2, value: 2, other: b}]",
    ),
    // $retainKeys (applyRetainKeysDirective): keys missing from the list are cleared.
    (
        "retainKeys directive clears the fields it does not list",
        "retainKeysMap: {name: foo, value: a, other: b}",
        "retainKeysMap: {$retainKeys: [name, value], value: c}",
        "retainKeysMap: {name: foo, value: c}",
    ),
    // replace strategy (`patchStrategy:"replace"`): the map is not merged.
    (
        "replace strategy replaces a map",
        "replacingItem: {a: 1, b: 2}",
        "replacingItem: {b: 3}",
        "replacingItem: {b: 3}",
    ),
];

/// (description, original, patch, expected error substring, kind) from upstream.
const ERROR_CASES: &[(&str, &str, &str, &str)] = &[
    (
        "should check if order in $setElementOrder and patch list match",
        "mergingList: [{name: 1}, {name: 3}, {name: 2}]",
        "{$setElementOrder/mergingList: [{name: 1}, {name: 2}, {name: 3}], \
          mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]}",
        "doesn't match",
    ),
    (
        "should check if order in $setElementOrder and patch int list match",
        "mergingIntList: [1, 3, 2]",
        "{$setElementOrder/mergingIntList: [1, 2, 3], mergingIntList: [3, 1]}",
        "doesn't match",
    ),
    (
        "missing merge key should error out",
        "mergingList: [{name: 1, value: a}]",
        "mergingList: [{value: b}]",
        "does not contain declared merge key",
    ),
    (
        "$patch: merge in a list is not supported",
        "mergingList: [{name: 1}]",
        "mergingList: [{name: 1, $patch: merge}]",
        "merging lists cannot yet be specified in the patch",
    ),
    (
        "unknown $patch value in a map",
        "simpleMap: {a: b}",
        "simpleMap: {$patch: frobnicate}",
        "unknown patch type: frobnicate in map",
    ),
];

fn yaml(s: &str) -> Value {
    serde_yaml::from_str(s).unwrap_or_else(|e| panic!("bad yaml {s:?}: {e}"))
}

#[test]
fn upstream_cases() {
    let facts = merge_item_facts();
    for (desc, original, patch, expected) in CASES {
        let got = strategic_merge_patch_with(&facts, &yaml(original), &yaml(patch), "MergeItem")
            .unwrap_or_else(|e| panic!("{desc}: {e}"));
        assert_eq!(got, yaml(expected), "{desc}");
    }
}

#[test]
fn upstream_error_cases() {
    let facts = merge_item_facts();
    for (desc, original, patch, want) in ERROR_CASES {
        let err = strategic_merge_patch_with(&facts, &yaml(original), &yaml(patch), "MergeItem")
            .expect_err(desc);
        assert!(err.to_string().contains(want), "{desc}: {err}");
        assert!(matches!(err, PatchError::Strategic(_)), "{desc}: {err:?}");
    }
}

#[test]
fn malformed_directives_are_bad_requests() {
    let facts = merge_item_facts();
    // mergepatch.ErrBadPatchFormatForRetainKeys: a patched key missing from $retainKeys.
    let err = strategic_merge_patch_with(
        &facts,
        &yaml("retainKeysMap: {name: foo}"),
        &yaml("retainKeysMap: {$retainKeys: [name], value: x}"),
        "MergeItem",
    )
    .expect_err("retainKeys");
    assert_eq!(
        err,
        PatchError::StrategicBadRequest("invalid patch format of retainKeys".into())
    );
    let err = strategic_merge_patch_with(
        &facts,
        &yaml("mergingIntList: [1]"),
        &yaml("$deleteFromPrimitiveList: [1]"),
        "MergeItem",
    )
    .expect_err("primitive list");
    assert_eq!(
        err,
        PatchError::StrategicBadRequest("invalid patch format of primitive list".into())
    );
    let err = strategic_merge_patch_with(
        &facts,
        &yaml("mergingList: []"),
        &yaml("mergingList: [[1]]"),
        "MergeItem",
    )
    .expect_err("list of lists");
    assert_eq!(
        err,
        PatchError::StrategicUnprocessable("lists of lists are not supported".into())
    );
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"},
            "finalizers": ["a", "b"]},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx",
                 "env": [{"name": "A", "value": "1"}],
                 "ports": [{"containerPort": 80}, {"containerPort": 443}]},
                {"name": "sidecar", "image": "busybox"}
            ]}}
        }
    })
}

/// The schema facts of the real Deployment definition drive the merge.
#[test]
fn deployment_uses_schema_facts() {
    let d = "io.k8s.api.apps.v1.Deployment";
    // containers merge by name, env by name: the other container and env var stay.
    let got = strategic_merge_patch(
        &deployment(),
        &json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "B", "value": "2"}]}]}}}}),
        d,
    )
    .expect("patch");
    let app = &got["spec"]["template"]["spec"]["containers"][0];
    // Without `$setElementOrder`, upstream's mergeSortedSlice puts items the server does not
    // know before the server-only ones.
    assert_eq!(
        app["env"],
        json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}])
    );
    assert_eq!(app["image"], "nginx");
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"][1]["name"],
        "sidecar"
    );

    // ports merge by containerPort; $patch: delete removes one.
    let got = strategic_merge_patch(
        &deployment(),
        &json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "ports": [{"containerPort": 443, "$patch": "delete"}]}]}}}}),
        d,
    )
    .expect("patch");
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80}])
    );

    // finalizers: a primitive list with strategy merge is a union; the deletion list removes.
    let got = strategic_merge_patch(
        &deployment(),
        &json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}}),
        d,
    )
    .expect("patch");
    assert_eq!(got["metadata"]["finalizers"], json!(["c", "b"]));

    // labels have no facts: merged like a JSON merge patch.
    let got = strategic_merge_patch(
        &deployment(),
        &json!({"metadata": {"labels": {"tier": null, "x": "y"}}}),
        d,
    )
    .expect("patch");
    assert_eq!(got["metadata"]["labels"], json!({"app": "web", "x": "y"}));

    // spec.strategy has strategy retainKeys: kubectl sends $retainKeys when switching type.
    let got = strategic_merge_patch(
        &deployment(),
        &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        d,
    )
    .expect("patch");
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));

    // $setElementOrder reorders containers.
    let got = strategic_merge_patch(
        &deployment(),
        &json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}}}}),
        d,
    )
    .expect("patch");
    let names: Vec<&str> = got["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["sidecar", "app"]);
    // No directive survives in the result.
    assert!(!got.to_string().contains('$'), "{got}");
}

#[test]
fn non_object_patch_is_bad_request() {
    let err = strategic_merge_patch(&deployment(), &json!([1]), "io.k8s.api.apps.v1.Deployment")
        .expect_err("array patch");
    assert!(matches!(err, PatchError::StrategicBadRequest(_)), "{err:?}");
}

/// Every stored built-in resource has a schema definition for its kind, so a strategic merge
/// patch of it is served (only kinds without one, i.e. custom resources, get 415).
#[test]
fn every_builtin_kind_has_a_strategic_definition() {
    let table = crate::openapi::facts();
    let missing: Vec<String> = crate::resources::builtin_resources()
        .iter()
        .filter(|r| !r.virtual_only && r.storage.is_some())
        .filter(|r| {
            table
                .definition_for_gvk(&r.group, &r.version, &r.kind)
                .is_none()
        })
        .map(|r| format!("{}/{} {}", r.group, r.version, r.kind))
        .collect();
    assert!(missing.is_empty(), "no definition for {missing:?}");
}

//! `ValidateObjectMeta` on the JSON form of `metadata`.

use serde_json::{Map, Value};

use super::field::{FieldError, Path};
use super::names::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value, validate_path_segment_name,
};

/// Upstream `TotalAnnotationSizeLimitB`: 256 KiB of keys plus values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * 1024;

/// Which rule a resource's `metadata.name` follows (upstream `ValidateNameFunc`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// `NameIsDNSSubdomain`: most resources.
    Dns1123Subdomain,
    /// `NameIsDNSLabel`: namespaces, statefulsets, ...
    Dns1123Label,
    /// `NameIsDNS1035Label`: services.
    Dns1035Label,
    /// `path.ValidatePathSegmentName`: RBAC objects, CRD instances of non-DNS kinds, ...
    PathSegment,
}

impl NameRule {
    /// Runs the rule; `prefix` is true for `generateName`.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && !matches!(self, NameRule::PathSegment) {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => validate_path_segment_name(name, prefix),
        }
    }
}

/// Upstream `maskTrailingDash`: a `generateName` may end in `-`; its last two characters are
/// replaced by `a` before checking (upstream's exact behaviour).
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let cut = name.len() - 2;
        if name.is_char_boundary(cut) {
            return format!("{}a", &name[..cut]);
        }
    }
    name.to_string()
}

fn str_field<'a>(meta: &'a Map<String, Value>, key: &str) -> &'a str {
    meta.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Upstream `ValidateObjectMeta`: `path` is normally `"metadata"`.
///
/// Checks, in upstream's order: generateName and name (`name or generateName is required`),
/// namespace present iff `namespaced` (a DNS label), generation non-negative, labels,
/// annotations (keys and total size), ownerReferences and finalizers.
pub fn validate_object_meta(
    meta: &Value,
    namespaced: bool,
    name_rule: NameRule,
    path: &str,
) -> Vec<FieldError> {
    let p = Path::new(path);
    let empty = Map::new();
    let m = meta.as_object().unwrap_or(&empty);
    let mut errs = Vec::new();

    let generate_name = str_field(m, "generateName");
    if !generate_name.is_empty() {
        for msg in name_rule.check(generate_name, true) {
            errs.push(FieldError::invalid(
                p.child("generateName"),
                generate_name,
                &msg,
            ));
        }
    }
    let name = str_field(m, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            p.child("name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_rule.check(name, false) {
            errs.push(FieldError::invalid(p.child("name"), name, &msg));
        }
    }
    let namespace = str_field(m, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(p.child("namespace"), ""));
        } else {
            for msg in NameRule::Dns1123Label.check(namespace, false) {
                errs.push(FieldError::invalid(p.child("namespace"), namespace, &msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            p.child("namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(g) = m.get("generation").and_then(Value::as_i64)
        && g < 0
    {
        errs.push(FieldError::invalid(
            p.child("generation"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    errs.extend(validate_labels(m.get("labels"), &p.child("labels")));
    errs.extend(validate_annotations(
        m.get("annotations"),
        &p.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        m.get("ownerReferences"),
        &p.child("ownerReferences"),
    ));
    errs.extend(validate_finalizers(
        m.get("finalizers"),
        &p.child("finalizers"),
    ));
    errs
}

fn string_map(v: Option<&Value>) -> Vec<(&str, &str)> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}

/// Upstream `ValidateLabels`: errors carry the `labels` path itself (not keyed), like upstream.
pub fn validate_labels(labels: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in string_map(labels) {
        for msg in is_qualified_name(k) {
            errs.push(FieldError::invalid(path.clone(), k, &msg));
        }
        for msg in is_valid_label_value(v) {
            errs.push(FieldError::invalid(path.clone(), v, &msg));
        }
    }
    errs
}

/// Upstream `ValidateAnnotations`: keys are qualified names (case-insensitive), total size
/// of keys plus values at most [`TOTAL_ANNOTATION_SIZE_LIMIT_B`].
pub fn validate_annotations(annotations: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in string_map(annotations) {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path.clone(), k, &msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        errs.push(FieldError::too_long(
            path.clone(),
            TOTAL_ANNOTATION_SIZE_LIMIT_B,
        ));
    }
    errs
}

/// Splits an `apiVersion` like `schema.ParseGroupVersion`: `(group, version)`, or `None` when
/// it has more than one `/`.
fn parse_group_version(api_version: &str) -> Option<(&str, &str)> {
    if api_version.is_empty() || api_version == "/" {
        return Some(("", ""));
    }
    match api_version.split_once('/') {
        None => Some(("", api_version)),
        Some((g, v)) if !v.contains('/') => Some((g, v)),
        Some(_) => None,
    }
}

/// Upstream `ValidateOwnerReferences`: per-reference checks (on the un-indexed path, like
/// upstream), `Event` may not be an owner, at most one controller reference.
pub fn validate_owner_references(refs: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(list) = refs.and_then(Value::as_array) else {
        return errs;
    };
    let mut first_controller = String::new();
    for r in list {
        let get = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind, name, uid) =
            (get("apiVersion"), get("kind"), get("name"), get("uid"));
        let (group, version) = parse_group_version(api_version).unwrap_or(("", ""));
        if version.is_empty() {
            errs.push(FieldError::invalid(
                path.child("apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            errs.push(FieldError::invalid(
                path.child("kind"),
                kind,
                "kind must not be empty",
            ));
        }
        if name.is_empty() {
            errs.push(FieldError::invalid(
                path.child("name"),
                name,
                "name must not be empty",
            ));
        }
        if uid.is_empty() {
            errs.push(FieldError::invalid(
                path.child("uid"),
                uid,
                "uid must not be empty",
            ));
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.push(FieldError::invalid(
                path.clone(),
                r.clone(),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{name}");
            if first_controller.is_empty() {
                first_controller = current;
            } else {
                errs.push(FieldError::invalid(
                    path.clone(),
                    Value::Array(list.clone()),
                    &format!("Only one reference can have Controller set to true. Found \"true\" in references for {first_controller} and {current}"),
                ));
            }
        }
    }
    errs
}

/// Upstream `ValidateFinalizers`: qualified names; `orphan` and `foregroundDeletion` exclusive.
pub fn validate_finalizers(finalizers: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(list) = finalizers.and_then(Value::as_array) else {
        return errs;
    };
    let names: Vec<&str> = list.iter().map(|v| v.as_str().unwrap_or("")).collect();
    for f in &names {
        for msg in is_qualified_name(f) {
            errs.push(FieldError::invalid(path.clone(), *f, &msg));
        }
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            path.clone(),
            Value::Array(list.clone()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn name_required() {
        let e = validate_object_meta(&json!({}), false, NameRule::Dns1123Subdomain, "metadata");
        assert_eq!(
            msgs(&e),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
    }

    #[test]
    fn name_rule_and_namespace() {
        let e = validate_object_meta(
            &json!({"name": "Foo"}),
            true,
            NameRule::Dns1123Subdomain,
            "metadata",
        );
        assert_eq!(e.len(), 2);
        assert!(e[0].to_string().starts_with(
            "metadata.name: Invalid value: \"Foo\": a lowercase RFC 1123 subdomain must consist of"
        ));
        assert_eq!(e[1].to_string(), "metadata.namespace: Required value");

        let e = validate_object_meta(
            &json!({"name": "a", "namespace": "x"}),
            false,
            NameRule::Dns1123Subdomain,
            "metadata",
        );
        assert_eq!(
            msgs(&e),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );

        let e = validate_object_meta(
            &json!({"name": "a", "namespace": "x.y"}),
            true,
            NameRule::Dns1123Subdomain,
            "metadata",
        );
        assert_eq!(
            msgs(&e),
            vec!["metadata.namespace: Invalid value: \"x.y\": must not contain dots"]
        );

        assert!(
            validate_object_meta(
                &json!({"name": "a.b", "namespace": "ns"}),
                true,
                NameRule::Dns1123Subdomain,
                "metadata"
            )
            .is_empty()
        );
        let e = validate_object_meta(
            &json!({"name": "a.b"}),
            false,
            NameRule::Dns1123Label,
            "metadata",
        );
        assert_eq!(
            msgs(&e),
            vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]
        );
        assert!(
            validate_object_meta(
                &json!({"name": "system:admin"}),
                false,
                NameRule::PathSegment,
                "metadata"
            )
            .is_empty()
        );
    }

    #[test]
    fn generate_name_masking() {
        // "foo-" is masked to "foa" and passes; the name is still required.
        let e = validate_object_meta(
            &json!({"generateName": "foo-"}),
            false,
            NameRule::Dns1123Subdomain,
            "metadata",
        );
        assert_eq!(
            msgs(&e),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        let e = validate_object_meta(
            &json!({"generateName": "Foo-", "name": "x"}),
            false,
            NameRule::Dns1123Subdomain,
            "metadata",
        );
        assert_eq!(e.len(), 1);
        assert!(
            e[0].to_string()
                .starts_with("metadata.generateName: Invalid value: \"Foo-\"")
        );
    }

    #[test]
    fn labels_annotations_finalizers() {
        let meta = json!({
            "name": "a",
            "labels": {"app": "-bad", "bad key!": "ok"},
            "annotations": {"Example.com/Mixed": "ok", "/x": "y"},
            "finalizers": ["kubernetes.io/pvc-protection", "orphan", "foregroundDeletion", "a/b/c"],
        });
        let e = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain, "metadata");
        let m = msgs(&e);
        assert!(
            m[0].starts_with("metadata.labels: Invalid value: \"-bad\": a valid label must be"),
            "{m:?}"
        );
        assert!(
            m[1].starts_with(
                "metadata.labels: Invalid value: \"bad key!\": name part must consist"
            ),
            "{m:?}"
        );
        assert_eq!(
            m[2],
            "metadata.annotations: Invalid value: \"/x\": prefix part must be non-empty"
        );
        assert!(m[3].starts_with(
            "metadata.finalizers: Invalid value: \"a/b/c\": a valid label key must consist"
        ));
        assert_eq!(
            m[4],
            "metadata.finalizers: Invalid value: []string{\"kubernetes.io/pvc-protection\", \"orphan\", \"foregroundDeletion\", \"a/b/c\"}: finalizer orphan and foregroundDeletion cannot be both set"
        );
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn annotation_size() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B);
        let e = validate_object_meta(
            &json!({"name": "a", "annotations": {"k": big}}),
            false,
            NameRule::Dns1123Subdomain,
            "metadata",
        );
        assert_eq!(
            msgs(&e),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
        let ok = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B - 1);
        assert!(
            validate_object_meta(
                &json!({"name": "a", "annotations": {"k": ok}}),
                false,
                NameRule::Dns1123Subdomain,
                "metadata"
            )
            .is_empty()
        );
    }

    #[test]
    fn owner_references() {
        let meta = json!({"name": "a", "ownerReferences": [
            {"apiVersion": "", "kind": "", "name": "", "uid": ""},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs1", "uid": "u1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs2", "uid": "u2", "controller": true},
            {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u3"},
        ]});
        let e = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain, "metadata");
        let m = msgs(&e);
        assert_eq!(
            m[0],
            "metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty"
        );
        assert_eq!(
            m[1],
            "metadata.ownerReferences.kind: Invalid value: \"\": kind must not be empty"
        );
        assert_eq!(
            m[2],
            "metadata.ownerReferences.name: Invalid value: \"\": name must not be empty"
        );
        assert_eq!(
            m[3],
            "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty"
        );
        assert!(m[4].ends_with("Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/rs1 and ReplicaSet/rs2"));
        assert!(m[5].ends_with("/v1, Kind=Event is disallowed from being an owner"));
        assert_eq!(e[5].field, "metadata.ownerReferences");
        assert_eq!(m.len(), 6);
    }

    #[test]
    fn negative_generation() {
        let e = validate_object_meta(
            &json!({"name": "a", "generation": -1}),
            false,
            NameRule::Dns1123Subdomain,
            "metadata",
        );
        assert_eq!(
            msgs(&e),
            vec!["metadata.generation: Invalid value: -1: must be greater than or equal to 0"]
        );
    }
}

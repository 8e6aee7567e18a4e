//! OpenAPI definitions of a custom resource version (upstream `apiextensions-apiserver/pkg/
//! controller/openapi/builder`): the version's `openAPIV3Schema` with the standard
//! `apiVersion`, `kind` and `metadata` properties and its group-version-kind, plus the list
//! definition. v2-shaped (`#/definitions/` refs), for [`crate::openapi::Spec`].

use serde_json::{Map, Value, json};

use crate::openapi::schema::{V2_PREFIX, list_definition};
use crate::resources::ResourceInfo;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DOC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// `(item name, item definition)` and `(list name, list definition)` of a version whose
/// schema is `schema` (the CRD's `openAPIV3Schema`, or `None`: any object).
pub fn definitions(info: &ResourceInfo, schema: Option<&Value>) -> [(String, Value); 2] {
    let mut def: Map<String, Value> = schema
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    def.entry("type").or_insert_with(|| json!("object"));
    let props = def.entry("properties").or_insert_with(|| json!({}));
    if let Some(p) = props.as_object_mut() {
        p.insert(
            "apiVersion".into(),
            json!({"description": API_VERSION_DOC, "type": "string"}),
        );
        p.insert(
            "kind".into(),
            json!({"description": KIND_DOC, "type": "string"}),
        );
        p.insert(
            "metadata".into(),
            json!({"$ref": format!("{V2_PREFIX}{OBJECT_META}"), "description": METADATA_DOC}),
        );
    }
    if schema.is_none() {
        def.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
    def.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([{"group": info.group, "kind": info.kind, "version": info.version}]),
    );
    let item = info.schema_name.to_string();
    let list = list_definition(info, &item);
    [(item, Value::Object(def)), list]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customresource::Crd;

    #[test]
    fn definitions_carry_the_schema_and_gvk() {
        let crd = Crd::parse(&json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                    "openAPIV3Schema": {"type": "object", "description": "A widget.",
                        "properties": {"spec": {"type": "object"}}}}}]}
        }))
        .unwrap();
        let (info, v) = crd.resource_infos().into_iter().next().unwrap();
        let schema = v.schema.as_ref().and_then(|s| s.value());
        let [(name, def), (list_name, list)] = definitions(&info, schema.as_ref());
        assert_eq!(name, "com.example.v1.Widget");
        assert_eq!(list_name, "com.example.v1.WidgetList");
        assert_eq!(def["description"], "A widget.");
        assert_eq!(
            def["properties"]["metadata"]["$ref"],
            format!("{V2_PREFIX}{OBJECT_META}")
        );
        assert_eq!(def["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            format!("{V2_PREFIX}{name}")
        );
    }
}

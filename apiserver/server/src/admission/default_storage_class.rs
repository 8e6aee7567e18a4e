//! DefaultStorageClass (upstream `plugin/pkg/admission/storage/storageclass/setdefault`): a new
//! PersistentVolumeClaim without `storageClassName` gets the default StorageClass (annotation
//! `storageclass.kubernetes.io/is-default-class: "true"`; the newest when several are).

use serde_json::{Value, json};

use super::api::{ApiHandle, STORAGE_CLASSES};
use super::pod::s;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;

/// The DefaultStorageClass plugin.
pub struct DefaultStorageClass {
    pub api: ApiHandle,
}

/// The default among classes: the annotation set, newest creation first, then name.
pub fn pick_default<'a>(classes: &'a [Value], annotations: &[&str]) -> Option<&'a Value> {
    classes
        .iter()
        .filter(|c| {
            annotations.iter().any(|k| {
                c.pointer("/metadata/annotations")
                    .and_then(|a| a.get(*k))
                    .and_then(Value::as_str)
                    == Some("true")
            })
        })
        .max_by(|x, y| {
            let t = |v: &Value| s(v, "/metadata/creationTimestamp").to_string();
            t(x).cmp(&t(y))
                .then_with(|| s(y, "/metadata/name").cmp(s(x, "/metadata/name")))
        })
}

#[async_trait::async_trait]
impl AdmissionPlugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        if a.operation != Operation::Create
            || !a.subresource.is_empty()
            || !a.is("", "persistentvolumeclaims")
            || obj
                .pointer("/spec/storageClassName")
                .is_some_and(|v| !v.is_null())
        {
            return Ok(());
        }
        let classes = self.api.list(STORAGE_CLASSES, "").await?;
        let Some(def) = pick_default(
            &classes,
            &[
                "storageclass.kubernetes.io/is-default-class",
                "storageclass.beta.kubernetes.io/is-default-class",
            ],
        ) else {
            return Ok(());
        };
        let name = s(def, "/metadata/name").to_string();
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("storageClassName".into(), json!(name));
        }
        Ok(())
    }
}

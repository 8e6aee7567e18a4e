//! DefaultIngressClass (upstream `plugin/pkg/admission/network/defaultingressclass`): a new
//! Ingress without `ingressClassName` (and without the legacy `kubernetes.io/ingress.class`
//! annotation) gets the default IngressClass (annotation
//! `ingressclass.kubernetes.io/is-default-class: "true"`; the newest when several are).

use serde_json::{Value, json};

use super::api::{ApiHandle, INGRESS_CLASSES};
use super::default_storage_class::pick_default;
use super::pod::s;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;

/// The DefaultIngressClass plugin.
pub struct DefaultIngressClass {
    pub api: ApiHandle,
}

#[async_trait::async_trait]
impl AdmissionPlugin for DefaultIngressClass {
    fn name(&self) -> &'static str {
        "DefaultIngressClass"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        if a.operation != Operation::Create
            || !a.subresource.is_empty()
            || !a.is("networking.k8s.io", "ingresses")
            || obj
                .pointer("/spec/ingressClassName")
                .is_some_and(|v| !v.is_null())
            || obj
                .pointer("/metadata/annotations/kubernetes.io~1ingress.class")
                .is_some()
        {
            return Ok(());
        }
        let classes = self.api.list(INGRESS_CLASSES, "").await?;
        let Some(def) = pick_default(&classes, &["ingressclass.kubernetes.io/is-default-class"])
        else {
            return Ok(());
        };
        let name = s(def, "/metadata/name").to_string();
        if let Some(m) = obj.as_object_mut() {
            let spec = m.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.insert("ingressClassName".into(), json!(name));
            }
        }
        Ok(())
    }
}

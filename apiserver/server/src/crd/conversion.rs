//! `conversion: Webhook` of custom resources (upstream
//! `apiextensions-apiserver/pkg/apiserver/conversion/webhook_converter.go`): objects not yet in
//! the desired version are sent in one `ConversionReview` (v1, or v1beta1 when that is what the
//! CRD's `conversionReviewVersions` lists first) to the CRD's `clientConfig` (URL or service,
//! `caBundle`) through the one [`WebhookClient`]; the answer is checked as upstream does (uid,
//! count, apiVersion, kind, name/namespace/uid unchanged) and only the webhook's labels and
//! annotations are kept from its metadata. Every failure is upstream's
//! `conversion webhook for <gvk> failed: ...` (a 500).

use std::sync::Arc;
use std::time::Duration;

use ferrokube_machinery::customresource::Crd;
use ferrokube_machinery::validation::{
    Path, aggregate_message, validate_annotations, validate_labels,
};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::webhook_client::{ClientConfig, WebhookClient};

/// Upstream's webhook client timeout for conversion calls.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The ConversionReview versions the server speaks.
const SUPPORTED: &[&str] = &["v1", "v1beta1"];

/// One CRD's conversion webhook.
pub struct WebhookConverter {
    client: Arc<WebhookClient>,
    /// The parsed `clientConfig`, or why it is unusable (reported on each call, as upstream
    /// reports a failing `HookClient`).
    config: Result<ClientConfig, String>,
    /// The first supported entry of `conversionReviewVersions`.
    review_version: Option<&'static str>,
    kind: String,
    timeout: Duration,
}

impl WebhookConverter {
    /// The converter of a CRD with `spec.conversion.strategy: Webhook`.
    pub fn new(crd: &Crd, client: Arc<WebhookClient>) -> WebhookConverter {
        let webhook = crd.raw.pointer("/spec/conversion/webhook");
        let config = match webhook.and_then(|w| w.get("clientConfig")) {
            Some(c) => ClientConfig::from_webhook(c).map_err(|e| e.to_string()),
            None => Err("spec.conversion.webhook.clientConfig is not set".to_string()),
        };
        let review_version = webhook
            .and_then(|w| w.get("conversionReviewVersions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find_map(|v| SUPPORTED.iter().copied().find(|s| *s == v));
        WebhookConverter {
            client,
            config,
            review_version,
            kind: crd.names.kind.clone(),
            timeout: TIMEOUT,
        }
    }

    /// Go's `schema.GroupVersionKind.String()` of an object (`g/v, Kind=K`).
    fn gvk(&self, obj: &Value) -> String {
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or(self.kind.as_str());
        format!("{av}, Kind={kind}")
    }

    /// Converts `objs` in place to `desired` (`group/version`). Objects already there are not
    /// sent; with none to convert, no call is made.
    pub async fn convert(&self, objs: &mut [&mut Value], desired: &str) -> ApiResult<()> {
        let pending: Vec<usize> = (0..objs.len())
            .filter(|&i| api_version(objs[i]) != desired && !is_empty_object(objs[i]))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let gvk = self.gvk(objs[pending[0]]);
        let failed =
            |e: String| ApiError::internal(format!("conversion webhook for {gvk} failed: {e}"));
        let Some(review_version) = self.review_version else {
            return Err(failed("no supported conversion review versions".into()));
        };
        let cfg = self.config.as_ref().map_err(|e| failed(e.clone()))?;
        let uid = uuid::Uuid::new_v4().to_string();
        let objects: Vec<Value> = pending.iter().map(|&i| objs[i].clone()).collect();
        let review = json!({
            "kind": "ConversionReview",
            "apiVersion": format!("apiextensions.k8s.io/{review_version}"),
            "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects},
        });
        let query = format!("?timeout={}s", self.timeout.as_secs());
        // Boxed: resolving a service reads Endpoints through the codec, which converts.
        let call = Box::pin(self.client.post_json(cfg, &query, &review, self.timeout));
        let resp = call.await.map_err(|e| failed(e.to_string()))?;
        let converted = converted_objects(&resp, review_version, &uid).map_err(failed)?;
        if converted.len() != pending.len() {
            return Err(ApiError::internal(format!(
                "conversion webhook for {gvk} returned {} objects, expected {}",
                converted.len(),
                pending.len()
            )));
        }
        let (want_group, want_version) = desired.split_once('/').unwrap_or(("", desired));
        for (idx, (&i, mut out)) in pending.iter().zip(converted).enumerate() {
            let original = &*objs[i];
            let invalid = |e: String| {
                ApiError::internal(format!(
                    "conversion webhook for {gvk} returned invalid converted object at index {idx}: {e}"
                ))
            };
            if !out.is_object() {
                return Err(invalid("the object is not a JSON object".into()));
            }
            let got = api_version(&out);
            if got != desired {
                let got_gv = match got.split_once('/') {
                    Some((g, v)) => format!("{g}/{v}"),
                    None => got.to_string(),
                };
                return Err(invalid(format!(
                    "invalid groupVersion (expected {want_group}/{want_version}, received {got_gv})"
                )));
            }
            let (ek, gk) = (str_of(original, "kind"), str_of(&out, "kind"));
            if ek != gk {
                return Err(invalid(format!(
                    "invalid kind (expected {ek}, received {gk})"
                )));
            }
            validate_converted(original, &out).map_err(invalid)?;
            restore_object_meta(original, &mut out).map_err(|e| {
                ApiError::internal(format!(
                    "conversion webhook for {gvk} returned invalid metadata in object at index {idx}: {e}"
                ))
            })?;
            *objs[i] = out;
        }
        Ok(())
    }
}

fn api_version(v: &Value) -> &str {
    str_of(v, "apiVersion")
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Upstream's special case: an object with nothing but `apiVersion` and `kind` converts
/// without a call.
fn is_empty_object(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.len() == 2 && m.contains_key("apiVersion") && m.contains_key("kind"))
}

/// Upstream `getConvertedObjectsFromResponse`.
fn converted_objects(resp: &Value, review_version: &str, uid: &str) -> Result<Vec<Value>, String> {
    if review_version == "v1" {
        let (av, kind) = (str_of(resp, "apiVersion"), str_of(resp, "kind"));
        if av != "apiextensions.k8s.io/v1" || kind != "ConversionReview" {
            return Err(format!(
                "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got {av}, Kind={kind}"
            ));
        }
    }
    let Some(response) = resp.get("response").filter(|r| r.is_object()) else {
        return Err("no response provided".into());
    };
    // v1beta1 never verified the uid (upstream keeps it so for compatibility).
    if review_version == "v1" {
        let got = str_of(response, "uid");
        if got != uid {
            return Err(format!("expected response.uid={uid:?}, got {got:?}"));
        }
    }
    let result = response.get("result").unwrap_or(&Value::Null);
    let status = str_of(result, "status");
    if status != "Success" {
        let msg = str_of(result, "message");
        if !msg.is_empty() {
            return Err(msg.to_string());
        }
        return Err(format!(
            "response.result.status was '{status}', not 'Success'"
        ));
    }
    Ok(response
        .get("convertedObjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// Upstream `validateConvertedObject`: kind, name, namespace and uid must not change.
fn validate_converted(orig: &Value, out: &Value) -> Result<(), String> {
    let m = |v: &Value, k: &str| {
        v.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if str_of(orig, "kind") != str_of(out, "kind") {
        return Err(format!(
            "must have the same kind: {} != {}",
            str_of(orig, "kind"),
            str_of(out, "kind")
        ));
    }
    for (k, what) in [("name", "name"), ("namespace", "namespace"), ("uid", "UID")] {
        let (e, a) = (m(orig, k), m(out, k));
        if e != a {
            return Err(format!("must have the same {what}: {e} != {a}"));
        }
    }
    Ok(())
}

/// Upstream `restoreObjectMeta`: the original metadata, with the webhook's labels and
/// annotations (validated when they changed).
fn restore_object_meta(orig: &Value, out: &mut Value) -> Result<(), String> {
    let response_meta = match out.get("metadata") {
        None => return Err("missing metadata in converted object".into()),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(format!(
                "invalid metadata of type {} in converted object",
                go_type(other)
            ));
        }
    };
    let mut meta = match orig.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(format!(
                "invalid metadata of type {} in input object",
                go_type(other)
            ));
        }
        None => Map::new(),
    };
    for fld in ["labels", "annotations"] {
        let resp = match response_meta.get(fld) {
            None | Some(Value::Null) => {
                meta.remove(fld);
                continue;
            }
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(format!(
                    "invalid metadata.{fld} of type {} in converted object",
                    go_type(other)
                ));
            }
        };
        let original = match meta.get(fld) {
            Some(Value::Object(m)) => Some(m),
            None | Some(Value::Null) => None,
            Some(other) => {
                return Err(format!(
                    "invalid metadata.{fld} of type {} in original object",
                    go_type(other)
                ));
            }
        };
        let mut changed = original.map_or(0, Map::len) != resp.len();
        for (k, v) in resp {
            if !v.is_string() {
                return Err(format!(
                    "metadata.{fld}[{k}] must be a string, but is {} in converted object",
                    go_type(v)
                ));
            }
            if original.and_then(|o| o.get(k)) != Some(v) {
                changed = true;
            }
        }
        if changed {
            let value = Value::Object(resp.clone());
            let errs = if fld == "labels" {
                validate_labels(Some(&value), &Path::from("metadata.labels"))
            } else {
                validate_annotations(Some(&value), &Path::from("metadata.annotation"))
            };
            if let Some(msg) = aggregate_message(&errs) {
                return Err(msg);
            }
        }
        meta.insert(fld.to_string(), Value::Object(resp.clone()));
    }
    if let Some(m) = out.as_object_mut() {
        m.insert("metadata".into(), Value::Object(meta));
    }
    Ok(())
}

/// Go's `%T` of a decoded JSON value.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_checks_follow_upstream() {
        let ok = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": "u1", "result": {"status": "Success"}, "convertedObjects": [{}]}});
        assert_eq!(converted_objects(&ok, "v1", "u1").unwrap().len(), 1);
        assert_eq!(
            converted_objects(&ok, "v1", "u2").unwrap_err(),
            "expected response.uid=\"u2\", got \"u1\""
        );
        // v1beta1 answers are not checked for the uid.
        assert!(converted_objects(&ok, "v1beta1", "u2").is_ok());
        let failed = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": "u1", "result": {"status": "Failure", "message": "nope"}}});
        assert_eq!(converted_objects(&failed, "v1", "u1").unwrap_err(), "nope");
        let wrong = json!({"apiVersion": "v1", "kind": "Status"});
        assert_eq!(
            converted_objects(&wrong, "v1", "u1").unwrap_err(),
            "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got v1, Kind=Status"
        );
    }

    #[test]
    fn only_labels_and_annotations_come_from_the_webhook() {
        let orig = json!({"metadata": {"name": "a", "uid": "1", "labels": {"x": "1"},
            "resourceVersion": "5"}});
        let mut out = json!({"metadata": {"name": "a", "uid": "1", "labels": {"y": "2"},
            "generation": 9, "annotations": {"n": "v"}}});
        restore_object_meta(&orig, &mut out).unwrap();
        assert_eq!(
            out["metadata"],
            json!({"name": "a", "uid": "1", "labels": {"y": "2"}, "resourceVersion": "5",
                "annotations": {"n": "v"}})
        );
        let mut bad = json!({"metadata": {"labels": {"a b": "1"}}});
        assert!(restore_object_meta(&orig, &mut bad).is_err());
        let mut nonstring = json!({"metadata": {"labels": {"x": 1}}});
        assert_eq!(
            restore_object_meta(&orig, &mut nonstring).unwrap_err(),
            "metadata.labels[x] must be a string, but is int64 in converted object"
        );
        assert_eq!(
            validate_converted(
                &json!({"kind": "K", "metadata": {"name": "a"}}),
                &json!({"kind": "K", "metadata": {"name": "b"}})
            )
            .unwrap_err(),
            "must have the same name: a != b"
        );
    }
}

//! ServiceAccount (upstream `plugin/pkg/admission/serviceaccount`): a new pod runs as
//! `default` unless it names a service account; the account must exist (a missing `default`
//! is looked up again for a moment, the controller creates it); unless automounting is off on
//! the pod or the account, a `kube-api-access-<random>` projected volume (bound token, the
//! `kube-root-ca.crt` CA, the namespace) is mounted read-only at
//! `/var/run/secrets/kubernetes.io/serviceaccount` in every init and regular container; the
//! account's imagePullSecrets are copied to a pod that has none. Mirror pods are left alone.

use std::time::Duration;

use serde_json::{Value, json};

use super::api::{ApiHandle, SERVICE_ACCOUNTS};
use super::pod::{containers_mut, is_mirror, s};
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;

/// Where the token volume is mounted.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token volume's name prefix.
const VOLUME_PREFIX: &str = "kube-api-access-";
/// upstream's bound token lifetime for the projected volume (an hour plus 7 s).
const TOKEN_EXPIRATION: i64 = 3607;

/// The ServiceAccount plugin.
pub struct ServiceAccount {
    pub api: ApiHandle,
}

impl ServiceAccount {
    /// upstream `getServiceAccount`: the cache (no consistency wait), then live lookups (10
    /// for `default`, which the controller may be about to create).
    async fn lookup(&self, ns: &str, name: &str) -> ApiResult<Option<Value>> {
        let attempts = if name == "default" { 10 } else { 1 };
        for i in 0..attempts {
            if i > 0 {
                let ms = 100 + u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 100);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if let Some(sa) = self.api.lookup(SERVICE_ACCOUNTS, ns, name).await? {
                return Ok(Some(sa));
            }
        }
        Ok(None)
    }
}

/// The projected token volume upstream 1.35 adds.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}
            ]
        }
    })
}

/// upstream `mountServiceAccountToken`.
fn mount_token(spec: &mut Value) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|v| {
            let n = s(v, "/name");
            n.starts_with(VOLUME_PREFIX).then(|| n.to_string())
        });
    let has_volume = existing.is_some();
    let name = existing.unwrap_or_else(|| crate::registry::store::generate_name(VOLUME_PREFIX));
    let mount = json!({"mountPath": TOKEN_MOUNT_PATH, "name": name, "readOnly": true});
    let mut needed = false;
    for field in ["initContainers", "containers"] {
        for c in containers_mut(spec, field) {
            let has = c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .is_some_and(|m| m.iter().any(|m| s(m, "/mountPath") == TOKEN_MOUNT_PATH));
            if has {
                continue;
            }
            if let Some(c) = c.as_object_mut() {
                let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
                if let Some(m) = mounts.as_array_mut() {
                    m.push(mount.clone());
                    needed = true;
                }
            }
        }
    }
    if needed
        && !has_volume
        && let Some(m) = spec.as_object_mut()
    {
        let vols = m.entry("volumes").or_insert_with(|| json!([]));
        if let Some(v) = vols.as_array_mut() {
            v.push(token_volume(&name));
        }
    }
}

#[async_trait::async_trait]
impl AdmissionPlugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    async fn admit(&self, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        if a.operation != Operation::Create
            || !a.subresource.is_empty()
            || !a.is("", "pods")
            || is_mirror(obj)
        {
            return Ok(());
        }
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
            return Ok(());
        };
        let mut sa_name = s(spec, "/serviceAccountName").to_string();
        if sa_name.is_empty() {
            sa_name = "default".into();
            if let Some(m) = spec.as_object_mut() {
                m.insert("serviceAccountName".into(), json!("default"));
                m.insert("serviceAccount".into(), json!("default"));
            }
        }
        let Some(sa) = self.lookup(a.namespace, &sa_name).await? else {
            return Err(a.forbidden(&format!(
                "error looking up service account {}/{sa_name}: serviceaccount \"{sa_name}\" not found",
                a.namespace
            )));
        };
        let automount = spec
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool)
            .or_else(|| {
                sa.get("automountServiceAccountToken")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(true);
        if automount {
            mount_token(spec);
        }
        let pod_has_secrets = spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .is_some_and(|v| !v.is_empty());
        if !pod_has_secrets
            && let Some(secrets) = sa.get("imagePullSecrets").and_then(Value::as_array)
            && !secrets.is_empty()
            && let Some(m) = spec.as_object_mut()
        {
            let list: Vec<Value> = secrets
                .iter()
                .map(|x| json!({"name": s(x, "/name")}))
                .collect();
            m.insert("imagePullSecrets".into(), Value::Array(list));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_volume_is_mounted_once_in_every_container() {
        let mut spec = json!({
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [
                {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}]
        });
        mount_token(&mut spec);
        let vols = spec["volumes"].as_array().cloned().unwrap_or_default();
        assert_eq!(vols.len(), 1);
        let name = vols[0]["name"].as_str().unwrap_or_default().to_string();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(
            spec["initContainers"][0]["volumeMounts"][0]["name"],
            json!(name)
        );
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["readOnly"], true);
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        mount_token(&mut spec);
        assert_eq!(
            spec["volumes"].as_array().map(Vec::len),
            Some(1),
            "idempotent"
        );
    }
}

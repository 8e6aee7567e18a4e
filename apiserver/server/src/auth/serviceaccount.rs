//! Service-account tokens (upstream `pkg/serviceaccount`): the issuer's signing key, the
//! TokenRequest API (`POST serviceaccounts/{name}/token`, what `kubectl create token` calls),
//! the authenticator for bound and legacy tokens, and the OIDC discovery documents
//! (`/.well-known/openid-configuration`, `/openid/v1/jwks`).
//!
//! A bound token is valid while its signature verifies, `exp`/`nbf` hold, one audience is an
//! API audience, and the service account (and the pod, secret or node it is bound to) still
//! exists with the uid recorded in the token. A legacy token also needs its Secret to still
//! hold it.

use std::path::Path;

use base64::Engine;
use serde_json::{Value, json};

use super::jwt::{self, SigningKey, VerifyKey};
use crate::error::{ApiError, ApiResult};
use crate::registry::ResourceHandle;
use crate::{AppState, UserInfo};
use ferrokube_machinery::status::Status;
use ferrokube_machinery::validation::FieldError;

/// The legacy (secret-based) token issuer.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// Upstream's default `expirationSeconds` of a TokenRequest.
const DEFAULT_EXPIRATION: i64 = 3600;

/// Why a service-account token was refused.
#[derive(Debug, thiserror::Error)]
pub enum SaTokenError {
    /// Signature or shape.
    #[error(transparent)]
    Jwt(#[from] jwt::JwtError),
    /// A claim is missing or fails a check.
    #[error("{0}")]
    Claims(String),
}

/// The issuer (signing) and authenticator (verifying) of service-account tokens.
pub struct ServiceAccountAuth {
    signing: SigningKey,
    keys: Vec<VerifyKey>,
    /// `--service-account-issuer` values; the first one signs.
    pub issuers: Vec<String>,
    /// `--api-audiences` (default: the issuers).
    pub audiences: Vec<String>,
    /// `--service-account-max-token-expiration` in seconds (0: none).
    pub max_expiration: i64,
    /// Where the JWKS is published.
    pub jwks_uri: String,
}

impl ServiceAccountAuth {
    /// Loads the signing key (`--service-account-signing-key-file`, else `DIR/pki/sa.key`,
    /// generated on first start like kubeadm's) and the verification keys
    /// (`--service-account-key-file`, plus the signing key's public half).
    pub fn load(
        signing_file: Option<&Path>,
        key_files: &[std::path::PathBuf],
        pki_dir: &Path,
        issuers: Vec<String>,
        audiences: Vec<String>,
        max_expiration: i64,
        jwks_uri: String,
    ) -> anyhow::Result<ServiceAccountAuth> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        };
        let signing = match signing_file {
            Some(p) => SigningKey::from_pem(&read(p)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            None => {
                let path = pki_dir.join("sa.key");
                if path.exists() {
                    SigningKey::from_pem(&read(&path)?)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                } else {
                    let (key, pem) = SigningKey::generate()?;
                    crate::certs::write_private(&path, &pem)?;
                    key
                }
            }
        };
        let mut keys = vec![signing.verify_key()];
        for f in key_files {
            for k in jwt::verify_keys_from_pem(&read(f)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?
            {
                if !keys.iter().any(|x| x.kid == k.kid) {
                    keys.push(k);
                }
            }
        }
        let audiences = if audiences.is_empty() {
            issuers.clone()
        } else {
            audiences
        };
        Ok(ServiceAccountAuth {
            signing,
            keys,
            issuers,
            audiences,
            max_expiration,
            jwks_uri,
        })
    }

    /// `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        let mut algs: Vec<&str> = self.keys.iter().map(|k| k.alg).collect();
        algs.sort_unstable();
        algs.dedup();
        json!({
            "issuer": self.issuers.first().cloned().unwrap_or_default(),
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
        })
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.keys.iter().map(VerifyKey::jwk).collect::<Vec<_>>()})
    }

    /// Signs a token for `claims` (the first issuer is set as `iss`).
    pub fn sign(&self, mut claims: Value) -> Result<String, jwt::JwtError> {
        claims["iss"] = json!(self.issuers.first().cloned().unwrap_or_default());
        self.signing.sign(&claims)
    }

    /// `Ok(None)`: not a token of ours (another authenticator may know it).
    pub async fn authenticate(
        &self,
        state: &AppState,
        token: &str,
    ) -> Result<Option<UserInfo>, SaTokenError> {
        // The issuer decides whether this authenticator is responsible, before any crypto.
        let Some(unverified) = unverified_claims(token) else {
            return Ok(None);
        };
        let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or("");
        let legacy = iss == LEGACY_ISSUER;
        if !legacy && !self.issuers.iter().any(|i| i == iss) {
            return Ok(None);
        }
        let claims = jwt::verify(token, &self.keys)?.claims;
        let bad = |m: &str| SaTokenError::Claims(m.to_string());
        let now = jiff::Timestamp::now().as_second();
        if legacy {
            return self.legacy(state, token, &claims).await.map(Some);
        }
        check_time_and_audience(&claims, now, &self.audiences)?;
        let k = claims
            .get("kubernetes.io")
            .ok_or(bad("no kubernetes.io claim"))?;
        let s = |p: &str| k.pointer(p).and_then(Value::as_str).unwrap_or("");
        let (ns, sa_name, sa_uid) = (
            s("/namespace"),
            s("/serviceaccount/name"),
            s("/serviceaccount/uid"),
        );
        if ns.is_empty() || sa_name.is_empty() {
            return Err(bad("token names no service account"));
        }
        if claims.get("sub").and_then(Value::as_str)
            != Some(format!("system:serviceaccount:{ns}:{sa_name}").as_str())
        {
            return Err(bad("sub claim does not match the service account"));
        }
        let sa_uid_live = live_uid(state, "serviceaccounts", ns, sa_name).await;
        if sa_uid_live.as_deref() != Some(sa_uid) {
            return Err(bad("service account no longer exists or was recreated"));
        }
        let mut user = sa_user(ns, sa_name, sa_uid);
        for (kind, resource, namespaced) in [
            ("pod", "pods", true),
            ("secret", "secrets", true),
            ("node", "nodes", false),
        ] {
            let name = s(&format!("/{kind}/name"));
            if name.is_empty() {
                continue;
            }
            let uid = s(&format!("/{kind}/uid"));
            let live = live_uid(state, resource, if namespaced { ns } else { "" }, name).await;
            if live.as_deref() != Some(uid) {
                return Err(SaTokenError::Claims(format!(
                    "the {kind} the token is bound to no longer exists"
                )));
            }
            if kind != "secret" {
                user.extra.insert(
                    format!("authentication.kubernetes.io/{kind}-name"),
                    vec![name.to_string()],
                );
                user.extra.insert(
                    format!("authentication.kubernetes.io/{kind}-uid"),
                    vec![uid.to_string()],
                );
            }
        }
        if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
            user.extra.insert(
                "authentication.kubernetes.io/credential-id".into(),
                vec![format!("JTI={jti}")],
            );
        }
        Ok(Some(user))
    }

    async fn legacy(
        &self,
        state: &AppState,
        token: &str,
        c: &Value,
    ) -> Result<UserInfo, SaTokenError> {
        let bad = |m: &str| SaTokenError::Claims(m.to_string());
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
        let ns = s("kubernetes.io/serviceaccount/namespace");
        let name = s("kubernetes.io/serviceaccount/service-account.name");
        let uid = s("kubernetes.io/serviceaccount/service-account.uid");
        let secret = s("kubernetes.io/serviceaccount/secret.name");
        if ns.is_empty() || name.is_empty() || secret.is_empty() {
            return Err(bad("legacy token misses claims"));
        }
        let obj = live_object(state, "secrets", ns, secret)
            .await
            .ok_or(bad("the token's secret no longer exists"))?;
        let stored = obj
            .pointer("/data/token")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        if stored.as_deref() != Some(token.as_bytes()) {
            return Err(bad("the token's secret holds another token"));
        }
        if live_uid(state, "serviceaccounts", ns, name)
            .await
            .as_deref()
            != Some(uid)
        {
            return Err(bad("service account no longer exists or was recreated"));
        }
        Ok(sa_user(ns, name, uid))
    }
}

/// `exp`, `nbf` and `aud` of a bound token at `now` (unix seconds).
pub fn check_time_and_audience(
    claims: &Value,
    now: i64,
    audiences: &[String],
) -> Result<(), SaTokenError> {
    let bad = |m: &str| SaTokenError::Claims(m.to_string());
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(bad("no exp claim"))?;
    if now >= exp {
        return Err(bad("token has expired"));
    }
    if claims
        .get("nbf")
        .and_then(Value::as_i64)
        .is_some_and(|nbf| now < nbf)
    {
        return Err(bad("token not valid yet"));
    }
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !auds.iter().any(|a| audiences.iter().any(|x| x == a)) {
        return Err(bad("token audiences are invalid for the target audiences"));
    }
    Ok(())
}

/// The user of a service account (upstream `serviceaccount.UserInfo`).
pub fn sa_user(ns: &str, name: &str, uid: &str) -> UserInfo {
    UserInfo {
        username: format!("system:serviceaccount:{ns}:{name}"),
        uid: uid.to_string(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ],
        ..Default::default()
    }
}

fn unverified_claims(token: &str) -> Option<Value> {
    jwt::peek_header(token)?;
    let part = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice::<Value>(&raw)
        .ok()
        .filter(Value::is_object)
}

async fn live_object(state: &AppState, resource: &str, ns: &str, name: &str) -> Option<Value> {
    let h = state.registry.get("", "v1", resource)?;
    let (kv, _) = state.store.cache.get(&h.key(ns, name), 0).await.ok()?;
    let obj: Value = serde_json::from_slice(&kv?.value).ok()?;
    obj.pointer("/metadata/deletionTimestamp")
        .is_none()
        .then_some(obj)
}

async fn live_uid(state: &AppState, resource: &str, ns: &str, name: &str) -> Option<String> {
    live_object(state, resource, ns, name)
        .await?
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `POST serviceaccounts/{name}/token` (upstream `registry/core/serviceaccount/storage/token.go`).
pub async fn token_request(
    state: &AppState,
    sa_handle: &ResourceHandle,
    ns: &str,
    name: &str,
    mut req: Value,
) -> ApiResult<Value> {
    let Some(auth) = state.auth.service_accounts.as_ref() else {
        return Err(Status::method_not_supported("", "serviceaccounts/token", "create").into());
    };
    let sa = state.store.get(sa_handle, ns, name).await?;
    let sa: Value = serde_json::from_slice(&sa.value).map_err(ApiError::Encoding)?;
    let sa_uid = sa
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    let exp_secs = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION);
    let invalid = |field: &str, v: Value, msg: &str| -> ApiError {
        ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            name,
            &[FieldError::invalid(field, v, msg)],
        )
    };
    if exp_secs < 600 {
        return Err(invalid(
            "spec.expirationSeconds",
            json!(exp_secs),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if exp_secs > 1 << 32 {
        return Err(invalid(
            "spec.expirationSeconds",
            json!(exp_secs),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let exp_secs = if auth.max_expiration > 0 {
        exp_secs.min(auth.max_expiration)
    } else {
        exp_secs
    };
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => auth.audiences.clone(),
    };
    let now = jiff::Timestamp::now().as_second();
    let mut k8s = json!({
        "namespace": ns,
        "serviceaccount": {"name": name, "uid": sa_uid},
    });
    if let Some(r) = spec.get("boundObjectRef").filter(|r| r.is_object()) {
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
        let ref_name = r.get("name").and_then(Value::as_str).unwrap_or("");
        let (claim, resource, obj_ns) = match kind {
            "Pod" => ("pod", "pods", ns),
            "Secret" => ("secret", "secrets", ns),
            "Node" => ("node", "nodes", ""),
            other => {
                return Err(invalid(
                    "spec.boundObjectRef.kind",
                    json!(other),
                    "supported values: \"Pod\", \"Secret\", \"Node\"",
                ));
            }
        };
        let Some(uid) = live_uid(state, resource, obj_ns, ref_name).await else {
            return Err(Status::not_found("", resource, ref_name).into());
        };
        if let Some(want) = r
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(Status::conflict(
                "",
                resource,
                ref_name,
                &format!("the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"),
            )
            .into());
        }
        k8s[claim] = json!({"name": ref_name, "uid": uid});
    }
    let claims = json!({
        "aud": audiences,
        "exp": now + exp_secs,
        "iat": now,
        "nbf": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let token = auth.sign(claims).map_err(ApiError::internal)?;
    let expiration = jiff::Timestamp::from_second(now + exp_secs)
        .map(|t| t.to_string())
        .unwrap_or_default();
    if let Some(m) = req.as_object_mut() {
        m.insert("kind".into(), json!("TokenRequest"));
        m.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        meta["name"] = json!(name);
        meta["namespace"] = json!(ns);
        meta["creationTimestamp"] = json!(crate::registry::store::now_rfc3339());
        let mut spec = spec;
        spec["audiences"] = json!(audiences);
        spec["expirationSeconds"] = json!(exp_secs);
        if spec.get("boundObjectRef").is_some_and(Value::is_null)
            && let Some(s) = spec.as_object_mut()
        {
            s.remove("boundObjectRef");
        }
        m.insert("spec".into(), spec);
        m.insert(
            "status".into(),
            json!({"token": token, "expirationTimestamp": expiration}),
        );
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_tokens_expire_and_need_an_api_audience() {
        let auds = vec!["https://kubernetes.default.svc.cluster.local".to_string()];
        let c = json!({"exp": 1600, "iat": 1000, "nbf": 1000, "aud": auds});
        assert!(check_time_and_audience(&c, 1000, &auds).is_ok());
        assert!(check_time_and_audience(&c, 1599, &auds).is_ok());
        assert!(
            check_time_and_audience(&c, 1600, &auds).is_err(),
            "expired at exp"
        );
        assert!(
            check_time_and_audience(&c, 999, &auds).is_err(),
            "not before nbf"
        );
        assert!(check_time_and_audience(&c, 1000, &["other".to_string()]).is_err());
        assert!(
            check_time_and_audience(&json!({"aud": auds}), 1000, &auds).is_err(),
            "no exp"
        );
    }

    #[test]
    fn oidc_documents() {
        let dir = std::env::temp_dir().join(format!("fk-sa-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let a = ServiceAccountAuth::load(
            None,
            &[],
            &dir,
            vec!["https://kubernetes.default.svc.cluster.local".into()],
            vec![],
            0,
            "https://127.0.0.1:6443/openid/v1/jwks".into(),
        )
        .expect("load");
        assert_eq!(
            a.openid_configuration()["id_token_signing_alg_values_supported"],
            json!(["ES256"])
        );
        assert_eq!(a.jwks()["keys"][0]["kty"], "EC");
        // The generated key is reused on the next start.
        let b =
            ServiceAccountAuth::load(None, &[], &dir, vec!["x".into()], vec![], 0, String::new())
                .expect("reload");
        assert_eq!(a.keys[0].kid, b.keys[0].kid);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

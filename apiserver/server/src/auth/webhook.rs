//! Webhook authentication (`--authentication-token-webhook-config-file`, TokenReview v1) and
//! authorization (`--authorization-webhook-config-file`, SubjectAccessReview v1): a
//! kubeconfig-described HTTPS server asked over rustls, answers cached by TTL (upstream
//! `plugin/pkg/auth/authenticator/token/webhook`, `plugin/pkg/authorizer/webhook`).
//!
//! Bounds: each call has a timeout, response bodies are read up to 1 MiB, caches hold at most
//! [`CACHE_CAP`] entries keyed by SHA-256 of the request (never by the raw token). A webhook
//! that fails or answers garbage authenticates nobody and authorizes nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use sha2::Digest;

use super::{Attributes, Decision};
use crate::UserInfo;

/// Entries a cache holds at most.
pub const CACHE_CAP: usize = 10_000;
const MAX_RESPONSE: usize = 1024 * 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A Go duration (`30s`, `2m`, `5m0s`, `1h`, `500ms`).
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n]
            .parse()
            .with_context(|| format!("invalid duration {s:?}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            other => anyhow::bail!("invalid duration {s:?}: unknown unit {other:?}"),
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// The one server of a webhook kubeconfig.
struct Endpoint {
    url: http::Uri,
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
}

fn load_endpoint(path: &Path) -> anyhow::Result<Endpoint> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let kc: Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let pick = |list: &str, name: Option<&str>| -> Option<Value> {
        let items = kc.get(list)?.as_array()?;
        let found = match name {
            Some(n) => items
                .iter()
                .find(|i| i.get("name").and_then(Value::as_str) == Some(n)),
            None => items.first(),
        };
        found.cloned()
    };
    let ctx = kc
        .get("current-context")
        .and_then(Value::as_str)
        .and_then(|c| pick("contexts", Some(c)))
        .and_then(|c| c.get("context").cloned());
    let cluster_name = ctx
        .as_ref()
        .and_then(|c| c.get("cluster"))
        .and_then(Value::as_str);
    let user_name = ctx
        .as_ref()
        .and_then(|c| c.get("user"))
        .and_then(Value::as_str);
    let cluster = pick("clusters", cluster_name)
        .and_then(|c| c.get("cluster").cloned())
        .context("the webhook kubeconfig has no cluster")?;
    let user = pick("users", user_name)
        .and_then(|u| u.get("user").cloned())
        .unwrap_or_default();
    let material = |v: &Value, data: &str, file: &str| -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(d) = v.get(data).and_then(Value::as_str) {
            return Ok(Some(
                base64::engine::general_purpose::STANDARD.decode(d.trim())?,
            ));
        }
        if let Some(f) = v.get(file).and_then(Value::as_str) {
            let p = dir.join(f);
            return Ok(Some(
                std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
            ));
        }
        Ok(None)
    };
    let server = cluster
        .get("server")
        .and_then(Value::as_str)
        .context("cluster.server")?;
    let url: http::Uri = server.parse().context("cluster.server")?;
    if url.scheme_str() != Some("https") {
        anyhow::bail!("webhook server {server} must be https");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = material(
        &cluster,
        "certificate-authority-data",
        "certificate-authority",
    )? {
        for c in rustls_pemfile::certs(&mut ca.as_slice()) {
            roots.add(c?)?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let cert = material(&user, "client-certificate-data", "client-certificate")?;
    let key = material(&user, "client-key-data", "client-key")?;
    let tls = match (cert, key) {
        (Some(c), Some(k)) => {
            let chain = rustls_pemfile::certs(&mut c.as_slice()).collect::<Result<Vec<_>, _>>()?;
            let key = rustls_pemfile::private_key(&mut k.as_slice())?.context("client key")?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Endpoint {
        url,
        tls: Arc::new(tls),
        token: user
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// POSTs `body` to the endpoint and decodes the JSON answer.
async fn call(ep: &Endpoint, body: &Value) -> anyhow::Result<Value> {
    let host = ep
        .url
        .host()
        .context("server host")?
        .trim_matches(['[', ']'])
        .to_string();
    let port = ep.url.port_u16().unwrap_or(443);
    let fut = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())?;
        let tls = tokio_rustls::TlsConnector::from(ep.tls.clone())
            .connect(name, tcp)
            .await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        // HTTP/1.1 origin-form: the path, not the absolute URL.
        let path = ep.url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut req = http::Request::post(path)
            .header(http::header::HOST, format!("{host}:{port}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json");
        if let Some(t) = &ep.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(bytes::Bytes::from(body.to_string())))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the webhook response: {e}"))?
            .to_bytes();
        if !status.is_success() {
            anyhow::bail!("webhook answered {status}");
        }
        let v: Value = serde_json::from_slice(&bytes).context("decoding the webhook response")?;
        anyhow::Ok(v)
    };
    tokio::time::timeout(CALL_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow::anyhow!("webhook call timed out after {CALL_TIMEOUT:?}"))?
}

/// A TTL cache keyed by SHA-256.
struct Cache<T> {
    map: Mutex<HashMap<[u8; 32], (Instant, T)>>,
}

impl<T: Clone> Cache<T> {
    fn new() -> Self {
        Cache {
            map: Mutex::new(HashMap::new()),
        }
    }
    fn get(&self, k: &[u8; 32]) -> Option<T> {
        let m = self.map.lock().ok()?;
        m.get(k)
            .filter(|(t, _)| *t > Instant::now())
            .map(|(_, v)| v.clone())
    }
    fn put(&self, k: [u8; 32], v: T, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= CACHE_CAP {
                let now = Instant::now();
                m.retain(|_, (t, _)| *t > now);
                if m.len() >= CACHE_CAP {
                    m.clear();
                }
            }
            m.insert(k, (Instant::now() + ttl, v));
        }
    }
}

fn digest(s: &str) -> [u8; 32] {
    sha2::Sha256::digest(s.as_bytes()).into()
}

/// The token webhook.
pub struct TokenWebhook {
    ep: Endpoint,
    ttl: Duration,
    cache: Cache<Option<UserInfo>>,
}

impl TokenWebhook {
    /// From the kubeconfig file and `--authentication-token-webhook-cache-ttl`.
    pub fn new(path: &Path, ttl: Duration) -> anyhow::Result<TokenWebhook> {
        Ok(TokenWebhook {
            ep: load_endpoint(path)?,
            ttl,
            cache: Cache::new(),
        })
    }

    /// Asks the webhook (or its cache) about a token.
    pub async fn authenticate(&self, token: &str) -> Option<UserInfo> {
        let key = digest(token);
        if let Some(hit) = self.cache.get(&key) {
            return hit;
        }
        let review = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        });
        let answer = match call(&self.ep, &review).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "token webhook failed");
                return None;
            }
        };
        let st = answer.get("status").cloned().unwrap_or_default();
        let user = if st.get("authenticated").and_then(Value::as_bool) == Some(true) {
            user_from_json(st.get("user").unwrap_or(&Value::Null))
        } else {
            None
        };
        self.cache.put(key, user.clone(), self.ttl);
        user
    }
}

/// A UserInfo from its JSON form (TokenReview status.user); None without a username.
pub fn user_from_json(u: &Value) -> Option<UserInfo> {
    let username = u.get("username").and_then(Value::as_str)?.to_string();
    if username.is_empty() {
        return None;
    }
    let list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let extra = u
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), list(Some(v)))).collect())
        .unwrap_or_default();
    Some(UserInfo {
        username,
        uid: u
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        groups: list(u.get("groups")),
        extra,
    })
}

/// The SubjectAccessReview spec upstream's webhook authorizer sends for a request.
pub fn sar_spec(a: &Attributes<'_>) -> Value {
    let mut spec = json!({
        "user": a.user.username,
        "groups": a.user.groups,
    });
    if !a.user.uid.is_empty() {
        spec["uid"] = json!(a.user.uid);
    }
    if !a.user.extra.is_empty() {
        spec["extra"] = json!(a.user.extra);
    }
    if a.resource_request {
        spec["resourceAttributes"] = json!({
            "namespace": a.namespace,
            "verb": a.verb,
            "group": a.api_group,
            "version": a.api_version,
            "resource": a.resource,
            "subresource": a.subresource,
            "name": a.name,
        });
    } else {
        spec["nonResourceAttributes"] = json!({"path": a.path, "verb": a.verb});
    }
    spec
}

/// The authorization webhook.
pub struct AuthzWebhook {
    ep: Endpoint,
    allowed_ttl: Duration,
    denied_ttl: Duration,
    cache: Cache<(Decision, String)>,
}

impl AuthzWebhook {
    /// From the kubeconfig file and the two cache TTLs.
    pub fn new(
        path: &Path,
        allowed_ttl: Duration,
        denied_ttl: Duration,
    ) -> anyhow::Result<AuthzWebhook> {
        Ok(AuthzWebhook {
            ep: load_endpoint(path)?,
            allowed_ttl,
            denied_ttl,
            cache: Cache::new(),
        })
    }

    /// Asks the webhook (or its cache). `Err`: it could not be asked or answered garbage.
    pub async fn authorize(&self, a: &Attributes<'_>) -> anyhow::Result<(Decision, String)> {
        let spec = sar_spec(a);
        let key = digest(&spec.to_string());
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        });
        let answer = call(&self.ep, &review).await?;
        let st = answer
            .get("status")
            .filter(|s| s.is_object())
            .context("the webhook's SubjectAccessReview has no status")?;
        let reason = st
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let allowed = st
            .get("allowed")
            .and_then(Value::as_bool)
            .context("status.allowed missing")?;
        let denied = st.get("denied").and_then(Value::as_bool).unwrap_or(false);
        let out = if allowed {
            (Decision::Allow, reason)
        } else if denied {
            (Decision::Deny, reason)
        } else {
            (Decision::NoOpinion, reason)
        };
        let ttl = if allowed {
            self.allowed_ttl
        } else {
            self.denied_ttl
        };
        self.cache.put(key, out.clone(), ttl);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("2m").expect("d"), Duration::from_secs(120));
        assert_eq!(parse_duration("5m0s").expect("d"), Duration::from_secs(300));
        assert_eq!(
            parse_duration("1h30m").expect("d"),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_duration("500ms").expect("d"),
            Duration::from_millis(500)
        );
        assert!(parse_duration("5x").is_err());
    }
}

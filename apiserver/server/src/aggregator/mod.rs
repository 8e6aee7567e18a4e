//! API aggregation (upstream `k8s.io/kube-aggregator`): APIServices (`apiregistration.k8s.io/v1`)
//! with a `service` route `/apis/{group}/{version}[/...]` to that service through the one
//! webhook client (endpoint routing as `--enable-aggregator-routing`, `caBundle` or
//! `insecureSkipTLSVerify`, the `--proxy-client-cert-file` identity), streaming both ways so
//! watches work. The caller's identity travels in `X-Remote-User`/`X-Remote-Uid`/
//! `X-Remote-Group`/`X-Remote-Extra-*` (upstream `transport.SetAuthProxyHeaders`; the UID as
//! with `RemoteRequestHeaderUID`, on by default since 1.33, and only when the user has one);
//! any such header the client sent is dropped first, as are its credentials.
//! APIServices without `service` are local: served by this server as before. Upgrade
//! requests (exec/attach/port-forward style) are spliced through ([`upgrade`]).
//!
//! [`available`] keeps each APIService's `Available` condition and the discovery documents
//! fetched from its backend; [`discovery`] merges those into `/apis` (legacy and aggregated).

pub mod available;
pub mod discovery;
pub mod upgrade;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use ferrokube_machinery::status::Status;
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::Notify;

use crate::UserInfo;
use crate::auth::rbac_feed::Sink;
use crate::error::status_response;
use crate::webhook_client::{ClientConfig, WebhookClient, decode_ca, service_target};

/// How long connecting to a backend and receiving its response head may take.
const PROXY_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// One APIService, compiled.
#[derive(Debug)]
pub struct ApiService {
    /// `v1beta1.metrics.k8s.io`.
    pub name: String,
    pub group: String,
    pub version: String,
    pub group_priority_minimum: i64,
    pub version_priority: i64,
    /// `None`: local (served by this server).
    pub client: Option<ClientConfig>,
}

impl ApiService {
    fn compile(name: &str, v: &Value) -> ApiService {
        let spec = v.get("spec").cloned().unwrap_or(Value::Null);
        let s = |k: &str| {
            spec.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let i = |k: &str| spec.get(k).and_then(Value::as_i64).unwrap_or(0);
        let client = spec
            .get("service")
            .filter(|s| !s.is_null())
            .map(|svc| ClientConfig {
                target: service_target(svc),
                // A caBundle that does not decode trusts nothing (an empty bundle is refused).
                ca_bundle: decode_ca(spec.get("caBundle")).unwrap_or(Some(Vec::new())),
                insecure: spec
                    .get("insecureSkipTLSVerify")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        ApiService {
            name: name.to_string(),
            group: s("group"),
            version: s("version"),
            group_priority_minimum: i("groupPriorityMinimum"),
            version_priority: i("versionPriority"),
            client,
        }
    }
}

/// The APIServices and what was discovered from their backends.
pub struct Aggregator {
    by_name: RwLock<BTreeMap<String, Arc<ApiService>>>,
    /// Remote APIServices by (group, version).
    remote: RwLock<HashMap<(String, String), Arc<ApiService>>>,
    /// The `APIResourceList` each remote APIService's backend last answered, by name.
    discovered: RwLock<HashMap<String, Value>>,
    pub client: Arc<WebhookClient>,
    /// Woken when APIServices change (the availability loop re-checks at once).
    pub changed: Notify,
    /// Slots for upgraded (spliced) connections.
    pub tunnels: upgrade::Tunnels,
}

impl Aggregator {
    /// An empty aggregator over the client.
    pub fn new(client: Arc<WebhookClient>) -> Aggregator {
        Aggregator {
            by_name: RwLock::default(),
            remote: RwLock::default(),
            discovered: RwLock::default(),
            client,
            changed: Notify::new(),
            tunnels: upgrade::Tunnels::default(),
        }
    }

    /// Every APIService.
    pub fn all(&self) -> Vec<Arc<ApiService>> {
        self.by_name
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any APIService is served by a backend.
    pub fn has_remote(&self) -> bool {
        self.remote.read().is_ok_and(|m| !m.is_empty())
    }

    /// The remote APIService serving a path (`/apis/{g}/{v}` and below).
    pub fn route(&self, path: &str) -> Option<Arc<ApiService>> {
        let rest = path.strip_prefix("/apis/")?;
        let mut parts = rest.splitn(3, '/');
        let g = parts.next()?;
        let v = parts.next().filter(|v| !v.is_empty())?;
        self.remote
            .read()
            .ok()?
            .get(&(g.to_string(), v.to_string()))
            .cloned()
    }

    /// The remote versions of a group, by priority (for `/apis/{group}`).
    pub fn remote_group(&self, group: &str) -> Vec<Arc<ApiService>> {
        let mut v: Vec<_> = self
            .remote
            .read()
            .map(|m| m.values().filter(|s| s.group == group).cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| {
            b.version_priority
                .cmp(&a.version_priority)
                .then(a.version.cmp(&b.version))
        });
        v
    }

    /// Records (or forgets) what a backend's discovery answered.
    pub fn set_discovered(&self, name: &str, doc: Option<Value>) {
        if let Ok(mut m) = self.discovered.write() {
            match doc {
                Some(d) => m.insert(name.to_string(), d),
                None => m.remove(name),
            };
        }
    }

    /// The discovered `APIResourceList` of every remote APIService, with its service.
    pub fn discovered(&self) -> Vec<(Arc<ApiService>, Option<Value>)> {
        let d = self
            .discovered
            .read()
            .map(|m| m.clone())
            .unwrap_or_default();
        self.remote
            .read()
            .map(|m| {
                m.values()
                    .map(|s| (s.clone(), d.get(&s.name).cloned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn rebuild(&self, m: &BTreeMap<String, Arc<ApiService>>) {
        let remote = m
            .values()
            .filter(|s| s.client.is_some())
            .map(|s| ((s.group.clone(), s.version.clone()), s.clone()))
            .collect();
        if let Ok(mut r) = self.remote.write() {
            *r = remote;
        }
        if let Ok(mut d) = self.discovered.write() {
            d.retain(|k, _| m.get(k).is_some_and(|s| s.client.is_some()));
        }
        self.changed.notify_one();
    }
}

impl Sink for Aggregator {
    fn reset(&self) {
        if let Ok(mut m) = self.by_name.write() {
            m.clear();
            self.rebuild(&m);
        }
    }

    fn apply(&self, key: &str, obj: Option<&Value>) {
        let name = key.rsplit('/').next().unwrap_or(key).to_string();
        let Ok(mut m) = self.by_name.write() else {
            return;
        };
        match obj {
            Some(o) => {
                let compiled = ApiService::compile(&name, o);
                // A status write (the availability loop's own) changes nothing here.
                let same = m.get(&name).is_some_and(|old| {
                    old.group == compiled.group
                        && old.version == compiled.version
                        && format!("{:?}", old.client) == format!("{:?}", compiled.client)
                        && old.version_priority == compiled.version_priority
                        && old.group_priority_minimum == compiled.group_priority_minimum
                });
                if same {
                    return;
                }
                m.insert(name, Arc::new(compiled));
            }
            None => {
                m.remove(&name);
            }
        }
        self.rebuild(&m);
    }
}

/// Headers never forwarded: hop-by-hop ones, the client's credentials, and identity headers
/// a client could forge.
fn forwardable(name: &HeaderName) -> bool {
    let n = name.as_str();
    !(matches!(
        n,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "authorization"
            | "host"
    ) || n.starts_with("impersonate-")
        || n.starts_with("x-remote-"))
}

/// Hop-by-hop response headers (not passed back to the client).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Percent-encodes an extra key for `X-Remote-Extra-<key>` (upstream's header escaping).
fn escape_extra_key(k: &str) -> String {
    let mut out = String::new();
    for b in k.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'!'
                    | b'#'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Adds the front-proxy identity headers for `user`.
pub fn identity_headers(headers: &mut http::HeaderMap, user: &UserInfo) {
    if let Ok(v) = HeaderValue::from_str(&user.username) {
        headers.insert(HeaderName::from_static("x-remote-user"), v);
    }
    if !user.uid.is_empty()
        && let Ok(v) = HeaderValue::from_str(&user.uid)
    {
        headers.insert(HeaderName::from_static("x-remote-uid"), v);
    }
    for g in &user.groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            headers.append(HeaderName::from_static("x-remote-group"), v);
        }
    }
    for (k, vals) in &user.extra {
        let Ok(name) =
            HeaderName::from_bytes(format!("x-remote-extra-{}", escape_extra_key(k)).as_bytes())
        else {
            continue;
        };
        for v in vals {
            if let Ok(v) = HeaderValue::from_str(
                &percent_encoding::utf8_percent_encode(v, percent_encoding::CONTROLS).to_string(),
            ) {
                headers.append(name.clone(), v);
            }
        }
    }
}

/// Proxies a request to the APIService's backend, streaming the answer; an upgrade request
/// the backend accepts is spliced through ([`upgrade`]).
pub async fn proxy(agg: &Aggregator, svc: &ApiService, mut req: Request) -> Response {
    let Some(cfg) = svc.client.as_ref() else {
        return status_response(&Status::service_unavailable("service unavailable"));
    };
    let user = req
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_default();
    // An upgrade needs the client's connection (HTTP/1.1; HTTP/2 requests carry no
    // `Connection` header) and a free slot.
    let client_upgrade = if upgrade::is_upgrade_request(req.headers()) {
        req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    let slot = match &client_upgrade {
        Some(_) => match agg.tunnels.try_acquire() {
            Some(s) => Some(s),
            None => {
                return status_response(&Status::too_many_requests(
                    "too many upgraded connections through the aggregator, please try again later",
                    1,
                ));
            }
        },
        None => None,
    };
    let (parts, body) = req.into_parts();
    let mut out = http::Request::builder().method(parts.method.clone()).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    if let Some(h) = out.headers_mut() {
        for (k, v) in &parts.headers {
            if forwardable(k) || (client_upgrade.is_some() && upgrade::upgrade_header(k)) {
                h.append(k.clone(), v.clone());
            }
        }
        identity_headers(h, &user);
    }
    let Ok(out) = out.body(Body::new(body)) else {
        return status_response(&Status::internal_error("building the proxied request"));
    };
    match agg.client.proxy(cfg, out, PROXY_HEAD_TIMEOUT).await {
        Ok(mut resp) => {
            let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
            match (client_upgrade, slot) {
                (Some(client), Some(slot)) if switching => {
                    let backend = hyper::upgrade::on(&mut resp);
                    upgrade::splice(client, backend, slot, svc.name.clone());
                }
                _ if switching => {
                    // A 101 to a request that asked for none: no protocol to switch to.
                    tracing::warn!(apiservice = %svc.name, "backend switched protocols unasked");
                    return status_response(&Status::service_unavailable(
                        "error trying to reach service: unexpected 101 Switching Protocols",
                    ));
                }
                _ => {}
            }
            let (mut p, body) = resp.into_parts();
            let drop: Vec<HeaderName> = p
                .headers
                .keys()
                .filter(|k| hop_by_hop(k) && !(switching && upgrade::upgrade_header(k)))
                .cloned()
                .collect();
            for k in drop {
                p.headers.remove(k);
            }
            Response::from_parts(p, Body::new(body)).into_response()
        }
        Err(e) => {
            tracing::warn!(apiservice = %svc.name, error = %e, "error while proxying request");
            status_response(&Status::service_unavailable(&format!(
                "error trying to reach service: {e}"
            )))
        }
    }
}

/// Starts the APIService feed and the availability loop.
pub async fn start(state: &Arc<crate::AppState>) -> anyhow::Result<()> {
    let h = state
        .registry
        .get("apiregistration.k8s.io", "v1", "apiservices")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the resource table has no apiservices"))?;
    crate::auth::rbac_feed::feed(
        state.store.cache.clone(),
        h.prefix.clone(),
        state.aggregator.clone(),
    )
    .await?;
    available::spawn(state, h);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_identity_and_credentials_are_not_forwarded() {
        for h in [
            "authorization",
            "impersonate-user",
            "x-remote-user",
            "x-remote-uid",
            "x-remote-extra-a",
            "connection",
        ] {
            assert!(!forwardable(&HeaderName::from_static(h)), "{h}");
        }
        assert!(forwardable(&http::header::ACCEPT));
    }

    #[test]
    fn identity_headers_carry_user_groups_and_escaped_extra() {
        let mut u = UserInfo {
            username: "bob".into(),
            groups: vec!["g1".into(), "system:authenticated".into()],
            ..Default::default()
        };
        u.extra.insert("scopes/a b".into(), vec!["x".into()]);
        let mut h = http::HeaderMap::new();
        identity_headers(&mut h, &u);
        assert_eq!(h["x-remote-user"], "bob");
        assert!(h.get("x-remote-uid").is_none(), "no UID, no header");
        assert_eq!(h.get_all("x-remote-group").iter().count(), 2);
        assert_eq!(h["x-remote-extra-scopes%2Fa%20b"], "x");
        u.uid = "4a1c".into();
        identity_headers(&mut h, &u);
        assert_eq!(h["x-remote-uid"], "4a1c");
    }

    #[test]
    fn routes_only_remote_group_versions() {
        let agg = Aggregator::new(Arc::new(WebhookClient::new(
            crate::admission::StoreReader::new(ferrokube_storage::memory::MemoryStore::new()),
            &crate::registry::Registry::new(&[]),
            None,
        )));
        let svc = serde_json::json!({"spec": {"group": "metrics.k8s.io", "version": "v1beta1",
            "service": {"namespace": "kube-system", "name": "m", "port": 443}}});
        agg.apply(
            "/registry/apiregistration.k8s.io/apiservices/v1beta1.metrics.k8s.io",
            Some(&svc),
        );
        let local = serde_json::json!({"spec": {"group": "apps", "version": "v1"}});
        agg.apply(
            "/registry/apiregistration.k8s.io/apiservices/v1.apps",
            Some(&local),
        );
        assert!(agg.route("/apis/metrics.k8s.io/v1beta1/nodes").is_some());
        assert!(agg.route("/apis/metrics.k8s.io/v1beta1").is_some());
        assert!(agg.route("/apis/metrics.k8s.io").is_none());
        assert!(agg.route("/apis/apps/v1/deployments").is_none());
        agg.apply(
            "/registry/apiregistration.k8s.io/apiservices/v1beta1.metrics.k8s.io",
            None,
        );
        assert!(!agg.has_remote());
    }
}

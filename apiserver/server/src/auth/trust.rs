//! `kube-system/extension-apiserver-authentication` (upstream's
//! `clusterauthenticationtrust` controller): the client CA and the request-header (front
//! proxy) settings every aggregated API server (metrics-server, ...) reads to authenticate the
//! requests this server's aggregator proxies to it. Written at start and checked every
//! [`RESYNC`]; the values already published (another API server of the cluster) are kept and
//! ours added, as upstream combines them. Also the `extension-apiserver-authentication-reader`
//! Role of upstream's bootstrap policy, which aggregated servers bind to read the ConfigMap.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::AppState;
use crate::certs::FrontProxy;
use crate::registry::request::WriteOptions;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "extension-apiserver-authentication";
const ROLE: &str = "extension-apiserver-authentication-reader";
const RESYNC: Duration = Duration::from_secs(30);

/// What this server publishes.
#[derive(Clone, Debug, Default)]
pub struct ClusterTrust {
    /// The CA bundle client certificates are verified with (`client-ca-file`).
    pub client_ca_pem: String,
    pub front_proxy: Option<FrontProxy>,
}

/// The PEM certificate blocks of a bundle, each normalised to end with a newline.
fn pem_blocks(bundle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let tail = &rest[start..];
        let Some(end) = tail.find("-----END CERTIFICATE-----") else {
            break;
        };
        let end = end + "-----END CERTIFICATE-----".len();
        out.push(format!("{}\n", &tail[..end]));
        rest = &tail[end..];
    }
    out
}

/// Two bundles combined, duplicates dropped (upstream `combineCertLists`).
fn combine_bundles(existing: Option<&str>, ours: &str) -> String {
    let mut blocks: Vec<String> = Vec::new();
    for b in pem_blocks(existing.unwrap_or(""))
        .into_iter()
        .chain(pem_blocks(ours))
    {
        if !blocks.contains(&b) {
            blocks.push(b);
        }
    }
    blocks.concat()
}

/// Two JSON string lists combined, order kept, duplicates dropped
/// (upstream `combineUniqueStringSlices`). An unparsable existing value is replaced.
fn combine_lists(existing: Option<&str>, ours: &[String]) -> String {
    let mut out: Vec<String> = existing
        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
        .unwrap_or_default();
    let mut seen: std::collections::HashSet<String> = out.iter().cloned().collect();
    for s in ours {
        if seen.insert(s.clone()) {
            out.push(s.clone());
        }
    }
    serde_json::to_string(&out).unwrap_or_else(|_| "[]".into())
}

/// The ConfigMap's `data`: the existing values combined with ours (upstream
/// `getConfigMapDataFor(combinedClusterAuthenticationInfo(existing, required))`).
pub fn combined_data(existing: &Map<String, Value>, trust: &ClusterTrust) -> Map<String, Value> {
    let get = |k: &str| existing.get(k).and_then(Value::as_str);
    let mut data = Map::new();
    let client_ca = combine_bundles(get("client-ca-file"), &trust.client_ca_pem);
    if !client_ca.is_empty() {
        data.insert("client-ca-file".into(), client_ca.into());
    }
    let empty = FrontProxy::default();
    let fp = trust.front_proxy.as_ref().unwrap_or(&empty);
    let rh_ca = combine_bundles(get("requestheader-client-ca-file"), &fp.ca_pem);
    if rh_ca.is_empty() {
        return data;
    }
    let lists: [(&str, &[String]); 5] = [
        ("requestheader-username-headers", &fp.username_headers),
        ("requestheader-uid-headers", &fp.uid_headers),
        ("requestheader-group-headers", &fp.group_headers),
        (
            "requestheader-extra-headers-prefix",
            &fp.extra_headers_prefix,
        ),
        ("requestheader-allowed-names", &fp.allowed_names),
    ];
    for (k, ours) in lists {
        data.insert(k.into(), combine_lists(get(k), ours).into());
    }
    data.insert("requestheader-client-ca-file".into(), rh_ca.into());
    data
}

/// Writes the ConfigMap when its data differs from the combined data.
async fn sync_config_map(state: &AppState) -> anyhow::Result<()> {
    let Some(h) = state.registry.get("", "v1", "configmaps").cloned() else {
        return Ok(());
    };
    let trust = &state.auth.trust;
    let opts = WriteOptions {
        field_manager: "kube-apiserver".into(),
        ..WriteOptions::default()
    };
    state
        .store
        .update(
            &h,
            NAMESPACE,
            NAME,
            |current| {
                let mut obj = current.cloned().unwrap_or_else(|| {
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": NAME, "namespace": NAMESPACE}})
                });
                let existing = obj
                    .get("data")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                obj["data"] = Value::Object(combined_data(&existing, trust));
                Ok(obj)
            },
            &opts,
        )
        .await?;
    Ok(())
}

/// Creates upstream's `kube-system/extension-apiserver-authentication-reader` Role when
/// missing.
async fn ensure_reader_role(state: &AppState) -> anyhow::Result<()> {
    let Some(h) = state
        .registry
        .get("rbac.authorization.k8s.io", "v1", "roles")
        .cloned()
    else {
        return Ok(());
    };
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": ROLE, "namespace": NAMESPACE,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "resourceNames": [NAME], "verbs": ["get", "list", "watch"]}],
    });
    match state
        .store
        .create(&h, NAMESPACE, role, &WriteOptions::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_already_exists() => Ok(()),
        Err(e) => Err(anyhow::anyhow!("creating the {ROLE} Role: {e}")),
    }
}

/// Publishes the trust now, then keeps it published.
pub async fn start(state: &Arc<AppState>) -> anyhow::Result<()> {
    // Two independent writes: concurrently, so they share a commit.
    tokio::try_join!(ensure_reader_role(state), async {
        sync_config_map(state)
            .await
            .map_err(|e| anyhow::anyhow!("writing {NAMESPACE}/{NAME}: {e}"))
    })?;
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RESYNC).await;
            let Some(state) = state.upgrade() else { return };
            if let Err(e) = sync_config_map(&state).await {
                tracing::warn!(error = %e, "writing {NAMESPACE}/{NAME}");
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----";

    fn trust() -> ClusterTrust {
        ClusterTrust {
            client_ca_pem: A.into(),
            front_proxy: Some(FrontProxy {
                ca_pem: B.into(),
                allowed_names: vec!["front-proxy-client".into()],
                username_headers: vec!["X-Remote-User".into()],
                uid_headers: vec!["X-Remote-Uid".into()],
                group_headers: vec!["X-Remote-Group".into()],
                extra_headers_prefix: vec!["X-Remote-Extra-".into()],
                client: None,
            }),
        }
    }

    #[test]
    fn publishes_upstreams_keys_as_json_lists() {
        let d = combined_data(&Map::new(), &trust());
        assert_eq!(d["client-ca-file"], A);
        assert_eq!(d["requestheader-client-ca-file"], format!("{B}\n"));
        assert_eq!(
            d["requestheader-allowed-names"],
            r#"["front-proxy-client"]"#
        );
        assert_eq!(d["requestheader-username-headers"], r#"["X-Remote-User"]"#);
        assert_eq!(d["requestheader-uid-headers"], r#"["X-Remote-Uid"]"#);
        assert_eq!(d["requestheader-group-headers"], r#"["X-Remote-Group"]"#);
        assert_eq!(
            d["requestheader-extra-headers-prefix"],
            r#"["X-Remote-Extra-"]"#
        );
        assert_eq!(d.len(), 7);
    }

    #[test]
    fn keeps_what_another_server_published() {
        let mut existing = Map::new();
        existing.insert("client-ca-file".into(), B.into());
        existing.insert("requestheader-allowed-names".into(), r#"["other"]"#.into());
        let d = combined_data(&existing, &trust());
        assert_eq!(d["client-ca-file"], format!("{B}\n{A}"));
        assert_eq!(
            d["requestheader-allowed-names"],
            r#"["other","front-proxy-client"]"#
        );
        // Combining again changes nothing (no write every resync).
        assert_eq!(combined_data(&d, &trust()), d);
    }

    #[test]
    fn without_a_request_header_ca_only_the_client_ca_is_published() {
        let t = ClusterTrust {
            client_ca_pem: A.into(),
            front_proxy: None,
        };
        let d = combined_data(&Map::new(), &t);
        assert_eq!(d.len(), 1);
    }
}

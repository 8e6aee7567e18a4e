//! Storage selection at startup: the embedded store in `DATA_DIR/db` (the default) or an etcd
//! cluster (`--etcd-servers`), and what the rest of the server needs to know about it
//! (metrics, the `/readyz` `etcd` check, shutdown).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use ferrokube_storage::Storage;
use ferrokube_storage::embedded::{EmbeddedOptions, EmbeddedStore, StorageMetrics};
use ferrokube_storage::etcd::{EtcdOptions, EtcdStore, EtcdTls};

use crate::options::ServerOptions;

/// How often the etcd health probe runs, and its deadline (upstream: `--etcd-healthcheck-timeout`
/// 2 s).
const HEALTH_PERIOD: Duration = Duration::from_secs(1);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The storage backend the server runs on.
pub enum Backend {
    Embedded(Arc<EmbeddedStore>),
    Etcd {
        store: Arc<EtcdStore>,
        /// The latest result of the background health probe (a linearizable read).
        healthy: Arc<AtomicBool>,
    },
}

/// The storage key root the server uses (DESIGN §3): `/registry/<resource>/<ns>/<name>`.
const KEY_ROOT: &str = "/registry";

/// The etcd key prefix for the store so that `--etcd-prefix=P` puts objects at
/// `P/<resource>/<ns>/<name>` (upstream's layout) when `P` ends in `/registry` (the default),
/// and at `P/registry/<resource>/...` otherwise.
pub fn etcd_key_prefix(etcd_prefix: &str) -> String {
    let p = etcd_prefix.trim_end_matches('/');
    p.strip_suffix(KEY_ROOT).unwrap_or(p).to_owned()
}

/// The etcd flags, kube-apiserver's names (`--etcd-servers`, `--etcd-cafile`, ...).
#[derive(Clone, Debug, Default)]
pub struct EtcdFlags<'a> {
    pub servers: &'a [String],
    pub cafile: Option<&'a Path>,
    pub certfile: Option<&'a Path>,
    pub keyfile: Option<&'a Path>,
    pub prefix: &'a str,
    /// Seconds between compactions (0: never).
    pub compaction_interval: u64,
}

impl<'a> EtcdFlags<'a> {
    /// The flags of `ferrokube server|apiserver`.
    pub fn from_server(opts: &'a ServerOptions) -> Self {
        EtcdFlags {
            servers: &opts.etcd_servers,
            cafile: opts.etcd_cafile.as_deref(),
            certfile: opts.etcd_certfile.as_deref(),
            keyfile: opts.etcd_keyfile.as_deref(),
            prefix: &opts.etcd_prefix,
            compaction_interval: opts.etcd_compaction_interval,
        }
    }

    /// The store options (reads the PEM files).
    pub fn options(&self) -> anyhow::Result<EtcdOptions> {
        let read = |p: Option<&Path>| -> anyhow::Result<Option<Vec<u8>>> {
            p.map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
                .transpose()
        };
        let tls = EtcdTls {
            ca_pem: read(self.cafile)?,
            client_cert_pem: read(self.certfile)?,
            client_key_pem: read(self.keyfile)?,
        };
        let any_tls = tls.ca_pem.is_some() || tls.client_cert_pem.is_some();
        let https = self.servers.iter().any(|s| s.starts_with("https://"));
        Ok(EtcdOptions {
            endpoints: self.servers.to_vec(),
            tls: (any_tls || https).then_some(tls),
            prefix: etcd_key_prefix(self.prefix),
            compaction_interval: (self.compaction_interval > 0)
                .then(|| Duration::from_secs(self.compaction_interval)),
            ..EtcdOptions::default()
        })
    }
}

impl Backend {
    /// Opens the backend the options select.
    pub async fn open(opts: &ServerOptions, data_dir: &Path) -> anyhow::Result<Backend> {
        if opts.etcd_servers.is_empty() {
            let store_opts = EmbeddedOptions {
                compaction_interval: Some(Duration::from_secs(
                    opts.etcd_compaction_interval.max(1),
                )),
                failpoint: crate::parse_failpoint(opts.debug_failpoint.as_deref())?,
                ..EmbeddedOptions::default()
            };
            let store = EmbeddedStore::open(&data_dir.join("db"), store_opts)
                .await
                .context("opening the embedded store")?;
            return Ok(Backend::Embedded(store));
        }
        let etcd_opts = EtcdFlags::from_server(opts).options()?;
        let store = EtcdStore::connect(etcd_opts)
            .await
            .with_context(|| format!("connecting to etcd at {}", opts.etcd_servers.join(",")))?;
        let healthy = Arc::new(AtomicBool::new(true));
        tokio::spawn(probe_health(Arc::downgrade(&store), healthy.clone()));
        Ok(Backend::Etcd { store, healthy })
    }

    /// The store behind the trait.
    pub fn storage(&self) -> Arc<dyn Storage> {
        match self {
            Backend::Embedded(s) => s.clone(),
            Backend::Etcd { store, .. } => store.clone(),
        }
    }

    /// The embedded store, when that is the backend.
    pub fn embedded(&self) -> Option<&Arc<EmbeddedStore>> {
        match self {
            Backend::Embedded(s) => Some(s),
            Backend::Etcd { .. } => None,
        }
    }

    /// The name of the storage health check: upstream's `etcd` on etcd, `storage` for the
    /// embedded store.
    pub fn check_name(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => "storage",
            Backend::Etcd { .. } => "etcd",
        }
    }

    /// The storage health check of `/readyz` and `/livez`: the embedded store's writer thread
    /// alive and its file open, or etcd answering its probe.
    pub fn healthy(&self) -> bool {
        match self {
            Backend::Embedded(s) => s.health() == ferrokube_storage::embedded::StoreHealth::Ok,
            Backend::Etcd { healthy, .. } => healthy.load(Ordering::Acquire),
        }
    }

    /// The embedded store's counters (all zero on etcd: etcd exports its own metrics).
    pub fn metrics(&self) -> StorageMetrics {
        match self {
            Backend::Embedded(s) => s.metrics(),
            Backend::Etcd { .. } => StorageMetrics::default(),
        }
    }

    /// Flushes and closes the embedded store; nothing to do for etcd.
    pub async fn close(&self) {
        if let Backend::Embedded(s) = self {
            s.close().await;
        }
    }
}

/// Runs the etcd check every [`HEALTH_PERIOD`] while the store lives, logging transitions.
async fn probe_health(store: std::sync::Weak<EtcdStore>, healthy: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(HEALTH_PERIOD).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        let result = match tokio::time::timeout(HEALTH_TIMEOUT, store.check()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {HEALTH_TIMEOUT:?}")),
        };
        drop(store);
        let ok = result.is_ok();
        if healthy.swap(ok, Ordering::AcqRel) != ok {
            match result {
                Ok(()) => tracing::info!("etcd check passes again"),
                Err(error) => tracing::warn!(%error, "etcd check failing"),
            }
        }
    }
}

/// `GET /debug/ferrokube/snapshot`: a consistent snapshot of the embedded store, streamed while
/// the server keeps serving (what `ferrokube snapshot save` fetches from a running server).
/// Only for `system:masters`; 404 on etcd (use `etcdctl snapshot save`).
pub async fn serve_snapshot(
    state: &crate::AppState,
    user: &crate::UserInfo,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use ferrokube_machinery::status::Status;
    if !user.groups.iter().any(|g| g == "system:masters") {
        return crate::error::status_response(&Status::forbidden(
            "",
            "",
            "",
            &format!(
                "User \"{}\" cannot get path \"/debug/ferrokube/snapshot\"",
                user.username
            ),
        ));
    }
    let Some(store) = state.backend.embedded() else {
        return crate::error::status_response(&Status::not_found("", "", ""));
    };
    let tmp = store
        .path()
        .with_file_name(format!("snapshot-{}.redb", uuid::Uuid::new_v4()));
    let info = match store.snapshot(&tmp).await {
        Ok(info) => info,
        Err(e) => return crate::error::ApiError::internal(e).into_response(),
    };
    let file = tokio::fs::File::open(&tmp).await;
    // Unlinked now: the open handle keeps the data until the body is sent.
    let _ = std::fs::remove_file(&tmp);
    let file = match file {
        Ok(f) => f,
        Err(e) => return crate::error::ApiError::internal(e).into_response(),
    };
    tracing::info!(revision = info.revision, keys = info.keys, bytes = info.bytes, user = %user.username, "snapshot served");
    let body = futures::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut resp = axum::body::Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(info.bytes),
    );
    if let Ok(v) = http::HeaderValue::from_str(&info.revision.to_string()) {
        h.insert("x-ferrokube-snapshot-revision", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::etcd_key_prefix;

    #[test]
    fn etcd_prefix_maps_to_upstreams_layout() {
        assert_eq!(etcd_key_prefix("/registry"), "");
        assert_eq!(etcd_key_prefix("/registry/"), "");
        assert_eq!(etcd_key_prefix("/tenant-a/registry"), "/tenant-a");
        assert_eq!(etcd_key_prefix("/other"), "/other");
    }
}

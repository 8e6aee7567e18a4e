//! The ferrokube API server.
//!
//! A request travels: TLS accept ([`serve`]) → HTTP/1.1 or HTTP/2 (hyper) → the filter chain
//! ([`filters::build_chain`], written once, in order) → the router ([`routes`]): non-resource
//! paths (health, version, metrics, discovery, OpenAPI) or a resource handler
//! ([`endpoints`], one file per verb) → the generic store ([`registry::store`]) with the
//! resource's strategy → `Storage` (embedded redb by default) and the watch cache.
//!
//! This crate must not reach storage except through the registry (DESIGN invariant 3), and it
//! maps every error to a `Status` in one place ([`error`]).

pub mod admission;
pub mod aggregator;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod certs;
pub mod coalesce;
pub mod controlplane;
pub mod crd;
pub mod discovery;
pub mod encryption;
pub mod endpoints;
pub mod error;
pub mod filters;
pub mod metrics;
pub mod negotiate;
pub mod openapi;
pub mod options;
pub mod registry;
pub mod routes;
pub mod serve;
pub mod table;
pub mod webhook_client;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use ferrokube_machinery::resources;
use ferrokube_storage::watch_cache::{WatchCache, WatchCacheOptions};
use serde_json::json;

use crate::registry::Registry;
use crate::registry::store::GenericStore;

/// The identity a request authenticated as (upstream `user.Info`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// Shared state of a running API server.
pub struct AppState {
    pub registry: Registry,
    pub store: GenericStore,
    /// Authenticators, authorizers and the RBAC index.
    pub auth: auth::Auth,
    /// The auditor (`--audit-policy-file` + `--audit-log-path`); None: no audit work at all.
    pub audit: Option<Arc<audit::Auditor>>,
    /// The storage backend (embedded or etcd), for metrics, the `etcd` check and shutdown.
    pub backend: backend::Backend,
    pub metrics: metrics::Metrics,
    pub discovery: discovery::DiscoveryDocs,
    pub openapi: Arc<openapi::OpenApiState>,
    /// APIServices: proxying to aggregated API servers, their availability and discovery.
    pub aggregator: Arc<aggregator::Aggregator>,
    pub max_body_bytes: usize,
    /// `--max-requests-inflight` / `--max-mutating-requests-inflight`.
    pub inflight: filters::InFlightLimits,
    /// True once startup work (default namespaces) is done.
    pub ready: AtomicBool,
    pub started: Instant,
}

/// The resources the server reads while it starts (default namespaces, the `kubernetes`
/// Service, its bootstrap RBAC policy, CRDs, APIServices, leases) and on most requests
/// (authorizers, admission plugins): filled into the watch cache before the server is ready.
const FILL_FIRST: &[(&str, &str, &str)] = &[
    ("", "v1", "namespaces"),
    ("", "v1", "services"),
    ("", "v1", "endpoints"),
    ("", "v1", "serviceaccounts"),
    ("", "v1", "limitranges"),
    ("", "v1", "resourcequotas"),
    ("discovery.k8s.io", "v1", "endpointslices"),
    ("networking.k8s.io", "v1", "servicecidrs"),
    ("networking.k8s.io", "v1", "ipaddresses"),
    ("rbac.authorization.k8s.io", "v1", "clusterroles"),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "v1", "apiservices"),
    ("coordination.k8s.io", "v1", "leases"),
    ("scheduling.k8s.io", "v1", "priorityclasses"),
    (
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
    ),
];

/// The key prefixes of [`FILL_FIRST`] and of the control plane's own records (the lease
/// endpoint reconciler's masterleases, the node port allocation).
fn fill_first(registry: &Registry) -> Vec<String> {
    let mut prefixes: Vec<String> = FILL_FIRST
        .iter()
        .filter_map(|(g, v, p)| registry.get(g, v, p).map(|h| h.prefix.clone()))
        .collect();
    prefixes.extend(["/registry/masterleases/".into(), "/registry/ranges/".into()]);
    prefixes
}

/// The test-only `--debug-failpoint watch-cache-fill-delay:MS`: the watch cache's background
/// fill pauses this long before each page, so tests see the server ready and serving with
/// most of the cache not filled.
fn parse_fill_delay(spec: Option<&str>) -> Option<std::time::Duration> {
    let ms = spec?
        .strip_prefix("watch-cache-fill-delay:")?
        .parse()
        .ok()?;
    tracing::warn!(ms, "TEST ONLY watch cache fill delay enabled");
    Some(std::time::Duration::from_millis(ms))
}

/// The default namespaces every cluster has.
const DEFAULT_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the cluster-scoped bootstrap object `name` of `h` from `obj` unless it exists
/// (read first, so a restart runs no write; `AlreadyExists` from a concurrent creator is
/// fine). Returns whether this call created it.
pub(crate) async fn ensure_bootstrap_object(
    state: &AppState,
    h: &registry::ResourceHandle,
    name: &str,
    obj: serde_json::Value,
) -> anyhow::Result<bool> {
    let what = &h.info.plural;
    match state.store.get(h, "", name).await {
        Ok(_) => return Ok(false),
        Err(e) if e.is_not_found() => {}
        Err(e) => anyhow::bail!("reading {what} {name}: {e}"),
    }
    let opts = crate::registry::store::WriteOptions::default();
    match state.store.create(h, "", obj, &opts).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_already_exists() => Ok(false),
        Err(e) => anyhow::bail!("creating {what} {name}: {e}"),
    }
}

/// Creates the default namespaces that are missing, concurrently (one commit for all of them
/// when the store batches concurrent writes).
async fn ensure_default_namespaces(state: &AppState) -> anyhow::Result<()> {
    let Some(ns) = state.registry.namespaces().cloned() else {
        anyhow::bail!("the resource table has no namespaces");
    };
    let ensure = |name: &'static str| {
        let ns = ns.clone();
        async move {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            if ensure_bootstrap_object(state, &ns, name, obj).await? {
                tracing::info!(namespace = name, "created default namespace");
            }
            anyhow::Ok(())
        }
    };
    futures::future::try_join_all(DEFAULT_NAMESPACES.iter().map(|n| ensure(n))).await?;
    Ok(())
}

/// Runs `ferrokube server` until SIGTERM/SIGINT.
pub async fn run(opts: options::ServerOptions) -> anyhow::Result<()> {
    run_with_hook(opts, |_| {}).await
}

/// Called once the server listens: what `ferrokube server` uses to start in-process components.
pub struct ListeningInfo {
    pub opts: options::ServerOptions,
    pub data_dir: std::path::PathBuf,
}

/// [`run`], calling `on_listening` once the listener is bound and the store is ready.
pub async fn run_with_hook(
    opts: options::ServerOptions,
    on_listening: impl FnOnce(ListeningInfo),
) -> anyhow::Result<()> {
    run_with_hooks(opts, on_listening, async {}).await
}

/// [`run_with_hook`], awaiting `before_stop` after SIGTERM/SIGINT while still serving: the
/// in-process components stop there and hand their leader Leases back through this server.
pub async fn run_with_hooks(
    opts: options::ServerOptions,
    on_listening: impl FnOnce(ListeningInfo),
    before_stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    // `-vv`: where start-up time goes.
    let phase = |done: &str| {
        tracing::debug!(
            ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
            "startup: {done}"
        )
    };
    // Optional API group-versions (`--runtime-config`) shape the one resource table: first.
    let optional = opts.check_api_selection()?;
    resources::enable_optional(&optional).map_err(|e| anyhow::anyhow!(e))?;
    // Every write consults two generated tables: the schemas of the type check and the schema
    // facts of managedFields. Indexed now (a scan of their text; each definition is parsed
    // when first used), beside the certificates and the store. After `enable_optional`: the
    // schema table reads the resource table, which is fixed by its first read.
    tokio::spawn(async {
        ferrokube_machinery::validation::schema_table::warm_up();
        ferrokube_machinery::openapi::facts::facts();
    });
    let dir = opts.data_dir();
    certs::private_dir(&dir).with_context(|| format!("preparing {}", dir.display()))?;
    // Certificates (key generation, files fsynced one by one) and the store (on a first start:
    // the file created, its header committed) are prepared side by side.
    let pki = tokio::task::spawn_blocking({
        let (opts, dir) = (opts.clone(), dir.clone());
        move || certs::ensure_pki(&opts, &dir)
    });
    let backend = backend::Backend::open(&opts, &dir).await;
    phase("store opened");
    let pki = pki
        .await
        .context("preparing certificates")?
        .context("preparing certificates")?;
    let backend = backend?;
    phase("certificates");
    // Encryption at rest wraps the backend once: everything above sees plain values.
    let storage = encryption::wrap(
        opts.encryption_provider_config.as_deref(),
        backend.storage(),
        resources::builtin_resources(),
    )?;
    let builtins = resources::builtin_resources();
    let cp_config = controlplane::ControlPlaneConfig::from_options(&opts)?;
    let registry = Registry::with_services(
        builtins,
        Arc::new(registry::service_alloc::ServiceAllocator::new(
            cp_config.networks.clone(),
        )),
    );
    // The cache fills what the server reads to start and to admit and authorize requests
    // before it is ready; the rest (most objects) fills in the background, its reads going to
    // the store meanwhile.
    let cache = WatchCache::start(
        storage.clone(),
        "/registry/",
        WatchCacheOptions {
            ring_capacity: opts.watch_cache_size,
            fill_first: fill_first(&registry),
            hold_fill: true,
            fill_page_delay: parse_fill_delay(opts.debug_failpoint.as_deref()),
            ..Default::default()
        },
    )
    .await
    .context("starting the watch cache")?;
    phase("watch cache started");
    let namespaces = registry
        .namespaces()
        .cloned()
        .context("the resource table has no namespaces")?;
    let auth = auth::Auth::new(&opts, &dir, &pki.client_ca_pem, pki.front_proxy.as_ref())
        .context("configuring authentication and authorization")?;
    let auditor = audit::Auditor::from_options(&opts).context("configuring auditing")?;
    let admission_api = admission::ApiHandle::default();
    let selection = admission::PluginSelection {
        enable: opts.enable_admission_plugins.clone(),
        disable: opts.disable_admission_plugins.clone(),
        config_file: opts.admission_control_config_file.clone(),
        node_authorizer: opts
            .authorization_mode
            .split(',')
            .any(|m| m.trim() == "Node"),
    };
    let mut plugins = admission::build_chain(
        &selection,
        &admission_api,
        admission::StoreReader::with_cache(storage.clone(), cache.clone()),
        namespaces,
    )
    .context("configuring admission plugins")?;
    tracing::info!(plugins = ?plugins.names(), "admission plugins");
    plugins.push(Arc::new(auth::csr::CsrRequestor));
    plugins.push(Arc::new(auth::escalation::RbacEscalation {
        authz: auth.authz.clone(),
        rbac: auth.rbac.clone(),
    }));
    // The webhook plugins come last: upstream runs MutatingAdmissionWebhook and
    // ValidatingAdmissionWebhook after the built-in plugins of each phase.
    let reader = admission::StoreReader::with_cache(storage.clone(), cache.clone());
    // `--proxy-client-*`, or the generated `front-proxy-client` certificate.
    let proxy_identity = pki
        .front_proxy
        .as_ref()
        .and_then(|f| f.client.clone())
        .map(|(c, k)| (c.into_bytes(), k.into_bytes()));
    let webhook_client = Arc::new(webhook_client::WebhookClient::new(
        reader.clone(),
        &registry,
        proxy_identity,
    ));
    let hooks = admission::webhook::start_feeds(&registry, &cache).await?;
    let admission_ctx = Arc::new(admission::context::AdmissionContext::new(
        admission_api.clone(),
        reader,
        &registry,
    ));
    let shared = Arc::new(admission::webhook::Shared::new(
        webhook_client.clone(),
        admission_ctx.clone(),
    ));
    // Upstream order: MutatingAdmissionPolicy just before MutatingAdmissionWebhook; on when
    // the feature gate is and its API is served.
    if selection.enabled()?.contains(&"MutatingAdmissionPolicy")
        && opts.feature_enabled("MutatingAdmissionPolicy")
    {
        use admission::policy::mutating::{GROUP_VERSION, MutatingAdmissionPolicy};
        if resources::optional_enabled(GROUP_VERSION) {
            let p =
                MutatingAdmissionPolicy::start(&registry, &cache, admission_ctx.clone()).await?;
            plugins.push(Arc::new(p));
        } else {
            tracing::warn!(
                "feature gate MutatingAdmissionPolicy is on but {GROUP_VERSION} is not served (--runtime-config={GROUP_VERSION}=true): the plugin stays off"
            );
        }
    }
    plugins.push(Arc::new(admission::webhook::WebhookPlugin::mutating(
        hooks.mutating,
        shared.clone(),
    )));
    // Upstream order: ValidatingAdmissionPolicy between the two webhook plugins.
    if selection.enabled()?.contains(&"ValidatingAdmissionPolicy") {
        let feeds =
            admission::policy::sets::start_feeds(&registry, &cache, admission_api.clone()).await?;
        plugins.push(Arc::new(admission::policy::ValidatingAdmissionPolicy::new(
            &feeds,
            admission_ctx.clone(),
        )));
    }
    plugins.push(Arc::new(admission::webhook::WebhookPlugin::validating(
        hooks.validating,
        shared,
    )));
    let state = Arc::new(AppState {
        registry,
        store: GenericStore::new(storage, cache, plugins),
        auth,
        audit: auditor,
        backend,
        metrics: metrics::Metrics::default(),
        discovery: discovery::DiscoveryDocs::new(builtins),
        openapi: Arc::default(),
        aggregator: Arc::new(aggregator::Aggregator::new(webhook_client)),
        max_body_bytes: opts.max_request_body_bytes,
        inflight: filters::InFlightLimits::new(
            opts.max_requests_inflight,
            opts.max_mutating_requests_inflight,
        ),
        ready: AtomicBool::new(false),
        started,
    });
    admission_api.bind(&state);
    phase("admission chain built");
    // The bootstrap objects `/readyz` waits for (upstream's post-start hooks
    // `bootstrap-namespaces`, `scheduling/bootstrap-system-priority-classes`,
    // `rbac/bootstrap-roles`, the default ServiceCIDR): none depends on another (all
    // cluster-scoped), so they are written concurrently and the store commits them together
    // (a few fsyncs on an empty store instead of ~110 one after another).
    tokio::try_join!(
        ensure_default_namespaces(&state),
        admission::ensure_system_priority_classes(&state),
        async {
            auth::bootstrap::reconcile(&state)
                .await
                .context("RBAC bootstrap policy")
        },
        controlplane::ControlPlane::bootstrap(&state, &cp_config),
    )?;
    phase("bootstrap objects written");
    auth::start(&state).await?;
    phase("RBAC index, aggregation, trust");
    let control_plane = controlplane::ControlPlane::start(state.clone(), cp_config)
        .await
        .context("starting the kubernetes service and repair loops")?;
    phase("control plane loops");
    crd::start(&state)
        .await
        .context("loading CustomResourceDefinitions")?;
    phase("CRDs");
    aggregator::start(&state).await?;
    phase("APIServices");
    state.ready.store(true, Ordering::Release);
    // The rest of the watch cache fills from now on, while the server serves.
    state.store.cache.release_fill();
    // The OpenAPI documents are built on their first request (or the first CRD), not here:
    // the build's transient tens of MB would otherwise sit in idle RSS for seconds.

    let listener = tokio::net::TcpListener::bind((opts.bind_address, opts.secure_port))
        .await
        .with_context(|| format!("binding {}:{}", opts.bind_address, opts.secure_port))?;
    tracing::info!(
        address = %listener.local_addr()?,
        kubeconfig = %pki.admin_kubeconfig.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "ferrokube API server listening"
    );
    let tls = serve::tls_config(&pki)?;
    let app = routes::router(state.clone());
    on_listening(ListeningInfo {
        opts: opts.clone(),
        data_dir: dir.clone(),
    });
    let limits = serve::ConnLimits {
        max_connections: opts.max_connections.max(1),
        ..serve::ConnLimits::default()
    };
    let shutdown = async {
        shutdown_signal().await;
        before_stop.await;
    };
    serve::serve(listener, tls, app, limits, shutdown).await?;
    control_plane.stop().await;
    state.store.cache.shutdown();
    state.backend.close().await;
    tracing::info!("ferrokube API server stopped");
    Ok(())
}

/// The test-only `--debug-failpoint` value. Compiled in always (a cargo feature would need a
/// second build of the server for the conformance tests), reachable only through that hidden
/// flag.
pub(crate) fn parse_failpoint(
    spec: Option<&str>,
) -> anyhow::Result<Option<ferrokube_storage::embedded::Failpoint>> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    match spec.split_once(':') {
        // The watch cache's (`parse_fill_delay`), not the store's.
        Some(("watch-cache-fill-delay", ms)) if ms.parse::<u64>().is_ok() => Ok(None),
        Some(("writer-panic-on-key", key)) if !key.is_empty() => {
            tracing::warn!(failpoint = spec, "TEST ONLY fail point enabled");
            Ok(Some(
                ferrokube_storage::embedded::Failpoint::WriterPanicOnKey(key.to_string()),
            ))
        }
        _ => anyhow::bail!(
            "unknown --debug-failpoint {spec:?} (known: writer-panic-on-key:KEY, watch-cache-fill-delay:MS)"
        ),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down");
}

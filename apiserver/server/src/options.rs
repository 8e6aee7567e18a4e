//! Command-line options of `ferrokube server` / `ferrokube apiserver`, named like
//! kube-apiserver's flags where they overlap.

use std::net::IpAddr;
use std::path::PathBuf;

/// Options of the API server.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerOptions {
    /// Directory for the store, certificates and admin.kubeconfig (default ~/.ferrokube).
    #[arg(long, env = "FERROKUBE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The port on which to serve HTTPS.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// The IP address on which to listen.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Extra subject alternative names for the generated serving certificate (repeatable).
    #[arg(long = "tls-san", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// A serving certificate (PEM) to use instead of the generated one.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// A CA bundle (PEM) whose client certificates authenticate (CN = user, O = groups), in
    /// addition to the generated cluster CA.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Largest accepted request body in bytes (upstream: 3 MiB).
    #[arg(long, default_value_t = 3 * 1024 * 1024)]
    pub max_request_body_bytes: usize,
    /// How often the store compacts old revisions, in seconds (upstream: 300).
    #[arg(long, default_value_t = 300)]
    pub etcd_compaction_interval: u64,
    /// etcd members to store objects in (`https://a:2379,https://b:2379`) instead of the
    /// embedded store.
    #[arg(long = "etcd-servers", value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// CA bundle (PEM) that signs the etcd members' serving certificates.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for etcd.
    #[arg(long, requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// Private key (PEM) of --etcd-certfile.
    #[arg(long, requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
    /// The prefix of every key in etcd (objects live at `<prefix>/<resource>/<ns>/<name>`).
    #[arg(long, default_value = "/registry")]
    pub etcd_prefix: String,
    /// Events kept in the watch cache for watch resumption.
    #[arg(long, default_value_t = 100_000)]
    pub watch_cache_size: usize,

    // --- Services (kube-apiserver names) ---
    /// CIDR range(s) Service cluster IPs come from: one CIDR, or two of different families
    /// (`10.96.0.0/12,fd00::/108`) for dual stack. The first address of the first range is the
    /// `kubernetes` Service's. Default: 10.96.0.0/12, as kubeadm and k3s-style clusters use
    /// (kube-apiserver alone falls back to 10.0.0.0/24).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// The port range NodePort and LoadBalancer services get node ports from (`30000-32767`,
    /// or `30000+2768`).
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// The address this server advertises to the cluster (the `kubernetes` Service's
    /// endpoint); default: --bind-address, or 127.0.0.1 when that is unspecified.
    #[arg(long)]
    pub advertise_address: Option<std::net::IpAddr>,
    /// How the `kubernetes` Service's endpoints are kept: `lease` (every live API server
    /// renews a lease; expired ones drop out) or `none`.
    #[arg(long, default_value = "lease")]
    pub endpoint_reconciler_type: String,
    /// TEST ONLY: how long an API server's endpoint lease lives (upstream: 15s); it is renewed
    /// every two thirds of it. Hidden from --help.
    #[arg(long, hide = true, default_value = "15s", value_parser = parse_go_duration)]
    pub debug_endpoint_lease_ttl: std::time::Duration,
    /// TEST ONLY: how often the ClusterIP and NodePort repair loops run (upstream: 3m).
    /// Hidden from --help.
    #[arg(long, hide = true, default_value = "3m", value_parser = parse_go_duration)]
    pub debug_service_repair_interval: std::time::Duration,

    // --- Authentication (kube-apiserver names) ---
    /// Enables anonymous requests (user system:anonymous, group system:unauthenticated).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// Static bearer tokens: CSV lines `token,user,uid,"group1,group2"`.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Allows bootstrap tokens (kube-system Secrets of type bootstrap.kubernetes.io/token).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_bootstrap_token_auth: bool,
    /// PEM public keys (or certificates, or private keys) that verify service account tokens.
    #[arg(long, value_delimiter = ',')]
    pub service_account_key_file: Vec<PathBuf>,
    /// PEM private key that signs service account tokens (default: DATA_DIR/pki/sa.key, generated).
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// Issuer of service account tokens (repeatable; the first signs).
    #[arg(long)]
    pub service_account_issuer: Vec<String>,
    /// Audiences tokens must carry one of (default: the issuers).
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// Largest expiration a TokenRequest may ask for (Go duration, e.g. 24h).
    #[arg(long)]
    pub service_account_max_token_expiration: Option<String>,
    /// Kubeconfig of a TokenReview webhook.
    #[arg(long)]
    pub authentication_token_webhook_config_file: Option<PathBuf>,
    /// How long the token webhook's answers are cached.
    #[arg(long, default_value = "2m")]
    pub authentication_token_webhook_cache_ttl: String,

    // --- Authorization ---
    /// Ordered authorizers: AlwaysAllow, AlwaysDeny, ABAC, Webhook, RBAC, Node.
    #[arg(long, default_value = "Node,RBAC")]
    pub authorization_mode: String,
    /// ABAC policy file (one JSON policy per line).
    #[arg(long)]
    pub authorization_policy_file: Option<PathBuf>,
    /// Kubeconfig of a SubjectAccessReview webhook.
    #[arg(long)]
    pub authorization_webhook_config_file: Option<PathBuf>,
    /// How long allowed webhook answers are cached.
    #[arg(long, default_value = "5m")]
    pub authorization_webhook_cache_authorized_ttl: String,
    /// How long denied webhook answers are cached.
    #[arg(long, default_value = "30s")]
    pub authorization_webhook_cache_unauthorized_ttl: String,
    // --- Admission ---
    /// Admission plugins to enable besides the default ones (comma-separated; the chain
    /// runs them in upstream's order whatever the order given).
    #[arg(long = "enable-admission-plugins", value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,
    /// Admission plugins to disable although on by default.
    #[arg(long = "disable-admission-plugins", value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,
    /// An AdmissionConfiguration file (PodSecurity defaults and exemptions).
    #[arg(long)]
    pub admission_control_config_file: Option<PathBuf>,
    /// The maximum number of non-mutating requests in flight at a given time; beyond it the
    /// server answers 429. Zero means no limit (kube-apiserver's flag and default).
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// The maximum number of mutating requests in flight at a given time; beyond it the server
    /// answers 429. Zero means no limit (kube-apiserver's flag and default).
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// Open client connections at most; further connections wait in the kernel's accept
    /// backlog until one closes.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// An `apiserver.config.k8s.io/v1` EncryptionConfiguration: which resources are stored
    /// encrypted, with which providers and keys.
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,

    // --- Auditing (kube-apiserver names) ---
    /// The audit policy (`audit.k8s.io/v1` Policy, YAML or JSON).
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,
    /// If set, all requests the policy selects are logged to this file; `-` means stdout.
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,
    /// The maximum size in megabytes of the audit log file before it gets rotated (0: 100).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxsize: u64,
    /// The maximum number of old audit log files to retain (0: all).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxbackup: usize,
    /// The maximum number of days to retain old audit log files (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxage: u64,
    /// Format of saved audits: `json` (one event per line) or `legacy` (one text line).
    #[arg(long, default_value = "json")]
    pub audit_log_format: String,
    /// `blocking` (a request waits when the buffer is full; upstream's default for the log),
    /// `batch` (events are dropped when the buffer is full) or `blocking-strict`.
    #[arg(long, default_value = "blocking")]
    pub audit_log_mode: String,
    /// Events buffered before the writer (upstream's default 10000).
    #[arg(long, default_value_t = 10_000)]
    pub audit_log_batch_buffer_size: usize,

    /// TEST ONLY: a fault to inject, e.g. `writer-panic-on-key:SUBSTRING` (the storage writer
    /// thread panics when a write touches a key containing SUBSTRING). Hidden from --help.
    #[arg(long, hide = true)]
    pub debug_failpoint: Option<String>,
    /// Client certificate (PEM) the aggregator presents to aggregated API servers (the
    /// front-proxy identity; kube-apiserver's flag).
    #[arg(long, requires = "proxy_client_key_file")]
    pub proxy_client_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --proxy-client-cert-file.
    #[arg(long, requires = "proxy_client_cert_file")]
    pub proxy_client_key_file: Option<PathBuf>,

    // --- Front proxy (request-header authentication; kube-apiserver names) ---
    // With none of --requestheader-client-ca-file and --proxy-client-cert-file given,
    // `ferrokube server` makes a front-proxy CA and a `front-proxy-client` certificate in
    // `<data-dir>/pki` (as kubeadm does) and uses kubeadm's header names.
    /// CA bundle (PEM) that verifies a front proxy's client certificate before the identity
    /// in the --requestheader-username-headers is trusted.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names a front proxy's certificate may carry (empty: any the CA signed).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// Request headers naming the user (the first with a value wins), e.g. X-Remote-User.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_username_headers: Vec<String>,
    /// Request headers naming the user's UID (the first with a value wins), e.g. X-Remote-Uid
    /// (upstream's `RemoteRequestHeaderUID`, on by default since 1.33).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_uid_headers: Vec<String>,
    /// Request headers naming groups (all values), e.g. X-Remote-Group.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_group_headers: Vec<String>,
    /// Request header prefixes for user extras, e.g. X-Remote-Extra-.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_extra_headers_prefix: Vec<String>,

    // ---- API selection ----
    /// `key=value` pairs enabling or disabling feature gates (kube-apiserver's flag); known:
    /// `MutatingAdmissionPolicy` (beta, off by default in 1.35).
    #[arg(long, value_delimiter = ',')]
    pub feature_gates: Vec<String>,
    /// `<group>/<version>=true|false` pairs turning API group-versions on or off
    /// (kube-apiserver's flag); `admissionregistration.k8s.io/v1beta1=true` serves
    /// MutatingAdmissionPolicy, `api/beta=true` and `api/all=true` every optional one.
    #[arg(long, value_delimiter = ',')]
    pub runtime_config: Vec<String>,
}

/// Feature gates ferrokube knows, with their 1.35 defaults.
const FEATURE_GATES: &[(&str, bool)] = &[("MutatingAdmissionPolicy", false)];

fn parse_bool(key: &str, v: &str) -> anyhow::Result<bool> {
    match v {
        "true" | "True" | "TRUE" | "1" | "t" | "T" => Ok(true),
        "false" | "False" | "FALSE" | "0" | "f" | "F" => Ok(false),
        _ => anyhow::bail!(
            "invalid value of {key}: {v}, err: strconv.ParseBool: parsing {v:?}: invalid syntax"
        ),
    }
}

impl ServerOptions {
    /// Whether the feature gate `name` is on (`--feature-gates`, else its default); unknown
    /// gates are refused by [`ServerOptions::check_api_selection`].
    pub fn feature_enabled(&self, name: &str) -> bool {
        let mut on = FEATURE_GATES
            .iter()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, d)| *d);
        for kv in &self.feature_gates {
            if let Some((k, v)) = kv.split_once('=')
                && k.trim() == name
            {
                on = parse_bool(k, v.trim()).unwrap_or(on);
            }
        }
        on
    }

    /// Validates `--feature-gates` and `--runtime-config` and returns the optional
    /// group-versions to serve.
    pub fn check_api_selection(&self) -> anyhow::Result<Vec<&'static str>> {
        for kv in self.feature_gates.iter().filter(|s| !s.trim().is_empty()) {
            let Some((k, v)) = kv.split_once('=') else {
                anyhow::bail!("missing bool value for {}", kv.trim());
            };
            let k = k.trim();
            parse_bool(k, v.trim())?;
            if !FEATURE_GATES.iter().any(|(n, _)| *n == k) {
                anyhow::bail!("unrecognized feature gate: {k}");
            }
        }
        let optional = ferrokube_machinery::resources::OPTIONAL_GROUP_VERSIONS;
        let mut on: Vec<&'static str> = Vec::new();
        for kv in self.runtime_config.iter().filter(|s| !s.trim().is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), "true"));
            let (k, enable) = (k.trim(), parse_bool(k, v.trim())?);
            let selected: Vec<&'static str> = match k {
                "api/all" | "api/beta" => optional.to_vec(),
                _ => optional.iter().copied().filter(|gv| *gv == k).collect(),
            };
            let served = ferrokube_machinery::resources::builtin_group_versions()
                .iter()
                .any(|gv| gv == k);
            if selected.is_empty() && !served && k != "api/ga" && k != "api/legacy" {
                anyhow::bail!("runtime-config invalid key {k}");
            }
            if !enable && served {
                anyhow::bail!("runtime-config: turning off {k} is not supported");
            }
            for gv in selected {
                on.retain(|g| *g != gv);
                if enable {
                    on.push(gv);
                }
            }
        }
        Ok(on)
    }

    /// The data directory, defaulting to `~/.ferrokube`.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".ferrokube")
    }
}

/// A duration as `90s`, `3m`, `1h` or `500ms`.
pub fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("invalid duration {s:?} (use ms, s, m or h)")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

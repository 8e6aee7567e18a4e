//! The cluster PKI: on first start a CA, a serving certificate and an admin client certificate
//! (O=system:masters) are generated into the data dir and `admin.kubeconfig` is written; later
//! starts reuse them, issuing the serving and client certificates again when they expire within
//! 30 days (the CA is kept). User-supplied files (`--tls-cert-file`, `--client-ca-file`) take
//! precedence.
//!
//! Files on disk: directories 0700; keys and kubeconfigs created 0600 from the first byte;
//! every file written to a temporary name, fsynced, renamed into place, and the directory
//! fsynced.

use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::options::ServerOptions;

/// Errors while preparing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key failed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A PEM file holds nothing usable.
    #[error("{0}: no certificate or key found")]
    Empty(PathBuf),
}

/// PEM material the TLS layer needs.
pub struct Pki {
    /// Serving certificate chain (PEM).
    pub serving_cert_pem: String,
    /// Serving private key (PEM).
    pub serving_key_pem: String,
    /// CA bundle that client certificates must chain to (PEM).
    pub client_ca_pem: String,
    /// Where admin.kubeconfig was written.
    pub admin_kubeconfig: PathBuf,
    /// Request-header (front proxy) authentication, when configured or generated.
    pub front_proxy: Option<FrontProxy>,
}

/// The front-proxy trust: what verifies a front proxy and which headers carry the user
/// (kube-apiserver's `--requestheader-*`), and the client identity this server's aggregator
/// presents to aggregated API servers (`--proxy-client-*`).
#[derive(Clone, Debug, Default)]
pub struct FrontProxy {
    /// `--requestheader-client-ca-file` (PEM); empty: request-header authentication is off.
    pub ca_pem: String,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    /// `--requestheader-uid-headers`.
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_headers_prefix: Vec<String>,
    /// `(certificate PEM, key PEM)` the aggregator presents.
    pub client: Option<(String, String)>,
}

/// The front-proxy CA's common name and the proxy client's (kubeadm's names).
const FRONT_PROXY_CA_CN: &str = "front-proxy-ca";
const FRONT_PROXY_CLIENT_CN: &str = "front-proxy-client";

/// Loads the front-proxy trust from the flags, or, with none of
/// `--requestheader-client-ca-file` and `--proxy-client-cert-file` given, makes (or reuses) a
/// front-proxy CA and a `front-proxy-client` certificate in `pki_dir` with kubeadm's header
/// names.
fn front_proxy(
    opts: &ServerOptions,
    pki_dir: &Path,
    dirs: &mut PendingDirs,
) -> Result<Option<FrontProxy>, CertError> {
    let client = match (&opts.proxy_client_cert_file, &opts.proxy_client_key_file) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    if let Some(ca) = &opts.requestheader_client_ca_file {
        return Ok(Some(FrontProxy {
            ca_pem: read(ca)?,
            allowed_names: opts.requestheader_allowed_names.clone(),
            username_headers: opts.requestheader_username_headers.clone(),
            uid_headers: opts.requestheader_uid_headers.clone(),
            group_headers: opts.requestheader_group_headers.clone(),
            extra_headers_prefix: opts.requestheader_extra_headers_prefix.clone(),
            client,
        }));
    }
    if client.is_some() {
        // A proxy identity without a CA to publish: the aggregator presents it, nothing is
        // verified here.
        return Ok(Some(FrontProxy {
            client,
            ..FrontProxy::default()
        }));
    }
    let ca_cert_path = pki_dir.join("front-proxy-ca.crt");
    let ca_key_path = pki_dir.join("front-proxy-ca.key");
    let (ca_pem, ca_key_pem) = match reusable(&ca_cert_path, &ca_key_path)? {
        Some(pair) => pair,
        None => {
            let key = KeyPair::generate()?;
            let mut params = ca_params_named(FRONT_PROXY_CA_CN);
            validity(&mut params, 3650);
            let cert = params.self_signed(&key)?;
            let (c, k) = (cert.pem(), key.serialize_pem());
            dirs.write(&ca_cert_path, &c, false)?;
            dirs.write(&ca_key_path, &k, true)?;
            // A new CA: a client certificate of an earlier one must not be reused.
            for f in ["front-proxy-client.crt", "front-proxy-client.key"] {
                let path = pki_dir.join(f);
                if std::fs::remove_file(&path).is_ok() {
                    dirs.changed(&path);
                }
            }
            // Durable before a certificate it signs is written.
            dirs.sync()?;
            (c, k)
        }
    };
    let issuer = Issuer::new(
        ca_params_named(FRONT_PROXY_CA_CN),
        KeyPair::from_pem(&ca_key_pem)?,
    );
    let client = client_cert(
        pki_dir,
        "front-proxy-client",
        FRONT_PROXY_CLIENT_CN,
        None,
        &issuer,
        dirs,
    )?;
    let one = |s: &str| vec![s.to_string()];
    Ok(Some(FrontProxy {
        ca_pem,
        allowed_names: one(FRONT_PROXY_CLIENT_CN),
        username_headers: one("X-Remote-User"),
        // kubeadm sets no UID header; this server's aggregator sends `X-Remote-Uid` (and drops
        // client-sent copies), so its own front proxy's UID is trusted too.
        uid_headers: one("X-Remote-Uid"),
        group_headers: one("X-Remote-Group"),
        extra_headers_prefix: one("X-Remote-Extra-"),
        client: Some(client),
    }))
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `path` atomically and durably: a temporary file created with its final mode (0600
/// for keys and kubeconfigs, so no byte is ever readable by others), fsync, rename over
/// `path`, fsync of the directory.
fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let mut dirs = PendingDirs::default();
    dirs.write(path, contents, private)?;
    dirs.sync()
}

/// Directories that files were renamed into (or removed from) and that are not yet fsynced.
/// A first start writes about a dozen files into two directories: one directory fsync per
/// group of files instead of one per file (each fsync is a journal commit, ~0.3 ms here).
#[derive(Default)]
struct PendingDirs(Vec<PathBuf>);

impl PendingDirs {
    /// Writes `contents` to `path` atomically (a temporary file, fsynced, renamed over it);
    /// the directory entry is durable after the next [`PendingDirs::sync`].
    fn write(&mut self, path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| CertError::Io {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension("tmp");
        // A stale temporary file may carry another mode: start from nothing.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if private { 0o600 } else { 0o644 })
            .open(&tmp)
            .map_err(io)?;
        file.write_all(contents.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)?;
        self.changed(path);
        Ok(())
    }

    /// Notes that the directory of `path` changed.
    fn changed(&mut self, path: &Path) {
        let dir = path.parent().unwrap_or(Path::new("."));
        if !self.0.iter().any(|d| d == dir) {
            self.0.push(dir.to_owned());
        }
    }

    /// Makes the changed directories durable. Called before anything that relies on the
    /// files written so far surviving a crash (a CA before the certificates it signs).
    fn sync(&mut self) -> Result<(), CertError> {
        for dir in self.0.drain(..) {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| CertError::Io { path: dir, source })?;
        }
        Ok(())
    }
}

/// True when `path` holds exactly `contents` and is readable by its owner only (mode 0600).
fn unchanged_private(path: &Path, contents: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600)
        && std::fs::read(path).is_ok_and(|b| b == contents.as_bytes())
}

/// Creates `dir` (and missing parents) with mode 0700; an existing one is narrowed to 0700.
pub fn private_dir(dir: &Path) -> Result<(), CertError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| CertError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        tracing::info!(path = %dir.display(), mode = format!("{mode:o}"), "narrowing directory to mode 0700");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Certificates expiring within this time are issued again on start (the CA is kept).
const RENEW_BEFORE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// True when the first certificate in `pem` is still valid for longer than [`RENEW_BEFORE`]
/// (false when it cannot be parsed: it is then issued again).
fn valid_long_enough(pem: &str) -> bool {
    let Some(Ok(der)) = rustls_pemfile::certs(&mut pem.as_bytes()).next() else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let not_after = cert.validity().not_after.timestamp();
    let horizon = time_now() + RENEW_BEFORE;
    not_after > horizon.unix_timestamp()
}

/// Reads a generated certificate and key pair for reuse: None when either is missing or the
/// certificate expires within 30 days (logged: it is then renewed).
fn reusable(cert_path: &Path, key_path: &Path) -> Result<Option<(String, String)>, CertError> {
    if !(cert_path.exists() && key_path.exists()) {
        return Ok(None);
    }
    let cert = read(cert_path)?;
    if !valid_long_enough(&cert) {
        tracing::info!(
            certificate = %cert_path.display(),
            "certificate expires within 30 days (or is unreadable): issuing a new one"
        );
        return Ok(None);
    }
    Ok(Some((cert, read(key_path)?)))
}

/// Writes a private file (mode 0600) atomically.
pub fn write_private(path: &Path, contents: &str) -> Result<(), CertError> {
    write(path, contents, true)
}

fn name(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time_now();
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + std::time::Duration::from_secs((days * 86_400) as u64);
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The CA's parameters; the issuer of every certificate is rebuilt from them and the CA key.
fn ca_params() -> CertificateParams {
    ca_params_named("ferrokube-ca")
}

fn ca_params_named(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn, None);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Loads or creates the cluster PKI in `dir` and writes `admin.kubeconfig`.
pub fn ensure_pki(opts: &ServerOptions, dir: &Path) -> Result<Pki, CertError> {
    let pki_dir = dir.join("pki");
    private_dir(&pki_dir)?;
    let mut dirs = PendingDirs::default();
    let ca_cert_path = pki_dir.join("ca.crt");
    let ca_key_path = pki_dir.join("ca.key");

    // The cluster CA: reused when present.
    let (ca_cert_pem, ca_key_pem) = if ca_cert_path.exists() && ca_key_path.exists() {
        (read(&ca_cert_path)?, read(&ca_key_path)?)
    } else {
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        validity(&mut params, 3650);
        let cert = params.self_signed(&key)?;
        let (c, k) = (cert.pem(), key.serialize_pem());
        dirs.write(&ca_cert_path, &c, false)?;
        dirs.write(&ca_key_path, &k, true)?;
        // Durable before a certificate it signs is written: a crash never leaves
        // certificates of a CA that is lost.
        dirs.sync()?;
        (c, k)
    };
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::new(ca_params(), ca_key);

    // Serving certificate: regenerated when the SAN list changed.
    let (serving_cert_pem, serving_key_pem) =
        match (&opts.tls_cert_file, &opts.tls_private_key_file) {
            (Some(c), Some(k)) => (read(c)?, read(k)?),
            _ => {
                let sans = serving_sans(opts);
                let cert_path = pki_dir.join("serving.crt");
                let key_path = pki_dir.join("serving.key");
                let sans_path = pki_dir.join("serving.sans");
                let sans_line = sans.join(",");
                let same_sans =
                    std::fs::read_to_string(&sans_path).ok().as_deref() == Some(sans_line.as_str());
                let existing = if same_sans {
                    reusable(&cert_path, &key_path)?
                } else {
                    None
                };
                if let Some(pair) = existing {
                    pair
                } else {
                    let key = KeyPair::generate()?;
                    let mut params = CertificateParams::default();
                    params.distinguished_name = name("ferrokube-apiserver", None);
                    params.subject_alt_names = sans
                        .iter()
                        .map(|s| match s.parse::<std::net::IpAddr>() {
                            Ok(ip) => Ok(SanType::IpAddress(ip)),
                            Err(_) => s.clone().try_into().map(SanType::DnsName),
                        })
                        .collect::<Result<_, _>>()?;
                    params.key_usages = vec![
                        KeyUsagePurpose::DigitalSignature,
                        KeyUsagePurpose::KeyEncipherment,
                    ];
                    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                    validity(&mut params, 365);
                    let cert = params.signed_by(&key, &issuer)?;
                    let (c, k) = (
                        format!("{}{}", cert.pem(), ca_cert_pem),
                        key.serialize_pem(),
                    );
                    dirs.write(&cert_path, &c, false)?;
                    dirs.write(&key_path, &k, true)?;
                    dirs.write(&sans_path, &sans_line, false)?;
                    (c, k)
                }
            }
        };

    // Admin client certificate (O=system:masters) and its kubeconfig.
    let (admin_cert_pem, admin_key_pem) = client_cert(
        &pki_dir,
        "admin",
        "kubernetes-admin",
        Some("system:masters"),
        &issuer,
        &mut dirs,
    )?;

    // The generated CA keeps signing the admin and component certificates (and approved
    // CSRs); a user-supplied --client-ca-file adds trust anchors.
    let client_ca_pem = match &opts.client_ca_file {
        Some(f) => format!("{ca_cert_pem}\n{}", read(f)?),
        None => ca_cert_pem.clone(),
    };
    // The kubeconfig trusts whatever signs the serving certificate: the generated CA, or the
    // last certificate of a user-supplied chain.
    let server_ca_pem = if opts.tls_cert_file.is_some() {
        last_pem_block(&serving_cert_pem).unwrap_or_else(|| ca_cert_pem.clone())
    } else {
        ca_cert_pem.clone()
    };
    let host = match opts.bind_address {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let kubeconfig = admin_kubeconfig(
        &format!("https://{host}:{}", opts.secure_port),
        &server_ca_pem,
        &admin_cert_pem,
        &admin_key_pem,
    );
    let admin_kubeconfig = dir.join("admin.kubeconfig");
    // Rewritten only when it changed (a restart on another port): a restart writes no file.
    if !unchanged_private(&admin_kubeconfig, &kubeconfig) {
        dirs.write(&admin_kubeconfig, &kubeconfig, true)?;
    }
    let front_proxy = front_proxy(opts, &pki_dir, &mut dirs)?;
    dirs.sync()?;
    Ok(Pki {
        serving_cert_pem,
        serving_key_pem,
        client_ca_pem,
        admin_kubeconfig,
        front_proxy,
    })
}

/// A client certificate `pki_dir/<file>.crt|key` (CN `cn`, O `org`) signed by the cluster CA,
/// reused when both files exist.
fn client_cert(
    pki_dir: &Path,
    file: &str,
    cn: &str,
    org: Option<&str>,
    issuer: &Issuer<'_, KeyPair>,
    dirs: &mut PendingDirs,
) -> Result<(String, String), CertError> {
    let cert_path = pki_dir.join(format!("{file}.crt"));
    let key_path = pki_dir.join(format!("{file}.key"));
    if let Some(pair) = reusable(&cert_path, &key_path)? {
        return Ok(pair);
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn, org);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, 365);
    let cert = params.signed_by(&key, issuer)?;
    let (c, k) = (cert.pem(), key.serialize_pem());
    dirs.write(&cert_path, &c, false)?;
    dirs.write(&key_path, &k, true)?;
    Ok((c, k))
}

fn last_pem_block(pem: &str) -> Option<String> {
    let start = pem.rfind("-----BEGIN CERTIFICATE-----")?;
    Some(pem[start..].to_string())
}

fn serving_sans(opts: &ServerOptions) -> Vec<String> {
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ];
    // In-cluster clients reach the API server at the `kubernetes` Service's cluster IP(s), so
    // the serving certificate names them (as kube-apiserver's self-signed one does).
    if let Ok(networks) = crate::registry::service_alloc::net::ServiceNetworks::parse(
        &opts.service_cluster_ip_range,
        &opts.service_node_port_range,
    ) {
        sans.extend(networks.kubernetes_service_ips());
    }
    if let Some(h) = hostname() {
        sans.push(h);
    }
    if !opts.bind_address.is_unspecified() {
        sans.push(opts.bind_address.to_string());
    }
    sans.extend(opts.tls_san.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    sans.retain(|s| !s.is_empty() && seen.insert(s.clone()));
    sans
}

fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim().to_lowercase();
    (!h.is_empty()).then_some(h)
}

fn admin_kubeconfig(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ferrokube\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: ferrokube\n  context:\n    cluster: ferrokube\n    user: admin\ncurrent-context: ferrokube\npreferences: {{}}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

/// A kubeconfig for an in-process component (e.g. CN=system:kube-controller-manager): a client
/// certificate signed by the generated CA (issued once, kept in `pki/<file>.crt|key`), trusting
/// the serving certificate's CA.
pub fn component_kubeconfig(
    opts: &ServerOptions,
    dir: &Path,
    file: &str,
    cn: &str,
) -> Result<String, CertError> {
    user_kubeconfig(opts, dir, file, cn, None)
}

/// [`component_kubeconfig`] with an organization (group), e.g. CN=`system:node:<name>`,
/// O=`system:nodes` for node agents (upstream `kubeadm kubeconfig user --org`).
pub fn user_kubeconfig(
    opts: &ServerOptions,
    dir: &Path,
    file: &str,
    cn: &str,
    org: Option<&str>,
) -> Result<String, CertError> {
    let pki_dir = dir.join("pki");
    let ca_cert_pem = read(&pki_dir.join("ca.crt"))?;
    let ca_key = KeyPair::from_pem(&read(&pki_dir.join("ca.key"))?)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut dirs = PendingDirs::default();
    let (cert_pem, key_pem) = client_cert(&pki_dir, file, cn, org, &issuer, &mut dirs)?;
    dirs.sync()?;
    let server_ca_pem = match &opts.tls_cert_file {
        Some(f) => last_pem_block(&read(f)?).unwrap_or_else(|| ca_cert_pem.clone()),
        None => ca_cert_pem,
    };
    let host = match opts.bind_address {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Ok(admin_kubeconfig(
        &format!("https://{host}:{}", opts.secure_port),
        &server_ca_pem,
        &cert_pem,
        &key_pem,
    ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn private_files_are_0600_and_no_temporary_file_is_left() {
        let dir = std::env::temp_dir().join(format!("ferrokube-certs-{}", uuid::Uuid::new_v4()));
        private_dir(&dir).expect("dir");
        assert_eq!(mode(&dir), 0o700);
        let key = dir.join("k.key");
        // A stale temporary file with a loose mode is not reused.
        std::fs::write(key.with_extension("tmp"), "old").expect("stale tmp");
        write(&key, "secret", true).expect("write");
        assert_eq!(mode(&key), 0o600);
        assert_eq!(
            std::fs::read_to_string(&key).ok().as_deref(),
            Some("secret")
        );
        assert!(!key.with_extension("tmp").exists());
        let crt = dir.join("c.crt");
        write(&crt, "public", false).expect("write");
        assert_eq!(mode(&crt), 0o644);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn certificates_close_to_expiry_are_not_reused() {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        validity(&mut params, 10);
        let short = params.self_signed(&key).expect("cert").pem();
        assert!(!valid_long_enough(&short));
        let mut params = CertificateParams::default();
        validity(&mut params, 365);
        let long = params.self_signed(&key).expect("cert").pem();
        assert!(valid_long_enough(&long));
        assert!(!valid_long_enough("not a certificate"));
    }
}

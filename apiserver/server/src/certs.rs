//! The cluster PKI: on first start a CA, a serving certificate and an admin client certificate
//! (O=system:masters) are generated into the data dir and `admin.kubeconfig` is written; later
//! starts reuse them. User-supplied files (`--tls-cert-file`, `--client-ca-file`) take precedence.

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
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(io)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
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
    let mut params = CertificateParams::default();
    params.distinguished_name = name("ferrokube-ca", None);
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
    std::fs::create_dir_all(&pki_dir).map_err(|source| CertError::Io {
        path: pki_dir.clone(),
        source,
    })?;
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
        write(&ca_cert_path, &c, false)?;
        write(&ca_key_path, &k, true)?;
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
                let reuse = cert_path.exists()
                    && key_path.exists()
                    && std::fs::read_to_string(&sans_path).ok().as_deref()
                        == Some(sans_line.as_str());
                if reuse {
                    (read(&cert_path)?, read(&key_path)?)
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
                    write(&cert_path, &c, false)?;
                    write(&key_path, &k, true)?;
                    write(&sans_path, &sans_line, false)?;
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
    write(&admin_kubeconfig, &kubeconfig, true)?;
    Ok(Pki {
        serving_cert_pem,
        serving_key_pem,
        client_ca_pem,
        admin_kubeconfig,
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
) -> Result<(String, String), CertError> {
    let cert_path = pki_dir.join(format!("{file}.crt"));
    let key_path = pki_dir.join(format!("{file}.key"));
    if cert_path.exists() && key_path.exists() {
        return Ok((read(&cert_path)?, read(&key_path)?));
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
    write(&cert_path, &c, false)?;
    write(&key_path, &k, true)?;
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
    ];
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
    let (cert_pem, key_pem) = client_cert(&pki_dir, file, cn, org, &issuer)?;
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

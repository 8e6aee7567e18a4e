//! Request-header authentication (upstream `pkg/authentication/request/headerrequest` behind
//! `x509request.NewDynamicCAVerifier`): a front proxy (another API server's aggregator, or an
//! authenticating proxy) presents a client certificate signed by the
//! `--requestheader-client-ca-file` CA, with a common name in `--requestheader-allowed-names`
//! (any when empty), and names the user it authenticated in headers: the first of
//! `--requestheader-username-headers` with a value, the first of the
//! `--requestheader-uid-headers` with a value as the UID (upstream's `RemoteRequestHeaderUID`,
//! beta and on since 1.33), every value of the `--requestheader-group-headers`, and `--requestheader-extra-headers-prefix<key>` headers as
//! extras (key lower-cased and percent-decoded).
//!
//! Outcomes as upstream: no certificate, or a trusted proxy naming no user → this
//! authenticator does not apply (the others run); a certificate the CA did not sign or with a
//! name not allowed → an error (the request may still authenticate otherwise, e.g. as an x509
//! client of the cluster CA).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use http::HeaderMap;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use crate::UserInfo;
use crate::certs::FrontProxy;

/// The configured request-header authenticator.
pub struct RequestHeaderAuth {
    verifier: Arc<dyn ClientCertVerifier>,
    allowed_names: Vec<String>,
    username_headers: Vec<String>,
    uid_headers: Vec<String>,
    group_headers: Vec<String>,
    extra_prefixes: Vec<String>,
}

impl std::fmt::Debug for RequestHeaderAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHeaderAuth")
            .field("allowed_names", &self.allowed_names)
            .field("username_headers", &self.username_headers)
            .finish_non_exhaustive()
    }
}

impl RequestHeaderAuth {
    /// `None` when no request-header CA is configured.
    pub fn new(cfg: &FrontProxy) -> anyhow::Result<Option<RequestHeaderAuth>> {
        if cfg.ca_pem.trim().is_empty() {
            return Ok(None);
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut cfg.ca_pem.as_bytes()) {
            roots
                .add(c.context("parsing the request-header CA")?)
                .context("adding the request-header CA")?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("building the request-header verifier")?;
        Ok(Some(RequestHeaderAuth {
            verifier,
            allowed_names: cfg.allowed_names.clone(),
            username_headers: cfg.username_headers.clone(),
            uid_headers: cfg.uid_headers.clone(),
            group_headers: cfg.group_headers.clone(),
            extra_prefixes: cfg
                .extra_headers_prefix
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
        }))
    }

    /// Whether `chain` is a trusted front proxy: signed by the CA, name allowed.
    pub fn verify_proxy(&self, chain: &[CertificateDer<'static>]) -> Result<(), String> {
        let (leaf, rest) = chain.split_first().ok_or("empty chain")?;
        self.verifier
            .verify_client_cert(leaf, rest, UnixTime::now())
            .map_err(|e| format!("verifying the front proxy certificate: {e}"))?;
        if self.allowed_names.is_empty() {
            return Ok(());
        }
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| format!("parsing the front proxy certificate: {e}"))?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or("");
        if self.allowed_names.iter().any(|n| n == cn) {
            Ok(())
        } else {
            // Upstream's `verifySubject` message.
            Err(format!(
                "x509: subject with cn={cn} is not in the allowed list"
            ))
        }
    }

    /// The user the headers name (after [`verify_proxy`](Self::verify_proxy) succeeded);
    /// `None` when no username header has a value.
    pub fn user(&self, headers: &HeaderMap) -> Option<UserInfo> {
        let username = first_value(headers, &self.username_headers)?;
        let uid = first_value(headers, &self.uid_headers).unwrap_or_default();
        let groups = self
            .group_headers
            .iter()
            .flat_map(|h| headers.get_all(h.as_str()).into_iter())
            .filter_map(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in headers {
            let name = name.as_str();
            let Some(key) = self
                .extra_prefixes
                .iter()
                .find_map(|p| name.strip_prefix(p.as_str()))
            else {
                continue;
            };
            let Ok(v) = value.to_str() else { continue };
            if key.is_empty() || v.is_empty() {
                continue;
            }
            extra
                .entry(unescape_extra_key(key).to_ascii_lowercase())
                .or_default()
                .push(v.to_string());
        }
        Some(UserInfo {
            username,
            uid,
            groups,
            extra,
        })
    }
}

/// The first non-empty value of the first of `names` that has one (upstream `headerValue`).
fn first_value(headers: &HeaderMap, names: &[String]) -> Option<String> {
    names.iter().find_map(|h| {
        headers
            .get(h.as_str())
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    })
}

/// Percent-decodes an extra key (upstream `url.PathUnescape`); an invalid escape keeps the key
/// as it is.
fn unescape_extra_key(key: &str) -> String {
    let b = key.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return key.to_string(),
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> RequestHeaderAuth {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rcgen::KeyPair::generate().expect("key");
        let ca = rcgen::CertificateParams::default()
            .self_signed(&key)
            .expect("ca");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("root");
        RequestHeaderAuth {
            verifier: rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("verifier"),
            allowed_names: vec![],
            username_headers: vec!["X-Remote-User".into(), "X-Other-User".into()],
            uid_headers: vec!["X-Remote-Uid".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_prefixes: vec!["x-remote-extra-".into()],
        }
    }

    #[test]
    fn headers_name_the_user_groups_and_extras() {
        let a = auth();
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", "".parse().expect("v"));
        h.insert("x-other-user", "alice".parse().expect("v"));
        h.append("x-remote-group", "g1".parse().expect("v"));
        h.append("x-remote-group", "g2".parse().expect("v"));
        h.append("x-remote-extra-Scopes%2Fa", "x".parse().expect("v"));
        h.append("x-remote-extra-scopes%2fa", "y".parse().expect("v"));
        let u = a.user(&h).expect("user");
        assert_eq!(u.username, "alice");
        assert_eq!(u.uid, "", "no UID header: no UID");
        h.insert("x-remote-uid", "uid-1".parse().expect("v"));
        let u = a.user(&h).expect("user");
        assert_eq!(u.uid, "uid-1");
        assert_eq!(u.groups, ["g1", "g2"]);
        assert_eq!(u.extra["scopes/a"], ["x", "y"]);
        assert!(a.user(&HeaderMap::new()).is_none());
    }

    #[test]
    fn a_certificate_of_another_ca_is_no_front_proxy() {
        let a = auth();
        let key = rcgen::KeyPair::generate().expect("key");
        let other = rcgen::CertificateParams::new(vec!["x".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let err = a.verify_proxy(&[other.der().clone()]).expect_err("refused");
        assert!(err.contains("front proxy"), "{err}");
    }
}

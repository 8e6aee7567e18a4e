//! Authentication, impersonation and authorization — the security half of the filter chain,
//! configured by kube-apiserver's flags.
//!
//! - [`authn`]: the union of authenticators (x509, token file, service-account JWTs
//!   ([`serviceaccount`], [`jwt`]), bootstrap tokens, token webhook ([`webhook`]), anonymous).
//! - [`impersonation`]: `Impersonate-*` headers, each authorized with the `impersonate` verb.
//! - [`authz`]: `--authorization-mode`, an ordered union of authorizers with a tri-state
//!   [`Decision`] that fails closed; [`rbac`] (index fed by [`rbac_feed`], policy from
//!   [`bootstrap`], [`escalation`] checks on writes), ABAC, webhook and the [`node`] authorizer.
//! - [`csr`]: the CertificateSigningRequest approval subresource and the in-process signer.
//!
//! Start reading at [`Auth::new`] and `filters.rs`.

pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod csr;
pub mod escalation;
pub mod impersonation;
pub mod jwt;
pub mod node;
pub mod rbac;
pub mod rbac_feed;
pub mod requestheader;
pub mod serviceaccount;
pub mod trust;
pub mod webhook;

use std::sync::Arc;

use anyhow::Context;
use ferrokube_machinery::request_info::RequestInfo;

use crate::UserInfo;
use crate::options::ServerOptions;

/// An authorizer's answer. There is no default: all NoOpinion means deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    NoOpinion,
}

/// What a request asks to do (upstream `authorizer.Attributes`).
#[derive(Clone, Copy, Debug)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    pub verb: &'a str,
    pub resource_request: bool,
    /// The URL path (non-resource requests).
    pub path: &'a str,
    pub namespace: &'a str,
    pub api_group: &'a str,
    pub api_version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
}

impl<'a> Attributes<'a> {
    /// The attributes of a parsed request.
    pub fn from_request(user: &'a UserInfo, info: &'a RequestInfo) -> Attributes<'a> {
        Attributes {
            user,
            verb: &info.verb,
            resource_request: info.is_resource_request,
            path: &info.path,
            namespace: &info.namespace,
            api_group: &info.api_group,
            api_version: &info.api_version,
            resource: &info.resource,
            subresource: &info.subresource,
            name: &info.name,
        }
    }

    /// A non-resource request.
    pub fn non_resource(user: &'a UserInfo, verb: &'a str, path: &'a str) -> Attributes<'a> {
        Attributes {
            user,
            verb,
            resource_request: false,
            path,
            namespace: "",
            api_group: "",
            api_version: "",
            resource: "",
            subresource: "",
            name: "",
        }
    }
}

/// Upstream `responsewriters.forbiddenMessage`.
pub fn forbidden_message(a: &Attributes<'_>) -> String {
    let user = &a.user.username;
    if !a.resource_request {
        return format!("User \"{user}\" cannot {} path \"{}\"", a.verb, a.path);
    }
    let resource = if a.subresource.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    if !a.namespace.is_empty() {
        return format!(
            "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" in the namespace \"{}\"",
            a.verb, a.api_group, a.namespace
        );
    }
    format!(
        "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" at the cluster scope",
        a.verb, a.api_group
    )
}

/// The 403 Status of a refused request (upstream `responsewriters.Forbidden`).
pub fn forbidden_status(a: &Attributes<'_>, reason: &str) -> ferrokube_machinery::status::Status {
    let msg = forbidden_message(a);
    let msg = if reason.is_empty() {
        msg
    } else {
        format!("{msg}: {reason}")
    };
    if a.resource_request {
        ferrokube_machinery::status::Status::forbidden(a.api_group, a.resource, a.name, &msg)
    } else {
        let mut s = ferrokube_machinery::status::Status::forbidden("", "", "", &msg);
        s.details = None;
        s
    }
}

/// The security configuration of a running server.
pub struct Auth {
    pub authn: authn::Authenticator,
    pub authz: Arc<authz::Authorizer>,
    pub rbac: Arc<rbac::RbacIndex>,
    pub node_graph: Arc<node::NodeGraph>,
    pub service_accounts: Option<Arc<serviceaccount::ServiceAccountAuth>>,
    /// Signs approved CSRs (the cluster CA; None with a user-supplied client CA only).
    pub signer: Option<csr::CaSigner>,
    /// What `kube-system/extension-apiserver-authentication` publishes.
    pub trust: trust::ClusterTrust,
}

impl Auth {
    /// Builds authenticators and authorizers from the flags.
    pub fn new(
        opts: &ServerOptions,
        dir: &std::path::Path,
        client_ca_pem: &str,
        front_proxy: Option<&crate::certs::FrontProxy>,
    ) -> anyhow::Result<Auth> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut client_ca_pem.as_bytes()) {
            roots
                .add(c.context("parsing the client CA")?)
                .context("adding the client CA")?;
        }
        let x509 =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("building the x509 authenticator")?;
        let tokens = match &opts.token_auth_file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                authn::parse_token_file(&text).map_err(anyhow::Error::msg)?
            }
            None => Default::default(),
        };
        let host = match opts.bind_address {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let issuers = if opts.service_account_issuer.is_empty() {
            vec!["https://kubernetes.default.svc.cluster.local".to_string()]
        } else {
            opts.service_account_issuer.clone()
        };
        let service_accounts = Arc::new(
            serviceaccount::ServiceAccountAuth::load(
                opts.service_account_signing_key_file.as_deref(),
                &opts.service_account_key_file,
                &dir.join("pki"),
                issuers,
                opts.api_audiences.clone(),
                opts.service_account_max_token_expiration
                    .as_deref()
                    .map(webhook::parse_duration)
                    .transpose()?
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0),
                format!("https://{host}:{}/openid/v1/jwks", opts.secure_port),
            )
            .context("service account keys")?,
        );
        let token_webhook = match &opts.authentication_token_webhook_config_file {
            Some(f) => Some(webhook::TokenWebhook::new(
                f,
                webhook::parse_duration(&opts.authentication_token_webhook_cache_ttl)?,
            )?),
            None => None,
        };
        let rbac = Arc::new(rbac::RbacIndex::default());
        let node_graph = Arc::new(node::NodeGraph::default());
        let authz = Arc::new(authz::Authorizer::new(
            opts,
            rbac.clone(),
            node_graph.clone(),
        )?);
        let signer = csr::CaSigner::load(&dir.join("pki")).ok();
        Ok(Auth {
            authn: authn::Authenticator {
                anonymous: opts.anonymous_auth,
                front_proxy: match front_proxy {
                    Some(f) => requestheader::RequestHeaderAuth::new(f)?.map(Arc::new),
                    None => None,
                },
                x509,
                tokens,
                bootstrap_tokens: opts.enable_bootstrap_token_auth,
                service_accounts: Some(service_accounts.clone()),
                webhook: token_webhook,
            },
            authz,
            rbac,
            node_graph,
            service_accounts: Some(service_accounts),
            signer,
            trust: trust::ClusterTrust {
                client_ca_pem: client_ca_pem.to_string(),
                front_proxy: front_proxy.cloned(),
            },
        })
    }
}

/// Startup work once the store is up and the bootstrap policy written
/// ([`bootstrap::reconcile`]): the RBAC index (loaded before the server reports ready), the
/// aggregation controller, the node graph and the CSR signer.
pub async fn start(state: &Arc<crate::AppState>) -> anyhow::Result<()> {
    // Independent of one another: side by side (the aggregation's and the trust's writes
    // then share commits).
    tokio::try_join!(
        async { rbac_feed::start(state).await.context("RBAC index") },
        async { node::start(state).await.context("node authorizer graph") },
        async {
            trust::start(state)
                .await
                .context("publishing extension-apiserver-authentication")
        },
    )?;
    csr::start_signer(state);
    Ok(())
}

//! Authentication: a union of authenticators, first success wins (upstream
//! `pkg/authentication/request/union`), in kube-apiserver's order: x509 client certificates,
//! then bearer tokens (static token file, service-account JWTs, bootstrap tokens, the token
//! webhook). When an authenticator *failed* (bad certificate, unknown token) the request gets
//! 401; only a request that presented no credentials at all becomes `system:anonymous`
//! (`union.NewFailOnError(..., anonymous)`), and only with `--anonymous-auth`.
//!
//! Hostile input: bearer tokens longer than [`jwt::MAX_TOKEN_BYTES`] are refused unread;
//! bootstrap tokens are shape-checked before the one storage read they cause; nothing is
//! recorded or cached under a user-chosen string before it authenticated (the webhook cache
//! is keyed by the SHA-256 of a token, filled only with the webhook's answers, and bounded).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use base64::Engine;
use http::HeaderMap;
use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use serde_json::Value;

use super::jwt;
use super::serviceaccount::ServiceAccountAuth;
use super::webhook::TokenWebhook;
use crate::{AppState, UserInfo};

/// `system:authenticated`, added to every authenticated user.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
/// `system:unauthenticated`, the anonymous user's group.
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
/// The anonymous user.
pub const ANONYMOUS: &str = "system:anonymous";

/// Requests a client certificate and checks the handshake signature (proof of the key), but
/// leaves judging the chain to the x509 authenticator.
#[derive(Debug)]
pub struct AcceptAnyClientCert(pub Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for AcceptAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A connection's client certificate chain and, once checked, who it names.
#[derive(Debug)]
pub struct PeerCerts {
    chain: Vec<CertificateDer<'static>>,
    /// `(user, notAfter as unix seconds)`, or why the chain was refused.
    verified: OnceLock<Result<(UserInfo, i64), String>>,
    /// Whether the chain is a trusted front proxy (request-header authentication).
    front_proxy: OnceLock<Result<(), String>>,
}

impl PeerCerts {
    /// The chain a client presented (leaf first).
    pub fn new(chain: &[CertificateDer<'_>]) -> PeerCerts {
        PeerCerts {
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            verified: OnceLock::new(),
            front_proxy: OnceLock::new(),
        }
    }
}

/// The user a certificate names: CN is the name, each O a group (upstream `CommonNameUserConversion`).
pub fn user_of_cert(der: &[u8]) -> Option<(UserInfo, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let username = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if username.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((
        UserInfo {
            username,
            groups,
            ..Default::default()
        },
        cert.validity().not_after.timestamp(),
    ))
}

/// Parses a `--token-auth-file` (CSV: `token,user,uid,"group1,group2"`).
pub fn parse_token_file(text: &str) -> Result<HashMap<String, UserInfo>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = csv_fields(line);
        if fields.len() < 3 {
            return Err(format!(
                "token file line {}: want at least 3 fields (token,user,uid), got {}",
                i + 1,
                fields.len()
            ));
        }
        if fields[0].is_empty() || fields[1].is_empty() {
            return Err(format!("token file line {}: empty token or user", i + 1));
        }
        let groups = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let user = UserInfo {
            username: fields[1].clone(),
            uid: fields[2].clone(),
            groups,
            extra: BTreeMap::new(),
        };
        if out.insert(fields[0].clone(), user).is_some() {
            tracing::warn!(
                line = i + 1,
                "duplicate token in the token file; the last wins"
            );
        }
    }
    Ok(out)
}

/// One CSV record (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// The union of configured authenticators.
pub struct Authenticator {
    pub anonymous: bool,
    /// Request-header authentication of front proxies (tried first, as upstream).
    pub front_proxy: Option<Arc<super::requestheader::RequestHeaderAuth>>,
    /// Verifies client certificate chains against the client CA bundle.
    pub x509: Arc<dyn ClientCertVerifier>,
    pub tokens: HashMap<String, UserInfo>,
    pub bootstrap_tokens: bool,
    pub service_accounts: Option<Arc<ServiceAccountAuth>>,
    pub webhook: Option<TokenWebhook>,
}

/// What authentication concluded.
#[derive(Debug)]
pub enum Authenticated {
    /// A user (with `system:authenticated`).
    User(UserInfo),
    /// No credentials, anonymous allowed.
    Anonymous(UserInfo),
    /// Credentials presented and refused, or none and anonymous disabled: 401.
    Refused,
}

/// The anonymous identity.
pub fn anonymous_user() -> UserInfo {
    UserInfo {
        username: ANONYMOUS.into(),
        groups: vec![ALL_UNAUTHENTICATED.into()],
        ..Default::default()
    }
}

/// Adds `system:authenticated` (upstream `AuthenticatedGroupAdder`).
pub fn with_authenticated_group(mut u: UserInfo) -> UserInfo {
    if u.username != ANONYMOUS && !u.groups.iter().any(|g| g == ALL_AUTHENTICATED) {
        u.groups.push(ALL_AUTHENTICATED.into());
    }
    u
}

/// A bearer header that can only fail authentication.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid bearer token")]
pub struct InvalidBearer;

/// The bearer token of a request: `Authorization: Bearer <token>` (upstream `bearertoken`).
/// `Err` for a bearer header whose token is empty, not text, or too long.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, InvalidBearer> {
    let Some(v) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| InvalidBearer)?.trim();
    let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > jwt::MAX_TOKEN_BYTES {
        return Err(InvalidBearer);
    }
    Ok(Some(token))
}

impl Authenticator {
    /// Authenticates one request.
    pub async fn authenticate(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        peer: Option<&PeerCerts>,
    ) -> Authenticated {
        let mut failed = false;
        if let (Some(fp), Some(peer)) = (&self.front_proxy, peer) {
            match peer
                .front_proxy
                .get_or_init(|| fp.verify_proxy(&peer.chain))
            {
                Ok(()) => {
                    if let Some(u) = fp.user(headers) {
                        return Authenticated::User(with_authenticated_group(u));
                    }
                }
                // Not a front proxy; the certificate may still name an x509 user.
                Err(e) => tracing::trace!(error = %e, "no front proxy"),
            }
        }
        if let Some(peer) = peer {
            match self.verify_peer(peer) {
                Ok(u) => return Authenticated::User(with_authenticated_group(u)),
                Err(e) => {
                    tracing::debug!(error = %e, "client certificate refused");
                    failed = true;
                }
            }
        }
        match bearer_token(headers) {
            // Boxed: token review may be an HTTP call (webhook) whose future would otherwise
            // size every request's authentication future, certificates included.
            Ok(Some(token)) => match Box::pin(self.authenticate_token(state, token)).await {
                Some(u) => return Authenticated::User(with_authenticated_group(u)),
                None => failed = true,
            },
            Ok(None) => {}
            Err(InvalidBearer) => failed = true,
        }
        if failed || !self.anonymous {
            return Authenticated::Refused;
        }
        Authenticated::Anonymous(anonymous_user())
    }

    fn verify_peer(&self, peer: &PeerCerts) -> Result<UserInfo, String> {
        let verified = peer.verified.get_or_init(|| {
            let (leaf, rest) = peer.chain.split_first().ok_or("empty chain")?;
            self.x509
                .verify_client_cert(leaf, rest, UnixTime::now())
                .map_err(|e| format!("verifying certificate: {e}"))?;
            user_of_cert(leaf.as_ref()).ok_or_else(|| "certificate names no user".to_string())
        });
        match verified {
            Ok((u, not_after)) if *not_after > jiff::Timestamp::now().as_second() => Ok(u.clone()),
            Ok(_) => Err("certificate expired".into()),
            Err(e) => Err(e.clone()),
        }
    }

    /// The token authenticators in order (also what TokenReview answers with).
    pub async fn authenticate_token(&self, state: &AppState, token: &str) -> Option<UserInfo> {
        if token.is_empty() || token.len() > jwt::MAX_TOKEN_BYTES {
            return None;
        }
        if let Some(u) = self.tokens.get(token) {
            return Some(u.clone());
        }
        if let Some(sa) = &self.service_accounts
            && jwt::peek_header(token).is_some()
        {
            match sa.authenticate(state, token).await {
                Ok(Some(u)) => return Some(u),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "service account token refused");
                    return None;
                }
            }
        }
        if self.bootstrap_tokens
            && let Some(u) = bootstrap_token(state, token).await
        {
            return Some(u);
        }
        if let Some(w) = &self.webhook {
            return w.authenticate(token).await;
        }
        None
    }
}

/// A bootstrap token `<id>.<secret>` (`[a-z0-9]{6}.[a-z0-9]{16}`) against the kube-system
/// Secret `bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` (upstream
/// `plugin/pkg/auth/authenticator/token/bootstrap`).
async fn bootstrap_token(state: &AppState, token: &str) -> Option<UserInfo> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if !ok(id, 6) || !ok(secret, 16) {
        return None;
    }
    let h = state.registry.get("", "v1", "secrets")?;
    let (kv, _) = state
        .store
        .cache
        .get(&h.key("kube-system", &format!("bootstrap-token-{id}")), 0)
        .await
        .ok()?;
    let obj: Value = serde_json::from_slice(&kv?.value).ok()?;
    if obj.get("type").and_then(Value::as_str) != Some("bootstrap.kubernetes.io/token")
        || obj.pointer("/metadata/deletionTimestamp").is_some()
    {
        return None;
    }
    let data = |k: &str| -> Option<String> {
        let b = obj.pointer(&format!("/data/{k}"))?.as_str()?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
        String::from_utf8(raw).ok()
    };
    let stored_id = data("token-id")?;
    let stored_secret = data("token-secret")?;
    // Constant-time comparison of equal-length secrets.
    let same = stored_secret.len() == secret.len()
        && stored_secret
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if stored_id != id || !same || data("usage-bootstrap-authentication").as_deref() != Some("true")
    {
        return None;
    }
    if let Some(exp) = data("expiration") {
        let t: jiff::Timestamp = exp.parse().ok()?;
        if t <= jiff::Timestamp::now() {
            return None;
        }
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    for g in data("auth-extra-groups").unwrap_or_default().split(',') {
        let g = g.trim();
        if g.starts_with("system:bootstrappers:") {
            groups.push(g.to_string());
        }
    }
    Some(UserInfo {
        username: format!("system:bootstrap:{id}"),
        groups,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_csv() {
        let m = parse_token_file("t1,bob,1001,\"dev,ops\"\n\nt2,alice,1002\n").expect("parse");
        assert_eq!(m["t1"].username, "bob");
        assert_eq!(m["t1"].groups, vec!["dev", "ops"]);
        assert!(m["t2"].groups.is_empty());
        assert!(parse_token_file("only,two\n").is_err());
    }

    #[test]
    fn bearer_header_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), Ok(None));
        h.insert("authorization", "Basic abc".parse().expect("hv"));
        assert_eq!(bearer_token(&h), Ok(None));
        h.insert("authorization", "Bearer abc".parse().expect("hv"));
        assert_eq!(bearer_token(&h), Ok(Some("abc")));
        h.insert("authorization", "Bearer  ".parse().expect("hv"));
        assert_eq!(bearer_token(&h), Err(InvalidBearer));
        let long = format!("Bearer {}", "a".repeat(jwt::MAX_TOKEN_BYTES + 1));
        h.insert("authorization", long.parse().expect("hv"));
        assert_eq!(bearer_token(&h), Err(InvalidBearer));
    }
}

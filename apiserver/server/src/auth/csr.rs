//! CertificateSigningRequests: the `approval` subresource (`kubectl certificate
//! approve|deny`; the CertificateApproval admission plugin checks the `approve` verb on the
//! signer) and an in-process signer for `kubernetes.io/kube-apiserver-client` and
//! `kubernetes.io/kube-apiserver-client-kubelet` that fills `status.certificate` of approved
//! requests with a certificate from the cluster CA (upstream `pkg/controller/certificates/signer`),
//! honouring `spec.expirationSeconds`, so the issued certificate authenticates.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};

use super::rbac_feed::{Sink, feed};
use crate::AppState;
use crate::endpoints::Scope;
use crate::error::{ApiError, ApiResult};
use crate::registry::request::{UpdateTarget, WriteOptions};
use crate::registry::store::now_rfc3339;
use ferrokube_machinery::validation::FieldError;

/// The signers this server signs for.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// Kubelet client certificates.
pub const KUBELET_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Upstream `--cluster-signing-duration` default (one year).
const DEFAULT_DURATION_SECS: i64 = 365 * 24 * 3600;

/// The cluster CA, able to sign.
pub struct CaSigner {
    issuer: Issuer<'static, KeyPair>,
    ca_not_after: i64,
}

impl CaSigner {
    /// From `pki/ca.crt` and `pki/ca.key`.
    pub fn load(pki_dir: &Path) -> anyhow::Result<CaSigner> {
        let cert = std::fs::read_to_string(pki_dir.join("ca.crt"))?;
        let key = KeyPair::from_pem(&std::fs::read_to_string(pki_dir.join("ca.key"))?)?;
        let der = rustls_pemfile::certs(&mut cert.as_bytes())
            .next()
            .ok_or_else(|| anyhow::anyhow!("no CA certificate"))??;
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())?;
        let ca_not_after = parsed.validity().not_after.timestamp();
        Ok(CaSigner {
            issuer: Issuer::from_ca_cert_pem(&cert, key)?,
            ca_not_after,
        })
    }

    /// Signs a PEM CSR for a client signer; `Err` is the reason for a `Failed` condition.
    pub fn sign(
        &self,
        signer: &str,
        csr_pem: &str,
        expiration: Option<i64>,
    ) -> Result<String, String> {
        let mut req = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| format!("invalid certificate request: {e}"))?;
        let dn = &req.params.distinguished_name;
        let cn = match dn.get(&rcgen::DnType::CommonName) {
            Some(rcgen::DnValue::Utf8String(s)) => s.clone(),
            Some(rcgen::DnValue::PrintableString(s)) => s.as_str().to_string(),
            _ => String::new(),
        };
        if signer == KUBELET_SIGNER && !cn.starts_with("system:node:") {
            return Err("subject common name does not begin with system:node:".into());
        }
        let now = jiff::Timestamp::now().as_second();
        let secs = expiration
            .filter(|e| *e >= 600)
            .unwrap_or(DEFAULT_DURATION_SECS);
        let not_after = (now + secs).min(self.ca_not_after);
        let p = &mut req.params;
        p.is_ca = IsCa::NoCa;
        p.subject_alt_names.clear();
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before =
            time::OffsetDateTime::from_unix_timestamp(now - 300).map_err(|e| e.to_string())?;
        p.not_after =
            time::OffsetDateTime::from_unix_timestamp(not_after).map_err(|e| e.to_string())?;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(
            &uuid::Uuid::new_v4().into_bytes()[..16],
        ));
        req.signed_by(&self.issuer)
            .map(|c| c.pem())
            .map_err(|e| format!("signing: {e}"))
    }
}

/// On create, a CSR records who asked (upstream `csrStrategy.PrepareForCreate`: spec.username,
/// uid, groups and extra come from the requester, never from the body): a mutating admission
/// plugin. Other resources pass.
pub struct CsrRequestor;

#[async_trait::async_trait]
impl crate::admission::AdmissionPlugin for CsrRequestor {
    fn name(&self) -> &'static str {
        "CertificateSigningRequestRequestor"
    }

    async fn admit(&self, a: &crate::admission::Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
        let info = &a.handle.info;
        if a.operation == crate::admission::Operation::Create
            && info.group == "certificates.k8s.io"
            && info.plural == "certificatesigningrequests"
        {
            record_requestor(a.user, obj);
        }
        Ok(())
    }
}

fn record_requestor(u: &crate::UserInfo, obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("username".into(), json!(u.username));
        spec.insert("groups".into(), json!(u.groups));
        match u.uid.as_str() {
            "" => spec.remove("uid"),
            uid => spec.insert("uid".into(), json!(uid)),
        };
        match u.extra.is_empty() {
            true => spec.remove("extra"),
            false => spec.insert("extra".into(), json!(u.extra)),
        };
    }
}

fn conditions(obj: &Value) -> impl Iterator<Item = &Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn has_condition(obj: &Value, t: &str) -> bool {
    conditions(obj).any(|c| {
        c.get("type").and_then(Value::as_str) == Some(t)
            && c.get("status").and_then(Value::as_str) != Some("False")
    })
}

/// `PUT certificatesigningrequests/{name}/approval`: only `status.conditions` change.
pub async fn update_approval(scope: &Scope, mut req: Value) -> ApiResult<Value> {
    let name = scope.info.name.as_str();
    let h = &scope.handle;
    let kv = scope.state.store.get(h, "", name).await?;
    let current: Value = serde_json::from_slice(&kv.value).map_err(ApiError::Encoding)?;
    let now = now_rfc3339();
    let mut conds = req
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut errs = Vec::new();
    for (i, c) in conds.iter_mut().enumerate() {
        let t = c.get("type").and_then(Value::as_str).unwrap_or("");
        if !matches!(t, "Approved" | "Denied" | "Failed") {
            errs.push(FieldError::not_supported(
                format!("status.conditions[{i}].type"),
                json!(t),
                &["Approved", "Denied", "Failed"],
            ));
        }
        if c.get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            c["status"] = json!("True");
        }
        for f in ["lastUpdateTime", "lastTransitionTime"] {
            if c.get(f).is_none_or(Value::is_null) {
                c[f] = json!(now);
            }
        }
    }
    let mut probe = json!({"status": {"conditions": conds.clone()}});
    if has_condition(&probe, "Approved") && has_condition(&probe, "Denied") {
        errs.push(FieldError::invalid(
            "status.conditions",
            Value::Null,
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    if has_condition(&current, "Approved") && has_condition(&probe, "Denied")
        || has_condition(&current, "Denied") && has_condition(&probe, "Approved")
    {
        errs.push(FieldError::forbidden(
            "status.conditions",
            "updates may not change the Approved/Denied condition",
        ));
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(
            "certificates.k8s.io",
            "CertificateSigningRequest",
            name,
            &errs,
        ));
    }
    let mut new = current.clone();
    new["status"]["conditions"] = probe["status"]["conditions"].take();
    if let Some(m) = new.pointer_mut("/metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let _ = req.as_object_mut().map(|m| m.remove("status"));
    // The CertificateApproval admission plugin checks `approve` on the signer.
    let opts = WriteOptions {
        dry_run: scope.query.dry_run()?,
        subresource: UpdateTarget::Approval,
        warnings: scope.warnings.clone(),
        user: scope.user.clone(),
        ..WriteOptions::default()
    };
    let (out, _) = scope
        .state
        .store
        .update(h, "", name, |_| Ok(new.clone()), &opts)
        .await?;
    Ok(out)
}

struct CsrSink(tokio::sync::mpsc::UnboundedSender<String>);

impl Sink for CsrSink {
    fn reset(&self) {}
    fn apply(&self, _key: &str, obj: Option<&Value>) {
        let Some(o) = obj else { return };
        let signer = o
            .pointer("/spec/signerName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let issued = o
            .pointer("/status/certificate")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.is_empty());
        if (signer == CLIENT_SIGNER || signer == KUBELET_SIGNER)
            && !issued
            && has_condition(o, "Approved")
            && !has_condition(o, "Denied")
            && !has_condition(o, "Failed")
            && let Some(n) = o.pointer("/metadata/name").and_then(Value::as_str)
        {
            let _ = self.0.send(n.to_string());
        }
    }
}

/// Starts the signer loop (nothing when the cluster CA cannot sign).
pub fn start_signer(state: &Arc<AppState>) {
    if state.auth.signer.is_none() {
        tracing::info!("CSR signer disabled: the cluster CA key is not available");
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let weak = Arc::downgrade(state);
    let cache = state.store.cache.clone();
    tokio::spawn(async move {
        if let Err(e) = feed(
            cache,
            "/registry/certificatesigningrequests/".into(),
            Arc::new(CsrSink(tx)),
        )
        .await
        {
            tracing::warn!(error = %e, "CSR signer feed failed");
        }
    });
    tokio::spawn(async move {
        while let Some(name) = rx.recv().await {
            let Some(state) = weak.upgrade() else { return };
            if let Err(e) = sign_one(&state, &name).await {
                tracing::warn!(csr = %name, error = %e, "signing CSR failed");
            }
        }
    });
}

async fn sign_one(state: &AppState, name: &str) -> ApiResult<()> {
    let (Some(signer), Some(h)) = (
        state.auth.signer.as_ref(),
        state
            .registry
            .get("certificates.k8s.io", "v1", "certificatesigningrequests"),
    ) else {
        return Ok(());
    };
    let kv = state.store.get(h, "", name).await?;
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(ApiError::Encoding)?;
    if obj
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
    {
        return Ok(());
    }
    let signer_name = obj
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let request = obj
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let exp = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64);
    match signer.sign(&signer_name, &request, exp) {
        Ok(pem) => {
            obj["status"]["certificate"] =
                json!(base64::engine::general_purpose::STANDARD.encode(pem));
            tracing::info!(csr = %name, signer = %signer_name, "issued certificate");
        }
        Err(reason) => {
            let now = now_rfc3339();
            let mut conds = conditions(&obj).cloned().collect::<Vec<_>>();
            conds.push(json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": reason, "lastUpdateTime": now, "lastTransitionTime": now}));
            obj["status"]["conditions"] = json!(conds);
        }
    }
    let opts = WriteOptions {
        subresource: UpdateTarget::Status,
        ..WriteOptions::default()
    };
    state
        .store
        .update(h, "", name, |_| Ok(obj.clone()), &opts)
        .await?;
    Ok(())
}

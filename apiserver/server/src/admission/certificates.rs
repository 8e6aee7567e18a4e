//! The CertificateSigningRequest admission plugins (upstream
//! `plugin/pkg/admission/certificates/{approval,signing,subjectrestriction}`):
//! CertificateApproval asks for the `approve` verb on `signers` (the request's signerName, or
//! `<domain>/*`) before `certificatesigningrequests/approval` changes; CertificateSigning asks
//! for `sign` before `/status` changes the issued certificate or the conditions;
//! CertificateSubjectRestriction refuses a `kubernetes.io/kube-apiserver-client` request for
//! the `system:masters` group.
//!
//! Writes by the server itself (the in-process signer, with no user) are not checked: an
//! authenticated request always has a user name.

use base64::Engine;
use serde_json::Value;

use super::api::ApiHandle;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::auth::Decision;
use crate::error::ApiResult;

const GROUP: &str = "certificates.k8s.io";
const CSRS: &str = "certificatesigningrequests";
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

fn signer(obj: &Value) -> &str {
    obj.pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Upstream `certificates.IsAuthorizedForSignerName`: `verb` on `signers/<name>`, else on
/// `signers/<domain>/*`.
async fn authorized_for_signer(
    api: &ApiHandle,
    a: &Attributes<'_>,
    verb: &str,
    signer: &str,
) -> ApiResult<bool> {
    let state = api.state()?;
    let wildcard = format!("{}/*", signer.split('/').next().unwrap_or_default());
    for name in [signer, wildcard.as_str()] {
        let mut attrs = crate::auth::Attributes::non_resource(a.user, verb, "");
        attrs.resource_request = true;
        attrs.api_group = GROUP;
        attrs.resource = "signers";
        attrs.name = name;
        if state.auth.authz.authorize(&attrs).await.decision == Decision::Allow {
            return Ok(true);
        }
    }
    Ok(false)
}

/// CertificateApproval.
pub struct CertificateApproval {
    pub api: ApiHandle,
}

#[async_trait::async_trait]
impl AdmissionPlugin for CertificateApproval {
    fn name(&self) -> &'static str {
        "CertificateApproval"
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        _old: Option<&Value>,
    ) -> ApiResult<()> {
        if a.operation != Operation::Update || a.subresource != "approval" || !a.is(GROUP, CSRS) {
            return Ok(());
        }
        if a.user.username.is_empty() {
            return Ok(());
        }
        // The new object's signer, in case an update tries to change it.
        let signer = signer(obj);
        if !authorized_for_signer(&self.api, a, "approve", signer).await? {
            return Err(a.forbidden(&format!(
                "user not permitted to approve requests with signerName {signer:?}"
            )));
        }
        Ok(())
    }
}

/// CertificateSigning.
pub struct CertificateSigning {
    pub api: ApiHandle,
}

#[async_trait::async_trait]
impl AdmissionPlugin for CertificateSigning {
    fn name(&self) -> &'static str {
        "CertificateSigning"
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        if a.operation != Operation::Update || a.subresource != "status" || !a.is(GROUP, CSRS) {
            return Ok(());
        }
        let Some(old) = old else {
            return Ok(());
        };
        if a.user.username.is_empty() {
            return Ok(());
        }
        let unchanged = |p: &str| obj.pointer(p) == old.pointer(p);
        if unchanged("/status/certificate") && unchanged("/status/conditions") {
            return Ok(());
        }
        let signer = signer(old);
        if !authorized_for_signer(&self.api, a, "sign", signer).await? {
            return Err(a.forbidden(&format!(
                "user not permitted to sign requests with signerName {signer:?}"
            )));
        }
        Ok(())
    }
}

/// CertificateSubjectRestriction.
pub struct CertificateSubjectRestriction;

/// The organizations of a PEM certificate request's subject.
fn organizations(pem: &[u8]) -> Result<Vec<String>, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| e.to_string())?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(format!(
            "PEM block type must be CERTIFICATE REQUEST, not {:?}",
            pem.label
        ));
    }
    let (_, csr) =
        <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&pem.contents)
            .map_err(|e| e.to_string())?;
    Ok(csr
        .certification_request_info
        .subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect())
}

#[async_trait::async_trait]
impl AdmissionPlugin for CertificateSubjectRestriction {
    fn name(&self) -> &'static str {
        "CertificateSubjectRestriction"
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        _old: Option<&Value>,
    ) -> ApiResult<()> {
        if a.operation != Operation::Create || !a.subresource.is_empty() || !a.is(GROUP, CSRS) {
            return Ok(());
        }
        let signer = signer(obj);
        if signer != CLIENT_SIGNER {
            return Ok(());
        }
        let request = obj
            .pointer("/spec/request")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let orgs = base64::engine::general_purpose::STANDARD
            .decode(request)
            .map_err(|e| e.to_string())
            .and_then(|pem| organizations(&pem))
            .map_err(|e| a.forbidden(&format!("failed to parse CSR: {e}")))?;
        if orgs.iter().any(|o| o == "system:masters") {
            return Err(a.forbidden(&format!(
                "use of {signer} signer with system:masters group is not allowed"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::organizations;

    #[test]
    fn subject_organizations_are_read() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mallory");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        let pem = params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        assert_eq!(
            organizations(pem.as_bytes()).expect("parse"),
            ["system:masters"]
        );
        assert!(organizations(b"-----BEGIN GARBAGE-----\nAAAA\n-----END GARBAGE-----\n").is_err());
        assert!(organizations(b"not pem").is_err());
    }
}

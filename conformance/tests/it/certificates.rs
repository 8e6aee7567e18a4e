//! The CertificateSigningRequest admission plugins with stock kubectl:
//! CertificateSubjectRestriction refuses a `kubernetes.io/kube-apiserver-client` request for
//! `system:masters`; CertificateApproval needs `approve` on the signer (`kubectl certificate
//! approve` as a user with only CSR rights gets upstream's 403); CertificateSigning needs
//! `sign` before `/status` sets a certificate.

use ferrokube_conformance::TestServer;

use crate::auth::{kc, must_run, scratch, token_kubeconfig};

fn csr_manifest(dir: &std::path::Path, name: &str, subj: &str, signer: &str) -> String {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    must_run(
        "openssl",
        &["genrsa", "-out", key.to_str().expect("p"), "2048"],
    );
    must_run(
        "openssl",
        &[
            "req",
            "-new",
            "-key",
            key.to_str().expect("p"),
            "-out",
            csr.to_str().expect("p"),
            "-subj",
            subj,
        ],
    );
    let b64 = must_run("base64", &["-w0", csr.to_str().expect("p")]);
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {}\n  signerName: {signer}\n  usages: [client auth]\n",
        b64.trim()
    )
}

const CSR_EDITOR: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: csr-editor
rules:
- apiGroups: ["certificates.k8s.io"]
  resources: ["certificatesigningrequests", "certificatesigningrequests/approval", "certificatesigningrequests/status"]
  verbs: ["get", "list", "create", "update", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: carol-csr-editor
subjects:
- kind: User
  name: carol
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: ClusterRole
  name: csr-editor
  apiGroup: rbac.authorization.k8s.io
"#;

const SIGNER_APPROVER: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: example-approver
rules:
- apiGroups: ["certificates.k8s.io"]
  resources: ["signers"]
  resourceNames: ["example.com/*"]
  verbs: ["approve"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: carol-example-approver
subjects:
- kind: User
  name: carol
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: ClusterRole
  name: example-approver
  apiGroup: rbac.authorization.k8s.io
"#;

#[test]
fn csr_admission_plugins_check_signer_rights_and_subjects() {
    let dir = scratch("csr-plugins");
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "carol-token,carol,2001\n").expect("tokens");
    let server = TestServer::start_with_args(&["--token-auth-file", tokens.to_str().expect("p")]);

    // CertificateSubjectRestriction: even the admin cannot ask for system:masters.
    let masters = csr_manifest(
        &dir,
        "masters",
        "/CN=mallory/O=system:masters",
        "kubernetes.io/kube-apiserver-client",
    );
    let out = server.kubectl_stdin(["create", "-f", "-"], &masters);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("certificatesigningrequests.certificates.k8s.io \"masters\" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"),
        "{err}"
    );
    // Another signer may carry the group (the restriction is for the apiserver client signer).
    let other = csr_manifest(
        &dir,
        "other",
        "/CN=x/O=system:masters",
        "example.com/custom",
    );
    server.must_kubectl_stdin(["create", "-f", "-"], &other);

    // CertificateApproval: carol may update CSRs and their approval, but not approve for the
    // kube-apiserver-client signer.
    server.must_kubectl_stdin(["apply", "-f", "-"], CSR_EDITOR);
    let plain = csr_manifest(
        &dir,
        "plain",
        "/CN=carol",
        "kubernetes.io/kube-apiserver-client",
    );
    server.must_kubectl_stdin(["create", "-f", "-"], &plain);
    let carol = token_kubeconfig(&server, &dir, "carol", "carol-token");
    let out = kc(&server, &carol, &["certificate", "approve", "plain"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("user not permitted to approve requests with signerName \"kubernetes.io/kube-apiserver-client\""),
        "{err}"
    );
    let cond = server.must_kubectl(["get", "csr", "plain", "-o", "jsonpath={.status.conditions}"]);
    assert!(cond.trim().is_empty(), "approved anyway: {cond}");
    // With `approve` on `example.com/*`, carol approves the example.com signer's request.
    server.must_kubectl_stdin(["apply", "-f", "-"], SIGNER_APPROVER);
    let out = kc(&server, &carol, &["certificate", "approve", "other"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cond = server.must_kubectl([
        "get",
        "csr",
        "other",
        "-o",
        "jsonpath={.status.conditions[0].type}",
    ]);
    assert_eq!(cond.trim(), "Approved");

    // CertificateSigning: setting status.certificate needs `sign` on the signer.
    let ca = must_run(
        "base64",
        &[
            "-w0",
            server
                .data_dir()
                .join("pki")
                .join("ca.crt")
                .to_str()
                .expect("p"),
        ],
    );
    let status = format!(r#"{{"status":{{"certificate":"{}"}}}}"#, ca.trim());
    let status = status.as_str();
    let out = kc(
        &server,
        &carol,
        &[
            "patch",
            "csr",
            "other",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("user not permitted to sign requests with signerName \"example.com/custom\""),
        "{err}"
    );
    // The admin (system:masters) may.
    server.must_kubectl([
        "patch",
        "csr",
        "other",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
}

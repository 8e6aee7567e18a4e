//! Authentication and authorization with stock kubectl: the issue's `pod-reader` scenario for a
//! token-file user and a CSR-issued certificate user under the default `Node,RBAC`, with ABAC
//! and with a webhook authorizer (`auth_webhook.rs`); 401s for wrong tokens and expired
//! certificates; anonymous access; impersonation; escalation prevention; service-account
//! tokens from `kubectl create token`; the controller-manager identity's limits; kubectl's
//! RBAC commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferrokube_conformance::TestServer;

use crate::util::{Table, json};

pub const POD_READER: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  namespace: lfs158
  name: pod-reader
rules:
- apiGroups: [""] # "" indicates the core API group
  resources: ["pods"]
  verbs: ["get", "watch", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: pod-read-access
  namespace: lfs158
subjects:
- kind: User
  name: bob
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: Role
  name: pod-reader
  apiGroup: rbac.authorization.k8s.io
"#;

/// A fresh scratch directory for files the server or the test needs. Servers started from
/// it outlive the helpers that made it, so it stays for the test process's lifetime; the
/// first call of a process removes those that test processes no longer running left behind.
pub fn scratch(tag: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_dead_scratch_dirs);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!(
        "ferrokube-auth-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Removes `ferrokube-auth-<tag>-<pid>-<nanos>` directories whose process is gone.
fn remove_dead_scratch_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ferrokube-auth-"))
        else {
            continue;
        };
        let mut parts = rest.rsplitn(3, '-');
        let (Some(_nanos), Some(pid), Some(_tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Runs a helper program; panics with its output unless it succeeds.
pub fn must_run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn admin_field(server: &TestServer, field: &str) -> String {
    let text = std::fs::read_to_string(server.kubeconfig()).expect("admin kubeconfig");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}: ")))
        .unwrap_or_else(|| panic!("{field} not in admin kubeconfig"))
        .to_string()
}

/// A kubeconfig for the server with the given `user:` body (YAML, indented 4).
pub fn kubeconfig(server: &TestServer, dir: &Path, name: &str, user: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n{user}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
        server.port(),
        admin_field(server, "certificate-authority-data"),
    );
    let p = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&p, text).expect("write kubeconfig");
    p
}

/// A kubeconfig authenticating with a bearer token.
pub fn token_kubeconfig(server: &TestServer, dir: &Path, name: &str, token: &str) -> PathBuf {
    kubeconfig(server, dir, name, &format!("    token: {token}"))
}

fn b64_file(p: &Path) -> String {
    must_run("base64", &["-w0", p.to_str().expect("path")])
}

/// A kubeconfig authenticating with a client certificate and key (PEM files).
pub fn cert_kubeconfig(
    server: &TestServer,
    dir: &Path,
    name: &str,
    crt: &Path,
    key: &Path,
) -> PathBuf {
    let user = format!(
        "    client-certificate-data: {}\n    client-key-data: {}",
        b64_file(crt),
        b64_file(key)
    );
    kubeconfig(server, dir, name, &user)
}

/// kubectl with another kubeconfig (the last `--kubeconfig` wins).
pub fn kc(server: &TestServer, kubeconfig: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--kubeconfig", kubeconfig.to_str().expect("path")];
    all.extend_from_slice(args);
    server.kubectl(all)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// `kubectl auth can-i` as the kubeconfig's user: "yes" or "no" (kubectl appends
/// ` - <reason>` when the authorizer gave one; the reason is dropped here).
pub fn can_i(server: &TestServer, k: &Path, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    first_word(&stdout(&kc(server, k, &all)))
}

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or("").to_string()
}

/// `kubectl auth can-i` as the admin (exit code 1 means "no").
fn admin_can_i(server: &TestServer, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    first_word(&stdout(&server.kubectl(all)))
}

/// An HTTPS request with curl (trusting the cluster CA): the status code and the body.
pub fn curl(server: &TestServer, path: &str, headers: &[&str]) -> (u16, String) {
    let ca = server.data_dir().join("pki/ca.crt");
    let url = format!("https://127.0.0.1:{}{path}", server.port());
    let mut args = vec![
        "-s",
        "-w",
        "\n%{http_code}",
        "--cacert",
        ca.to_str().expect("p"),
    ];
    for h in headers {
        args.push("-H");
        args.push(h);
    }
    args.push(&url);
    // curl exits non-zero when the server closes the connection (code 000): not a panic here.
    let out = Command::new("curl")
        .args(&args)
        .output()
        .expect("spawn curl");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The scenario's expectations once bob may read pods in lfs158 only; `who` names bob's
/// kubeconfig. Every kubectl answer and `kubectl auth can-i` agree.
pub fn assert_bob_reads_lfs158_only(server: &TestServer, bob: &Path) {
    for verb in ["get", "list", "watch"] {
        assert_eq!(
            can_i(server, bob, &[verb, "pods", "-n", "lfs158"]),
            "yes",
            "{verb} pods in lfs158"
        );
        assert_eq!(
            can_i(server, bob, &[verb, "pods", "-n", "default"]),
            "no",
            "{verb} pods in default"
        );
    }
    for verb in ["create", "delete", "update"] {
        assert_eq!(
            can_i(server, bob, &[verb, "pods", "-n", "lfs158"]),
            "no",
            "{verb} pods in lfs158"
        );
    }
    assert_eq!(
        can_i(server, bob, &["list", "secrets", "-n", "lfs158"]),
        "no"
    );
    let list = kc(server, bob, &["get", "pods", "-n", "lfs158", "-o", "name"]);
    assert!(
        list.status.success(),
        "bob lists pods in lfs158: {}",
        stderr(&list)
    );
    assert!(stdout(&list).contains("pod/web"), "{}", stdout(&list));
    let get = kc(
        server,
        bob,
        &[
            "get",
            "pod",
            "web",
            "-n",
            "lfs158",
            "-o",
            "jsonpath={.metadata.name}",
        ],
    );
    assert_eq!(stdout(&get), "web", "{}", stderr(&get));
    let watch = kc(
        server,
        bob,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/lfs158/pods?watch=true&timeoutSeconds=1",
        ],
    );
    assert!(
        watch.status.success(),
        "bob watches pods in lfs158: {}",
        stderr(&watch)
    );
    let other = kc(server, bob, &["get", "pods", "-n", "default"]);
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains(r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{}",
        stderr(&other)
    );
    let del = kc(server, bob, &["delete", "pod", "web", "-n", "lfs158"]);
    assert!(
        stderr(&del).contains(r#"pods "web" is forbidden: User "bob" cannot delete resource "pods" in API group "" in the namespace "lfs158""#),
        "{}",
        stderr(&del)
    );
    let all = kc(server, bob, &["get", "pods", "-A"]);
    assert!(
        stderr(&all).contains(
            r#"User "bob" cannot list resource "pods" in API group "" at the cluster scope"#
        ),
        "{}",
        stderr(&all)
    );
}

/// Creates namespace lfs158 and a pod `web` in it (as admin).
pub fn seed_lfs158(server: &TestServer) {
    server.must_kubectl(["create", "namespace", "lfs158"]);
    // The ServiceAccount admission plugin needs lfs158's `default` account before a pod (as
    // upstream). The ServiceAccount controller creates it at its own pace, and not at all when
    // the authorizer under test grants the controllers nothing (ABAC, a webhook): the admin
    // applies it (whoever comes first, the result is the same account).
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: lfs158\n",
    );
    server.must_kubectl(["run", "web", "-n", "lfs158", "--image=nginx"]);
}

fn apply_pod_reader(server: &TestServer) {
    server.must_kubectl_stdin(["apply", "-f", "-"], POD_READER);
}

#[test]
fn token_file_user_pod_reader_scenario() {
    let dir = scratch("token");
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "bob-secret-token,bob,1001,\"devs,ops\"\n").expect("tokens");
    let server =
        TestServer::start_with_args(&["--token-auth-file", tokens.to_str().expect("path")]);
    seed_lfs158(&server);
    let bob = token_kubeconfig(&server, &dir, "bob", "bob-secret-token");
    let who = stdout(&kc(&server, &bob, &["auth", "whoami", "-o", "json"]));
    let who = json(&who);
    assert_eq!(who["status"]["userInfo"]["username"], "bob");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "ops", "system:authenticated"])
    );
    // Before the Role and RoleBinding: forbidden everywhere.
    let denied = kc(&server, &bob, &["get", "pods", "-n", "lfs158"]);
    assert!(
        stderr(&denied).contains(
            r#"User "bob" cannot list resource "pods" in API group "" in the namespace "lfs158""#
        ),
        "{}",
        stderr(&denied)
    );
    assert_eq!(
        can_i(&server, &bob, &["list", "pods", "-n", "lfs158"]),
        "no"
    );
    assert_eq!(
        admin_can_i(&server, &["list", "pods", "-n", "lfs158", "--as", "bob"]),
        "no"
    );
    apply_pod_reader(&server);
    assert_bob_reads_lfs158_only(&server, &bob);
    // The admin asking about bob (SubjectAccessReview through impersonation) agrees.
    assert_eq!(
        server
            .must_kubectl([
                "auth", "can-i", "watch", "pods", "-n", "lfs158", "--as", "bob"
            ])
            .trim(),
        "yes"
    );
    assert_eq!(
        admin_can_i(&server, &["list", "pods", "-n", "default", "--as", "bob"]),
        "no"
    );
    // `kubectl auth can-i --list --as=bob -n lfs158`: upstream's columns and bob's rules.
    let list = server.must_kubectl(["auth", "can-i", "--list", "--as=bob", "-n", "lfs158"]);
    let header: Vec<&str> = list
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header.join(" "),
        "Resources Non-Resource URLs Resource Names Verbs"
    );
    let row = |name: &str| -> Vec<String> {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in\n{list}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("pods").join(" "), "pods [] [] [get watch list]");
    assert_eq!(
        row("selfsubjectaccessreviews.authorization.k8s.io").join(" "),
        "selfsubjectaccessreviews.authorization.k8s.io [] [] [create]"
    );
    assert!(list.contains("[/version]"), "{list}");
    // A wrong token is refused with 401, not treated as anonymous.
    let wrong = token_kubeconfig(&server, &dir, "wrong", "not-a-known-token");
    let out = kc(&server, &wrong, &["get", "pods", "-n", "lfs158"]);
    assert!(
        stderr(&out).contains("You must be logged in to the server (Unauthorized)"),
        "{}",
        stderr(&out)
    );
    // Impersonation needs the impersonate verb.
    let imp = kc(
        &server,
        &bob,
        &["get", "pods", "-n", "lfs158", "--as", "alice"],
    );
    assert!(
        stderr(&imp).contains(r#"users "alice" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{}",
        stderr(&imp)
    );
    let imp = kc(
        &server,
        &bob,
        &[
            "get",
            "pods",
            "-n",
            "lfs158",
            "--as",
            "bob",
            "--as-group",
            "system:masters",
        ],
    );
    assert!(
        stderr(&imp).contains(r#"cannot impersonate resource "users""#),
        "{}",
        stderr(&imp)
    );
}

#[test]
fn csr_issued_certificate_user_pod_reader_scenario() {
    let dir = scratch("csr");
    let server = TestServer::start();
    seed_lfs158(&server);
    let key = dir.join("bob.key");
    let csr = dir.join("bob.csr");
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
            "/CN=bob/O=devs",
        ],
    );
    let manifest = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: bob\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  usages: [client auth]\n",
        b64_file(&csr)
    );
    server.must_kubectl_stdin(["apply", "-f", "-"], &manifest);
    let pending = server.must_kubectl(["get", "csr", "bob"]);
    assert_eq!(Table::parse(&pending).cell("bob", "CONDITION"), "Pending");
    server.must_kubectl(["certificate", "approve", "bob"]);
    let mut cert_b64 = String::new();
    for _ in 0..100 {
        cert_b64 =
            server.must_kubectl(["get", "csr", "bob", "-o", "jsonpath={.status.certificate}"]);
        if !cert_b64.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!cert_b64.is_empty(), "the approved CSR was not signed");
    let issued = server.must_kubectl(["get", "csr", "bob"]);
    assert_eq!(
        Table::parse(&issued).cell("bob", "CONDITION"),
        "Approved,Issued"
    );
    let crt = dir.join("bob.crt");
    let pem = must_run("sh", &["-c", &format!("echo {cert_b64} | base64 -d")]);
    std::fs::write(&crt, &pem).expect("crt");
    // expirationSeconds is honoured: one day, not the signer's one-year default.
    let end = must_run(
        "openssl",
        &[
            "x509",
            "-in",
            crt.to_str().expect("p"),
            "-noout",
            "-enddate",
        ],
    );
    let days = must_run(
        "sh",
        &[
            "-c",
            &format!(
                "echo $(( ($(date -d \"{}\" +%s) - $(date +%s)) / 3600 ))",
                end.trim().trim_start_matches("notAfter=")
            ),
        ],
    );
    let hours: i64 = days.trim().parse().expect("hours");
    assert!(
        (23..=24).contains(&hours),
        "certificate valid for {hours} h"
    );
    let bob = cert_kubeconfig(&server, &dir, "bob-cert", &crt, &key);
    let who = json(&stdout(&kc(
        &server,
        &bob,
        &["auth", "whoami", "-o", "json"],
    )));
    assert_eq!(who["status"]["userInfo"]["username"], "bob");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
    let denied = kc(&server, &bob, &["get", "pods", "-n", "lfs158"]);
    assert!(
        stderr(&denied).contains(r#"User "bob" cannot list resource "pods""#),
        "{}",
        stderr(&denied)
    );
    apply_pod_reader(&server);
    assert_bob_reads_lfs158_only(&server, &bob);

    // A certificate from the same CA that has expired: 401, not anonymous.
    let ext = dir.join("ext.cnf");
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").expect("ext");
    let expired = dir.join("expired.crt");
    let pki = server.data_dir().join("pki");
    must_run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            csr.to_str().expect("p"),
            "-CA",
            pki.join("ca.crt").to_str().expect("p"),
            "-CAkey",
            pki.join("ca.key").to_str().expect("p"),
            "-CAcreateserial",
            "-CAserial",
            dir.join("ca.srl").to_str().expect("p"),
            "-days",
            "-1",
            "-extfile",
            ext.to_str().expect("p"),
            "-out",
            expired.to_str().expect("p"),
        ],
    );
    let old = cert_kubeconfig(&server, &dir, "expired", &expired, &key);
    let out = kc(&server, &old, &["get", "pods", "-n", "lfs158"]);
    assert!(stderr(&out).contains("Unauthorized"), "{}", stderr(&out));
    // A certificate from a CA the server does not trust: 401.
    let rogue_key = dir.join("rogue.key");
    let rogue = dir.join("rogue.crt");
    must_run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            rogue_key.to_str().expect("p"),
            "-out",
            rogue.to_str().expect("p"),
            "-days",
            "1",
            "-subj",
            "/CN=bob/O=system:masters",
        ],
    );
    let rk = cert_kubeconfig(&server, &dir, "rogue", &rogue, &rogue_key);
    let out = kc(&server, &rk, &["get", "pods", "-n", "lfs158"]);
    assert!(stderr(&out).contains("Unauthorized"), "{}", stderr(&out));
}

#[test]
fn abac_pod_reader_scenario() {
    let dir = scratch("abac");
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "bob-secret-token,bob,1001\n").expect("tokens");
    let policy = dir.join("PolicyFile.json");
    std::fs::write(
        &policy,
        concat!(
            r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "bob", "namespace": "lfs158", "resource": "pods", "readonly": true}}"#,
            "\n",
            // Upstream's documented companion line: every authenticated user may discover APIs.
            r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"group": "system:authenticated", "readonly": true, "nonResourcePath": "*"}}"#,
            "\n",
            r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"group": "system:authenticated", "readonly": false, "apiGroup": "authorization.k8s.io", "resource": "selfsubjectaccessreviews", "namespace": "*"}}"#,
            "\n",
        ),
    )
    .expect("policy");
    let server = TestServer::start_with_args(&[
        "--authorization-mode=ABAC",
        "--authorization-policy-file",
        policy.to_str().expect("p"),
        "--token-auth-file",
        tokens.to_str().expect("p"),
    ]);
    // ABAC alone grants the in-process controllers nothing, so the ServiceAccount controller
    // cannot create lfs158's `default` account, which the ServiceAccount admission plugin
    // requires of a new pod (as upstream): the admin creates it.
    server.must_kubectl(["create", "namespace", "lfs158"]);
    server.must_kubectl(["create", "serviceaccount", "default", "-n", "lfs158"]);
    server.must_kubectl(["run", "web", "-n", "lfs158", "--image=nginx"]);
    let bob = token_kubeconfig(&server, &dir, "bob", "bob-secret-token");
    assert_bob_reads_lfs158_only(&server, &bob);
}

#[test]
fn anonymous_requests_reach_only_public_paths() {
    let server = TestServer::start();
    for path in ["/version", "/healthz", "/livez", "/readyz"] {
        let (code, body) = curl(&server, path, &[]);
        assert_eq!(code, 200, "{path}: {body}");
    }
    for path in ["/api", "/apis", "/metrics", "/openapi/v2"] {
        let (code, body) = curl(&server, path, &[]);
        assert_eq!(code, 403, "{path}: {body}");
        assert!(
            body.contains(&format!(
                r#"User \"system:anonymous\" cannot get path \"{path}\""#
            )),
            "{body}"
        );
    }
    let (code, body) = curl(&server, "/api/v1/namespaces/default/pods", &[]);
    assert_eq!(code, 403);
    assert!(body.contains(r#"User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""#), "{body}");
    let closed = TestServer::start_with_args(&["--anonymous-auth=false"]);
    let (code, body) = curl(&closed, "/version", &[]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains(r#""reason":"Unauthorized""#), "{body}");
}

/// Hostile credentials and headers: each a clear 4xx Status, the server keeps serving.
#[test]
fn bad_credentials_and_headers_are_refused_cleanly() {
    let dir = scratch("bad");
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "bob-secret-token,bob,1001\n").expect("tokens");
    let server = TestServer::start_with_args(&[
        "--token-auth-file",
        tokens.to_str().expect("p"),
        "--enable-bootstrap-token-auth",
    ]);
    let big = format!("Authorization: Bearer {}", "a".repeat(12 * 1024));
    let none_jwt = "Authorization: Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMuZGVmYXVsdC5zdmMuY2x1c3Rlci5sb2NhbCIsInN1YiI6InN5c3RlbTphZG1pbiJ9.";
    let cases: &[(&str, &[&str], u16)] = &[
        ("unknown static token", &["Authorization: Bearer nope"], 401),
        ("empty bearer token", &["Authorization: Bearer "], 401),
        ("oversized token (12 KiB)", &[&big], 401),
        (
            "three-part garbage JWT",
            &["Authorization: Bearer a.b.c"],
            401,
        ),
        ("alg none JWT for our issuer", &[none_jwt], 401),
        (
            "JWT with non-JSON header",
            &["Authorization: Bearer Zm9v.YmFy.YmF6"],
            401,
        ),
        (
            "malformed bootstrap token",
            &["Authorization: Bearer abcdef.0123456789abcdeF"],
            401,
        ),
        (
            "unknown bootstrap token",
            &["Authorization: Bearer abcdef.0123456789abcdef"],
            401,
        ),
        (
            "basic auth (not supported, anonymous)",
            &["Authorization: Basic Ym9iOnB3"],
            403,
        ),
        (
            "impersonation by anonymous",
            &["Impersonate-User: admin"],
            403,
        ),
        (
            "impersonate group without user",
            &[
                "Authorization: Bearer bob-secret-token",
                "Impersonate-Group: system:masters",
            ],
            500,
        ),
        (
            "impersonation by bob without the verb",
            &[
                "Authorization: Bearer bob-secret-token",
                "Impersonate-User: alice",
            ],
            403,
        ),
        (
            "bad percent-encoding in an extra key",
            &[
                "Authorization: Bearer bob-secret-token",
                "Impersonate-User: alice",
                "Impersonate-Extra-%ZZ: x",
            ],
            403,
        ),
    ];
    for (what, headers, want) in cases {
        let (code, body) = curl(&server, "/api/v1/namespaces/default/pods", headers);
        assert_eq!(code, *want, "{what}: {body}");
        assert!(body.contains(r#""kind":"Status""#), "{what}: {body}");
    }
    // Beyond the HTTP layer's header limit: 431 (HTTP/1.1) or a closed stream (HTTP/2), before
    // authentication sees it.
    let huge = format!("Authorization: Bearer {}", "a".repeat(64 * 1024));
    let (code, _) = curl(&server, "/api/v1/namespaces/default/pods", &[&huge]);
    assert!(code == 431 || code == 0, "64 KiB header: {code}");
    let many: Vec<String> = (0..300)
        .map(|i| format!("Impersonate-Group: g{i}"))
        .collect();
    let mut h: Vec<&str> = vec![
        "Authorization: Bearer bob-secret-token",
        "Impersonate-User: alice",
    ];
    h.extend(many.iter().map(String::as_str));
    let (code, body) = curl(&server, "/api/v1/namespaces/default/pods", &h);
    assert_eq!(code, 400, "{body}");
    server.must_kubectl(["get", "namespaces"]);
}

#[test]
fn impersonation_with_the_verb_and_whoami() {
    let server = TestServer::start();
    let out = server.must_kubectl(["auth", "whoami", "--as=bob", "--as-group=x", "-o", "json"]);
    let who = json(&out);
    assert_eq!(who["status"]["userInfo"]["username"], "bob");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["x", "system:authenticated"])
    );
    let me = json(&server.must_kubectl(["auth", "whoami", "-o", "json"]));
    assert_eq!(me["status"]["userInfo"]["username"], "kubernetes-admin");
    let err = server.must_kubectl_fail(["get", "pods", "--as=bob", "--as-group=x"]);
    assert!(
        err.contains(r#"User "bob" cannot list resource "pods""#),
        "{err}"
    );
    // Impersonating a service account adds its groups.
    let sa = json(&server.must_kubectl([
        "auth",
        "whoami",
        "--as=system:serviceaccount:default:builder",
        "-o",
        "json",
    ]));
    assert_eq!(
        sa["status"]["userInfo"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
}

#[test]
fn privilege_escalation_is_refused() {
    let dir = scratch("escalate");
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "bob-secret-token,bob,1001\n").expect("tokens");
    let server = TestServer::start_with_args(&["--token-auth-file", tokens.to_str().expect("p")]);
    seed_lfs158(&server);
    apply_pod_reader(&server);
    // bob may manage roles and bindings in lfs158, and holds only the pod-reader rules.
    server.must_kubectl([
        "create",
        "role",
        "rbac-manager",
        "-n",
        "lfs158",
        "--verb=create,get,list,update,patch",
        "--resource=roles,rolebindings",
    ]);
    server.must_kubectl([
        "create",
        "rolebinding",
        "bob-rbac",
        "-n",
        "lfs158",
        "--role=rbac-manager",
        "--user=bob",
    ]);
    let bob = token_kubeconfig(&server, &dir, "bob", "bob-secret-token");
    // A role within what bob holds is fine.
    let ok = kc(
        &server,
        &bob,
        &[
            "create",
            "role",
            "narrow",
            "-n",
            "lfs158",
            "--verb=get",
            "--resource=pods",
        ],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    // A role granting more is refused with upstream's message.
    let out = kc(
        &server,
        &bob,
        &[
            "create",
            "role",
            "wide",
            "-n",
            "lfs158",
            "--verb=delete",
            "--resource=pods,secrets",
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains(r#"roles.rbac.authorization.k8s.io "wide" is forbidden: user "bob" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#),
        "{err}"
    );
    assert!(
        err.contains(r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#),
        "{err}"
    );
    assert!(
        err.contains(r#"{APIGroups:[""], Resources:["secrets"], Verbs:["delete"]}"#),
        "{err}"
    );
    // Binding to a role with more rights is refused too; the object is not written.
    let out = kc(
        &server,
        &bob,
        &[
            "create",
            "rolebinding",
            "grab",
            "-n",
            "lfs158",
            "--clusterrole=admin",
            "--user=bob",
        ],
    );
    assert!(
        stderr(&out)
            .contains(r#"rolebindings.rbac.authorization.k8s.io "grab" is forbidden: user "bob""#),
        "{}",
        stderr(&out)
    );
    let err = server.must_kubectl_fail(["get", "rolebinding", "grab", "-n", "lfs158"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    // With the bind verb on that cluster role the binding is allowed.
    server.must_kubectl([
        "create",
        "role",
        "binder",
        "-n",
        "lfs158",
        "--verb=bind",
        "--resource=clusterroles",
        "--resource-name=view",
    ]);
    server.must_kubectl([
        "create",
        "rolebinding",
        "bob-binder",
        "-n",
        "lfs158",
        "--role=binder",
        "--user=bob",
    ]);
    let ok = kc(
        &server,
        &bob,
        &[
            "create",
            "rolebinding",
            "bob-view",
            "-n",
            "lfs158",
            "--clusterrole=view",
            "--user=bob",
        ],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn kubectl_rbac_commands_and_reconcile() {
    let server = TestServer::start();
    server.must_kubectl(["create", "namespace", "lfs158"]);
    server.must_kubectl([
        "create",
        "clusterrole",
        "reader",
        "--verb=get,list,watch",
        "--resource=pods,deployments.apps",
    ]);
    server.must_kubectl([
        "create",
        "role",
        "pod-reader",
        "-n",
        "lfs158",
        "--verb=get,list",
        "--resource=pods",
    ]);
    server.must_kubectl([
        "create",
        "rolebinding",
        "pod-read-access",
        "-n",
        "lfs158",
        "--role=pod-reader",
        "--user=bob",
    ]);
    server.must_kubectl([
        "create",
        "clusterrolebinding",
        "readers",
        "--clusterrole=reader",
        "--group=readers",
    ]);
    let rb = json(&server.must_kubectl([
        "get",
        "rolebinding",
        "pod-read-access",
        "-n",
        "lfs158",
        "-o",
        "json",
    ]));
    assert_eq!(rb["roleRef"]["name"], "pod-reader");
    assert_eq!(rb["subjects"][0]["name"], "bob");
    let t =
        Table::parse(&server.must_kubectl(["get", "rolebinding", "-n", "lfs158", "-o", "wide"]));
    assert_eq!(t.cell("pod-read-access", "ROLE"), "Role/pod-reader");
    // auth reconcile: adds the missing verb to the role, creates the missing binding.
    let out = server.must_kubectl_stdin(["auth", "reconcile", "-f", "-"], POD_READER);
    assert!(
        out.contains("role.rbac.authorization.k8s.io/pod-reader reconciled"),
        "{out}"
    );
    let role =
        json(&server.must_kubectl(["get", "role", "pod-reader", "-n", "lfs158", "-o", "json"]));
    let verbs = role["rules"].to_string();
    assert!(verbs.contains("watch"), "{verbs}");
    assert_eq!(
        server
            .must_kubectl(["auth", "can-i", "watch", "pods", "-n", "lfs158", "--as=bob"])
            .trim(),
        "yes"
    );
    assert_eq!(
        server
            .must_kubectl([
                "auth",
                "can-i",
                "list",
                "deployments.apps",
                "--as=carol",
                "--as-group=readers",
                "-A"
            ])
            .trim(),
        "yes"
    );
    // The bootstrap roles are there, aggregated, and reconciled on restart.
    let view = json(&server.must_kubectl(["get", "clusterrole", "view", "-o", "json"]));
    assert!(
        view["rules"].as_array().is_some_and(|r| r.len() > 5),
        "{view}"
    );
    server.must_kubectl([
        "patch",
        "clusterrole",
        "system:basic-user",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/rules","value":[]}]"#,
    ]);
    let mut server = server;
    server.restart();
    let basic =
        json(&server.must_kubectl(["get", "clusterrole", "system:basic-user", "-o", "json"]));
    assert!(
        basic["rules"]
            .to_string()
            .contains("selfsubjectaccessreviews"),
        "{basic}"
    );
}

#[test]
fn service_account_tokens_authenticate_and_expire_with_their_binding() {
    let dir = scratch("sa");
    let server = TestServer::start();
    server.must_kubectl(["create", "namespace", "lfs158"]);
    server.must_kubectl(["create", "serviceaccount", "robot", "-n", "lfs158"]);
    let token = server
        .must_kubectl(["create", "token", "robot", "-n", "lfs158", "--duration=10m"])
        .trim()
        .to_string();
    // The token's lifetime is what was asked for.
    let claims = must_run(
        "sh",
        &[
            "-c",
            &format!(
                "echo {} | cut -d. -f2 | tr '_-' '/+' | base64 -d 2>/dev/null; true",
                token
            ),
        ],
    );
    let claims = claims.trim_end_matches(|c| c != '}');
    let claims = json(claims);
    assert_eq!(
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0),
        600,
        "{claims}"
    );
    assert_eq!(claims["sub"], "system:serviceaccount:lfs158:robot");
    let k = token_kubeconfig(&server, &dir, "robot", &token);
    let who = json(&stdout(&kc(&server, &k, &["auth", "whoami", "-o", "json"])));
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:lfs158:robot"
    );
    assert_eq!(can_i(&server, &k, &["list", "pods", "-n", "lfs158"]), "no");
    // Too short a duration: upstream's validation message.
    let err =
        server.must_kubectl_fail(["create", "token", "robot", "-n", "lfs158", "--duration=1m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    // A token bound to a pod stops working when the pod is gone.
    server.must_kubectl(["run", "p", "-n", "lfs158", "--image=nginx"]);
    let bound = server
        .must_kubectl([
            "create",
            "token",
            "robot",
            "-n",
            "lfs158",
            "--bound-object-kind=Pod",
            "--bound-object-name=p",
        ])
        .trim()
        .to_string();
    let kb = token_kubeconfig(&server, &dir, "bound", &bound);
    assert!(kc(&server, &kb, &["auth", "whoami"]).status.success());
    server.must_kubectl([
        "delete",
        "pod",
        "p",
        "-n",
        "lfs158",
        "--grace-period=0",
        "--force",
    ]);
    let out = kc(&server, &kb, &["auth", "whoami"]);
    assert!(stderr(&out).contains("Unauthorized"), "{}", stderr(&out));
    // Recreating the service account invalidates its old tokens (uid check).
    server.must_kubectl(["delete", "serviceaccount", "robot", "-n", "lfs158"]);
    server.must_kubectl(["create", "serviceaccount", "robot", "-n", "lfs158"]);
    let out = kc(&server, &k, &["auth", "whoami"]);
    assert!(stderr(&out).contains("Unauthorized"), "{}", stderr(&out));
    // The issuer's discovery documents.
    let conf = json(&server.must_kubectl(["get", "--raw", "/.well-known/openid-configuration"]));
    assert_eq!(
        conf["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    let jwks = json(&server.must_kubectl(["get", "--raw", "/openid/v1/jwks"]));
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    // TokenReview answers from the same authenticators.
    let review = format!(
        r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"}}}}"#
    );
    let out = json(&server.must_kubectl_stdin(
        ["create", "--validate=false", "-f", "-", "-o", "json"],
        &review,
    ));
    assert_eq!(out["status"]["authenticated"], false);
}

#[test]
fn controller_manager_identity_has_only_its_roles() {
    let dir = scratch("kcm");
    let server = TestServer::start();
    let pki = server.data_dir().join("pki");
    let k = cert_kubeconfig(
        &server,
        &dir,
        "kcm",
        &pki.join("controller-manager.crt"),
        &pki.join("controller-manager.key"),
    );
    let who = json(&stdout(&kc(&server, &k, &["auth", "whoami", "-o", "json"])));
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:kube-controller-manager"
    );
    // What its controllers need: list/watch everything, delete for the GC and namespace controller.
    assert_eq!(can_i(&server, &k, &["list", "pods", "-A"]), "yes");
    assert_eq!(
        can_i(&server, &k, &["delete", "configmaps", "-n", "default"]),
        "yes"
    );
    assert_eq!(
        can_i(&server, &k, &["update", "namespaces/finalize"]),
        "yes"
    );
    // Not what it does not: creating namespaces, reading secrets' contents cluster-wide via get is
    // allowed upstream, but escalating RBAC is not.
    let out = kc(&server, &k, &["create", "namespace", "evil"]);
    assert!(
        stderr(&out).contains(r#"User "system:kube-controller-manager" cannot create resource "namespaces" in API group "" at the cluster scope"#),
        "{}",
        stderr(&out)
    );
    let out = kc(
        &server,
        &k,
        &[
            "create",
            "clusterrolebinding",
            "mine",
            "--clusterrole=cluster-admin",
            "--user=system:kube-controller-manager",
        ],
    );
    assert!(stderr(&out).contains("forbidden"), "{}", stderr(&out));
    // Its controllers still work under Node,RBAC: a namespace is emptied and removed.
    server.must_kubectl(["create", "namespace", "gone"]);
    server.must_kubectl(["create", "configmap", "c", "-n", "gone"]);
    server.must_kubectl(["delete", "namespace", "gone", "--timeout=60s"]);
    let err = server.must_kubectl_fail(["get", "namespace", "gone"]);
    assert!(err.contains("not found"), "{err}");
}

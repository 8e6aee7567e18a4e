//! Webhook authentication and authorization against a real HTTPS test server
//! (`fixtures/auth_webhook.py`, TLS from a CA made here with openssl): the scenario
//! with `--authorization-mode=Webhook`, a TokenReview webhook user, and a webhook that answers
//! garbage or too slowly (fail closed, no crash).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrokube_conformance::{TestServer, workspace_root};

use crate::auth::{
    assert_bob_reads_lfs158_only, kc, must_run, scratch, seed_lfs158, token_kubeconfig,
};
use crate::util::json;

/// The Python webhook process, killed on drop.
struct Webhook {
    child: Child,
    port: u16,
    ca: PathBuf,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a serving certificate for 127.0.0.1 (webpki wants a CA-signed leaf).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n).to_str().expect("path").to_string();
    must_run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.crt"),
            "-days",
            "1",
            "-subj",
            "/CN=webhook-ca",
        ],
    );
    must_run(
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("srv.key"),
            "-out",
            &p("srv.csr"),
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("srv.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    must_run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &p("srv.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-CAserial",
            &p("ca.srl"),
            "-days",
            "1",
            "-extfile",
            &p("srv.ext"),
            "-out",
            &p("srv.crt"),
        ],
    );
    (dir.join("ca.crt"), dir.join("srv.crt"), dir.join("srv.key"))
}

fn start_webhook(dir: &Path, mode: &str) -> Webhook {
    let (ca, crt, key) = tls_files(dir);
    let port_file = dir.join(format!("port-{mode}"));
    let script = workspace_root().join("conformance/fixtures/auth_webhook.py");
    // Wrapped in `Webhook` at once, so it is killed and reaped on drop (also on panic).
    let mut w = Webhook {
        child: Command::new("python3")
            .arg(script)
            .arg(&crt)
            .arg(&key)
            .arg(&port_file)
            .arg(mode)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the webhook"),
        port: 0,
        ca,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            w.port = p.trim().parse().expect("port");
            return w;
        }
        assert!(Instant::now() < deadline, "webhook did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn webhook_kubeconfig(dir: &Path, w: &Webhook, path: &str) -> PathBuf {
    let file = dir.join(format!("webhook{}.kubeconfig", path.replace('/', "-")));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: w\n  cluster:\n    server: https://127.0.0.1:{}{path}\n    certificate-authority: {}\nusers:\n- name: apiserver\n  user: {{}}\ncontexts:\n- name: w\n  context: {{cluster: w, user: apiserver}}\ncurrent-context: w\n",
        w.port,
        w.ca.display()
    );
    std::fs::write(&file, text).expect("webhook kubeconfig");
    file
}

fn server_with_webhook(dir: &Path, w: &Webhook) -> TestServer {
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "bob-secret-token,bob,1001\n").expect("tokens");
    let authz = webhook_kubeconfig(dir, w, "/authorize");
    let authn = webhook_kubeconfig(dir, w, "/authenticate");
    TestServer::start_with_args(&[
        "--authorization-mode=Webhook",
        "--authorization-webhook-config-file",
        authz.to_str().expect("p"),
        "--authentication-token-webhook-config-file",
        authn.to_str().expect("p"),
        "--token-auth-file",
        tokens.to_str().expect("p"),
    ])
}

#[test]
fn webhook_authorizer_pod_reader_scenario_and_token_webhook() {
    let dir = scratch("webhook");
    let w = start_webhook(&dir, "ok");
    let server = server_with_webhook(&dir, &w);
    seed_lfs158(&server);
    let bob = token_kubeconfig(&server, &dir, "bob", "bob-secret-token");
    assert_bob_reads_lfs158_only(&server, &bob);
    // The reviews the server sent are SubjectAccessReview v1 with bob's attributes.
    let log = std::fs::read_to_string(dir.join("port-ok.log")).expect("webhook log");
    let sar = log
        .lines()
        .map(json)
        .find(|r| {
            r["kind"] == "SubjectAccessReview"
                && r["spec"]["resourceAttributes"]["namespace"] == "lfs158"
        })
        .expect("a SubjectAccessReview for lfs158");
    assert_eq!(sar["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(sar["spec"]["user"], "bob");
    // carol exists only for the token webhook.
    let carol = token_kubeconfig(&server, &dir, "carol", "carol-token");
    let who = json(&String::from_utf8_lossy(
        &kc(&server, &carol, &["auth", "whoami", "-o", "json"]).stdout,
    ));
    assert_eq!(who["status"]["userInfo"]["username"], "carol");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["webhook-users", "system:authenticated"])
    );
    let nobody = token_kubeconfig(&server, &dir, "nobody", "unknown-token");
    let out = kc(&server, &nobody, &["get", "pods"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
}

#[test]
fn webhook_garbage_and_timeouts_fail_closed() {
    for mode in ["garbage", "slow"] {
        let dir = scratch(mode);
        let w = start_webhook(&dir, mode);
        let server = server_with_webhook(&dir, &w);
        let bob = token_kubeconfig(&server, &dir, "bob", "bob-secret-token");
        let started = Instant::now();
        let out = kc(
            &server,
            &bob,
            &["get", "--raw", "/api/v1/namespaces/lfs158/pods"],
        );
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{mode}: allowed");
        assert!(
            err.contains("InternalError") || err.contains("Internal error"),
            "{mode}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "{mode}: took {:?}",
            started.elapsed()
        );
        // The server is still serving, and the admin (system:masters) is unaffected.
        server.must_kubectl(["get", "namespaces"]);
        // A token the webhook cannot judge does not authenticate.
        let carol = token_kubeconfig(&server, &dir, "carol", "carol-token");
        let out = kc(&server, &carol, &["get", "--raw", "/version"]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
            "{mode}"
        );
    }
}

//! The aggregation trust (issue 10): `kube-system/extension-apiserver-authentication`
//! published as upstream (client CA and `requestheader-*` keys), the aggregator presenting
//! its front-proxy client certificate to an aggregated server that trusts only what the
//! ConfigMap says (as metrics-server does), the caller's UID in `X-Remote-Uid` (upstream's
//! `RemoteRequestHeaderUID`, on since 1.33) with any client-sent `X-Remote-*` dropped, and
//! request-header authentication on our side (a front proxy naming the user, and its UID, in
//! `X-Remote-*`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::admission_webhooks::{apiserver, service_for};
use crate::hookserver::{CLIENT_CN, HookServer, Reply, Req};
use crate::rawtls::{Identity, admin_identity, connect, read_response};

const GV: &str = "/apis/metrics.example.com/v1beta1";

fn auth_config_map(server: &ferrokube_conformance::TestServer) -> Value {
    let out = server.must_kubectl([
        "get",
        "configmap",
        "-n",
        "kube-system",
        "extension-apiserver-authentication",
        "-o",
        "json",
    ]);
    serde_json::from_str(&out).expect("json")
}

fn list(data: &Value, key: &str) -> Vec<String> {
    let s = data[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing: {data}"));
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{key} is no JSON list ({e}): {s}"))
}

/// An aggregated server in the manner of metrics-server: it takes TLS clients only with a
/// certificate the given request-header CA signed, and believes `X-Remote-User` only from a
/// client whose name is in `allowed`.
fn aggregated_server(ca: &str, allowed: Vec<String>, seen: Arc<Mutex<Vec<Req>>>) -> HookServer {
    HookServer::start_mtls(
        &["metrics.default.svc"],
        Arc::new(move |req: &Req| {
            seen.lock().expect("lock").push(req.clone());
            let cn = req
                .header_all(CLIENT_CN)
                .first()
                .cloned()
                .unwrap_or_default();
            if !allowed.contains(&cn) {
                return Reply::raw(401, br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}"#);
            }
            let user = req
                .header_all("x-remote-user")
                .first()
                .cloned()
                .unwrap_or_default();
            let path = req.path.split('?').next().unwrap_or("");
            match path {
                GV => Reply::json(&json!({
                    "kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": "metrics.example.com/v1beta1",
                    "resources": [{"name": "whoami", "singularName": "whoami", "namespaced": false,
                                   "kind": "WhoAmI", "verbs": ["get"]}]})),
                p if p == format!("{GV}/whoami/me") => Reply::json(&json!({
                    "apiVersion": "metrics.example.com/v1beta1", "kind": "WhoAmI",
                    "metadata": {"name": "me"},
                    "user": user,
                    "uid": req.header_all("x-remote-uid"),
                    "groups": req.header_all("x-remote-group"),
                    "proxy": cn})),
                _ => Reply::raw(404, br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#),
            }
        }),
        ca,
    )
}

fn wait_available(server: &ferrokube_conformance::TestServer, name: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = server.must_kubectl(["get", "apiservice", name, "-o", "json"]);
        let v: Value = serde_json::from_str(&out).expect("json");
        let cond = v["status"]["conditions"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == "Available"))
            .cloned();
        if let Some(c) = cond
            && c["status"] == want
        {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never Available={want}: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn extension_apiserver_authentication_is_published_and_trusted_by_an_aggregated_server() {
    let server = apiserver();
    let cm = auth_config_map(&server);
    let data = &cm["data"];
    // client-ca-file: the cluster CA that signed the admin's certificate.
    let ca = std::fs::read_to_string(server.data_dir().join("pki/ca.crt")).expect("ca.crt");
    assert_eq!(
        data["client-ca-file"].as_str().map(str::trim),
        Some(ca.trim()),
        "{data}"
    );
    // The generated front-proxy trust, with kubeadm's names.
    let rh_ca = data["requestheader-client-ca-file"]
        .as_str()
        .expect("requestheader-client-ca-file")
        .to_string();
    assert!(rh_ca.contains("BEGIN CERTIFICATE"), "{data}");
    assert_ne!(rh_ca.trim(), ca.trim(), "the front proxy has its own CA");
    let allowed = list(data, "requestheader-allowed-names");
    assert_eq!(allowed, ["front-proxy-client"]);
    assert_eq!(
        list(data, "requestheader-username-headers"),
        ["X-Remote-User"]
    );
    assert_eq!(list(data, "requestheader-uid-headers"), ["X-Remote-Uid"]);
    assert_eq!(
        list(data, "requestheader-group-headers"),
        ["X-Remote-Group"]
    );
    assert_eq!(
        list(data, "requestheader-extra-headers-prefix"),
        ["X-Remote-Extra-"]
    );
    // The Role aggregated servers bind to read it.
    let role = server.must_kubectl([
        "get",
        "role",
        "-n",
        "kube-system",
        "extension-apiserver-authentication-reader",
        "-o",
        "jsonpath={.rules[0].resourceNames[0]}",
    ]);
    assert_eq!(role, "extension-apiserver-authentication");

    // An aggregated server configured from the ConfigMap alone.
    let seen: Arc<Mutex<Vec<Req>>> = Arc::default();
    let backend = aggregated_server(&rh_ca, allowed, seen.clone());
    service_for(&server, "default", "metrics", backend.port);
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.example.com"},
            "spec": {"group": "metrics.example.com", "version": "v1beta1",
                     "service": {"namespace": "default", "name": "metrics", "port": 443},
                     "caBundle": backend.ca_bundle(), "groupPriorityMinimum": 100,
                     "versionPriority": 100}})
        .to_string(),
    );
    wait_available(&server, "v1beta1.metrics.example.com", "True");
    let me: Value =
        serde_json::from_str(&server.must_kubectl(["get", "--raw", &format!("{GV}/whoami/me")]))
            .expect("json");
    assert_eq!(me["proxy"], "front-proxy-client", "{me}");
    assert_eq!(me["user"], "kubernetes-admin", "{me}");
    assert!(
        me["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|x| x == "system:masters")),
        "{me}"
    );
    // The admin's certificate names no UID: no X-Remote-Uid is sent.
    assert_eq!(me["uid"], json!([]), "{me}");

    // A service account has a UID: it travels in X-Remote-Uid. What the client itself sends
    // in X-Remote-* (a forged user, UID, group, extra) never reaches the backend.
    server.must_kubectl(["create", "serviceaccount", "prober", "-n", "default"]);
    server.must_kubectl([
        "create",
        "clusterrolebinding",
        "prober-admin",
        "--clusterrole=cluster-admin",
        "--serviceaccount=default:prober",
    ]);
    let sa_uid = server.must_kubectl([
        "get",
        "serviceaccount",
        "prober",
        "-n",
        "default",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    assert!(!sa_uid.is_empty());
    let token = server.must_kubectl(["create", "token", "prober", "-n", "default"]);
    let auth = format!("Bearer {}", token.trim());
    let forged = [
        ("Authorization", auth.as_str()),
        ("X-Remote-User", "mallory"),
        ("X-Remote-Uid", "forged-uid"),
        ("X-Remote-Group", "system:masters"),
        ("X-Remote-Extra-Evil", "yes"),
    ];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let r = rt.block_on(send_with(
        &server,
        None,
        "GET",
        &format!("{GV}/whoami/me"),
        &forged,
        "",
    ));
    assert_eq!(r.code, 200, "{}", String::from_utf8_lossy(&r.body));
    let me = r.json();
    assert_eq!(me["user"], "system:serviceaccount:default:prober", "{me}");
    assert_eq!(me["uid"], json!([sa_uid]), "{me}");
    assert!(
        !me["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|x| x == "system:masters")),
        "{me}"
    );
    let last = seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request");
    assert!(
        last.header_all("x-remote-extra-evil").is_empty(),
        "{last:?}"
    );
    assert!(last.header_all("authorization").is_empty(), "{last:?}");

    // Every request reached it with the proxy certificate (the TLS layer refuses others).
    let reqs = seen.lock().expect("lock").clone();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter()
            .all(|r| r.header_all(CLIENT_CN) == ["front-proxy-client"]),
        "{reqs:?}"
    );
}

/// One request with extra headers, as `identity`.
async fn get_as(
    server: &ferrokube_conformance::TestServer,
    identity: &Identity,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> crate::rawtls::RawResponse {
    send_with(server, Some(identity), method, path, headers, body).await
}

/// One request with extra headers, with a client certificate or none.
async fn send_with(
    server: &ferrokube_conformance::TestServer,
    identity: Option<&Identity>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> crate::rawtls::RawResponse {
    let mut tls = connect(server, identity, &[b"http/1.1"]).await;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await.expect("head");
    tls.write_all(body.as_bytes()).await.expect("body");
    tls.flush().await.expect("flush");
    read_response(&mut tls).await
}

/// A certificate for `cn` signed by the generated front-proxy CA.
fn front_proxy_identity(server: &ferrokube_conformance::TestServer, cn: &str) -> Identity {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let pki = server.data_dir().join("pki");
    let ca_key = KeyPair::from_pem(
        &std::fs::read_to_string(pki.join("front-proxy-ca.key")).expect("front-proxy-ca.key"),
    )
    .expect("key");
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "front-proxy-ca");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).expect("sign");
    Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

const WHOAMI: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const REVIEW: &str = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;

#[test]
fn a_front_proxy_names_the_user_in_request_headers() {
    let server = apiserver();
    let pki = server.data_dir().join("pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).expect("pki file");
    let proxy = Identity {
        cert_pem: read("front-proxy-client.crt"),
        key_pem: read("front-proxy-client.key"),
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let as_alice = [
            ("X-Remote-User", "alice"),
            ("X-Remote-Group", "team-a"),
            ("X-Remote-Group", "system:masters"),
            ("X-Remote-Extra-Scopes%2Fx", "read"),
        ];
        // The front proxy's certificate and headers: alice, her groups and extras.
        let r = get_as(&server, &proxy, "POST", WHOAMI, &as_alice, REVIEW).await;
        assert_eq!(r.code, 201, "{}", String::from_utf8_lossy(&r.body));
        let u = &r.json()["status"]["userInfo"];
        assert_eq!(u["username"], "alice", "{u}");
        assert_eq!(
            u["groups"],
            json!(["team-a", "system:masters", "system:authenticated"]),
            "{u}"
        );
        assert_eq!(u["extra"]["scopes/x"], json!(["read"]), "{u}");
        assert!(u.get("uid").is_none(), "no X-Remote-Uid, no UID: {u}");
        // The UID the front proxy names in X-Remote-Uid.
        let with_uid = [("X-Remote-User", "alice"), ("X-Remote-Uid", "alice-uid-7")];
        let r = get_as(&server, &proxy, "POST", WHOAMI, &with_uid, REVIEW).await;
        assert_eq!(r.code, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["status"]["userInfo"]["uid"], "alice-uid-7");
        // alice is system:masters here: the request is authorized as her.
        let r = get_as(&server, &proxy, "GET", "/api/v1/namespaces", &as_alice, "").await;
        assert_eq!(r.code, 200);

        // The same headers from a client of the cluster CA are no identity claim.
        let admin = admin_identity(&server);
        let r = get_as(&server, &admin, "POST", WHOAMI, &as_alice, REVIEW).await;
        assert_eq!(r.code, 201);
        assert_eq!(
            r.json()["status"]["userInfo"]["username"],
            "kubernetes-admin"
        );
        // ... nor a UID claim.
        let r = get_as(&server, &admin, "POST", WHOAMI, &with_uid, REVIEW).await;
        assert!(r.json()["status"]["userInfo"].get("uid").is_none());

        // The front proxy naming nobody: its certificate is no client certificate → 401.
        let r = get_as(&server, &proxy, "POST", WHOAMI, &[], REVIEW).await;
        assert_eq!(r.code, 401, "{}", String::from_utf8_lossy(&r.body));

        // A certificate of the front-proxy CA with a name not allowed: headers ignored → 401.
        let other = front_proxy_identity(&server, "not-the-proxy");
        let r = get_as(&server, &other, "POST", WHOAMI, &as_alice, REVIEW).await;
        assert_eq!(r.code, 401, "{}", String::from_utf8_lossy(&r.body));
        // The allowed name from the same CA works (the CA, not the file, is trusted).
        let good = front_proxy_identity(&server, "front-proxy-client");
        let r = get_as(&server, &good, "POST", WHOAMI, &as_alice, REVIEW).await;
        assert_eq!(r.code, 201);
        assert_eq!(r.json()["status"]["userInfo"]["username"], "alice");
    });
}

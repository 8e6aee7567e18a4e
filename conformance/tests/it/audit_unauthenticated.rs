//! Requests refused with 401 are audited as upstream's `WithFailedAuthenticationAudit` does:
//! one event at `ResponseStarted`, no user, `responseStatus.code` 401 and the message naming
//! the credentials that were tried; an omitted stage or level None records nothing.

use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::auth::{curl, scratch};

fn events(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn server(policy: &str, tag: &str) -> (TestServer, std::path::PathBuf) {
    let dir = scratch(tag);
    let p = dir.join("policy.yaml");
    std::fs::write(&p, policy).expect("policy");
    let log = dir.join("audit.log");
    let server = TestServer::start_with_args(&[
        "--audit-policy-file",
        p.to_str().expect("p"),
        "--audit-log-path",
        log.to_str().expect("p"),
        "--anonymous-auth=false",
    ]);
    (server, log)
}

#[test]
fn a_401_is_audited_at_response_started() {
    let (server, log) = server(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
        "audit401",
    );
    let (code, _) = curl(
        &server,
        "/api/v1/namespaces/default/secrets?limit=1",
        &["Authorization: Bearer wrong-token"],
    );
    assert_eq!(code, 401);
    let (code, _) = curl(&server, "/version", &[]);
    assert_eq!(code, 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let ev = events(&log);
        let hits: Vec<Value> = ev
            .into_iter()
            .filter(|e| e["responseStatus"]["code"] == 401)
            .collect();
        if hits.len() >= 2 {
            break hits;
        }
        assert!(Instant::now() < deadline, "no 401 events: {hits:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let secrets = found
        .iter()
        .find(|e| e["objectRef"]["resource"] == "secrets")
        .expect("the secrets request");
    assert_eq!(secrets["stage"], "ResponseStarted");
    assert_eq!(secrets["level"], "Metadata");
    assert_eq!(secrets["verb"], "list");
    assert_eq!(secrets["user"], serde_json::json!({}));
    assert_eq!(
        secrets["responseStatus"]["message"],
        "Authentication failed, attempted: bearer"
    );
    assert_eq!(
        secrets["requestURI"],
        "/api/v1/namespaces/default/secrets?limit=1"
    );
    let version = found
        .iter()
        .find(|e| e["requestURI"] == "/version")
        .expect("the /version request");
    assert_eq!(
        version["responseStatus"]["message"],
        "Authentication failed, no credentials provided"
    );
    // One event per refused request (no RequestReceived stage).
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn a_401_under_level_none_or_an_omitted_stage_is_not_audited() {
    let (server, log) = server(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [ResponseStarted]\nrules:\n- level: Metadata\n",
        "audit401omit",
    );
    let (code, _) = curl(&server, "/version", &["Authorization: Bearer nope"]);
    assert_eq!(code, 401);
    // An authenticated request is still audited (the log is live), the 401 is not.
    server.must_kubectl(["get", "namespaces"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events(&log).iter().any(|e| e["verb"] == "list") {
        assert!(Instant::now() < deadline, "no events at all");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !events(&log)
            .iter()
            .any(|e| e["responseStatus"]["code"] == 401),
        "{:?}",
        events(&log)
    );
}

//! The CEL `authorizer` library in a ValidatingAdmissionPolicy (issue 8), answered by the
//! server's RBAC: a label only users who may `escalate` ClusterRoles can set, a decision's
//! `reason()` in a message, `authorizer.requestResource`, and `serviceAccount(ns, name)`.

use ferrokube_conformance::TestServer;

use crate::auth::{kc, scratch, token_kubeconfig};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: privileged-label}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["configmaps"]}
  variables:
  - name: privileged
    expression: "has(object.metadata.labels) && 'privileged' in object.metadata.labels"
  validations:
  - expression: "!variables.privileged || authorizer.group('rbac.authorization.k8s.io').resource('clusterroles').check('escalate').allowed()"
    messageExpression: "'only cluster admins may label configmaps privileged (' + request.userInfo.username + ')'"
    reason: Forbidden
  - expression: "authorizer.requestResource.check('create').allowed()"
    message: "the requester may not create what it creates"
  - expression: "object.metadata.name != 'sa-check' || authorizer.serviceAccount('kube-system', 'deployer').group('apps').resource('deployments').namespace('team').check('update').allowed()"
    message: "kube-system/deployer may not update deployments in team"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: privileged-label}
spec:
  policyName: privileged-label
  validationActions: [Deny]
"#;

/// A server where the token user `bob` may write ConfigMaps in namespace `team` (nothing
/// else), and bob's kubeconfig.
fn server_with_bob(scratch_name: &str) -> (TestServer, std::path::PathBuf) {
    let dir = scratch(scratch_name);
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "bob-token,bob,1001\n").expect("tokens");
    let server = TestServer::start_with_args(&["--token-auth-file", tokens.to_str().expect("p")]);
    server.must_kubectl(["create", "namespace", "team"]);
    server.must_kubectl([
        "create",
        "role",
        "cm-writer",
        "-n",
        "team",
        "--verb=create,get,update,patch",
        "--resource=configmaps",
    ]);
    server.must_kubectl([
        "create",
        "rolebinding",
        "bob-cm",
        "-n",
        "team",
        "--role=cm-writer",
        "--user=bob",
    ]);
    let bob = token_kubeconfig(&server, &dir, "bob", "bob-token");
    (server, bob)
}

#[test]
fn authorizer_checks_follow_rbac() {
    let (server, bob) = server_with_bob("celauthz");
    server.must_kubectl_stdin(["apply", "-f", "-"], POLICY);
    // The policy reaches the plugin through a watch: retry until bob is refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut i = 0;
    let err = loop {
        i += 1;
        let name = format!("p{i}");
        let o = kc(&server, &bob, &["create", "configmap", &name, "-n", "team"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = server.kubectl_stdin(
            ["--kubeconfig", bob.to_str().expect("p"), "apply", "-f", "-"],
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"priv","namespace":"team","labels":{"privileged":"yes"}}}"#,
        );
        if !o.status.success() {
            break stderr(&o);
        }
        let _ = server.kubectl(["delete", "configmap", "priv", "-n", "team"]);
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never denied"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        err.contains(r#"configmaps "priv" is forbidden: ValidatingAdmissionPolicy 'privileged-label' with binding 'privileged-label' denied request: only cluster admins may label configmaps privileged (bob)"#),
        "{err}"
    );
    // The admin (system:masters) may.
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"priv","namespace":"team","labels":{"privileged":"yes"}}}"#,
    );
    // serviceAccount(): denied until the service account is granted the update.
    let o = server.kubectl(["create", "configmap", "sa-check", "-n", "team"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("kube-system/deployer may not update deployments in team"),
        "{}",
        stderr(&o)
    );
    server.must_kubectl([
        "create",
        "role",
        "deploy",
        "-n",
        "team",
        "--verb=update",
        "--resource=deployments.apps",
    ]);
    server.must_kubectl([
        "create",
        "rolebinding",
        "deployer",
        "-n",
        "team",
        "--role=deploy",
        "--serviceaccount=kube-system:deployer",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server
        .kubectl(["create", "configmap", "sa-check", "-n", "team"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the grant never applied"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Webhook `matchConditions` see the same `authorizer` (upstream's admission webhook
/// matcher): a hook called only for requesters who may not escalate ClusterRoles.
#[test]
fn webhook_match_conditions_use_the_authorizer() {
    use std::sync::Arc;

    use crate::hookserver::{HookServer, Reply, Req, review};

    let (server, bob) = server_with_bob("hookauthz");
    let hooks = HookServer::start(
        &[],
        Arc::new(|req: &Req| Reply::json(&review(req, false, "non-admins are refused", None, &[]))),
    );
    let cfg = serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "non-admins"},
        "webhooks": [{"name": "non-admins.example.com",
            "clientConfig": {"url": hooks.url("/"), "caBundle": hooks.ca_bundle()},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
            "matchConditions": [{"name": "non-admin",
                "expression": "!authorizer.group('rbac.authorization.k8s.io').resource('clusterroles').check('escalate').allowed()"}]}]});
    server.must_kubectl_stdin(["apply", "-f", "-"], &cfg.to_string());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut i = 0;
    let err = loop {
        i += 1;
        let o = kc(
            &server,
            &bob,
            &["create", "configmap", &format!("b{i}"), "-n", "team"],
        );
        if !o.status.success() {
            break stderr(&o);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook never refused bob"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(err.contains("non-admins are refused"), "{err}");
    // The admin may escalate: the condition is false, the hook is not called.
    let before = hooks.hits();
    server.must_kubectl(["create", "configmap", "admin-1", "-n", "team"]);
    assert_eq!(
        hooks.hits(),
        before,
        "the admin's create must skip the hook"
    );
}

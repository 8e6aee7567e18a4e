//! The scheduler is leader-elected on `kube-system/kube-scheduler` (upstream kube-scheduler's
//! lease); a restarted server's scheduler takes the lease over (a new holder, one more
//! transition) and schedules again. A server stopped with SIGTERM hands the scheduler's and the
//! controller-manager's Leases back before it stops serving, so the next holder takes over at
//! once instead of after the 15 s lease duration.

use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;

use crate::nodes::{THREE_NODES, must_have_ready_nodes, must_wait_for};
use crate::util::json;

fn holder(server: &TestServer) -> Result<(String, i64), String> {
    holder_of(server, "kube-scheduler")
}

fn holder_of(server: &TestServer, lease: &str) -> Result<(String, i64), String> {
    let out = server.kubectl(["get", "lease", "-n", "kube-system", lease, "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let lease = json(&String::from_utf8_lossy(&out.stdout));
    let h = lease["spec"]["holderIdentity"].as_str().unwrap_or("");
    if h.is_empty() {
        return Err(format!("no holder: {lease}"));
    }
    Ok((
        h.to_string(),
        lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
    ))
}

fn scheduled_on(server: &TestServer, pod: &str) -> Result<String, String> {
    let node = server.must_kubectl(["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"]);
    if node.is_empty() {
        Err(format!("{pod} not scheduled"))
    } else {
        Ok(node)
    }
}

#[test]
fn scheduler_holds_its_lease_and_a_restarted_server_takes_it_over() {
    let mut server = TestServer::start_with_args(THREE_NODES);
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    let (first, transitions) =
        must_wait_for(&server, "scheduler lease", Duration::from_secs(20), || {
            holder(&server)
        });
    let (first_kcm, _) = must_wait_for(
        &server,
        "controller-manager lease",
        Duration::from_secs(20),
        || holder_of(&server, "kube-controller-manager"),
    );
    server.must_kubectl(["run", "before", "--image=nginx:1.27"]);
    must_wait_for(&server, "pod scheduled", Duration::from_secs(20), || {
        scheduled_on(&server, "before")
    });

    server.restart();
    let restarted = Instant::now();
    // Both Leases were handed back on SIGTERM: the new process holds them within a few retry
    // periods (2 s) of starting; had they not been released it could not before their 15 s
    // lease duration ran out.
    for lease in ["kube-scheduler", "kube-controller-manager"] {
        let old = if lease == "kube-scheduler" {
            &first
        } else {
            &first_kcm
        };
        must_wait_for(
            &server,
            "a new lease holder",
            Duration::from_secs(30),
            || match holder_of(&server, lease) {
                Ok((h, _)) if h != *old => Ok(()),
                Ok((h, _)) => Err(format!("{lease} still held by {h}")),
                Err(e) => Err(e),
            },
        );
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "{lease}: the new process took {:?} to hold the lease (released leases are taken at once)",
            restarted.elapsed()
        );
    }
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl(["run", "after", "--image=nginx:1.27"]);
    must_wait_for(
        &server,
        "pod scheduled after restart",
        Duration::from_secs(30),
        || scheduled_on(&server, "after"),
    );
    assert!(
        restarted.elapsed() < Duration::from_secs(20),
        "scheduling after a restart took {:?}",
        restarted.elapsed()
    );
    let (second, transitions2) = holder(&server).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(first, second, "a new process holds the lease");
    assert_eq!(transitions2, transitions + 1);
}

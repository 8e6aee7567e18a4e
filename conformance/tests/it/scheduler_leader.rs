//! The scheduler is leader-elected on `kube-system/kube-scheduler` (upstream kube-scheduler's
//! lease); a restarted server's scheduler takes the lease over (a new holder, one more
//! transition) and schedules again.

use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;

use crate::nodes::{THREE_NODES, must_have_ready_nodes, must_wait_for};
use crate::util::json;

fn holder(server: &TestServer) -> Result<(String, i64), String> {
    let out = server.kubectl([
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-scheduler",
        "-o",
        "json",
    ]);
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
    server.must_kubectl(["run", "before", "--image=nginx:1.27"]);
    must_wait_for(&server, "pod scheduled", Duration::from_secs(20), || {
        scheduled_on(&server, "before")
    });

    server.restart();
    let restarted = Instant::now();
    must_have_ready_nodes(&server, &["node-0", "node-1", "node-2"]);
    server.must_kubectl(["run", "after", "--image=nginx:1.27"]);
    must_wait_for(
        &server,
        "pod scheduled after restart",
        Duration::from_secs(30),
        || scheduled_on(&server, "after"),
    );
    // The old holder hands the lease back on SIGTERM (best effort: the release races the
    // server's own shutdown), so the new scheduler normally acts at once; at worst it waits out
    // the 15 s lease.
    assert!(
        restarted.elapsed() < Duration::from_secs(40),
        "scheduling after a restart took {:?}",
        restarted.elapsed()
    );
    let (second, transitions2) = holder(&server).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(first, second, "a new process holds the lease");
    assert_eq!(transitions2, transitions + 1);
}

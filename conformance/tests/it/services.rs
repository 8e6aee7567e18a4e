//! Services (issues 9 and 11), black-box with stock kubectl: cluster IPs from
//! `--service-cluster-ip-range` (requested ones honoured or refused with upstream's messages,
//! headless, released on delete, IP family defaulting), node ports from
//! `--service-node-port-range` (auto, requested, conflicts, released on type change and
//! delete, health-check node ports), the `kubernetes` Service, ServiceCIDR, Endpoints and
//! EndpointSlice kept by the lease reconciler, the repair loops, and several API servers on one
//! etcd listing each other until one dies and its lease expires.

use std::time::{Duration, Instant};

use ferrokube_conformance::{EtcdCluster, ServerSpec, TestServer};
use serde_json::Value;

use crate::workloads::{eventually, get_json};

fn svc_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: 80\n{spec}"
    )
}

fn create_fails(server: &TestServer, yaml: &str) -> String {
    let out = server.kubectl_stdin(["create", "-f", "-"], yaml);
    assert!(
        !out.status.success(),
        "accepted:\n{yaml}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

fn cluster_ip(server: &TestServer, name: &str) -> String {
    server.must_kubectl(["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"])
}

fn node_ports(server: &TestServer, name: &str) -> Vec<i64> {
    get_json(server, &["get", "svc", name])["spec"]["ports"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["nodePort"].as_i64()).collect())
        .unwrap_or_default()
}

fn exists(server: &TestServer, args: &[&str]) -> bool {
    server.kubectl(args.iter().copied()).status.success()
}

#[test]
fn kubernetes_service_endpoints_and_service_cidr() {
    let server = TestServer::start_with_args(&["--service-cluster-ip-range=10.55.0.0/16"]);
    let port = i64::from(server.port());
    let svc = eventually(&server, "the kubernetes Service", || {
        exists(&server, &["get", "svc", "kubernetes"])
            .then(|| get_json(&server, &["get", "svc", "kubernetes"]))
    });
    assert_eq!(svc["spec"]["clusterIP"], "10.55.0.1", "{svc:#}");
    assert_eq!(svc["spec"]["clusterIPs"], serde_json::json!(["10.55.0.1"]));
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(
        svc["spec"]["ports"],
        serde_json::json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}])
    );
    assert_eq!(
        svc["metadata"]["labels"],
        serde_json::json!({"component": "apiserver", "provider": "kubernetes"})
    );
    assert!(svc["spec"].get("selector").is_none(), "{svc:#}");

    // `kubectl get svc kubernetes` as a user sees it.
    let table = server.must_kubectl(["get", "svc", "kubernetes"]);
    let row = crate::util::squash(&table);
    assert!(
        row.contains("kubernetes ClusterIP 10.55.0.1 <none> 443/TCP"),
        "{table}"
    );

    let eps = eventually(&server, "the kubernetes Endpoints", || {
        exists(&server, &["get", "endpoints", "kubernetes"])
            .then(|| get_json(&server, &["get", "endpoints", "kubernetes"]))
    });
    assert_eq!(
        eps["subsets"],
        serde_json::json!([{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]),
        "{eps:#}"
    );
    assert_eq!(
        eps["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );
    let slice = eventually(&server, "the kubernetes EndpointSlice", || {
        exists(&server, &["get", "endpointslice", "kubernetes"])
            .then(|| get_json(&server, &["get", "endpointslice", "kubernetes"]))
    });
    assert_eq!(slice["addressType"], "IPv4", "{slice:#}");
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kubernetes"
    );
    assert_eq!(
        slice["endpoints"],
        serde_json::json!([{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}])
    );
    assert_eq!(
        slice["ports"],
        serde_json::json!([{"name": "https", "port": port, "protocol": "TCP"}])
    );

    let cidr = get_json(&server, &["get", "servicecidrs", "kubernetes"]);
    assert_eq!(
        cidr["spec"]["cidrs"],
        serde_json::json!(["10.55.0.0/16"]),
        "{cidr:#}"
    );
    let ready = &cidr["status"]["conditions"][0];
    assert_eq!(
        (ready["type"].as_str(), ready["status"].as_str()),
        (Some("Ready"), Some("True")),
        "{cidr:#}"
    );
    assert_eq!(ready["message"], "Kubernetes Service CIDR is ready");
    let ipa = get_json(&server, &["get", "ipaddresses", "10.55.0.1"]);
    assert_eq!(
        ipa["spec"]["parentRef"],
        serde_json::json!({"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"})
    );
    let listed = server.must_kubectl(["get", "ipaddresses,servicecidrs"]);
    assert!(
        listed.contains("10.55.0.1") && listed.contains("services/default/kubernetes"),
        "{listed}"
    );
    assert!(listed.contains("10.55.0.0/16"), "{listed}");

    // Deleted, it comes back (the controller re-creates it with the same address).
    server.must_kubectl(["delete", "svc", "kubernetes"]);
    eventually(&server, "the kubernetes Service back", || {
        (exists(&server, &["get", "svc", "kubernetes"])
            && cluster_ip(&server, "kubernetes") == "10.55.0.1")
            .then_some(())
    });
}

#[test]
fn cluster_ips_come_from_the_range_and_conflicts_are_refused() {
    let mut server = TestServer::start_with_args(&["--service-cluster-ip-range=10.123.0.0/24"]);
    // Automatic addresses: in the range, never the network, broadcast or kubernetes address.
    for i in 0..20 {
        server.must_kubectl([
            "create",
            "service",
            "clusterip",
            &format!("auto-{i}"),
            "--tcp=80:8080",
        ]);
    }
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let ip = cluster_ip(&server, &format!("auto-{i}"));
        let last: u32 = ip
            .strip_prefix("10.123.0.")
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("{ip} not in 10.123.0.0/24"));
        assert!((2..=254).contains(&last), "{ip}");
        assert!(seen.insert(ip.clone()), "{ip} handed out twice");
        let ipa = get_json(&server, &["get", "ipaddresses", &ip]);
        assert_eq!(ipa["spec"]["parentRef"]["name"], format!("auto-{i}"));
        assert_eq!(
            ipa["metadata"]["labels"]["ipaddress.kubernetes.io/managed-by"],
            "ipallocator.k8s.io"
        );
    }
    let s = get_json(&server, &["get", "svc", "auto-0"]);
    assert_eq!(s["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(s["spec"]["ipFamilyPolicy"], "SingleStack");

    // A requested address is honoured, then refused to anyone else. It is in the static band
    // (the lowest 16 of a /24, upstream's ServiceIPStaticSubrange), which automatic allocation
    // leaves alone: an address in the upper band could already have gone to one of the 20 above.
    server.must_kubectl_stdin(
        ["create", "-f", "-"],
        &svc_yaml("fixed", "  clusterIP: 10.123.0.10\n"),
    );
    assert_eq!(cluster_ip(&server, "fixed"), "10.123.0.10");
    let err = create_fails(&server, &svc_yaml("dup", "  clusterIP: 10.123.0.10\n"));
    assert_eq!(
        err,
        "The Service \"dup\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.123.0.10\"}: failed to allocate IP 10.123.0.10: provided IP is already allocated"
    );
    let err = create_fails(&server, &svc_yaml("far", "  clusterIP: 10.200.0.5\n"));
    assert!(
        err.ends_with("spec.clusterIPs: Invalid value: []string{\"10.200.0.5\"}: failed to allocate IP 10.200.0.5: the provided network does not match the current range"),
        "{err}"
    );
    let err = create_fails(&server, &svc_yaml("bcast", "  clusterIP: 10.123.0.255\n"));
    assert!(
        err.ends_with("failed to allocate IP 10.123.0.255: the provided IP (10.123.0.255) is not in the valid range. The range of valid IPs is 10.123.0.0/24"),
        "{err}"
    );
    let err = create_fails(&server, &svc_yaml("v6", "  ipFamilies: [IPv6]\n"));
    assert!(
        err.contains("spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"),
        "{err}"
    );
    let err = create_fails(
        &server,
        &svc_yaml("dual", "  ipFamilyPolicy: RequireDualStack\n"),
    );
    assert!(err.contains("spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"), "{err}");
    // A refused create leaks nothing.
    assert!(!exists(&server, &["get", "ipaddresses", "10.200.0.5"]));

    // Headless: no address; PreferDualStack on a single-stack cluster: one family.
    server.must_kubectl_stdin(
        ["create", "-f", "-"],
        &svc_yaml("headless", "  clusterIP: None\n  selector:\n    app: x\n"),
    );
    assert_eq!(cluster_ip(&server, "headless"), "None");
    server.must_kubectl_stdin(
        ["create", "-f", "-"],
        &svc_yaml("prefer", "  ipFamilyPolicy: PreferDualStack\n"),
    );
    let p = get_json(&server, &["get", "svc", "prefer"]);
    assert_eq!(
        p["spec"]["ipFamilies"],
        serde_json::json!(["IPv4"]),
        "{p:#}"
    );
    // Dry-run shows an address and reserves nothing.
    let dry = server.must_kubectl_stdin(
        ["create", "--dry-run=server", "-o", "json", "-f", "-"],
        &svc_yaml("dry", ""),
    );
    let dry_ip = crate::util::json(&dry)["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(dry_ip.starts_with("10.123.0."), "{dry}");
    assert!(!exists(&server, &["get", "ipaddresses", &dry_ip]) || seen.contains(&dry_ip));

    // Delete releases the address, which is free again.
    server.must_kubectl(["delete", "svc", "fixed"]);
    assert!(!exists(&server, &["get", "ipaddresses", "10.123.0.10"]));
    server.must_kubectl_stdin(
        ["create", "-f", "-"],
        &svc_yaml("again", "  clusterIP: 10.123.0.10\n"),
    );

    // Allocations survive a restart.
    server.restart();
    let err = create_fails(&server, &svc_yaml("dup2", "  clusterIP: 10.123.0.10\n"));
    assert!(err.contains("provided IP is already allocated"), "{err}");
}

#[test]
fn node_ports_are_allocated_and_released() {
    let server = TestServer::start_with_args(&["--service-node-port-range=30100-30119"]);
    server.must_kubectl(["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    let auto = node_ports(&server, "np");
    assert_eq!(auto.len(), 1);
    assert!((30100..=30119).contains(&auto[0]), "{auto:?}");
    server.must_kubectl([
        "create",
        "service",
        "nodeport",
        "fixed",
        "--tcp=80:8080",
        "--node-port=30105",
    ]);
    assert_eq!(node_ports(&server, "fixed"), vec![30105]);
    if auto[0] != 30105 {
        let out = server.kubectl([
            "create",
            "service",
            "nodeport",
            "dup",
            "--tcp=80:8080",
            "--node-port=30105",
        ]);
        assert!(!out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            "error: failed to create NodePort service: Service \"dup\" is invalid: spec.ports[0].nodePort: Invalid value: 30105: provided port is already allocated"
        );
    }
    let out = server.kubectl([
        "create",
        "service",
        "nodeport",
        "far",
        "--tcp=80:8080",
        "--node-port=31000",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.ports[0].nodePort: Invalid value: 31000: provided port is not in the valid range. The range of valid ports is 30100-30119"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Two ports get two node ports; TCP and UDP on one port number share one.
    server.must_kubectl_stdin(
        ["create", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: multi\nspec:\n  type: NodePort\n  ports:\n  - {name: a, port: 53, protocol: TCP}\n  - {name: b, port: 53, protocol: UDP}\n  - {name: c, port: 80}\n",
    );
    let m = node_ports(&server, "multi");
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(m[0], m[1], "TCP and UDP share: {m:?}");
    assert_ne!(m[0], m[2], "{m:?}");

    // Type change to ClusterIP drops and frees the node port; back to NodePort allocates one.
    server.must_kubectl([
        "patch",
        "svc",
        "fixed",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    assert!(node_ports(&server, "fixed").is_empty());
    server.must_kubectl([
        "create",
        "service",
        "nodeport",
        "reuse",
        "--tcp=80:8080",
        "--node-port=30105",
    ]);
    server.must_kubectl([
        "patch",
        "svc",
        "fixed",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    let back = node_ports(&server, "fixed");
    assert!(
        back.len() == 1 && back[0] != 30105 && (30100..=30119).contains(&back[0]),
        "{back:?}"
    );
    // An update that leaves out the node port keeps it (upstream patchAllocatedValues).
    let before = node_ports(&server, "np");
    server.must_kubectl(["label", "svc", "np", "x=y"]);
    let mut spec = get_json(&server, &["get", "svc", "np"]);
    spec["spec"]["ports"][0]
        .as_object_mut()
        .map(|p| p.remove("nodePort"));
    server.must_kubectl_stdin(["replace", "-f", "-"], &spec.to_string());
    assert_eq!(node_ports(&server, "np"), before);

    // Delete frees: the port can be requested again.
    server.must_kubectl(["delete", "svc", "reuse"]);
    server.must_kubectl([
        "create",
        "service",
        "nodeport",
        "reuse2",
        "--tcp=80:8080",
        "--node-port=30105",
    ]);

    // LoadBalancer with externalTrafficPolicy Local gets a health-check node port.
    server.must_kubectl_stdin(
        ["create", "-f", "-"],
        &svc_yaml(
            "lb",
            "  type: LoadBalancer\n  externalTrafficPolicy: Local\n",
        ),
    );
    let lb = get_json(&server, &["get", "svc", "lb"]);
    let hc = lb["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0);
    let np = lb["spec"]["ports"][0]["nodePort"].as_i64().unwrap_or(0);
    assert!(
        (30100..=30119).contains(&hc) && (30100..=30119).contains(&np) && hc != np,
        "{lb:#}"
    );

    // The range fills up: the error says so.
    let mut created = 0;
    loop {
        let out = server.kubectl([
            "create",
            "service",
            "nodeport",
            &format!("fill-{created}"),
            "--tcp=80:8080",
        ]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("failed to allocate a nodePort: range is full"),
                "{err}"
            );
            break;
        }
        created += 1;
        assert!(created <= 20, "more node ports than the range holds");
    }
    let mut all: Vec<i64> = Vec::new();
    for s in crate::workloads::items(&server, &["get", "svc"]) {
        for p in s["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(n) = p["nodePort"].as_i64() {
                all.push(n);
            }
        }
        if let Some(n) = s["spec"]["healthCheckNodePort"].as_i64() {
            all.push(n);
        }
    }
    all.sort_unstable();
    let total = all.len();
    all.dedup();
    // multi's TCP/UDP pair shares one port.
    assert_eq!(
        total - all.len(),
        1,
        "no node port handed out twice: {all:?}"
    );
    assert_eq!(all.len(), 20, "{all:?}");
}

#[test]
fn repair_frees_leaked_addresses_and_restores_missing_ones() {
    let server = TestServer::start_with_args(&[
        "--service-cluster-ip-range=10.77.0.0/24",
        "--debug-service-repair-interval=1s",
    ]);
    // A leaked IPAddress (what an interrupted create leaves): freed after the grace period.
    server.must_kubectl_stdin(
        ["create", "-f", "-"],
        "apiVersion: networking.k8s.io/v1\nkind: IPAddress\nmetadata:\n  name: 10.77.0.99\n  labels:\n    ipaddress.kubernetes.io/ip-family: IPv4\n    ipaddress.kubernetes.io/managed-by: ipallocator.k8s.io\nspec:\n  parentRef: {group: \"\", resource: services, namespace: default, name: gone}\n",
    );
    eventually(&server, "the leaked IPAddress freed", || {
        (!exists(&server, &["get", "ipaddresses", "10.77.0.99"])).then_some(())
    });
    let events = server.must_kubectl(["get", "events", "-n", "default", "-o", "json"]);
    assert!(
        events.contains("IPAddressNotAllocated")
            && events.contains(
                "IPAddress: 10.77.0.99 for Service default/gone appears to have leaked: cleaning up"
            ),
        "{events}"
    );

    // A Service whose IPAddress went missing gets it back, with an event.
    server.must_kubectl(["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let ip = cluster_ip(&server, "web");
    server.must_kubectl(["delete", "ipaddress", &ip]);
    eventually(&server, "the IPAddress re-reserved", || {
        exists(&server, &["get", "ipaddresses", &ip]).then_some(())
    });
    let owner = get_json(&server, &["get", "ipaddresses", &ip]);
    assert_eq!(owner["spec"]["parentRef"]["name"], "web");
    let ev = eventually(&server, "the ClusterIPNotAllocated event", || {
        let all = crate::workloads::items(&server, &["get", "events", "-n", "default"]);
        all.into_iter()
            .find(|e| e["reason"] == "ClusterIPNotAllocated")
    });
    assert_eq!(ev["involvedObject"]["name"], "web");
    assert_eq!(ev["type"], "Warning");
    assert_eq!(
        ev["message"],
        format!("Cluster IP [IPv4]: {ip} is not allocated; repairing")
    );
}

/// Two API servers on one etcd: the `kubernetes` endpoints list both advertise addresses;
/// the one killed drops out once its lease expires.
#[test]
fn endpoint_leases_list_live_apiservers_only() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let server = |addr: &str| {
        TestServer::start_with(ServerSpec {
            apiserver_only: true,
            extra_args: vec![
                format!("--etcd-servers={}", etcd.endpoints()),
                format!("--advertise-address={addr}"),
                "--debug-endpoint-lease-ttl=3s".into(),
            ],
            data_dir: None,
        })
    };
    let a = server("127.0.0.2");
    let mut b = server("127.0.0.3");
    let addresses = |s: &TestServer| -> Vec<String> {
        let slice = get_json(s, &["get", "endpointslice", "kubernetes"]);
        slice["endpoints"]
            .as_array()
            .map(|es| {
                es.iter()
                    .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    eventually(&a, "both API servers listed", || {
        (exists(&a, &["get", "endpointslice", "kubernetes"])
            && addresses(&a) == ["127.0.0.2", "127.0.0.3"])
        .then_some(())
    });
    let eps: Value = get_json(&b, &["get", "endpoints", "kubernetes"]);
    assert_eq!(
        eps["subsets"][0]["addresses"],
        serde_json::json!([{"ip": "127.0.0.2"}, {"ip": "127.0.0.3"}])
    );
    let killed = Instant::now();
    b.kill9();
    eventually(&a, "the killed API server dropped", || {
        (addresses(&a) == ["127.0.0.2"]).then_some(())
    });
    let took = killed.elapsed();
    eprintln!("a killed API server left the kubernetes endpoints after {took:?} (lease TTL 3 s)");
    assert!(
        took >= Duration::from_secs(1),
        "dropped before its lease could expire: {took:?}"
    );
}

#[test]
fn dual_stack_ranges_give_each_family_an_address() {
    let server =
        TestServer::start_with_args(&["--service-cluster-ip-range=10.44.0.0/24,fd00:44::/112"]);
    let k = eventually(&server, "the kubernetes Service", || {
        exists(&server, &["get", "svc", "kubernetes"])
            .then(|| get_json(&server, &["get", "svc", "kubernetes"]))
    });
    // The kubernetes Service is single-stack on the primary family.
    assert_eq!(
        k["spec"]["clusterIPs"],
        serde_json::json!(["10.44.0.1"]),
        "{k:#}"
    );
    let cidr = get_json(&server, &["get", "servicecidrs", "kubernetes"]);
    assert_eq!(
        cidr["spec"]["cidrs"],
        serde_json::json!(["10.44.0.0/24", "fd00:44::/112"])
    );

    server.must_kubectl_stdin(
        ["create", "-f", "-"],
        &svc_yaml("both", "  ipFamilyPolicy: PreferDualStack\n"),
    );
    let s = get_json(&server, &["get", "svc", "both"]);
    assert_eq!(
        s["spec"]["ipFamilies"],
        serde_json::json!(["IPv4", "IPv6"]),
        "{s:#}"
    );
    let ips: Vec<&str> = s["spec"]["clusterIPs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        ips.len() == 2 && ips[0].starts_with("10.44.0.") && ips[1].starts_with("fd00:44::"),
        "{ips:?}"
    );
    assert_eq!(s["spec"]["clusterIP"], ips[0]);
    for ip in &ips {
        assert!(exists(&server, &["get", "ipaddresses", ip]), "{ip}");
    }
    server.must_kubectl_stdin(
        ["create", "-f", "-"],
        &svc_yaml("six", "  ipFamilies: [IPv6]\n"),
    );
    let six = cluster_ip(&server, "six");
    assert!(six.starts_with("fd00:44::"), "{six}");
    server.must_kubectl_stdin(["create", "-f", "-"], &svc_yaml("four", ""));
    assert_eq!(
        get_json(&server, &["get", "svc", "four"])["spec"]["ipFamilies"],
        serde_json::json!(["IPv4"])
    );
    // Downgrade to single stack frees the secondary address.
    server.must_kubectl([
        "patch",
        "svc",
        "both",
        "-p",
        r#"{"spec":{"ipFamilyPolicy":"SingleStack"}}"#,
    ]);
    let after = get_json(&server, &["get", "svc", "both"]);
    assert_eq!(
        after["spec"]["clusterIPs"],
        serde_json::json!([ips[0]]),
        "{after:#}"
    );
    assert!(!exists(&server, &["get", "ipaddresses", ips[1]]));
    server.must_kubectl(["delete", "svc", "both", "six"]);
    assert!(!exists(&server, &["get", "ipaddresses", ips[0]]));
    assert!(!exists(&server, &["get", "ipaddresses", &six]));
}

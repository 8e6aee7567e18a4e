//! Core (`""` group) printers other than pods, events and volumes: services, endpoints, nodes,
//! namespaces, secrets, service accounts, config maps, resource quotas, replication
//! controllers, pod templates and component statuses.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::format::{
    age, containers, format_labels, int, int_or, join_host_port, len_at, list,
    load_balancer_ingress, name, quantity, text,
};
use super::{AGE, CONTAINERS, CellFn, ColumnDefinition, IMAGES, NAME, Printer, col, wide};

pub(super) fn lookup(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [ColumnDefinition], CellFn) = match (group, resource) {
        ("", "services") => (SERVICE, service),
        ("", "endpoints") => (ENDPOINTS, endpoints),
        ("", "nodes") => (NODE, node),
        ("", "namespaces") => (NAMESPACE, namespace),
        ("", "secrets") => (SECRET, secret),
        ("", "serviceaccounts") => (SERVICE_ACCOUNT, service_account),
        ("", "configmaps") => (CONFIG_MAP, config_map),
        ("", "resourcequotas") => (RESOURCE_QUOTA, resource_quota),
        ("", "replicationcontrollers") => (REPLICATION_CONTROLLER, replication_controller),
        ("", "podtemplates") => (POD_TEMPLATE, pod_template),
        ("", "componentstatuses") => (COMPONENT_STATUS, component_status),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

const SERVICE: &[ColumnDefinition] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed. Defaults to ClusterIP.",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

/// `getServiceExternalIP` (wide form: no clipping).
fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = list(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match text(svc, "/spec/type").as_str() {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_owned()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_ingress(svc, "/status/loadBalancer/ingress");
            if !external.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').collect()
                };
                all.extend(external);
                return all.join(",");
            }
            if lb.is_empty() {
                "<pending>".to_owned()
            } else {
                lb
            }
        }
        "ExternalName" => text(svc, "/spec/externalName"),
        _ => "<unknown>".to_owned(),
    }
}

/// `makePortString`: `80/TCP`, or `80:30080/TCP` with a node port.
fn service_ports(svc: &Value) -> String {
    let pieces: Vec<String> = list(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    if pieces.is_empty() {
        "<none>".to_owned()
    } else {
        pieces.join(",")
    }
}

fn service(svc: &Value, now: Timestamp) -> Vec<Value> {
    // `spec.clusterIPs` is always set on a defaulted Service; fall back to `clusterIP` for
    // objects stored before that defaulting.
    let mut cluster_ip = text(svc, "/spec/clusterIPs/0");
    if cluster_ip.is_empty() {
        cluster_ip = text(svc, "/spec/clusterIP");
    }
    if cluster_ip.is_empty() {
        cluster_ip = "<none>".to_owned();
    }
    vec![
        json!(name(svc)),
        json!(text(svc, "/spec/type")),
        json!(cluster_ip),
        json!(service_external_ip(svc)),
        json!(service_ports(svc)),
        json!(age(svc, now)),
        json!(format_labels(svc.pointer("/spec/selector"))),
    ]
}

const ENDPOINTS: &[ColumnDefinition] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

/// `formatEndpoints` with all ports: up to three `ip:port`, then `+ N more...`.
fn format_endpoints(ep: &Value) -> String {
    let subsets = list(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    const MAX: usize = 3;
    let mut shown: Vec<String> = Vec::new();
    let mut count = 0usize;
    for ss in subsets {
        let addresses = ss
            .get("addresses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ports = ss
            .get("ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ip = |a: &Value| {
            a.get("ip")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        if ports.is_empty() {
            count += addresses.len();
            shown.extend(
                addresses
                    .iter()
                    .map(ip)
                    .take(MAX.saturating_sub(shown.len())),
            );
            continue;
        }
        for port in ports {
            let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
            count += addresses.len();
            shown.extend(
                addresses
                    .iter()
                    .map(|a| join_host_port(&ip(a), number))
                    .take(MAX.saturating_sub(shown.len())),
            );
        }
    }
    let joined = shown.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn endpoints(ep: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(ep)),
        json!(format_endpoints(ep)),
        json!(age(ep, now)),
    ]
}

const NODE: &[ColumnDefinition] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "External-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

/// `findNodeRoles`: `node-role.kubernetes.io/<role>` keys and `kubernetes.io/role` values.
fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_owned());
                }
            } else if k == "kubernetes.io/role" {
                let v = v.as_str().unwrap_or_default();
                if !v.is_empty() {
                    roles.push(v.to_owned());
                }
            }
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.join(",")
    }
}

fn node_address(node: &Value, type_: &str) -> String {
    list(node, "/status/addresses")
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some(type_))
        .and_then(|a| a.get("address").and_then(Value::as_str))
        .unwrap_or("<none>")
        .to_owned()
}

fn node(node: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition feeds the status; the last entry of a type wins, as in a Go map.
    let ready = list(node, "/status/conditions")
        .iter()
        .rev()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
    let mut status = vec![match ready {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let or_unknown = |v: String| {
        if v.is_empty() {
            "<unknown>".to_owned()
        } else {
            v
        }
    };
    vec![
        json!(name(node)),
        json!(status.join(",")),
        json!(node_roles(node)),
        json!(age(node, now)),
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(or_unknown(text(node, "/status/nodeInfo/osImage"))),
        json!(or_unknown(text(node, "/status/nodeInfo/kernelVersion"))),
        json!(or_unknown(text(
            node,
            "/status/nodeInfo/containerRuntimeVersion"
        ))),
    ]
}

const NAMESPACE: &[ColumnDefinition] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

fn namespace(ns: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(ns)),
        json!(text(ns, "/status/phase")),
        json!(age(ns, now)),
    ]
}

const SECRET: &[ColumnDefinition] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col(
        "Data",
        "string",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

fn secret(s: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(s)),
        json!(text(s, "/type")),
        json!(len_at(s, "/data")),
        json!(age(s, now)),
    ]
}

const SERVICE_ACCOUNT: &[ColumnDefinition] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

fn service_account(sa: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(sa)),
        json!(len_at(sa, "/secrets")),
        json!(age(sa, now)),
    ]
}

const CONFIG_MAP: &[ColumnDefinition] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];

fn config_map(cm: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(cm)),
        json!(len_at(cm, "/data") + len_at(cm, "/binaryData")),
        json!(age(cm, now)),
    ]
}

const RESOURCE_QUOTA: &[ColumnDefinition] = &[
    NAME,
    col(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    AGE,
];

/// `printResourceQuota`: `resource: used/hard` sorted by name, `limits.*` in the Limit column.
fn resource_quota(rq: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<&String> = rq
        .pointer("/status/hard")
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    resources.sort();
    let mut request: Vec<String> = Vec::new();
    let mut limit: Vec<String> = Vec::new();
    for r in resources {
        let key = r.replace('~', "~0").replace('/', "~1");
        let used = quantity(rq, &format!("/status/used/{key}"));
        let hard = quantity(rq, &format!("/status/hard/{key}"));
        let entry = format!("{r}: {used}/{hard}");
        let pieces: Vec<&str> = r.split('.').collect();
        if pieces.len() > 1 && pieces[0] == "limits" {
            limit.push(entry);
        } else {
            request.push(entry);
        }
    }
    vec![
        json!(name(rq)),
        json!(request.join(", ")),
        json!(limit.join(", ")),
        json!(age(rq, now)),
    ]
}

const REPLICATION_CONTROLLER: &[ColumnDefinition] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replication controller.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the Replicas count.",
    ),
];

fn replication_controller(rc: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(list(rc, "/spec/template/spec/containers"));
    vec![
        json!(name(rc)),
        json!(int_or(rc, "/spec/replicas", 1)),
        json!(int(rc, "/status/replicas")),
        json!(int(rc, "/status/readyReplicas")),
        json!(age(rc, now)),
        json!(names),
        json!(images),
        json!(format_labels(rc.pointer("/spec/selector"))),
    ]
}

const POD_TEMPLATE: &[ColumnDefinition] = &[
    NAME,
    col(
        "Containers",
        "string",
        "Names of each container in the template.",
    ),
    col(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    ),
    col("Pod Labels", "string", "The labels for the pod template."),
];

fn pod_template(pt: &Value, _now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(list(pt, "/template/spec/containers"));
    vec![
        json!(name(pt)),
        json!(names),
        json!(images),
        json!(format_labels(pt.pointer("/template/metadata/labels"))),
    ]
}

const COMPONENT_STATUS: &[ColumnDefinition] = &[
    NAME,
    col("Status", "string", "Status of the component conditions"),
    col("Message", "string", "Message of the component conditions"),
    col("Error", "string", "Error of the component conditions"),
];

fn component_status(cs: &Value, _now: Timestamp) -> Vec<Value> {
    let healthy = list(cs, "/conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Healthy"));
    let (status, message, error) = match healthy {
        Some(c) => (
            if c.get("status").and_then(Value::as_str) == Some("True") {
                "Healthy"
            } else {
                "Unhealthy"
            },
            c.get("message").and_then(Value::as_str).unwrap_or_default(),
            c.get("error").and_then(Value::as_str).unwrap_or_default(),
        ),
        None => ("Unknown", "", ""),
    };
    vec![json!(name(cs)), json!(status), json!(message), json!(error)]
}

#[cfg(test)]
mod tests {
    use super::super::cells;
    use super::super::test_support::{names, now};
    use serde_json::{Value, json};

    fn meta(name: &str) -> Value {
        json!({"name": name, "namespace": "default", "creationTimestamp": "2025-06-01T11:57:00Z"})
    }

    #[test]
    fn services_by_type() {
        assert_eq!(
            names("", "services"),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        let node_port = json!({"metadata": meta("web"), "spec": {
            "type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web", "tier": "fe"}}});
        assert_eq!(
            cells("", "services", &node_port, now()),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("3m"),
                json!("app=web,tier=fe")
            ]
        );
        let pending = json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"],
            "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}});
        let row = cells("", "services", &pending, now());
        assert_eq!(
            (row[3].as_str(), row[6].as_str()),
            (Some("<pending>"), Some("<none>"))
        );
        let ready = json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"],
            "externalIPs": ["192.0.2.9"]}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}}});
        assert_eq!(
            cells("", "services", &ready, now())[3],
            json!("203.0.113.7,lb.example.com,192.0.2.9")
        );
        let headless = json!({"metadata": meta("db"), "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}});
        let row = cells("", "services", &headless, now());
        assert_eq!(
            (row[2].as_str(), row[4].as_str()),
            (Some("None"), Some("<none>"))
        );
        let external = json!({"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        let row = cells("", "services", &external, now());
        assert_eq!(
            (row[2].as_str(), row[3].as_str()),
            (Some("<none>"), Some("db.example.com"))
        );
    }

    #[test]
    fn nodes_status_roles_and_wide_fields() {
        let node = json!({"metadata": {"name": "cp-1", "creationTimestamp": "2025-05-30T12:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master", "kubernetes.io/os": "linux"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "cp-1"}],
                "nodeInfo": {"kubeletVersion": "v1.35.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0",
                    "containerRuntimeVersion": "containerd://2.0.0"}}});
        assert_eq!(
            cells("", "nodes", &node, now()),
            vec![
                json!("cp-1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,master"),
                json!("2d"),
                json!("v1.35.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0"),
                json!("containerd://2.0.0")
            ]
        );
        let bare = json!({"metadata": {"name": "n"}});
        let row = cells("", "nodes", &bare, now());
        assert_eq!(
            row[1..4],
            [json!("Unknown"), json!("<none>"), json!("<unknown>")]
        );
        assert_eq!(row[7], json!("<unknown>"));
    }

    #[test]
    fn counts_for_config_secret_and_service_account() {
        let cm = json!({"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            cells("", "configmaps", &cm, now()),
            vec![json!("cfg"), json!(3), json!("3m")]
        );
        let s = json!({"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            cells("", "secrets", &s, now()),
            vec![
                json!("tls"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("3m")
            ]
        );
        let sa = json!({"metadata": meta("default")});
        assert_eq!(
            cells("", "serviceaccounts", &sa, now()),
            vec![json!("default"), json!(0), json!("3m")]
        );
        let ns = json!({"metadata": meta("kube-system"), "status": {"phase": "Active"}});
        assert_eq!(
            cells("", "namespaces", &ns, now()),
            vec![json!("kube-system"), json!("Active"), json!("3m")]
        );
    }

    #[test]
    fn endpoints_cap_at_three() {
        let ep = json!({"metadata": meta("web"), "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}
        ]});
        assert_eq!(
            cells("", "endpoints", &ep, now())[1],
            json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...")
        );
        let empty = json!({"metadata": meta("none")});
        assert_eq!(cells("", "endpoints", &empty, now())[1], json!("<none>"));
        let headless =
            json!({"metadata": meta("h"), "subsets": [{"addresses": [{"ip": "fd00::1"}]}]});
        assert_eq!(
            cells("", "endpoints", &headless, now())[1],
            json!("fd00::1")
        );
    }

    #[test]
    fn resource_quota_splits_requests_and_limits() {
        let rq = json!({"metadata": meta("q"), "status": {
            "hard": {"pods": "10", "limits.memory": "2Gi", "requests.cpu": "1", "count/deployments.apps": "5"},
            "used": {"pods": "3", "limits.memory": "512Mi"}}});
        assert_eq!(
            cells("", "resourcequotas", &rq, now()),
            vec![
                json!("q"),
                json!("count/deployments.apps: 0/5, pods: 3/10, requests.cpu: 0/1"),
                json!("limits.memory: 512Mi/2Gi"),
                json!("3m")
            ]
        );
    }

    #[test]
    fn replication_controllers_and_pod_templates() {
        let rc = json!({"metadata": meta("rc"), "spec": {"replicas": 3, "selector": {"app": "x"},
            "template": {"spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2}});
        assert_eq!(
            cells("", "replicationcontrollers", &rc, now()),
            vec![
                json!("rc"),
                json!(3),
                json!(3),
                json!(2),
                json!("3m"),
                json!("a,b"),
                json!("nginx,busybox"),
                json!("app=x")
            ]
        );
        let pt = json!({"metadata": meta("pt"), "template": {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "a", "image": "nginx"}]}}});
        assert_eq!(
            cells("", "podtemplates", &pt, now()),
            vec![json!("pt"), json!("a"), json!("nginx"), json!("app=x")]
        );
    }

    #[test]
    fn component_status_reads_healthy_condition() {
        let cs = json!({"metadata": {"name": "etcd-0"}, "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
        assert_eq!(
            cells("", "componentstatuses", &cs, now()),
            vec![json!("etcd-0"), json!("Healthy"), json!("ok"), json!("")]
        );
    }
}

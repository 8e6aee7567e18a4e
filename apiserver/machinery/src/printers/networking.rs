//! `networking.k8s.io` and `discovery.k8s.io` printers: ingresses, ingress classes, network
//! policies, service CIDRs, IP addresses and endpoint slices.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::format::{
    age, format_label_selector, list, list_with_more, load_balancer_ingress, name, opt_text, text,
};
use super::{AGE, CellFn, ColumnDefinition, NAME, Printer, col};

pub(super) fn lookup(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [ColumnDefinition], CellFn) = match (group, resource) {
        ("networking.k8s.io", "ingresses") => (INGRESS, ingress),
        ("networking.k8s.io", "ingressclasses") => (INGRESS_CLASS, ingress_class),
        ("networking.k8s.io", "networkpolicies") => (NETWORK_POLICY, network_policy),
        ("networking.k8s.io", "servicecidrs") => (SERVICE_CIDR, service_cidr),
        ("networking.k8s.io", "ipaddresses") => (IP_ADDRESS, ip_address),
        ("discovery.k8s.io", "endpointslices") => (ENDPOINT_SLICE, endpoint_slice),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

const INGRESS: &[ColumnDefinition] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

/// `formatHosts`: up to three hosts, `+ N more...` counted over all rules, `*` when none.
fn ingress_hosts(ing: &Value) -> String {
    const MAX: usize = 3;
    let rules = list(ing, "/spec/rules");
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        let host = rule.get("host").and_then(Value::as_str).unwrap_or_default();
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".to_owned();
    }
    let joined = hosts.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

fn ingress(ing: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if list(ing, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        json!(name(ing)),
        json!(opt_text(ing, "/spec/ingressClassName").unwrap_or("<none>")),
        json!(ingress_hosts(ing)),
        json!(load_balancer_ingress(ing, "/status/loadBalancer/ingress")),
        json!(ports),
        json!(age(ing, now)),
    ]
}

const INGRESS_CLASS: &[ColumnDefinition] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

fn ingress_class(ic: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match ic.pointer("/spec/parameters").filter(|p| p.is_object()) {
        None => "<none>".to_owned(),
        Some(p) => {
            let mut s = p
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(group) = p.get("apiGroup").and_then(Value::as_str) {
                s = format!("{s}.{group}");
            }
            format!(
                "{s}/{}",
                p.get("name").and_then(Value::as_str).unwrap_or_default()
            )
        }
    };
    vec![
        json!(name(ic)),
        json!(text(ic, "/spec/controller")),
        json!(parameters),
        json!(age(ic, now)),
    ]
}

const NETWORK_POLICY: &[ColumnDefinition] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        "podSelector selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

fn network_policy(np: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(np)),
        json!(format_label_selector(np.pointer("/spec/podSelector"))),
        json!(age(np, now)),
    ]
}

const SERVICE_CIDR: &[ColumnDefinition] = &[
    NAME,
    col(
        "CIDRs",
        "string",
        "CIDRs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs.",
    ),
    AGE,
];

fn service_cidr(sc: &Value, now: Timestamp) -> Vec<Value> {
    let cidrs: Vec<&str> = list(sc, "/spec/cidrs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![json!(name(sc)), json!(cidrs.join(",")), json!(age(sc, now))]
}

/// Upstream declares only these two columns (its cell function also appends an age, which
/// kubectl never shows for lack of a column).
const IP_ADDRESS: &[ColumnDefinition] = &[
    NAME,
    col(
        "ParentRef",
        "string",
        "ParentRef references the resource that an IPAddress is attached to.",
    ),
];

fn ip_address(ip: &Value, _now: Timestamp) -> Vec<Value> {
    let parent = match ip.pointer("/spec/parentRef").filter(|p| p.is_object()) {
        None => "<none>".to_owned(),
        Some(p) => {
            let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
            let mut s = if field("group").is_empty() {
                field("resource").to_lowercase()
            } else {
                format!("{}.{}", field("resource"), field("group")).to_lowercase()
            };
            if !field("namespace").is_empty() {
                s = format!("{s}/{}", field("namespace"));
            }
            format!("{s}/{}", field("name"))
        }
    };
    vec![json!(name(ip)), json!(parent)]
}

const ENDPOINT_SLICE: &[ColumnDefinition] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

fn endpoint_slice(es: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = list(es, "/ports")
        .iter()
        .map(|p| {
            match (
                p.get("port").and_then(Value::as_i64),
                p.get("name").and_then(Value::as_str),
            ) {
                (Some(n), _) => n.to_string(),
                (None, Some(n)) => n.to_owned(),
                (None, None) => "*".to_owned(),
            }
        })
        .collect();
    let addresses: Vec<String> = list(es, "/endpoints")
        .iter()
        .flat_map(|e| {
            e.get("addresses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    vec![
        json!(name(es)),
        json!(text(es, "/addressType")),
        json!(list_with_more(&ports, 3)),
        json!(list_with_more(&addresses, 3)),
        json!(age(es, now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::cells;
    use super::super::test_support::{names, now};
    use serde_json::json;

    #[test]
    fn ingress_row() {
        assert_eq!(
            names("networking.k8s.io", "ingresses"),
            ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
        );
        let ing = json!({"metadata": {"name": "web", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
                "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}, {}, {"host": "c.example.com"}, {"host": "d.example.com"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
        assert_eq!(
            cells("networking.k8s.io", "ingresses", &ing, now()),
            vec![
                json!("web"),
                json!("nginx"),
                json!("a.example.com,b.example.com,c.example.com + 2 more..."),
                json!("192.0.2.1"),
                json!("80, 443"),
                json!("60s")
            ]
        );
        let bare = json!({"metadata": {"name": "any"}, "spec": {"defaultBackend": {}}});
        let row = cells("networking.k8s.io", "ingresses", &bare, now());
        assert_eq!(
            row[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
    }

    #[test]
    fn endpoint_slices_network_policies_and_classes() {
        let es = json!({"metadata": {"name": "web-abc", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 80}, {"name": "metrics"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]});
        assert_eq!(
            cells("discovery.k8s.io", "endpointslices", &es, now()),
            vec![
                json!("web-abc"),
                json!("IPv4"),
                json!("80,metrics"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."),
                json!("60s")
            ]
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6"});
        assert_eq!(
            cells("discovery.k8s.io", "endpointslices", &empty, now())[2..4],
            [json!("<unset>"), json!("<unset>")]
        );
        let np = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
        assert_eq!(
            cells("networking.k8s.io", "networkpolicies", &np, now())[1],
            json!("<none>")
        );
        let ic = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        assert_eq!(
            cells("networking.k8s.io", "ingressclasses", &ic, now())[1..3],
            [
                json!("k8s.io/ingress-nginx"),
                json!("IngressParameters.k8s.example.com/external-lb")
            ]
        );
        let ip = json!({"metadata": {"name": "10.96.0.1"}, "spec": {"parentRef": {"group": "", "resource": "services",
            "namespace": "default", "name": "kubernetes"}}});
        assert_eq!(
            cells("networking.k8s.io", "ipaddresses", &ip, now()),
            vec![json!("10.96.0.1"), json!("services/default/kubernetes")]
        );
    }
}

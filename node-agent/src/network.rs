//! The simulated runtime's network: a container whose command is a connectivity check
//! (`wget`, `curl`, `nc` to `host:port`, as the test pod of the stock `helm create` chart runs)
//! exits as the real tool would, from what the cluster holds: the name resolves when a Service
//! of that name exists (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`, or its
//! ClusterIP), and the connection succeeds when the Service exposes the port and its Endpoints
//! list a ready address for it (a pod IP connects when that pod is Running and Ready).
//!
//! Nothing is sent anywhere: simulated containers have no network namespace. This is what lets
//! `helm test` pass or fail on a simulated cluster for the reason it would on a real one.

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::Api;
use kube::api::ListParams;

/// A connectivity check found in a container's argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `wget`, `curl` or `nc`.
    pub tool: Tool,
    /// Host name or IP address as written.
    pub host: String,
    /// Destination port.
    pub port: u16,
}

/// The connectivity tools the simulated runtime understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// busybox/GNU wget: exit 1 on any failure.
    Wget,
    /// curl: 6 = could not resolve host, 7 = failed to connect.
    Curl,
    /// netcat: exit 1 on any failure.
    Nc,
}

/// Why a simulated connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// The name does not resolve.
    BadAddress,
    /// Nothing listens behind the address and port.
    Refused,
}

impl Probe {
    /// The tool's exit code for the outcome.
    pub fn exit_code(&self, r: Result<(), NetError>) -> i32 {
        match (r, self.tool) {
            (Ok(()), _) => 0,
            (Err(NetError::BadAddress), Tool::Curl) => 6,
            (Err(NetError::Refused), Tool::Curl) => 7,
            (Err(_), _) => 1,
        }
    }
}

/// The network a simulated container sees.
#[async_trait::async_trait]
pub trait Network: Send + Sync + 'static {
    /// Whether a pod in `namespace` can open a TCP connection to `host:port`.
    async fn connect(&self, namespace: &str, host: &str, port: u16) -> Result<(), NetError>;
}

/// Flags of the three tools that take a separate value (so the value is not the target).
const VALUE_FLAGS: &[&str] = &[
    "-O",
    "-o",
    "-T",
    "-t",
    "-U",
    "-Y",
    "-P",
    "-e",
    "-H",
    "-X",
    "-d",
    "-m",
    "-w",
    "-u",
    "-A",
    "--header",
    "--request",
    "--data",
    "--max-time",
    "--connect-timeout",
    "--output",
    "--user-agent",
    "--write-out",
];

/// The first `wget`/`curl`/`nc` invocation in argv (also inside `sh -c "..."`), if any.
pub fn probe_of(argv: &[String]) -> Option<Probe> {
    let words: Vec<&str> = argv.iter().flat_map(|a| a.split_whitespace()).collect();
    let (pos, tool) = words.iter().enumerate().find_map(|(i, w)| {
        let base = w.rsplit('/').next().unwrap_or(w);
        let tool = match base {
            "wget" => Tool::Wget,
            "curl" => Tool::Curl,
            "nc" | "netcat" => Tool::Nc,
            _ => return None,
        };
        Some((i, tool))
    })?;
    let mut operands = Vec::new();
    let mut skip = false;
    for w in &words[pos + 1..] {
        if matches!(*w, ";" | "&&" | "||" | "|") {
            break;
        }
        let ends = w.ends_with(';');
        let w = w
            .trim_end_matches(';')
            .trim_matches(|c| c == '\'' || c == '"');
        if skip {
            skip = false;
        } else if w.starts_with('-') {
            skip = VALUE_FLAGS.contains(&w);
        } else if !w.is_empty() {
            operands.push(w);
        }
        if ends {
            break;
        }
    }
    match tool {
        Tool::Nc => {
            let host = (*operands.first()?).to_string();
            let port = operands.get(1)?.parse().ok()?;
            Some(Probe { tool, host, port })
        }
        Tool::Wget | Tool::Curl => {
            let (host, port) = parse_url(operands.first()?)?;
            Some(Probe { tool, host, port })
        }
    }
}

/// `[scheme://]host[:port][/path]` → (host, port), port defaulting from the scheme.
fn parse_url(s: &str) -> Option<(String, u16)> {
    let (default_port, rest) = if let Some(r) = s.strip_prefix("https://") {
        (443, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (80, r)
    } else {
        (80, s)
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_string(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, default_port),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Service name and namespace a DNS name designates, for a pod in `namespace`.
fn service_of<'a>(host: &'a str, namespace: &'a str) -> Option<(&'a str, &'a str)> {
    let host = host.trim_end_matches('.');
    let host = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
        .unwrap_or(host);
    let mut parts = host.split('.');
    let name = parts.next().filter(|n| !n.is_empty())?;
    match (parts.next(), parts.next()) {
        (None, _) => Some((name, namespace)),
        (Some(ns), None) if !ns.is_empty() => Some((name, ns)),
        _ => None,
    }
}

/// The simulated network over the API: what the node's identity may read (services, endpoints,
/// pods) decides reachability.
pub struct ClusterNetwork {
    client: kube::Client,
}

impl ClusterNetwork {
    /// A network answering from `client`'s view of the cluster.
    pub fn new(client: kube::Client) -> Self {
        ClusterNetwork { client }
    }

    async fn to_service(&self, svc: &Service, port: u16) -> Result<(), NetError> {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let spec = svc.spec.as_ref().ok_or(NetError::Refused)?;
        if spec.type_.as_deref() == Some("ExternalName") {
            // The name is a CNAME to something outside the cluster: unreachable here.
            return Err(NetError::Refused);
        }
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let port_name = if headless {
            None
        } else {
            let p = spec
                .ports
                .iter()
                .flatten()
                .find(|p| p.port == i32::from(port))
                .ok_or(NetError::Refused)?;
            Some(p.name.clone().unwrap_or_default())
        };
        let eps = Api::<Endpoints>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|_| NetError::Refused)?
            .ok_or(if headless {
                NetError::BadAddress
            } else {
                NetError::Refused
            })?;
        let ok = eps.subsets.iter().flatten().any(|s| {
            let has_addr = s.addresses.as_ref().is_some_and(|a| !a.is_empty());
            let has_port = s.ports.iter().flatten().any(|p| match &port_name {
                Some(n) => p.name.clone().unwrap_or_default() == *n,
                None => p.port == i32::from(port),
            });
            has_addr && has_port
        });
        match (ok, headless) {
            (true, _) => Ok(()),
            (false, true) => Err(NetError::BadAddress),
            (false, false) => Err(NetError::Refused),
        }
    }

    async fn to_ip(&self, ip: &str, port: u16) -> Result<(), NetError> {
        let services = Api::<Service>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|_| NetError::Refused)?;
        if let Some(svc) = services.items.iter().find(|s| {
            s.spec.as_ref().is_some_and(|sp| {
                sp.cluster_ip.as_deref() == Some(ip)
                    || sp.cluster_ips.iter().flatten().any(|c| c == ip)
            })
        }) {
            return self.to_service(svc, port).await;
        }
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&ListParams::default().fields(&format!("status.podIP={ip}")))
            .await
            .map_err(|_| NetError::Refused)?;
        let ready = pods.items.iter().any(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.phase.as_deref() == Some("Running")
                    && s.conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        });
        if ready {
            Ok(())
        } else {
            Err(NetError::Refused)
        }
    }
}

#[async_trait::async_trait]
impl Network for ClusterNetwork {
    async fn connect(&self, namespace: &str, host: &str, port: u16) -> Result<(), NetError> {
        if host.parse::<std::net::IpAddr>().is_ok() {
            return self.to_ip(host, port).await;
        }
        let (name, ns) = service_of(host, namespace).ok_or(NetError::BadAddress)?;
        let svc = Api::<Service>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|_| NetError::BadAddress)?
            .ok_or(NetError::BadAddress)?;
        self.to_service(&svc, port).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn probes_from_argv() {
        let p = probe_of(&argv(&["wget", "rel1-mychart:80"])).expect("wget");
        assert_eq!(
            (p.tool, p.host.as_str(), p.port),
            (Tool::Wget, "rel1-mychart", 80)
        );
        let p = probe_of(&argv(&[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "https://web.ns/x",
        ]))
        .expect("curl");
        assert_eq!(
            (p.tool, p.host.as_str(), p.port),
            (Tool::Curl, "web.ns", 443)
        );
        let p = probe_of(&argv(&["sh", "-c", "nc -z -w 2 db 5432 && echo ok"])).expect("nc");
        assert_eq!((p.tool, p.host.as_str(), p.port), (Tool::Nc, "db", 5432));
        let p = probe_of(&argv(&["/bin/wget", "-qO-", "http://[fd00::1]:8080/"])).expect("v6");
        assert_eq!((p.host.as_str(), p.port), ("fd00::1", 8080));
        assert_eq!(probe_of(&argv(&["nginx", "-g", "daemon off;"])), None);
        assert_eq!(probe_of(&argv(&["wget"])), None);
        assert_eq!(probe_of(&argv(&["wget", "host:notaport"])), None);
    }

    #[test]
    fn service_names() {
        assert_eq!(service_of("web", "ns1"), Some(("web", "ns1")));
        assert_eq!(service_of("web.other", "ns1"), Some(("web", "other")));
        assert_eq!(service_of("web.other.svc", "ns1"), Some(("web", "other")));
        assert_eq!(
            service_of("web.other.svc.cluster.local.", "ns1"),
            Some(("web", "other"))
        );
        assert_eq!(service_of("example.com.au", "ns1"), None);
    }

    #[test]
    fn exit_codes() {
        let p = |tool| Probe {
            tool,
            host: "h".into(),
            port: 1,
        };
        assert_eq!(p(Tool::Wget).exit_code(Ok(())), 0);
        assert_eq!(p(Tool::Wget).exit_code(Err(NetError::BadAddress)), 1);
        assert_eq!(p(Tool::Curl).exit_code(Err(NetError::BadAddress)), 6);
        assert_eq!(p(Tool::Curl).exit_code(Err(NetError::Refused)), 7);
        assert_eq!(p(Tool::Nc).exit_code(Err(NetError::Refused)), 1);
    }
}

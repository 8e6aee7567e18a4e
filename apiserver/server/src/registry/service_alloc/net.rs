//! The service networks of `--service-cluster-ip-range` and `--service-node-port-range`:
//! parsing and address arithmetic (upstream `k8s.io/utils/net`, `ipallocator.Range`).

use std::net::IpAddr;

/// An IP family as the Service API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// `IPv4` / `IPv6` (the `spec.ipFamilies` values).
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The family of a textual IP, if it is one.
    pub fn of(ip: &str) -> Option<Family> {
        match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(_) => Some(Family::V4),
            IpAddr::V6(_) => Some(Family::V6),
        }
    }

    /// The other family.
    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

/// One service CIDR, e.g. `10.0.0.0/24`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub family: Family,
    /// The network address as a number (IPv4 in the low 32 bits).
    base: u128,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `v6::/n`; host bits must be zero, as kube-apiserver requires.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, bits) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("invalid CIDR address: {s}"))?;
        let prefix: u8 = bits
            .parse()
            .map_err(|_| format!("invalid CIDR address: {s}"))?;
        let (family, width, n) = match ip {
            IpAddr::V4(a) => (Family::V4, 32u8, u128::from(u32::from(a))),
            IpAddr::V6(a) => (Family::V6, 128u8, u128::from(a)),
        };
        if prefix > width {
            return Err(format!("invalid CIDR address: {s}"));
        }
        let host_bits = u32::from(width - prefix);
        let mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        if n & mask != 0 {
            return Err(format!(
                "{s} is not a network address (host bits must be zero)"
            ));
        }
        let cidr = Cidr {
            family,
            base: n,
            prefix,
        };
        if cidr.size() < 2 {
            return Err(format!("{s}: the range has no usable address"));
        }
        Ok(cidr)
    }

    fn width(&self) -> u8 {
        match self.family {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// Addresses in the CIDR (capped at 2^64 for huge IPv6 ranges).
    fn span(&self) -> u128 {
        let host_bits = u32::from(self.width() - self.prefix).min(64);
        1u128 << host_bits
    }

    /// The first and last address the allocator hands out: the network address is never
    /// used, nor the broadcast address of an IPv4 range (upstream `ipallocator.New`).
    fn bounds(&self) -> (u128, u128) {
        let last = self.base + self.span() - 1;
        match self.family {
            Family::V4 => (self.base + 1, last.saturating_sub(1)),
            Family::V6 => (self.base + 1, last),
        }
    }

    /// How many addresses the allocator can hand out.
    pub fn size(&self) -> u128 {
        let (first, last) = self.bounds();
        if last < first { 0 } else { last - first + 1 }
    }

    fn to_ip(&self, n: u128) -> IpAddr {
        match self.family {
            // The value came from an IPv4 base plus an offset inside the /prefix.
            Family::V4 => IpAddr::V4(std::net::Ipv4Addr::from(n as u32)),
            Family::V6 => IpAddr::V6(std::net::Ipv6Addr::from(n)),
        }
    }

    fn number(&self, ip: &IpAddr) -> Option<u128> {
        match (ip, self.family) {
            (IpAddr::V4(a), Family::V4) => Some(u128::from(u32::from(*a))),
            (IpAddr::V6(a), Family::V6) => Some(u128::from(*a)),
            _ => None,
        }
    }

    /// Whether the CIDR contains the address (network and broadcast included).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.number(ip)
            .is_some_and(|n| n >= self.base && n - self.base < self.span())
    }

    /// Whether the allocator may hand the address out.
    pub fn usable(&self, ip: &IpAddr) -> bool {
        let (first, last) = self.bounds();
        self.number(ip).is_some_and(|n| n >= first && n <= last)
    }

    /// The `kubernetes` Service's address: the first usable one.
    pub fn first(&self) -> IpAddr {
        self.to_ip(self.bounds().0)
    }

    /// The `offset`-th usable address.
    pub fn nth(&self, offset: u128) -> IpAddr {
        self.to_ip(self.bounds().0 + offset)
    }

    /// Upstream's `calculateRangeOffset`: the lower band of a range is left to static
    /// (requested) addresses; dynamic allocation starts above it.
    pub fn dynamic_offset(&self) -> u128 {
        const MIN: u128 = 16;
        const MAX: u128 = 256;
        const STEP: u128 = 16;
        let size = self.size();
        if size < MIN {
            return 0;
        }
        (size / STEP).clamp(MIN, MAX)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.to_ip(self.base), self.prefix)
    }
}

/// `--service-node-port-range`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub base: u16,
    pub size: u16,
}

impl PortRange {
    /// `30000-32767`, `30000+2768` or a single port (upstream `utilnet.ParsePortRange`).
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let bad = || format!("invalid port range {s:?}");
        let s = s.trim();
        let (base, size) = if let Some((a, b)) = s.split_once('-') {
            let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if b < a {
                return Err(bad());
            }
            (a, b - a + 1)
        } else if let Some((a, n)) = s.split_once('+') {
            let (a, n): (u16, u16) = (a.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
            if u32::from(a) + u32::from(n) > 65536 {
                return Err(bad());
            }
            (a, n)
        } else {
            (s.parse().map_err(|_| bad())?, 1)
        };
        if base == 0 || size == 0 {
            return Err(bad());
        }
        Ok(PortRange { base, size })
    }

    /// Whether the port is in the range.
    pub fn contains(&self, port: i64) -> bool {
        port >= i64::from(self.base) && port < i64::from(self.base) + i64::from(self.size)
    }

    /// The range as upstream prints it (`30000-32767`).
    pub fn spec(&self) -> String {
        format!(
            "{}-{}",
            self.base,
            u32::from(self.base) + u32::from(self.size) - 1
        )
    }
}

/// Everything the service allocators are configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNetworks {
    /// One CIDR, or two of different families; the first is the primary.
    pub cidrs: Vec<Cidr>,
    pub node_ports: PortRange,
}

impl ServiceNetworks {
    /// From the flag values, with kube-apiserver's checks.
    pub fn parse(cluster_ip_range: &str, node_port_range: &str) -> Result<Self, String> {
        let cidrs: Vec<Cidr> = cluster_ip_range
            .split(',')
            .map(Cidr::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--service-cluster-ip-range: {e}"))?;
        if cidrs.len() > 2 {
            return Err("--service-cluster-ip-range: may not contain more than two CIDRs".into());
        }
        if cidrs.len() == 2 && cidrs[0].family == cidrs[1].family {
            return Err("--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family".into());
        }
        let node_ports = PortRange::parse(node_port_range)
            .map_err(|e| format!("--service-node-port-range: {e}"))?;
        Ok(ServiceNetworks { cidrs, node_ports })
    }

    /// The primary family (`--service-cluster-ip-range[0]`).
    pub fn default_family(&self) -> Family {
        self.cidrs[0].family
    }

    /// The CIDR of a family, if configured.
    pub fn cidr(&self, family: Family) -> Option<&Cidr> {
        self.cidrs.iter().find(|c| c.family == family)
    }

    /// Whether both families are configured.
    pub fn dual_stack(&self) -> bool {
        self.cidrs.len() == 2
    }

    /// The `kubernetes` Service's cluster IPs (first address of each range).
    pub fn kubernetes_service_ips(&self) -> Vec<String> {
        self.cidrs.iter().map(|c| c.first().to_string()).collect()
    }
}

impl Default for ServiceNetworks {
    /// The server's defaults (`--service-cluster-ip-range`): 10.96.0.0/12 and 30000-32767.
    fn default() -> Self {
        ServiceNetworks {
            cidrs: vec![Cidr {
                family: Family::V4,
                base: u128::from(u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0))),
                prefix: 12,
            }],
            node_ports: PortRange {
                base: 30000,
                size: 2768,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_bounds_and_membership() {
        let c = Cidr::parse("10.0.0.0/24").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.first().to_string(), "10.0.0.1");
        assert_eq!(c.size(), 254);
        assert_eq!(c.dynamic_offset(), 16);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}"));
        assert!(c.contains(&ip("10.0.0.0")) && !c.usable(&ip("10.0.0.0")));
        assert!(c.contains(&ip("10.0.0.255")) && !c.usable(&ip("10.0.0.255")));
        assert!(c.usable(&ip("10.0.0.254")));
        assert!(!c.contains(&ip("10.0.1.1")));
        assert!(!c.contains(&ip("fd00::1")));
        assert_eq!(c.to_string(), "10.0.0.0/24");
        let v6 = Cidr::parse("fd00:10:96::/112").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v6.first().to_string(), "fd00:10:96::1");
        assert_eq!(v6.size(), 65535);
        assert!(Cidr::parse("10.0.0.1/24").is_err());
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn flags_parse_like_kube_apiserver() {
        let n = ServiceNetworks::parse("10.96.0.0/12,fd00::/108", "30000-32767")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n.dual_stack());
        assert_eq!(n.kubernetes_service_ips(), vec!["10.96.0.1", "fd00::1"]);
        assert_eq!(n.node_ports.spec(), "30000-32767");
        assert!(ServiceNetworks::parse("10.0.0.0/24,10.1.0.0/24", "30000-32767").is_err());
        assert_eq!(
            PortRange::parse("30000+2768").map(|r| r.spec()),
            Ok("30000-32767".to_string())
        );
        assert!(PortRange::parse("32767-30000").is_err());
        assert_eq!(
            ServiceNetworks::default(),
            ServiceNetworks::parse("10.96.0.0/12", "30000-32767").unwrap_or_else(|e| panic!("{e}"))
        );
    }
}

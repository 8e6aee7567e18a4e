//! Kubernetes CEL libraries (`k8s.io/apiserver/pkg/cel/library`): quantity, IP, CIDR, URL,
//! named formats, and the bounded regex compile every library shares.

use std::net::IpAddr;
use std::sync::Arc;

use super::EvalError;
use super::eval::{Eval, no_overload, rt};
use super::functions::traversal;
use super::quantity::Quantity;
use super::value::{Url, Value};
use crate::validation as v;

/// Regexes are linear-time (`regex` crate); their compiled size is bounded too.
pub fn compile_regex(p: &str) -> Result<regex::Regex, String> {
    if p.len() > 4096 {
        return Err("regex pattern too long".into());
    }
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| {
            format!(
                "invalid regex {p:?}: {}",
                e.to_string().lines().last().unwrap_or_default().trim()
            )
        })
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    // Kubernetes refuses zones and IPv4-mapped IPv6 forms.
    if s.contains('%') {
        return None;
    }
    let ip: IpAddr = s.parse().ok()?;
    if let IpAddr::V6(v6) = ip
        && v6.to_ipv4_mapped().is_some()
        && s.contains('.')
    {
        return None;
    }
    Some(ip)
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip = parse_ip(ip)?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn masked(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits as u32)
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits as u32)
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

fn cidr_contains(net: (IpAddr, u8), ip: IpAddr) -> bool {
    net.0.is_ipv4() == ip.is_ipv4() && masked(net.0, net.1) == masked(ip, net.1)
}

/// Go `url.Parse` subset used by the Kubernetes URL library (absolute URLs or absolute paths).
fn parse_url(s: &str) -> Option<Url> {
    if s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    let (scheme, rest) = match s.split_once("://") {
        Some((sc, r))
            if !sc.is_empty()
                && sc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (sc.to_string(), r)
        }
        _ if s.starts_with('/') => (String::new(), s),
        _ => return None,
    };
    let (before_q, query) = match rest.split_once('?') {
        Some((b, q)) => (b, q.split('#').next().unwrap_or_default().to_string()),
        None => (rest.split('#').next().unwrap_or_default(), String::new()),
    };
    let (host, path) = if scheme.is_empty() {
        (String::new(), before_q.to_string())
    } else {
        match before_q.find('/') {
            Some(i) => (before_q[..i].to_string(), before_q[i..].to_string()),
            None => (before_q.to_string(), String::new()),
        }
    };
    let host_no_user = host.rsplit('@').next().unwrap_or_default().to_string();
    let (hostname, port) = if let Some(rest) = host_no_user.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        (
            h.to_string(),
            p.strip_prefix(':').unwrap_or_default().to_string(),
        )
    } else {
        match host_no_user.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (host_no_user.clone(), String::new()),
        }
    };
    if !port.is_empty() && !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Url {
        text: s.into(),
        scheme,
        host: host_no_user,
        hostname,
        port,
        path,
        query,
    })
}

/// Global functions of the Kubernetes libraries.
pub(super) fn global(cx: &mut Eval<'_>, f: &str, args: &[Value]) -> Result<Value, EvalError> {
    let s = match args {
        [Value::String(s)] => s.clone(),
        _ => return no_overload(f, &args.iter().collect::<Vec<_>>()),
    };
    cx.charge(traversal(s.len() as u64))?;
    match f {
        "quantity" => Quantity::parse(&s)
            .map(|q| Value::Quantity(Arc::new(q)))
            .ok_or_else(|| EvalError::Runtime("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".into())),
        "isQuantity" => Ok(Value::Bool(Quantity::parse(&s).is_some())),
        "ip" => parse_ip(&s).map(Value::Ip).ok_or_else(|| EvalError::Runtime(format!("IP Address {s:?} parse error during conversion from string"))),
        "isIP" => Ok(Value::Bool(parse_ip(&s).is_some())),
        "cidr" => parse_cidr(&s)
            .map(|(ip, b)| Value::Cidr(ip, b))
            .ok_or_else(|| EvalError::Runtime(format!("network address parse error during conversion from string: {s:?}"))),
        "isCIDR" => Ok(Value::Bool(parse_cidr(&s).is_some())),
        "url" => parse_url(&s).map(|u| Value::Url(Arc::new(u))).ok_or_else(|| EvalError::Runtime(format!("URL parse error during conversion from string: {s:?}"))),
        "isURL" => Ok(Value::Bool(parse_url(&s).is_some())),
        _ => rt(format!("undeclared reference to '{f}'")),
    }
}

/// `format.<name>()`.
pub(super) fn named_format(name: &str) -> Result<Value, EvalError> {
    const KNOWN: &[&str] = &[
        "dns1123Label",
        "dns1123Subdomain",
        "dns1035Label",
        "qualifiedName",
        "dns1123LabelPrefix",
        "dns1123SubdomainPrefix",
        "dns1035LabelPrefix",
        "labelValue",
        "uri",
        "uuid",
        "byte",
        "date",
        "datetime",
    ];
    if KNOWN.contains(&name) {
        Ok(Value::Format(name.into()))
    } else {
        rt(format!("undeclared reference to 'format.{name}'"))
    }
}

fn check_named_format(name: &str, s: &str) -> Vec<String> {
    let prefix = |s: &str| s.strip_suffix('-').unwrap_or(s).to_string();
    match name {
        "dns1123Label" => v::is_dns1123_label(s),
        "dns1123Subdomain" => v::is_dns1123_subdomain(s),
        "dns1035Label" => v::is_dns1035_label(s),
        "qualifiedName" => v::is_qualified_name(s),
        "dns1123LabelPrefix" => v::is_dns1123_label(&prefix(s)),
        "dns1123SubdomainPrefix" => v::is_dns1123_subdomain(&prefix(s)),
        "dns1035LabelPrefix" => v::is_dns1035_label(&prefix(s)),
        "labelValue" => v::is_valid_label_value(s),
        "uri" => (!crate::crd::check_string_format("uri", s))
            .then(|| "invalid URI".to_string())
            .into_iter()
            .collect(),
        "uuid" => (!crate::crd::check_string_format("uuid", s))
            .then(|| "invalid UUID".to_string())
            .into_iter()
            .collect(),
        "byte" => (!crate::crd::check_string_format("byte", s))
            .then(|| "invalid base64".to_string())
            .into_iter()
            .collect(),
        "date" => (!crate::crd::check_string_format("date", s))
            .then(|| "invalid date".to_string())
            .into_iter()
            .collect(),
        "datetime" => (!crate::crd::check_string_format("date-time", s))
            .then(|| "invalid datetime".to_string())
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// Member functions of the Kubernetes types.
pub(super) fn member(
    cx: &mut Eval<'_>,
    f: &str,
    r: &Value,
    args: &[Value],
) -> Result<Value, EvalError> {
    use Value::*;
    let mut all: Vec<&Value> = vec![r];
    all.extend(args.iter());
    match (r, f, args) {
        (Quantity(a), "isGreaterThan" | "isLessThan" | "compareTo", [Quantity(b)]) => {
            let o = a.cmp_value(b);
            Ok(match f {
                "isGreaterThan" => Bool(o.is_gt()),
                "isLessThan" => Bool(o.is_lt()),
                _ => Int(o as i64),
            })
        }
        (Quantity(a), "add" | "sub", [other]) => {
            let b = match other {
                Quantity(b) => (**b).clone(),
                Int(i) => super::quantity::Quantity::from_int(*i),
                _ => return no_overload(f, &all),
            };
            let res = if f == "add" { a.add(&b) } else { a.sub(&b) };
            res.map(|q| Quantity(Arc::new(q)))
                .ok_or_else(|| EvalError::Runtime("quantity overflow".into()))
        }
        (Quantity(a), "asInteger", []) => a
            .as_integer()
            .map(Int)
            .ok_or_else(|| EvalError::Runtime("cannot convert value to integer".into())),
        (Quantity(a), "isInteger", []) => Ok(Bool(a.as_integer().is_some())),
        (Quantity(a), "asApproximateFloat", []) => Ok(Double(a.as_f64())),
        (Quantity(a), "sign", []) => Ok(Int(a.sign())),
        (Ip(ip), "family", []) => Ok(Int(if ip.is_ipv4() { 4 } else { 6 })),
        (Ip(ip), "isUnspecified", []) => Ok(Bool(ip.is_unspecified())),
        (Ip(ip), "isLoopback", []) => Ok(Bool(ip.is_loopback())),
        (Ip(ip), "isLinkLocalMulticast", []) => Ok(Bool(match ip {
            IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
            IpAddr::V6(a) => a.segments()[0] & 0xff0f == 0xff02,
        })),
        (Ip(ip), "isLinkLocalUnicast", []) => Ok(Bool(match ip {
            IpAddr::V4(a) => a.is_link_local(),
            IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
        })),
        (Ip(ip), "isGlobalUnicast", []) => Ok(Bool(match ip {
            IpAddr::V4(a) => {
                !(a.is_unspecified()
                    || a.is_loopback()
                    || a.is_multicast()
                    || a.is_link_local()
                    || a.is_broadcast())
            }
            IpAddr::V6(a) => {
                !(a.is_unspecified()
                    || a.is_loopback()
                    || a.is_multicast()
                    || a.segments()[0] & 0xffc0 == 0xfe80)
            }
        })),
        (Cidr(ip, b), "containsIP", [other]) => {
            let o = match other {
                Ip(o) => *o,
                String(s) => parse_ip(s)
                    .ok_or_else(|| EvalError::Runtime(format!("IP Address {s:?} parse error")))?,
                _ => return no_overload(f, &all),
            };
            Ok(Bool(cidr_contains((*ip, *b), o)))
        }
        (Cidr(ip, b), "containsCIDR", [other]) => {
            let (oip, ob) = match other {
                Cidr(o, ob) => (*o, *ob),
                String(s) => parse_cidr(s).ok_or_else(|| {
                    EvalError::Runtime(format!("network address parse error: {s:?}"))
                })?,
                _ => return no_overload(f, &all),
            };
            Ok(Bool(ob >= *b && cidr_contains((*ip, *b), oip)))
        }
        (Cidr(ip, _), "ip", []) => Ok(Ip(*ip)),
        (Cidr(ip, b), "masked", []) => Ok(Cidr(masked(*ip, *b), *b)),
        (Cidr(_, b), "prefixLength", []) => Ok(Int(*b as i64)),
        (Url(u), "getScheme", []) => Ok(Value::str(&u.scheme)),
        (Url(u), "getHost", []) => Ok(Value::str(&u.host)),
        (Url(u), "getHostname", []) => Ok(Value::str(&u.hostname)),
        (Url(u), "getPort", []) => Ok(Value::str(&u.port)),
        (Url(u), "getEscapedPath", []) => Ok(Value::str(&u.path)),
        (Url(u), "getQuery", []) => {
            let mut m = std::collections::BTreeMap::new();
            for pair in u.query.split('&').filter(|p| !p.is_empty()) {
                let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
                let entry = m
                    .entry(super::value::Key::String(k.into()))
                    .or_insert_with(|| List(Arc::new(Vec::new())));
                if let List(l) = entry {
                    Arc::make_mut(l).push(Value::str(val));
                }
            }
            Ok(Map(Arc::new(m)))
        }
        (Ip(_) | Cidr(..), "string", []) => Ok(Value::str(
            &super::functions::to_string(r).unwrap_or_default(),
        )),
        (Format(name), "validate", [String(s)]) => {
            cx.charge(traversal(s.len() as u64))?;
            let errs = check_named_format(name, s);
            Ok(Optional(if errs.is_empty() {
                None
            } else {
                Some(Box::new(List(Arc::new(
                    errs.iter().map(|e| Value::str(e)).collect(),
                ))))
            }))
        }
        _ => no_overload(f, &all),
    }
}

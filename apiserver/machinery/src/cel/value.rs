//! CEL runtime values, conversion from JSON (optionally schema-typed), equality and ordering.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::quantity::Quantity;

/// A map key (CEL allows bool, int, uint and string keys).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `uint`.
    Uint(u64),
    /// `string`.
    String(Arc<str>),
}

impl Key {
    /// The key as a value.
    pub fn to_value(&self) -> Value {
        match self {
            Key::Bool(b) => Value::Bool(*b),
            Key::Int(i) => Value::Int(*i),
            Key::Uint(u) => Value::Uint(*u),
            Key::String(s) => Value::String(s.clone()),
        }
    }

    /// A value as a key (`None` for types that cannot be keys).
    pub fn from_value(v: &Value) -> Option<Key> {
        Some(match v {
            Value::Bool(b) => Key::Bool(*b),
            Value::Int(i) => Key::Int(*i),
            Value::Uint(u) => Key::Uint(*u),
            Value::String(s) => Key::String(s.clone()),
            _ => return None,
        })
    }
}

/// A parsed URL (Kubernetes `url()` library).
#[derive(Clone, Debug, PartialEq)]
pub struct Url {
    /// The text as given.
    pub text: Arc<str>,
    /// `getScheme()`.
    pub scheme: String,
    /// `getHost()` (with port, IPv6 in brackets).
    pub host: String,
    /// `getHostname()`.
    pub hostname: String,
    /// `getPort()`.
    pub port: String,
    /// `getEscapedPath()`.
    pub path: String,
    /// The raw query (without `?`).
    pub query: String,
}

/// A CEL value.
#[derive(Clone, Debug)]
pub enum Value {
    /// `null`.
    Null,
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `uint`.
    Uint(u64),
    /// `double`.
    Double(f64),
    /// `string`.
    String(Arc<str>),
    /// `bytes`.
    Bytes(Arc<[u8]>),
    /// `list`.
    List(Arc<Vec<Value>>),
    /// `map` (objects of a schema too: fields are string keys).
    Map(Arc<BTreeMap<Key, Value>>),
    /// `google.protobuf.Duration`, in nanoseconds.
    Duration(i128),
    /// `google.protobuf.Timestamp`.
    Timestamp(jiff::Timestamp),
    /// A type value (`type(x)`, `int`, ...).
    Type(Arc<str>),
    /// `optional(T)`.
    Optional(Option<Box<Value>>),
    /// Kubernetes `Quantity`.
    Quantity(Arc<Quantity>),
    /// Kubernetes `net.IP`.
    Ip(IpAddr),
    /// Kubernetes `net.CIDR`: address and prefix length.
    Cidr(IpAddr, u8),
    /// Kubernetes `URL`.
    Url(Arc<Url>),
    /// A compiled regex from the `format` library (`format.dns1123Label()` ...).
    Format(Arc<str>),
    /// The `authorizer` library: an authorizer, a check being built, or a decision.
    Authz(Arc<super::authz::AuthzValue>),
}

/// How JSON maps onto CEL for one schema node (formats turn strings into bytes/timestamps
/// and so on; `number` makes integers doubles).
pub trait JsonHint {
    /// The hint for an object field.
    fn field(&self, name: &str) -> Option<&Self>;
    /// The hint for list items.
    fn items(&self) -> Option<&Self>;
    /// `number` typed (integers become doubles).
    fn is_number(&self) -> bool;
    /// The string `format` (`byte`, `date-time`, `duration`).
    fn format(&self) -> Option<&str>;
}

impl Value {
    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::String(s.into())
    }

    /// A value from JSON without schema hints (integers stay ints).
    pub fn from_json(v: &serde_json::Value) -> Value {
        from_json_hinted::<NoHint>(v, None, 0)
    }

    /// A value from JSON using a schema's hints.
    pub fn from_json_with<H: JsonHint>(v: &serde_json::Value, hint: &H) -> Value {
        from_json_hinted(v, Some(hint), 0)
    }

    /// The CEL type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null_type",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Uint(_) => "uint",
            Value::Double(_) => "double",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Duration(_) => "google.protobuf.Duration",
            Value::Timestamp(_) => "google.protobuf.Timestamp",
            Value::Type(_) => "type",
            Value::Optional(_) => "optional_type",
            Value::Quantity(_) => "kubernetes.Quantity",
            Value::Ip(_) => "net.IP",
            Value::Cidr(..) => "net.CIDR",
            Value::Url(_) => "kubernetes.URL",
            Value::Format(_) => "kubernetes.NamedFormat",
            Value::Authz(a) => a.type_name(),
        }
    }

    /// A size for cost accounting (string bytes, list/map entries).
    pub fn cost_size(&self) -> u64 {
        match self {
            Value::String(s) => s.len() as u64,
            Value::Bytes(b) => b.len() as u64,
            Value::List(l) => l.len() as u64,
            Value::Map(m) => m.len() as u64,
            _ => 1,
        }
    }

    /// The value as JSON (for messages and `string()` of composite values).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null | Value::Optional(None) => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Uint(u) => J::from(*u),
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::String(s) => J::String(s.to_string()),
            Value::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| {
                        let ks = match k {
                            Key::String(s) => s.to_string(),
                            Key::Bool(b) => b.to_string(),
                            Key::Int(i) => i.to_string(),
                            Key::Uint(u) => u.to_string(),
                        };
                        (ks, v.to_json())
                    })
                    .collect(),
            ),
            Value::Optional(Some(v)) => v.to_json(),
            other => J::String(super::functions::to_string(other).unwrap_or_default()),
        }
    }
}

struct NoHint;

impl JsonHint for NoHint {
    fn field(&self, _: &str) -> Option<&Self> {
        None
    }
    fn items(&self) -> Option<&Self> {
        None
    }
    fn is_number(&self) -> bool {
        false
    }
    fn format(&self) -> Option<&str> {
        None
    }
}

const MAX_CONVERT_DEPTH: usize = 256;

fn from_json_hinted<H: JsonHint>(v: &serde_json::Value, hint: Option<&H>, depth: usize) -> Value {
    use serde_json::Value as J;
    if depth > MAX_CONVERT_DEPTH {
        return Value::Null;
    }
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if hint.is_some_and(JsonHint::is_number) {
                Value::Double(n.as_f64().unwrap_or(0.0))
            } else if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::Uint(u)
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0
                    && f.abs() < 9.2e18
                    && !hint.is_some_and(JsonHint::is_number)
                    && hint.is_some()
                {
                    Value::Int(f as i64)
                } else {
                    Value::Double(f)
                }
            }
        }
        J::String(s) => match hint.and_then(JsonHint::format) {
            Some("byte") => {
                use base64::Engine;
                match base64::engine::general_purpose::STANDARD.decode(s) {
                    Ok(b) => Value::Bytes(b.into()),
                    Err(_) => Value::str(s),
                }
            }
            Some("date-time") => match s.parse::<jiff::Timestamp>() {
                Ok(t) => Value::Timestamp(t),
                Err(_) => Value::str(s),
            },
            Some("duration") => match super::functions::parse_duration(s) {
                Some(d) => Value::Duration(d),
                None => Value::str(s),
            },
            _ => Value::str(s),
        },
        J::Array(items) => {
            let ih = hint.and_then(JsonHint::items);
            Value::List(Arc::new(
                items
                    .iter()
                    .map(|i| from_json_hinted(i, ih, depth + 1))
                    .collect(),
            ))
        }
        J::Object(m) => {
            let mut out = BTreeMap::new();
            for (k, cv) in m {
                let ch = hint.and_then(|h| h.field(k));
                out.insert(
                    Key::String(k.as_str().into()),
                    from_json_hinted(cv, ch, depth + 1),
                );
            }
            Value::Map(Arc::new(out))
        }
    }
}

/// CEL equality (`==`): numeric types compare by value across int/uint/double.
pub fn equals(a: &Value, b: &Value) -> bool {
    use Value::*;
    match (a, b) {
        (Null, Null) => true,
        (Bool(x), Bool(y)) => x == y,
        (String(x), String(y)) => x == y,
        (Bytes(x), Bytes(y)) => x == y,
        (Int(_) | Uint(_) | Double(_), Int(_) | Uint(_) | Double(_)) => {
            num_cmp(a, b) == Some(Ordering::Equal)
        }
        (List(x), List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| equals(a, b))
        }
        (Map(x), Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| equals(v, w)))
        }
        (Duration(x), Duration(y)) => x == y,
        (Timestamp(x), Timestamp(y)) => x == y,
        (Type(x), Type(y)) => x == y,
        (Optional(x), Optional(y)) => match (x, y) {
            (None, None) => true,
            (Some(x), Some(y)) => equals(x, y),
            _ => false,
        },
        (Quantity(x), Quantity(y)) => x.cmp_value(y) == Ordering::Equal,
        (Ip(x), Ip(y)) => x == y,
        (Cidr(a1, p1), Cidr(a2, p2)) => a1 == a2 && p1 == p2,
        (Url(x), Url(y)) => x.text == y.text,
        (Format(x), Format(y)) => x == y,
        _ => false,
    }
}

/// Numeric comparison across int/uint/double (`None` for NaN or non-numbers).
pub fn num_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (Uint(x), Uint(y)) => Some(x.cmp(y)),
        (Int(x), Uint(y)) => Some(if *x < 0 {
            Ordering::Less
        } else {
            (*x as u64).cmp(y)
        }),
        (Uint(x), Int(y)) => Some(if *y < 0 {
            Ordering::Greater
        } else {
            x.cmp(&(*y as u64))
        }),
        (Double(x), Double(y)) => x.partial_cmp(y),
        (Double(x), Int(y)) => x.partial_cmp(&(*y as f64)),
        (Int(x), Double(y)) => (*x as f64).partial_cmp(y),
        (Double(x), Uint(y)) => x.partial_cmp(&(*y as f64)),
        (Uint(x), Double(y)) => (*x as f64).partial_cmp(y),
        _ => None,
    }
}

/// CEL ordering (`<` and friends): numbers, strings, bytes, bools, durations, timestamps.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (String(x), String(y)) => Some(x.cmp(y)),
        (Bytes(x), Bytes(y)) => Some(x.cmp(y)),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Duration(x), Duration(y)) => Some(x.cmp(y)),
        (Timestamp(x), Timestamp(y)) => Some(x.cmp(y)),
        _ => num_cmp(a, b),
    }
}

//! CEL's standard functions and operators, plus Kubernetes' libraries: strings and lists
//! extensions, regex (`find`, `findAll`), quantity, IP/CIDR, URL and named formats. Costs are
//! charged proportional to the data touched (cel-go's "traversal cost" factor 0.1 per byte).

use std::sync::Arc;

use super::EvalError;
use super::eval::{Eval, contains_in, index, no_overload, relation, rt};
use super::k8s;
use super::value::{Value, compare, equals};

/// Cost of touching `n` bytes/items (cel-go's `0.1` per unit, at least 1).
pub(super) fn traversal(n: u64) -> u64 {
    n.div_ceil(10).max(1)
}

/// `string(x)` for scalars and Kubernetes types.
pub fn to_string(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Double(d) => {
            if d.fract() == 0.0 && d.abs() < 1e15 {
                format!("{d:.0}")
            } else {
                d.to_string()
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => String::from_utf8(b.to_vec()).ok()?,
        Value::Null => "null".into(),
        Value::Duration(ns) => format_duration(*ns),
        Value::Timestamp(t) => t.to_string(),
        Value::Quantity(q) => q.text().to_string(),
        Value::Ip(ip) => ip.to_string(),
        Value::Cidr(ip, p) => format!("{ip}/{p}"),
        Value::Url(u) => u.text.to_string(),
        Value::Type(t) => t.to_string(),
        _ => return None,
    })
}

fn format_duration(ns: i128) -> String {
    let secs = ns as f64 / 1e9;
    if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else {
        format!("{secs}s")
    }
}

/// Go `time.ParseDuration` (`1h30m`, `1.5s`, `-2ms`), in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() || rest.len() > 100 {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if n_end == 0 {
            return None;
        }
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[u_end..];
    }
    if total > 9.3e18 {
        return None;
    }
    Some(if neg { -(total as i128) } else { total as i128 })
}

fn arith(cx: &mut Eval<'_>, op: &str, a: &Value, b: &Value) -> Result<Value, EvalError> {
    use Value::*;
    let overflow = || EvalError::Runtime("integer overflow".into());
    Ok(match (op, a, b) {
        ("_+_", Int(x), Int(y)) => Int(x.checked_add(*y).ok_or_else(overflow)?),
        ("_-_", Int(x), Int(y)) => Int(x.checked_sub(*y).ok_or_else(overflow)?),
        ("_*_", Int(x), Int(y)) => Int(x.checked_mul(*y).ok_or_else(overflow)?),
        ("_/_", Int(_), Int(0)) | ("_%_", Int(_), Int(0)) => return rt("division by zero"),
        ("_/_", Int(x), Int(y)) => Int(x.checked_div(*y).ok_or_else(overflow)?),
        ("_%_", Int(x), Int(y)) => Int(x.checked_rem(*y).ok_or_else(overflow)?),
        ("_+_", Uint(x), Uint(y)) => Uint(x.checked_add(*y).ok_or_else(overflow)?),
        ("_-_", Uint(x), Uint(y)) => Uint(x.checked_sub(*y).ok_or_else(overflow)?),
        ("_*_", Uint(x), Uint(y)) => Uint(x.checked_mul(*y).ok_or_else(overflow)?),
        ("_/_", Uint(_), Uint(0)) | ("_%_", Uint(_), Uint(0)) => return rt("division by zero"),
        ("_/_", Uint(x), Uint(y)) => Uint(x / y),
        ("_%_", Uint(x), Uint(y)) => Uint(x % y),
        ("_+_", Double(x), Double(y)) => Double(x + y),
        ("_-_", Double(x), Double(y)) => Double(x - y),
        ("_*_", Double(x), Double(y)) => Double(x * y),
        ("_/_", Double(x), Double(y)) => Double(x / y),
        ("_+_", String(x), String(y)) => {
            cx.charge(traversal((x.len() + y.len()) as u64))?;
            String(format!("{x}{y}").into())
        }
        ("_+_", Bytes(x), Bytes(y)) => {
            cx.charge(traversal((x.len() + y.len()) as u64))?;
            Bytes([x.as_ref(), y.as_ref()].concat().into())
        }
        ("_+_", List(x), List(y)) => {
            cx.charge((x.len() + y.len()) as u64)?;
            let mut v = Vec::with_capacity(x.len() + y.len());
            v.extend(x.iter().cloned());
            v.extend(y.iter().cloned());
            List(Arc::new(v))
        }
        ("_+_", Duration(x), Duration(y)) => Duration(x + y),
        ("_-_", Duration(x), Duration(y)) => Duration(x - y),
        ("_+_", Timestamp(t), Duration(d)) | ("_+_", Duration(d), Timestamp(t)) => Timestamp(
            t.checked_add(jiff::SignedDuration::from_nanos(*d as i64))
                .map_err(|_| overflow())?,
        ),
        ("_-_", Timestamp(t), Duration(d)) => Timestamp(
            t.checked_sub(jiff::SignedDuration::from_nanos(*d as i64))
                .map_err(|_| overflow())?,
        ),
        ("_-_", Timestamp(x), Timestamp(y)) => Duration(x.as_nanosecond() - y.as_nanosecond()),
        _ => return no_overload(op, &[a, b]),
    })
}

fn regex_for(
    cx: &mut Eval<'_>,
    pattern: &str,
    lit: Option<&str>,
) -> Result<regex::Regex, EvalError> {
    if let Some(re) = lit.and_then(|p| cx.regexes.get(p)) {
        return Ok(re.clone());
    }
    cx.charge(traversal(pattern.len() as u64) * 10)?;
    k8s::compile_regex(pattern).map_err(EvalError::Runtime)
}

fn str_arg<'v>(v: &'v Value, f: &str) -> Result<&'v str, EvalError> {
    match v {
        Value::String(s) => Ok(s),
        other => no_overload(f, &[other]),
    }
}

fn int_arg(v: &Value, f: &str) -> Result<i64, EvalError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => no_overload(f, &[other]),
    }
}

/// Dispatches a call (operators, global functions and member functions).
pub(super) fn call(
    cx: &mut Eval<'_>,
    f: &str,
    recv: Option<Value>,
    args: Vec<Value>,
    lit: Option<&str>,
) -> Result<Value, EvalError> {
    use Value::*;
    if let Some(r) = recv {
        return member(cx, f, r, args, lit);
    }
    let a = |i: usize| {
        args.get(i)
            .ok_or_else(|| EvalError::Runtime(format!("no such overload: {f}")))
    };
    match (f, args.len()) {
        ("_==_", 2) => {
            cx.charge(traversal(a(0)?.cost_size()))?;
            Ok(Bool(equals(a(0)?, a(1)?)))
        }
        ("_!=_", 2) => {
            cx.charge(traversal(a(0)?.cost_size()))?;
            Ok(Bool(!equals(a(0)?, a(1)?)))
        }
        ("_<_" | "_<=_" | "_>_" | "_>=_", 2) => relation(f, a(0)?, a(1)?),
        ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", 2) => arith(cx, f, a(0)?, a(1)?),
        ("-_", 1) => match a(0)? {
            Int(i) => i
                .checked_neg()
                .map(Int)
                .ok_or_else(|| EvalError::Runtime("integer overflow".into())),
            Double(d) => Ok(Double(-d)),
            Duration(d) => Ok(Duration(-d)),
            other => no_overload(f, &[other]),
        },
        ("!_", 1) => match a(0)? {
            Bool(b) => Ok(Bool(!b)),
            other => no_overload(f, &[other]),
        },
        ("@in", 2) => contains_in(cx, a(0)?, a(1)?),
        // Message construction (cel-go charges 40 for a struct: 30 for the map, 10 here).
        ("@object", 2) => {
            cx.charge(10)?;
            Ok(a(1)?.clone())
        }
        ("_[_]", 2) => index(a(0)?, a(1)?, false),
        ("_[?_]", 2) => index(a(0)?, a(1)?, true),
        ("size", 1) => size(a(0)?),
        ("int", 1) => match a(0)? {
            Int(i) => Ok(Int(*i)),
            Uint(u) => i64::try_from(*u)
                .map(Int)
                .map_err(|_| EvalError::Runtime("integer overflow".into())),
            Double(d) if d.is_finite() && d.abs() < 9.2e18 => Ok(Int(d.trunc() as i64)),
            String(s) => s
                .parse()
                .map(Int)
                .map_err(|_| EvalError::Runtime(format!("cannot convert {s:?} to int"))),
            Timestamp(t) => Ok(Int(t.as_second())),
            other => no_overload(f, &[other]),
        },
        ("uint", 1) => match a(0)? {
            Uint(u) => Ok(Uint(*u)),
            Int(i) => u64::try_from(*i)
                .map(Uint)
                .map_err(|_| EvalError::Runtime("unsigned integer overflow".into())),
            Double(d) if d.is_finite() && *d >= 0.0 && *d < 1.8e19 => Ok(Uint(d.trunc() as u64)),
            String(s) => s
                .parse()
                .map(Uint)
                .map_err(|_| EvalError::Runtime(format!("cannot convert {s:?} to uint"))),
            other => no_overload(f, &[other]),
        },
        ("double", 1) => match a(0)? {
            Double(d) => Ok(Double(*d)),
            Int(i) => Ok(Double(*i as f64)),
            Uint(u) => Ok(Double(*u as f64)),
            String(s) => s
                .parse()
                .map(Double)
                .map_err(|_| EvalError::Runtime(format!("cannot convert {s:?} to double"))),
            other => no_overload(f, &[other]),
        },
        ("string", 1) => match to_string(a(0)?) {
            Some(s) => Ok(String(s.into())),
            None => no_overload(f, &[a(0)?]),
        },
        ("bytes", 1) => match a(0)? {
            String(s) => Ok(Bytes(s.as_bytes().into())),
            Bytes(b) => Ok(Bytes(b.clone())),
            other => no_overload(f, &[other]),
        },
        ("bool", 1) => match a(0)? {
            Bool(b) => Ok(Bool(*b)),
            String(s) => match &**s {
                "true" | "True" | "TRUE" | "t" | "1" => Ok(Bool(true)),
                "false" | "False" | "FALSE" | "f" | "0" => Ok(Bool(false)),
                _ => rt("type conversion error from 'string' to 'bool'".to_string()),
            },
            other => no_overload(f, &[other]),
        },
        ("dyn", 1) => Ok(a(0)?.clone()),
        ("type", 1) => Ok(Type(a(0)?.type_name().into())),
        ("duration", 1) => match a(0)? {
            String(s) => parse_duration(s)
                .map(Duration)
                .ok_or_else(|| EvalError::Runtime(format!("invalid duration {s:?}"))),
            Duration(d) => Ok(Duration(*d)),
            other => no_overload(f, &[other]),
        },
        ("timestamp", 1) => match a(0)? {
            String(s) => s
                .parse::<jiff::Timestamp>()
                .map(Timestamp)
                .map_err(|_| EvalError::Runtime(format!("invalid timestamp {s:?}"))),
            Int(i) => jiff::Timestamp::from_second(*i)
                .map(Timestamp)
                .map_err(|_| EvalError::Runtime("timestamp out of range".into())),
            other => no_overload(f, &[other]),
        },
        ("matches", 2) => {
            let s = str_arg(a(0)?, f)?;
            let p = str_arg(a(1)?, f)?;
            cx.charge(traversal(s.len() as u64))?;
            let re = regex_for(cx, p, lit)?;
            Ok(Bool(re.is_match(s)))
        }
        ("optional.of", 1) => Ok(Optional(Some(Box::new(a(0)?.clone())))),
        ("optional.none", 0) => Ok(Optional(None)),
        ("optional.ofNonZeroValue", 1) => {
            let v = a(0)?;
            let zero = match v {
                Null => true,
                Bool(b) => !b,
                Int(0) | Uint(0) => true,
                Double(d) => *d == 0.0,
                String(s) => s.is_empty(),
                List(l) => l.is_empty(),
                Map(m) => m.is_empty(),
                Bytes(b) => b.is_empty(),
                _ => false,
            };
            Ok(Optional(if zero {
                None
            } else {
                Some(Box::new(v.clone()))
            }))
        }
        _ => k8s::global(cx, f, &args),
    }
}

fn size(v: &Value) -> Result<Value, EvalError> {
    Ok(Value::Int(match v {
        Value::String(s) => s.chars().count() as i64,
        Value::Bytes(b) => b.len() as i64,
        Value::List(l) => l.len() as i64,
        Value::Map(m) => m.len() as i64,
        other => return no_overload("size", &[other]),
    }))
}

fn member(
    cx: &mut Eval<'_>,
    f: &str,
    r: Value,
    args: Vec<Value>,
    lit: Option<&str>,
) -> Result<Value, EvalError> {
    use Value::*;
    if let Authz(v) = &r {
        return super::authz::member(v, f, &args, &mut |n| cx.charge(n));
    }
    let a = |i: usize| {
        args.get(i)
            .ok_or_else(|| EvalError::Runtime(format!("no such overload: {}.{f}", r.type_name())))
    };
    match (&r, f, args.len()) {
        (_, "size", 0) => size(&r),
        (String(s), "contains" | "startsWith" | "endsWith", 1) => {
            let x = str_arg(a(0)?, f)?;
            cx.charge(traversal(s.len() as u64))?;
            Ok(Bool(match f {
                "contains" => s.contains(x),
                "startsWith" => s.starts_with(x),
                _ => s.ends_with(x),
            }))
        }
        (String(s), "matches", 1) => {
            let p = str_arg(a(0)?, f)?;
            cx.charge(traversal(s.len() as u64))?;
            let re = regex_for(cx, p, lit)?;
            Ok(Bool(re.is_match(s)))
        }
        (String(s), "find" | "findAll", _) => {
            let p = str_arg(a(0)?, f)?;
            cx.charge(traversal(s.len() as u64))?;
            let re = regex_for(cx, p, lit)?;
            if f == "find" {
                return Ok(Value::str(
                    re.find(s).map(|m| m.as_str()).unwrap_or_default(),
                ));
            }
            let limit = match args.get(1) {
                Some(v) => int_arg(v, f)?,
                None => -1,
            };
            let it = re.find_iter(s).map(|m| Value::str(m.as_str()));
            let out: Vec<Value> = if limit < 0 {
                it.collect()
            } else {
                it.take(limit as usize).collect()
            };
            Ok(List(Arc::new(out)))
        }
        (String(s), "lowerAscii" | "upperAscii" | "trim", 0) => {
            cx.charge(traversal(s.len() as u64))?;
            Ok(Value::str(&match f {
                "lowerAscii" => s.to_ascii_lowercase(),
                "upperAscii" => s.to_ascii_uppercase(),
                _ => s.trim().to_string(),
            }))
        }
        (String(s), "split", 1 | 2) => {
            let sep = str_arg(a(0)?, f)?;
            cx.charge(traversal(s.len() as u64) * 10)?;
            let limit = match args.get(1) {
                Some(v) => int_arg(v, f)?,
                None => -1,
            };
            let parts: Vec<Value> = if limit == 0 {
                Vec::new()
            } else if limit < 0 {
                s.split(sep).map(Value::str).collect()
            } else {
                s.splitn(limit as usize, sep).map(Value::str).collect()
            };
            Ok(List(Arc::new(parts)))
        }
        (String(s), "replace", 2 | 3) => {
            let from = str_arg(a(0)?, f)?;
            let to = str_arg(a(1)?, f)?;
            let n = match args.get(2) {
                Some(v) => int_arg(v, f)?,
                None => -1,
            };
            let est = s.len() as u64
                + (to.len() as u64).saturating_mul(s.len() as u64 / from.len().max(1) as u64);
            cx.charge(traversal(est))?;
            Ok(Value::str(&if n < 0 {
                s.replace(from, to)
            } else {
                s.replacen(from, to, n as usize)
            }))
        }
        (String(s), "substring", 1 | 2) => {
            let chars: Vec<char> = s.chars().collect();
            cx.charge(traversal(chars.len() as u64))?;
            let start = int_arg(a(0)?, f)?;
            let end = match args.get(1) {
                Some(v) => int_arg(v, f)?,
                None => chars.len() as i64,
            };
            if start < 0 || end < start || end as usize > chars.len() {
                return rt(format!(
                    "index out of range: {}",
                    if start < 0 { start } else { end }
                ));
            }
            Ok(Value::str(
                &chars[start as usize..end as usize]
                    .iter()
                    .collect::<std::string::String>(),
            ))
        }
        (String(s), "charAt", 1) => {
            let i = int_arg(a(0)?, f)?;
            let chars: Vec<char> = s.chars().collect();
            if i < 0 || i as usize > chars.len() {
                return rt(format!("index out of range: {i}"));
            }
            Ok(Value::str(
                &chars
                    .get(i as usize)
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            ))
        }
        (String(s), "indexOf" | "lastIndexOf", 1) => {
            let x = str_arg(a(0)?, f)?;
            cx.charge(traversal(s.len() as u64))?;
            let pos = if f == "indexOf" {
                s.find(x)
            } else {
                s.rfind(x)
            };
            Ok(Int(pos
                .map(|b| s[..b].chars().count() as i64)
                .unwrap_or(-1)))
        }
        (List(l), "join", 0 | 1) => {
            let sep = match args.first() {
                Some(v) => str_arg(v, f)?.to_string(),
                None => std::string::String::new(),
            };
            let mut parts = Vec::with_capacity(l.len());
            for v in l.iter() {
                parts.push(str_arg(v, f)?.to_string());
            }
            cx.charge(traversal(parts.iter().map(|p| p.len() as u64).sum()))?;
            Ok(Value::str(&parts.join(&sep)))
        }
        (List(l), "isSorted", 0) => {
            cx.charge(l.len() as u64)?;
            for w in l.windows(2) {
                match compare(&w[0], &w[1]) {
                    Some(std::cmp::Ordering::Greater) => return Ok(Bool(false)),
                    Some(_) => {}
                    None => return no_overload(f, &[&w[0], &w[1]]),
                }
            }
            Ok(Bool(true))
        }
        (List(l), "sum", 0) => {
            cx.charge(l.len() as u64)?;
            let mut acc = match l.first() {
                Some(Double(_)) => Double(0.0),
                Some(Uint(_)) => Uint(0),
                Some(Duration(_)) => Duration(0),
                _ => Int(0),
            };
            for v in l.iter() {
                acc = arith(cx, "_+_", &acc, v)?;
            }
            Ok(acc)
        }
        (List(l), "min" | "max", 0) => {
            cx.charge(l.len() as u64)?;
            let mut best: Option<&Value> = None;
            for v in l.iter() {
                best = Some(match best {
                    None => v,
                    Some(b) => match compare(v, b) {
                        Some(o) if (f == "min" && o.is_lt()) || (f == "max" && o.is_gt()) => v,
                        Some(_) => b,
                        None => return no_overload(f, &[v, b]),
                    },
                });
            }
            best.cloned()
                .ok_or_else(|| EvalError::Runtime(format!("{f} called on empty list")))
        }
        (List(l), "indexOf" | "lastIndexOf", 1) => {
            cx.charge(l.len() as u64)?;
            let x = a(0)?;
            let pos = if f == "indexOf" {
                l.iter().position(|v| equals(v, x))
            } else {
                l.iter().rposition(|v| equals(v, x))
            };
            Ok(Int(pos.map(|p| p as i64).unwrap_or(-1)))
        }
        (Optional(o), "hasValue", 0) => Ok(Bool(o.is_some())),
        (Optional(o), "value", 0) => match o {
            Some(v) => Ok((**v).clone()),
            None => rt("optional.none() dereference"),
        },
        (Optional(o), "orValue", 1) => Ok(match o {
            Some(v) => (**v).clone(),
            None => a(0)?.clone(),
        }),
        (Optional(o), "or", 1) => Ok(match o {
            Some(_) => r.clone(),
            None => a(0)?.clone(),
        }),
        (Duration(d), "getSeconds", 0) => Ok(Int((*d / 1_000_000_000) as i64)),
        (Duration(d), "getMilliseconds", 0) => Ok(Int((*d / 1_000_000) as i64)),
        (Duration(d), "getMinutes", 0) => Ok(Int((*d / 60_000_000_000) as i64)),
        (Duration(d), "getHours", 0) => Ok(Int((*d / 3_600_000_000_000) as i64)),
        _ => k8s::member(cx, f, &r, &args),
    }
}

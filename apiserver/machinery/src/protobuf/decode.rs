//! Walks an encoded message with the schema table and builds the JSON upstream's JSON encoding
//! would give for the same object (Time as RFC 3339, Quantity as a string, IntOrString as a
//! number or string, RawExtension as the embedded JSON, bytes as base64, ...).

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::ProtobufError;
use super::schema::{Label, Schema};
use super::wire::{Reader, WireValue};
use crate::limits::MAX_PROTOBUF_DEPTH;

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.";

/// Decodes one message of type `name` into a JSON value. `depth` is the number of messages it
/// is nested in; past [`MAX_PROTOBUF_DEPTH`] decoding stops with [`ProtobufError::TooDeep`]
/// (every recursion below goes through here or [`fields_into`], which check it).
pub fn message(
    schema: &Schema,
    name: &str,
    buf: &[u8],
    depth: usize,
) -> Result<Value, ProtobufError> {
    let depth = deeper(depth)?;
    if let Some(v) = special(schema, name, buf, depth)? {
        return Ok(v);
    }
    let msg = schema
        .messages
        .get(name)
        .ok_or_else(|| ProtobufError::Malformed(format!("unknown message type {name}")))?;
    if msg.array {
        let mut items = Vec::new();
        let mut r = Reader::new(buf);
        while let Some((tag, v)) = r.next_field()? {
            if tag == 1 {
                items.push(scalar("string", v)?);
            }
        }
        return Ok(Value::Array(items));
    }
    let mut out = Map::new();
    fields_into(schema, name, buf, &mut out, depth)?;
    Ok(Value::Object(out))
}

fn deeper(depth: usize) -> Result<usize, ProtobufError> {
    if depth >= MAX_PROTOBUF_DEPTH {
        return Err(ProtobufError::TooDeep(MAX_PROTOBUF_DEPTH));
    }
    Ok(depth + 1)
}

/// Decodes the fields of message `name` into `out` (embedded structs share their parent's map).
fn fields_into(
    schema: &Schema,
    name: &str,
    buf: &[u8],
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtobufError> {
    let msg = schema
        .messages
        .get(name)
        .ok_or_else(|| ProtobufError::Malformed(format!("unknown message type {name}")))?;
    let mut r = Reader::new(buf);
    while let Some((tag, v)) = r.next_field()? {
        // Unknown field numbers are skipped, as proto readers do.
        let Some(field) = msg.fields.get(&tag) else {
            continue;
        };
        match field.label {
            Label::Embedded => {
                let WireValue::Bytes(b) = v else {
                    return Err(wrong_wire(name, field.json));
                };
                fields_into(schema, field.ty, b, out, deeper(depth)?)?;
            }
            Label::Optional => {
                let value = value(schema, field.ty, v, name, field.json, depth)?;
                // Go's protobuf encoding always writes non-pointer strings and bools, so `""`
                // and `false` mean "unset" there (upstream decodes into Go structs, where they
                // are the zero value, and omits them from JSON). Dropping them keeps our JSON
                // defaulting working (imagePullPolicy, terminationMessagePath, ...). Numbers
                // are kept: `replicas: 0` on a pointer field is meaningful.
                if matches!(&value, Value::Bool(false) | Value::Null) || value.as_str() == Some("")
                {
                    continue;
                }
                // Go value-typed (non-pointer, omitempty) integers: 0 is "unset" and Go writes it
                // anyway; kubectl's generators send such zeros for every template and port.
                if value.as_i64() == Some(0) && zero_is_unset(name, field.json) {
                    continue;
                }
                match (out.get_mut(field.json), value) {
                    // A repeated occurrence of a message field merges into the first.
                    (Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
                    (_, value) => {
                        out.insert(field.json.to_owned(), value);
                    }
                }
            }
            Label::Repeated => {
                let entry = out
                    .entry(field.json.to_owned())
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = entry else {
                    return Err(wrong_wire(name, field.json));
                };
                match v {
                    // Packed numeric lists.
                    WireValue::Bytes(b) if matches!(field.ty, "int32" | "int64" | "bool") => {
                        let mut pr = Reader::new(b);
                        while pr_has_more(&pr, b) {
                            items.push(scalar(field.ty, WireValue::Varint(pr.varint()?))?);
                        }
                    }
                    v => items.push(value(schema, field.ty, v, name, field.json, depth)?),
                }
            }
            Label::Map => {
                let WireValue::Bytes(b) = v else {
                    return Err(wrong_wire(name, field.json));
                };
                let (key, val) = map_entry(schema, field.ty, b, name, field.json, depth)?;
                let entry = out
                    .entry(field.json.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = entry {
                    m.insert(key, val);
                }
            }
        }
    }
    Ok(())
}

/// Integer fields that are Go values with `omitempty` in upstream's types (`int32 ... json:",omitempty"`
/// without a pointer), where a 0 on the wire means the field was never set. Pointer integers
/// (`replicas`, `terminationGracePeriodSeconds`, ...) keep an explicit 0. The protobuf schema
/// cannot tell the two apart, so the value-typed ones that clients commonly send are listed here
/// (from `k8s.io/api/{core,apps}/v1/types.go` and `apimachinery/pkg/apis/meta/v1/types.go`).
fn zero_is_unset(message: &str, field: &str) -> bool {
    const VALUE_INTS: &[(&str, &[&str])] = &[
        (
            "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            &["generation"],
        ),
        ("k8s.io.api.core.v1.ContainerPort", &["hostPort"]),
        ("k8s.io.api.core.v1.ServicePort", &["nodePort"]),
        ("k8s.io.api.core.v1.ServiceSpec", &["healthCheckNodePort"]),
        (
            "k8s.io.api.core.v1.Probe",
            &[
                "initialDelaySeconds",
                "timeoutSeconds",
                "periodSeconds",
                "successThreshold",
                "failureThreshold",
            ],
        ),
        (
            "k8s.io.api.core.v1.ReplicationControllerSpec",
            &["minReadySeconds"],
        ),
        ("k8s.io.api.apps.v1.DeploymentSpec", &["minReadySeconds"]),
        ("k8s.io.api.apps.v1.ReplicaSetSpec", &["minReadySeconds"]),
        ("k8s.io.api.apps.v1.DaemonSetSpec", &["minReadySeconds"]),
        ("k8s.io.api.apps.v1.StatefulSetSpec", &["minReadySeconds"]),
    ];
    VALUE_INTS
        .iter()
        .any(|(m, fields)| *m == message && fields.contains(&field))
}

fn pr_has_more(r: &Reader<'_>, b: &[u8]) -> bool {
    r.position() < b.len()
}

fn map_entry(
    schema: &Schema,
    ty: &str,
    buf: &[u8],
    msg: &str,
    field: &str,
    depth: usize,
) -> Result<(String, Value), ProtobufError> {
    let mut key = String::new();
    let mut val = None;
    let mut r = Reader::new(buf);
    while let Some((tag, v)) = r.next_field()? {
        match tag {
            1 => {
                if let Value::String(s) = scalar("string", v)? {
                    key = s;
                }
            }
            2 => val = Some(value(schema, ty, v, msg, field, depth)?),
            _ => {}
        }
    }
    // An absent value is the type's zero value.
    let val = match val {
        Some(v) => v,
        None => match ty {
            "string" | "bytes" => Value::String(String::new()),
            "bool" => Value::Bool(false),
            "int32" | "int64" | "double" => Value::from(0),
            t => message(schema, t, &[], depth)?,
        },
    };
    Ok((key, val))
}

fn value(
    schema: &Schema,
    ty: &str,
    v: WireValue<'_>,
    msg: &str,
    field: &str,
    depth: usize,
) -> Result<Value, ProtobufError> {
    match ty {
        "string" | "bytes" | "bool" | "int32" | "int64" | "double" => scalar(ty, v),
        _ => match v {
            WireValue::Bytes(b) => message(schema, ty, b, depth),
            _ => Err(wrong_wire(msg, field)),
        },
    }
}

fn wrong_wire(msg: &str, field: &str) -> ProtobufError {
    ProtobufError::Malformed(format!("unexpected wire type for {msg}.{field}"))
}

fn scalar(ty: &str, v: WireValue<'_>) -> Result<Value, ProtobufError> {
    Ok(match (ty, v) {
        ("string", WireValue::Bytes(b)) => {
            Value::String(String::from_utf8(b.to_vec()).map_err(|_| ProtobufError::InvalidUtf8)?)
        }
        ("bytes", WireValue::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        ("bool", WireValue::Varint(n)) => Value::Bool(n != 0),
        // int32 is sign-extended to 64 bits on the wire; truncation is the proto rule.
        ("int32", WireValue::Varint(n)) => Value::from(n as i64 as i32),
        ("int64", WireValue::Varint(n)) => Value::from(n as i64),
        ("double", WireValue::Fixed64(n)) => Number::from_f64(f64::from_bits(n))
            .map(Value::Number)
            .ok_or_else(|| ProtobufError::Malformed("non-finite double".into()))?,
        (ty, _) => {
            return Err(ProtobufError::Malformed(format!(
                "unexpected wire type for a {ty} value"
            )));
        }
    })
}

/// The decoded fields of a small message as `(tag, value)` pairs, for the special types.
fn raw_fields(buf: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, ProtobufError> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while let Some(f) = r.next_field()? {
        out.push(f);
    }
    Ok(out)
}

fn int_field(fields: &[(u32, WireValue<'_>)], tag: u32) -> i64 {
    fields
        .iter()
        .rev()
        .find_map(|(t, v)| match v {
            WireValue::Varint(n) if *t == tag => Some(*n as i64),
            _ => None,
        })
        .unwrap_or(0)
}

fn bytes_field<'a>(fields: &[(u32, WireValue<'a>)], tag: u32) -> Option<&'a [u8]> {
    fields.iter().rev().find_map(|(t, v)| match v {
        WireValue::Bytes(b) if *t == tag => Some(*b),
        _ => None,
    })
}

fn string_field(fields: &[(u32, WireValue<'_>)], tag: u32) -> Result<String, ProtobufError> {
    let b = bytes_field(fields, tag).unwrap_or_default();
    String::from_utf8(b.to_vec()).map_err(|_| ProtobufError::InvalidUtf8)
}

/// Types whose JSON form is not an object of their proto fields.
fn special(
    schema: &Schema,
    name: &str,
    buf: &[u8],
    depth: usize,
) -> Result<Option<Value>, ProtobufError> {
    let v = match name.strip_prefix(META).unwrap_or(name) {
        // Go writes a zero Time as an empty message (`Time.Marshal`), which decodes back to the
        // zero Time: JSON null, i.e. unset.
        "Time" | "MicroTime" if buf.is_empty() => Value::Null,
        "Time" | "MicroTime" => {
            let f = raw_fields(buf)?;
            let micro = name.ends_with("MicroTime");
            Value::String(rfc3339(int_field(&f, 1), int_field(&f, 2), micro)?)
        }
        "Duration" => Value::String(go_duration(int_field(&raw_fields(buf)?, 1))),
        "FieldsV1" => embedded_json(bytes_field(&raw_fields(buf)?, 1))?,
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            Value::String(string_field(&raw_fields(buf)?, 1)?)
        }
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            let f = raw_fields(buf)?;
            if int_field(&f, 1) == 1 {
                Value::String(string_field(&f, 3)?)
            } else {
                Value::from(int_field(&f, 2) as i32)
            }
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => {
            let raw = bytes_field(&raw_fields(buf)?, 1);
            match raw {
                Some(b) if b.starts_with(super::MAGIC) => super::decode_object_at(b, depth)?,
                b => embedded_json(b)?,
            }
        }
        n if n.starts_with("k8s.io.apiextensions_apiserver.") => {
            return apiextensions(schema, n, buf, depth);
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

/// apiextensions' JSON and JSONSchemaPropsOr* unions.
fn apiextensions(
    schema: &Schema,
    name: &str,
    buf: &[u8],
    depth: usize,
) -> Result<Option<Value>, ProtobufError> {
    let Some((pkg, short)) = name.rsplit_once('.') else {
        return Ok(None);
    };
    let props = format!("{pkg}.JSONSchemaProps");
    let f = raw_fields(buf)?;
    let v = match short {
        "JSON" => embedded_json(bytes_field(&f, 1))?,
        "JSONSchemaPropsOrBool" => match bytes_field(&f, 2) {
            Some(b) => message(schema, &props, b, depth)?,
            None => Value::Bool(int_field(&f, 1) != 0),
        },
        "JSONSchemaPropsOrArray" => {
            let items: Vec<Value> = f
                .iter()
                .filter_map(|(t, v)| match v {
                    WireValue::Bytes(b) if *t == 2 => Some(message(schema, &props, b, depth)),
                    _ => None,
                })
                .collect::<Result<_, _>>()?;
            match bytes_field(&f, 1) {
                _ if !items.is_empty() => Value::Array(items),
                Some(b) => message(schema, &props, b, depth)?,
                None => Value::Null,
            }
        }
        "JSONSchemaPropsOrStringArray" => {
            let items: Vec<Value> = f
                .iter()
                .filter(|(t, _)| *t == 2)
                .map(|(_, v)| scalar("string", *v))
                .collect::<Result<_, _>>()?;
            match bytes_field(&f, 1) {
                _ if !items.is_empty() => Value::Array(items),
                Some(b) => message(schema, &props, b, depth)?,
                None => Value::Null,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

fn embedded_json(raw: Option<&[u8]>) -> Result<Value, ProtobufError> {
    match raw {
        None | Some([]) => Ok(Value::Null),
        Some(b) => serde_json::from_slice(b).map_err(|e| ProtobufError::InvalidJson(e.to_string())),
    }
}

/// `2024-01-02T03:04:05Z` (Time) or `2024-01-02T03:04:05.123456Z` (MicroTime).
pub fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> Result<String, ProtobufError> {
    let nanos = i32::try_from(nanos).unwrap_or(0);
    let ts = jiff::Timestamp::new(seconds, if micro { nanos } else { 0 })
        .map_err(|e| ProtobufError::Malformed(format!("invalid time: {e}")))?;
    let base = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    Ok(if micro {
        format!("{base}.{:06}Z", nanos / 1000)
    } else {
        format!("{base}Z")
    })
}

/// Go's `time.Duration.String()`: `1h2m3s`, `1.5s`, `300ms`, `0s`.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let frac = |v: u64, prec: u32| {
        let p = 10u64.pow(prec);
        let f = format!("{:0width$}", v % p, width = prec as usize);
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            format!("{}", v / p)
        } else {
            format!("{}.{f}", v / p)
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 6));
    }
    let h = u / 3_600_000_000_000;
    let m = (u / 60_000_000_000) % 60;
    let s = frac(u % 60_000_000_000, 9);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

//! Request bodies (JSON or YAML) parsed once, with bounds.
//!
//! [`parse_json_or_yaml`] looks at the first non-blank byte: `{` or `[` is JSON (serde_json,
//! which refuses nesting past 128 levels), anything else is YAML. The body is never parsed twice.
//!
//! YAML aliases (`*a`) replay the anchored node wherever they appear, so a small document can
//! stand for an enormous one (a 1 MB anchored scalar and 200,000 aliases in 1.6 MB would be
//! 200 GB of JSON). Upstream (sigs.k8s.io/yaml over goyaml) refuses such documents with
//! `yaml: document contains excessive aliasing`. Here the value is built by a visitor that charges
//! every node (1) and every string byte against a budget of 4 × the body size + 64 KiB and stops
//! with that error when the budget runs out, before allocating. A document without aliases
//! never comes near the budget (each node takes at least one byte of the body, and escapes never
//! more than double a string); nesting is bounded by [`crate::limits::MAX_DEPTH`].

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::limits::MAX_DEPTH;

/// Why a body could not be decoded. The texts are the parsers' own (the callers prefix them as
/// upstream does: `error decoding patch: ...`, `error converting YAML to JSON: ...`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Invalid JSON (including nesting past serde_json's recursion limit).
    #[error("{0}")]
    Json(String),
    /// Invalid YAML (including nesting past the recursion limit).
    #[error("yaml: {0}")]
    Yaml(String),
    /// Aliases that would expand the document past the budget.
    #[error("yaml: document contains excessive aliasing")]
    ExcessiveAliasing,
}

/// The parser [`parse_json_or_yaml`] picks for a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Yaml,
}

/// JSON when the first non-blank byte opens an object or array, YAML otherwise.
pub fn syntax_of(body: &[u8]) -> Syntax {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => Syntax::Json,
        _ => Syntax::Yaml,
    }
}

/// Parses a body as JSON or YAML (see the module docs), exactly once, with the bounds.
pub fn parse_json_or_yaml(body: &[u8]) -> Result<Value, DecodeError> {
    match syntax_of(body) {
        Syntax::Json => parse_json(body),
        Syntax::Yaml => parse_yaml(body),
    }
}

/// Parses JSON (serde_json's own recursion limit bounds the depth).
pub fn parse_json(body: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Parses one YAML document into JSON with the alias budget and the depth bound.
pub fn parse_yaml(body: &[u8]) -> Result<Value, DecodeError> {
    let mut budget = Budget {
        remaining: body.len().saturating_mul(4).saturating_add(64 * 1024),
        exhausted: false,
    };
    let de = serde_yaml::Deserializer::from_slice(body);
    let seed = ValueSeed {
        budget: &mut budget,
        depth: 0,
    };
    match seed.deserialize(de) {
        Ok(v) => Ok(v),
        Err(_) if budget.exhausted => Err(DecodeError::ExcessiveAliasing),
        Err(e) => Err(DecodeError::Yaml(e.to_string())),
    }
}

struct Budget {
    remaining: usize,
    exhausted: bool,
}

impl Budget {
    fn charge<E: de::Error>(&mut self, n: usize) -> Result<(), E> {
        match self.remaining.checked_sub(n) {
            Some(r) => {
                self.remaining = r;
                Ok(())
            }
            None => {
                self.exhausted = true;
                Err(E::custom("document contains excessive aliasing"))
            }
        }
    }
}

/// Builds a `serde_json::Value` like serde_json's own visitor, charging the budget first.
struct ValueSeed<'b> {
    budget: &'b mut Budget,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ValueSeed<'_> {
    fn nested<E: de::Error>(&mut self) -> Result<ValueSeed<'_>, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "exceeded max depth of {MAX_DEPTH} nested sequences and mappings"
            )));
        }
        Ok(ValueSeed {
            budget: &mut *self.budget,
            depth: self.depth + 1,
        })
    }

    fn string<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.budget.charge(1 + s.len())?;
        Ok(Value::String(s.to_owned()))
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.string(v)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.string(&v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.charge(1)?;
        let mut items = Vec::new();
        loop {
            let seed = self.nested()?;
            match seq.next_element_seed(seed)? {
                Some(v) => items.push(v),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.budget.charge(1)?;
        let mut out = Map::new();
        loop {
            let key = map.next_key_seed(KeySeed {
                budget: &mut *self.budget,
            })?;
            let Some(key) = key else { break };
            let seed = self.nested()?;
            let v = map.next_value_seed(seed)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key: a scalar, as a string (YAML `1: a` is the key `"1"`, as in sigs.k8s.io/yaml).
struct KeySeed<'b> {
    budget: &'b mut Budget,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.budget.charge(1 + v.len())?;
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.visit_str(&v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.visit_str(if v { "true" } else { "false" })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.visit_str("null")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_yaml_are_told_apart_by_the_first_byte() {
        assert_eq!(syntax_of(b"  \n{\"a\":1}"), Syntax::Json);
        assert_eq!(syntax_of(b"[1]"), Syntax::Json);
        assert_eq!(syntax_of(b"a: 1"), Syntax::Yaml);
        assert_eq!(syntax_of(b"---\n{}"), Syntax::Yaml);
        assert_eq!(syntax_of(b""), Syntax::Yaml);
        assert_eq!(
            parse_json_or_yaml(b" {\"a\": [1, 2.5, null]}").unwrap(),
            json!({"a": [1, 2.5, null]})
        );
        // JSON-looking text is JSON only: no second attempt as YAML.
        assert!(matches!(
            parse_json_or_yaml(b"{a: b}"),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn yaml_decodes_like_serde_yaml() {
        let doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: {a: b}\ndata:\n  k: \"v\"\n  n: '1'\nlist: [1, -2, 3.5, true, ~, 18446744073709551615]\n1: one\n";
        let want: Value = serde_yaml::from_slice(doc).unwrap();
        assert_eq!(parse_json_or_yaml(doc).unwrap(), want);
        assert_eq!(
            parse_yaml(b"a: &x [1, 2]\nb: *x\n").unwrap(),
            json!({"a": [1, 2], "b": [1, 2]})
        );
    }

    #[test]
    fn yaml_alias_bomb_is_refused_cheaply() {
        // One 1 MB anchored scalar and 200,000 aliases of it: 200 GB once expanded.
        let mut doc = format!("a: &a {}\nb: [", "x".repeat(1 << 20));
        doc.push_str(&vec!["*a"; 200_000].join(","));
        doc.push_str("]\n");
        let start = std::time::Instant::now();
        assert_eq!(
            parse_yaml(doc.as_bytes()),
            Err(DecodeError::ExcessiveAliasing)
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            DecodeError::ExcessiveAliasing.to_string(),
            "yaml: document contains excessive aliasing"
        );
    }

    #[test]
    fn yaml_billion_laughs_is_refused() {
        let mut doc = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
        {
            let refs = vec![format!("*{prev}"); 9].join(",");
            doc.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        assert_eq!(
            parse_yaml(doc.as_bytes()),
            Err(DecodeError::ExcessiveAliasing)
        );
    }

    #[test]
    fn deep_yaml_is_refused() {
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            parse_yaml(deep.as_bytes()),
            Err(DecodeError::Yaml(_))
        ));
        let block: String = (0..200)
            .map(|i| format!("{}- \n", " ".repeat(i * 2)))
            .collect();
        assert!(matches!(
            parse_yaml(block.as_bytes()),
            Err(DecodeError::Yaml(_))
        ));
        let ok = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_yaml(ok.as_bytes()).is_ok());
    }
}

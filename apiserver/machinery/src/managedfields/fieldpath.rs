//! Field paths and field sets, and their FieldsV1 form (upstream
//! `sigs.k8s.io/structured-merge-diff/v4/fieldpath`: `element.go`, `set.go`, `serialize.go`,
//! `serialize-pe.go`).
//!
//! A [`Set`] is a tree: `members` are the path elements owned as a whole at this level,
//! `children` are the elements whose sub-fields are owned. FieldsV1 writes every element as a
//! key (`f:<name>`, `k:<json>`, `v:<json>`, `i:<index>`); a member that also has children is
//! marked by a `"."` key inside its object.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path. The variant order is upstream's `PathElement.Compare` order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key: `f:<name>`.
    Field(String),
    /// An associative-list item by its key fields, stored as canonical JSON (sorted keys):
    /// `k:{"name":"nginx"}`.
    Key(String),
    /// A set item by its value, as JSON: `v:"a"`.
    Value(String),
    /// A list item by position (atomic lists are never descended, so rarely seen): `i:0`.
    Index(i64),
}

/// Canonical JSON of a value: object keys sorted, no spaces (upstream serializes key and
/// value elements through its own sorted writer).
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical_json(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

impl PathElement {
    /// A key element from `(field, value)` pairs.
    pub fn key(fields: &[(String, Value)]) -> Self {
        let map: Map<String, Value> = fields.iter().cloned().collect();
        PathElement::Key(canonical_json(&Value::Object(map)))
    }

    /// A value element.
    pub fn value(v: &Value) -> Self {
        PathElement::Value(canonical_json(v))
    }

    /// The FieldsV1 key of the element (`serialize-pe.go`).
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key.
    pub fn from_fields_v1_key(s: &str) -> Result<Self, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("unable to parse path element {s:?}: missing colon"))?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("unable to parse key {rest:?}: {e}"))?;
                if !v.is_object() {
                    return Err(format!("key {rest:?} is not a JSON object"));
                }
                Ok(PathElement::Key(canonical_json(&v)))
            }
            "v" => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("unable to parse value {rest:?}: {e}"))?;
                Ok(PathElement::Value(canonical_json(&v)))
            }
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| format!("unable to parse index {rest:?}")),
            other => Err(format!("unknown path element type {other:?}")),
        }
    }
}

/// Path elements printed as upstream's `Path.String()`: `.spec.replicas`,
/// `.spec.containers[name="nginx"].image`, `.metadata.finalizers[="a"]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(n) => write!(f, ".{n}"),
            PathElement::Key(k) => {
                let v: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                let parts: Vec<String> = v
                    .as_object()
                    .map(|m| {
                        let mut keys: Vec<&String> = m.keys().collect();
                        keys.sort();
                        keys.iter()
                            .map(|k| format!("{k}={}", canonical_json(&m[*k])))
                            .collect()
                    })
                    .unwrap_or_default();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the root of an object.
pub type Path = Vec<PathElement>;

/// Prints a path as upstream does.
pub fn path_string(p: &[PathElement]) -> String {
    p.iter().map(ToString::to_string).collect()
}

/// A set of field paths (upstream `fieldpath.Set`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    pub members: BTreeSet<PathElement>,
    pub children: BTreeMap<PathElement, Set>,
}

impl Set {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no path is in the set.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    /// Adds a path.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// True when the path is in the set.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// True when the path or anything below it is in the set.
    pub fn has_prefix(&self, path: &[PathElement]) -> bool {
        match path {
            [] => !self.is_empty(),
            [first, rest @ ..] => {
                (rest.is_empty() && self.members.contains(first))
                    || self.children.get(first).is_some_and(|c| c.has_prefix(rest))
            }
        }
    }

    /// The child set below one element (empty when absent).
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    /// `s ∪ other`.
    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (k, v) in &other.children {
            let merged = match out.children.get(k) {
                Some(c) => c.union(v),
                None => v.clone(),
            };
            out.children.insert(k.clone(), merged);
        }
        out
    }

    /// `s ∩ other`.
    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (k, v) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = v.intersection(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// `s − other` (members and children are subtracted level by level, as upstream).
    pub fn difference(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (k, v) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => v.difference(o),
                None => v.clone(),
            };
            if !d.is_empty() {
                out.children.insert(k.clone(), d);
            }
        }
        out
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for k in keys {
            prefix.push(k.clone());
            if self.members.contains(k) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(k) {
                c.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The FieldsV1 JSON form.
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(
            self.children
                .keys()
                .filter(|k| self.children.get(*k).is_some_and(|c| !c.is_empty())),
        );
        for k in keys {
            let member = self.members.contains(k);
            let child = self.children.get(k).filter(|c| !c.is_empty());
            let v = match child {
                None => Value::Object(Map::new()),
                Some(c) => {
                    let mut inner = Map::new();
                    if member {
                        inner.insert(".".into(), Value::Object(Map::new()));
                    }
                    if let Value::Object(m) = c.to_fields_v1() {
                        inner.extend(m);
                    }
                    Value::Object(inner)
                }
            };
            out.insert(k.to_fields_v1_key(), v);
        }
        Value::Object(out)
    }

    /// Parses the FieldsV1 JSON form.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let Some(m) = v.as_object() else {
            return Err("FieldsV1 is not a JSON object".into());
        };
        let mut out = Set::new();
        for (k, v) in m {
            if k == "." {
                continue;
            }
            let pe = PathElement::from_fields_v1_key(k)?;
            let inner = v.as_object().ok_or_else(|| format!("{k}: not an object"))?;
            if inner.is_empty() || inner.contains_key(".") {
                out.members.insert(pe.clone());
            }
            if inner.keys().any(|k| k != ".") {
                out.children.insert(pe, Set::from_fields_v1(v)?);
            }
        }
        Ok(out)
    }
}

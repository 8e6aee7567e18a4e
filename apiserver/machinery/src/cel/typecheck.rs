//! Static type checking of a parsed expression against declared variable types, as cel-go's
//! checker does for ValidatingAdmissionPolicy `status.typeChecking`: `undefined field 'x'` for a
//! field the schema does not declare, `found no matching overload for '_>_' applied to
//! '(int, string)'` for operators whose operand types have no overload. Anything whose type is
//! not known statically (`dyn`: int-or-string, preserve-unknown-fields, function results this
//! checker does not model) passes, so a well-typed expression never gets a warning.
//!
//! [`CelType::from_schema`] turns an OpenAPI schema (a built-in's definitions with `$ref`s, or a
//! CRD's inline structural schema) into the checker's types, as upstream's `SchemaDeclType`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde_json::Value as Json;

use super::parser::{Expr, Macro};
use super::value::Value;

/// A static CEL type.
#[derive(Clone, Debug, PartialEq)]
pub enum CelType {
    /// Not known statically.
    Dyn,
    /// `null_type`.
    Null,
    /// `bool`.
    Bool,
    /// `int`.
    Int,
    /// `uint`.
    Uint,
    /// `double`.
    Double,
    /// `string`.
    String,
    /// `bytes`.
    Bytes,
    /// `google.protobuf.Timestamp`.
    Timestamp,
    /// `google.protobuf.Duration`.
    Duration,
    /// `list(T)`.
    List(Arc<CelType>),
    /// `map(K, V)`.
    Map(Arc<CelType>, Arc<CelType>),
    /// An object of a schema with declared fields.
    Object(Arc<ObjectType>),
}

/// An object type: its name (for messages) and its declared fields.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectType {
    /// The type's name (`Deployment.spec`).
    pub name: String,
    /// Field types.
    pub fields: BTreeMap<String, CelType>,
}

impl fmt::Display for CelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CelType::Dyn => f.write_str("dyn"),
            CelType::Null => f.write_str("null_type"),
            CelType::Bool => f.write_str("bool"),
            CelType::Int => f.write_str("int"),
            CelType::Uint => f.write_str("uint"),
            CelType::Double => f.write_str("double"),
            CelType::String => f.write_str("string"),
            CelType::Bytes => f.write_str("bytes"),
            CelType::Timestamp => f.write_str("google.protobuf.Timestamp"),
            CelType::Duration => f.write_str("google.protobuf.Duration"),
            CelType::List(e) => write!(f, "list({e})"),
            CelType::Map(k, v) => write!(f, "map({k}, {v})"),
            CelType::Object(o) => f.write_str(&o.name),
        }
    }
}

/// Deepest schema nesting converted; deeper parts are `dyn`.
const MAX_SCHEMA_DEPTH: usize = 64;

impl CelType {
    /// The type of `schema`, an OpenAPI schema whose `$ref`s (`#/definitions/<name>` or
    /// `#/components/schemas/<name>`) resolve in `definitions`; `name` names the root object
    /// type. Recursive definitions become `dyn` where they recur.
    pub fn from_schema(
        schema: &Json,
        definitions: Option<&serde_json::Map<String, Json>>,
        name: &str,
    ) -> CelType {
        let mut seen = HashSet::new();
        convert(schema, definitions, name, &mut seen, 0)
    }

    fn is_dyn(&self) -> bool {
        matches!(self, CelType::Dyn)
    }

    fn is_numeric(&self) -> bool {
        matches!(self, CelType::Int | CelType::Uint | CelType::Double)
    }

    /// Same outer kind (lists and maps compared by kind only).
    fn same_kind(&self, other: &CelType) -> bool {
        match (self, other) {
            (CelType::List(_), CelType::List(_)) | (CelType::Map(..), CelType::Map(..)) => true,
            (CelType::Object(a), CelType::Object(b)) => a.name == b.name,
            _ => self == other,
        }
    }
}

fn ref_name(s: &Json) -> Option<&str> {
    let r = s.get("$ref")?.as_str()?;
    r.strip_prefix("#/definitions/")
        .or_else(|| r.strip_prefix("#/components/schemas/"))
}

fn convert(
    s: &Json,
    defs: Option<&serde_json::Map<String, Json>>,
    name: &str,
    seen: &mut HashSet<String>,
    depth: usize,
) -> CelType {
    if depth > MAX_SCHEMA_DEPTH {
        return CelType::Dyn;
    }
    if let Some(target) = ref_name(s) {
        let Some(def) = defs.and_then(|d| d.get(target)) else {
            return CelType::Dyn;
        };
        if !seen.insert(target.to_string()) {
            return CelType::Dyn;
        }
        let t = convert(def, defs, name, seen, depth + 1);
        seen.remove(target);
        return t;
    }
    // `allOf: [{$ref}]` wraps a reference with a description (schemars, upstream v3).
    if let Some([only]) = s.get("allOf").and_then(Json::as_array).map(Vec::as_slice) {
        return convert(only, defs, name, seen, depth + 1);
    }
    let flag = |k: &str| s.get(k).and_then(Json::as_bool).unwrap_or(false);
    if flag("x-kubernetes-int-or-string") {
        return CelType::Dyn;
    }
    let ty = match s.get("type") {
        Some(Json::String(t)) => t.as_str(),
        // No type, or a list of types (`["string", "null"]`): not known statically.
        _ => {
            return if flag("x-kubernetes-embedded-resource") || s.get("properties").is_some() {
                object(s, defs, name, seen, depth)
            } else {
                CelType::Dyn
            };
        }
    };
    match ty {
        "boolean" => CelType::Bool,
        "integer" => CelType::Int,
        "number" => CelType::Double,
        "string" => match s.get("format").and_then(Json::as_str) {
            Some("int-or-string") => CelType::Dyn,
            Some("byte") => CelType::Bytes,
            Some("date-time") => CelType::Timestamp,
            Some("duration") => CelType::Duration,
            _ => CelType::String,
        },
        "array" => {
            let item = s
                .get("items")
                .map(|i| convert(i, defs, &format!("{name}.@idx"), seen, depth + 1))
                .unwrap_or(CelType::Dyn);
            CelType::List(Arc::new(item))
        }
        "object" => object(s, defs, name, seen, depth),
        _ => CelType::Dyn,
    }
}

fn object(
    s: &Json,
    defs: Option<&serde_json::Map<String, Json>>,
    name: &str,
    seen: &mut HashSet<String>,
    depth: usize,
) -> CelType {
    let props = s.get("properties").and_then(Json::as_object);
    let preserve = s
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let embedded = s
        .get("x-kubernetes-embedded-resource")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    match props {
        // Fields other than the declared ones may be present: not checked.
        Some(_) if preserve => CelType::Dyn,
        Some(props) => {
            let mut fields = BTreeMap::new();
            for (k, v) in props {
                let t = convert(v, defs, &format!("{name}.{k}"), seen, depth + 1);
                fields.insert(k.clone(), t);
            }
            if embedded {
                for k in ["apiVersion", "kind"] {
                    fields.entry(k.to_string()).or_insert(CelType::String);
                }
                fields.entry("metadata".into()).or_insert(CelType::Dyn);
            }
            CelType::Object(Arc::new(ObjectType {
                name: name.to_string(),
                fields,
            }))
        }
        None => match s.get("additionalProperties") {
            Some(ap @ Json::Object(_)) => CelType::Map(
                Arc::new(CelType::String),
                Arc::new(convert(ap, defs, &format!("{name}.@elem"), seen, depth + 1)),
            ),
            _ => CelType::Dyn,
        },
    }
}

/// One type-check issue: where (byte offset in the source) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// Byte offset of the offending node.
    pub pos: usize,
    /// cel-go's message (`undefined field 'x'`).
    pub message: String,
}

/// Type-checks `expr` with the declared variables (anything not declared is `dyn`).
pub fn check(expr: &Expr, vars: &[(String, CelType)]) -> (CelType, Vec<Issue>) {
    let mut c = Checker {
        scopes: vars.to_vec(),
        issues: Vec::new(),
    };
    let t = c.ty(expr);
    c.issues.sort_by_key(|i| i.pos);
    (t, c.issues)
}

/// Most issues reported for one expression (cel-go's `maxErrorsToReport`).
pub const MAX_ISSUES: usize = 100;
/// Longest text of one expression's issues: a long hostile line with many issues must not
/// turn into megabytes of status.
pub const MAX_ISSUES_TEXT: usize = 16 * 1024;

/// cel-go's display of issues: `ERROR: <input>:L:C: message`, the source line and a caret
/// (at most [`MAX_ISSUES`] issues and about [`MAX_ISSUES_TEXT`] bytes).
pub fn format_issues(source: &str, issues: &[Issue]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut len = 0;
    for i in issues.iter().take(MAX_ISSUES) {
        if len >= MAX_ISSUES_TEXT {
            break;
        }
        let pos = i.pos.min(source.len());
        let before = source.get(..pos).unwrap_or("");
        let line_no = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |p| p + 1);
        let col = source.get(line_start..pos).map_or(0, |s| s.chars().count());
        let line = source[line_start..].lines().next().unwrap_or("");
        let text = format!(
            "ERROR: <input>:{line_no}:{}: {}\n | {line}\n | {}^",
            col + 1,
            i.message,
            ".".repeat(col)
        );
        len += text.len();
        out.push(text);
    }
    out.join("\n")
}

struct Checker {
    scopes: Vec<(String, CelType)>,
    issues: Vec<Issue>,
}

fn lit_type(v: &Value) -> CelType {
    match v {
        Value::Null => CelType::Null,
        Value::Bool(_) => CelType::Bool,
        Value::Int(_) => CelType::Int,
        Value::Uint(_) => CelType::Uint,
        Value::Double(_) => CelType::Double,
        Value::String(_) => CelType::String,
        Value::Bytes(_) => CelType::Bytes,
        Value::Duration(_) => CelType::Duration,
        Value::Timestamp(_) => CelType::Timestamp,
        _ => CelType::Dyn,
    }
}

/// The result of an arithmetic operator over two known types; `None`: no overload.
fn arith(op: &str, a: &CelType, b: &CelType) -> Option<CelType> {
    use CelType::*;
    let same_num = a == b && a.is_numeric();
    match op {
        "_+_" => match (a, b) {
            _ if same_num => Some(a.clone()),
            (String, String) | (Bytes, Bytes) | (Duration, Duration) => Some(a.clone()),
            (List(x), List(y)) => Some(if x == y {
                a.clone()
            } else {
                List(Arc::new(Dyn))
            }),
            (Timestamp, Duration) | (Duration, Timestamp) => Some(Timestamp),
            _ => None,
        },
        "_-_" => match (a, b) {
            _ if same_num => Some(a.clone()),
            (Timestamp, Timestamp) => Some(Duration),
            (Timestamp, Duration) => Some(Timestamp),
            (Duration, Duration) => Some(Duration),
            _ => None,
        },
        "_*_" | "_/_" => same_num.then(|| a.clone()),
        "_%_" => (a == b && matches!(a, Int | Uint)).then(|| a.clone()),
        _ => Some(Dyn),
    }
}

fn ordered(a: &CelType, b: &CelType) -> bool {
    use CelType::*;
    (a.is_numeric() && b.is_numeric())
        || (a == b && matches!(a, String | Bytes | Bool | Timestamp | Duration))
}

impl Checker {
    fn issue(&mut self, pos: u32, message: String) {
        self.issues.push(Issue {
            pos: pos as usize,
            message,
        });
    }

    fn no_overload(&mut self, pos: u32, func: &str, args: &[CelType]) {
        let list: Vec<String> = args.iter().map(ToString::to_string).collect();
        self.issue(
            pos,
            format!(
                "found no matching overload for '{func}' applied to '({})'",
                list.join(", ")
            ),
        );
    }

    fn lookup(&self, name: &str) -> CelType {
        self.scopes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(CelType::Dyn, |(_, t)| t.clone())
    }

    fn ty(&mut self, e: &Expr) -> CelType {
        match e {
            Expr::Lit(v) => lit_type(v),
            Expr::Ident(i) => self.lookup(i),
            Expr::Select {
                operand,
                field,
                test,
                optional,
                pos,
            } => {
                let base = self.ty(operand);
                let t = match &base {
                    CelType::Object(o) => match o.fields.get(&**field) {
                        Some(t) => t.clone(),
                        // An escaped property name (`x__dash__y`): not modelled here.
                        None if field.contains("__") => CelType::Dyn,
                        None => {
                            self.issue(*pos, format!("undefined field '{field}'"));
                            CelType::Dyn
                        }
                    },
                    CelType::Map(_, v) => (**v).clone(),
                    CelType::Dyn => CelType::Dyn,
                    other => {
                        self.issue(
                            *pos,
                            format!("type '{other}' does not support field selection"),
                        );
                        CelType::Dyn
                    }
                };
                if *test {
                    CelType::Bool
                } else if *optional {
                    CelType::Dyn
                } else {
                    t
                }
            }
            Expr::Call {
                func,
                target,
                args,
                pos,
            } => {
                let recv = target.as_ref().map(|t| self.ty(t));
                let types: Vec<CelType> = args.iter().map(|a| self.ty(a)).collect();
                self.call(func, recv, &types, *pos)
            }
            Expr::List(items) => {
                let types: Vec<CelType> = items.iter().map(|i| self.ty(i)).collect();
                CelType::List(Arc::new(common(&types)))
            }
            Expr::Map(entries) => {
                let mut keys = Vec::new();
                let mut vals = Vec::new();
                for (k, v) in entries {
                    keys.push(self.ty(k));
                    vals.push(self.ty(v));
                }
                CelType::Map(Arc::new(common(&keys)), Arc::new(common(&vals)))
            }
            Expr::Comprehension {
                kind,
                var,
                range,
                body,
                filter,
            } => {
                let r = self.ty(range);
                let elem = match &r {
                    CelType::List(e) => (**e).clone(),
                    CelType::Map(k, _) => (**k).clone(),
                    _ => CelType::Dyn,
                };
                self.scopes.push((var.to_string(), elem));
                if let Some(f) = filter {
                    self.ty(f);
                }
                let b = self.ty(body);
                self.scopes.pop();
                match kind {
                    Macro::All | Macro::Exists | Macro::ExistsOne => CelType::Bool,
                    Macro::Map => CelType::List(Arc::new(b)),
                    Macro::Filter => match r {
                        CelType::List(_) => r,
                        _ => CelType::List(Arc::new(CelType::Dyn)),
                    },
                }
            }
        }
    }

    fn call(&mut self, func: &str, recv: Option<CelType>, args: &[CelType], pos: u32) -> CelType {
        let any_dyn = args.iter().any(CelType::is_dyn);
        match (func, args) {
            ("_&&_" | "_||_", [a, b]) => {
                if !matches!(a, CelType::Bool | CelType::Dyn)
                    || !matches!(b, CelType::Bool | CelType::Dyn)
                {
                    self.no_overload(pos, func, args);
                }
                CelType::Bool
            }
            ("!_", [a]) => {
                if !matches!(a, CelType::Bool | CelType::Dyn) {
                    self.no_overload(pos, func, args);
                }
                CelType::Bool
            }
            ("-_", [a]) => match a {
                CelType::Int | CelType::Double | CelType::Duration | CelType::Dyn => a.clone(),
                _ => {
                    self.no_overload(pos, func, args);
                    CelType::Dyn
                }
            },
            ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", [a, b]) => {
                if any_dyn {
                    return CelType::Dyn;
                }
                match arith(func, a, b) {
                    Some(t) => t,
                    None => {
                        self.no_overload(pos, func, args);
                        CelType::Dyn
                    }
                }
            }
            ("_<_" | "_<=_" | "_>_" | "_>=_", [a, b]) => {
                if !any_dyn && !ordered(a, b) {
                    self.no_overload(pos, func, args);
                }
                CelType::Bool
            }
            ("_==_" | "_!=_", [a, b]) => {
                let compatible = any_dyn
                    || matches!(a, CelType::Null)
                    || matches!(b, CelType::Null)
                    || (a.is_numeric() && b.is_numeric())
                    || matches!((a, b), (CelType::Object(_), _) | (_, CelType::Object(_)))
                    || a.same_kind(b);
                if !compatible {
                    self.no_overload(pos, func, args);
                }
                CelType::Bool
            }
            ("_?_:_", [c, a, b]) => {
                if !matches!(c, CelType::Bool | CelType::Dyn) {
                    self.no_overload(pos, func, args);
                }
                if a == b { a.clone() } else { CelType::Dyn }
            }
            ("_[_]", [base, _]) => match base {
                CelType::List(e) => (**e).clone(),
                CelType::Map(_, v) => (**v).clone(),
                _ => CelType::Dyn,
            },
            ("@in", _) => CelType::Bool,
            ("size", _) => CelType::Int,
            ("contains" | "startsWith" | "endsWith" | "matches", _)
                if matches!(recv, Some(CelType::String)) =>
            {
                CelType::Bool
            }
            ("lowerAscii" | "upperAscii" | "trim" | "replace" | "substring", _)
                if matches!(recv, Some(CelType::String)) =>
            {
                CelType::String
            }
            ("string", [_]) if recv.is_none() => CelType::String,
            ("int", [_]) if recv.is_none() => CelType::Int,
            ("uint", [_]) if recv.is_none() => CelType::Uint,
            ("double", [_]) if recv.is_none() => CelType::Double,
            ("bool", [_]) if recv.is_none() => CelType::Bool,
            ("bytes", [_]) if recv.is_none() => CelType::Bytes,
            ("timestamp", [_]) if recv.is_none() => CelType::Timestamp,
            ("duration", [_]) if recv.is_none() => CelType::Duration,
            _ => CelType::Dyn,
        }
    }
}

/// The one type of all `types`, or `dyn`.
fn common(types: &[CelType]) -> CelType {
    match types.split_first() {
        Some((first, rest)) if rest.iter().all(|t| t == first) => first.clone(),
        _ => CelType::Dyn,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cel::Program;

    fn deployment() -> CelType {
        let defs = json!({
            "Deployment": {"type": "object", "properties": {
                "apiVersion": {"type": "string"},
                "metadata": {"$ref": "#/definitions/ObjectMeta"},
                "spec": {"allOf": [{"$ref": "#/definitions/DeploymentSpec"}]},
            }},
            "ObjectMeta": {"type": "object", "properties": {
                "name": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "creationTimestamp": {"type": "string", "format": "date-time"},
            }},
            "DeploymentSpec": {"type": "object", "properties": {
                "replicas": {"type": "integer", "format": "int32"},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "port": {"x-kubernetes-int-or-string": true},
                "containers": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"},
                }}},
            }},
        });
        let defs = defs.as_object().cloned().unwrap_or_default();
        CelType::from_schema(
            &json!({"$ref": "#/definitions/Deployment"}),
            Some(&defs),
            "Deployment",
        )
    }

    fn issues(src: &str) -> String {
        let declared = [
            ("object".to_string(), crate::cel::TypeDesc::Dyn),
            ("unknownVariable".to_string(), crate::cel::TypeDesc::Dyn),
        ];
        let p = match Program::compile(src, &declared) {
            Ok(p) => p,
            Err(e) => panic!("{src}: {e}"),
        };
        p.type_check(&[("object".into(), deployment())]).1
    }

    #[test]
    fn well_typed_expressions_have_no_issues() {
        for src in [
            "object.spec.replicas > 1",
            "object.spec.replicas > 1.5",
            "has(object.spec.replicas) && object.spec.replicas % 2 == 1",
            "object.metadata.labels['app'] == 'web'",
            "object.metadata.name.startsWith('x') || size(object.metadata.name) < 3",
            "object.spec.containers.all(c, c.name != '')",
            "object.spec.extra.anything.goes == 1",
            "object.spec.port == 80 || object.spec.port == 'http'",
            "object.metadata.creationTimestamp < timestamp('2030-01-01T00:00:00Z')",
            "'replicas: ' + string(object.spec.replicas)",
            "object.spec.replicas == null",
            "unknownVariable.foo > 'x'",
        ] {
            assert_eq!(issues(src), "", "{src}");
        }
    }

    #[test]
    fn type_confusion_is_reported_as_cel_go_does() {
        assert_eq!(
            issues("object.spec.replicas > '1'"),
            "ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'\n | object.spec.replicas > '1'\n | .....................^"
        );
        assert!(
            issues("'wants replicas > 1, got ' + object.spec.replicas")
                .contains("found no matching overload for '_+_' applied to '(string, int)'")
        );
        assert_eq!(
            issues("object.spec.maxRetries < 10"),
            "ERROR: <input>:1:12: undefined field 'maxRetries'\n | object.spec.maxRetries < 10\n | ...........^"
        );
        assert!(
            issues("object.spec.containers.exists(c, c.nmae == 'a')")
                .contains("undefined field 'nmae'")
        );
        assert!(issues("has(object.spec.nope)").contains("undefined field 'nope'"));
        assert!(issues("object.spec.replicas && true").contains("'_&&_' applied to '(int, bool)'"));
        // A long line with many issues stays bounded.
        let many_lines = vec!["object.spec.replicas > 'x'"; 400].join("\n|| ");
        assert_eq!(issues(&many_lines).matches("ERROR:").count(), MAX_ISSUES);
        let one_line = vec!["object.spec.replicas > 'x'"; 400].join(" || ");
        let text = issues(&one_line);
        assert!(
            text.len() < MAX_ISSUES_TEXT + 2 * one_line.len(),
            "{}",
            text.len()
        );
    }
}

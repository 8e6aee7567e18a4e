//! The CEL interpreter: a tree walk that charges cost as it goes (like cel-go's
//! `ActualCost`), so any expression stops once it spends its budget.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::functions;
use super::parser::{Expr, Macro};
use super::value::{Key, Value, compare, equals};
use super::{Activation, EvalError};

/// Regexes of literal patterns, compiled once per program.
pub type RegexCache = HashMap<String, regex::Regex>;

/// One evaluation: bindings, locals of macros, cost so far.
pub struct Eval<'a> {
    pub(super) act: &'a Activation,
    locals: Vec<(Arc<str>, Value)>,
    pub(super) cost: u64,
    limit: u64,
    pub(super) regexes: &'a RegexCache,
    depth: usize,
}

/// Deepest recursion of evaluation (the parser bounds nesting well below this).
const MAX_EVAL_DEPTH: usize = 1200;

pub(super) fn rt<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::Runtime(msg.into()))
}

pub(super) fn no_overload<T>(name: &str, args: &[&Value]) -> Result<T, EvalError> {
    let types: Vec<&str> = args.iter().map(|a| a.type_name()).collect();
    rt(format!("no such overload: {name}({})", types.join(", ")))
}

impl<'a> Eval<'a> {
    pub(super) fn new(act: &'a Activation, limit: u64, regexes: &'a RegexCache) -> Self {
        Eval {
            act,
            locals: Vec::new(),
            cost: 0,
            limit,
            regexes,
            depth: 0,
        }
    }

    /// Adds `n` to the cost; fails once over the limit.
    pub(super) fn charge(&mut self, n: u64) -> Result<(), EvalError> {
        self.cost = self.cost.saturating_add(n);
        if self.cost > self.limit {
            Err(EvalError::CostLimitExceeded)
        } else {
            Ok(())
        }
    }

    fn lookup(&self, name: &str) -> Option<Value> {
        if let Some((_, v)) = self.locals.iter().rev().find(|(n, _)| &**n == name) {
            return Some(v.clone());
        }
        self.act.get(name).cloned()
    }

    pub(super) fn eval(&mut self, e: &Expr) -> Result<Value, EvalError> {
        self.depth += 1;
        if self.depth > MAX_EVAL_DEPTH {
            self.depth -= 1;
            return rt("max recursion depth exceeded");
        }
        let r = self.eval_inner(e);
        self.depth -= 1;
        r
    }

    fn eval_inner(&mut self, e: &Expr) -> Result<Value, EvalError> {
        match e {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Ident(name) => {
                self.charge(1)?;
                match self.lookup(name) {
                    Some(v) => Ok(v),
                    None => match &**name {
                        "int" | "uint" | "double" | "bool" | "string" | "bytes" | "list"
                        | "map" | "null_type" | "type" => Ok(Value::Type(name.clone())),
                        _ => rt(format!("no such attribute: {name}")),
                    },
                }
            }
            Expr::Select {
                operand,
                field,
                test,
                optional,
                ..
            } => {
                self.charge(1)?;
                let base = self.eval(operand)?;
                select(base, field, *test, *optional)
            }
            Expr::List(items) => {
                self.charge(10)?;
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.eval(i)?);
                }
                Ok(Value::List(Arc::new(out)))
            }
            Expr::Map(entries) => {
                self.charge(30)?;
                let mut out = BTreeMap::new();
                for (k, v) in entries {
                    let kv = self.eval(k)?;
                    let Some(key) = Key::from_value(&kv) else {
                        return rt(format!("unsupported key type: {}", kv.type_name()));
                    };
                    let vv = self.eval(v)?;
                    if out.insert(key, vv).is_some() {
                        return rt("Failed with repeated key");
                    }
                }
                Ok(Value::Map(Arc::new(out)))
            }
            Expr::Comprehension {
                kind,
                var,
                range,
                body,
                filter,
            } => self.comprehension(*kind, var, range, body, filter.as_deref()),
            Expr::Call {
                func, target, args, ..
            } => self.call(func, target.as_deref(), args),
        }
    }

    fn comprehension(
        &mut self,
        kind: Macro,
        var: &Arc<str>,
        range: &Expr,
        body: &Expr,
        filter: Option<&Expr>,
    ) -> Result<Value, EvalError> {
        let r = self.eval(range)?;
        let items: Vec<Value> = match &r {
            Value::List(l) => l.iter().cloned().collect(),
            Value::Map(m) => m.keys().map(Key::to_value).collect(),
            other => return no_overload("comprehension", &[other]),
        };
        let mut out = Vec::new();
        let mut count = 0usize;
        let mut result: Option<bool> = None;
        let mut pending_err: Option<EvalError> = None;
        for it in items {
            self.charge(1)?;
            self.locals.push((var.clone(), it.clone()));
            let step = (|| -> Result<(), EvalError> {
                match kind {
                    Macro::All | Macro::Exists => {
                        match self.eval(body) {
                            Ok(Value::Bool(b)) => {
                                if kind == Macro::All && !b {
                                    result = Some(false);
                                } else if kind == Macro::Exists && b {
                                    result = Some(true);
                                }
                            }
                            Ok(other) => pending_err = Some(no_overload_err("_&&_", &other)),
                            Err(EvalError::CostLimitExceeded) => {
                                return Err(EvalError::CostLimitExceeded);
                            }
                            Err(e) => pending_err = Some(e),
                        }
                        Ok(())
                    }
                    Macro::ExistsOne => {
                        if as_bool(self.eval(body)?, "exists_one")? {
                            count += 1;
                        }
                        Ok(())
                    }
                    Macro::Filter => {
                        if as_bool(self.eval(body)?, "filter")? {
                            out.push(it.clone());
                        }
                        Ok(())
                    }
                    Macro::Map => {
                        let keep = match filter {
                            Some(f) => as_bool(self.eval(f)?, "map")?,
                            None => true,
                        };
                        if keep {
                            out.push(self.eval(body)?);
                        }
                        Ok(())
                    }
                }
            })();
            self.locals.pop();
            step?;
            if result.is_some() {
                break;
            }
        }
        match kind {
            Macro::All | Macro::Exists => match (result, pending_err) {
                (Some(b), _) => Ok(Value::Bool(b)),
                (None, Some(e)) => Err(e),
                (None, None) => Ok(Value::Bool(kind == Macro::All)),
            },
            Macro::ExistsOne => Ok(Value::Bool(count == 1)),
            Macro::Filter | Macro::Map => Ok(Value::List(Arc::new(out))),
        }
    }

    fn call(
        &mut self,
        func: &str,
        target: Option<&Expr>,
        args: &[Expr],
    ) -> Result<Value, EvalError> {
        match func {
            "_&&_" | "_||_" => {
                self.charge(1)?;
                let want = func == "_||_"; // the value that decides the result
                let l = self.eval(&args[0]);
                if let Ok(Value::Bool(b)) = l
                    && b == want
                {
                    return Ok(Value::Bool(b));
                }
                let r = self.eval(&args[1]);
                match (l, r) {
                    (_, Err(EvalError::CostLimitExceeded)) => Err(EvalError::CostLimitExceeded),
                    (_, Ok(Value::Bool(b))) if b == want => Ok(Value::Bool(b)),
                    (Ok(Value::Bool(_)), Ok(Value::Bool(b))) => Ok(Value::Bool(b)),
                    (Err(e), _) => Err(e),
                    (_, Err(e)) => Err(e),
                    (Ok(a), Ok(b)) => no_overload(func, &[&a, &b]),
                }
            }
            "_?_:_" => {
                self.charge(1)?;
                match self.eval(&args[0])? {
                    Value::Bool(true) => self.eval(&args[1]),
                    Value::Bool(false) => self.eval(&args[2]),
                    other => no_overload(func, &[&other]),
                }
            }
            _ => {
                // `format.dns1123Label()` style named formats.
                if let Some(Expr::Ident(ns)) = target
                    && &**ns == "format"
                    && self.lookup("format").is_none()
                {
                    self.charge(1)?;
                    return super::k8s::named_format(func);
                }
                // `jsonpatch.escapeKey(k)`: a map key as one JSON pointer segment.
                if let Some(Expr::Ident(ns)) = target
                    && &**ns == "jsonpatch"
                    && func == "escapeKey"
                    && self.lookup("jsonpatch").is_none()
                {
                    self.charge(1)?;
                    return match args {
                        [a] => match self.eval(a)? {
                            Value::String(k) => {
                                self.charge(super::functions::traversal(k.len() as u64))?;
                                Ok(Value::String(
                                    k.replace('~', "~0").replace('/', "~1").into(),
                                ))
                            }
                            other => no_overload("jsonpatch.escapeKey", &[&other]),
                        },
                        _ => rt("no such overload: jsonpatch.escapeKey"),
                    };
                }
                self.charge(1)?;
                let recv = match target {
                    Some(t) => Some(self.eval(t)?),
                    None => None,
                };
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.eval(a)?);
                }
                let pattern_lit = match (func, args) {
                    ("matches", [Expr::Lit(Value::String(p))]) if recv.is_some() => {
                        Some(p.to_string())
                    }
                    ("matches", [_, Expr::Lit(Value::String(p))]) => Some(p.to_string()),
                    ("find" | "findAll", [Expr::Lit(Value::String(p)), ..]) => Some(p.to_string()),
                    _ => None,
                };
                functions::call(self, func, recv, vals, pattern_lit.as_deref())
            }
        }
    }
}

fn no_overload_err(name: &str, v: &Value) -> EvalError {
    EvalError::Runtime(format!("no such overload: {name}({})", v.type_name()))
}

pub(super) fn as_bool(v: Value, ctx: &str) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(b),
        other => no_overload(ctx, &[&other]),
    }
}

fn select(base: Value, field: &str, test: bool, optional: bool) -> Result<Value, EvalError> {
    let base = match base {
        Value::Optional(None) if optional || test => {
            return Ok(if test {
                Value::Bool(false)
            } else {
                Value::Optional(None)
            });
        }
        Value::Optional(Some(inner)) if optional => *inner,
        other => other,
    };
    match &base {
        Value::Authz(a) if !test => super::authz::select(a, field),
        Value::Map(m) => {
            let got = m.get(&Key::String(field.into()));
            if test {
                return Ok(Value::Bool(got.is_some()));
            }
            if optional {
                return Ok(Value::Optional(got.cloned().map(Box::new)));
            }
            match got {
                Some(v) => Ok(v.clone()),
                None => rt(format!("no such key: {field}")),
            }
        }
        Value::Null if test => Ok(Value::Bool(false)),
        other => {
            if test {
                no_overload("has", &[other])
            } else {
                rt(format!(
                    "type '{}' does not support field selection",
                    other.type_name()
                ))
            }
        }
    }
}

/// `a[b]` and `a[?b]`.
pub(super) fn index(a: &Value, b: &Value, optional: bool) -> Result<Value, EvalError> {
    let a = match a {
        Value::Optional(None) if optional => return Ok(Value::Optional(None)),
        Value::Optional(Some(inner)) if optional => inner.as_ref(),
        other => other,
    };
    let found = match (a, b) {
        (Value::List(l), Value::Int(_) | Value::Uint(_) | Value::Double(_)) => {
            let i = match b {
                Value::Int(i) => *i,
                Value::Uint(u) => i64::try_from(*u).unwrap_or(i64::MAX),
                Value::Double(d) if d.fract() == 0.0 => *d as i64,
                _ => return no_overload("_[_]", &[a, b]),
            };
            if i < 0 || i as usize >= l.len() {
                if optional {
                    return Ok(Value::Optional(None));
                }
                return rt(format!("index out of bounds: {i}"));
            }
            Some(l[i as usize].clone())
        }
        (Value::Map(m), k) => {
            let Some(key) = Key::from_value(k) else {
                return no_overload("_[_]", &[a, b]);
            };
            let got = m.get(&key).cloned().or_else(|| match k {
                Value::Int(i) if *i >= 0 => m.get(&Key::Uint(*i as u64)).cloned(),
                Value::Uint(u) => i64::try_from(*u)
                    .ok()
                    .and_then(|i| m.get(&Key::Int(i)).cloned()),
                _ => None,
            });
            match got {
                Some(v) => Some(v),
                None if optional => None,
                None => {
                    return rt(format!(
                        "no such key: {}",
                        functions::to_string(k).unwrap_or_default()
                    ));
                }
            }
        }
        _ => return no_overload("_[_]", &[a, b]),
    };
    Ok(if optional {
        Value::Optional(found.map(Box::new))
    } else {
        found.unwrap_or(Value::Null)
    })
}

/// `a in b`.
pub(super) fn contains_in(cx: &mut Eval<'_>, a: &Value, b: &Value) -> Result<Value, EvalError> {
    match b {
        Value::List(l) => {
            cx.charge(l.len() as u64)?;
            Ok(Value::Bool(l.iter().any(|x| equals(x, a))))
        }
        Value::Map(m) => Ok(Value::Bool(
            Key::from_value(a).is_some_and(|k| m.contains_key(&k)),
        )),
        _ => no_overload("@in", &[a, b]),
    }
}

/// `<`, `<=`, `>`, `>=`.
pub(super) fn relation(op: &str, a: &Value, b: &Value) -> Result<Value, EvalError> {
    let Some(ord) = compare(a, b) else {
        if matches!((a, b), (Value::Double(x), _) if x.is_nan())
            || matches!((a, b), (_, Value::Double(y)) if y.is_nan())
        {
            return Ok(Value::Bool(false));
        }
        return no_overload(op, &[a, b]);
    };
    use std::cmp::Ordering::*;
    Ok(Value::Bool(match op {
        "_<_" => ord == Less,
        "_<=_" => ord != Greater,
        "_>_" => ord == Greater,
        _ => ord != Less,
    }))
}

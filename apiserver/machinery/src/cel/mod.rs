//! A Common Expression Language (CEL) implementation with Kubernetes' libraries, static cost
//! estimation and a runtime cost budget: shared by CRD `x-kubernetes-validations`,
//! ValidatingAdmissionPolicy and webhook `matchConditions`.
//!
//! [`Program::compile`] parses and checks an expression once (literal regexes compiled then);
//! [`Program::eval`] runs it against an [`Activation`] (variable bindings) with a cost limit,
//! so a hostile expression stops with [`EvalError::CostLimitExceeded`] instead of stalling.
//! [`Program::estimated_cost`] is the static worst case for declared variable types
//! ([`TypeDesc`]), compared against upstream's limits by the callers.
//!
//! Why not a crate: the maintained `cel` crate has no runtime cost accounting or static cost
//! estimation, which Kubernetes' semantics (and hostile-input rules) require.

mod authz;
mod cost;
mod eval;
mod functions;
mod k8s;
mod parser;
mod quantity;
mod typecheck;
mod value;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use authz::{Authorize, AuthzCheck, AuthzDecision, AuthzValue};
pub use cost::{MAX_SIZE, TypeDesc, estimate};
pub use parser::{Expr, MAX_EXPRESSION_LEN};
pub use quantity::Quantity;
pub use typecheck::{CelType, Issue, ObjectType, format_issues};
pub use value::{JsonHint, Key, Url, Value, equals};

/// Variable bindings for one evaluation.
#[derive(Debug, Default, Clone)]
pub struct Activation {
    vars: Vec<(String, Value)>,
}

impl Activation {
    /// An empty activation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `name` to `value` (a later binding of the same name wins).
    pub fn bind(&mut self, name: &str, value: Value) {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value));
    }

    /// The value bound to `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A compile error (syntax or check), with cel-go style text.
#[derive(Debug, thiserror::Error)]
#[error("compilation failed: ERROR: <input>:1:1: {0}")]
pub struct CompileError(pub String);

/// An evaluation error.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The runtime cost budget ran out.
    #[error("operation cancelled: actual cost limit exceeded")]
    CostLimitExceeded,
    /// Any other runtime error (no such key, overflow, bad argument...).
    #[error("{0}")]
    Runtime(String),
}

/// A compiled expression: parse tree, literal regexes, static cost.
#[derive(Debug)]
pub struct Program {
    source: String,
    expr: Expr,
    regexes: eval::RegexCache,
    estimated_cost: u64,
}

/// Functions and macros known to the environment (anything else is an undeclared reference).
const KNOWN_FUNCTIONS: &[&str] = &[
    "_==_",
    "_!=_",
    "_<_",
    "_<=_",
    "_>_",
    "_>=_",
    "_+_",
    "_-_",
    "_*_",
    "_/_",
    "_%_",
    "-_",
    "!_",
    "@in",
    "_[_]",
    "_[?_]",
    "_&&_",
    "_||_",
    "_?_:_",
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "dyn",
    "type",
    "duration",
    "timestamp",
    "matches",
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
    "contains",
    "startsWith",
    "endsWith",
    "find",
    "findAll",
    "lowerAscii",
    "upperAscii",
    "trim",
    "split",
    "replace",
    "substring",
    "charAt",
    "indexOf",
    "lastIndexOf",
    "join",
    "isSorted",
    "sum",
    "min",
    "max",
    "hasValue",
    "value",
    "orValue",
    "or",
    "getSeconds",
    "getMilliseconds",
    "getMinutes",
    "getHours",
    "quantity",
    "isQuantity",
    "ip",
    "isIP",
    "cidr",
    "isCIDR",
    "url",
    "isURL",
    "isGreaterThan",
    "isLessThan",
    "compareTo",
    "add",
    "sub",
    "asInteger",
    "isInteger",
    "asApproximateFloat",
    "sign",
    "family",
    "isUnspecified",
    "isLoopback",
    "isLinkLocalMulticast",
    "isLinkLocalUnicast",
    "isGlobalUnicast",
    "containsIP",
    "containsCIDR",
    "masked",
    "prefixLength",
    "getScheme",
    "getHost",
    "getHostname",
    "getPort",
    "getEscapedPath",
    "getQuery",
    "validate",
    // The `authorizer` library.
    "path",
    "group",
    "resource",
    "subresource",
    "namespace",
    "name",
    "fieldSelector",
    "labelSelector",
    "serviceAccount",
    "check",
    "allowed",
    "reason",
    "errored",
    "error",
];

const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

fn check(e: &Expr, declared: &mut Vec<String>) -> Result<(), String> {
    match e {
        Expr::Lit(_) => Ok(()),
        Expr::Ident(n) => {
            if declared.iter().any(|d| d == &**n) || TYPE_NAMES.contains(&&**n) {
                Ok(())
            } else {
                Err(format!("undeclared reference to '{n}' (in container '')"))
            }
        }
        Expr::Select { operand, .. } => check(operand, declared),
        Expr::List(items) => items.iter().try_for_each(|i| check(i, declared)),
        Expr::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            check(k, declared)?;
            check(v, declared)
        }),
        Expr::Comprehension {
            var,
            range,
            body,
            filter,
            ..
        } => {
            check(range, declared)?;
            declared.push(var.to_string());
            let r = check(body, declared)
                .and_then(|_| filter.as_ref().map_or(Ok(()), |f| check(f, declared)));
            declared.pop();
            r
        }
        Expr::Call {
            func, target, args, ..
        } => {
            if let Some(Expr::Ident(ns)) = target.as_deref()
                && (&**ns == "format" || (&**ns == "jsonpatch" && &**func == "escapeKey"))
                && !declared.iter().any(|d| d == &**ns)
            {
                return args.iter().try_for_each(|a| check(a, declared));
            }
            if &**func == "@object" {
                // Message construction: the root of the type name must be declared
                // (`Object`, `JSONPatch` in MutatingAdmissionPolicy mutations).
                let name = match args.first() {
                    Some(Expr::Lit(Value::String(n))) => n.to_string(),
                    _ => String::new(),
                };
                let root = name.split('.').next().unwrap_or("");
                if !declared.iter().any(|d| d == root) {
                    return Err(format!(
                        "undeclared reference to '{name}' (in container '')"
                    ));
                }
                return args.iter().skip(1).try_for_each(|a| check(a, declared));
            }
            if !KNOWN_FUNCTIONS.contains(&&**func) {
                return Err(format!(
                    "undeclared reference to '{func}' (in container '')"
                ));
            }
            if let Some(t) = target {
                check(t, declared)?;
            }
            args.iter().try_for_each(|a| check(a, declared))
        }
    }
}

fn collect_regexes(e: &Expr, out: &mut eval::RegexCache) -> Result<(), String> {
    match e {
        Expr::Call {
            func, target, args, ..
        } => {
            if matches!(&**func, "matches" | "find" | "findAll") {
                let lit = if target.is_some() {
                    args.first()
                } else {
                    args.get(1)
                };
                if let Some(Expr::Lit(Value::String(p))) = lit
                    && !out.contains_key(&**p)
                {
                    let re = k8s::compile_regex(p)?;
                    out.insert(p.to_string(), re);
                }
            }
            if let Some(t) = target {
                collect_regexes(t, out)?;
            }
            args.iter().try_for_each(|a| collect_regexes(a, out))
        }
        Expr::Select { operand, .. } => collect_regexes(operand, out),
        Expr::List(items) => items.iter().try_for_each(|a| collect_regexes(a, out)),
        Expr::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            collect_regexes(k, out)?;
            collect_regexes(v, out)
        }),
        Expr::Comprehension {
            range,
            body,
            filter,
            ..
        } => {
            collect_regexes(range, out)?;
            collect_regexes(body, out)?;
            filter.as_ref().map_or(Ok(()), |f| collect_regexes(f, out))
        }
        _ => Ok(()),
    }
}

impl Program {
    /// Parses and checks `source` with the declared variables and their types (for the
    /// static cost estimate).
    pub fn compile(source: &str, vars: &[(String, TypeDesc)]) -> Result<Program, CompileError> {
        let expr = parser::parse(source).map_err(CompileError)?;
        let mut declared: Vec<String> = vars.iter().map(|(n, _)| n.clone()).collect();
        check(&expr, &mut declared).map_err(CompileError)?;
        let mut regexes = HashMap::new();
        collect_regexes(&expr, &mut regexes).map_err(CompileError)?;
        let estimated_cost = cost::estimate(&expr, vars);
        Ok(Program {
            source: source.to_string(),
            expr,
            regexes,
            estimated_cost,
        })
    }

    /// Type-checks the expression against declared variable types (undeclared ones are
    /// `dyn`): the issues cel-go's checker would report, formatted as cel-go does (empty when
    /// the expression is well-typed).
    pub fn type_check(&self, vars: &[(String, CelType)]) -> (CelType, String) {
        let (t, issues) = typecheck::check(&self.expr, vars);
        (t, format_issues(&self.source, &issues))
    }

    /// The expression text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The static worst-case cost.
    pub fn estimated_cost(&self) -> u64 {
        self.estimated_cost
    }

    /// False when the expression certainly does not produce a `bool` (a literal, arithmetic,
    /// a list or map, a conversion): a rule must evaluate to a bool.
    pub fn may_be_bool(&self) -> bool {
        match &self.expr {
            Expr::Lit(v) => matches!(v, Value::Bool(_)),
            Expr::List(_) | Expr::Map(_) => false,
            Expr::Comprehension { kind, .. } => {
                !matches!(kind, parser::Macro::Map | parser::Macro::Filter)
            }
            Expr::Call { func, .. } => !matches!(
                &**func,
                "_+_"
                    | "_-_"
                    | "_*_"
                    | "_/_"
                    | "_%_"
                    | "-_"
                    | "size"
                    | "int"
                    | "uint"
                    | "double"
                    | "string"
                    | "bytes"
                    | "duration"
                    | "timestamp"
                    | "quantity"
                    | "ip"
                    | "cidr"
                    | "url"
                    | "split"
                    | "lowerAscii"
                    | "upperAscii"
                    | "trim"
                    | "replace"
                    | "substring"
                    | "join"
                    | "find"
                    | "findAll"
                    | "@object"
            ),
            _ => true,
        }
    }

    /// Whether the expression refers to variable `name`.
    pub fn references(&self, name: &str) -> bool {
        self.expr.references(name)
    }

    /// The fields the expression selects directly from variable `var` (`variables.x` → `x`).
    pub fn selected_fields(&self, var: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.expr.selected_fields(var, &mut out);
        out
    }

    /// Evaluates with at most `cost_limit` cost units; returns the value and the cost used.
    pub fn eval(&self, act: &Activation, cost_limit: u64) -> Result<(Value, u64), EvalError> {
        let mut ev = eval::Eval::new(act, cost_limit, &self.regexes);
        let v = ev.eval(&self.expr)?;
        Ok((v, ev.cost))
    }
}

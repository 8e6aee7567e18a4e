//! CEL in admission: webhook `matchConditions` and ValidatingAdmissionPolicy expressions
//! (upstream `k8s.io/apiserver/pkg/admission/plugin/cel`, `.../plugin/webhook/matchconditions`
//! and `.../plugin/policy/validating/validator.go`), compiled once per stored object and
//! evaluated per request against plain values: no IO here, the server builds the inputs.
//!
//! - [`compile`]: one expression in the admission environment (`object`, `oldObject`,
//!   `request`, `namespaceObject`, `params` when the policy has a `paramKind`, `variables`
//!   for policies, `authorizer`: the `authorizer` library answered by the server's
//!   authorizer chain through `cel::Authorize`).
//! - [`MatchConditions`]: every condition must be true; an error follows the failure policy
//!   (upstream's `matcher.Match`), with its own budget (`MATCH_CONDITIONS_BUDGET`).
//! - [`CompiledPolicy::validate`]: match conditions, then lazily evaluated `variables`,
//!   `validations` (message, `messageExpression`, `reason`) and `auditAnnotations`, under
//!   upstream's per-call limit and per-binding runtime budget.

pub mod mutating;
pub mod typecheck;
pub mod validation;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::cel::{Activation, EvalError, Key, Program, TypeDesc, Value};

/// Upstream `PerCallLimit`: the runtime cost of one expression evaluation.
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// Upstream `RuntimeCELCostBudget`: all expressions of one policy binding (and param).
pub const RUNTIME_BUDGET: u64 = 10_000_000;
/// Upstream `RuntimeCELCostBudgetMatchConditions`.
pub const MATCH_CONDITIONS_BUDGET: u64 = 2_500_000;
/// Most `matchConditions` one webhook or policy may have.
pub const MAX_MATCH_CONDITIONS: usize = 64;
/// Upstream `MaxEvaluatedMessageExpressionSizeBytes`.
pub const MAX_MESSAGE_EXPRESSION_SIZE: usize = 5 * 1024;
/// Upstream `maxAuditAnnotationValueLength`.
pub const MAX_AUDIT_ANNOTATION_VALUE: usize = 10 * 1024;

/// Upstream's message when the per-binding budget runs out.
pub const OUT_OF_BUDGET: &str =
    "validation failed due to running out of cost budget, no further validation rules will be run";

/// What an expression may refer to besides `object`, `oldObject`, `request` and
/// `namespaceObject`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Env<'a> {
    /// `params` is declared (the policy has a `paramKind`).
    pub params: bool,
    /// `variables` is declared with these fields (the variables defined before).
    pub variables: Option<&'a [String]>,
}

/// Compiles one expression; `Err` is upstream's detail text (`compilation failed: ...`,
/// `must evaluate to bool`).
pub fn compile(src: &str, env: Env<'_>, want_bool: bool) -> Result<Program, String> {
    compile_with_types(src, env, want_bool, &[])
}

/// [`compile`] with message types declared besides the variables (`Object`, `JSONPatch` for
/// MutatingAdmissionPolicy mutations).
pub fn compile_with_types(
    src: &str,
    env: Env<'_>,
    want_bool: bool,
    types: &[&str],
) -> Result<Program, String> {
    let mut vars: Vec<(String, TypeDesc)> = [
        "object",
        "oldObject",
        "request",
        "namespaceObject",
        "authorizer",
    ]
    .iter()
    .map(|v| (v.to_string(), TypeDesc::Dyn))
    .collect();
    if env.params {
        vars.push(("params".into(), TypeDesc::Dyn));
    }
    if env.variables.is_some() {
        vars.push(("variables".into(), TypeDesc::Dyn));
    }
    vars.extend(types.iter().map(|t| (t.to_string(), TypeDesc::Dyn)));
    let program = Program::compile(src, &vars).map_err(|e| e.to_string())?;
    if let Some(declared) = env.variables {
        for f in program.selected_fields("variables") {
            if !declared.contains(&f) {
                return Err(format!(
                    "compilation failed: ERROR: <input>:1:1: undefined field '{f}'"
                ));
            }
        }
    }
    if want_bool && !program.may_be_bool() {
        return Err("must evaluate to bool".into());
    }
    Ok(program)
}

/// One compiled expression (or its compile error, reported when it is evaluated) and the
/// indexes of the variables it needs, transitively, in definition order.
#[derive(Debug)]
pub struct Compiled {
    pub source: String,
    pub program: Result<Program, String>,
    needs: Vec<usize>,
}

impl Compiled {
    fn new(src: &str, env: Env<'_>, want_bool: bool, var_needs: &[Vec<usize>]) -> Compiled {
        Compiled::of(src, compile(src, env, want_bool), env, var_needs)
    }

    fn of(
        src: &str,
        program: Result<Program, String>,
        env: Env<'_>,
        var_needs: &[Vec<usize>],
    ) -> Compiled {
        let mut needs = Vec::new();
        if let (Ok(p), Some(names)) = (&program, env.variables) {
            for f in p.selected_fields("variables") {
                if let Some(i) = names.iter().position(|n| *n == f) {
                    needs.extend(var_needs.get(i).into_iter().flatten().copied());
                    needs.push(i);
                }
            }
            needs.sort_unstable();
            needs.dedup();
        }
        Compiled {
            source: src.to_string(),
            program,
            needs,
        }
    }
}

/// The values an evaluation sees.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The object (null for DELETE).
    pub object: Value,
    /// The stored object (null for CREATE).
    pub old_object: Value,
    /// The AdmissionRequest fields (`kind`, `resource`, `userInfo`, `operation`, ...).
    pub request: Value,
    /// The namespace (null for cluster-scoped requests), reduced as upstream's
    /// `CreateNamespaceObject`.
    pub namespace_object: Value,
    /// The param object (null when the binding has none).
    pub params: Value,
    /// The `authorizer` library's root (null: checks are errors).
    pub authorizer: Value,
}

impl Inputs {
    /// From JSON values.
    pub fn from_json(
        object: Option<&Json>,
        old: Option<&Json>,
        request: &Json,
        namespace: Option<&Json>,
        params: Option<&Json>,
    ) -> Inputs {
        let conv = |v: Option<&Json>| v.map(Value::from_json).unwrap_or(Value::Null);
        Inputs {
            object: conv(object),
            old_object: conv(old),
            request: Value::from_json(request),
            namespace_object: namespace
                .map(|n| Value::from_json(&namespace_object(n)))
                .unwrap_or(Value::Null),
            params: conv(params),
            authorizer: Value::Null,
        }
    }

    fn activation(&self) -> Activation {
        let mut act = Activation::new();
        act.bind("object", self.object.clone());
        act.bind("oldObject", self.old_object.clone());
        act.bind("request", self.request.clone());
        act.bind("namespaceObject", self.namespace_object.clone());
        act.bind("params", self.params.clone());
        act.bind("authorizer", self.authorizer.clone());
        act
    }
}

/// Upstream `CreateNamespaceObject`: the fields of a Namespace expressions may see.
pub fn namespace_object(ns: &Json) -> Json {
    let mut out = serde_json::Map::new();
    if let Some(meta) = ns.get("metadata").and_then(Json::as_object) {
        let keep = [
            "name",
            "generateName",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "finalizers",
        ];
        let m: serde_json::Map<String, Json> = meta
            .iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.insert("metadata".into(), Json::Object(m));
    }
    for k in ["spec", "status"] {
        if let Some(v) = ns.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    Json::Object(out)
}

/// The outcome of one expression.
enum Outcome {
    Value(Value),
    /// An evaluation (or compile) error, with upstream's text.
    Error(String),
}

/// Out of the runtime budget.
struct OutOfBudget;

/// Evaluation state of one (policy, binding, param): the activation and the lazily computed
/// variables.
struct Run<'p> {
    act: Activation,
    vars: &'p [(String, Compiled)],
    computed: Vec<Option<Result<Value, String>>>,
}

impl<'p> Run<'p> {
    fn new(inputs: &Inputs, vars: &'p [(String, Compiled)]) -> Self {
        Run {
            act: inputs.activation(),
            vars,
            computed: vars.iter().map(|_| None).collect(),
        }
    }

    fn bind_variables(&mut self) {
        let m: BTreeMap<Key, Value> = self
            .vars
            .iter()
            .zip(&self.computed)
            .filter_map(|((n, _), c)| match c {
                Some(Ok(v)) => Some((Key::String(n.as_str().into()), v.clone())),
                _ => None,
            })
            .collect();
        self.act.bind("variables", Value::Map(Arc::new(m)));
    }

    /// Evaluates `c` (first the variables it needs), charging `budget`.
    fn eval(&mut self, c: &Compiled, budget: &mut u64) -> Result<Outcome, OutOfBudget> {
        if let Err(e) = &c.program {
            return Ok(Outcome::Error(format!("compilation error: {e}")));
        }
        let mut failed_var = None;
        for &i in &c.needs {
            if self.computed[i].is_none() {
                self.bind_variables();
                let (name, vc) = &self.vars[i];
                let r = match self.eval_program(vc, budget)? {
                    Outcome::Value(v) => Ok(v),
                    Outcome::Error(e) => Err(format!(
                        "composited variable \"{name}\" fails to evaluate: {e}"
                    )),
                };
                self.computed[i] = Some(r);
            }
            if let Some(Err(e)) = &self.computed[i] {
                failed_var.get_or_insert_with(|| e.clone());
            }
        }
        if !c.needs.is_empty() {
            self.bind_variables();
        }
        Ok(match self.eval_program(c, budget)? {
            Outcome::Error(e) => match failed_var {
                Some(v) => {
                    Outcome::Error(format!("expression '{}' resulted in error: {v}", c.source))
                }
                None => Outcome::Error(e),
            },
            ok => ok,
        })
    }

    fn eval_program(&self, c: &Compiled, budget: &mut u64) -> Result<Outcome, OutOfBudget> {
        let program = match &c.program {
            Ok(p) => p,
            Err(e) => return Ok(Outcome::Error(format!("compilation error: {e}"))),
        };
        let limit = PER_CALL_LIMIT.min(*budget);
        match program.eval(&self.act, limit) {
            Ok((v, cost)) => {
                if cost > *budget {
                    return Err(OutOfBudget);
                }
                *budget -= cost;
                Ok(Outcome::Value(v))
            }
            Err(EvalError::CostLimitExceeded) if *budget < PER_CALL_LIMIT => Err(OutOfBudget),
            Err(e) => Ok(Outcome::Error(format!(
                "expression '{}' resulted in error: {e}",
                c.source
            ))),
        }
    }
}

/// `failurePolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

impl FailurePolicy {
    /// From the field's value (`Fail` when absent, as defaulted).
    pub fn parse(v: Option<&Json>) -> FailurePolicy {
        if v.and_then(Json::as_str) == Some("Ignore") {
            FailurePolicy::Ignore
        } else {
            FailurePolicy::Fail
        }
    }
}

/// The result of `matchConditions`.
#[derive(Debug, PartialEq, Eq)]
pub enum MatchResult {
    /// Every condition is true (or there are none).
    Matches,
    /// A condition is false (its name), or errors were ignored.
    NoMatch(Option<String>),
    /// Errors under failurePolicy Fail (upstream's aggregate text).
    Error(String),
}

/// Compiled `matchConditions`.
#[derive(Debug, Default)]
pub struct MatchConditions {
    conditions: Vec<(String, Compiled)>,
}

impl MatchConditions {
    /// Compiles `matchConditions` (`[{name, expression}]`).
    pub fn compile(list: Option<&Json>, params: bool) -> MatchConditions {
        let env = Env {
            params,
            variables: None,
        };
        let conditions = list
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .take(MAX_MATCH_CONDITIONS)
            .map(|c| {
                let s = |k: &str| c.get(k).and_then(Json::as_str).unwrap_or("");
                (
                    s("name").to_string(),
                    Compiled::new(s("expression").trim(), env, true, &[]),
                )
            })
            .collect();
        MatchConditions { conditions }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Upstream `matcher.Match`: any false → no match; else errors follow `fp`.
    pub fn evaluate(&self, inputs: &Inputs, fp: FailurePolicy) -> MatchResult {
        let mut run = Run::new(inputs, &[]);
        self.run(&mut run, fp)
    }

    fn run(&self, run: &mut Run<'_>, fp: FailurePolicy) -> MatchResult {
        if self.conditions.is_empty() {
            return MatchResult::Matches;
        }
        let mut budget = MATCH_CONDITIONS_BUDGET;
        let mut errors = Vec::new();
        for (name, c) in &self.conditions {
            match run.eval(c, &mut budget) {
                Err(OutOfBudget) => {
                    return match fp {
                        FailurePolicy::Fail => MatchResult::Error(OUT_OF_BUDGET.into()),
                        FailurePolicy::Ignore => MatchResult::NoMatch(None),
                    };
                }
                Ok(Outcome::Value(Value::Bool(true))) => {}
                Ok(Outcome::Value(Value::Bool(false))) => {
                    return MatchResult::NoMatch(Some(name.clone()));
                }
                Ok(Outcome::Value(v)) => errors.push(format!(
                    "expression '{}' resulted in error: no such overload: expected bool, got {}",
                    c.source,
                    v.type_name()
                )),
                Ok(Outcome::Error(e)) => errors.push(e),
            }
        }
        if errors.is_empty() {
            return MatchResult::Matches;
        }
        match fp {
            FailurePolicy::Ignore => MatchResult::NoMatch(None),
            FailurePolicy::Fail => MatchResult::Error(aggregate(&errors)),
        }
    }
}

/// `utilerrors.NewAggregate(...).Error()`: one message alone, several as `[a, b]`.
fn aggregate(errors: &[String]) -> String {
    if errors.len() == 1 {
        errors[0].clone()
    } else {
        format!("[{}]", errors.join(", "))
    }
}

/// One compiled `validations[]` entry.
#[derive(Debug)]
struct Validation {
    expr: Compiled,
    message: Option<String>,
    message_expression: Option<Compiled>,
    reason: Option<String>,
}

/// A ValidatingAdmissionPolicy's spec, compiled.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub failure_policy: FailurePolicy,
    pub match_conditions: MatchConditions,
    variables: Vec<(String, Compiled)>,
    validations: Vec<Validation>,
    audit_annotations: Vec<(String, Compiled)>,
    /// Compile errors, as `(field path, expression, detail)` (for status and logs).
    pub errors: Vec<(String, String, String)>,
}

/// A failed validation (or an error under failurePolicy Fail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub message: String,
    /// `Forbidden`, `Invalid`, `RequestEntityTooLarge`, `Unauthorized`; `None` → `Invalid`.
    pub reason: Option<String>,
    /// The index of the validation (for the audit annotation).
    pub index: usize,
}

/// What one (policy, binding, param) evaluation decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub denials: Vec<Denial>,
    /// `auditAnnotations` to publish (key, value).
    pub audit_annotations: Vec<(String, String)>,
}

/// A compile error: `(field path, expression, detail)`.
pub(crate) type CompileError = (String, String, String);

/// Compiles a policy's `spec.variables` in order (each may use the ones before it): their
/// names, what each needs, and the compiled expressions; errors are pushed to `errors`.
/// Shared by validating and mutating policies.
#[allow(clippy::type_complexity)]
pub(crate) fn compile_variables(
    spec: &Json,
    params: bool,
    errors: &mut Vec<CompileError>,
) -> (Vec<String>, Vec<Vec<usize>>, Vec<(String, Compiled)>) {
    let s = |v: &Json, k: &str| v.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    let mut names: Vec<String> = Vec::new();
    let mut needs: Vec<Vec<usize>> = Vec::new();
    let mut variables = Vec::new();
    let list = spec.get("variables").and_then(Json::as_array);
    for (i, v) in list.into_iter().flatten().enumerate() {
        let env = Env {
            params,
            variables: Some(&names),
        };
        let c = Compiled::new(&s(v, "expression"), env, false, &needs);
        if let Err(e) = &c.program {
            errors.push((
                format!("spec.variables[{i}].expression"),
                c.source.clone(),
                e.clone(),
            ));
        }
        needs.push(c.needs.clone());
        names.push(s(v, "name"));
        variables.push((s(v, "name"), c));
    }
    (names, needs, variables)
}

impl CompiledPolicy {
    /// Compiles a ValidatingAdmissionPolicy `spec`.
    pub fn compile(spec: &Json) -> CompiledPolicy {
        let params = spec.get("paramKind").is_some_and(|p| !p.is_null());
        let mut errors = Vec::new();
        let (names, needs, variables) = compile_variables(spec, params, &mut errors);
        let items = |k: &str| {
            spec.get(k)
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let s = |v: &Json, k: &str| v.get(k).and_then(Json::as_str).unwrap_or("").to_string();
        let env = Env {
            params,
            variables: Some(&names),
        };
        let mut validations = Vec::new();
        for (i, v) in items("validations").iter().enumerate() {
            let expr = Compiled::new(&s(v, "expression"), env, true, &needs);
            if let Err(e) = &expr.program {
                errors.push((
                    format!("spec.validations[{i}].expression"),
                    expr.source.clone(),
                    e.clone(),
                ));
            }
            let me = s(v, "messageExpression");
            let message_expression = (!me.trim().is_empty()).then(|| {
                let c = Compiled::new(&me, env, false, &needs);
                if let Err(e) = &c.program {
                    errors.push((
                        format!("spec.validations[{i}].messageExpression"),
                        me.clone(),
                        e.clone(),
                    ));
                }
                c
            });
            let msg = s(v, "message");
            validations.push(Validation {
                expr,
                message: (!msg.trim().is_empty()).then(|| msg.trim().to_string()),
                message_expression,
                reason: v.get("reason").and_then(Json::as_str).map(str::to_string),
            });
        }
        let mut audit_annotations = Vec::new();
        for (i, a) in items("auditAnnotations").iter().enumerate() {
            let c = Compiled::new(s(a, "valueExpression").trim(), env, false, &needs);
            if let Err(e) = &c.program {
                errors.push((
                    format!("spec.auditAnnotations[{i}].valueExpression"),
                    c.source.clone(),
                    e.clone(),
                ));
            }
            audit_annotations.push((s(a, "key"), c));
        }
        let match_conditions = MatchConditions::compile(spec.get("matchConditions"), params);
        for (i, (_, c)) in match_conditions.conditions.iter().enumerate() {
            if let Err(e) = &c.program {
                errors.push((
                    format!("spec.matchConditions[{i}].expression"),
                    c.source.clone(),
                    e.clone(),
                ));
            }
        }
        CompiledPolicy {
            failure_policy: FailurePolicy::parse(spec.get("failurePolicy")),
            match_conditions,
            variables,
            validations,
            audit_annotations,
            errors,
        }
    }

    /// Whether any expression refers to `namespaceObject` (the caller may skip reading the
    /// namespace otherwise).
    pub fn uses_namespace(&self) -> bool {
        let uses = |c: &Compiled| {
            c.program
                .as_ref()
                .is_ok_and(|p| p.references("namespaceObject"))
        };
        self.match_conditions
            .conditions
            .iter()
            .any(|(_, c)| uses(c))
            || self.variables.iter().any(|(_, c)| uses(c))
            || self
                .validations
                .iter()
                .any(|v| uses(&v.expr) || v.message_expression.as_ref().is_some_and(uses))
            || self.audit_annotations.iter().any(|(_, c)| uses(c))
    }

    /// Upstream `validator.Validate` for one binding and param.
    pub fn validate(&self, inputs: &Inputs) -> Verdict {
        let fp = self.failure_policy;
        let on_error = |message: String| Verdict {
            denials: match fp {
                FailurePolicy::Fail => vec![Denial {
                    message,
                    reason: None,
                    index: 0,
                }],
                FailurePolicy::Ignore => Vec::new(),
            },
            audit_annotations: Vec::new(),
        };
        let mut run = Run::new(inputs, &self.variables);
        match self.match_conditions.run(&mut run, fp) {
            MatchResult::Matches => {}
            MatchResult::NoMatch(_) => return Verdict::default(),
            MatchResult::Error(e) => return on_error(e),
        }
        let mut budget = RUNTIME_BUDGET;
        let mut verdict = Verdict::default();
        let mut failed = Vec::new();
        for (i, v) in self.validations.iter().enumerate() {
            match run.eval(&v.expr, &mut budget) {
                Err(OutOfBudget) => return on_error(OUT_OF_BUDGET.into()),
                Ok(Outcome::Value(Value::Bool(true))) => {}
                Ok(Outcome::Error(e)) => {
                    if fp == FailurePolicy::Fail {
                        verdict.denials.push(Denial {
                            message: e,
                            reason: None,
                            index: i,
                        });
                    }
                }
                Ok(Outcome::Value(_)) => failed.push(i),
            }
        }
        for i in failed {
            let v = &self.validations[i];
            let mut message = None;
            if let Some(me) = &v.message_expression {
                match run.eval(me, &mut budget) {
                    Err(OutOfBudget) => {
                        if fp == FailurePolicy::Fail {
                            verdict.denials.push(Denial {
                                message: format!("failed messageExpression: {OUT_OF_BUDGET}"),
                                reason: None,
                                index: i,
                            });
                        }
                        continue;
                    }
                    Ok(Outcome::Value(Value::String(s))) => {
                        let t = s.trim();
                        if !t.is_empty()
                            && t.len() <= MAX_MESSAGE_EXPRESSION_SIZE
                            && !t.contains('\n')
                        {
                            message = Some(t.to_string());
                        }
                    }
                    Ok(_) => {}
                }
            }
            let message = message
                .or_else(|| v.message.clone())
                .unwrap_or_else(|| format!("failed expression: {}", v.expr.source.trim()));
            verdict.denials.push(Denial {
                message,
                reason: Some(v.reason.clone().unwrap_or_else(|| "Invalid".into())),
                index: i,
            });
        }
        let mut budget = RUNTIME_BUDGET;
        for (key, c) in &self.audit_annotations {
            match run.eval(c, &mut budget) {
                Err(OutOfBudget) => return on_error(OUT_OF_BUDGET.into()),
                Ok(Outcome::Value(Value::String(s))) => {
                    let t = s.trim();
                    if !t.is_empty() {
                        let t = crate::limits::truncate_str(t, MAX_AUDIT_ANNOTATION_VALUE);
                        verdict.audit_annotations.push((key.clone(), t.to_string()));
                    }
                }
                Ok(Outcome::Value(Value::Null)) => {}
                Ok(Outcome::Value(v)) => {
                    if fp == FailurePolicy::Fail {
                        verdict.denials.push(Denial {
                            message: format!(
                                "valueExpression '{}' resulted in unsupported return type: {}. Return type must be either string or null.",
                                c.source,
                                v.type_name()
                            ),
                            reason: None,
                            index: 0,
                        });
                    }
                }
                Ok(Outcome::Error(e)) => {
                    if fp == FailurePolicy::Fail {
                        verdict.denials.push(Denial {
                            message: e,
                            reason: None,
                            index: 0,
                        });
                    }
                }
            }
        }
        verdict
    }
}

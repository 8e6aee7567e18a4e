//! Kubernetes' CEL `authorizer` library (upstream `k8s.io/apiserver/pkg/cel/library/authz.go`),
//! for admission policies and webhook `matchConditions`:
//!
//! `authorizer.group('apps').resource('deployments').subresource('scale')
//!  .namespace('ns').name('n').check('update').allowed()`,
//! `authorizer.path('/healthz').check('get')`, `authorizer.serviceAccount(ns, name)` (the same
//! checks for that service account), `authorizer.requestResource` (the request's own resource),
//! and on a decision `allowed()`, `reason()`, `errored()`, `error()`.
//!
//! The checks are answered by the server's authorizer chain through [`Authorize`]; each
//! `check()` costs upstream's fixed 350,000 (two checks per expression within the per-call
//! limit).

use std::fmt;
use std::sync::Arc;

use super::EvalError;
use super::value::Value;

/// Upstream's fixed cost of one authorization check.
pub const CHECK_COST: u64 = 350_000;

/// One authorization question.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthzCheck {
    /// `serviceAccount(ns, name)`: ask for that service account instead of the requester.
    pub service_account: Option<(String, String)>,
    pub verb: String,
    /// A non-resource path (`path()` checks).
    pub path: Option<String>,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub field_selector: String,
    pub label_selector: String,
}

/// The answer (upstream `authorizer.Decision` plus reason and error).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthzDecision {
    pub allowed: bool,
    /// `allow`, `deny` or `noOpinion` (what `reason()` does not say).
    pub decision: String,
    pub reason: String,
    pub error: Option<String>,
}

/// Answers checks (the server's authorizer chain for the requesting user).
pub trait Authorize: Send + Sync {
    /// Decides `check`.
    fn check(&self, check: &AuthzCheck) -> AuthzDecision;
}

/// What an `authorizer` value stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `authorizer` (or `authorizer.serviceAccount(..)`).
    Root,
    /// `.path(p)`.
    Path(String),
    /// `.group(g)`.
    Group(String),
    /// `.group(g).resource(r)...`: the check being built.
    Resource(Box<AuthzCheck>),
}

/// A value of the library: an authorizer, a check being built, or a decision.
#[derive(Clone)]
pub enum AuthzValue {
    Check {
        callback: Arc<dyn Authorize>,
        service_account: Option<(String, String)>,
        target: Target,
        /// The request's own resource (`authorizer.requestResource`).
        request: Option<Arc<AuthzCheck>>,
    },
    Decision(Box<AuthzDecision>),
}

impl fmt::Debug for AuthzValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthzValue::Check { target, .. } => write!(f, "Authorizer({target:?})"),
            AuthzValue::Decision(d) => write!(f, "Decision({d:?})"),
        }
    }
}

impl AuthzValue {
    /// The `authorizer` variable: checks answered by `callback`; `request` is the request's
    /// resource (group, resource, subresource, namespace, name) for `requestResource`.
    pub fn root(callback: Arc<dyn Authorize>, request: Option<AuthzCheck>) -> Value {
        Value::Authz(Arc::new(AuthzValue::Check {
            callback,
            service_account: None,
            target: Target::Root,
            request: request.map(Arc::new),
        }))
    }

    /// The CEL type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            AuthzValue::Check { target, .. } => match target {
                Target::Root => "kubernetes.authorization.Authorizer",
                Target::Path(_) => "kubernetes.authorization.PathCheck",
                Target::Group(_) => "kubernetes.authorization.GroupCheck",
                Target::Resource(_) => "kubernetes.authorization.ResourceCheck",
            },
            AuthzValue::Decision(_) => "kubernetes.authorization.Decision",
        }
    }
}

fn no_overload(f: &str, v: &AuthzValue) -> EvalError {
    EvalError::Runtime(format!("no such overload: {}.{f}", v.type_name()))
}

fn str_arg<'a>(args: &'a [Value], i: usize, f: &str) -> Result<&'a str, EvalError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(EvalError::Runtime(format!(
            "no such overload: {f}({})",
            other.type_name()
        ))),
        None => Err(EvalError::Runtime(format!("no such overload: {f}"))),
    }
}

/// `authorizer.requestResource`.
pub fn select(v: &AuthzValue, field: &str) -> Result<Value, EvalError> {
    match (v, field) {
        (
            AuthzValue::Check {
                callback,
                service_account,
                target: Target::Root,
                request,
            },
            "requestResource",
        ) => match request {
            Some(r) => Ok(Value::Authz(Arc::new(AuthzValue::Check {
                callback: callback.clone(),
                service_account: service_account.clone(),
                target: Target::Resource(Box::new((**r).clone())),
                request: None,
            }))),
            None => Err(EvalError::Runtime(
                "no such key: requestResource (not a resource request)".into(),
            )),
        },
        _ => Err(EvalError::Runtime(format!("no such key: {field}"))),
    }
}

/// A member function of the library; `charge` adds to the evaluation's cost.
pub fn member(
    v: &AuthzValue,
    f: &str,
    args: &[Value],
    charge: &mut dyn FnMut(u64) -> Result<(), EvalError>,
) -> Result<Value, EvalError> {
    let wrap = |x: AuthzValue| Ok(Value::Authz(Arc::new(x)));
    match v {
        AuthzValue::Decision(d) => match (f, args.len()) {
            ("allowed", 0) => Ok(Value::Bool(d.allowed)),
            ("reason", 0) => Ok(Value::String(d.reason.as_str().into())),
            ("errored", 0) => Ok(Value::Bool(d.error.is_some())),
            ("error", 0) => Ok(Value::String(d.error.clone().unwrap_or_default().into())),
            _ => Err(no_overload(f, v)),
        },
        AuthzValue::Check {
            callback,
            service_account,
            target,
            request,
        } => {
            let next = |t: Target, sa: Option<(String, String)>| AuthzValue::Check {
                callback: callback.clone(),
                service_account: sa,
                target: t,
                request: request.clone(),
            };
            match (target, f) {
                (Target::Root, "serviceAccount") => {
                    let ns = str_arg(args, 0, f)?;
                    let name = str_arg(args, 1, f)?;
                    wrap(next(Target::Root, Some((ns.into(), name.into()))))
                }
                (Target::Root, "path") => wrap(next(
                    Target::Path(str_arg(args, 0, f)?.into()),
                    service_account.clone(),
                )),
                (Target::Root, "group") => wrap(next(
                    Target::Group(str_arg(args, 0, f)?.into()),
                    service_account.clone(),
                )),
                (Target::Group(g), "resource") => wrap(next(
                    Target::Resource(Box::new(AuthzCheck {
                        group: g.clone(),
                        resource: str_arg(args, 0, f)?.into(),
                        ..AuthzCheck::default()
                    })),
                    service_account.clone(),
                )),
                (
                    Target::Resource(c),
                    "subresource" | "namespace" | "name" | "fieldSelector" | "labelSelector",
                ) => {
                    let x = str_arg(args, 0, f)?.to_string();
                    let mut c = c.clone();
                    match f {
                        "subresource" => c.subresource = x,
                        "namespace" => c.namespace = x,
                        "name" => c.name = x,
                        "fieldSelector" => c.field_selector = x,
                        _ => c.label_selector = x,
                    }
                    wrap(next(Target::Resource(c), service_account.clone()))
                }
                (Target::Path(_) | Target::Resource(_), "check") => {
                    charge(CHECK_COST)?;
                    let verb = str_arg(args, 0, f)?;
                    let mut c = match target {
                        Target::Resource(c) => (**c).clone(),
                        Target::Path(p) => AuthzCheck {
                            path: Some(p.clone()),
                            ..AuthzCheck::default()
                        },
                        _ => AuthzCheck::default(),
                    };
                    c.verb = verb.to_string();
                    c.service_account = service_account.clone();
                    wrap(AuthzValue::Decision(Box::new(callback.check(&c))))
                }
                _ => Err(no_overload(f, v)),
            }
        }
    }
}

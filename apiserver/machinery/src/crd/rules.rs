//! `x-kubernetes-validations`: compiling rules on the CRD (upstream
//! `apiextensions/validation.go` rule checks and `schema/cel/compilation.go`) and running them
//! on custom resources (`schema/cel/validation.go`), with `self`/`oldSelf`, transition rules,
//! `optionalOldSelf`, `messageExpression`, `reason`, `fieldPath`, upstream's cost limits and
//! ratcheting (an unchanged value is not re-checked).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::FieldError;
use super::limits::{PER_CALL_COST_LIMIT, RUNTIME_CEL_COST_BUDGET, STATIC_ESTIMATED_COST_LIMIT};
use super::schema::{ListType, Rule, SchemaNode, SchemaType};
use super::structural::{Ctx, min_json_size};
use crate::cel::{self, Activation, EvalError, JsonHint, Program, TypeDesc};
use crate::validation::{FieldErrorType, Path};

const SUPPORTED_REASONS: &[&str] = &[
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

/// Upstream `MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_EXPRESSION_SIZE: usize = 5 * 1024;

/// Upstream `getCostErrorMessage`.
pub(super) fn cost_error_message(name: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let f = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{name} exceeds budget by factor of {f} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

impl JsonHint for SchemaNode {
    fn field(&self, name: &str) -> Option<&Self> {
        SchemaNode::field(self, name)
    }
    fn items(&self) -> Option<&Self> {
        self.items.as_deref()
    }
    fn is_number(&self) -> bool {
        self.type_ == Some(SchemaType::Number)
    }
    fn format(&self) -> Option<&str> {
        self.validation.format.as_deref()
    }
}

/// The declared CEL type of a schema node, with its size bounds.
fn type_desc(node: &SchemaNode, root: bool, depth: usize) -> TypeDesc {
    if depth > super::limits::MAX_SCHEMA_DEPTH || node.int_or_string {
        return TypeDesc::Dyn;
    }
    match node.ty() {
        SchemaType::String => TypeDesc::String {
            max_len: node
                .validation
                .max_length
                .map(|m| m.saturating_mul(4))
                .unwrap_or(cel::MAX_SIZE),
        },
        SchemaType::Array => {
            let elem = node
                .items
                .as_deref()
                .map(|i| type_desc(i, false, depth + 1))
                .unwrap_or(TypeDesc::Dyn);
            let min = node.items.as_deref().map(min_json_size).unwrap_or(1);
            TypeDesc::List {
                elem: Arc::new(elem),
                max_items: node
                    .validation
                    .max_items
                    .unwrap_or(cel::MAX_SIZE / (min + 1)),
            }
        }
        SchemaType::Object => {
            if let Some(ap) = node.additional_properties.as_deref() {
                return TypeDesc::Map {
                    value: Arc::new(type_desc(ap, false, depth + 1)),
                    max_props: node
                        .validation
                        .max_properties
                        .unwrap_or(cel::MAX_SIZE / (min_json_size(ap) + 4)),
                };
            }
            if node.properties.is_empty() && !root {
                return TypeDesc::Dyn;
            }
            let mut fields: BTreeMap<String, TypeDesc> = node
                .properties
                .iter()
                .map(|(k, p)| (k.clone(), type_desc(p, false, depth + 1)))
                .collect();
            if root || node.embedded_resource {
                let s = || TypeDesc::String { max_len: 253 };
                fields.entry("apiVersion".into()).or_insert_with(s);
                fields.entry("kind".into()).or_insert_with(s);
                let meta: BTreeMap<String, TypeDesc> =
                    [("name".to_string(), s()), ("generateName".to_string(), s())].into();
                fields.insert(
                    "metadata".into(),
                    TypeDesc::Object {
                        fields: Arc::new(meta),
                    },
                );
            }
            TypeDesc::Object {
                fields: Arc::new(fields),
            }
        }
        SchemaType::Untyped => TypeDesc::Dyn,
        _ => TypeDesc::Scalar,
    }
}

fn rule_str<'a>(r: &'a serde_json::Map<String, Value>, k: &str) -> Option<&'a str> {
    r.get(k).and_then(Value::as_str)
}

/// Compiles a node's rules, recording errors and costs in `cx`.
pub(super) fn compile_rules(
    node: &SchemaNode,
    raw: &Value,
    path: &Path,
    cardinality: u64,
    forbid_old_self: Option<&str>,
    root: bool,
    cx: &mut Ctx,
) -> Vec<Rule> {
    let mut out = Vec::new();
    let Some(list) = raw.as_array() else {
        cx.errs.push(FieldError::invalid(
            path.child("x-kubernetes-validations"),
            raw.clone(),
            "must be a list",
        ));
        return out;
    };
    let td = type_desc(node, root, 0);
    let vars = vec![
        ("self".to_string(), td.clone()),
        ("oldSelf".to_string(), td),
    ];
    for (i, r) in list.iter().enumerate() {
        let rp = path.child("x-kubernetes-validations").index(i);
        let Some(rm) = r.as_object() else {
            cx.errs
                .push(FieldError::invalid(&rp, r.clone(), "must be an object"));
            continue;
        };
        let rule = rule_str(rm, "rule").unwrap_or_default();
        let message = rule_str(rm, "message").unwrap_or_default();
        let msg_expr = rule_str(rm, "messageExpression").unwrap_or_default();
        let before = cx.errs.len();
        let has_nl = |s: &str| s.contains('\n') || s.contains('\r');
        if rule.trim().is_empty() {
            cx.errs.push(FieldError::required(
                rp.child("rule"),
                "rule is not specified",
            ));
        } else if !message.is_empty() && message.trim().is_empty() {
            cx.errs.push(FieldError::invalid(
                rp.child("message"),
                message,
                "message must be non-empty if specified",
            ));
        } else if has_nl(message.trim()) {
            cx.errs.push(FieldError::invalid(
                rp.child("message"),
                message,
                "message must not contain line breaks",
            ));
        } else if has_nl(rule.trim()) && message.trim().is_empty() {
            cx.errs.push(FieldError::required(
                rp.child("message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        if !msg_expr.is_empty() && msg_expr.trim().is_empty() {
            cx.errs.push(FieldError::required(
                rp.child("messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        let reason = rule_str(rm, "reason");
        if let Some(reason) = reason
            && !SUPPORTED_REASONS.contains(&reason)
        {
            cx.errs.push(FieldError::not_supported(
                rp.child("reason"),
                reason,
                SUPPORTED_REASONS,
            ));
        }
        let field_path = rule_str(rm, "fieldPath").filter(|f| !f.is_empty());
        if let Some(fp) = field_path {
            if fp.trim().is_empty() {
                cx.errs.push(FieldError::invalid(
                    rp.child("fieldPath"),
                    fp,
                    "fieldPath must be non-empty if specified",
                ));
            } else if has_nl(fp) {
                cx.errs.push(FieldError::invalid(
                    rp.child("fieldPath"),
                    fp,
                    "fieldPath must not contain line breaks",
                ));
            } else if parse_field_path(fp).is_none_or(|segs| !field_path_valid(node, &segs)) {
                cx.errs.push(FieldError::invalid(
                    rp.child("fieldPath"),
                    fp,
                    "fieldPath must be a valid path",
                ));
            }
        }
        if cx.errs.len() != before {
            continue;
        }
        let program = match Program::compile(rule.trim(), &vars) {
            Ok(p) => p,
            Err(e) => {
                cx.errs.push(FieldError::invalid(
                    rp.child("rule"),
                    r.clone(),
                    &e.to_string(),
                ));
                continue;
            }
        };
        let cost = program.estimated_cost().saturating_mul(cardinality);
        if cost > STATIC_ESTIMATED_COST_LIMIT {
            cx.errs.push(FieldError::forbidden(
                rp.child("rule"),
                &cost_error_message("estimated rule cost", cost, STATIC_ESTIMATED_COST_LIMIT),
            ));
        }
        cx.total_cost = cx.total_cost.saturating_add(cost);
        cx.expensive.push((rp.child("rule").to_string(), cost));
        let uses_old_self = program.references("oldSelf");
        let optional_old_self = rm.get("optionalOldSelf").and_then(Value::as_bool);
        if uses_old_self {
            if let Some(p) = forbid_old_self {
                cx.errs.push(FieldError::invalid(
                    rp.child("rule"),
                    rule,
                    &format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {p}"),
                ));
            }
        } else if let Some(o) = optional_old_self {
            cx.errs.push(FieldError::invalid(
                rp.child("optionalOldSelf"),
                o,
                "may not be set if oldSelf is not used in rule",
            ));
        }
        let message_expression = if msg_expr.trim().is_empty() {
            None
        } else {
            match Program::compile(msg_expr.trim(), &vars) {
                Ok(p) => {
                    let mc = p.estimated_cost().saturating_mul(cardinality);
                    if mc > STATIC_ESTIMATED_COST_LIMIT {
                        cx.errs.push(FieldError::forbidden(
                            rp.child("messageExpression"),
                            &cost_error_message(
                                "estimated messageExpression cost",
                                mc,
                                STATIC_ESTIMATED_COST_LIMIT,
                            ),
                        ));
                    }
                    cx.total_cost = cx.total_cost.saturating_add(mc);
                    Some(Arc::new(p))
                }
                Err(e) => {
                    cx.errs.push(FieldError::invalid(
                        rp.child("messageExpression"),
                        r.clone(),
                        &e.to_string(),
                    ));
                    None
                }
            }
        };
        out.push(Rule {
            rule: rule.trim().to_string(),
            program: Arc::new(program),
            message: Some(message.trim().to_string()).filter(|m| !m.is_empty()),
            message_expression,
            reason: reason.map(str::to_string),
            field_path: field_path.map(str::to_string),
            uses_old_self,
            optional_old_self: optional_old_self.unwrap_or(false),
            estimated_cost: cost,
        });
    }
    out
}

/// `.a.b['c.d'][0]` → segments (`None` when malformed).
fn parse_field_path(fp: &str) -> Option<Vec<String>> {
    let mut segs = Vec::new();
    let mut rest = fp;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            segs.push(r[..end].to_string());
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            segs.push(r[..end].to_string());
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            r[..end].parse::<usize>().ok()?;
            segs.push(format!("[{}]", &r[..end]));
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(segs)
}

fn field_path_valid(node: &SchemaNode, segs: &[String]) -> bool {
    let mut cur = node;
    for s in segs {
        let next = if s.starts_with('[') {
            cur.items.as_deref()
        } else {
            cur.field(s)
        };
        match next {
            Some(n) => cur = n,
            None => return cur.preserve_unknown_fields,
        }
    }
    true
}

struct RunState<'e> {
    errs: &'e mut Vec<FieldError>,
    remaining: u64,
    stopped: bool,
}

/// Runs every rule of the schema over `obj` (with `old` on update).
pub(super) fn validate_rules(
    root: &SchemaNode,
    obj: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    if !root.has_rules() {
        return;
    }
    let mut st = RunState {
        errs,
        remaining: RUNTIME_CEL_COST_BUDGET,
        stopped: false,
    };
    walk(root, obj, old, None, true, &mut st, 0);
}

fn child_path(p: Option<&Path>, f: impl FnOnce(&Path) -> Path, root_name: &str) -> Path {
    match p {
        Some(p) => f(p),
        None => Path::new(root_name),
    }
}

fn walk(
    node: &SchemaNode,
    v: &Value,
    old: Option<&Value>,
    path: Option<&Path>,
    root: bool,
    st: &mut RunState<'_>,
    depth: usize,
) {
    if st.stopped || depth > 128 || old.is_some_and(|o| o == v) {
        return;
    }
    if !node.rules.is_empty() {
        run_rules(node, v, old, path, root, st);
    }
    match v {
        Value::Object(m) => {
            let om = old.and_then(Value::as_object);
            for (k, cv) in m {
                if st.stopped {
                    return;
                }
                if root && k == "metadata" {
                    continue;
                }
                let co = om.and_then(|o| o.get(k));
                if let Some(p) = node.properties.get(k) {
                    let cp = child_path(path, |pp| pp.child(k), k);
                    walk(p, cv, co, Some(&cp), false, st, depth + 1);
                } else if let Some(ap) = node.additional_properties.as_deref() {
                    let cp = match path {
                        Some(pp) => pp.key(k),
                        None => Path::new(&format!("[{k}]")),
                    };
                    walk(ap, cv, co, Some(&cp), false, st, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = node.items.as_deref() {
                let olds = if node.list_type() == ListType::Map {
                    super::listtype::correlate(node, items, old.and_then(Value::as_array))
                } else {
                    None
                };
                for (i, it) in items.iter().enumerate() {
                    if st.stopped {
                        return;
                    }
                    let cp = match path {
                        Some(pp) => pp.index(i),
                        None => Path::new(&format!("[{i}]")),
                    };
                    let co = olds.as_ref().and_then(|o| o[i]);
                    walk(is, it, co, Some(&cp), false, st, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// `self` at the resource root: `metadata` reduced to `name` and `generateName`.
fn root_self(node: &SchemaNode, v: &Value) -> cel::Value {
    let mut reduced = v.clone();
    if let Some(m) = reduced.as_object_mut()
        && let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.retain(|k, _| k == "name" || k == "generateName");
    }
    cel::Value::from_json_with(&reduced, node)
}

fn run_rules(
    node: &SchemaNode,
    v: &Value,
    old: Option<&Value>,
    path: Option<&Path>,
    root: bool,
    st: &mut RunState<'_>,
) {
    let conv = |x: &Value| {
        if root {
            root_self(node, x)
        } else {
            cel::Value::from_json_with(x, node)
        }
    };
    let self_v = conv(v);
    let old_v = old.map(conv);
    let type_name = node.ty().name();
    let fld = path.cloned();
    let fld_str = fld
        .as_ref()
        .map(Path::to_string)
        .unwrap_or_else(|| "<nil>".to_string());
    for rule in &node.rules {
        if st.stopped {
            return;
        }
        if rule.uses_old_self && old_v.is_none() && !rule.optional_old_self {
            continue;
        }
        let mut act = Activation::new();
        act.bind("self", self_v.clone());
        if rule.uses_old_self {
            let o = if rule.optional_old_self {
                cel::Value::Optional(old_v.clone().map(Box::new))
            } else {
                old_v.clone().unwrap_or(cel::Value::Null)
            };
            act.bind("oldSelf", o);
        }
        let err_string = rule.message.clone().unwrap_or_else(|| rule.rule.clone());
        let limit = PER_CALL_COST_LIMIT.min(st.remaining);
        match rule.program.eval(&act, limit) {
            Err(EvalError::CostLimitExceeded) => {
                let msg = if st.remaining < PER_CALL_COST_LIMIT {
                    "validation failed due to running out of cost budget, no further validation rules will be run".to_string()
                } else {
                    format!(
                        "'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: {err_string}"
                    )
                };
                st.errs.push(FieldError::invalid(&fld_str, type_name, &msg));
                st.stopped = true;
                return;
            }
            Err(EvalError::Runtime(e)) => {
                let msg = if e.starts_with("no such overload") {
                    format!(
                        "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {err_string}"
                    )
                } else {
                    format!("{e} evaluating rule: {err_string}")
                };
                st.errs.push(FieldError::invalid(&fld_str, type_name, &msg));
            }
            Ok((result, cost)) => {
                st.remaining = st.remaining.saturating_sub(cost);
                if matches!(result, cel::Value::Bool(true)) {
                    continue;
                }
                let detail = failure_message(rule, &act, st);
                let mut target = fld_str.clone();
                if let Some(segs) = rule.field_path.as_deref().and_then(parse_field_path) {
                    let mut p = fld.clone().unwrap_or_default();
                    for s in segs {
                        p = if let Some(i) = s.strip_prefix('[') {
                            Path::from(format!("{p}[{}", i).as_str())
                        } else {
                            p.child(&s)
                        };
                    }
                    target = p.to_string();
                }
                let e = match rule.reason.as_deref() {
                    Some("FieldValueRequired") => FieldError::required(&target, &detail),
                    Some("FieldValueForbidden") => FieldError::forbidden(&target, &detail),
                    Some("FieldValueDuplicate") => FieldError {
                        type_: FieldErrorType::Duplicate,
                        field: target.clone(),
                        bad_value: Some(Value::from(type_name)),
                        detail: detail.clone(),
                    },
                    _ => FieldError::invalid(&target, type_name, &detail),
                };
                st.errs.push(e);
            }
        }
    }
}

/// The message of a failed rule: `messageExpression`, else `message`, else `failed rule: ...`.
fn failure_message(rule: &Rule, act: &Activation, st: &mut RunState<'_>) -> String {
    let fallback = rule
        .message
        .clone()
        .unwrap_or_else(|| format!("failed rule: {}", rule.rule));
    let Some(me) = &rule.message_expression else {
        return fallback;
    };
    let limit = PER_CALL_COST_LIMIT.min(st.remaining);
    match me.eval(act, limit) {
        Ok((cel::Value::String(s), cost)) => {
            st.remaining = st.remaining.saturating_sub(cost);
            let t = s.trim();
            if t.is_empty() || t.len() > MAX_MESSAGE_EXPRESSION_SIZE || t.contains('\n') {
                fallback
            } else {
                t.to_string()
            }
        }
        Ok((_, cost)) => {
            st.remaining = st.remaining.saturating_sub(cost);
            fallback
        }
        Err(EvalError::CostLimitExceeded) => {
            st.stopped = true;
            format!(
                "no further validation rules will be run due to call cost exceeds limit for messageExpression: {}",
                crate::validation::go_quote(me.source())
            )
        }
        Err(EvalError::Runtime(_)) => fallback,
    }
}

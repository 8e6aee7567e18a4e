//! Upstream's ValidatingAdmissionPolicy type checker (`plugin/policy/validating/
//! typechecking.go`): every `spec.validations[i].expression` and `.messageExpression` is
//! checked against the schema of each kind the policy matches (`object`, `oldObject`) and of
//! its `paramKind` (`params`); `variables` get the types their expressions have. The result
//! is what `status.typeChecking.expressionWarnings` shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

use super::{Env, compile};
use crate::cel::{CelType, ObjectType, Program};

/// One kind to check against: upstream's GVK display (`apps/v1, Kind=Deployment`) and the
/// type of its objects.
pub struct Target {
    /// `group/version, Kind=kind`.
    pub gvk: String,
    /// The objects' type.
    pub object: CelType,
}

/// The `(fieldRef, warning)` pairs for the policy `spec`, in upstream's order (each
/// validation's expression, then its messageExpression); empty when everything type-checks.
pub fn check_policy(
    spec: &Json,
    targets: &[Target],
    params: Option<&CelType>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(validations) = spec.get("validations").and_then(Json::as_array) else {
        return out;
    };
    if targets.is_empty() {
        return out;
    }
    let has_params = spec.get("paramKind").is_some_and(|p| !p.is_null());
    let variables: Vec<(String, String)> = spec
        .get("variables")
        .and_then(Json::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| {
                    Some((
                        v.get("name")?.as_str()?.to_string(),
                        v.get("expression")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let names: Vec<String> = variables.iter().map(|(n, _)| n.clone()).collect();
    let env = Env {
        params: has_params,
        variables: Some(&names),
    };
    // The variables compiled once; per target, the declared types with `variables` typed in
    // definition order.
    let compiled_vars: Vec<(String, Option<Program>)> = variables
        .iter()
        .map(|(n, src)| (n.clone(), compile(src, env, false).ok()))
        .collect();
    let decls: Vec<Vec<(String, CelType)>> = targets
        .iter()
        .map(|t| declarations(t, params, has_params, &compiled_vars))
        .collect();
    for (i, v) in validations.iter().enumerate() {
        for key in ["expression", "messageExpression"] {
            let Some(src) = v.get(key).and_then(Json::as_str).filter(|s| !s.is_empty()) else {
                continue;
            };
            // Compiled once, checked against each target's types.
            let program = compile(src, env, false);
            let mut results = Vec::new();
            for (t, vars) in targets.iter().zip(&decls) {
                let issues = match &program {
                    Ok(p) => p.type_check(vars).1,
                    Err(e) => e
                        .strip_prefix("compilation failed: ")
                        .unwrap_or(e)
                        .to_string(),
                };
                if !issues.is_empty() {
                    results.push(format!("{}: {issues}\n", t.gvk));
                }
            }
            if !results.is_empty() {
                out.push((format!("spec.validations[{i}].{key}"), results.join("\n")));
            }
        }
    }
    out
}

fn declarations(
    target: &Target,
    params: Option<&CelType>,
    has_params: bool,
    variables: &[(String, Option<Program>)],
) -> Vec<(String, CelType)> {
    let mut vars = vec![
        ("object".to_string(), target.object.clone()),
        ("oldObject".to_string(), target.object.clone()),
    ];
    if has_params && let Some(p) = params {
        vars.push(("params".into(), p.clone()));
    }
    let mut fields = BTreeMap::new();
    for (name, program) in variables {
        let with_vars = |fields: &BTreeMap<String, CelType>| {
            let mut v = vars.clone();
            v.push((
                "variables".into(),
                CelType::Object(Arc::new(ObjectType {
                    name: "kubernetes.variables".into(),
                    fields: fields.clone(),
                })),
            ));
            v
        };
        let t = match program {
            Some(p) => p.type_check(&with_vars(&fields)).0,
            None => CelType::Dyn,
        };
        fields.insert(name.clone(), t);
    }
    if !variables.is_empty() {
        vars.push((
            "variables".into(),
            CelType::Object(Arc::new(ObjectType {
                name: "kubernetes.variables".into(),
                fields,
            })),
        ));
    }
    vars
}

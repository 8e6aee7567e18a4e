//! MutatingAdmissionPolicy evaluation (upstream `pkg/admission/plugin/policy/mutating`,
//! `admissionregistration.k8s.io/v1beta1`): compiled once per stored policy, applied per
//! request to the object in the matched version. No IO: the server builds the inputs.
//!
//! - `matchConditions` first (as for ValidatingAdmissionPolicy; an error follows
//!   `failurePolicy`).
//! - `mutations` in order, each seeing the object as the mutations before it left it
//!   (variables are evaluated afresh for each one):
//!   - `ApplyConfiguration`: the expression builds an object with `Object{...}` /
//!     `Object.spec{...}` initializers; it is merged into the object with
//!     structured-merge-diff semantics ([`crate::managedfields::typed::merge`]: maps per key,
//!     `listType=map` lists per key, sets by value, atomic lists replaced).
//!   - `JSONPatch`: the expression returns a list of `JSONPatch{op, path, value, from}`
//!     applied as RFC 6902 ([`crate::patch::json_patch`], with its bounds).
//! - Cost: every expression within [`super::PER_CALL_LIMIT`], all of one (policy, binding,
//!   param) within [`super::RUNTIME_BUDGET`].

use serde_json::Value as Json;

use super::{
    Compiled, Env, FailurePolicy, Inputs, MatchConditions, MatchResult, OUT_OF_BUDGET, OutOfBudget,
    Outcome, RUNTIME_BUDGET, Run, compile_variables, compile_with_types,
};
use crate::cel::Value;
use crate::managedfields::typed::{NodeType, merge};

/// `patchType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    ApplyConfiguration,
    JsonPatch,
}

impl PatchType {
    /// From the field's value.
    pub fn parse(s: &str) -> Option<PatchType> {
        match s {
            "ApplyConfiguration" => Some(PatchType::ApplyConfiguration),
            "JSONPatch" => Some(PatchType::JsonPatch),
            _ => None,
        }
    }

    /// The field holding the expression (`applyConfiguration` / `jsonPatch`).
    pub fn field(self) -> &'static str {
        match self {
            PatchType::ApplyConfiguration => "applyConfiguration",
            PatchType::JsonPatch => "jsonPatch",
        }
    }

    /// The message type its expressions construct.
    fn type_name(self) -> &'static str {
        match self {
            PatchType::ApplyConfiguration => "Object",
            PatchType::JsonPatch => "JSONPatch",
        }
    }
}

/// Compiles one mutation expression (`Object` or `JSONPatch` declared as the message type).
pub fn compile_mutation(
    src: &str,
    env: Env<'_>,
    patch_type: PatchType,
) -> Result<crate::cel::Program, String> {
    compile_with_types(src, env, false, &[patch_type.type_name()])
}

#[derive(Debug)]
struct Mutation {
    patch_type: PatchType,
    expr: Compiled,
}

/// A MutatingAdmissionPolicy's spec, compiled.
#[derive(Debug)]
pub struct CompiledMutatingPolicy {
    pub failure_policy: FailurePolicy,
    pub match_conditions: MatchConditions,
    /// `reinvocationPolicy: IfNeeded`.
    pub reinvoke: bool,
    variables: Vec<(String, Compiled)>,
    mutations: Vec<Mutation>,
    /// Compile errors, as `(field path, expression, detail)`.
    pub errors: Vec<(String, String, String)>,
}

/// What applying one policy did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The match conditions did not select the request (or an ignored error).
    Skipped,
    /// The mutations ran; `true` when the object changed.
    Ran(bool),
}

fn s(v: &Json, k: &str) -> String {
    v.get(k).and_then(Json::as_str).unwrap_or("").to_string()
}

impl CompiledMutatingPolicy {
    /// Compiles a MutatingAdmissionPolicy `spec`.
    pub fn compile(spec: &Json) -> CompiledMutatingPolicy {
        let params = spec.get("paramKind").is_some_and(|p| !p.is_null());
        let mut errors = Vec::new();
        let (names, needs, variables) = compile_variables(spec, params, &mut errors);
        let items = |k: &str| {
            spec.get(k)
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let env = Env {
            params,
            variables: Some(&names),
        };
        let mut mutations = Vec::new();
        for (i, m) in items("mutations").iter().enumerate() {
            let Some(pt) = PatchType::parse(&s(m, "patchType")) else {
                errors.push((
                    format!("spec.mutations[{i}].patchType"),
                    String::new(),
                    format!("unsupported patchType {:?}", s(m, "patchType")),
                ));
                continue;
            };
            let src = m
                .get(pt.field())
                .map(|x| s(x, "expression"))
                .unwrap_or_default();
            let program = compile_mutation(&src, env, pt);
            let expr = Compiled::of(&src, program, env, &needs);
            if let Err(e) = &expr.program {
                errors.push((
                    format!("spec.mutations[{i}].{}.expression", pt.field()),
                    src.clone(),
                    e.clone(),
                ));
            }
            mutations.push(Mutation {
                patch_type: pt,
                expr,
            });
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
        CompiledMutatingPolicy {
            failure_policy: FailurePolicy::parse(spec.get("failurePolicy")),
            match_conditions,
            reinvoke: spec.get("reinvocationPolicy").and_then(Json::as_str) == Some("IfNeeded"),
            variables,
            mutations,
            errors,
        }
    }

    /// Whether any expression refers to `namespaceObject`.
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
            || self.mutations.iter().any(|m| uses(&m.expr))
    }

    /// Applies the policy for one binding and param to `obj` (in the matched version, as
    /// `inputs.object` shows it): `Err` is the reason to reject the request (only under
    /// `failurePolicy: Fail`); under `Ignore` a failing mutation is skipped and the ones
    /// before it stay applied, as upstream.
    pub fn apply(
        &self,
        inputs: &Inputs,
        obj: &mut Json,
        root: &NodeType,
    ) -> Result<Applied, String> {
        let fp = self.failure_policy;
        let fail = |e: String| match fp {
            FailurePolicy::Fail => Err(e),
            FailurePolicy::Ignore => Ok(()),
        };
        let mut run = Run::new(inputs, &self.variables);
        match self.match_conditions.run(&mut run, fp) {
            MatchResult::Matches => {}
            MatchResult::NoMatch(_) => return Ok(Applied::Skipped),
            MatchResult::Error(e) => {
                fail(e)?;
                return Ok(Applied::Skipped);
            }
        }
        let mut budget = RUNTIME_BUDGET;
        let mut changed = false;
        for m in &self.mutations {
            let mut current = inputs.clone();
            current.object = Value::from_json(obj);
            let mut run = Run::new(&current, &self.variables);
            let value = match run.eval(&m.expr, &mut budget) {
                Err(OutOfBudget) => {
                    fail(OUT_OF_BUDGET.into())?;
                    return Ok(Applied::Ran(changed));
                }
                Ok(Outcome::Error(e)) => {
                    fail(e)?;
                    continue;
                }
                Ok(Outcome::Value(v)) => v,
            };
            let next = match m.patch_type {
                PatchType::ApplyConfiguration => apply_configuration(obj, &value, root),
                PatchType::JsonPatch => json_patch(obj, &value),
            };
            match next {
                Ok(next) => {
                    if next != *obj {
                        changed = true;
                        *obj = next;
                    }
                }
                Err(e) => fail(e)?,
            }
        }
        Ok(Applied::Ran(changed))
    }
}

/// Merges an apply configuration built by `Object{...}` into `obj`.
fn apply_configuration(obj: &Json, value: &Value, root: &NodeType) -> Result<Json, String> {
    let Value::Map(_) = value else {
        return Err(format!(
            "ApplyConfiguration: expected an object (Object{{...}}), got {}",
            value.type_name()
        ));
    };
    let config = value.to_json();
    crate::limits::check_depth(&config, crate::limits::MAX_DEPTH).map_err(|e| e.to_string())?;
    Ok(merge(obj, &config, root))
}

/// Applies a list of `JSONPatch{op, path, value, from}` to a copy of `obj`.
fn json_patch(obj: &Json, value: &Value) -> Result<Json, String> {
    let Value::List(ops) = value else {
        return Err(format!(
            "JSONPatch: expected a list of JSONPatch, got {}",
            value.type_name()
        ));
    };
    let mut patch = Vec::with_capacity(ops.len());
    for op in ops.iter() {
        let j = op.to_json();
        let Some(m) = j.as_object() else {
            return Err(format!(
                "JSONPatch: expected JSONPatch objects, got {}",
                op.type_name()
            ));
        };
        if m.get("op").and_then(Json::as_str).is_none_or(str::is_empty) {
            return Err("JSONPatch: op is required".into());
        }
        if m.get("path").and_then(Json::as_str).is_none() {
            return Err("JSONPatch: path is required".into());
        }
        patch.push(j);
    }
    let mut out = obj.clone();
    crate::patch::json_patch(&mut out, &Json::Array(patch))
        .map_err(|e| format!("JSONPatch: {e}"))?;
    crate::limits::check_depth(&out, crate::limits::MAX_DEPTH).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn inputs(obj: &Json) -> Inputs {
        Inputs::from_json(
            Some(obj),
            None,
            &json!({"operation": "CREATE", "userInfo": {"username": "bob"}}),
            None,
            None,
        )
    }

    fn pod_type() -> NodeType {
        crate::managedfields::root_type("", "v1", "Pod")
    }

    #[test]
    fn apply_configuration_merges_labels_and_keyed_lists() {
        let spec = json!({
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "mutations": [{
                "patchType": "ApplyConfiguration",
                "applyConfiguration": {"expression": r#"Object{
                    metadata: Object.metadata{labels: {"env": "prod"}},
                    spec: Object.spec{initContainers: [Object.spec.initContainers{
                        name: "mesh-proxy", image: "mesh/proxy:v1.0.0",
                        args: ["proxy", "sidecar"], restartPolicy: "Always"}]}}"#}
            }]
        });
        let p = CompiledMutatingPolicy::compile(&spec);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert!(p.reinvoke);
        let mut pod = json!({"metadata": {"name": "p", "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}});
        let r = p.apply(&inputs(&pod), &mut pod, &pod_type());
        assert_eq!(r, Ok(Applied::Ran(true)));
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "a", "env": "prod"})
        );
        assert_eq!(pod["spec"]["initContainers"][0]["name"], "mesh-proxy");
        assert_eq!(pod["spec"]["containers"][0]["name"], "app");
        // A second run changes nothing (the sidecar is keyed by name).
        let again = p.apply(&inputs(&pod), &mut pod, &pod_type());
        assert_eq!(again, Ok(Applied::Ran(false)));
        assert_eq!(
            pod["spec"]["initContainers"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn json_patch_mutations_see_the_previous_ones() {
        let spec = json!({
            "failurePolicy": "Fail",
            "matchConditions": [{"name": "no-skip", "expression":
                "!has(object.metadata.labels) || !('skip' in object.metadata.labels)"}],
            "mutations": [
                {"patchType": "JSONPatch", "jsonPatch": {"expression":
                    "[JSONPatch{op: 'add', path: '/metadata/annotations', value: {}}]"}},
                {"patchType": "JSONPatch", "jsonPatch": {"expression":
                    "[JSONPatch{op: 'add', path: '/metadata/annotations/' + jsonpatch.escapeKey('example.com/user'), value: request.userInfo.username + '/' + string(size(object.metadata.annotations))}]"}}
            ]
        });
        let p = CompiledMutatingPolicy::compile(&spec);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let mut cm = json!({"metadata": {"name": "c"}});
        let r = p.apply(&inputs(&cm), &mut cm, &NodeType::unknown());
        assert_eq!(r, Ok(Applied::Ran(true)));
        assert_eq!(
            cm["metadata"]["annotations"],
            json!({"example.com/user": "bob/0"})
        );
        let mut skipped = json!({"metadata": {"name": "c", "labels": {"skip": "y"}}});
        let r = p.apply(&inputs(&skipped), &mut skipped, &NodeType::unknown());
        assert_eq!(r, Ok(Applied::Skipped));
    }

    #[test]
    fn failures_follow_the_failure_policy() {
        let bad = |fp: &str| {
            json!({"failurePolicy": fp, "mutations": [
                {"patchType": "JSONPatch", "jsonPatch": {"expression":
                    "[JSONPatch{op: 'replace', path: '/spec/missing', value: 1}]"}},
                {"patchType": "ApplyConfiguration", "applyConfiguration": {"expression":
                    "Object{metadata: Object.metadata{labels: {'ok': 'yes'}}}"}}
            ]})
        };
        let obj = json!({"metadata": {"name": "c"}});
        let p = CompiledMutatingPolicy::compile(&bad("Fail"));
        let e = p
            .apply(&inputs(&obj), &mut obj.clone(), &NodeType::unknown())
            .expect_err("Fail rejects");
        assert!(e.starts_with("JSONPatch: "), "{e}");
        let p = CompiledMutatingPolicy::compile(&bad("Ignore"));
        let mut o = obj.clone();
        let r = p.apply(&inputs(&obj), &mut o, &NodeType::unknown());
        assert_eq!(r, Ok(Applied::Ran(true)));
        assert_eq!(o["metadata"]["labels"], json!({"ok": "yes"}));
        // A JSONPatch type outside a JSONPatch mutation does not compile.
        let p = CompiledMutatingPolicy::compile(&json!({"mutations": [
            {"patchType": "ApplyConfiguration", "applyConfiguration": {"expression":
                "[JSONPatch{op: 'add', path: '/x', value: 1}]"}}]}));
        assert_eq!(p.errors.len(), 1);
        assert!(
            p.errors[0]
                .2
                .contains("undeclared reference to 'JSONPatch'")
        );
    }

    #[test]
    fn a_hostile_expression_runs_out_of_budget() {
        let spec = json!({"failurePolicy": "Fail", "mutations": [
            {"patchType": "JSONPatch", "jsonPatch": {"expression":
                "[1,2,3,4,5,6,7,8,9,10].map(a, [1,2,3,4,5,6,7,8,9,10].map(b, [1,2,3,4,5,6,7,8,9,10].map(c, [1,2,3,4,5,6,7,8,9,10].map(d, [1,2,3,4,5,6,7,8,9,10].map(e, [1,2,3,4,5,6,7,8,9,10].map(f, f)))))).size() > 0 ? [] : []"}}]});
        let p = CompiledMutatingPolicy::compile(&spec);
        let obj = json!({"metadata": {"name": "c"}});
        let e = p
            .apply(&inputs(&obj), &mut obj.clone(), &NodeType::unknown())
            .expect_err("too costly");
        assert!(e.contains("cost"), "{e}");
    }
}

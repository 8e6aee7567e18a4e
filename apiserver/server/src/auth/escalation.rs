//! RBAC escalation prevention (upstream `pkg/registry/rbac/*/policybased` and
//! `pkg/registry/rbac/validation`): a user may create or update a Role/ClusterRole only with
//! rules they already hold (or with the `escalate` verb on it), and a RoleBinding/
//! ClusterRoleBinding only to a role whose rules they hold (or with the `bind` verb on it).
//! Members of `system:masters` skip the check, as upstream's `EscalationAllowed`.

use serde_json::Value;

use super::authz::SYSTEM_MASTERS;
use super::rbac::{Rule, compact_rules, compact_string, go_quoted_list, uncovered};
use super::{Attributes, Decision};
use crate::endpoints::Scope;
use crate::error::ApiResult;
use ferrokube_machinery::status::Status;

const GROUP: &str = "rbac.authorization.k8s.io";

async fn allowed(scope: &Scope, verb: &str, resource: &str, ns: &str, name: &str) -> bool {
    let mut a = Attributes::non_resource(&scope.user, verb, "");
    a.resource_request = true;
    a.api_group = GROUP;
    a.api_version = "v1";
    a.resource = resource;
    a.namespace = ns;
    a.name = name;
    scope.state.auth.authz.authorize(&a).await.decision == Decision::Allow
}

/// Checks a role or binding about to be written by the request's user. Other resources pass.
pub async fn check(scope: &Scope, obj: &Value) -> ApiResult<()> {
    let plural = scope.handle.info.plural;
    if scope.handle.info.group != GROUP || !scope.state.auth.authz.has_rbac() {
        return Ok(());
    }
    let user = &scope.user;
    if user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
        return Ok(());
    }
    let ns = scope.info.namespace.as_str();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let wanted: Vec<Rule> = match plural {
        "roles" | "clusterroles" => {
            if allowed(scope, "escalate", plural, ns, name).await {
                return Ok(());
            }
            Rule::list_from(obj)
        }
        "rolebindings" | "clusterrolebindings" => {
            let kind = obj
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let role = obj
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let (role_resource, role_ns) = match kind {
                "Role" => ("roles", ns),
                _ => ("clusterroles", ""),
            };
            if allowed(scope, "bind", role_resource, ns, role).await {
                return Ok(());
            }
            match scope.state.auth.rbac.role_rules(role_ns, role) {
                Some(r) => r.to_vec(),
                None => {
                    return Err(Status::not_found(GROUP, role_resource, role).into());
                }
            }
        }
        _ => return Ok(()),
    };
    let held = scope.state.auth.rbac.rules_for(user, ns);
    let missing: Vec<Rule> = wanted.iter().flat_map(|r| uncovered(&held, r)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = compact_rules(missing).iter().map(compact_string).collect();
    let msg = format!(
        "user \"{}\" (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.username,
        go_quoted_list(&user.groups),
        lines.join("\n")
    );
    Err(Status::forbidden(GROUP, plural, name, &msg).into())
}

//! RBAC escalation prevention (upstream `pkg/registry/rbac/*/policybased` and
//! `pkg/registry/rbac/validation`): a user may create or update a Role/ClusterRole only with
//! rules they already hold (or with the `escalate` verb on it), and a RoleBinding/
//! ClusterRoleBinding only to a role whose rules they hold (or with the `bind` verb on it).
//! Members of `system:masters` skip the check, as upstream's `EscalationAllowed`.

use std::sync::Arc;

use serde_json::Value;

use super::authz::{Authorizer, SYSTEM_MASTERS};
use super::rbac::{RbacIndex, Rule, compact_rules, compact_string, go_quoted_list, uncovered};
use super::{Attributes, Decision};
use crate::UserInfo;
use crate::admission::{self, AdmissionPlugin, Operation};
use crate::error::ApiResult;
use ferrokube_machinery::status::Status;

const GROUP: &str = "rbac.authorization.k8s.io";

/// The escalation check as a validating admission plugin: it sees the final object of every
/// create, update, patch and apply of an RBAC object.
pub struct RbacEscalation {
    pub authz: Arc<Authorizer>,
    pub rbac: Arc<RbacIndex>,
}

#[async_trait::async_trait]
impl AdmissionPlugin for RbacEscalation {
    fn name(&self) -> &'static str {
        "RBACEscalationCheck"
    }

    async fn validate(
        &self,
        a: &admission::Attributes<'_>,
        obj: &Value,
        _old: Option<&Value>,
    ) -> ApiResult<()> {
        if !matches!(a.operation, Operation::Create | Operation::Update)
            || !a.subresource.is_empty()
        {
            return Ok(());
        }
        check(
            &self.authz,
            &self.rbac,
            a.user,
            &a.handle.info.group,
            &a.handle.info.plural,
            a.namespace,
            obj,
        )
        .await
    }
}

struct Ctx<'a> {
    authz: &'a Authorizer,
    user: &'a UserInfo,
}

async fn allowed(scope: &Ctx<'_>, verb: &str, resource: &str, ns: &str, name: &str) -> bool {
    let mut a = Attributes::non_resource(scope.user, verb, "");
    a.resource_request = true;
    a.api_group = GROUP;
    a.api_version = "v1";
    a.resource = resource;
    a.namespace = ns;
    a.name = name;
    scope.authz.authorize(&a).await.decision == Decision::Allow
}

/// Checks a role or binding about to be written by `user`. Other resources pass.
pub async fn check(
    authz: &Authorizer,
    rbac: &RbacIndex,
    user: &UserInfo,
    group: &str,
    plural: &str,
    ns: &str,
    obj: &Value,
) -> ApiResult<()> {
    if group != GROUP || !authz.has_rbac() {
        return Ok(());
    }
    // Members of system:masters, and the server's own writes (`WriteOptions::default()`: the
    // bootstrap policy, the aggregation controller; upstream's loopback system:apiserver).
    if user.username.is_empty() || user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
        return Ok(());
    }
    let scope = &Ctx { authz, user };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural: &str = plural;
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
            match rbac.role_rules(role_ns, role) {
                Some(r) => r.to_vec(),
                None => {
                    return Err(Status::not_found(GROUP, role_resource, role).into());
                }
            }
        }
        _ => return Ok(()),
    };
    let held = rbac.rules_for(user, ns);
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

//! The CEL `authorizer` library's answers: the server's authorizer chain for the requesting
//! user (or, after `serviceAccount(ns, name)`, that service account), as upstream's
//! `library.Authz` asks `authorizer.Authorize`. Decisions are synchronous lookups except the
//! Webhook mode (see `Authorizer::authorize_blocking`).

use std::sync::Arc;

use ferrokube_machinery::cel::{Authorize, AuthzCheck, AuthzDecision, AuthzValue, Value};

use crate::UserInfo;
use crate::admission::Attributes as AdmissionAttributes;
use crate::auth::authz::Authorizer;
use crate::auth::{Attributes, Decision};

/// Answers checks for one request's user.
struct Bridge {
    authz: Arc<Authorizer>,
    user: UserInfo,
}

impl Authorize for Bridge {
    fn check(&self, c: &AuthzCheck) -> AuthzDecision {
        let sa_user;
        let user = match &c.service_account {
            Some((ns, name)) => {
                sa_user = UserInfo {
                    username: format!("system:serviceaccount:{ns}:{name}"),
                    groups: vec![
                        "system:serviceaccounts".into(),
                        format!("system:serviceaccounts:{ns}"),
                        "system:authenticated".into(),
                    ],
                    ..UserInfo::default()
                };
                &sa_user
            }
            None => &self.user,
        };
        let attrs = Attributes {
            user,
            verb: &c.verb,
            resource_request: c.path.is_none(),
            path: c.path.as_deref().unwrap_or(""),
            namespace: &c.namespace,
            api_group: &c.group,
            api_version: "*",
            resource: &c.resource,
            subresource: &c.subresource,
            name: &c.name,
        };
        let v = self.authz.authorize_blocking(&attrs);
        AuthzDecision {
            allowed: v.decision == Decision::Allow,
            decision: match v.decision {
                Decision::Allow => "allow",
                Decision::Deny => "deny",
                Decision::NoOpinion => "noOpinion",
            }
            .into(),
            reason: v.reason,
            error: v.error,
        }
    }
}

/// The `authorizer` variable for a request: checks as its user; `requestResource` is the
/// request's group, resource, subresource, namespace and name.
pub fn authorizer_value(a: &AdmissionAttributes<'_>, authz: Arc<Authorizer>) -> Value {
    let info = &a.handle.info;
    let request = AuthzCheck {
        group: info.group.to_string(),
        resource: info.plural.to_string(),
        subresource: a.subresource.to_string(),
        namespace: a.namespace.to_string(),
        name: a.name.to_string(),
        ..AuthzCheck::default()
    };
    AuthzValue::root(
        Arc::new(Bridge {
            authz,
            user: a.user.clone(),
        }),
        Some(request),
    )
}

//! Impersonation (upstream `endpoints/filters/impersonation.go`, `WithImpersonation`):
//! `Impersonate-User`, `Impersonate-Uid`, `Impersonate-Group` (repeatable) and
//! `Impersonate-Extra-<key>` headers replace the request's user after each requested value is
//! authorized with the `impersonate` verb (users, groups, uids, userextras, or serviceaccounts
//! for `system:serviceaccount:` names). The headers are bounded: at most
//! [`MAX_IMPERSONATION_VALUES`] values in all.

use std::collections::BTreeMap;

use http::HeaderMap;

use super::authn::{ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, ANONYMOUS};
use super::{Attributes, Decision, forbidden_status};
use crate::UserInfo;
use ferrokube_machinery::status::Status;

/// The most impersonation values one request may carry.
pub const MAX_IMPERSONATION_VALUES: usize = 256;

const USER: &str = "impersonate-user";
const UID: &str = "impersonate-uid";
const GROUP: &str = "impersonate-group";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Whether the request carries impersonation headers.
pub fn requested(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
}

/// Strips the impersonation headers (they never reach handlers).
pub fn strip(headers: &mut HeaderMap) {
    let keys: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for k in keys {
        headers.remove(k);
    }
}

/// One value to authorize: (resource, subresource, group, namespace, name).
struct Request {
    api_group: &'static str,
    resource: &'static str,
    subresource: String,
    namespace: String,
    name: String,
}

/// The impersonated user, after authorizing each value for `actor`. `Err` is the Status to send.
#[allow(clippy::result_large_err)] // The Status is the answer the filter sends; cold path.
pub async fn impersonate(
    authz: &super::authz::Authorizer,
    actor: &UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, Status> {
    #[allow(clippy::result_large_err)] // As above.
    let text = |v: &http::HeaderValue| -> Result<String, Status> {
        v.to_str()
            .map(str::to_string)
            .map_err(|_| Status::bad_request("impersonation header values must be valid text"))
    };
    let count = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("impersonate-"))
        .count();
    if count > MAX_IMPERSONATION_VALUES {
        return Err(Status::bad_request("too many impersonation headers"));
    }
    let username = headers.get(USER).map(text).transpose()?.unwrap_or_default();
    let uid = headers.get(UID).map(text).transpose()?;
    let groups = headers
        .get_all(GROUP)
        .iter()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers.iter() {
        if let Some(key) = k.as_str().strip_prefix(EXTRA_PREFIX) {
            let key = percent_encoding::percent_decode_str(key)
                .decode_utf8()
                .map_err(|_| Status::bad_request("invalid impersonation extra key"))?
                .to_lowercase();
            extra.entry(key).or_default().push(text(v)?);
        }
    }
    if username.is_empty() {
        let mut what = Vec::new();
        if uid.is_some() {
            what.push("uid");
        }
        if !groups.is_empty() {
            what.push("groups");
        }
        if !extra.is_empty() {
            what.push("extra");
        }
        return Err(Status::internal_error(&format!(
            "requested [{}] without impersonating a user",
            what.join(" ")
        )));
    }
    let mut checks = Vec::new();
    let sa = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'));
    match sa {
        Some((ns, name)) => checks.push(Request {
            api_group: "",
            resource: "serviceaccounts",
            subresource: String::new(),
            namespace: ns.to_string(),
            name: name.to_string(),
        }),
        None => checks.push(Request {
            api_group: "",
            resource: "users",
            subresource: String::new(),
            namespace: String::new(),
            name: username.clone(),
        }),
    }
    for g in &groups {
        checks.push(Request {
            api_group: "",
            resource: "groups",
            subresource: String::new(),
            namespace: String::new(),
            name: g.clone(),
        });
    }
    if let Some(u) = &uid {
        checks.push(Request {
            api_group: "authentication.k8s.io",
            resource: "uids",
            subresource: String::new(),
            namespace: String::new(),
            name: u.clone(),
        });
    }
    for (k, vs) in &extra {
        for v in vs {
            checks.push(Request {
                api_group: "authentication.k8s.io",
                resource: "userextras",
                subresource: k.clone(),
                namespace: String::new(),
                name: v.clone(),
            });
        }
    }
    for c in &checks {
        let mut a = Attributes::non_resource(actor, "impersonate", "");
        a.resource_request = true;
        a.api_group = c.api_group;
        a.resource = c.resource;
        a.subresource = &c.subresource;
        a.namespace = &c.namespace;
        a.name = &c.name;
        let v = authz.authorize(&a).await;
        if v.decision != Decision::Allow {
            return Err(forbidden_status(&a, &v.reason));
        }
    }
    let mut groups = groups;
    if let Some((ns, _)) = sa
        && groups.is_empty()
    {
        groups.push("system:serviceaccounts".into());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    if username == ANONYMOUS {
        if !groups.iter().any(|g| g == ALL_UNAUTHENTICATED) {
            groups.push(ALL_UNAUTHENTICATED.into());
        }
    } else if !groups.iter().any(|g| g == ALL_AUTHENTICATED) {
        groups.push(ALL_AUTHENTICATED.into());
    }
    Ok(UserInfo {
        username,
        uid: uid.unwrap_or_default(),
        groups,
        extra,
    })
}

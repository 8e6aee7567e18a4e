//! The audit policy (`audit.k8s.io/v1` `Policy`, upstream `pkg/audit/policy`): an ordered list
//! of rules, the first that matches a request decides its level and omitted stages; no match is
//! level `None`.

use std::collections::BTreeSet;

use ferrokube_machinery::request_info::RequestInfo;
use serde::Deserialize;

use crate::UserInfo;

/// How much of a request is recorded (`audit.k8s.io/v1` `Level`), in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    /// The name as written in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// A stage of request handling at which an event is emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    /// The name as written in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }
}

/// `GroupResources`: resources of one API group, optionally only some names.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// `PolicyRule`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    pub level: Level,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

/// `Policy` as written in `--audit-policy-file`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    #[allow(dead_code)] // metadata is accepted and ignored, as upstream
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    rules: Vec<PolicyRule>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
    #[serde(default)]
    omit_managed_fields: bool,
}

/// A loaded, validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<PolicyRule>,
    omit_stages: Vec<Stage>,
    omit_managed_fields: bool,
}

/// What the policy says about one request (upstream `RequestAuditConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAuditConfig {
    pub level: Level,
    pub omit_stages: BTreeSet<Stage>,
    pub omit_managed_fields: bool,
}

/// What a rule is matched against.
pub struct PolicyAttributes<'a> {
    pub user: &'a UserInfo,
    pub info: &'a RequestInfo,
}

impl Policy {
    /// Parses and validates a policy file (YAML or JSON), as upstream's `LoadPolicyFromBytes`.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let file: PolicyFile =
            serde_yaml::from_str(text).map_err(|e| format!("failed decoding audit policy: {e}"))?;
        if file.kind != "Policy" {
            return Err(format!(
                "failed decoding audit policy: kind {:?} is not Policy",
                file.kind
            ));
        }
        if file.api_version != "audit.k8s.io/v1" {
            return Err(format!(
                "failed decoding audit policy: no kind \"Policy\" is registered for version {:?}",
                file.api_version
            ));
        }
        let policy = Policy {
            rules: file.rules,
            omit_stages: file.omit_stages,
            omit_managed_fields: file.omit_managed_fields,
        };
        policy.validate()?;
        if policy.rules.is_empty() {
            return Err("loaded illegal policy with 0 rules".into());
        }
        Ok(policy)
    }

    /// Upstream's `validation.ValidatePolicy`.
    fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let path = format!("rules[{i}]");
            if !r.non_resource_urls.is_empty()
                && (!r.resources.is_empty() || !r.namespaces.is_empty())
            {
                errs.push(format!(
                    "{path}.nonResourceURLs: Invalid value: {:?}: rules cannot apply to both regular resources and non-resource URLs",
                    r.non_resource_urls
                ));
            }
            for (j, u) in r.non_resource_urls.iter().enumerate() {
                let star = u.find('*');
                if star.is_some_and(|s| s != u.len() - 1) {
                    errs.push(format!(
                        "{path}.nonResourceURLs[{j}]: Invalid value: {u:?}: non-resource URL wildcards (\"*\") must be the final character"
                    ));
                } else if !u.starts_with('/') && u != "*" {
                    errs.push(format!(
                        "{path}.nonResourceURLs[{j}]: Invalid value: {u:?}: non-resource URLs must start with \"/\""
                    ));
                }
            }
            for (j, gr) in r.resources.iter().enumerate() {
                if gr.group.contains('*') {
                    errs.push(format!(
                        "{path}.resources[{j}].group: Invalid value: {:?}: wildcard is not allowed in group",
                        gr.group
                    ));
                }
                if !gr.resource_names.is_empty() && gr.resources.iter().any(|res| res.contains('*'))
                {
                    errs.push(format!(
                        "{path}.resources[{j}].resourceNames: Invalid value: {:?}: using resource names with a wildcard in resources is not allowed",
                        gr.resource_names
                    ));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join(", "))
        }
    }

    /// The level and stages for a request: the first matching rule, else `None`.
    pub fn evaluate(&self, a: &PolicyAttributes<'_>) -> RequestAuditConfig {
        for r in &self.rules {
            if rule_matches(r, a) {
                let mut omit: BTreeSet<Stage> = self.omit_stages.iter().copied().collect();
                omit.extend(r.omit_stages.iter().copied());
                return RequestAuditConfig {
                    level: r.level,
                    omit_stages: omit,
                    omit_managed_fields: r.omit_managed_fields.unwrap_or(self.omit_managed_fields),
                };
            }
        }
        RequestAuditConfig {
            level: Level::None,
            omit_stages: BTreeSet::new(),
            omit_managed_fields: self.omit_managed_fields,
        }
    }
}

fn has(list: &[String], s: &str) -> bool {
    list.iter().any(|x| x == s)
}

/// Upstream `ruleMatches`.
fn rule_matches(r: &PolicyRule, a: &PolicyAttributes<'_>) -> bool {
    if !r.users.is_empty() && !has(&r.users, &a.user.username) {
        return false;
    }
    if !r.user_groups.is_empty() && !a.user.groups.iter().any(|g| has(&r.user_groups, g)) {
        return false;
    }
    if !r.verbs.is_empty() && !has(&r.verbs, &a.info.verb) {
        return false;
    }
    if !r.namespaces.is_empty() || !r.resources.is_empty() {
        return rule_matches_resource(r, a.info);
    }
    if !r.non_resource_urls.is_empty() {
        return !a.info.is_resource_request
            && r.non_resource_urls
                .iter()
                .any(|spec| path_matches(&a.info.path, spec));
    }
    true
}

fn path_matches(path: &str, spec: &str) -> bool {
    if spec == "*" || spec == path {
        return true;
    }
    spec.strip_suffix('*')
        .is_some_and(|prefix| path.starts_with(prefix))
}

/// Upstream `ruleMatchesResource`: namespaces, then group/resources (`*`, `pods/log`,
/// `*/status`, `pods/*`) and resource names.
fn rule_matches_resource(r: &PolicyRule, info: &RequestInfo) -> bool {
    if !info.is_resource_request {
        return false;
    }
    if !r.namespaces.is_empty() && !has(&r.namespaces, &info.namespace) {
        return false;
    }
    if r.resources.is_empty() {
        return true;
    }
    let sub = info.subresource.as_str();
    let combined = if sub.is_empty() {
        info.resource.clone()
    } else {
        format!("{}/{sub}", info.resource)
    };
    for gr in &r.resources {
        if gr.group != info.api_group {
            continue;
        }
        if gr.resources.is_empty() {
            return true;
        }
        if !gr.resource_names.is_empty() && !has(&gr.resource_names, &info.name) {
            continue;
        }
        for res in &gr.resources {
            if res == &combined || res == "*" {
                return true;
            }
            if !sub.is_empty() && res.strip_prefix("*/") == Some(sub) {
                return true;
            }
            if res.strip_suffix("/*") == Some(info.resource.as_str()) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrokube_machinery::request_info::parse_request_info;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  users: ["system:kube-proxy"]
- level: None
  nonResourceURLs: ["/healthz*", "/version"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["secrets"]
    resourceNames: ["top"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets", "configmaps", "pods/log", "*/status"]
  omitManagedFields: true
- level: Request
  namespaces: ["kube-system"]
  verbs: ["create", "update"]
- level: Metadata
  omitStages: ["ResponseStarted"]
"#;

    fn eval(user: &str, method: &str, path: &str) -> RequestAuditConfig {
        let p = Policy::parse(POLICY).expect("policy parses");
        let info = parse_request_info(method, path, None);
        let user = UserInfo {
            username: user.into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        };
        p.evaluate(&PolicyAttributes {
            user: &user,
            info: &info,
        })
    }

    #[test]
    fn first_matching_rule_decides() {
        assert_eq!(
            eval("system:kube-proxy", "GET", "/api/v1/pods").level,
            Level::None
        );
        assert_eq!(eval("bob", "GET", "/healthz/etcd").level, Level::None);
        assert_eq!(eval("bob", "GET", "/version").level, Level::None);
        assert_eq!(eval("bob", "GET", "/versions").level, Level::Metadata);
        let top = eval("bob", "GET", "/api/v1/namespaces/default/secrets/top");
        assert_eq!(top.level, Level::RequestResponse);
        assert!(!top.omit_managed_fields);
        let other = eval("bob", "GET", "/api/v1/namespaces/default/secrets/other");
        assert_eq!(other.level, Level::Metadata);
        assert!(other.omit_managed_fields);
        assert_eq!(
            eval("bob", "GET", "/api/v1/namespaces/a/pods/p/log").level,
            Level::Metadata
        );
        assert_eq!(
            eval(
                "bob",
                "PUT",
                "/apis/apps/v1/namespaces/a/deployments/d/status"
            )
            .level,
            Level::Metadata
        );
        assert_eq!(
            eval("bob", "POST", "/api/v1/namespaces/kube-system/pods").level,
            Level::Request
        );
        assert_eq!(
            eval("bob", "DELETE", "/api/v1/namespaces/kube-system/pods/x").level,
            Level::Metadata
        );
    }

    #[test]
    fn stages_are_the_union_of_policy_and_rule() {
        let c = eval("bob", "GET", "/api/v1/nodes");
        assert!(c.omit_stages.contains(&Stage::RequestReceived));
        assert!(c.omit_stages.contains(&Stage::ResponseStarted));
        let c = eval("bob", "GET", "/api/v1/namespaces/a/configmaps");
        assert!(!c.omit_stages.contains(&Stage::ResponseStarted));
    }

    #[test]
    fn bad_policies_are_refused() {
        for (text, want) in [
            ("apiVersion: audit.k8s.io/v1\nkind: Policy\n", "0 rules"),
            (
                "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]\n",
                "no kind",
            ),
            (
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Everything}]\n",
                "failed decoding",
            ),
            (
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, nonResourceURLs: [\"/a*b\"]}]\n",
                "final character",
            ),
            (
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, nonResourceURLs: [\"/a\"], namespaces: [x]}]\n",
                "both regular resources",
            ),
        ] {
            let err = Policy::parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}

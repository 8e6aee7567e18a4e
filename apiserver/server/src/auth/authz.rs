//! Authorization: `--authorization-mode`, an ordered union (upstream
//! `pkg/authorization/union`): the first Allow or Deny wins, NoOpinion asks the next, all
//! NoOpinion is a denial. As upstream's `BuildAuthorizer`, members of `system:masters` are
//! allowed before any mode is asked. ABAC (`--authorization-policy-file`) lives here too.

use std::sync::Arc;

use anyhow::Context;
use serde_json::Value;

use super::node::NodeGraph;
use super::rbac::RbacIndex;
use super::webhook::{self, AuthzWebhook};
use super::{Attributes, Decision};
use crate::options::ServerOptions;

/// The group whose members may do anything (upstream `user.SystemPrivilegedGroup`).
pub const SYSTEM_MASTERS: &str = "system:masters";

/// One `--authorization-mode` entry.
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Rbac(Arc<RbacIndex>),
    Abac(Vec<AbacPolicy>),
    Webhook(AuthzWebhook),
    Node(Arc<NodeGraph>, Arc<RbacIndex>),
}

/// The union of authorizers.
pub struct Authorizer {
    modes: Vec<Mode>,
}

/// The union's answer: decision, the reasons given, and an evaluation error (a webhook that
/// could not be asked) if one happened.
pub struct Verdict {
    pub decision: Decision,
    pub reason: String,
    pub error: Option<String>,
}

impl Authorizer {
    /// From `--authorization-mode` and the files the modes need.
    pub fn new(
        opts: &ServerOptions,
        rbac: Arc<RbacIndex>,
        graph: Arc<NodeGraph>,
    ) -> anyhow::Result<Authorizer> {
        let mut modes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for m in opts
            .authorization_mode
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            if !seen.insert(m.to_string()) {
                anyhow::bail!("authorization-mode {m:?} has mode specified more than once");
            }
            modes.push(match m {
                "AlwaysAllow" => Mode::AlwaysAllow,
                "AlwaysDeny" => Mode::AlwaysDeny,
                "RBAC" => Mode::Rbac(rbac.clone()),
                "Node" => Mode::Node(graph.clone(), rbac.clone()),
                "ABAC" => {
                    let f = opts.authorization_policy_file.as_ref().context(
                        "authorization-mode ABAC's authorization policy file not passed",
                    )?;
                    let text = std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?;
                    Mode::Abac(parse_abac(&text).map_err(anyhow::Error::msg)?)
                }
                "Webhook" => {
                    let f = opts.authorization_webhook_config_file.as_ref().context(
                        "authorization-mode Webhook's authorization config file not passed",
                    )?;
                    Mode::Webhook(AuthzWebhook::new(
                        f,
                        webhook::parse_duration(&opts.authorization_webhook_cache_authorized_ttl)?,
                        webhook::parse_duration(&opts.authorization_webhook_cache_unauthorized_ttl)?,
                    )?)
                }
                other => anyhow::bail!(
                    "authorization-mode {other:?} is not a valid mode (AlwaysAllow, AlwaysDeny, ABAC, Webhook, RBAC, Node)"
                ),
            });
        }
        if modes.is_empty() {
            anyhow::bail!("at least one authorization-mode must be passed");
        }
        Ok(Authorizer { modes })
    }

    /// Asks the union.
    pub async fn authorize(&self, a: &Attributes<'_>) -> Verdict {
        if let Some(v) = masters(a) {
            return v;
        }
        let mut state = Chain::default();
        for m in &self.modes {
            let r = match m {
                // Boxed: the HTTP call's future would otherwise make every request's
                // authorization future (and each filter holding it) that large.
                Mode::Webhook(w) => Box::pin(w.authorize(a)).await,
                other => Ok(sync_decision(other, a)),
            };
            if let Some(v) = state.step(r) {
                return v;
            }
        }
        state.finish()
    }

    /// [`Authorizer::authorize`] from synchronous code (the CEL `authorizer` library): every
    /// mode but Webhook is a lookup; a webhook is awaited on this worker thread
    /// (`block_in_place`), or is an error outside a multi-threaded runtime.
    pub fn authorize_blocking(&self, a: &Attributes<'_>) -> Verdict {
        if let Some(v) = masters(a) {
            return v;
        }
        let mut state = Chain::default();
        for m in &self.modes {
            let r = match m {
                Mode::Webhook(w) => match tokio::runtime::Handle::try_current() {
                    Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                        tokio::task::block_in_place(|| h.block_on(w.authorize(a)))
                    }
                    _ => Err(anyhow::anyhow!(
                        "the webhook authorizer cannot be consulted from this context"
                    )),
                },
                other => Ok(sync_decision(other, a)),
            };
            if let Some(v) = state.step(r) {
                return v;
            }
        }
        state.finish()
    }

    /// Whether a rules review of `user` cannot be complete: a mode that cannot list rules
    /// (Webhook, ABAC, AlwaysAllow, AlwaysDeny) or the node authorizer for a node identity
    /// (upstream `RulesFor` of each authorizer).
    pub fn rules_incomplete(&self, user: &crate::UserInfo) -> bool {
        if user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
            return false;
        }
        self.modes.iter().any(|m| match m {
            Mode::Rbac(_) => false,
            Mode::Node(..) => user.username.starts_with("system:node:"),
            _ => true,
        })
    }

    /// Whether RBAC is one of the modes (escalation checks apply).
    pub fn has_rbac(&self) -> bool {
        self.modes.iter().any(|m| matches!(m, Mode::Rbac(_)))
    }
}

/// system:masters is allowed everything, before any mode is asked.
fn masters(a: &Attributes<'_>) -> Option<Verdict> {
    a.user
        .groups
        .iter()
        .any(|g| g == SYSTEM_MASTERS)
        .then(|| Verdict {
            decision: Decision::Allow,
            reason: String::new(),
            error: None,
        })
}

/// The decision of a mode that needs no IO (every mode but Webhook, which answers NoOpinion
/// here and is consulted by the callers).
fn sync_decision(m: &Mode, a: &Attributes<'_>) -> (Decision, String) {
    match m {
        Mode::AlwaysAllow => (Decision::Allow, String::new()),
        Mode::AlwaysDeny => (Decision::NoOpinion, "Everything is forbidden.".to_string()),
        Mode::Rbac(idx) => {
            if idx.allows(a) {
                (Decision::Allow, String::new())
            } else {
                (Decision::NoOpinion, String::new())
            }
        }
        Mode::Node(graph, idx) => graph.authorize(a, idx),
        Mode::Abac(policies) => {
            if policies.iter().any(|p| p.matches(a)) {
                (Decision::Allow, String::new())
            } else {
                (Decision::NoOpinion, "No policy matched.".to_string())
            }
        }
        Mode::Webhook(_) => (Decision::NoOpinion, String::new()),
    }
}

/// The ordered union's state: reasons so far and the last webhook error.
#[derive(Default)]
struct Chain {
    reasons: Vec<String>,
    error: Option<String>,
}

impl Chain {
    /// One mode's answer; `Some` when it decides.
    fn step(&mut self, r: anyhow::Result<(Decision, String)>) -> Option<Verdict> {
        let (d, reason) = r.unwrap_or_else(|e| {
            self.error = Some(e.to_string());
            (Decision::NoOpinion, String::new())
        });
        if !reason.is_empty() {
            self.reasons.push(reason);
        }
        (d != Decision::NoOpinion).then(|| Verdict {
            decision: d,
            reason: self.reasons.join("\n"),
            error: self.error.clone(),
        })
    }

    fn finish(self) -> Verdict {
        Verdict {
            decision: Decision::NoOpinion,
            reason: self.reasons.join("\n"),
            error: self.error,
        }
    }
}

/// One ABAC policy line (`abac.authorization.kubernetes.io/v1beta1`, upstream
/// `pkg/auth/authorizer/abac`).
#[derive(Debug, Default, Clone)]
pub struct AbacPolicy {
    user: String,
    group: String,
    readonly: bool,
    api_group: String,
    resource: String,
    namespace: String,
    non_resource_path: String,
}

/// Parses a policy file: one JSON object per line, blank lines and `#` comments skipped.
pub fn parse_abac(text: &str) -> Result<Vec<AbacPolicy>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("policy file line {}: {e}", i + 1))?;
        let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if api != "abac.authorization.kubernetes.io/v1beta1"
            || v.get("kind").and_then(Value::as_str) != Some("Policy")
        {
            return Err(format!(
                "policy file line {}: want apiVersion abac.authorization.kubernetes.io/v1beta1, kind Policy",
                i + 1
            ));
        }
        let spec = v.get("spec").cloned().unwrap_or_default();
        let s = |k: &str| {
            spec.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        out.push(AbacPolicy {
            user: s("user"),
            group: s("group"),
            readonly: spec
                .get("readonly")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            api_group: s("apiGroup"),
            resource: s("resource"),
            namespace: s("namespace"),
            non_resource_path: s("nonResourcePath"),
        });
    }
    Ok(out)
}

impl AbacPolicy {
    fn subject_matches(&self, a: &Attributes<'_>) -> bool {
        let mut matched = false;
        if !self.user.is_empty() {
            if self.user != "*" && self.user != a.user.username {
                return false;
            }
            matched = true;
        }
        if !self.group.is_empty() {
            if self.group != "*" && !a.user.groups.contains(&self.group) {
                return false;
            }
            matched = true;
        }
        matched
    }

    /// Upstream `matches`.
    pub fn matches(&self, a: &Attributes<'_>) -> bool {
        if !self.subject_matches(a) {
            return false;
        }
        let read_only = matches!(a.verb, "get" | "list" | "watch");
        if self.readonly && !read_only {
            return false;
        }
        if a.resource_request {
            (self.namespace == "*" || self.namespace == a.namespace)
                && (self.resource == "*" || self.resource == a.resource)
                && (self.api_group == "*" || self.api_group == a.api_group)
        } else {
            self.non_resource_path == "*"
                || self.non_resource_path == a.path
                || (self.non_resource_path.ends_with('*')
                    && a.path
                        .starts_with(self.non_resource_path.trim_end_matches('*')))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserInfo;

    #[test]
    fn abac_issue_policy() {
        let p = parse_abac(
            r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "bob", "namespace": "lfs158", "resource": "pods", "readonly": true}}"#,
        )
        .expect("parse");
        let bob = UserInfo {
            username: "bob".into(),
            ..Default::default()
        };
        let mut a = Attributes::non_resource(&bob, "list", "");
        a.resource_request = true;
        a.namespace = "lfs158";
        a.resource = "pods";
        assert!(p[0].matches(&a));
        a.verb = "create";
        assert!(!p[0].matches(&a));
        a.verb = "get";
        a.namespace = "default";
        assert!(!p[0].matches(&a));
        assert!(parse_abac("{not json").is_err());
        assert!(parse_abac(r#"{"apiVersion":"v1","kind":"Policy"}"#).is_err());
    }
}

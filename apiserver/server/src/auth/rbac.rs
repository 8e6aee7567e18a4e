//! RBAC (upstream `plugin/pkg/auth/authorizer/rbac`): PolicyRule matching with wildcards,
//! and an in-memory index of Roles, ClusterRoles, RoleBindings and ClusterRoleBindings fed by
//! a watch of the store (`rbac_feed.rs`). A request costs one hash lookup per subject the user
//! is known by (user name, each group) plus the rules of the bindings found there — never a
//! scan of every binding.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::Attributes;
use crate::UserInfo;

/// One PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    /// From a JSON PolicyRule.
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(v.get("verbs")),
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
        }
    }

    /// As a JSON PolicyRule (empty lists omitted, as upstream serializes them).
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("verbs".into(), self.verbs.clone().into());
        for (k, v) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !v.is_empty() {
                m.insert(k.into(), v.clone().into());
            }
        }
        Value::Object(m)
    }

    /// The rules of a Role/ClusterRole object.
    pub fn list_from(obj: &Value) -> Vec<Rule> {
        obj.get("rules")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Rule::from_json).collect())
            .unwrap_or_default()
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    /// Upstream `RuleAllows`.
    pub fn allows(&self, a: &Attributes<'_>) -> bool {
        if !a.resource_request {
            return self.verb_matches(a.verb) && url_matches(&self.non_resource_urls, a.path);
        }
        self.verb_matches(a.verb)
            && self.api_groups.iter().any(|g| g == "*" || g == a.api_group)
            && resource_matches(&self.resources, a.resource, a.subresource)
            && (self.resource_names.is_empty()
                || (!a.name.is_empty() && self.resource_names.iter().any(|n| n == a.name)))
    }
}

/// Upstream `ResourceMatches`: `*`, exact `resource[/subresource]`, or `*/subresource`.
fn resource_matches(rules: &[String], resource: &str, sub: &str) -> bool {
    rules.iter().any(|r| {
        if r == "*" {
            return true;
        }
        if sub.is_empty() {
            return r == resource;
        }
        match r.split_once('/') {
            Some((res, s)) => s == sub && (res == resource || res == "*"),
            None => false,
        }
    })
}

/// Upstream `NonResourceURLMatches`: `*`, exact, or a prefix ending in `*`.
fn url_matches(rules: &[String], path: &str) -> bool {
    rules.iter().any(|r| {
        r == "*"
            || r == path
            || r.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// A binding's subject as a lookup key: `u:<user>` or `g:<group>`.
fn subject_keys(binding: &Value, binding_ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in binding
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = s.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = s.get("name").and_then(Value::as_str).unwrap_or("");
        match kind {
            "User" => out.push(format!("u:{name}")),
            "Group" => out.push(format!("g:{name}")),
            "ServiceAccount" => {
                let ns = s
                    .get("namespace")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .unwrap_or(binding_ns);
                out.push(format!("u:system:serviceaccount:{ns}:{name}"));
            }
            _ => {}
        }
    }
    out
}

/// A role reference resolved at lookup time: `(namespace or "" for ClusterRole, name)`.
type RoleKey = (String, String);

#[derive(Clone, Debug)]
struct BindingEntry {
    /// `None`: a ClusterRoleBinding (applies everywhere).
    namespace: Option<String>,
    role: RoleKey,
    subjects: Vec<String>,
}

#[derive(Default)]
struct Index {
    roles: HashMap<RoleKey, Arc<Vec<Rule>>>,
    bindings: HashMap<String, BindingEntry>,
    by_subject: HashMap<String, Vec<String>>,
}

/// The kinds the index holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

impl Kind {
    /// The storage segment of the kind.
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Role => "roles",
            Kind::ClusterRole => "clusterroles",
            Kind::RoleBinding => "rolebindings",
            Kind::ClusterRoleBinding => "clusterrolebindings",
        }
    }
}

/// The RBAC index.
#[derive(Default)]
pub struct RbacIndex {
    inner: RwLock<Index>,
    /// Every ClusterRole object (the aggregation controller reads them).
    cluster_roles: RwLock<BTreeMap<String, Value>>,
}

fn meta<'a>(obj: &'a Value, f: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{f}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl RbacIndex {
    /// Applies a put (`Some`) or delete (`None`) of the object at `key` (`ns/name` or `name`).
    pub fn apply(&self, kind: Kind, obj: Option<&Value>, ns: &str, name: &str) {
        let Ok(mut idx) = self.inner.write() else {
            return;
        };
        match kind {
            Kind::Role | Kind::ClusterRole => {
                let key = (
                    if kind == Kind::Role { ns } else { "" }.to_string(),
                    name.to_string(),
                );
                match obj {
                    Some(o) => {
                        idx.roles.insert(key, Arc::new(Rule::list_from(o)));
                    }
                    None => {
                        idx.roles.remove(&key);
                    }
                }
                if kind == Kind::ClusterRole
                    && let Ok(mut all) = self.cluster_roles.write()
                {
                    match obj {
                        Some(o) => all.insert(name.to_string(), o.clone()),
                        None => all.remove(name),
                    };
                }
            }
            Kind::RoleBinding | Kind::ClusterRoleBinding => {
                let id = format!("{}/{ns}/{name}", kind.segment());
                if let Some(old) = idx.bindings.remove(&id) {
                    for s in &old.subjects {
                        if let Some(v) = idx.by_subject.get_mut(s) {
                            v.retain(|b| b != &id);
                            if v.is_empty() {
                                idx.by_subject.remove(s);
                            }
                        }
                    }
                }
                let Some(o) = obj else { return };
                let role_kind = o
                    .pointer("/roleRef/kind")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let role_name = o
                    .pointer("/roleRef/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let role = match (kind, role_kind) {
                    (Kind::RoleBinding, "Role") => (ns.to_string(), role_name.to_string()),
                    (_, "ClusterRole") => (String::new(), role_name.to_string()),
                    _ => return,
                };
                let mut subjects = subject_keys(o, ns);
                subjects.sort();
                subjects.dedup();
                for s in &subjects {
                    idx.by_subject
                        .entry(s.clone())
                        .or_default()
                        .push(id.clone());
                }
                let namespace = (kind == Kind::RoleBinding).then(|| ns.to_string());
                idx.bindings.insert(
                    id,
                    BindingEntry {
                        namespace,
                        role,
                        subjects,
                    },
                );
            }
        }
    }

    /// Drops every object of one kind (before a re-list).
    pub fn clear(&self, kind: Kind) {
        let keys: Vec<(String, String)> = match self.inner.read() {
            Ok(idx) => match kind {
                Kind::Role => idx
                    .roles
                    .keys()
                    .filter(|k| !k.0.is_empty())
                    .cloned()
                    .collect(),
                Kind::ClusterRole => idx
                    .roles
                    .keys()
                    .filter(|k| k.0.is_empty())
                    .cloned()
                    .collect(),
                _ => idx
                    .bindings
                    .keys()
                    .filter_map(|id| {
                        let rest = id.strip_prefix(kind.segment())?.strip_prefix('/')?;
                        let (ns, name) = rest.split_once('/')?;
                        Some((ns.to_string(), name.to_string()))
                    })
                    .collect(),
            },
            Err(_) => return,
        };
        for (ns, name) in keys {
            self.apply(kind, None, &ns, &name);
        }
    }

    /// Visits the rules that apply to `user` in `namespace` ("" = cluster scope only), each
    /// with where it came from; stops when `visit` returns true.
    pub fn visit_rules(
        &self,
        user: &UserInfo,
        namespace: &str,
        visit: &mut dyn FnMut(&Rule) -> bool,
    ) -> bool {
        let Ok(idx) = self.inner.read() else {
            return false;
        };
        let user_key = format!("u:{}", user.username);
        let group_keys = user.groups.iter().map(|g| format!("g:{g}"));
        for key in std::iter::once(user_key).chain(group_keys) {
            let Some(ids) = idx.by_subject.get(&key) else {
                continue;
            };
            for id in ids {
                let Some(b) = idx.bindings.get(id) else {
                    continue;
                };
                if let Some(ns) = &b.namespace
                    && ns != namespace
                {
                    continue;
                }
                let Some(rules) = idx.roles.get(&b.role) else {
                    continue;
                };
                if rules.iter().any(&mut *visit) {
                    return true;
                }
            }
        }
        false
    }

    /// Whether some rule bound to the user allows the request.
    pub fn allows(&self, a: &Attributes<'_>) -> bool {
        self.visit_rules(a.user, a.namespace, &mut |r| r.allows(a))
    }

    /// Every rule that applies to the user in `namespace` (SelfSubjectRulesReview, escalation).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<Rule> {
        let mut out = Vec::new();
        self.visit_rules(user, namespace, &mut |r| {
            out.push(r.clone());
            false
        });
        out
    }

    /// The rules of a role reference (`ns` "" for a ClusterRole).
    pub fn role_rules(&self, ns: &str, name: &str) -> Option<Arc<Vec<Rule>>> {
        self.inner
            .read()
            .ok()?
            .roles
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// A snapshot of every ClusterRole object.
    pub fn cluster_roles(&self) -> BTreeMap<String, Value> {
        self.cluster_roles
            .read()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

/// Name and namespace of an object as the index keys it.
pub fn object_ns_name(obj: &Value) -> (&str, &str) {
    (meta(obj, "namespace"), meta(obj, "name"))
}

/// Whether `owner` rules cover every right `servant` grants (upstream `validation.Covers`):
/// the servant rule is broken down into single (verb, group, resource, name) and
/// (verb, URL) rights, each of which some owner rule must allow. Returns the rights missing.
pub fn uncovered(owner: &[Rule], servant: &Rule) -> Vec<Rule> {
    let mut missing = Vec::new();
    for verb in &servant.verbs {
        for url in &servant.non_resource_urls {
            let ok = owner.iter().any(|o| {
                o.verbs.iter().any(|v| v == "*" || v == verb)
                    && o.non_resource_urls.iter().any(|u| {
                        u == "*"
                            || u == url
                            || u.strip_suffix('*').is_some_and(|p| url.starts_with(p))
                    })
            });
            if !ok {
                missing.push(Rule {
                    verbs: vec![verb.clone()],
                    non_resource_urls: vec![url.clone()],
                    ..Default::default()
                });
            }
        }
        for group in &servant.api_groups {
            for resource in &servant.resources {
                let names: Vec<Option<&String>> = if servant.resource_names.is_empty() {
                    vec![None]
                } else {
                    servant.resource_names.iter().map(Some).collect()
                };
                for name in names {
                    let ok = owner.iter().any(|o| {
                        o.verbs.iter().any(|v| v == "*" || v == verb)
                            && o.api_groups.iter().any(|g| g == "*" || g == group)
                            && o.resources.iter().any(|r| {
                                r == "*"
                                    || r == resource
                                    || r.strip_prefix("*/").is_some_and(|s| {
                                        resource.split_once('/').is_some_and(|(_, rs)| rs == s)
                                    })
                            })
                            && (o.resource_names.is_empty()
                                || name.is_some_and(|n| o.resource_names.contains(n)))
                    });
                    if !ok {
                        missing.push(Rule {
                            verbs: vec![verb.clone()],
                            api_groups: vec![group.clone()],
                            resources: vec![resource.clone()],
                            resource_names: name.cloned().into_iter().collect(),
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }
    missing
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", inner.join(" "))
}

/// Upstream `rbacv1helpers.CompactString`.
pub fn compact_string(r: &Rule) -> String {
    let mut parts = Vec::new();
    if !r.api_groups.is_empty() {
        parts.push(format!("APIGroups:{}", go_quoted_list(&r.api_groups)));
    }
    if !r.resources.is_empty() {
        parts.push(format!("Resources:{}", go_quoted_list(&r.resources)));
    }
    if !r.non_resource_urls.is_empty() {
        parts.push(format!(
            "NonResourceURLs:{}",
            go_quoted_list(&r.non_resource_urls)
        ));
    }
    if !r.resource_names.is_empty() {
        parts.push(format!(
            "ResourceNames:{}",
            go_quoted_list(&r.resource_names)
        ));
    }
    if !r.verbs.is_empty() {
        parts.push(format!("Verbs:{}", go_quoted_list(&r.verbs)));
    }
    format!("{{{}}}", parts.join(", "))
}

/// Merges single-verb rights that differ only in verb (upstream `CompactRules`), sorted.
pub fn compact_rules(rules: Vec<Rule>) -> Vec<Rule> {
    type Key = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);
    let mut merged: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for r in rules {
        let key = (
            r.api_groups,
            r.resources,
            r.resource_names,
            r.non_resource_urls,
        );
        let verbs = merged.entry(key).or_default();
        for v in r.verbs {
            if !verbs.contains(&v) {
                verbs.push(v);
            }
        }
    }
    merged
        .into_iter()
        .map(
            |((api_groups, resources, resource_names, non_resource_urls), verbs)| Rule {
                verbs,
                api_groups,
                resources,
                resource_names,
                non_resource_urls,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attrs<'a>(
        u: &'a UserInfo,
        verb: &'a str,
        ns: &'a str,
        res: &'a str,
        sub: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            user: u,
            verb,
            resource_request: true,
            namespace: ns,
            resource: res,
            subresource: sub,
            ..Attributes::non_resource(u, verb, "")
        }
    }

    #[test]
    fn bindings_index_and_rules() {
        let idx = RbacIndex::default();
        let role = json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list"]}]});
        idx.apply(Kind::Role, Some(&role), "lfs158", "pod-reader");
        let rb = json!({"subjects": [{"kind": "User", "name": "bob"}], "roleRef": {"kind": "Role", "name": "pod-reader"}});
        idx.apply(Kind::RoleBinding, Some(&rb), "lfs158", "pod-read-access");
        let bob = UserInfo {
            username: "bob".into(),
            ..Default::default()
        };
        assert!(idx.allows(&attrs(&bob, "list", "lfs158", "pods", "")));
        assert!(!idx.allows(&attrs(&bob, "list", "default", "pods", "")));
        assert!(!idx.allows(&attrs(&bob, "delete", "lfs158", "pods", "")));
        assert!(!idx.allows(&attrs(&bob, "get", "lfs158", "pods", "log")));
        idx.apply(Kind::RoleBinding, None, "lfs158", "pod-read-access");
        assert!(!idx.allows(&attrs(&bob, "list", "lfs158", "pods", "")));
    }

    #[test]
    fn wildcards_and_urls() {
        let r = Rule::from_json(
            &json!({"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get"]}),
        );
        let u = UserInfo::default();
        assert!(r.allows(&attrs(&u, "get", "ns", "deployments", "scale")));
        assert!(!r.allows(&attrs(&u, "get", "ns", "deployments", "")));
        let url =
            Rule::from_json(&json!({"nonResourceURLs": ["/apis/*", "/version"], "verbs": ["get"]}));
        assert!(url.allows(&Attributes::non_resource(&u, "get", "/apis/apps/v1")));
        assert!(url.allows(&Attributes::non_resource(&u, "get", "/version")));
        assert!(!url.allows(&Attributes::non_resource(&u, "get", "/metrics")));
    }

    #[test]
    fn coverage_and_messages() {
        let owner = vec![Rule::from_json(
            &json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}),
        )];
        let want = Rule::from_json(
            &json!({"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "delete"]}),
        );
        let missing = compact_rules(uncovered(&owner, &want));
        let text: Vec<String> = missing.iter().map(compact_string).collect();
        assert_eq!(
            text,
            vec![
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete"]}"#,
            ]
        );
    }
}

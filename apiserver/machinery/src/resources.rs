//! The one table of resources: built-ins (from k8s-openapi metadata plus upstream's discovery
//! facts) and, later, CRDs added at run time. Routes, discovery, OpenAPI and RBAC resource names
//! all come from here.

/// How a resource is scoped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// One subresource of a resource (`pods/status`, `deployments/scale`, `pods/log`...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubresourceInfo {
    /// The subresource name (`status`, `scale`, `log`, `exec`, `eviction`, `binding`...).
    pub name: &'static str,
    /// The kind served at the subresource (`Pod` for status, `Scale` for scale...).
    pub kind: &'static str,
    /// The group of that kind when it differs from the parent's (`autoscaling` for Scale,
    /// `policy` for Eviction); empty when it is the parent's.
    pub group: &'static str,
    /// The version of that kind when it differs from the parent's.
    pub version: &'static str,
    /// Verbs upstream lists for the subresource in discovery.
    pub verbs: &'static [&'static str],
}

/// Generates a kind's JSON schema from k8s-openapi's schemars support.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// One resource at one group-version.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    /// API group; empty for the core ("legacy") group served under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The kind of the list (`PodList`).
    pub list_kind: &'static str,
    /// Plural, lower-case resource name used in URLs (`pods`).
    pub plural: &'static str,
    /// Singular name (`pod`).
    pub singular: &'static str,
    pub scope: Scope,
    /// Verbs upstream lists in discovery, in upstream's order.
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [SubresourceInfo],
    /// True for resources that are not stored (TokenReview, SubjectAccessReview, ...): they
    /// accept `create` and answer without persisting anything.
    pub virtual_only: bool,
    /// The OpenAPI definition name of the kind (`io.k8s.api.core.v1.Pod`).
    pub schema_name: &'static str,
    /// The kind's schema (None for kinds k8s-openapi does not describe).
    pub schema: Option<SchemaFn>,
}

impl ResourceInfo {
    /// `group/version`, or `version` for the core group (the `apiVersion` field value).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&SubresourceInfo> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

//! The one table of resources: built-ins (from k8s-openapi metadata plus upstream's discovery
//! facts) and, later, CRDs added at run time. Routes, discovery, OpenAPI and RBAC resource names
//! all come from here.
//!
//! Start with [`builtin_resources`] (the table itself lives in `builtin.rs`), [`find`] and
//! [`storage_version_hash`]. The discovery documents are built from this table by
//! [`crate::discovery`].

mod builtin;
mod table_str;

pub use table_str::{Iter as TableListIter, TableList, TableStr};

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::OnceLock;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

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
    /// The kind served at the subresource (`Pod` for status, `Scale` for scale...); empty
    /// for the parent's own kind (custom resources' `status`). Read it with
    /// [`SubresourceInfo::kind`].
    own_kind: &'static str,
    /// The group of that kind when it differs from the parent's (`autoscaling` for Scale,
    /// `policy` for Eviction); empty when it is the parent's.
    pub group: &'static str,
    /// The version of that kind when it differs from the parent's.
    pub version: &'static str,
    /// Verbs upstream lists for the subresource in discovery.
    pub verbs: &'static [&'static str],
}

impl SubresourceInfo {
    /// A subresource served with `kind` of group `group` and `version` (both empty: the
    /// parent's group-version).
    pub const fn new(
        name: &'static str,
        kind: &'static str,
        group: &'static str,
        version: &'static str,
        verbs: &'static [&'static str],
    ) -> SubresourceInfo {
        SubresourceInfo {
            name,
            own_kind: kind,
            group,
            version,
            verbs,
        }
    }

    /// A subresource served with its parent's own kind (upstream's `status`).
    pub const fn parent_kind(name: &'static str, verbs: &'static [&'static str]) -> Self {
        SubresourceInfo::new(name, "", "", "", verbs)
    }

    /// The kind served at the subresource of `parent`.
    pub fn kind<'a>(&'a self, parent: &'a ResourceInfo) -> &'a str {
        if self.own_kind.is_empty() {
            &parent.kind
        } else {
            self.own_kind
        }
    }
}

/// Generates a kind's JSON schema from k8s-openapi's schemars support.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// One resource at one group-version.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    /// API group; empty for the core ("legacy") group served under `/api`.
    pub group: TableStr,
    pub version: TableStr,
    pub kind: TableStr,
    /// The kind of the list (`PodList`).
    pub list_kind: TableStr,
    /// Plural, lower-case resource name used in URLs (`pods`).
    pub plural: TableStr,
    /// Singular name (`pod`).
    pub singular: TableStr,
    pub scope: Scope,
    /// Verbs upstream lists in discovery, in upstream's order.
    pub verbs: &'static [&'static str],
    pub short_names: TableList,
    pub categories: TableList,
    pub subresources: &'static [SubresourceInfo],
    /// True for resources that are not stored (TokenReview, SubjectAccessReview, ...): they
    /// accept `create` and answer without persisting anything.
    pub virtual_only: bool,
    /// The OpenAPI definition name of the kind (`io.k8s.api.core.v1.Pod`).
    pub schema_name: TableStr,
    /// The kind's schema (None for kinds k8s-openapi does not describe).
    pub schema: Option<SchemaFn>,
    /// The group-version whose kind objects of this resource are stored as (upstream's storage
    /// version; it feeds `storageVersionHash`). Usually the entry's own group-version;
    /// `autoscaling/v1` HPAs are stored as `autoscaling/v2`, `events.k8s.io/v1` Events as core
    /// `v1`. `None` for resources with no storage of their own (virtual reviews, `bindings`,
    /// `componentstatuses`).
    pub storage: Option<GroupVersion>,
}

/// A group and a version (`""`/`v1` for core).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupVersion {
    pub group: TableStr,
    pub version: TableStr,
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

    /// The kind served at subresource `sub` of this resource.
    pub fn subresource_kind<'a>(&'a self, sub: &'a SubresourceInfo) -> &'a str {
        sub.kind(self)
    }

    /// True when this entry is the one whose group-version objects are stored as.
    pub fn is_storage_version(&self) -> bool {
        self.storage
            .as_ref()
            .is_some_and(|s| s.group == self.group && s.version == self.version)
    }

    /// `storageVersionHash` for discovery: the hash of the storage version's
    /// `group/version/kind`; `None` when the resource has no storage of its own.
    pub fn storage_version_hash(&self) -> Option<String> {
        self.storage
            .as_ref()
            .map(|s| storage_version_hash(&s.group, &s.version, &self.kind))
    }
}

/// Every built-in resource of Kubernetes 1.35 served by default, core first, then groups in
/// upstream's `/apis` order; within a group-version, alphabetical by plural.
///
/// Group-versions upstream serves only when asked ([`OPTIONAL_GROUP_VERSIONS`]) are in the
/// table when [`enable_optional`] named them before the table was first read.
pub fn builtin_resources() -> &'static [ResourceInfo] {
    TABLE.get_or_init(|| {
        let mut table = builtin::table();
        let enabled = ENABLED_OPTIONAL.get_or_init(Vec::new);
        for gv in enabled {
            let extra = builtin::optional(gv);
            let at = table
                .iter()
                .rposition(|r| extra.first().is_some_and(|e| e.group == r.group))
                .map_or(table.len(), |i| i + 1);
            table.splice(at..at, extra);
        }
        table
    })
}

static TABLE: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
static ENABLED_OPTIONAL: OnceLock<Vec<String>> = OnceLock::new();

/// Built-in group-versions that Kubernetes 1.35 does not serve by default (beta APIs, turned
/// on with `--runtime-config=<group>/<version>=true`).
pub const OPTIONAL_GROUP_VERSIONS: &[&str] = &["admissionregistration.k8s.io/v1beta1"];

/// Serves the optional group-versions `gvs` (each one of [`OPTIONAL_GROUP_VERSIONS`]). Must be
/// called once, before [`builtin_resources`] is first read (the server does it first thing).
pub fn enable_optional(gvs: &[&str]) -> Result<(), String> {
    if let Some(gv) = gvs.iter().find(|g| !OPTIONAL_GROUP_VERSIONS.contains(g)) {
        return Err(format!("{gv} is not an optional group-version"));
    }
    let want: Vec<String> = gvs.iter().map(|g| g.to_string()).collect();
    let set = ENABLED_OPTIONAL.get_or_init(|| want.clone());
    if *set != want {
        // The table was read (with no optional group-version) or configured before.
        return Err("the resource table was already built".into());
    }
    Ok(())
}

/// Every built-in resource, those of every optional group-version included: what the
/// generated tables cover.
#[cfg(test)]
pub(crate) fn every_builtin_resource() -> Vec<ResourceInfo> {
    let mut all = builtin::table();
    for gv in OPTIONAL_GROUP_VERSIONS {
        all.extend(builtin::optional(gv));
    }
    all
}

/// The group-versions served by default (`v1` for core, `<group>/<version>` otherwise), without
/// reading the table (so [`enable_optional`] may still be called).
pub fn builtin_group_versions() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in builtin::table() {
        let gv = if r.group.is_empty() {
            r.version.to_string()
        } else {
            format!("{}/{}", r.group, r.version)
        };
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out.push("api/v1".into());
    out
}

/// Whether the optional group-version `gv` is served.
pub fn optional_enabled(gv: &str) -> bool {
    ENABLED_OPTIONAL
        .get()
        .is_some_and(|v| v.iter().any(|g| g == gv))
}

/// The built-in resource `plural` at `group`/`version` (`""` for core).
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    builtin_resources()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Upstream's `storageVersionHash`: standard base64 of the first 8 bytes of
/// sha256(`"group/version/kind"`) (core: `"/v1/Pod"`).
pub fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    let digest = Sha256::digest(format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// Upstream's order of the built-in groups in `/apis` (core, served at `/api`, is not listed).
pub const GROUP_ORDER: &[&str] = &[
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "resource.k8s.io",
    "storagemigration.k8s.io",
];

/// Group → preferred version for every built-in group (core `""` first, then upstream's
/// `/apis` order). Autoscaling prefers `v2`, as upstream.
pub fn preferred_versions() -> &'static [(&'static str, &'static str)] {
    static PREFERRED: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    PREFERRED.get_or_init(|| {
        let mut out: Vec<(&'static str, &'static str)> = Vec::new();
        for group in std::iter::once("").chain(GROUP_ORDER.iter().copied()) {
            let best = builtin_resources()
                .iter()
                .filter(|r| r.group == group)
                .map(|r| &*r.version)
                .min_by(|a, b| compare_versions(a, b));
            if let Some(version) = best {
                out.push((group, version));
            }
        }
        out
    })
}

/// Orders versions the way upstream prefers them (kube-aware version priority): GA before beta
/// before alpha, higher major first, then higher minor (`v2` < `v1` < `v1beta2` < `v1beta1` <
/// `v1alpha1` < `foo`); versions that do not look like Kubernetes versions sort last,
/// alphabetically. `Ordering::Less` means "preferred".
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (parse_version(a), parse_version(b)) {
        (Some(x), Some(y)) => {
            // Stability first (GA=2, beta=1, alpha=0), then major, then minor; all descending.
            (y.1, y.0, y.2).cmp(&(x.1, x.0, x.2))
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// `(major, stability, minor)` of a Kubernetes-style version (`v1`, `v2beta1`, `v1alpha3`).
fn parse_version(v: &str) -> Option<(u64, u8, u64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let major: u64 = rest[..digits].parse().ok()?;
    if major == 0 {
        return None;
    }
    let tail = &rest[digits..];
    if tail.is_empty() {
        return Some((major, 2, 0));
    }
    let (stability, minor) = if let Some(m) = tail.strip_prefix("beta") {
        (1, m)
    } else if let Some(m) = tail.strip_prefix("alpha") {
        (0, m)
    } else {
        return None;
    };
    if minor.is_empty() || !minor.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((major, stability, minor.parse().ok()?))
}

/// Maps k8s-openapi's scope marker types to [`Scope`].
pub trait ScopeOf {
    const SCOPE: Scope;
}

impl ScopeOf for k8s_openapi::NamespaceResourceScope {
    const SCOPE: Scope = Scope::Namespaced;
}

impl ScopeOf for k8s_openapi::ClusterResourceScope {
    const SCOPE: Scope = Scope::Cluster;
}

/// The `status` subresource of `T` (served with `T`'s own kind, verbs get/patch/update).
pub const fn status_of<T: k8s_openapi::Resource>() -> SubresourceInfo {
    SubresourceInfo::new("status", T::KIND, "", "", &["get", "patch", "update"])
}

/// The discovery facts of one entry that k8s-openapi does not carry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    verbs: &'static [&'static str],
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [SubresourceInfo],
    virtual_only: bool,
    /// `None`: stored in its own group-version; `Some(None)`: not stored;
    /// `Some(Some((group, version)))`: stored as that group-version.
    storage: Option<Option<(&'static str, &'static str)>>,
}

impl Facts {
    pub(crate) const fn new(verbs: &'static [&'static str]) -> Self {
        Facts {
            verbs,
            short_names: &[],
            categories: &[],
            subresources: &[],
            virtual_only: false,
            storage: None,
        }
    }

    pub(crate) const fn short(mut self, short_names: &'static [&'static str]) -> Self {
        self.short_names = short_names;
        self
    }

    pub(crate) const fn cat(mut self, categories: &'static [&'static str]) -> Self {
        self.categories = categories;
        self
    }

    pub(crate) const fn subs(mut self, subresources: &'static [SubresourceInfo]) -> Self {
        self.subresources = subresources;
        self
    }

    /// Not stored and answered on create without persisting (reviews).
    pub(crate) const fn virtual_only(mut self) -> Self {
        self.virtual_only = true;
        self.storage = Some(None);
        self
    }

    /// No storage of its own (no `storageVersionHash`).
    pub(crate) const fn not_stored(mut self) -> Self {
        self.storage = Some(None);
        self
    }

    pub(crate) const fn stored_as(mut self, group: &'static str, version: &'static str) -> Self {
        self.storage = Some(Some((group, version)));
        self
    }
}

/// Upstream's singular name is the lower-cased kind; computed once per entry at table build.
fn leak_lowercase(kind: &'static str) -> &'static str {
    if kind.bytes().all(|b| !b.is_ascii_uppercase()) {
        return kind;
    }
    // One string per built-in entry, built once for the process lifetime.
    kind.to_ascii_lowercase().leak()
}

fn schema_name_of<T: schemars::JsonSchema>() -> &'static str {
    match T::schema_name() {
        Cow::Borrowed(name) => name,
        Cow::Owned(name) => name.leak(),
    }
}

/// An entry for a resource k8s-openapi describes (kind, group, version, plural, scope from it).
pub(crate) fn plain<T>(facts: Facts) -> ResourceInfo
where
    T: k8s_openapi::Resource + schemars::JsonSchema,
    T::Scope: ScopeOf,
{
    entry::<T>("", facts)
}

/// Like [`plain`], with the list kind from `ListableResource::LIST_KIND`.
pub(crate) fn listable<T>(facts: Facts) -> ResourceInfo
where
    T: k8s_openapi::ListableResource + schemars::JsonSchema,
    T::Scope: ScopeOf,
{
    entry::<T>(T::LIST_KIND, facts)
}

fn entry<T>(list_kind: &'static str, facts: Facts) -> ResourceInfo
where
    T: k8s_openapi::Resource + schemars::JsonSchema,
    T::Scope: ScopeOf,
{
    let (group, version) = facts
        .storage
        .unwrap_or(Some((T::GROUP, T::VERSION)))
        .unzip();
    let storage = group.zip(version).map(|(group, version)| GroupVersion {
        group: TableStr::Static(group),
        version: TableStr::Static(version),
    });
    ResourceInfo {
        group: TableStr::Static(T::GROUP),
        version: TableStr::Static(T::VERSION),
        kind: TableStr::Static(T::KIND),
        list_kind: TableStr::Static(list_kind),
        plural: TableStr::Static(T::URL_PATH_SEGMENT),
        singular: TableStr::Static(leak_lowercase(T::KIND)),
        scope: <T::Scope as ScopeOf>::SCOPE,
        verbs: facts.verbs,
        short_names: TableList::Static(facts.short_names),
        categories: TableList::Static(facts.categories),
        subresources: facts.subresources,
        virtual_only: facts.virtual_only,
        schema_name: TableStr::Static(schema_name_of::<T>()),
        schema: Some(T::json_schema),
        storage,
    }
}

#[cfg(test)]
mod tests;

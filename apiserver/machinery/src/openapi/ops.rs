//! Paths and operations: one neutral model of upstream's REST operations per resource and
//! subresource (operationIds, parameters, media types, responses, `x-kubernetes-action`),
//! rendered to v2 and v3 by [`super::render`].

use super::facts::Facts;
use super::params::{self, Param};
use super::schema::names;
use crate::resources::{ResourceInfo, SubresourceInfo};

/// The HTTP method of an operation (PathItem field order in v2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
    Options,
    Head,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Put => "put",
            Self::Post => "post",
            Self::Delete => "delete",
            Self::Options => "options",
            Self::Head => "head",
            Self::Patch => "patch",
        }
    }

    fn camel(self) -> &'static str {
        match self {
            Self::Get => "Get",
            Self::Put => "Put",
            Self::Post => "Post",
            Self::Delete => "Delete",
            Self::Options => "Options",
            Self::Head => "Head",
            Self::Patch => "Patch",
        }
    }
}

/// What a body or response carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A definition.
    Def(String),
    /// A plain string (logs, connect subresources).
    String,
}

/// One response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resp {
    pub code: &'static str,
    pub description: &'static str,
    pub payload: Option<Payload>,
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub method: Method,
    pub operation_id: String,
    pub description: String,
    pub action: &'static str,
    /// `(group, version, kind)` for `x-kubernetes-group-version-kind`.
    pub gvk: Option<(String, String, String)>,
    pub params: Vec<Param>,
    /// The body and whether it is required.
    pub body: Option<(Payload, bool)>,
    pub consumes: &'static [&'static str],
    pub produces: &'static [&'static str],
    pub responses: Vec<Resp>,
    pub tag: String,
}

/// One path with its path-level parameters and operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathItem {
    pub path: String,
    pub params: Vec<Param>,
    pub ops: Vec<Op>,
}

pub const PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/cbor",
];
pub const PRODUCES_LIST: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/cbor",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/cbor-seq",
];
pub const PRODUCES_WATCH: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/cbor",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/cbor-seq",
];
pub const PRODUCES_DISCOVERY: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
pub const PRODUCES_TEXT: &[&str] = &[
    "text/plain",
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
pub const PRODUCES_ANY: &[&str] = &["*/*"];
pub const CONSUMES_ANY: &[&str] = &["*/*"];
pub const CONSUMES_PATCH: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/apply-patch+cbor",
];

/// The operationId infix of a group-version: `CoreV1`, `AppsV1`, `RbacAuthorizationV1`,
/// `FlowcontrolApiserverV1`, `StableExampleComV1` (a CRD group).
pub fn gv_camel(group: &str, version: &str) -> String {
    let g = if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    };
    let mut out: String = g.split(['.', '-']).map(capitalize).collect();
    out.push_str(&capitalize(version));
    out
}

/// The tag of a group-version: `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
pub fn gv_tag(group: &str, version: &str) -> String {
    format!("{}_{version}", group_tag(group))
}

/// The tag of a group: `core`, `apps`, `rbacAuthorization`.
pub fn group_tag(group: &str) -> String {
    let g = if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    };
    let mut parts = g.split(['.', '-']);
    let mut out = parts.next().unwrap_or_default().to_string();
    out.extend(parts.map(capitalize));
    out
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The URL prefix of a group-version: `/api/v1`, `/apis/apps/v1`.
pub fn gv_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

fn resp(code: &'static str, description: &'static str, payload: &Payload) -> Resp {
    Resp {
        code,
        description,
        payload: Some(payload.clone()),
    }
}

fn ok(payload: &Payload) -> Vec<Resp> {
    vec![resp("200", "OK", payload), unauthorized()]
}

fn unauthorized() -> Resp {
    Resp {
        code: "401",
        description: "Unauthorized",
        payload: None,
    }
}

struct Ctx<'a> {
    r: &'a ResourceInfo,
    gv: String,
    tag: String,
    gvk: (String, String, String),
    def: Payload,
}

impl Ctx<'_> {
    fn op(&self, method: Method, id: String, description: String, action: &'static str) -> Op {
        Op {
            method,
            operation_id: id,
            description,
            action,
            gvk: Some(self.gvk.clone()),
            params: Vec::new(),
            body: None,
            consumes: &[],
            produces: PRODUCES,
            responses: Vec::new(),
            tag: self.tag.clone(),
        }
    }
}

/// Every path of one resource, with its subresources.
pub fn resource_paths(
    r: &ResourceInfo,
    item_def: &str,
    list_def: &str,
    facts: &Facts,
) -> Vec<PathItem> {
    let ctx = Ctx {
        r,
        gv: gv_camel(&r.group, &r.version),
        tag: gv_tag(&r.group, &r.version),
        gvk: (
            r.group.to_string(),
            r.version.to_string(),
            r.kind.to_string(),
        ),
        def: Payload::Def(item_def.to_string()),
    };
    let prefix = gv_prefix(&r.group, &r.version);
    let ns = if r.namespaced() { "Namespaced" } else { "" };
    let (base, scope_params) = if r.namespaced() {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
            vec![params::namespace()],
        )
    } else {
        (format!("{prefix}/{}", r.plural), Vec::new())
    };
    let (gv, kind) = (&ctx.gv, &*r.kind);
    let list_payload = Payload::Def(list_def.to_string());
    let mut out = Vec::new();

    // The collection.
    let mut coll = PathItem {
        path: base.clone(),
        params: scope_params.clone(),
        ops: Vec::new(),
    };
    coll.params.push(params::pretty());
    if r.has_verb("deletecollection") {
        let mut op = ctx.op(
            Method::Delete,
            format!("deleteCollection{gv}{ns}{kind}"),
            format!("delete collection of {kind}"),
            "deletecollection",
        );
        op.params = params::delete_collection();
        op.body = Some((Payload::Def(names::DELETE_OPTIONS.into()), false));
        op.consumes = CONSUMES_ANY;
        op.responses = ok(&Payload::Def(names::STATUS.into()));
        coll.ops.push(op);
    }
    if r.has_verb("list") {
        let mut op = ctx.op(
            Method::Get,
            format!("list{gv}{ns}{kind}"),
            format!("list or watch objects of kind {kind}"),
            "list",
        );
        op.params = params::list();
        op.consumes = CONSUMES_ANY;
        op.produces = PRODUCES_LIST;
        op.responses = ok(&list_payload);
        coll.ops.push(op);
    }
    if r.has_verb("create") {
        let mut op = ctx.op(
            Method::Post,
            format!("create{gv}{ns}{kind}"),
            format!("create a {kind}"),
            "post",
        );
        op.params = params::write();
        op.body = Some((ctx.def.clone(), true));
        op.consumes = CONSUMES_ANY;
        op.responses = vec![
            resp("200", "OK", &ctx.def),
            resp("201", "Created", &ctx.def),
            resp("202", "Accepted", &ctx.def),
            unauthorized(),
        ];
        coll.ops.push(op);
    }
    if !coll.ops.is_empty() {
        out.push(coll);
    }

    // One object.
    let mut item_params = vec![params::name(kind)];
    item_params.extend(scope_params.iter().cloned());
    let mut item = PathItem {
        path: format!("{base}/{{name}}"),
        params: item_params.clone(),
        ops: Vec::new(),
    };
    item.params.push(params::pretty());
    if r.has_verb("delete") {
        let mut op = ctx.op(
            Method::Delete,
            format!("delete{gv}{ns}{kind}"),
            format!("delete a {kind}"),
            "delete",
        );
        op.params = params::delete();
        op.body = Some((Payload::Def(names::DELETE_OPTIONS.into()), false));
        op.consumes = CONSUMES_ANY;
        let status = Payload::Def(names::STATUS.into());
        op.responses = vec![
            resp("200", "OK", &status),
            resp("202", "Accepted", &status),
            unauthorized(),
        ];
        item.ops.push(op);
    }
    if r.has_verb("get") {
        let mut op = ctx.op(
            Method::Get,
            format!("read{gv}{ns}{kind}"),
            format!("read the specified {kind}"),
            "get",
        );
        op.consumes = CONSUMES_ANY;
        op.responses = ok(&ctx.def);
        item.ops.push(op);
    }
    if r.has_verb("patch") {
        item.ops.push(patch_op(
            &ctx,
            format!("patch{gv}{ns}{kind}"),
            format!("partially update the specified {kind}"),
            &ctx.def,
        ));
    }
    if r.has_verb("update") {
        item.ops.push(replace_op(
            &ctx,
            format!("replace{gv}{ns}{kind}"),
            format!("replace the specified {kind}"),
            &ctx.def,
        ));
    }
    if !item.ops.is_empty() {
        out.push(item);
    }

    // Subresources.
    for sub in r.subresources {
        out.extend(subresource_paths(&ctx, sub, &base, &item_params, facts));
    }

    // Watch and cross-namespace lists.
    if r.has_verb("watch") {
        let watch_payload = Payload::Def(names::WATCH_EVENT.into());
        let mut wl = PathItem {
            path: if r.namespaced() {
                format!("{prefix}/watch/namespaces/{{namespace}}/{}", r.plural)
            } else {
                format!("{prefix}/watch/{}", r.plural)
            },
            params: scope_params.clone(),
            ops: Vec::new(),
        };
        wl.params.extend(params::list());
        wl.params.push(params::pretty());
        let mut op = ctx.op(Method::Get, format!("watch{gv}{ns}{kind}List"), format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."), "watchlist");
        op.consumes = CONSUMES_ANY;
        op.produces = PRODUCES_WATCH;
        op.responses = ok(&watch_payload);
        wl.ops.push(op);
        let mut wi = PathItem {
            path: format!("{}/{{name}}", wl.path),
            params: vec![params::name(kind)],
            ops: Vec::new(),
        };
        wi.params.extend(scope_params.iter().cloned());
        wi.params.extend(params::list());
        wi.params.push(params::pretty());
        let mut op = ctx.op(Method::Get, format!("watch{gv}{ns}{kind}"), format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."), "watch");
        op.consumes = CONSUMES_ANY;
        op.produces = PRODUCES_WATCH;
        op.responses = ok(&watch_payload);
        wi.ops.push(op);
        out.push(wl);
        out.push(wi);
        if r.namespaced() && r.has_verb("list") {
            let mut wa = PathItem {
                path: format!("{prefix}/watch/{}", r.plural),
                params: params::list(),
                ops: Vec::new(),
            };
            wa.params.push(params::pretty());
            let mut op = ctx.op(Method::Get, format!("watch{gv}{kind}ListForAllNamespaces"), format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."), "watchlist");
            op.consumes = CONSUMES_ANY;
            op.produces = PRODUCES_WATCH;
            op.responses = ok(&watch_payload);
            wa.ops.push(op);
            out.push(wa);
        }
    }
    if r.namespaced() && r.has_verb("list") {
        let mut la = PathItem {
            path: format!("{prefix}/{}", r.plural),
            params: params::list(),
            ops: Vec::new(),
        };
        la.params.push(params::pretty());
        let mut op = ctx.op(
            Method::Get,
            format!("list{gv}{kind}ForAllNamespaces"),
            format!("list or watch objects of kind {kind}"),
            "list",
        );
        op.consumes = CONSUMES_ANY;
        op.produces = PRODUCES_LIST;
        op.responses = ok(&list_payload);
        la.ops.push(op);
        out.push(la);
    }
    out
}

fn patch_op(ctx: &Ctx<'_>, id: String, description: String, payload: &Payload) -> Op {
    let mut op = ctx.op(Method::Patch, id, description, "patch");
    op.params = params::patch();
    op.body = Some((Payload::Def(names::PATCH.into()), true));
    op.consumes = CONSUMES_PATCH;
    op.responses = vec![
        resp("200", "OK", payload),
        resp("201", "Created", payload),
        unauthorized(),
    ];
    op
}

fn replace_op(ctx: &Ctx<'_>, id: String, description: String, payload: &Payload) -> Op {
    let mut op = ctx.op(Method::Put, id, description, "put");
    op.params = params::write();
    op.body = Some((payload.clone(), true));
    op.consumes = CONSUMES_ANY;
    op.responses = vec![
        resp("200", "OK", payload),
        resp("201", "Created", payload),
        unauthorized(),
    ];
    op
}

const CONNECT_METHODS: &[Method] = &[Method::Get, Method::Post];
const PROXY_METHODS: &[Method] = &[
    Method::Delete,
    Method::Get,
    Method::Head,
    Method::Options,
    Method::Patch,
    Method::Post,
    Method::Put,
];

fn subresource_paths(
    ctx: &Ctx<'_>,
    sub: &SubresourceInfo,
    base: &str,
    item_params: &[params::Param],
    facts: &Facts,
) -> Vec<PathItem> {
    let r = ctx.r;
    let (gv, kind) = (&ctx.gv, &*r.kind);
    let ns = if r.namespaced() { "Namespaced" } else { "" };
    let sub_camel = capitalize(sub.name);
    let path = format!("{base}/{{name}}/{}", sub.name);
    let mut item = PathItem {
        path: path.clone(),
        params: item_params.to_vec(),
        ops: Vec::new(),
    };
    let connect = matches!(sub.name, "exec" | "attach" | "portforward" | "proxy");
    if connect {
        let methods = if sub.name == "proxy" {
            PROXY_METHODS
        } else {
            CONNECT_METHODS
        };
        item.params.extend(params::connect(sub.name));
        let mut with_path = PathItem {
            path: format!("{path}/{{path}}"),
            params: item_params.to_vec(),
            ops: Vec::new(),
        };
        with_path.params.push(params::path());
        with_path.params.extend(params::connect(sub.name));
        for &m in methods {
            let mut op = ctx.op(
                m,
                format!("connect{gv}{}{ns}{kind}{sub_camel}", m.camel()),
                format!(
                    "connect {} requests to {sub_camel} of {kind}",
                    m.camel().to_uppercase()
                ),
                "connect",
            );
            let sub_group = if sub.group.is_empty() {
                &r.group
            } else {
                sub.group
            };
            let sub_version = if sub.version.is_empty() {
                &r.version
            } else {
                sub.version
            };
            op.gvk = Some((sub_group.into(), sub_version.into(), sub.kind(r).into()));
            op.consumes = CONSUMES_ANY;
            op.produces = PRODUCES_ANY;
            op.responses = ok(&Payload::String);
            if sub.name == "proxy" {
                let mut wp = op.clone();
                wp.operation_id.push_str("WithPath");
                with_path.ops.push(wp);
            }
            item.ops.push(op);
        }
        if sub.name == "proxy" {
            return vec![item, with_path];
        }
        return vec![item];
    }
    item.params.push(params::pretty());
    if sub.name == "log" {
        item.params.extend(params::connect("log"));
        let mut op = ctx.op(
            Method::Get,
            format!("read{gv}{ns}{kind}Log"),
            format!("read log of the specified {kind}"),
            "get",
        );
        op.consumes = CONSUMES_ANY;
        op.produces = PRODUCES_TEXT;
        op.responses = ok(&Payload::String);
        item.ops.push(op);
        return vec![item];
    }
    let sub_group = if sub.group.is_empty() {
        &r.group
    } else {
        sub.group
    };
    let sub_version = if sub.version.is_empty() {
        &r.version
    } else {
        sub.version
    };
    let sub_kind = sub.kind(r);
    let payload = if sub_kind == r.kind && sub_group == r.group {
        ctx.def.clone()
    } else {
        match facts.definition_for_gvk(sub_group, sub_version, sub_kind) {
            Some(d) => Payload::Def(d.to_string()),
            None => ctx.def.clone(),
        }
    };
    let sub_gvk = Some((
        sub_group.to_string(),
        sub_version.to_string(),
        sub_kind.to_string(),
    ));
    let what = format!("{} of the specified {kind}", sub.name);
    if sub.verbs.contains(&"get") {
        let mut op = ctx.op(
            Method::Get,
            format!("read{gv}{ns}{kind}{sub_camel}"),
            format!("read {what}"),
            "get",
        );
        op.consumes = CONSUMES_ANY;
        op.responses = ok(&payload);
        op.gvk.clone_from(&sub_gvk);
        item.ops.push(op);
    }
    if sub.verbs.contains(&"patch") {
        let mut op = patch_op(
            ctx,
            format!("patch{gv}{ns}{kind}{sub_camel}"),
            format!("partially update {what}"),
            &payload,
        );
        op.gvk.clone_from(&sub_gvk);
        item.ops.push(op);
    }
    if sub.verbs.contains(&"update") {
        let mut op = replace_op(
            ctx,
            format!("replace{gv}{ns}{kind}{sub_camel}"),
            format!("replace {what}"),
            &payload,
        );
        op.gvk.clone_from(&sub_gvk);
        item.ops.push(op);
    }
    if sub.verbs.contains(&"create") {
        let mut op = ctx.op(
            Method::Post,
            format!("create{gv}{ns}{kind}{sub_camel}"),
            format!("create {sub_kind} of a {kind}"),
            "post",
        );
        op.params = params::write();
        op.body = Some((payload.clone(), true));
        op.consumes = CONSUMES_ANY;
        op.responses = vec![
            resp("200", "OK", &payload),
            resp("201", "Created", &payload),
            resp("202", "Accepted", &payload),
            unauthorized(),
        ];
        op.gvk = sub_gvk;
        item.ops.push(op);
    }
    item.ops.sort_by_key(|o| o.method);
    if item.ops.is_empty() {
        Vec::new()
    } else {
        vec![item]
    }
}

/// The discovery operation of a group-version (`/apis/apps/v1/` → `getAppsV1APIResources`).
pub fn gv_discovery(group: &str, version: &str) -> PathItem {
    PathItem {
        path: format!("{}/", gv_prefix(group, version)),
        params: Vec::new(),
        ops: vec![discovery_op(
            format!("get{}APIResources", gv_camel(group, version)),
            "get available resources",
            gv_tag(group, version),
            names::API_RESOURCE_LIST,
        )],
    }
}

/// The discovery operation of a group (`/apis/apps/` → `getAppsAPIGroup`).
pub fn group_discovery(group: &str) -> PathItem {
    let g = gv_camel(group, "");
    PathItem {
        path: format!("/apis/{group}/"),
        params: Vec::new(),
        ops: vec![discovery_op(
            format!("get{g}APIGroup"),
            "get information of a group",
            group_tag(group),
            names::API_GROUP,
        )],
    }
}

/// `/api/` (`getCoreAPIVersions`).
pub fn core_discovery() -> PathItem {
    PathItem {
        path: "/api/".into(),
        params: Vec::new(),
        ops: vec![discovery_op(
            "getCoreAPIVersions".into(),
            "get available API versions",
            "core".into(),
            names::API_VERSIONS,
        )],
    }
}

/// `/apis/` (`getAPIVersions`).
pub fn apis_discovery() -> PathItem {
    PathItem {
        path: "/apis/".into(),
        params: Vec::new(),
        ops: vec![discovery_op(
            "getAPIVersions".into(),
            "get available API versions",
            "apis".into(),
            names::API_GROUP_LIST,
        )],
    }
}

fn discovery_op(id: String, description: &str, tag: String, def: &str) -> Op {
    Op {
        method: Method::Get,
        operation_id: id,
        description: description.into(),
        action: "",
        gvk: None,
        params: Vec::new(),
        body: None,
        consumes: PRODUCES_DISCOVERY,
        produces: PRODUCES_DISCOVERY,
        responses: ok(&Payload::Def(def.into())),
        tag,
    }
}

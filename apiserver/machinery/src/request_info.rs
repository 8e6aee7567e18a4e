//! `RequestInfo`: a request path and method parsed once into verb, group, version, namespace,
//! resource, subresource and name (upstream `RequestInfoFactory.NewRequestInfo` in
//! `k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`).
//!
//! Resource paths look like `/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}` or
//! `/apis/{group}/{version}/...`; the deprecated `/api/v1/watch/...` and `/proxy/...` verb
//! prefixes are understood. Anything else is a non-resource request whose verb is the
//! lower-cased HTTP method.

use crate::selectors::{FieldSelector, LabelSelector};
use crate::validation::validate_path_segment_name;

/// What a request addresses, parsed from method, path and query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestInfo {
    /// True for `/api/...` and `/apis/...` requests that name a resource.
    pub is_resource_request: bool,
    /// The (percent-decoded) URL path.
    pub path: String,
    /// Kube verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `proxy`), or the lower-cased HTTP method for non-resource requests.
    pub verb: String,
    /// `api` or `apis`.
    pub api_prefix: String,
    /// API group (empty for the core group).
    pub api_group: String,
    /// API version.
    pub api_version: String,
    /// Namespace (empty for cluster-scoped or all-namespaces requests).
    pub namespace: String,
    /// Resource plural, e.g. `pods`.
    pub resource: String,
    /// Subresource, e.g. `status`.
    pub subresource: String,
    /// Object name (also taken from `fieldSelector=metadata.name=x` on list/watch).
    pub name: String,
    /// Path parts starting at the resource: `[resource, name, subresource, ...]`.
    pub parts: Vec<String>,
}

/// Why a path could not be fully parsed (upstream answers 500 for this).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestInfoError {
    /// A special verb prefix (`watch`, `proxy`) with nothing after it.
    #[error("unable to determine kind and namespace from url, {0}")]
    MissingKind(String),
}

/// Parses a request. `path` is the raw request path (percent-encoding allowed, as in
/// `http::Uri::path()`), `query` the raw query string without `?`. On a malformed path the
/// best-effort info is returned, like upstream; see [`try_parse_request_info`] for the error.
pub fn parse_request_info(method: &str, path: &str, query: Option<&str>) -> RequestInfo {
    match try_parse_request_info(method, path, query) {
        Ok(info) | Err((info, _)) => info,
    }
}

/// Like [`parse_request_info`] but also reports a malformed path together with the partial info.
#[allow(clippy::result_large_err)] // The partial info is the point of the error; paths are cold.
pub fn try_parse_request_info(
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Result<RequestInfo, (RequestInfo, RequestInfoError)> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned();
    let mut info = RequestInfo {
        path: decoded.clone(),
        verb: method.to_ascii_lowercase(),
        ..Default::default()
    };
    let trimmed = decoded.trim_matches('/');
    let all: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    if all.len() < 3 || !matches!(all[0], "api" | "apis") {
        return Ok(info);
    }
    info.api_prefix = all[0].to_string();
    let mut cur = &all[1..];
    if info.api_prefix != "api" {
        if cur.len() < 3 {
            return Ok(info);
        }
        info.api_group = cur[0].to_string();
        cur = &cur[1..];
    }
    info.is_resource_request = true;
    info.api_version = cur[0].to_string();
    cur = &cur[1..];

    if matches!(cur[0], "proxy" | "watch") {
        if cur.len() < 2 {
            let full = match query {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            return Err((info, RequestInfoError::MissingKind(full)));
        }
        info.verb = cur[0].to_string();
        cur = &cur[1..];
    } else {
        info.verb = match method.to_ascii_uppercase().as_str() {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        }
        .to_string();
    }

    if cur[0] == "namespaces" && cur.len() > 1 {
        info.namespace = cur[1].to_string();
        // A namespace subresource (`status`, `finalize`) keeps `namespaces` as the resource.
        if cur.len() > 2 && !matches!(cur[2], "status" | "finalize") {
            cur = &cur[2..];
        }
    }
    info.parts = cur.iter().map(|s| s.to_string()).collect();

    let n = info.parts.len();
    if n >= 3 && info.verb != "proxy" {
        info.subresource = info.parts[2].clone();
    }
    if n >= 2 {
        info.name = info.parts[1].clone();
    }
    if n >= 1 {
        info.resource = info.parts[0].clone();
    }

    if info.name.is_empty() && info.verb == "get" {
        let opts = ListParams::from_query(query.unwrap_or(""));
        info.verb = if opts.watch { "watch" } else { "list" }.to_string();
        if let Some(fs) = opts.field_selector
            && let Some(name) = fs.exact_match("metadata.name")
            && validate_path_segment_name(name, false).is_empty()
        {
            info.name = name.to_string();
        }
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".to_string();
    }
    Ok(info)
}

/// Raw `fieldSelector` and `labelSelector` query values handed to authorizers (upstream's
/// `AuthorizeWithSelectors`): only for `list`, `watch` and `deletecollection`, and not for the
/// deprecated `/watch/` path prefix.
pub fn authorization_selectors(
    info: &RequestInfo,
    query: Option<&str>,
) -> (Option<String>, Option<String>) {
    if !matches!(info.verb.as_str(), "list" | "watch" | "deletecollection") {
        return (None, None);
    }
    // With `/watch/` in the path the part after the version is the verb, not a resource.
    let after_version = if info.api_prefix == "api" { 2 } else { 3 };
    let verb_via_path = info.path.trim_matches('/').split('/').nth(after_version) == Some("watch");
    if verb_via_path {
        return (None, None);
    }
    let (mut fs, mut ls) = (None, None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "fieldSelector" if fs.is_none() => fs = Some(v.into_owned()),
            "labelSelector" if ls.is_none() => ls = Some(v.into_owned()),
            _ => {}
        }
    }
    (fs, ls)
}

/// The subset of `ListOptions` decoding that decides verb and name, including the rule that a
/// decoding failure (a bad selector or integer) keeps only `watch` and drops the selector.
struct ListParams {
    watch: bool,
    field_selector: Option<FieldSelector>,
}

/// Upstream `Convert_Slice_string_To_bool`: only absence, `0` and `false` are false.
fn query_bool(v: Option<&str>) -> bool {
    match v {
        None => false,
        Some(s) => !(s == "0" || s.eq_ignore_ascii_case("false")),
    }
}

impl ListParams {
    fn from_query(query: &str) -> Self {
        let mut first: std::collections::BTreeMap<String, String> = Default::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            first
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned());
        }
        let get = |k: &str| first.get(k).map(String::as_str);
        let watch = query_bool(get("watch"));
        let fs = get("fieldSelector").map(FieldSelector::parse);
        let ls_ok = get("labelSelector").is_none_or(|s| LabelSelector::parse(s).is_ok());
        let ints_ok = ["limit", "timeoutSeconds"]
            .iter()
            .all(|k| get(k).is_none_or(|v| v.parse::<i64>().is_ok()));
        match fs {
            Some(Err(_)) => ListParams {
                watch,
                field_selector: None,
            },
            _ if !ls_ok || !ints_ok => ListParams {
                watch,
                field_selector: None,
            },
            Some(Ok(f)) => ListParams {
                watch,
                field_selector: Some(f),
            },
            None => ListParams {
                watch,
                field_selector: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_url(url: &str) -> (&str, Option<&str>) {
        match url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (url, None),
        }
    }

    /// method, url, verb, prefix, group, version, namespace, resource, subresource, name, parts
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    );

    #[test]
    fn upstream_success_cases() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // method, url, verb, prefix, group, version, namespace, resource, subresource, name, parts
            ("GET", "/api/v1/namespaces", "list", "api", "", "v1", "", "namespaces", "", "", "namespaces"),
            ("GET", "/api/v1/namespaces/other", "get", "api", "", "v1", "other", "namespaces", "", "other", "namespaces/other"),
            ("GET", "/api/v1/namespaces/other/pods", "list", "api", "", "v1", "other", "pods", "", "", "pods"),
            ("GET", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", "pods/foo"),
            ("HEAD", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", "pods/foo"),
            ("GET", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", "pods"),
            ("HEAD", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", "pods"),
            ("PATCH", "/api/v1/namespaces/new-namespace", "patch", "api", "", "v1", "new-namespace", "namespaces", "", "new-namespace", "namespaces/new-namespace"),
            ("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy", "api", "", "v1", "other", "pods", "", "foo", "pods/foo"),
            ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", "api", "", "v1", "other", "pods", "", "foo", "pods/foo/subpath/not/a/subresource"),
            ("GET", "/api/v1/watch/pods", "watch", "api", "", "v1", "", "pods", "", "", "pods"),
            ("GET", "/api/v1/pods?watch=true", "watch", "api", "", "v1", "", "pods", "", "", "pods"),
            ("GET", "/api/v1/pods?watch=false", "list", "api", "", "v1", "", "pods", "", "", "pods"),
            ("GET", "/api/v1/watch/namespaces/other/pods", "watch", "api", "", "v1", "other", "pods", "", "", "pods"),
            ("GET", "/api/v1/namespaces/other/pods?watch=1", "watch", "api", "", "v1", "other", "pods", "", "", "pods"),
            ("GET", "/api/v1/namespaces/other/pods?watch=0", "list", "api", "", "v1", "other", "pods", "", "", "pods"),
            ("GET", "/api/v1/namespaces/other/pods/foo/status", "get", "api", "", "v1", "other", "pods", "status", "foo", "pods/foo/status"),
            ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", "api", "", "v1", "other", "pods", "proxy", "foo", "pods/foo/proxy/subpath"),
            ("PUT", "/api/v1/namespaces/other/finalize", "update", "api", "", "v1", "other", "namespaces", "finalize", "other", "namespaces/other/finalize"),
            ("PUT", "/api/v1/namespaces/other/status", "update", "api", "", "v1", "other", "namespaces", "status", "other", "namespaces/other/status"),
            ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "api", "", "v1", "other", "pods", "", "foo", "pods/foo"),
            ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "api", "", "v1", "other", "pods", "", "foo", "pods/foo"),
            ("POST", "/api/v1/namespaces/other/pods", "create", "api", "", "v1", "other", "pods", "", "", "pods"),
            ("DELETE", "/api/v1/nodes", "deletecollection", "api", "", "v1", "", "nodes", "", "", "nodes"),
            ("DELETE", "/api/v1/namespaces", "deletecollection", "api", "", "v1", "", "namespaces", "", "", "namespaces"),
            ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "api", "", "v1", "other", "pods", "", "", "pods"),
            ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "apis", "extensions", "v1", "other", "pods", "", "", "pods"),
            ("POST", "/apis/extensions/v1/namespaces/other/pods", "create", "apis", "extensions", "v1", "other", "pods", "", "", "pods"),
            ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create", "apis", "extensions", "v1beta3", "other", "pods", "", "", "pods"),
            ("GET", "/apis/apps/v1/namespaces/ns/deployments/web/scale", "get", "apis", "apps", "v1", "ns", "deployments", "scale", "web", "deployments/web/scale"),
        ];
        for &(method, url, verb, prefix, group, version, ns, resource, sub, name, parts) in cases {
            let (path, query) = split_url(url);
            let got =
                try_parse_request_info(method, path, query).unwrap_or_else(|_| panic!("{url}"));
            let want = RequestInfo {
                is_resource_request: true,
                path: path.to_string(),
                verb: verb.into(),
                api_prefix: prefix.into(),
                api_group: group.into(),
                api_version: version.into(),
                namespace: ns.into(),
                resource: resource.into(),
                subresource: sub.into(),
                name: name.into(),
                parts: parts.split('/').map(str::to_string).collect(),
            };
            assert_eq!(got, want, "{method} {url}");
        }
    }

    #[test]
    fn non_resource_requests() {
        let cases = [
            ("/api/version/resource", true),
            ("/apis/group/version/resource/name/subresource", true),
            ("/api/version/resource/name/subresource", true),
            ("/apis/batch/v1/job", true),
            ("/apis/batch/v1/job/foo", true),
            ("/apis/batch/v1/job/foo/scale", true),
            ("/not-api/version/resource", false),
            ("/apis/extensions/v1beta1", false),
            ("/apis/extensions/v1beta1/", false),
            ("/api/version", false),
            ("/api", false),
            ("/", false),
            ("", false),
            ("/api/version/", false),
            ("/apis/group/version/", false),
            ("/badprefix/version/resource", false),
            ("/apis/version/resource", false),
        ];
        for (url, want) in cases {
            assert_eq!(
                parse_request_info("GET", url, None).is_resource_request,
                want,
                "{url}"
            );
        }
        let info = parse_request_info("GET", "/healthz", None);
        assert_eq!(
            (info.verb.as_str(), info.path.as_str()),
            ("get", "/healthz")
        );
        assert_eq!(parse_request_info("POST", "/apis", None).verb, "post");
    }

    #[test]
    fn field_selector_name() {
        let cases = [
            ("/apis/group/version/resource", "", "list"),
            (
                "/apis/group/version/resource?fieldSelector=metadata.name=name1",
                "name1",
                "list",
            ),
            (
                "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1",
                "name1",
                "watch",
            ),
            (
                "/apis/group/version/resource?fieldSelector=foo=bar",
                "",
                "list",
            ),
            (
                "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo",
                "",
                "list",
            ),
            (
                "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true",
                "",
                "watch",
            ),
            (
                "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false",
                "",
                "list",
            ),
            (
                "/apis/group/version/resource?fieldSelector=metadata.name%3Dname1&limit=x",
                "",
                "list",
            ),
            (
                "/apis/group/version/resource?fieldSelector=metadata.name%3Da%2Fb",
                "",
                "list",
            ),
            (
                "/api/v1/namespaces/ns/configmaps?fieldSelector=metadata.name%3Dcm1&watch=1",
                "cm1",
                "watch",
            ),
            ("/api/v1/pods?watch=", "", "watch"),
        ];
        for (url, name, verb) in cases {
            let (path, query) = split_url(url);
            let info = parse_request_info("GET", path, query);
            assert_eq!(
                (info.name.as_str(), info.verb.as_str()),
                (name, verb),
                "{url}"
            );
        }
    }

    #[test]
    fn selectors_for_authorization() {
        let q = Some("labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn1");
        let info = parse_request_info("GET", "/api/v1/pods", q);
        assert_eq!(
            authorization_selectors(&info, q),
            (Some("spec.nodeName=n1".into()), Some("app=web".into()))
        );
        let info = parse_request_info("GET", "/api/v1/watch/pods", q);
        assert_eq!(authorization_selectors(&info, q), (None, None));
        let info = parse_request_info("GET", "/apis/apps/v1/watch/deployments", q);
        assert_eq!(authorization_selectors(&info, q), (None, None));
        let info = parse_request_info("GET", "/api/v1/namespaces/ns/pods/p", q);
        assert_eq!(authorization_selectors(&info, q), (None, None));
        let info = parse_request_info("DELETE", "/apis/apps/v1/namespaces/ns/deployments", q);
        assert_eq!(
            authorization_selectors(&info, q).1.as_deref(),
            Some("app=web")
        );
    }

    #[test]
    fn malformed_special_verb() {
        let err = try_parse_request_info("GET", "/api/v1/watch", None).expect_err("no kind");
        assert_eq!(
            err.1.to_string(),
            "unable to determine kind and namespace from url, /api/v1/watch"
        );
        assert!(err.0.is_resource_request);
        assert_eq!(
            parse_request_info("GET", "/api/v1/watch", None).api_version,
            "v1"
        );
    }

    #[test]
    fn percent_decoded_path() {
        let info = parse_request_info("GET", "/api/v1/namespaces/ns/secrets/a%3Ab", None);
        assert_eq!(info.name, "a:b");
        assert_eq!(info.path, "/api/v1/namespaces/ns/secrets/a:b");
    }
}

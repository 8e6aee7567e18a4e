//! Invariants of the built-in table and facts checked against upstream's discovery documents.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

#[test]
fn storage_version_hash_matches_upstream() {
    // Values from upstream's api/discovery/*.json.
    assert_eq!(storage_version_hash("", "v1", "Pod"), "xPOwRZ+Yhw8=");
    assert_eq!(storage_version_hash("", "v1", "ConfigMap"), "qFsyl6wFWjQ=");
    assert_eq!(
        storage_version_hash("autoscaling", "v2", "HorizontalPodAutoscaler"),
        "qwQve8ut294="
    );
    assert_eq!(
        storage_version_hash("resource.k8s.io", "v1", "DeviceClass"),
        "Yk2PTc1Ybxk="
    );
}

#[test]
fn entry_hashes_match_upstream_documents() {
    let cases = [
        ("", "v1", "pods", "xPOwRZ+Yhw8="),
        ("", "v1", "services", "0/CO1lhkEBI="),
        ("", "v1", "namespaces", "Q3oi5N2YM8M="),
        ("", "v1", "persistentvolumes", "HN/zwEC+JgM="),
        (
            "autoscaling",
            "v1",
            "horizontalpodautoscalers",
            "qwQve8ut294=",
        ),
        ("events.k8s.io", "v1", "events", "r2yiGXH7wu8="),
        ("networking.k8s.io", "v1", "ipaddresses", "3f/plJFChNE="),
        (
            "storage.k8s.io",
            "v1",
            "volumeattributesclasses",
            "tIjydgKBC5w=",
        ),
        ("resource.k8s.io", "v1", "resourceclaims", "wgAZaHcZxUg="),
    ];
    for (g, v, plural, hash) in cases {
        let r = find(g, v, plural).unwrap_or_else(|| panic!("{g}/{v}/{plural} missing"));
        assert_eq!(
            r.storage_version_hash().as_deref(),
            Some(hash),
            "{g}/{v}/{plural}"
        );
    }
    for (g, plural) in [
        ("", "bindings"),
        ("", "componentstatuses"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    ] {
        let r = find(g, "v1", plural).expect("present");
        assert_eq!(r.storage_version_hash(), None, "{plural}");
    }
}

/// Every entry's kind, plural and scope equal k8s-openapi's constants for its type. The table is
/// built from those constants; this re-derives a few by hand so a wrong type in the table shows.
#[test]
fn entries_match_k8s_openapi_consts() {
    use k8s_openapi::Resource as _;
    fn check<T: k8s_openapi::Resource>(scope: Scope)
    where
        T::Scope: ScopeOf,
    {
        let r = find(T::GROUP, T::VERSION, T::URL_PATH_SEGMENT)
            .unwrap_or_else(|| panic!("{} missing", T::KIND));
        assert_eq!(r.kind, T::KIND);
        assert_eq!(r.scope, scope, "{}", T::KIND);
        assert_eq!(r.scope, <T::Scope as ScopeOf>::SCOPE);
        assert_eq!(r.api_version(), T::API_VERSION);
    }
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, rbac::v1 as rbac};
    check::<core::Pod>(Scope::Namespaced);
    check::<core::Namespace>(Scope::Cluster);
    check::<core::Node>(Scope::Cluster);
    check::<core::Binding>(Scope::Namespaced);
    check::<apps::Deployment>(Scope::Namespaced);
    check::<rbac::ClusterRole>(Scope::Cluster);
    check::<k8s_openapi::api::authorization::v1::LocalSubjectAccessReview>(Scope::Namespaced);
    assert_eq!(
        k8s_openapi::api::core::v1::Endpoints::URL_PATH_SEGMENT,
        "endpoints"
    );

    for r in builtin_resources() {
        assert!(!r.kind.is_empty() && !r.plural.is_empty());
        assert_eq!(r.singular, r.kind.to_ascii_lowercase(), "{}", r.plural);
        assert!(
            r.list_kind.is_empty() || r.list_kind == format!("{}List", r.kind),
            "{}",
            r.list_kind
        );
        assert!(r.schema_name.starts_with("io.k8s."), "{}", r.schema_name);
        assert!(
            r.schema_name.ends_with(&format!(".{}", r.kind)),
            "{}",
            r.schema_name
        );
        assert!(r.schema.is_some());
    }
}

#[test]
fn no_duplicate_plural_per_group_version() {
    let mut seen = BTreeSet::new();
    for r in builtin_resources() {
        assert!(
            seen.insert((&*r.group, &*r.version, &*r.plural)),
            "duplicate {}/{}/{}",
            r.group,
            r.version,
            r.plural
        );
    }
}

#[test]
fn each_stored_kind_has_exactly_one_storage_version_entry() {
    // (storage group, storage version, kind) -> number of entries that ARE that storage version.
    let mut owners: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for r in builtin_resources() {
        if let Some(s) = &r.storage {
            owners
                .entry((&*s.group, &*s.version, &*r.kind))
                .or_default();
        }
    }
    for r in builtin_resources() {
        if r.is_storage_version() {
            *owners
                .entry((&*r.group, &*r.version, &*r.kind))
                .or_default() += 1;
        }
    }
    for (key, count) in owners {
        assert_eq!(count, 1, "storage version of {key:?} listed {count} times");
    }
}

#[test]
fn virtual_resources_are_create_only_and_unstored() {
    let virtual_plurals: BTreeSet<_> = builtin_resources()
        .iter()
        .filter(|r| r.virtual_only)
        .map(|r| (&*r.group, &*r.plural))
        .collect();
    let expected: BTreeSet<_> = [
        ("authentication.k8s.io", "selfsubjectreviews"),
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "localsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectrulesreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    ]
    .into_iter()
    .collect();
    assert_eq!(virtual_plurals, expected);
    for r in builtin_resources().iter().filter(|r| r.virtual_only) {
        assert_eq!(r.verbs, ["create"]);
        assert!(r.storage.is_none());
    }
}

#[test]
fn upstream_facts_for_well_known_resources() {
    let pods = find("", "v1", "pods").expect("pods");
    assert_eq!(pods.short_names.to_vec(), ["po"]);
    assert_eq!(pods.categories.to_vec(), ["all"]);
    assert_eq!(pods.verbs, builtin::CRUD);
    let names: Vec<_> = pods.subresources.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "attach",
            "binding",
            "ephemeralcontainers",
            "eviction",
            "exec",
            "log",
            "portforward",
            "proxy",
            "resize",
            "status"
        ]
    );
    let eviction = pods.subresource("eviction").expect("eviction");
    assert_eq!(
        (eviction.group, eviction.version, eviction.kind(pods)),
        ("policy", "v1", "Eviction")
    );
    assert_eq!(
        pods.subresource("exec").map(|s| s.verbs),
        Some(&["create", "get"][..])
    );

    let ns = find("", "v1", "namespaces").expect("namespaces");
    assert!(!ns.has_verb("deletecollection"));
    assert_eq!(
        ns.subresource("finalize").map(|s| s.verbs),
        Some(&["update"][..])
    );

    let deploy = find("apps", "v1", "deployments").expect("deployments");
    let scale = deploy.subresource("scale").expect("scale");
    assert_eq!(
        (scale.group, scale.version, scale.kind(deploy)),
        ("autoscaling", "v1", "Scale")
    );
    assert_eq!(deploy.short_names.to_vec(), ["deploy"]);

    let crd = find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("crd");
    assert_eq!(crd.short_names.to_vec(), ["crd", "crds"]);
    assert_eq!(crd.categories.to_vec(), ["api-extensions"]);
    assert_eq!(crd.scope, Scope::Cluster);

    let sa = find("", "v1", "serviceaccounts").expect("serviceaccounts");
    let token = sa.subresource("token").expect("token");
    assert_eq!(token.group, "authentication.k8s.io");
    assert_eq!(token.kind(sa), "TokenRequest");

    let csr = find("certificates.k8s.io", "v1", "certificatesigningrequests").expect("csr");
    assert!(csr.subresource("approval").is_some());
    assert_eq!(find("", "v1", "bindings").map(|r| &*r.list_kind), Some(""));
    assert_eq!(
        find("", "v1", "pods").map(|r| &*r.list_kind),
        Some("PodList")
    );
}

#[test]
fn every_group_of_the_table_is_in_upstream_order_and_sorted() {
    let table = builtin_resources();
    let rank = |g: &str| {
        if g.is_empty() {
            0
        } else {
            1 + GROUP_ORDER
                .iter()
                .position(|x| *x == g)
                .unwrap_or_else(|| panic!("group {g} not in GROUP_ORDER"))
        }
    };
    for w in table.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!(
            rank(&a.group) <= rank(&b.group),
            "{} before {}",
            a.group,
            b.group
        );
        if a.group == b.group && a.version == b.version {
            assert!(a.plural < b.plural, "{} before {}", a.plural, b.plural);
        }
    }
    for r in table {
        let names: Vec<_> = r.subresources.iter().map(|s| s.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "{}", r.plural);
    }
    assert_eq!(table.len(), 66);
}

#[test]
fn preferred_versions_follow_upstream() {
    let pref: BTreeMap<_, _> = preferred_versions().iter().copied().collect();
    assert_eq!(pref.get("autoscaling"), Some(&"v2"));
    assert_eq!(pref.get(""), Some(&"v1"));
    assert_eq!(pref.get("apps"), Some(&"v1"));
    assert_eq!(preferred_versions().first(), Some(&("", "v1")));
    assert_eq!(
        preferred_versions().get(1),
        Some(&("apiregistration.k8s.io", "v1"))
    );
    assert_eq!(preferred_versions().len(), 21);
}

#[test]
fn version_priority_is_kube_aware() {
    let mut v = vec![
        "v1alpha1",
        "v1",
        "foo",
        "v2beta1",
        "v1beta2",
        "v2",
        "v10",
        "v1beta1",
        "v11alpha2",
    ];
    v.sort_by(|a, b| compare_versions(a, b));
    assert_eq!(
        v,
        [
            "v10",
            "v2",
            "v1",
            "v2beta1",
            "v1beta2",
            "v1beta1",
            "v11alpha2",
            "v1alpha1",
            "foo"
        ]
    );
}

//! The built-in resources of Kubernetes 1.35, one entry per resource and group-version.
//!
//! Group, version, kind, list kind, plural and scope come from k8s-openapi's `Resource` /
//! `ListableResource` constants through [`listable`] and [`plain`], so they cannot drift from the
//! types. Everything else (verbs in upstream's order, short names, categories, subresources and
//! the storage version) is transcribed from upstream's checked-in discovery documents
//! (`api/discovery/*.json` in kubernetes/kubernetes, 1.35 era).
//!
//! Order: groups in upstream's `/apis` order (core first), resources alphabetical by plural
//! within a group-version, subresources alphabetical by name (upstream's order everywhere).

use k8s_openapi::api::admissionregistration::v1beta1 as admreg_beta;
use k8s_openapi::api::{
    admissionregistration::v1 as admreg, apps::v1 as apps, authentication::v1 as authn,
    authorization::v1 as authz, autoscaling::v1 as as1, autoscaling::v2 as as2, batch::v1 as batch,
    certificates::v1 as certs, coordination::v1 as coord, core::v1 as core, discovery::v1 as disc,
    events::v1 as events, flowcontrol::v1 as flow, networking::v1 as net, node::v1 as node,
    policy::v1 as policy, rbac::v1 as rbac, resource::v1 as dra, scheduling::v1 as sched,
    storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apireg;

use super::{Facts, ResourceInfo, SubresourceInfo, listable, plain, status_of};

/// The verbs of an ordinary stored resource.
pub(super) const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces: no `deletecollection`.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// Create-only resources (reviews, bindings).
const CREATE: &[&str] = &["create"];
/// Read-only computed resources (componentstatuses).
const GET_LIST: &[&str] = &["get", "list"];
/// The verbs of `status`, `scale`, `approval`, `ephemeralcontainers`, `resize`.
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
/// The verbs of the streaming connect subresources (`exec`, `attach`, `portforward`).
const CREATE_GET: &[&str] = &["create", "get"];
/// The verbs of `proxy` subresources.
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

const ALL: &[&str] = &["all"];
const API_EXTENSIONS: &[&str] = &["api-extensions"];

/// A subresource served with another group-version's kind.
const fn foreign(
    name: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> SubresourceInfo {
    SubresourceInfo::new(name, kind, group, version, verbs)
}

/// A subresource served with a kind of the parent's group-version.
const fn local(
    name: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> SubresourceInfo {
    foreign(name, "", "", kind, verbs)
}

/// `scale`, served as `autoscaling/v1` `Scale`.
const SCALE: SubresourceInfo = foreign("scale", "autoscaling", "v1", "Scale", GET_PATCH_UPDATE);

/// The resources of an optional group-version (see `OPTIONAL_GROUP_VERSIONS`).
pub(super) fn optional(gv: &str) -> Vec<ResourceInfo> {
    match gv {
        // ---- admissionregistration.k8s.io/v1beta1 (MutatingAdmissionPolicy, beta in 1.35) ----
        "admissionregistration.k8s.io/v1beta1" => vec![
            listable::<admreg_beta::MutatingAdmissionPolicy>(Facts::new(CRUD).cat(API_EXTENSIONS)),
            listable::<admreg_beta::MutatingAdmissionPolicyBinding>(
                Facts::new(CRUD).cat(API_EXTENSIONS),
            ),
        ],
        _ => Vec::new(),
    }
}

/// Builds the table; called once by [`super::builtin_resources`].
pub(super) fn table() -> Vec<ResourceInfo> {
    let crud = || Facts::new(CRUD);
    vec![
        // ---- core/v1 (served under /api/v1) ----
        plain::<core::Binding>(Facts::new(CREATE).not_stored()),
        listable::<core::ComponentStatus>(Facts::new(GET_LIST).short(&["cs"]).not_stored()),
        listable::<core::ConfigMap>(crud().short(&["cm"])),
        listable::<core::Endpoints>(crud().short(&["ep"])),
        listable::<core::Event>(crud().short(&["ev"])),
        listable::<core::LimitRange>(crud().short(&["limits"])),
        listable::<core::Namespace>(Facts::new(NAMESPACE_VERBS).short(&["ns"]).subs(
            const {
                &[
                    local("finalize", "Namespace", &["update"]),
                    status_of::<core::Namespace>(),
                ]
            },
        )),
        listable::<core::Node>(crud().short(&["no"]).subs(
            const {
                &[
                    local("proxy", "NodeProxyOptions", PROXY_VERBS),
                    status_of::<core::Node>(),
                ]
            },
        )),
        listable::<core::PersistentVolumeClaim>(
            crud()
                .short(&["pvc"])
                .subs(const { &[status_of::<core::PersistentVolumeClaim>()] }),
        ),
        listable::<core::PersistentVolume>(
            crud()
                .short(&["pv"])
                .subs(const { &[status_of::<core::PersistentVolume>()] }),
        ),
        listable::<core::Pod>(crud().short(&["po"]).cat(ALL).subs(
            const {
                &[
                    local("attach", "PodAttachOptions", CREATE_GET),
                    local("binding", "Binding", CREATE),
                    local("ephemeralcontainers", "Pod", GET_PATCH_UPDATE),
                    foreign("eviction", "policy", "v1", "Eviction", CREATE),
                    local("exec", "PodExecOptions", CREATE_GET),
                    local("log", "Pod", &["get"]),
                    local("portforward", "PodPortForwardOptions", CREATE_GET),
                    local("proxy", "PodProxyOptions", PROXY_VERBS),
                    local("resize", "Pod", GET_PATCH_UPDATE),
                    status_of::<core::Pod>(),
                ]
            },
        )),
        listable::<core::PodTemplate>(crud()),
        listable::<core::ReplicationController>(
            crud()
                .short(&["rc"])
                .cat(ALL)
                .subs(const { &[SCALE, status_of::<core::ReplicationController>()] }),
        ),
        listable::<core::ResourceQuota>(
            crud()
                .short(&["quota"])
                .subs(const { &[status_of::<core::ResourceQuota>()] }),
        ),
        listable::<core::Secret>(crud()),
        listable::<core::ServiceAccount>(crud().short(&["sa"]).subs(
            const {
                &[foreign(
                    "token",
                    "authentication.k8s.io",
                    "v1",
                    "TokenRequest",
                    CREATE,
                )]
            },
        )),
        listable::<core::Service>(crud().short(&["svc"]).cat(ALL).subs(
            const {
                &[
                    local("proxy", "ServiceProxyOptions", PROXY_VERBS),
                    status_of::<core::Service>(),
                ]
            },
        )),
        // ---- apiregistration.k8s.io/v1 ----
        listable::<apireg::APIService>(
            crud()
                .cat(API_EXTENSIONS)
                .subs(const { &[status_of::<apireg::APIService>()] }),
        ),
        // ---- apps/v1 ----
        listable::<apps::ControllerRevision>(crud()),
        listable::<apps::DaemonSet>(
            crud()
                .short(&["ds"])
                .cat(ALL)
                .subs(const { &[status_of::<apps::DaemonSet>()] }),
        ),
        listable::<apps::Deployment>(
            crud()
                .short(&["deploy"])
                .cat(ALL)
                .subs(const { &[SCALE, status_of::<apps::Deployment>()] }),
        ),
        listable::<apps::ReplicaSet>(
            crud()
                .short(&["rs"])
                .cat(ALL)
                .subs(const { &[SCALE, status_of::<apps::ReplicaSet>()] }),
        ),
        listable::<apps::StatefulSet>(
            crud()
                .short(&["sts"])
                .cat(ALL)
                .subs(const { &[SCALE, status_of::<apps::StatefulSet>()] }),
        ),
        // ---- events.k8s.io/v1 (stored as core/v1 Event) ----
        listable::<events::Event>(crud().short(&["ev"]).stored_as("", "v1")),
        // ---- authentication.k8s.io/v1 (virtual) ----
        plain::<authn::SelfSubjectReview>(Facts::new(CREATE).virtual_only()),
        plain::<authn::TokenReview>(Facts::new(CREATE).virtual_only()),
        // ---- authorization.k8s.io/v1 (virtual) ----
        plain::<authz::LocalSubjectAccessReview>(Facts::new(CREATE).virtual_only()),
        plain::<authz::SelfSubjectAccessReview>(Facts::new(CREATE).virtual_only()),
        plain::<authz::SelfSubjectRulesReview>(Facts::new(CREATE).virtual_only()),
        plain::<authz::SubjectAccessReview>(Facts::new(CREATE).virtual_only()),
        // ---- autoscaling/v2 (storage version) and v1 ----
        listable::<as2::HorizontalPodAutoscaler>(
            crud()
                .short(&["hpa"])
                .cat(ALL)
                .subs(const { &[status_of::<as2::HorizontalPodAutoscaler>()] }),
        ),
        listable::<as1::HorizontalPodAutoscaler>(
            crud()
                .short(&["hpa"])
                .cat(ALL)
                .subs(const { &[status_of::<as1::HorizontalPodAutoscaler>()] })
                .stored_as("autoscaling", "v2"),
        ),
        // ---- batch/v1 ----
        listable::<batch::CronJob>(
            crud()
                .short(&["cj"])
                .cat(ALL)
                .subs(const { &[status_of::<batch::CronJob>()] }),
        ),
        listable::<batch::Job>(crud().cat(ALL).subs(const { &[status_of::<batch::Job>()] })),
        // ---- certificates.k8s.io/v1 ----
        listable::<certs::CertificateSigningRequest>(crud().short(&["csr"]).subs(
            const {
                &[
                    local("approval", "CertificateSigningRequest", GET_PATCH_UPDATE),
                    status_of::<certs::CertificateSigningRequest>(),
                ]
            },
        )),
        // ---- networking.k8s.io/v1 ----
        listable::<net::IngressClass>(crud()),
        listable::<net::Ingress>(
            crud()
                .short(&["ing"])
                .subs(const { &[status_of::<net::Ingress>()] }),
        ),
        listable::<net::IPAddress>(crud().short(&["ip"])),
        listable::<net::NetworkPolicy>(crud().short(&["netpol"])),
        listable::<net::ServiceCIDR>(crud().subs(const { &[status_of::<net::ServiceCIDR>()] })),
        // ---- policy/v1 ----
        listable::<policy::PodDisruptionBudget>(
            crud()
                .short(&["pdb"])
                .subs(const { &[status_of::<policy::PodDisruptionBudget>()] }),
        ),
        // ---- rbac.authorization.k8s.io/v1 ----
        listable::<rbac::ClusterRoleBinding>(crud()),
        listable::<rbac::ClusterRole>(crud()),
        listable::<rbac::RoleBinding>(crud()),
        listable::<rbac::Role>(crud()),
        // ---- storage.k8s.io/v1 ----
        listable::<storage::CSIDriver>(crud()),
        listable::<storage::CSINode>(crud()),
        listable::<storage::CSIStorageCapacity>(crud()),
        listable::<storage::StorageClass>(crud().short(&["sc"])),
        listable::<storage::VolumeAttachment>(
            crud().subs(const { &[status_of::<storage::VolumeAttachment>()] }),
        ),
        listable::<storage::VolumeAttributesClass>(crud().short(&["vac"])),
        // ---- admissionregistration.k8s.io/v1 ----
        listable::<admreg::MutatingWebhookConfiguration>(crud().cat(API_EXTENSIONS)),
        listable::<admreg::ValidatingAdmissionPolicy>(
            crud()
                .cat(API_EXTENSIONS)
                .subs(const { &[status_of::<admreg::ValidatingAdmissionPolicy>()] }),
        ),
        listable::<admreg::ValidatingAdmissionPolicyBinding>(crud().cat(API_EXTENSIONS)),
        listable::<admreg::ValidatingWebhookConfiguration>(crud().cat(API_EXTENSIONS)),
        // ---- apiextensions.k8s.io/v1 ----
        listable::<apiext::CustomResourceDefinition>(
            crud()
                .short(&["crd", "crds"])
                .cat(API_EXTENSIONS)
                .subs(const { &[status_of::<apiext::CustomResourceDefinition>()] }),
        ),
        // ---- scheduling.k8s.io/v1 ----
        listable::<sched::PriorityClass>(crud().short(&["pc"])),
        // ---- coordination.k8s.io/v1 ----
        listable::<coord::Lease>(crud()),
        // ---- node.k8s.io/v1 ----
        listable::<node::RuntimeClass>(crud()),
        // ---- discovery.k8s.io/v1 ----
        listable::<disc::EndpointSlice>(crud()),
        // ---- flowcontrol.apiserver.k8s.io/v1 ----
        listable::<flow::FlowSchema>(crud().subs(const { &[status_of::<flow::FlowSchema>()] })),
        listable::<flow::PriorityLevelConfiguration>(
            crud().subs(const { &[status_of::<flow::PriorityLevelConfiguration>()] }),
        ),
        // ---- resource.k8s.io/v1 ----
        listable::<dra::DeviceClass>(crud()),
        listable::<dra::ResourceClaim>(crud().subs(const { &[status_of::<dra::ResourceClaim>()] })),
        listable::<dra::ResourceClaimTemplate>(crud()),
        listable::<dra::ResourceSlice>(crud()),
    ]
}

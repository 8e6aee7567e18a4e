//! Conformance tests: the real ferrokube binary (`target/release/ferrokube server`) driven by stock
//! kubectl v1.35.2 and kube-rs. Each test starts its own server on loopback
//! ([`ferrokube_conformance::TestServer`]), so tests run in parallel.
//!
//! Modules: `discovery` (version, api-versions, api-resources, explain), `kubectl_crud` (apply of
//! every manifest, tables, output formats, describe, delete, error messages), `kubectl_list`
//! (selectors, chunking, all namespaces, watch), `kube_rs` (typed CRUD and the runtime watcher),
//! `durability` (graceful restart and SIGKILL during writes), `defaults` (upstream 1.35 defaults,
//! field validation, dry-run, kubectl diff), `deletion` (finalizers, graceful and cascading
//! deletion, namespace termination), `patch` (json/merge/strategic patches, the strategic merge
//! directives, client-side apply three-way merges, `kubectl edit`), `validation` (invalid
//! manifests rejected with upstream's field paths, immutable fields), `versions` (HPA and Event
//! served at two versions over one storage version), `ssa` (server-side apply, conflicts,
//! managedFields, takeover from client-side apply), `write_path` (wrongly typed bodies and
//! patches refused, apply field validation, concurrent patches, generateName), `abuse_parsers`
//! (hostile bodies and query parameters: patch/YAML/protobuf bombs, huge selectors; the server
//! stays up and small), `helm` (helm 4 install/upgrade/rollback/uninstall of the `helm create`
//! chart), `nodes` (simulated nodes: registration, leases, pod lifecycle as the
//! kubelet reports it), `scheduler` (placement, Unschedulable messages, cordon, binding,
//! preemption, drain), `auth` and `auth_webhook` (authentication, impersonation,
//! RBAC/ABAC/webhook authorization, CSR signing, service-account tokens, component identities), `abuse` (hostile clients: slow, unauthenticated, oversized,
//! max-in-flight, a dying storage writer), `files` (modes of the data files, certificate renewal),
//! `wire` (trailing newlines, DELETE answers, decode errors); `rawtls` holds their raw TLS/HTTP
//! helpers, `workloads` (ServiceAccount/root CA, ReplicaSet/RC, Deployment rollouts, PDB
//! status, EndpointSlices, node lifecycle, leader election), `jobs` (Job and TTL-after-finished
//! controllers), `services` (cluster IP and node port allocation, the `kubernetes` Service and
//! its lease-reconciled endpoints, the repair loops), `statefulset`, `daemonset`, `cronjob` (the
//! StatefulSet, DaemonSet and CronJob controllers with simulated nodes), `crd` (CustomResourceDefinitions),
//! `admission_builtin` (PodSecurity, LimitRanger, ServiceAccount, Priority,
//! DefaultTolerationSeconds, ResourceQuota, NodeRestriction and the admission plugin flags),
//! `admission_policy` (ValidatingAdmissionPolicy, webhook matchConditions, the create rate with
//! one policy), `admission_webhooks` (validating/mutating webhooks against HTTPS test servers
//! from `hookserver`: denials, labels, selectors, failure policies, hostile huge/dripping/garbage
//! answers, the create-rate benchmark) and `aggregation` (APIServices proxied to a test server,
//! discovery, availability), `footprint` (idle RSS and memory per object guard).
//! discovery, availability), `audit` (audit policy levels, events, annotations) and
//! `encryption` (encryption at rest in the embedded store and etcd, key rotation).

mod abuse;
mod abuse_parsers;
mod admission_builtin;
mod admission_policy;
mod admission_webhooks;
mod aggregation;
mod aggregation_auth;
mod aggregation_upgrade;
mod audit;
mod audit_unauthenticated;
mod auth;
mod auth_webhook;
mod certificates;
mod crd;
mod crd_conversion;
mod crd_ssa;
mod cronjob;
mod daemonset;
mod defaults;
mod deletion;
mod discovery;
mod durability;
mod encryption;
mod etcd_admission;
mod etcd_ha;
mod files;
mod footprint;
mod helm;
mod hookserver;
mod hpa;
mod jobs;
mod kube_rs;
mod kubectl_crud;
mod kubectl_list;
mod lazy_start;
mod mutating_policy;
mod nodes;
mod patch;
mod policy_authorizer;
mod rawtls;
mod reinvocation;
mod scale;
mod scheduler;
mod scheduler_leader;
mod services;
mod snapshot;
mod ssa;
mod statefulset;
mod util;
mod validation;
mod vap_typecheck;
mod versions;
mod watch_h2;
mod webhook_latency;
mod wire;
mod workloads;
mod write_path;

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
//! managedFields), `write_path` (wrongly typed bodies and patches refused, apply field
//! validation, concurrent patches, generateName), `helm` (helm 4 install/upgrade/rollback/uninstall of the `helm create` chart), `workloads`
//! (ServiceAccount/root CA, ReplicaSet/RC, Deployment rollouts, PDB status, EndpointSlices,
//! node lifecycle, leader election), `jobs` (Job and TTL-after-finished controllers).

mod defaults;
mod deletion;
mod discovery;
mod durability;
mod helm;
mod jobs;
mod kube_rs;
mod kubectl_crud;
mod kubectl_list;
mod patch;
mod ssa;
mod util;
mod validation;
mod versions;
mod workloads;
mod write_path;
